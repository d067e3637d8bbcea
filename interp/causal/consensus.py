"""The recommendation under several ablation methods, and the heads the evidence agrees on.

One ablation method can mislead: zero-ablation puts a value the head never takes into the model,
a mean can be off-distribution for some positions, resampling carries another prompt's signal.
`by_method` runs the search and the recommendation under each of zero, mean and resample
ablation; `consensus` names the heads found by more than one method (never a set labelled
disruptive) and, when given, ranks them with the other evidence: single-head patching and
single-head steering flip counts (HSI's selection). Heads that agree across the evidence come
first, and the verdict says when the methods disagree.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping

import torch
from torch import Tensor

from interp.intervention import Intervention
from interp.model import ChatModel
from interp.prompts import PromptSet
from interp.causal.compare import RecommendConfig, Recommendation, recommend_heads
from interp.causal.heads import Head
from interp.causal.recommend import _rank_of
from interp.causal.search import SearchConfig, search_heads

ABLATION_METHODS = ("mean", "zero", "resample")


def by_method(model: ChatModel, harmful: PromptSet, harmless: PromptSet, methods=ABLATION_METHODS,
              cfg: SearchConfig = SearchConfig(), rcfg: RecommendConfig = RecommendConfig(), judge=None,
              max_new_tokens: int = 6, held_out: Mapping[str, PromptSet] | None = None,
              clean: tuple | None = None) -> dict[str, Recommendation]:
    """Search and recommend under each ablation method (`held_out`: {"harmful", "harmless"} held-out
    prompts for the specificity check of each method's set; `clean`: a search's `HeadSearch.clean`
    on the same prompts, reused)."""
    out = {}
    for m in methods:
        kw = {} if judge is None else {"judge": judge}
        s = search_heads(model, harmful, harmless, replace(cfg, method=m), max_new_tokens=max_new_tokens, clean=clean, **kw)
        clean = s.clean
        other = None
        if held_out:
            other = held_out.get("harmless" if s.best.flip == "refusal" else "harmful")
        out[m] = recommend_heads(model, harmful, harmless, rcfg.k, search=s, cfg=rcfg, held_out=other)
    return out


@torch.no_grad()
def steering_flips(model: ChatModel, head_dirs, prompts: PromptSet, sigmas: float, heads=None,
                   max_rows: int = 512) -> Tensor:
    """HSI's selection: for each fitted head (`head_dirs`, an `interp.steering` HeadDirections),
    the share of `prompts` whose refusal score changes sign when that head alone is steered by
    `sigmas` (positive: toward refusal, so use harmless prompts; negative: harmful ones). [layer,
    head], NaN where no direction was fitted or outside `heads` (default: every fitted head). One
    stacked, resumed run per prompt batch."""
    from interp.runner import RESUME_PROMPTS, cache_block_inputs, prompt_batches, run
    from interp.scoring import refusal_log_odds

    fitted = [(int(l), int(h)) for l, h in zip(*torch.nonzero(head_dirs.fitted, as_tuple=True))]
    heads = fitted if heads is None else [tuple(h) for h in heads if tuple(h) in set(fitted)]
    out = torch.full((model.n_layers, model.n_heads), float("nan"))
    if not heads:
        return out
    stack = Intervention.stack([Intervention.steer_heads(head_dirs, [p], sigmas) for p in heads])
    texts = [p.text for p in prompts]
    flips = torch.zeros(len(heads))
    for idx, b, _ in prompt_batches(model, texts, max_rows, max_prompts=RESUME_PROMPTS):
        cached = cache_block_inputs(model, b, min(l for l, _ in heads))
        base = refusal_log_odds(model, cached.logits).cpu()
        s = run(model, cached, stack, read=lambda logits: refusal_log_odds(model, logits).cpu(), from_layer="auto",
                max_rows=max_rows).view(len(heads), len(idx))
        flips += ((s > 0) != (base > 0)).float().sum(1)
    for (l, h), f in zip(heads, (flips / len(texts)).tolist()):
        out[l, h] = f
    return out


def _rank(m: Tensor | None, h: Head) -> int | None:
    return None if m is None else _rank_of(m, h)


def consensus(recs: Mapping[str, Recommendation], patching: Tensor | None = None, steering: Tensor | None = None,
              k: int = 4, top: int | None = None) -> dict:
    """Heads found by more than one ablation method (disruptive sets do not count), ordered by how
    many kinds of evidence agree: found by ablation under n methods, in the top `top` (default 2k)
    heads by patching, in the top by single-head steering flips (`steering` [layer, head]: prompts
    flipped per head). Returns {"heads" (at most k, agreeing heads first), "table", "methods",
    "verdict"}."""
    top = top or 2 * k
    found: dict[Head, list[str]] = {}
    per_method = {}
    for m, r in recs.items():
        per_method[m] = {"heads": [list(h) for h in r.candidates], "confident": r.confident, "flip": r.flip,
                         "disruptive": r.disruptive, "status": r.search.best.status if r.search else None,
                         "specificity_kl": (r.specificity.get("kl") or {}).get("mean") if r.specificity else None}
        if r.disruptive:
            continue
        for h in r.candidates:
            found.setdefault(tuple(h), []).append(m)
    table = []
    for h, ms in found.items():
        row = {"head": list(h), "methods": ms, "n_methods": len(ms),
               "patching_rank": _rank(patching, h), "steering_rank": _rank(steering, h)}
        row["agree"] = len(ms) + sum(r is not None and r <= top for r in (row["patching_rank"], row["steering_rank"]))
        table.append(row)
    table.sort(key=lambda r: (-r["agree"], -r["n_methods"], r["patching_rank"] or 10**9))
    shared = [r for r in table if r["n_methods"] > 1]
    heads = [tuple(r["head"]) for r in shared][:k]
    disruptive = [m for m, r in recs.items() if r.disruptive]
    words = []
    if shared:
        words.append("found by more than one ablation method: " + ", ".join(
            f"{tuple(r['head'])} ({'/'.join(r['methods'])}" + (f"; patching rank {r['patching_rank']}" if r["patching_rank"] else "")
            + (f"; steering rank {r['steering_rank']}" if r["steering_rank"] else "") + ")" for r in shared[:k]))
    else:
        words.append("the ablation methods disagree: no head is found by more than one of "
                     f"{', '.join(recs)} ({'; '.join(f'{m}: {[tuple(h) for h in r.candidates]}' for m, r in recs.items())})")
    if disruptive:
        words.append(f"disruptive (not counted): the sets found under {', '.join(disruptive)}")
    weak = [r for r in shared[:k] if (patching is not None and (r["patching_rank"] or 10**9) > top)
            or (steering is not None and (r["steering_rank"] or 10**9) > top)]
    if weak:
        words.append(f"not confirmed by patching or steering (outside their top {top}): "
                     + ", ".join(str(tuple(r["head"])) for r in weak))
    return {"heads": [list(h) for h in heads], "table": table, "methods": per_method, "verdict": "; ".join(words)}


def choose(recs: Mapping[str, Recommendation], primary: str, table: list[dict]) -> tuple[str, str]:
    """Which method's set to recommend: among the confident sets (not disruptive, by definition),
    the one whose heads the most ablation methods found (the mean count over its heads, from
    `consensus`'s table), then the primary method's, then the smallest; with none confident, the
    primary's, unconfirmed. Agreement comes first because one method can be confidently wrong:
    on the planted `early1` variant mean ablation confidently removed refusal through four heads
    upstream of the planted one (layer 1), while zero and resample ablation both found the planted
    head (4, 3). Returns (method, why)."""
    found = {tuple(r["head"]): r["n_methods"] for r in table}
    sure = [m for m, r in recs.items() if r.confident]
    if not sure:
        return primary, f"no method's set is confident; {primary} ablation's set is reported, unconfirmed"

    def agreement(m: str) -> float:
        return sum(found.get(tuple(h), 1) for h in recs[m].heads) / max(len(recs[m].heads), 1)

    best = max(sure, key=lambda m: (agreement(m), m == primary, -len(recs[m].heads)))
    why = (f"{best} ablation's set {[tuple(h) for h in recs[best].heads]}: its heads are found by "
           f"{agreement(best):.1f} ablation methods on average")
    if best != primary:
        p = recs[primary]
        why += (f"; {primary} ablation's set {[tuple(h) for h in p.candidates]} is {p.to_dict()['label']}"
                + (f" ({p.reasons[0]})" if p.reasons and not p.confident else
                   f" (found by {agreement(primary):.1f} on average)" if p.confident else ""))
    return best, why
