"""One probing pass over a prompt set, shared by the CLI and the demo: label the prompts, capture
head outputs and block inputs once, rank the heads (k-fold on every prompt) and choose the refusal
direction (candidates from a train split, selection on the held-out val split)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from interp.capture import Activations, capture, capture_with_answers
from interp.errors import InputError
from interp.generation import GenerationConfig
from interp.model import ChatModel
from interp.prompts import LABELS, PromptSet
from interp.direction import Direction
from probes.artifacts import HeadRanking
from probes.directions import SelectionConfig, find_refusal_direction, search_sites
from probes.heads import position_tokens, rank_heads_from_activations
from probes.labels import LABEL_GENERATION, Labels, judged_labels, resolve_labels
from interp.threads import model_threads


@dataclass
class ProbeResult:
    ranking: HeadRanking
    direction: Direction
    labels: Labels
    prompts: PromptSet
    notes: list[str] = field(default_factory=list)


def split_indices(prompts: PromptSet, val_fraction: float = 0.25, seed: int = 0) -> tuple[list[int], list[int]]:
    """Train / val indices, shuffled with `seed` and stratified by the prompts' category labels."""
    if not 0 < val_fraction < 1:
        raise InputError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    rng = random.Random(seed)
    train, val = [], []
    for label in LABELS:
        idx = [i for i, p in enumerate(prompts) if p.label == label]
        rng.shuffle(idx)
        n_val = max(1, round(val_fraction * len(idx))) if len(idx) > 1 else 0
        val += idx[:n_val]
        train += idx[n_val:]
    return sorted(train), sorted(val)


def _subset(prompts: PromptSet, idx: list[int], tag: str) -> PromptSet:
    return PromptSet(f"{prompts.name}:{tag}", tuple(prompts[i] for i in idx), prompts.source)


# Behaviour labels stand for a refusal decision only if the model refuses harmful requests more
# often than harmless ones: a model that was never safety-tuned "refuses" a few of each (an apology
# for a sad story, "As an AI ..."), and a probe on that would find noise, not the decision.
MIN_REFUSAL_GAP = 0.25


def refusal_gap_message(lab: Labels, prompts: PromptSet, model_name: str) -> str | None:
    """Why behaviour labels are meaningless here (None when they are fine): the plain harmful
    requests are refused no more than `MIN_REFUSAL_GAP` more often than the plain harmless ones."""
    rate = {}
    for label in LABELS:
        idx = [i for i, p in enumerate(prompts) if p.family is None and p.label == label]
        if not idx:
            return None
        rate[label] = float(lab.y[idx].float().mean())
    if rate["harmful"] - rate["harmless"] >= MIN_REFUSAL_GAP:
        return None
    return (f"behaviour labels do not follow the requests: {model_name} refused {rate['harmful']:.0%} of the plain harmful "
            f"and {rate['harmless']:.0%} of the plain harmless probing prompts (judged on its greedy answers), so "
            "'refused' is not a refusal decision here (a model that was never safety-tuned). Pass --labels category "
            "(labels='category') to probe harmful against harmless prompts instead.")


def one_class_message(lab: Labels, k_folds: int, model_name: str) -> str:
    counts = lab.counts()
    refused, n = counts.get("refused", 0), len(lab)
    return (f"behaviour labels (what {model_name} did, judged on its greedy answers) gave {counts} on the probing "
            f"prompts: the model refuses {refused} of {n}, fewer than k_folds={k_folds} in a class, so there is no "
            "refusal decision to probe. Pass --labels category (labels='category') to probe harmful against harmless "
            "prompts instead, or check that --refusal-phrases match how this model refuses.")


def run_probes(model: ChatModel, prompts: PromptSet, labels: str | Labels = "behaviour", head_positions: str = "last",
               k_folds: int = 5, C: float = 1.0, seed: int = 0, val_fraction: float = 0.25,
               selection: SelectionConfig = SelectionConfig(), gen: GenerationConfig = LABEL_GENERATION,
               val: PromptSet | None = None) -> ProbeResult:
    """Rank heads and find the refusal direction on `prompts` (see the module docstring).

    `val`: the prompts the direction is selected on (a study's val split); without it, a seeded
    `val_fraction` of `prompts` is held out for that. With labels="behaviour", fewer than
    `k_folds` prompts in a class (a model that refuses nothing, or everything), or a model that
    refuses plain harmful requests hardly more often than harmless ones, is an InputError that
    suggests category labels."""
    if head_positions not in ("last", "post_instruction"):
        raise InputError(f"head_positions must be 'last' or 'post_instruction', got {head_positions!r}")
    prompts.require("prompt set for probing", 2 * k_folds, both_labels=True)
    notes: list[str] = []
    resid_sites = search_sites(model, selection)[0]  # the direction search's sites that this model has
    sites = ["z", *resid_sites]
    with model_threads(model):
        if labels == "behaviour":
            # the answers that label the prompts and the activations come from one prompt pass
            read = lambda positions: capture_with_answers(model, prompts, sites, positions, gen)  # noqa: E731
        else:
            lab = resolve_labels(labels, prompts, model)
            read = lambda positions: (capture(model, prompts, sites, positions), None)  # noqa: E731
        try:
            acts, answers = read("post_instruction")
        except InputError as e:  # the template gives prompts different numbers of post-instruction tokens
            notes.append(f"post-instruction capture failed ({e}); used the last token only")
            acts, answers = read("last")
        if labels == "behaviour":
            lab = judged_labels(model, prompts, answers, gen=gen)
            if min(lab.counts().values()) < k_folds:
                raise InputError(one_class_message(lab, k_folds, model.name))
            gap = refusal_gap_message(lab, prompts, model.name)
            if gap:
                raise InputError(gap)
        ranking = rank_heads_from_activations(acts, lab, k_folds, C, seed, positions="last" if head_positions == "last" else None,
                                              model=model)
        ranking.meta["position_tokens"] = position_tokens(model, prompts, ranking.positions)
        if val is None:
            tr, va = split_indices(prompts, val_fraction, seed)
            val_set = _subset(prompts, va, "val")
        else:
            tr, val_set = list(range(len(prompts))), val
        resid = {s: t[tr] for s, t in acts.acts.items() if s.kind in resid_sites}
        train_acts = Activations(resid, dict(acts.meta, prompt_ids=[prompts[i].id for i in tr]))
        direction = find_refusal_direction(model, _subset(prompts, tr, "train"), val_set, lab.select(tr),
                                           cfg=selection, seed=seed, acts=train_acts)
    return ProbeResult(ranking, direction, lab, prompts, notes)
