"""Greedy search for the smallest head set whose ablation flips behaviour, and what it says.

`search_heads` finds the smallest head set whose ablation removes refusal on harmful prompts, and
the smallest whose ablation removes compliance on harmless ones: a model may refuse because it
detects harm, or refuse by default and comply because it detects a harmless request. Which mean it
ablates with (label-free, or the other label's) is part of the answer: see `SearchConfig`.
"""

from __future__ import annotations

from dataclasses import replace
from time import perf_counter

import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InputError
from interp.model import ChatModel
from interp.progress import step_line
from interp.prompts import PromptSet
from interp.scoring import RefusalJudge
from interp.causal.ablate import HeadReference, head_reference
from interp.intervention import Intervention
from interp.causal.attribution import HeadGradients, head_gradients
from interp.causal.heads import Head, all_heads
from interp.causal.runner import FAST_GEN, ablation_refusals, ablation_scores
from interp.causal.specificity import DisruptionGuard, off_target, off_target_reference, untouched
# the search's question and its results live in search_types; they are imported from here too
from interp.causal.search_types import FLIPS, REFERENCE_POLICIES, FlipSearch, HeadSearch, SearchConfig  # noqa: F401


def flip_references(model: ChatModel, harmful: PromptSet, harmless: PromptSet, cfg: SearchConfig,
                         grads: HeadGradients | None = None) -> dict:
    """The reference activations each flip ablates with (None for zero-ablation). `grads`
    (the attribution pass over harmful + harmless, in that order) already holds every head's
    last-token output, so the last-token references need no pass of their own."""
    if cfg.method == "zero":
        return {d: None for d in FLIPS}
    n = len(harmful)

    def ref(prompts: PromptSet, rows: slice) -> HeadReference:
        return _from_grads(model, prompts, cfg.positions, grads, rows)

    if cfg.reference == "balanced":
        r = ref(harmful.concat(harmless), slice(0, None))
        return {d: r for d in FLIPS}
    return {"refusal": ref(harmless.require("harmless reference set"), slice(n, None)),
            "compliance": ref(harmful.require("harmful reference set"), slice(0, n))}


def _from_grads(model: ChatModel, prompts: PromptSet, positions: str, grads: HeadGradients | None,
                rows: slice = slice(0, None)) -> HeadReference:
    """The reference of `prompts` from the attribution pass over them when it holds it (last-token
    or per-position outputs), else from a capture pass."""
    if grads is not None and positions == "last" and grads.z_last is not None:
        return HeadReference(grads.z_last[rows], "last", prompts.describe())
    if grads is not None and positions == "position" and grads.z_slot is not None:
        return HeadReference(grads.z_slot[rows], "position", prompts.describe())
    return head_reference(model, prompts, positions)


def single_head_ablation_effects(model: ChatModel, prompts, flip: str, method: str = "mean", reference=None, seed: int = 0,
                        positions: str = "position") -> Float[Tensor, "layer head"]:
    """Change of the mean refusal score when each head alone is ablated (exactly, one head per
    replica), signed so that positive is the flip's wanted way (refusal: lower score on
    harmful prompts; compliance: higher score on harmless ones)."""
    return _single_scan(model, prompts, flip, method, reference, seed, positions)[0]


def estimate_effects(model: ChatModel, grads: HeadGradients, flip: str, method: str, ref: HeadReference | None) -> Tensor:
    """Attribution estimate of each head's ablation effect, signed the flip's wanted way."""
    # resample ablation draws a reference prompt per row; to first order its expected effect is
    # that of the reference mean, which ranks the heads just as well
    values = None if method == "zero" else ref.mean
    return FLIPS[flip][1] * grads.ablation_estimate(values).mean(0)


def _single_scan(model, prompts, flip, method, reference, seed, positions, heads=None):
    if flip not in FLIPS:
        raise InputError(f"unknown flip {flip!r}; choose one of {list(FLIPS)}")
    every = heads is None
    heads = all_heads(model) if every else heads
    s = ablation_scores(model, prompts, [[]] + [[h] for h in heads], method, reference, seed, positions,
                        progress=f"single-head ablation ({flip}, {len(prompts)} prompts)")
    eff = FLIPS[flip][1] * (s[1:] - s[:1]).mean(1)
    return (eff.view(model.n_layers, model.n_heads) if every else eff), s


def _search_flip(model, prompts: PromptSet, flip: str, cfg: SearchConfig, ref, rate0: float, judge,
                 max_new_tokens, grads: HeadGradients, guard: DisruptionGuard | None = None
                 ) -> tuple[FlipSearch, Tensor, Tensor, Tensor]:
    label, sign = FLIPS[flip]
    estimate = estimate_effects(model, grads, flip, cfg.method, ref)
    H = model.n_heads
    room = rate0 if sign < 0 else 1.0 - rate0
    if room < cfg.target - 1e-9:
        # success needs the judged rate to move by the target, and it has less room than that: a
        # model that refuses (almost) no harmful prompt has no refusal to remove, whatever heads go
        note = (f"not searched: the judged refusal rate of the {label} prompts is {rate0:.2f}, so it cannot "
                f"{'fall' if sign < 0 else 'rise'} by the target {cfg.target}")
        if cfg.exhaustive:  # the exhaustive scan still maps every head's effect
            single, _ = _single_scan(model, prompts, flip, cfg.method, ref, cfg.seed, cfg.positions)
            measured = torch.ones_like(single, dtype=torch.bool)
        else:
            single, measured = estimate.clone(), torch.zeros_like(estimate, dtype=torch.bool)
        return (FlipSearch(flip, [], [], rate0, rate0, False, note, len(prompts), None, max_new_tokens, cfg.target),
                single, estimate, measured)
    order = [divmod(i, H) for i in estimate.flatten().argsort(descending=True).tolist()]
    if cfg.exhaustive:
        single, scan = _single_scan(model, prompts, flip, cfg.method, ref, cfg.seed, cfg.positions)
        measured = torch.ones_like(single, dtype=torch.bool)
        row_of = {h: 1 + i for i, h in enumerate(all_heads(model))}
        cands = [divmod(i, H) for i in single.flatten().argsort(descending=True).tolist()[:max(cfg.n_candidates, cfg.max_heads)]]
    else:  # estimate every head, measure the top k exactly, search among those
        top = order[:cfg.top_k]
        exact, scan = _single_scan(model, prompts, flip, cfg.method, ref, cfg.seed, cfg.positions, heads=top)
        single, measured = estimate.clone(), torch.zeros_like(estimate, dtype=torch.bool)
        for h, e in zip(top, exact.tolist()):
            single[h], measured[h] = e, True
        row_of = {h: 1 + i for i, h in enumerate(top)}
        cands = sorted(top, key=lambda h: -float(single[h]))

    def key(row: Tensor) -> tuple[float, float]:  # (share of prompts flipped by score, mean wanted-way score)
        return float(((sign * row) > 0).float().mean()), float(sign * row.mean())

    def measure(current: list[Head], heads: list[Head]) -> Tensor:  # score rows of current + each head
        if current:
            return ablation_scores(model, prompts, [current + [h] for h in heads], cfg.method, ref, cfg.seed,
                                   cfg.positions, base=current)
        exact, s = _single_scan(model, prompts, flip, cfg.method, ref, cfg.seed, cfg.positions, heads=heads)
        for h, e in zip(heads, exact.tolist()):  # further heads measured alone join the exact map
            single[h], measured[h] = e, True
        return s[1:]

    current: list[Head] = []
    steps: list[dict] = []
    skipped: list[Head] = []  # heads whose addition made the set disruptive (the guard)
    best_key, rate, success = key(scan[0]), rate0, False
    n_steps = min(cfg.max_heads, len(cands) if cfg.exhaustive else model.n_layers * H)
    t_steps = perf_counter()
    for step in range(n_steps):
        if step == 0:  # the single-head scan already holds these rows
            pool = cands if cfg.exhaustive else cands + order[cfg.top_k:]
            options, width = cands, len(cands)
            s = scan[[row_of[h] for h in options]]
        else:
            if cfg.exhaustive:
                pool = [h for h in cands if h not in current and h not in skipped]
            else:
                # estimate again around the run with the current set ablated: a head whose effect
                # only shows once another is gone (saturated downstream) is found at this step
                g = head_gradients(model, prompts, hooks=Intervention.ablate_heads(current, cfg.method, ref, cfg.seed).hooks(model))
                est = estimate_effects(model, g, flip, cfg.method, ref)
                pool = [divmod(i, H) for i in est.flatten().argsort(descending=True).tolist()]
                pool = [h for h in pool if h not in current and h not in skipped]
            width = len(pool) if cfg.exhaustive else cfg.top_k_step
            options = pool[:width]
            if not options:
                break
            s = measure(current, options)
        good, checks, seen = list(range(len(options))), [], len(options)
        for _ in range(cfg.guard_rounds + 1 if guard is not None else 0):
            # the guard: a set the next-token KL calls disruptive is skipped; when every option of
            # a round is, the next heads by the estimate are measured (up to guard_rounds more)
            checks = guard.disruptive([current + [h] for h in options])
            skipped += [h for h, c in zip(options, checks) if c["disruptive"]]
            good = [i for i, c in enumerate(checks) if not c["disruptive"]]
            more = [h for h in pool[seen:] if h not in skipped][:width]
            if good or cfg.exhaustive or not more:
                break
            seen = pool.index(more[-1]) + 1
            options, s = more, measure(current, more)
        if not good:
            break  # every head measured makes the set disruptive
        keys = [key(row) for row in s]
        j = max(good, key=lambda i: keys[i])
        if keys[j][0] <= best_key[0] and keys[j][1] - best_key[1] < cfg.min_gain:
            break  # no head flips more prompts or moves the score enough
        current, best_key = current + [options[j]], keys[j]
        # the judge is consulted once the score says enough prompts may have flipped (or at the end)
        judged = best_key[0] >= cfg.target / 2 or step == n_steps - 1
        if judged:
            r, _ = ablation_refusals(model, prompts, [current], cfg.method, ref, cfg.seed, cfg.positions, judge,
                                     max_new_tokens)
            rate = float(r[0].float().mean())
        steps.append({"heads": [list(h) for h in current], "flipped_by_score": best_key[0],
                      "mean_score": sign * best_key[1], "refusal_rate": rate if judged else None,
                      **({"kl": checks[j]["kl"]} if checks else {}),
                      **({"skipped_disruptive": [list(options[i]) for i, c in enumerate(checks) if c["disruptive"]]}
                         if any(c["disruptive"] for c in checks) else {})})
        step_line(f"head search ({flip})", step + 1, n_steps, t_steps, f"set {current}")
        if judged and sign * (rate - rate0) >= cfg.target:
            success = True
            break
    if steps and steps[-1]["refusal_rate"] is None:  # stopped early: judge the final set
        r, _ = ablation_refusals(model, prompts, [current], cfg.method, ref, cfg.seed, cfg.positions, judge, max_new_tokens)
        rate = float(r[0].float().mean())
        steps[-1]["refusal_rate"] = rate
        success = sign * (rate - rate0) >= cfg.target
    found = FlipSearch(flip, current, steps, rate0, rate, success, "", len(prompts), best_key[0] if current else None,
                       max_new_tokens, cfg.target, skipped=skipped, guard=guard.to_dict() if guard is not None else {})
    return found, single, estimate, measured


def search_heads(model: ChatModel, harmful: PromptSet, harmless: PromptSet, cfg: SearchConfig = SearchConfig(),
                 judge: RefusalJudge = RefusalJudge(), max_new_tokens: int = FAST_GEN.max_new_tokens,
                 clean: tuple | None = None) -> HeadSearch:
    """Greedy search, both ways, for the smallest head set whose ablation flips behaviour:
    removes refusal of `harmful` prompts ("refusal"), or removes compliance with `harmless` ones
    ("compliance"). `best` says which way this model's heads work. `clean`: another search's
    `HeadSearch.clean` on the same prompts, judge and answer length (its attribution pass and
    judged clean rates are reused: searching under another ablation method costs no new clean run)."""
    harmful = harmful.require("harmful search set")
    harmless = harmless.require("harmless search set")
    both = harmful.concat(harmless)
    # one forward+backward pass serves both flips and both reference policies, and its
    # last-token head outputs are the reference means
    if clean is not None:  # another method's search on the same prompts: the same clean run
        grads, rates = clean
    else:
        grads = head_gradients(model, both)
        refused, _ = ablation_refusals(model, both, [[]], judge=judge, max_new_tokens=max_new_tokens, method="zero")
        rates = {"harmful": float(refused[0, :len(harmful)].float().mean()),
                 "harmless": float(refused[0, len(harmful):].float().mean())}
    if cfg.reference == "auto":
        first = _search(model, harmful, harmless, replace(cfg, reference="balanced"), judge, max_new_tokens, grads, rates)
        if first.best.success or cfg.method == "zero":
            return replace(first, clean=(grads, rates))
        second = _search(model, harmful, harmless, replace(cfg, reference="opposite"), judge, max_new_tokens, grads, rates)
        return replace(second, clean=(grads, rates), tried=[{"reference": "balanced", "refusal": first.refusal.to_dict(),
                                       "compliance": first.compliance.to_dict(), "neutral": first.neutral,
                                       "estimate": first.estimate_quality()}])
    return replace(_search(model, harmful, harmless, cfg, judge, max_new_tokens, grads, rates), clean=(grads, rates))


def _search(model: ChatModel, harmful: PromptSet, harmless: PromptSet, cfg: SearchConfig, judge, max_new_tokens,
            grads: HeadGradients, rates: dict[str, float]) -> HeadSearch:
    refs = flip_references(model, harmful, harmless, cfg, grads)
    n = len(harmful)
    rows = {"harmful": range(n), "harmless": range(n, n + len(harmless))}
    single, estimate, measured, results = {}, {}, {}, {}
    for flip, (label, _) in FLIPS.items():
        prompts = harmful if label == "harmful" else harmless
        results[flip], single[flip], estimate[flip], measured[flip] = _search_flip(
            model, prompts, flip, cfg, refs[flip], rates[label], judge, max_new_tokens, grads.rows(rows[label]),
            _guard(model, flip, harmful, harmless, cfg, refs[flip]) if cfg.guard else None)
    found = HeadSearch(results["refusal"], results["compliance"], single, refs, cfg, estimate=estimate, measured=measured)
    return replace(found, neutral=neutral_reading(model, found.best.heads, harmful, harmless, found.cfg, grads))


def _guard(model: ChatModel, flip: str, harmful: PromptSet, harmless: PromptSet, cfg: SearchConfig,
           ref) -> DisruptionGuard:
    """The disruption guard of one flip: KL on the search's off-target prompts the flip leaves alone,
    against random sets and against the KL on the flip's own prompts. Resample draws, off target,
    from those prompts' own label (as the recommendation's specificity check does)."""
    kept, what = untouched(model, flip, off_target(flip, harmful, harmless)[1])
    gref = off_target_reference(model, cfg.method, kept, ref, cfg.positions)
    target = harmful if FLIPS[flip][0] == "harmful" else harmless
    return DisruptionGuard(model, kept, target, what, cfg.method, gref, cfg.seed, cfg.positions, target_reference=ref)


def neutral_reading(model: ChatModel, heads: list[Head], harmful: PromptSet, harmless: PromptSet, cfg: SearchConfig,
                    grads: HeadGradients | None = None) -> dict:
    """What the model does with the found heads silenced by a label-free ablation (zero, and the
    mean over both labels): if it then complies with everything, it refuses because these heads
    detect harm; if it refuses everything, it refuses by default and complies because they detect
    a harmless request. Flipping alone cannot tell: an opposite-label mean moves a two-sided
    signal either way."""
    if not heads:
        return {}
    both = harmful.concat(harmless)
    n = len(harmful)
    out: dict = {"heads": [list(h) for h in heads]}
    bal = _from_grads(model, both, cfg.positions, grads)
    for name, method, ref in (("zero", "zero", None), ("balanced_mean", "mean", bal)):
        s = ablation_scores(model, both, [heads], method, ref, cfg.seed, cfg.positions)[0]
        out[name] = {"refusing_harmful": float((s[:n] > 0).float().mean()), "refusing_harmless": float((s[n:] > 0).float().mean()),
                     "score_harmful": float(s[:n].mean()), "score_harmless": float(s[n:].mean())}
    z = out["zero"]
    if z["refusing_harmful"] < 0.5 and z["refusing_harmless"] < 0.5:
        out["mechanism"] = "refuses on detecting harm: with these heads zeroed it complies with both labels"
    elif z["refusing_harmful"] >= 0.5 and z["refusing_harmless"] >= 0.5:
        out["mechanism"] = "refuses by default, complies on detecting a harmless request: with these heads zeroed it refuses both"
    else:
        out["mechanism"] = ("unresolved: with these heads zeroed the model still tells harmful from harmless "
                            f"({z['refusing_harmful']:.0%} / {z['refusing_harmless']:.0%} refused), so other "
                            "components carry the signal too"
                            + ("; the heads were found by flipping with the other label's mean"
                               if cfg.reference == "opposite" and cfg.method != "zero" else ""))
    return out

