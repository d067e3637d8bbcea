"""Specificity of a head set's ablation: how much else it changes.

A set whose ablation removes refusal is a candidate for "the heads that carry refusal" only if it
leaves the rest of the model's behaviour alone. An early head whose output every later layer
reads can remove refusal by breaking the model: lower refusal is then one symptom among many.
Specificity measures that on held-out prompts whose behaviour the flip should not change (the
harmless prompts for the "refusal" flip, the harmful ones for "compliance"), and only those the
flip leaves alone (`untouched`: a harmless prompt the model over-refuses changes under a refusal
flip by design), under the set's ablation, against random sets of the same size drawn from the
other heads, ablated the same way.

The measure (`SpecificityConfig.measure`, default "ce") is the rise of the cross-entropy of the
unablated model's own greedy answers to those prompts (nats per answer token, teacher forced):
does the ablated model still say what it said? The next-token KL at the last prompt position
("kl", always reported) reads only the opening token, where the refuse/comply decision itself
lives; on the planted benchmark it called every planted head disruptive (docs/causal.md, section 6).

A set is "disruptive" when the lower end of its mean's interval is above `ratio` times the random
sets' 95th percentile and above the floor (`min_ce` nats per token, or `min_kl` nats): it is not
reported as refusal heads and not recommended with confidence.
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
from interp.causal.answers import _answer_slots, ablated_answer_reads, own_answers, reads_kept  # noqa: F401  (re-exported)
from interp.causal.heads import Head, all_heads, check_heads
from interp.causal.runner import ablation_scores


@dataclass(frozen=True)
class SpecificityConfig:
    """`n_random` random sets of the set's size; disruptive when the set's mean (`measure`: "ce", the
    rise of the cross-entropy of the model's own `answer_tokens`-token answers, or "kl", the
    next-token KL) has its interval's lower end above `ratio` x the random sets' 95th percentile and
    above the floor: `min_ce` nats per answer token (the model finds its own answer e^0.5 = 1.65x
    less likely per token; set from the planted benchmark's measurements, where planted heads read
    0.13-0.33 and sets that break the model 0.70 and more: docs/causal.md), or `min_kl` nats."""

    n_random: int = 20
    ratio: float = 4.0
    min_kl: float = 0.1
    seed: int = 0
    measure: str = "ce"
    min_ce: float = 0.5
    answer_tokens: int = 24

    def __post_init__(self) -> None:
        if self.measure not in ("ce", "kl"):
            raise InputError(f"unknown specificity measure {self.measure!r}; choose 'ce' (own answers) or 'kl' (next token)")
        if not isinstance(self.answer_tokens, int) or self.answer_tokens < 1 or not self.min_ce >= 0:
            raise InputError(f"answer_tokens must be a positive integer and min_ce >= 0, got {self.answer_tokens!r} "
                             f"and {self.min_ce!r}")
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


def off_target_reference(model: ChatModel, method: str, prompts: PromptSet, reference, positions: str = "position"):
    """The reference to ablate with on off-target `prompts`: under resample, their own label's
    outputs (a balanced pool would hand harmless prompts harmful prompts' outputs, and a head that
    carries the label would then look disruptive); otherwise the search's `reference`."""
    from interp.causal.ablate import head_reference

    return head_reference(model, prompts, positions) if method == "resample" else reference


def null_bound(means: torch.Tensor, cfg: SpecificityConfig, floor: float) -> tuple[float, float]:
    """(95th percentile of the random sets' means, the bound a set is disruptive above)."""
    q95 = float(means.quantile(0.95))
    return q95, max(cfg.ratio * q95, floor)


def answer_reads(model: ChatModel, prompts: PromptSet, sets: Sequence[Sequence[Head]], method: str = "mean",
                 reference=None, seed: int = 0, positions: str = "position", answer_tokens: int = 24
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """([set, prompt] rise of the cross-entropy (nats per answer token) of the unablated model's own
    greedy answers to `prompts`, NaN where the answer is empty; [set, prompt] next-token KL at the
    last prompt position) when each head set is ablated, from one teacher-forced pass
    (`interp.causal.answers`); per-position references aligned as in cached generation (answers
    shorter than the longest are padded, and the padding not counted, so that every prompt ends at
    the same offset)."""
    from interp.causal.ablate import resolve_reference
    from interp.causal.runner import stacked_ablations

    ref = resolve_reference(model, method, reference, positions)
    values = None if ref is None else (ref.mean if method == "mean" else ref.z)
    per_pos = values is not None and values.ndim == (5 if method == "resample" else 4)
    answers = own_answers(model, prompts, answer_tokens)
    n = max(1, max(len(a) for a in answers))
    sets = [check_heads(model, hs, allow_empty=True) for hs in sets]
    vals = _answer_slots(values, per_pos, method == "resample", n)
    key = (method, _digest(values), seed, tuple(p.text for p in prompts), answer_tokens)
    return reads_kept(model, key, sets,
                      lambda todo: ablated_answer_reads(model, prompts, todo, stacked_ablations(todo, method, vals, seed),
                                                        answers))


def _digest(values) -> str | None:
    import hashlib

    return None if values is None else hashlib.sha256(values.detach().float().cpu().numpy().tobytes()).hexdigest()


def null_sets(model: ChatModel, heads: Sequence[Head], n: int, seed: int) -> list[list[Head]]:
    """`n` random sets of `len(heads)` heads that share none with `heads`, drawn from one stream per
    set size and seed: two candidate sets of a size get the same random sets wherever those miss
    both, so a set read for one recommendation's null is not read again for the next."""
    k, every, mine = len(heads), all_heads(model), set(map(tuple, heads))
    if len(every) - len(mine) < k:
        raise InputError(f"too few other heads ({len(every) - len(mine)}) to draw random sets of {k}")
    rng, out = random.Random(f"specificity-null:{seed}:{k}"), []
    while len(out) < n:
        s = rng.sample(every, k)
        if not mine & set(s):
            out.append(s)
    return out


def answer_ce_increase(model: ChatModel, prompts: PromptSet, sets: Sequence[Sequence[Head]], method: str = "mean",
                       reference=None, seed: int = 0, positions: str = "position", answer_tokens: int = 24
                       ) -> torch.Tensor:
    """[set, prompt]: the cross-entropy part of `answer_reads`."""
    return answer_reads(model, prompts, sets, method, reference, seed, positions, answer_tokens)[0]


def specificity(model: ChatModel, heads: Sequence[Head], prompts: PromptSet, method: str = "mean", reference=None,
                seed: int = 0, positions: str = "position", cfg: SpecificityConfig = SpecificityConfig(),
                what: str = "held-out prompts") -> dict:
    """How much else the ablation of `heads` changes on `prompts`, against random sets of the same
    size: the rise of the cross-entropy of the model's own answers ("ce", with `cfg.measure="ce"`)
    and the next-token KL ("kl"), each {"mean", "n", "ci95"} over prompts; "random": the random
    sets' means of the deciding measure, "random_q95", "random_max", "ratio", "threshold",
    "disruptive", "verdict", "measure", "prompts"."""
    heads = check_heads(model, heads)
    prompts = prompts.require(f"specificity set ({what})")
    null = null_sets(model, heads, cfg.n_random, cfg.seed)
    vals = None
    if cfg.measure == "ce":  # both measures from one teacher-forced pass over the model's own answers
        vals, kl = answer_reads(model, prompts, [heads] + null, method, reference, seed, positions, cfg.answer_tokens)
        vals = vals[:, ~vals[0].isnan()]
        vals = vals if vals.shape[1] else None  # every answer empty: the next-token KL decides
    else:
        kl = ablation_scores(model, prompts, [heads] + null, method, reference, seed, positions, metric="kl")
    own_kl = bootstrap_mean(kl[0], seed=cfg.seed)
    if vals is not None:
        floor, unit, name = cfg.min_ce, "nats per answer token", "cross-entropy of its own answers rises by"
    else:
        vals, floor, unit, name = kl, cfg.min_kl, "nats", "next-token KL"
    own = bootstrap_mean(vals[0], seed=cfg.seed)
    means = vals[1:].mean(1)
    (q95, bound), mx = null_bound(means, cfg, floor), float(means.max())
    lo = own["ci95"][0] if own["ci95"] else own["mean"]
    disruptive = lo > bound
    ratio = own["mean"] / q95 if q95 > 0 else float("inf")
    verdict = (f"disruptive: ablating {heads} on {what}: {name} {own['mean']:.3g} {unit} (95% CI "
               f"{own['ci95'][0]:.3g} to {own['ci95'][1]:.3g}), {ratio:.1f}x the random sets' 95th percentile "
               f"({q95:.3g}): it breaks the model more than it removes one behaviour"
               if disruptive and own["ci95"] else
               f"specific: {name} {own['mean']:.3g} {unit} on {what}, against random sets' 95th percentile "
               f"{q95:.3g} (disruptive above {bound:.3g}); next-token KL {own_kl['mean']:.3g} nats")
    return {"kl": own_kl, **({"ce": own} if vals is not kl else {}), "measure": "ce" if vals is not kl else "kl",
            "random": bootstrap_mean(means, seed=cfg.seed), "random_q95": round(q95, 4),
            "random_max": round(mx, 4), "ratio": round(ratio, 3) if ratio != float("inf") else None,
            "threshold": round(bound, 4), "disruptive": bool(disruptive), "verdict": verdict, "prompts": what,
            "method": method, "heads": [list(h) for h in heads]}


def kl_per_prompt(model: ChatModel, heads: Sequence[Head], prompts: PromptSet, method: str = "mean", reference=None,
                  seed: int = 0, positions: str = "position") -> torch.Tensor:
    """KL (nats) per prompt of the next-token distribution under the ablation of `heads`."""
    return ablation_scores(model, prompts, [check_heads(model, heads)], method, reference, seed, positions, metric="kl")[0]


class DisruptionGuard:
    """Keeps a greedy head search off sets whose ablation breaks the model. A candidate set (the set
    so far plus one head) is skipped when its ablation changes the next-token distribution of the
    off-target prompts the flip leaves alone (1) far more than random sets of its size do (the
    lower end of its mean KL's interval above `ratio` x their 95th percentile and above `min_kl`),
    and (2) by more than `leak` times its mean KL on the target prompts it is meant to flip: a set
    that carries one behaviour moves its own prompts far more than the others.

    Measured (mean KL off target / on target): the planted `mid2` heads, zero-ablated, 0.47 / 1.88
    for (13, 2) and 1.24 / 3.50 for the pair (0.25, 0.35): kept, though (1) alone skipped them; the
    early pair the unguarded search chose there 4.57 / 2.65 (zero) and 4.08 / 1.70 (mean): skipped;
    the organism's harm detectors 0.03-0.05 of their target KL; its disruptive fixture 0.48 (other
    label's mean) and 0.97 (zero): skipped. Random sets of a size are drawn once and ride in the
    same batched pass as the first candidates of that size; the target side is read only for the
    sets (1) flags."""

    def __init__(self, model: ChatModel, prompts: PromptSet, target: PromptSet, what: str, method: str = "mean",
                 reference=None, seed: int = 0, positions: str = "position",
                 cfg: SpecificityConfig = SpecificityConfig(n_random=10), max_prompts: int = 16, target_reference=None,
                 leak: float = 0.4):
        if not 0 < leak:
            raise InputError(f"leak must be > 0 (off-target KL as a share of target KL), got {leak}")
        self.leak = leak
        self.model, self.method, self.reference, self.seed, self.positions, self.cfg = \
            model, method, reference, seed, positions, cfg
        self.prompts, self.target = prompts[:max_prompts], target[:max_prompts]
        self.target_reference = reference if target_reference is None else target_reference
        self.what = what if len(prompts) <= max_prompts else f"the first {max_prompts} of {what}"
        self.bounds: dict[int, float] = {}  # set size -> KL above which a set is far from random sets

    def _kl(self, prompts: PromptSet, sets: list, reference) -> torch.Tensor:
        return ablation_scores(self.model, prompts, sets, self.method, reference, self.seed, self.positions, metric="kl")

    def disruptive(self, sets: Sequence[Sequence[Head]]) -> list[dict]:
        """Per set: {"kl": mean KL off target, "lo": its interval's lower end, "bound", "kl_target",
        "disruptive"}."""
        rng = random.Random(self.cfg.seed)
        new = sorted({len(s) for s in sets} - set(self.bounds))
        heads = all_heads(self.model)
        null = {k: [rng.sample(heads, k) for _ in range(self.cfg.n_random)] for k in new}
        kl = self._kl(self.prompts, [list(s) for s in sets] + [hs for k in new for hs in null[k]], self.reference)
        i = len(sets)
        for k in new:
            self.bounds[k] = null_bound(kl[i:i + self.cfg.n_random].mean(1), self.cfg, self.cfg.min_kl)[1]
            i += self.cfg.n_random
        out, far = [], []
        for row, s in zip(kl[:len(sets)], sets):
            b = bootstrap_mean(row, seed=self.cfg.seed)
            lo = b["ci95"][0] if b["ci95"] else b["mean"]
            out.append({"kl": b["mean"], "lo": lo, "bound": round(self.bounds[len(s)], 4)})
            far.append(lo > self.bounds[len(s)])
        # only the sets far from random need the target side: one more pass, over those alone
        idx = [j for j, f in enumerate(far) if f]
        on = self._kl(self.target, [list(sets[j]) for j in idx], self.target_reference).mean(1).tolist() if idx else []
        for j, o in zip(idx, on):
            out[j]["kl_target"] = round(o, 4)
        for j, row in enumerate(out):
            row["disruptive"] = bool(far[j] and row["kl"] > self.leak * row.get("kl_target", float("inf")))
        return out

    def to_dict(self) -> dict:
        return {"prompts": self.what, "target_prompts": len(self.target), "method": self.method,
                "n_random": self.cfg.n_random, "ratio": self.cfg.ratio, "leak": self.leak,
                "bounds": {str(k): round(v, 4) for k, v in sorted(self.bounds.items())},
                "rule": "skipped when the off-target KL is far above random sets' and above leak x the KL on the target prompts"}
