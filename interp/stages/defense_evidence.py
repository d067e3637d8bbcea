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
            "per_family_records": {f: {s: rate(c, complied=True) for s, c in sorted(cells.items(), key=lambda x: int(x[0]))}
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
