"""The causal stage's held-out behaviour numbers: the recommended heads ablated against random head
sets of the same size, every answer kept (conditions "causal:unablated", "causal:heads",
"causal:random_heads_<i>", "causal:heads_label_free_mean"), every rate a record, and the
comparisons the verdict rests on paired by prompt."""

from __future__ import annotations

from interp.causal.runner import ablations
from interp.intervention import Intervention
from interp.prompts import PromptSet
from interp.stages.evidence import compare, judged_runs, rate, select
from interp.stats import bootstrap_mean
from interp.study import Study

PREFIX = "causal:"


def _concat(sets: dict[str, PromptSet], names) -> PromptSet:
    ps = [p for k in names if k in sets for p in sets[k]]
    return PromptSet("causal-held-out", tuple(ps), next(iter(sets.values())).source)


def measure(study: Study, sets: dict[str, PromptSet], heads, random_sets, method: str, ref, seed: int,
            max_new_tokens: int, balanced_ref=None) -> dict:
    """Ablate `heads` and each of `random_sets` on the held-out `sets` (harmful, harmless, optional
    jailbreak), judged; returns the stage's ablation fields."""
    one = lambda hs, r=ref: ablations([hs], method, r, seed)[0]  # noqa: E731
    kw = dict(max_new_tokens=max_new_tokens)
    main = {"unablated": Intervention.none(), **({"heads": one(heads)} if heads else {})}
    rows = judged_runs(study, _concat(sets, ("harmful", "harmless", "jailbreak")), main, PREFIX, **kw)
    extra = {f"random_heads_{i}": one(hs) for i, hs in enumerate(random_sets)}
    if heads and balanced_ref is not None:
        extra["heads_label_free_mean"] = one(heads, balanced_ref)
    rows |= judged_runs(study, _concat(sets, ("harmful", "harmless")), extra, PREFIX, **kw) if extra else {}
    base, rec = rows["unablated"], rows.get("heads")
    rand = [rows[f"random_heads_{i}"] for i in range(len(random_sets))]
    pooled_rand = [r for rs in rand for r in rs]
    fam = lambda lab: None if lab != "jailbreak" else ...  # noqa: E731
    lab_of = lambda lab: "harmful" if lab == "jailbreak" else lab  # noqa: E731

    def score(rows_, lab):
        return bootstrap_mean([r.score for r in select(rows_, lab_of(lab), fam(lab))
                               if lab != "jailbreak" or r.family is not None], seed=seed)

    def rr(rows_, lab):
        sel = [r for r in select(rows_, lab_of(lab), fam(lab)) if lab != "jailbreak" or r.family is not None]
        return rate(sel)

    labels = [k for k in ("harmful", "harmless", "jailbreak") if k in sets]
    out: dict = {
        "baseline": {lab: {"refusal_rate": rr(base, lab), "refusal_score": score(base, lab)} for lab in labels},
        "refusal_rate_harmful_after": rr(rec, "harmful") if rec else None,
        "refusal_rate_harmless_after": rr(rec, "harmless") if rec else None,
        "refusal_score_harmful_after": score(rec, "harmful") if rec else None,
        "refusal_score_harmless_after": score(rec, "harmless") if rec else None,
        "refusal_rate_jailbreak_after": rr(rec, "jailbreak") if rec and "jailbreak" in sets else None,
        # pooled over the random sets: n counts (prompt, set) answers
        "random_heads_refusal_rate_harmful_after": rr(pooled_rand, "harmful") if rand else None,
        "random_heads_refusal_rate_harmless_after": rr(pooled_rand, "harmless") if rand else None,
        "random_heads": [{"heads": [list(h) for h in hs], "harmful": rr(r, "harmful"), "harmless": rr(r, "harmless"),
                          "condition": f"{PREFIX}random_heads_{i}"} for i, (hs, r) in enumerate(zip(random_sets, rand))],
        "balanced_mean_refusal_rate_after": ({lab: rr(rows["heads_label_free_mean"], lab) for lab in ("harmful", "harmless")}
                                             if "heads_label_free_mean" in rows else None),
        "conditions": {k: PREFIX + k for k in rows},
    }
    comparisons = {}
    for lab in ("harmful", "harmless"):
        if rec:
            comparisons[f"heads_vs_unablated_{lab}"] = compare(
                select(rec, lab, None), select(base, lab, None), "the recommended heads ablated", "no ablation",
                f"{lab} refusal rate", seed=seed)
        if rec and rand:
            comparisons[f"heads_vs_random_{lab}"] = compare(
                select(rec, lab, None), select(pooled_rand, lab, None), "the recommended heads ablated",
                f"random heads ablated (mean of {len(rand)} sets)", f"{lab} refusal rate", seed=seed)
    out["comparisons"] = comparisons
    out["verdict"] = "; ".join(c["verdict"] for k, c in comparisons.items() if k.startswith("heads_vs_random")) or None
    return out
