"""Greedy search for the smallest head set whose ablation flips behaviour, and what it says.

`search_heads` finds the smallest head set whose ablation removes refusal on harmful prompts, and
the smallest whose ablation removes compliance on harmless ones: a model may refuse because it
detects harm, or refuse by default and comply because it detects a harmless request. Which mean it
ablates with (label-free, or the other label's) is part of the answer: see `SearchConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from time import perf_counter

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp.errors import InputError
from interp.model import ChatModel
from interp.progress import step_line
from interp.prompts import PromptSet
from interp.scoring import RefusalJudge
from interp.causal.ablate import METHODS, HeadReference, head_reference
from interp.intervention import Intervention
from interp.causal.attribution import HeadGradients, head_gradients
from interp.causal.heads import Head, all_heads
from interp.causal.runner import FAST_GEN, ablation_refusals, ablation_scores

# the two flips a search looks for (the word "direction" means only a residual `Direction`)
FLIPS = {
    # name: (label whose behaviour the ablation should flip, sign of the wanted change in refusal)
    "refusal": ("harmful", -1.0),  # ablation removes refusal of harmful requests: the heads detect harm
    "compliance": ("harmless", +1.0),  # ablation removes compliance: the heads detect harmless requests
}
REFERENCE_POLICIES = ("auto", "balanced", "opposite")


@dataclass(frozen=True)
class SearchConfig:
    """Greedy search for the smallest head set whose ablation flips behaviour.

    Heads are chosen by the refusal score (all candidates in one batched pass per step) and each
    chosen set is checked by the judge on greedy generations; the search stops once the judged
    refusal rate has moved by `target` (0.5: half of the prompts changed behaviour), when no head
    helps any more, or after `max_heads`.

    The single-head scan that seeds the greedy search is estimated for every head by attribution
    patching (one forward and one backward pass, `interp.causal.attribution`); only the `top_k`
    heads with the largest estimated effect (default 8) are ablated exactly, and the best starts
    the set. Each later step estimates again around the run with the set so far ablated (where
    heads masked by saturation show their effect) and measures its `top_k_step` (4) best.
    `exhaustive=True` ablates every head exactly (one pass per head: 270 on SmolLM2-135M, 1,024 on
    a 7B model) and searches the `n_candidates` best, measuring every one at every step.

    `reference` says what mean/resample ablation replaces a head's output with:
    ``"balanced"``: the mean over harmful and harmless prompts together. It carries no label, so
    it removes the heads' signal; the flip that succeeds then says how the model decides
    (refuses on detecting harm, or complies on detecting a harmless request).
    ``"opposite"``: the other label's prompts, as in IOI-style mean ablation over a distribution
    that lacks the signal under test: on harmful prompts a head's output is replaced by its mean
    over harmless ones (and conversely). It asks "does this head carry the signal?" and succeeds
    even when other heads carry it too (redundancy), but cannot tell the two flips apart:
    a two-sided signal flips both ways.
    ``"auto"`` (default): balanced first; if neither flip succeeds, opposite (recorded in `tried`)."""

    max_heads: int = 4
    target: float = 0.5
    min_gain: float = 0.05  # log-odds: stop when the best next head moves the mean score by less
    n_candidates: int = 16  # heads kept per flip after an exhaustive single-head scan (largest effects)
    method: str = "mean"
    positions: str = "position"  # reference values per position from the end (interp.causal.ablate); "last", "all"
    reference: str = "auto"
    seed: int = 0
    top_k: int = 8  # heads ablated exactly after the attribution estimate (ignored when exhaustive)
    top_k_step: int = 4  # at each later greedy step: heads re-estimated around the set so far, then measured
    exhaustive: bool = False

    def __post_init__(self) -> None:
        if self.max_heads < 1:
            raise InputError(f"max_heads must be at least 1, got {self.max_heads}")
        if not 0 < self.target <= 1:
            raise InputError(f"target must be in (0, 1], got {self.target}")
        if self.method not in METHODS:
            raise InputError(f"unknown ablation method {self.method!r}; choose one of {METHODS}")
        if self.reference not in REFERENCE_POLICIES:
            raise InputError(f"unknown reference policy {self.reference!r}; choose one of {REFERENCE_POLICIES}")
        for name in ("top_k", "top_k_step"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise InputError(f"{name} must be a positive integer (heads ablated exactly), got {v!r}")


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


@dataclass(frozen=True)
class FlipSearch:
    flip: str  # "refusal" or "compliance" (see FLIPS)
    heads: list[Head]
    steps: list[dict]  # per added head: the set so far, flipped fraction, mean score, judged refusal rate
    rate_before: float
    rate_after: float
    success: bool  # the judged rate moved by at least the target
    note: str = ""  # why the search did not run, when it did not
    n: int = 0  # prompts the judged rates are over
    flipped_by_score: float | None = None  # share of prompts whose refusal score changed sign under the final set
    max_new_tokens: int | None = None  # answer length the judge read
    target: float = 0.5

    @property
    def effect(self) -> float:
        """Judged refusal-rate change the wanted way (positive = behaviour flipped)."""
        return FLIPS[self.flip][1] * (self.rate_after - self.rate_before)

    @property
    def status(self) -> str:
        """"flipped" (the judge says so), "not flipped" (neither the judge nor the score), or
        "undecided": the one-pass score flips at least the target share of prompts and the judge
        does not (or the reverse): the answers read differ from their first token, so neither
        number alone is a verdict (read the completions, or judge longer answers)."""
        by_score = self.flipped_by_score is not None and self.flipped_by_score >= self.target
        if self.success:
            return "flipped" if by_score or self.flipped_by_score is None else "undecided"
        return "undecided" if by_score else "not flipped"

    def agreement(self) -> str:
        if self.flipped_by_score is None or not self.heads:
            return ""
        if self.status != "undecided":
            return (f"score and judge agree: {self.flipped_by_score:.0%} of prompts flipped by score, judged rate "
                    f"{self.rate_before:.2f} -> {self.rate_after:.2f} at {self.max_new_tokens} new tokens")
        return (f"score and judge disagree: the refusal score flips {self.flipped_by_score:.0%} of the {self.n} prompts, "
                f"the judged rate moves {self.rate_before:.2f} -> {self.rate_after:.2f} at {self.max_new_tokens} new "
                "tokens; not called a failure: read the completions or judge longer answers")

    def to_dict(self) -> dict:
        from interp.stats import rate_record

        # the key "direction" is kept: reports written before name the flip so
        rec = {}
        if self.n:
            rec = {"rate_before_record": rate_record(round(self.rate_before * self.n), self.n),
                   "rate_after_record": rate_record(round(self.rate_after * self.n), self.n)}
        return {"direction": self.flip, "heads": [list(h) for h in self.heads], "success": self.success,
                "status": self.status, "agreement": self.agreement(), "flipped_by_score": self.flipped_by_score,
                "max_new_tokens": self.max_new_tokens, "n": self.n,
                "rate_before": self.rate_before, "rate_after": self.rate_after, "effect": self.effect, **rec,
                "steps": self.steps, **({"note": self.note} if self.note else {})}


@dataclass(frozen=True)
class HeadSearch:
    """Both flips' searches and the single-head scans they started from."""

    refusal: FlipSearch
    compliance: FlipSearch
    # per flip: wanted-way change of the mean score per head; exact where `measured`, the
    # attribution estimate elsewhere
    single: dict[str, Float[Tensor, "layer head"]]
    references: dict  # per flip: the HeadReference ablated with (None for zero-ablation)
    cfg: SearchConfig
    neutral: dict = field(default_factory=dict)  # the best set under label-free ablation, and what it says
    tried: list = field(default_factory=list)  # summaries of reference policies tried before this one ("auto")
    estimate: dict[str, Float[Tensor, "layer head"]] = field(default_factory=dict)  # attribution estimate, every head
    measured: dict[str, Bool[Tensor, "layer head"]] = field(default_factory=dict)  # heads ablated exactly
    clean: tuple | None = field(default=None, repr=False)  # (attribution pass, judged clean rates): reusable

    @property
    def best(self) -> FlipSearch:
        """The flip that succeeded (fewest heads, then largest effect)."""
        return max((self.refusal, self.compliance), key=lambda d: (d.success, -len(d.heads) if d.success else 0, d.effect))

    def estimate_quality(self) -> dict:
        """Per flip: Spearman of the attribution estimate against the exact single-head
        effects over the heads measured exactly (all of them with `exhaustive`), and whether the
        exact scan's best heads are among the estimate's top k."""
        from interp.stats import spearman

        out = {}
        for d, est in self.estimate.items():
            m = self.measured[d]
            exact = self.single[d][m]
            row = {"n_exact": int(m.sum()), "spearman": spearman(est[m], exact) if int(m.sum()) >= 3 else float("nan")}
            if bool(m.all()):  # exhaustive: where the estimate's top k stands against the exact top heads
                k = self.cfg.top_k
                top_est = set(est.flatten().argsort(descending=True)[:k].tolist())
                top_exact = self.single[d].flatten().argsort(descending=True)[:self.cfg.max_heads].tolist()
                row[f"exact_top{self.cfg.max_heads}_in_estimate_top{k}"] = sum(i in top_est for i in top_exact)
                row["chosen_in_estimate_top_k"] = all(h[0] * est.shape[1] + h[1] in top_est
                                                      for h in getattr(self, d).heads)
            out[d] = row
        return out

    def to_dict(self) -> dict:
        return {"best": self.best.flip, "method": self.cfg.method, "reference": self.cfg.reference,
                "refusal": self.refusal.to_dict(), "compliance": self.compliance.to_dict(), "neutral": self.neutral,
                "tried": self.tried, "exhaustive": self.cfg.exhaustive, "top_k": self.cfg.top_k,
                "estimate": self.estimate_quality()}


def single_head_ablation_effects(model: ChatModel, prompts, flip: str, method: str = "mean", reference=None, seed: int = 0,
                        positions: str = "position") -> Float[Tensor, "layer head"]:
    """Change of the mean refusal score when each head alone is ablated (exactly, one head per
    replica), signed so that positive is the flip's wanted way (refusal: lower score on
    harmful prompts; compliance: higher score on harmless ones)."""
    return _single_scan(model, prompts, flip, method, reference, seed, positions)[0]


def _estimate(model: ChatModel, grads: HeadGradients, flip: str, method: str, ref: HeadReference | None) -> Tensor:
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
                      max_new_tokens, grads: HeadGradients) -> tuple[FlipSearch, Tensor, Tensor, Tensor]:
    label, sign = FLIPS[flip]
    estimate = _estimate(model, grads, flip, cfg.method, ref)
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
    if cfg.exhaustive:
        single, scan = _single_scan(model, prompts, flip, cfg.method, ref, cfg.seed, cfg.positions)
        measured = torch.ones_like(single, dtype=torch.bool)
        row_of = {h: 1 + i for i, h in enumerate(all_heads(model))}
        order = single.flatten().argsort(descending=True).tolist()
        cands = [divmod(i, H) for i in order[:max(cfg.n_candidates, cfg.max_heads)]]
    else:  # estimate every head, measure the top k exactly, search among those
        top = [divmod(i, H) for i in estimate.flatten().argsort(descending=True)[:cfg.top_k].tolist()]
        exact, scan = _single_scan(model, prompts, flip, cfg.method, ref, cfg.seed, cfg.positions, heads=top)
        single, measured = estimate.clone(), torch.zeros_like(estimate, dtype=torch.bool)
        for h, e in zip(top, exact.tolist()):
            single[h], measured[h] = e, True
        row_of = {h: 1 + i for i, h in enumerate(top)}
        cands = sorted(top, key=lambda h: -float(single[h]))

    def key(row: Tensor) -> tuple[float, float]:  # (share of prompts flipped by score, mean wanted-way score)
        return float(((sign * row) > 0).float().mean()), float(sign * row.mean())

    current: list[Head] = []
    steps: list[dict] = []
    best_key, rate, success = key(scan[0]), rate0, False
    n_steps = min(cfg.max_heads, len(cands) if cfg.exhaustive else model.n_layers * H)
    t_steps = perf_counter()
    for step in range(n_steps):
        if step == 0:  # the single-head scan already holds these rows
            options = cands
            s = scan[[row_of[h] for h in options]]
        else:
            if cfg.exhaustive:
                options = [h for h in cands if h not in current]
            else:
                # estimate again around the run with the current set ablated: a head whose effect
                # only shows once another is gone (saturated downstream) is found at this step
                g = head_gradients(model, prompts, hooks=Intervention.ablate_heads(current, cfg.method, ref, cfg.seed).hooks(model))
                est = _estimate(model, g, flip, cfg.method, ref)
                for h in current:
                    est[h] = -float("inf")
                options = [divmod(i, H) for i in est.flatten().argsort(descending=True)[:cfg.top_k_step].tolist()
                           if divmod(i, H) not in current]
            if not options:
                break
            s = ablation_scores(model, prompts, [current + [h] for h in options], cfg.method, ref, cfg.seed, cfg.positions,
                                base=current)
        keys = [key(row) for row in s]
        j = max(range(len(options)), key=lambda i: keys[i])
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
                      "mean_score": sign * best_key[1], "refusal_rate": rate if judged else None})
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
                       max_new_tokens, cfg.target)
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
            model, prompts, flip, cfg, refs[flip], rates[label], judge, max_new_tokens, grads.rows(rows[label]))
    found = HeadSearch(results["refusal"], results["compliance"], single, refs, cfg, estimate=estimate, measured=measured)
    return replace(found, neutral=_neutral(model, found.best.heads, harmful, harmless, cfg, grads))


def _neutral(model: ChatModel, heads: list[Head], harmful: PromptSet, harmless: PromptSet, cfg: SearchConfig,
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
                            "components carry the signal too; the heads were found by flipping with the other label's mean")
    return out

