"""What the steering stage steers and on which prompts: the heads (named by hand, the causal
stage's recommendation, or the probe ranking's top), the refusal direction (the probes stage's, or
the same Arditi et al. selection run here alone) and the held-out subsets it judges."""

from __future__ import annotations

import random

from interp.errors import InputError
from interp.prompts import PromptSet
from interp.steering.heads import ORGANISM_DEFAULTS
from interp.study import Study
from interp.direction import Direction
from probes.directions import calibrate_direction, find_refusal_direction, resolve_direction

K_HEADS = ORGANISM_DEFAULTS.k


def _held_out(ev: PromptSet, plain_n: int, cell_n: int, seed: int = 0, top_only: bool = False) -> dict[str, PromptSet]:
    """harmful / jailbreak / harmless subsets of the held-out set: up to `plain_n` plain prompts per
    label and `cell_n` per (family, strength) jailbreak cell (`top_only`: only each family's
    strongest cell, where a jailbreak works best)."""
    rng = random.Random(seed)
    top = {f: max(ss) for f, ss in ev.families().items()}
    cells: dict[tuple, list] = {}
    for p in ev:
        if top_only and p.family is not None and p.strength != top[p.family]:
            continue
        cells.setdefault((p.label, p.family, p.strength), []).append(p)
    pick = {k: (v if len(v) <= (plain_n if k[1] is None else cell_n) else rng.sample(v, plain_n if k[1] is None else cell_n))
            for k, v in cells.items()}
    out = {"harmful": [p for k, v in pick.items() if k[0] == "harmful" and k[1] is None for p in v],
           "jailbreak": [p for k, v in pick.items() if k[0] == "harmful" and k[1] is not None for p in v],
           "harmless": [p for k, v in pick.items() if k[0] == "harmless" and k[1] is None for p in v]}
    return {k: PromptSet(f"{ev.name}:{k}", tuple(v), ev.source) for k, v in out.items() if v}


def _given_direction(model, given, harmful_tr, harmless_tr):
    """(direction, source) from the probes stage's direction when it fits this model, else None."""
    if given is None:
        return None
    try:
        vec, layer = resolve_direction(model, given)
        if layer is None:
            return None
        if abs(float(vec.norm()) - 1.0) < 1e-3:  # a unit vector: give it the natural size for addition
            return (calibrate_direction(model, given, harmful_tr, harmless_tr),
                    "the probes stage's direction (unit vector scaled to the harmful-harmless mean gap)")
        return given, "the probes stage's direction"
    except InputError:
        return None


def _own_direction(study: Study) -> tuple[Direction, str]:
    """Without a probes stage: the same selection the probes stage makes (Arditi et al., candidates
    from the train split, chosen on val, the study's labels), without ranking the heads. Behaviour
    labels need a model that refuses some prompts and complies with others; where it does not,
    the candidates are harmful-minus-harmless (category labels) on the plain requests, as
    `--labels category` would give."""
    from interp.stages.probes import probe_sets

    source = ("difference in means, Arditi et al. selection (probes.find_refusal_direction): train candidates, "
              f"chosen on val, {study.labels} labels")
    train, val = probe_sets(study)
    try:
        return find_refusal_direction(study.model, train, val, labels=study.labels, seed=study.seed), source
    except InputError as e:
        if study.labels == "category":
            raise
        d = study.data
        return (find_refusal_direction(study.model, d.plain("train"), d.plain("val"), labels="category", seed=study.seed),
                source.replace("behaviour labels", f"category labels (behaviour labels cannot be used: {e})"))


def _pairs(items) -> list[tuple[int, int]]:
    out = []
    for it in items:
        if hasattr(it, "layer") and hasattr(it, "head"):
            out.append((int(it.layer), int(it.head)))
        else:
            l, h = tuple(it)[:2]
            out.append((int(l), int(h)))
    return out


def _given_heads(recommended, ranking) -> tuple[list[tuple[int, int]], str] | None:
    if recommended is not None and hasattr(recommended, "heads") and hasattr(recommended, "top"):  # --heads
        return _pairs(recommended.heads), "the heads named by hand (--heads)"
    if recommended:
        try:
            return _pairs(recommended)[:K_HEADS], "the causal stage's recommended heads"
        except (TypeError, ValueError):
            pass
    if ranking is not None and hasattr(ranking, "top"):
        try:
            return _pairs(ranking.top(K_HEADS)), f"the probe ranking's top {K_HEADS}"
        except (TypeError, ValueError, InputError):
            pass
    return None
