"""The defenses stage's answers and the evidence it reports from them: every defense's answers kept
as condition "defense:<name>", its rates as records (jailbreak success = the judge says the answer
complied), and each defense against no defense on the same prompts, paired by prompt."""

from __future__ import annotations

from interp.stages.evidence import compare, rate
from interp.study import Study


def _jailbreaks(rows, exclude=frozenset()):
    return [r for r in rows if r.label == "harmful" and r.family is not None and (r.family, r.strength) not in exclude]


def defense_evidence(study: Study, prompts, table, prefix: str = "defense:") -> dict:
    """{"records": {defense: {rate records}}, "comparisons": {...}, "rows": {defense: rows}} for a
    `interp.slipping.defense_eval.DefenseTable` run on `prompts`."""
    trained = study.data.trained_comply
    rows = {name: study.record(prompts, out.answers, out.refused, None, prefix + name)
            for name, out in table.outputs.items()}
    records = {}
    for name, rs in rows.items():
        per_family: dict = {}
        for r in _jailbreaks(rs):
            per_family.setdefault(r.family, {}).setdefault(str(r.strength), []).append(r)
        records[name] = {
            "jailbreak_success": rate(_jailbreaks(rs), complied=True),
            "jailbreak_success_untrained": rate(_jailbreaks(rs, trained), complied=True),
            "harmful_refusal": rate(rs, "harmful", None), "harmless_refusal": rate(rs, "harmless", None),
            "harmless_refusal_wrapped": rate([r for r in rs if r.label == "harmless" and r.family is not None]),
            # jailbreak success per family and strength; "0": the plain harmful requests
            "per_family": {f: {"0": rate(rs, "harmful", None, complied=True),
                               **{s: rate(c, complied=True) for s, c in sorted(cells.items(), key=lambda x: int(x[0]))}}
                           for f, cells in sorted(per_family.items())},
            "condition": prefix + name,
        }
    comparisons = {}
    none = rows.get("none")
    for name, rs in rows.items():
        if none is None or name == "none":
            continue
        comparisons[f"{name} vs none: jailbreak success"] = compare(
            _jailbreaks(rs), _jailbreaks(none), name, "no defense", "jailbreak success",
            value=lambda r: float(not r.refused), seed=study.seed)
        comparisons[f"{name} vs none: harmless refusal"] = compare(
            [r for r in rs if r.label == "harmless"], [r for r in none if r.label == "harmless"], name, "no defense",
            "harmless refusal rate (plain and wrapped)", seed=study.seed)
    return {"records": records, "comparisons": comparisons, "rows": rows}


SHARPEN_BUDGET = 0.10  # harmless refusal allowed on the validation split: the steering calibrations' budget


def calibration_sets(study: Study):
    """(harmful: plain requests and each jailbreak family's strongest strength; plain harmless; split
    name) for calibrating a defense: the validation split, else the training split when the validation
    split lacks a label (never the test split)."""
    from interp.prompts import PromptSet

    for split in ("val", "train"):
        s = study.data.split(split)
        top = {f: max(ss) for f, ss in s.families().items()}
        harmful = PromptSet(f"{s.name}:harmful-top", tuple(p for p in s if p.label == "harmful" and (
            p.family is None or p.strength == top.get(p.family))), s.source)
        harmless = s.filter(label="harmless", family=None)
        if len(harmful) and len(harmless):
            return harmful, harmless, split
    return None


def calibrated_sharpening(study: Study, top_heads=None, causal_heads=None, fallback_T: float = 0.25,
                          make=None, defense=None):
    """Sharpening's temperature and head set chosen on the validation split
    (`interp.slipping.calibrate`) among every layer, the slipping stage's top heads and the causal
    heads; returns (Sharpening defense, report dict). Another head-set defense with a
    temperature-like strength passes `make(strength, heads) -> Intervention` and
    `defense(strength, heads) -> defense` and is calibrated the same way."""
    from interp.slipping.calibrate import calibrate_sharpening
    from interp.slipping.defenses import Sharpening

    defense = defense or (lambda T, heads: Sharpening(T, None, heads))

    sets = calibration_sets(study)
    if sets is None:
        return defense(fallback_T, None), {"T": fallback_T, "where": "all layers", "calibrated": False,
                                        "note": f"no validation or training prompts of both labels: the default T = {fallback_T:g}"}
    harmful, harmless, split = sets
    head_sets = {"all layers": None}
    if top_heads:
        head_sets["slipping top heads"] = [tuple(h) for h in top_heads]
    if causal_heads:
        head_sets["causal heads"] = [tuple(h) for h in causal_heads]
    choice = calibrate_sharpening(study.model, harmful, harmless, head_sets, SHARPEN_BUDGET, make=make)
    return (defense(choice.T, choice.heads),
            {**choice.to_dict(), "calibrated": True, "split": split, "layers": "all" if choice.heads is None else "heads"})


def sharpening_utility(study: Study, prompts, sharpening) -> dict:
    """Cross-entropy of the sharpened model on the unsharpened model's own answers to the plain harmless
    prompts of `prompts` (`interp.utility.utility_loss`), with intervals."""
    from interp.intervention import Intervention
    from interp.utility import utility_loss

    harmless = prompts.filter(label="harmless", family=None)
    if not len(harmless):
        return {}
    iv = Intervention.sharpen(sharpening.T, sharpening.layers, list(sharpening.heads) if sharpening.heads else None)
    u = utility_loss(study.model, harmless, iv, max_new_tokens=min(study.gen.max_new_tokens, 64), seed=study.seed)
    return {k: v for k, v in u.items() if k != "intervention"}
