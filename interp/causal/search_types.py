"""What a head search is asked and what it finds: the two flips (`FLIPS`), `SearchConfig`, and the
results `FlipSearch` (one flip) and `HeadSearch` (both, with the single-head scans). The search
itself is `interp.causal.search`."""

from __future__ import annotations

from dataclasses import dataclass, field

from jaxtyping import Bool, Float
from torch import Tensor

from interp.errors import InputError
from interp.causal.ablate import METHODS
from interp.causal.heads import Head

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
    # skip heads whose addition makes the set disruptive (interp.causal.specificity.DisruptionGuard);
    # when a whole round is, measure up to `guard_rounds` more rounds of heads by the estimate.
    # Off by default: on the planted benchmark it found mid2's heads but skipped the planted head of
    # early1 and late2 (docs/causal.md, section 6)
    guard: bool = False
    guard_rounds: int = 2

    def __post_init__(self) -> None:
        if self.max_heads < 1:
            raise InputError(f"max_heads must be at least 1, got {self.max_heads}")
        if not 0 < self.target <= 1:
            raise InputError(f"target must be in (0, 1], got {self.target}")
        if self.method not in METHODS:
            raise InputError(f"unknown ablation method {self.method!r}; choose one of {METHODS}")
        if self.reference not in REFERENCE_POLICIES:
            raise InputError(f"unknown reference policy {self.reference!r}; choose one of {REFERENCE_POLICIES}")
        if not isinstance(self.guard_rounds, int) or self.guard_rounds < 0:
            raise InputError(f"guard_rounds must be a non-negative integer, got {self.guard_rounds!r}")
        for name in ("top_k", "top_k_step"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise InputError(f"{name} must be a positive integer (heads ablated exactly), got {v!r}")


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
    skipped: list[Head] = field(default_factory=list)  # heads the disruption guard kept out of the set
    guard: dict = field(default_factory=dict)  # the guard's prompts and KL bounds per set size

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
                "steps": self.steps, **({"note": self.note} if self.note else {}),
                **({"skipped_disruptive": [list(h) for h in self.skipped]} if self.skipped else {}),
                **({"guard": self.guard} if self.guard else {})}


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
