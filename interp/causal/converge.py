"""The heads that independent lines of evidence converge on, checked as a set.

A greedy ablation search can be confidently wrong. On the planted benchmark (docs/causal.md,
section 6) mean ablation removed refusal through heads upstream of the planted one, whose ablation
damages what the planted head reads, while the planted head itself was rank 1 by single-head
ablation and rank 1 by activation patching. The two ask different questions: ablation, "is the
head needed?"; patching from a matched harmless prompt, "does the head carry the harmful/harmless
difference?". A head that every later layer reads passes the first and fails the second; a head
that carries the decision passes both.

`converged` keeps the heads some method's search chose that are also in the top `top` heads by
single-head ablation (under any method) and by patching. `check_set` judges such a set under one
method's ablation; `recommend_converged` runs the same test as every recommendation on it (judged
flip, score effect, random sets, specificity), method by method, and returns the first confident one.
`converge` is the causal stage's step: both, and the report's record of them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping, Sequence

from torch import Tensor

from interp.model import ChatModel
from interp.prompts import PromptSet
from interp.causal.heads import Head
from interp.causal.recommend import RecommendConfig, Recommendation, _rank_of, recommend_heads
from interp.causal.runner import ablation_refusals, ablation_scores
from interp.causal.search_types import FLIPS, FlipSearch, HeadSearch


def _searched(r: Recommendation) -> list[tuple[str, list[Head]]]:
    """(flip, heads) of each flip's search under one method (both flips: the best one may not be
    the one that found the heads that carry refusal)."""
    if r.search is None:
        return [(r.flip, [tuple(h) for h in r.candidates])]
    return [(f, [tuple(h) for h in getattr(r.search, f).heads]) for f in FLIPS]


def converged(recs: Mapping[str, Recommendation], patching: Tensor, top: int = 8, k: int = 4) -> tuple[list[Head], list[dict]]:
    """Heads either flip's search chose under any method (sets labelled disruptive included: that
    label can be wrong for a head that carries refusal) that are in the top `top` both by
    single-head ablation (the best rank over the methods' and flips' scans) and by patching
    (`patching`: [layer, head]). Returns (at most `k` heads, best rank sum first; a row per searched
    head: ranks, the methods that found it, converged)."""
    pool: list[Head] = []
    by: dict[Head, list[str]] = {}
    for m, r in recs.items():
        for _, heads in _searched(r):
            for h in heads:
                if h not in pool:
                    pool.append(h)
                if m not in by.setdefault(h, []):
                    by[h].append(m)
    maps = [r.search.single[f] for r in recs.values() if r.search is not None for f in FLIPS if f in r.search.single]
    rows = []
    for h in pool:
        ranks = [_rank_of(m, h) for m in maps]
        row = {"head": list(h), "methods": by[h], "ablation_rank": min(ranks) if ranks else None,
               "patching_rank": _rank_of(patching, h)}
        row["converged"] = row["ablation_rank"] is not None and row["ablation_rank"] <= top and row["patching_rank"] <= top
        rows.append(row)
    rows.sort(key=lambda r: (not r["converged"], (r["ablation_rank"] or 10**6) + r["patching_rank"]))
    return [tuple(r["head"]) for r in rows if r["converged"]][:k], rows


def check_set(model: ChatModel, search: HeadSearch, flip: str, heads: Sequence[Head], prompts: PromptSet, judge,
              max_new_tokens: int) -> FlipSearch:
    """The judged check of `heads` ablated as in `search` (its method, reference for `flip`) on
    `prompts` (the flip's label: harmful for "refusal"), as a FlipSearch the recommendation reads."""
    cfg, sign = search.cfg, FLIPS[flip][1]
    refused, scores = ablation_refusals(model, prompts, [list(heads)], cfg.method, search.references[flip], cfg.seed,
                                        cfg.positions, judge, max_new_tokens)
    before = getattr(search, flip).rate_before
    after = float(refused[0].float().mean())
    return FlipSearch(flip, list(heads), [], before, after, sign * (after - before) >= cfg.target, n=len(prompts),
                      flipped_by_score=float(((sign * scores[0]) > 0).float().mean()), max_new_tokens=max_new_tokens,
                      target=cfg.target)


def grow(model: ChatModel, search: HeadSearch, flip: str, checked: FlipSearch, prompts: PromptSet, judge,
         max_new_tokens: int, max_heads: int) -> FlipSearch:
    """Greedy steps from a checked set that does not flip on its own, as the search takes them
    (re-estimate around the set ablated, measure the `top_k_step` best, keep the one that flips
    most prompts by score), judged after each, until it flips or has `max_heads` heads."""
    from interp.causal.attribution import head_gradients
    from interp.causal.search import estimate_effects
    from interp.intervention import Intervention

    cfg, sign, ref = search.cfg, FLIPS[flip][1], search.references[flip]
    current, fs = list(checked.heads), checked
    while fs.status != "flipped" and len(current) < max_heads:
        g = head_gradients(model, prompts, hooks=Intervention.ablate_heads(current, cfg.method, ref, cfg.seed).hooks(model))
        est = estimate_effects(model, g, flip, cfg.method, ref)
        pool = [h for h in (divmod(i, model.n_heads) for i in est.flatten().argsort(descending=True).tolist())
                if h not in current][:cfg.top_k_step]
        s = ablation_scores(model, prompts, [current + [h] for h in pool], cfg.method, ref, cfg.seed, cfg.positions,
                            base=current)
        j = max(range(len(pool)), key=lambda i: (float(((sign * s[i]) > 0).float().mean()), float(sign * s[i].mean())))
        current.append(pool[j])
        fs = check_set(model, search, flip, current, prompts, judge, max_new_tokens)
    return fs


def recommend_converged(model: ChatModel, harmful: PromptSet, harmless: PromptSet, heads: Sequence[Head],
                        recs: Mapping[str, Recommendation], order: Sequence[str], rcfg: RecommendConfig, judge,
                        max_new_tokens: int, held_out: Mapping[str, PromptSet] | None = None
                        ) -> tuple[str | None, Recommendation | None, list[dict]]:
    """Test the converged `heads` under each method (its search's reference, and the flip whose
    search found most of them) with the recommendation's own test, and stop at the first confident
    one. Each method first judges the heads alone; the methods go in order of how far the heads
    alone move the judged rate (ties: `order`). Under a method where they do not flip behaviour
    alone, the greedy search's steps grow the set from them (up to `rcfg.k` heads) before the test.
    Returns (method, its Recommendation; (None, None) when none is confident; a row per method)."""
    checks = []
    for m in order:
        r = recs[m]
        if r.search is None:
            continue
        # the flip whose search found most of these heads (a search's best flip may be the other one)
        found = {f: len({tuple(h) for h in getattr(r.search, f).heads} & set(map(tuple, heads))) for f in FLIPS}
        flip = max(FLIPS, key=lambda f: (found[f], f == r.flip))
        prompts = harmful if FLIPS[flip][0] == "harmful" else harmless
        checks.append((m, flip, prompts, check_set(model, r.search, flip, heads, prompts, judge, max_new_tokens)))
    checks.sort(key=lambda c: -c[3].effect)  # stable: ties keep `order`
    tried = []
    for m, flip, prompts, alone in checks:
        r = recs[m]
        fs = alone if alone.status == "flipped" else grow(model, r.search, flip, alone, prompts, judge, max_new_tokens,
                                                           rcfg.k)
        other = (held_out or {}).get("harmless" if flip == "refusal" else "harmful")
        rec = recommend_heads(model, harmful, harmless, len(fs.heads), search=r.search, held_out=other, best=fs,
                              cfg=replace(rcfg, k=len(fs.heads)))
        tried.append({"method": m, "flip": flip, "confident": rec.confident, "label": rec.to_dict()["label"],
                      "judged_alone": [alone.rate_before, alone.rate_after], "heads": [list(h) for h in fs.heads],
                      "added": [list(h) for h in fs.heads[len(heads):]], "judged": [fs.rate_before, fs.rate_after],
                      "reasons": rec.reasons})
        if rec.confident:
            return m, rec, tried
    return None, None, tried


def top_heads(n_heads_total: int, k: int) -> int:
    """How deep "top" reaches: the top 2k heads, and at most 1/16 of them (on a model with few heads,
    every head is in the top 2k)."""
    return max(1, min(2 * k, n_heads_total // 16))


def converge(model: ChatModel, harmful: PromptSet, harmless: PromptSet, recs: Mapping[str, Recommendation],
             patching: Tensor, primary: str, rcfg: RecommendConfig, judge, max_new_tokens: int,
             held_out: Mapping[str, PromptSet] | None = None) -> tuple[str | None, Recommendation | None, dict]:
    """The causal stage's step: the converged heads of `recs` (one Recommendation per ablation method,
    `primary` first among equals), tested method by method, in order of how many of them each
    method's searches chose. Returns (method, its confident Recommendation, or (None, None); the
    report's record: heads, top, table, tried, rule)."""
    top = top_heads(model.n_layers * model.n_heads, rcfg.k)
    heads, rows = converged(recs, patching, top=top, k=rcfg.k)
    method, rec, tried = None, None, []
    if heads:
        def found(m):  # converged heads either flip's search under method m chose
            s = recs[m].search
            return len(set(heads) & {tuple(h) for h in (s.refusal.heads + s.compliance.heads if s else recs[m].candidates)})

        order = sorted(recs, key=lambda m: (-found(m), m != primary))
        method, rec, tried = recommend_converged(model, harmful, harmless, heads, recs, order, rcfg, judge,
                                                 max_new_tokens, held_out=held_out)
    return method, rec, {"heads": [list(h) for h in heads], "table": rows, "tried": tried, "top": top,
                         "rule": f"searched heads in the top {top} by single-head ablation and by patching"}
