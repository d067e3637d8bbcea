"""Choosing the heads to steer: `recommend_heads` takes the search's best set and says whether it
is recommended with confidence (it flips judged behaviour, moves the refusal score by a real
amount, beats every one of many random head sets of the same size, and is specific: not
"disruptive", `interp.causal.specificity`), with every method's evidence per head."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from torch import Tensor

from interp.errors import InputError
from interp.model import ChatModel
from interp.prompts import PromptSet
from interp.causal.runner import ablation_scores
from interp.causal.search import FLIPS, FlipSearch, HeadSearch, SearchConfig, search_heads
from interp.causal.heads import Head, all_heads
from interp.causal.specificity import SpecificityConfig, off_target, off_target_reference, specificity, untouched

if TYPE_CHECKING:
    from interp.causal.compare import Comparison


# ------------------------------------------------------------------ recommendation
@dataclass(frozen=True)
class RecommendConfig:
    """When a head set counts as recommended with confidence.

    The set's ablation must (1) flip judged behaviour (the search's target, 50 points of refusal
    rate), (2) move the mean refusal score by at least `min_score_effect` log-odds, and (3) move
    it more than every one of `n_null` random head sets of the same size drawn from the other
    heads (a permutation-style null: with 20 draws, beating all is p < 0.05).

    A head of a confident set is left out of the recommendation when it adds nothing once the others
    are ablated (drop-one effect <= 0), or less than `min_share` of the set's effect while the set
    without all such heads keeps at least 1 - `min_share` of it: its effect goes through the others
    (downstream of them). On the planted mid2 variant an untrained late head, (27, 5), joined the two
    planted ones: alone it moves the score by 1.5 log-odds, with the planted heads ablated by 0.17;
    drop-one 3% of the set's effect against 19% and 40% for the planted heads (docs/causal.md)."""

    k: int = 4
    n_null: int = 20
    min_score_effect: float = 1.0
    seed: int = 0
    # the set must also be specific: not "disruptive" (interp.causal.specificity); None skips the check
    specificity: SpecificityConfig | None = SpecificityConfig()
    min_share: float = 0.1

    def __post_init__(self) -> None:
        if not 0 <= self.min_share < 1:
            raise InputError(f"min_share must be in [0, 1) (a share of the set's effect), got {self.min_share!r}")
        if not isinstance(self.k, int) or not 1 <= self.k <= 4:
            raise InputError(f"k must be an integer from 1 to 4 (heads to steer), got {self.k!r}")
        if self.n_null < 1:
            raise InputError(f"n_null must be at least 1, got {self.n_null}")


@dataclass(frozen=True)
class Recommendation:
    heads: list[Head]  # recommended with confidence (empty when none is)
    candidates: list[Head]  # the search's best set, whether or not it passed
    confident: bool
    flip: str  # "refusal" or "compliance": what the heads' ablation removes (interp.causal.search.FLIPS)
    reasons: list[str]  # why (not) confident, in words
    evidence: dict[Head, dict]  # per candidate head: every method's number
    set_effect: float  # wanted-way change of the mean refusal score (log-odds) under the set's ablation
    null: dict  # the random-set effects' summary
    search: HeadSearch | None = None
    specificity: dict = field(default_factory=dict)  # KL on off-target prompts against random sets (specificity())
    checked: FlipSearch | None = None  # the judged check of a set given to recommend_heads (`best=`), not the search's

    @property
    def disruptive(self) -> bool:
        return bool(self.specificity.get("disruptive"))

    def to_dict(self) -> dict:
        return {"heads": [list(h) for h in self.heads], "candidates": [list(h) for h in self.candidates],
                "confident": self.confident, "direction": self.flip, "reasons": self.reasons,
                "label": "disruptive" if self.disruptive else "refusal heads" if self.confident else "unconfirmed",
                "method": self.search.cfg.method if self.search is not None else None,
                "set_effect": self.set_effect, "null": self.null, "specificity": self.specificity,
                "skipped_disruptive": {f: [list(h) for h in getattr(self.search, f).skipped] for f in FLIPS}
                if self.search is not None else {},
                "evidence": [{"head": list(h), **ev} for h, ev in self.evidence.items()],
                **({"checked": self.checked.to_dict()} if self.checked is not None else {})}


def _rank_of(m: Tensor, h: Head) -> int:
    mag = m.abs().nan_to_num(-1.0).flatten()
    return int((mag > mag[h[0] * m.shape[1] + h[1]]).sum()) + 1


def _downstream(model: ChatModel, prompts: PromptSet, cand: list[Head], weak: list[Head], marg: dict, set_eff: float,
                unablated: Tensor, sign: float, scfg: SearchConfig, ref, min_share: float, reasons: list[str]) -> list[Head]:
    """The heads of a confident set that add less than `min_share` of its effect once the others are
    ablated, when the set without them (and without `weak`) keeps 1 - `min_share` of the effect
    (one more pass when more than one head would go; one head's is its drop-one row); otherwise none (they may be redundant with each other: removing all of them
    would lose the effect)."""
    small = [h for h in cand if h not in weak and marg[h] < min_share * set_eff]
    rest = [h for h in cand if h not in weak and h not in small]
    if not small or not rest or set_eff <= 0:
        return []
    removed = [h for h in cand if h not in rest]
    if len(removed) == 1:  # the set without one head: its drop-one row already measured it
        kept = set_eff - marg[removed[0]]
    else:
        s = ablation_scores(model, prompts, [rest], scfg.method, ref, scfg.seed, scfg.positions)
        kept = float((sign * (s[0] - unablated)).mean())
    shares = ", ".join(f"{h}: {marg[h] / set_eff:.0%}" for h in small)
    if kept < (1 - min_share) * set_eff:
        reasons.append(f"heads {small} add little once the others are ablated (drop-one {shares} of the set's effect), "
                       f"but without them the set keeps only {kept / set_eff:.0%} of it: kept (redundant with each other)")
        return []
    reasons.append(f"heads {small} add little once the others are ablated (drop-one {shares} of the set's effect; "
                   f"the set without them keeps {kept / set_eff:.0%}): their effect goes through the others "
                   "(downstream of them), left out")
    return small


def recommend_heads(model: ChatModel, harmful: PromptSet, harmless: PromptSet, k: int = 4,
                    search: HeadSearch | None = None, comparison: Comparison | None = None,
                    cfg: RecommendConfig | None = None, search_cfg: SearchConfig | None = None,
                    held_out: PromptSet | None = None, best: FlipSearch | None = None) -> Recommendation:
    """Choose at most `k` heads to steer, with the evidence for each, and say whether the choice is
    confident (see RecommendConfig). `search` and `comparison` reuse results already computed.
    `held_out`: prompts the flip should leave alone (harmless ones for "refusal"), for the
    specificity check; default: the search's own prompts of that label. `best`: a judged check of
    another set (`interp.causal.converge.check_set`) tested in place of the search's best set."""
    cfg = cfg or RecommendConfig(k=k)
    scfg = search_cfg or (search.cfg if search is not None else SearchConfig(max_heads=cfg.k))
    if search is None:
        search = search_heads(model, harmful, harmless, scfg)
    checked = best
    best = best or search.best
    label, sign = FLIPS[best.flip]
    prompts = harmful if label == "harmful" else harmless
    ref = search.references[best.flip]
    cand = best.heads[:cfg.k]
    reasons: list[str] = []
    if not cand:
        reasons.append("no head moved behaviour at all in either direction")
        return Recommendation([], [], False, best.flip, reasons, {}, 0.0, {}, search, checked=checked)
    # one batched pass: unablated, the set, the set minus each head, and the random null sets
    rng = random.Random(cfg.seed)
    others = [h for h in all_heads(model) if h not in cand]
    n_draw = min(len(cand), len(others))
    null_sets = [rng.sample(others, n_draw) for _ in range(cfg.n_null)] if n_draw else []
    drop_one = [[x for x in cand if x != h] for h in cand]
    rows = [[], cand] + drop_one + null_sets
    s = ablation_scores(model, prompts, rows, scfg.method, ref, scfg.seed, scfg.positions)
    eff = sign * (s - s[:1]).mean(1)  # wanted-way change of the mean score per row
    set_eff = float(eff[1])
    marg = {h: set_eff - float(eff[2 + i]) for i, h in enumerate(cand)}
    null = eff[2 + len(cand):]
    null_d = {"n": len(null_sets), "size": n_draw, "mean": float(null.mean()) if len(null) else float("nan"),
              "max": float(null.max()) if len(null) else float("nan"),
              "q95": float(null.quantile(0.95)) if len(null) else float("nan")}
    confident = True
    if best.status == "undecided":
        confident = False
        reasons.append(best.agreement())
    elif not best.success:
        confident = False
        reasons.append(f"ablating {len(cand)} head(s) moved the judged refusal rate by only {best.effect:+.2f} "
                       f"(target {scfg.target:.2f}) in the best direction ({best.flip})")
    if set_eff < cfg.min_score_effect:
        confident = False
        reasons.append(f"the set moves the mean refusal score by {set_eff:.3f} log-odds, below {cfg.min_score_effect}")
    if len(null) and set_eff <= float(null.max()):
        confident = False
        reasons.append(f"the set's effect ({set_eff:.3f}) does not beat all {len(null)} random sets of {n_draw} heads "
                       f"(max {float(null.max()):.3f})")
    weak = [h for h in cand if marg[h] <= 0]
    spec = {}
    if cfg.specificity is not None:
        _, other = off_target(best.flip, harmful, harmless)
        if held_out is not None:
            other = held_out
        sref = off_target_reference(model, scfg.method, off_target(best.flip, harmful, harmless)[1], ref, scfg.positions)
        kept, counted = untouched(model, best.flip, other)
        spec = specificity(model, cand, kept, scfg.method, sref, scfg.seed, scfg.positions, cfg.specificity,
                           what=f"{'held-out ' if held_out is not None else ''}{counted}")
        if spec["disruptive"]:
            confident = False
            reasons.append(spec["verdict"])
    if confident:
        weak += _downstream(model, prompts, cand, weak, marg, set_eff, s[0], sign, scfg, ref, cfg.min_share, reasons)
    if confident and any(marg[h] <= 0 for h in weak):
        reasons.append(f"heads {[h for h in weak if marg[h] <= 0]} add nothing to the set (drop-one effect <= 0) "
                       "and are left out")
    if confident:
        reasons.insert(0, f"ablating {cand} flips behaviour ({best.flip}: judged rate "
                          f"{best.rate_before:.2f} -> {best.rate_after:.2f}) and moves the score by {set_eff:.2f} "
                          f"log-odds, more than all {len(null)} random sets (max {null_d['max']:.2f})")
        if spec:
            reasons.insert(1, spec["verdict"])
    evidence = {}
    for h in cand:
        ev = {"single_ablation": float(search.single[best.flip][h]),
              "single_ablation_rank": _rank_of(search.single[best.flip], h), "drop_one": marg[h],
              "drop_one_share": marg[h] / set_eff if set_eff else None}
        if comparison is not None:
            for name, m in comparison.maps.items():
                v = float(m[h])
                ev[name] = None if math.isnan(v) else v
                ev[f"{name}_rank"] = _rank_of(m, h)
        evidence[h] = ev
    heads = [h for h in cand if h not in weak] if confident else []
    return Recommendation(heads, cand, confident, best.flip, reasons, evidence, set_eff, null_d, search, spec, checked)
