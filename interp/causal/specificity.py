"""Specificity of a head set's ablation: how much else it changes.

A set whose ablation removes refusal is a candidate for "the heads that carry refusal" only if it
leaves the rest of the model's behaviour alone. An early head whose output every later layer
reads can remove refusal by breaking the model: lower refusal is then one symptom among many.
Specificity measures that: the KL divergence of the next-token distribution (last position,
nats) from the unablated model on held-out prompts whose behaviour the flip should not change (the
harmless prompts for the "refusal" flip, the harmful ones for "compliance"), under the set's
ablation, against random sets of the same size drawn from the other heads, ablated the same way.
The recommendation reads it on the off-target prompts the flip leaves alone (`untouched`): a
harmless prompt the model over-refuses changes under a refusal flip by design.

A set whose KL is far above the random sets' (`SpecificityConfig`: the lower end of its interval
above `ratio` times the random sets' 95th percentile and above `min_kl` nats) is labelled
"disruptive": it is not reported as refusal heads and not recommended with confidence.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import torch

from interp.errors import InputError
from interp.model import ChatModel
from interp.prompts import PromptSet
from interp.stats import bootstrap_mean
from interp.causal.heads import Head, all_heads, check_heads
from interp.causal.runner import ablation_scores


@dataclass(frozen=True)
class SpecificityConfig:
    """`n_random` random sets of the set's size; disruptive when the set's mean KL has its interval's
    lower end above `ratio` x the random sets' 95th percentile and above `min_kl` nats."""

    n_random: int = 20
    ratio: float = 4.0
    min_kl: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.n_random, int) or self.n_random < 2:
            raise InputError(f"n_random must be an integer of at least 2 (random sets for the null), got {self.n_random!r}")
        if not self.ratio > 0 or not self.min_kl >= 0:
            raise InputError(f"ratio must be > 0 and min_kl >= 0, got {self.ratio} and {self.min_kl}")


def off_target(flip: str, harmful: PromptSet, harmless: PromptSet) -> tuple[str, PromptSet]:
    """The prompts a flip should leave alone: harmless for "refusal", harmful for "compliance"."""
    if flip not in ("refusal", "compliance"):
        raise InputError(f"unknown flip {flip!r}; choose 'refusal' or 'compliance'")
    return ("harmless", harmless) if flip == "refusal" else ("harmful", harmful)


def untouched(model: ChatModel, flip: str, prompts: PromptSet, min_prompts: int = 8) -> tuple[PromptSet, str]:
    """The off-target prompts whose behaviour the flip does not touch, and how many they are: for
    "refusal", the harmless prompts the unablated model does not lean to refuse (refusal score <= 0);
    for "compliance", the harmful ones it leans to refuse. Removing an over-refusal of a harmless
    prompt is the refusal flip itself, not a side effect: heads that carry refusal and also cause
    some over-refusal would read as disruptive if those prompts counted. With fewer than
    `min_prompts` such prompts, all of them (and the text says so)."""
    if flip not in ("refusal", "compliance"):
        raise InputError(f"unknown flip {flip!r}; choose 'refusal' or 'compliance'")
    s = ablation_scores(model, prompts, [[]], "zero")[0]  # the unablated model's score per prompt
    keep = (s <= 0) if flip == "refusal" else (s > 0)
    k, n = int(keep.sum()), len(prompts)
    label = "harmless" if flip == "refusal" else "harmful"
    if k == n:
        return prompts, f"{n} {label} prompts"
    if k < min_prompts:
        return prompts, (f"{n} {label} prompts (all of them: only {k} {'comply' if flip == 'refusal' else 'refuse'} "
                         "unablated, too few to leave the others out)")
    kept = PromptSet(f"{prompts.name}:untouched", tuple(p for p, ok in zip(prompts, keep.tolist()) if ok), prompts.source)
    verb = "does not lean to refuse" if flip == "refusal" else "leans to refuse"
    return kept, f"{k} of {n} {label} prompts (those the unablated model {verb})"


def specificity(model: ChatModel, heads: Sequence[Head], prompts: PromptSet, method: str = "mean", reference=None,
                seed: int = 0, positions: str = "position", cfg: SpecificityConfig = SpecificityConfig(),
                what: str = "held-out prompts") -> dict:
    """KL of the next-token distribution under the ablation of `heads` on `prompts`, against random
    sets of the same size (one batched pass). Returns {"kl": {"mean", "n", "ci95"} over prompts,
    "random": {"mean", "n", "ci95"} over the random sets' mean KLs, "random_q95", "random_max",
    "ratio", "disruptive", "verdict", "prompts"}."""
    heads = check_heads(model, heads)
    prompts = prompts.require(f"specificity set ({what})")
    rng = random.Random(cfg.seed)
    others = [h for h in all_heads(model) if h not in heads]
    if len(others) < len(heads):
        raise InputError(f"too few other heads ({len(others)}) to draw random sets of {len(heads)}")
    null = [rng.sample(others, len(heads)) for _ in range(cfg.n_random)]
    kl = ablation_scores(model, prompts, [heads] + null, method, reference, seed, positions, metric="kl")
    own = bootstrap_mean(kl[0], seed=cfg.seed)
    means = kl[1:].mean(1)
    q95, mx = float(means.quantile(0.95)), float(means.max())
    bound = max(cfg.ratio * q95, cfg.min_kl)
    lo = own["ci95"][0] if own["ci95"] else own["mean"]
    disruptive = lo > bound
    ratio = own["mean"] / q95 if q95 > 0 else float("inf")
    verdict = (f"disruptive: ablating {heads} changes the next-token distribution on {what} by KL {own['mean']:.3g} "
               f"nats (95% CI {own['ci95'][0]:.3g} to {own['ci95'][1]:.3g}), {ratio:.1f}x the random sets' 95th "
               f"percentile ({q95:.3g}): it breaks the model more than it removes one behaviour"
               if disruptive and own["ci95"] else
               f"specific: KL {own['mean']:.3g} nats on {what}, against random sets' 95th percentile {q95:.3g} "
               f"(disruptive above {bound:.3g})")
    return {"kl": own, "random": bootstrap_mean(means, seed=cfg.seed), "random_q95": round(q95, 4),
            "random_max": round(mx, 4), "ratio": round(ratio, 3) if ratio != float("inf") else None,
            "threshold": round(bound, 4), "disruptive": bool(disruptive), "verdict": verdict, "prompts": what,
            "method": method, "heads": [list(h) for h in heads]}


def kl_per_prompt(model: ChatModel, heads: Sequence[Head], prompts: PromptSet, method: str = "mean", reference=None,
                  seed: int = 0, positions: str = "position") -> torch.Tensor:
    """KL (nats) per prompt of the next-token distribution under the ablation of `heads`."""
    return ablation_scores(model, prompts, [check_heads(model, heads)], method, reference, seed, positions, metric="kl")[0]
