"""Harmful/harmless prompt pairs of equal token length, which activation patching needs: a
replaced position must mean the same in both runs (`interp.causal.patching`)."""

from __future__ import annotations

import random

from interp.errors import InputError
from interp.model import ChatModel, EncodedBatch, texts
from interp.prompts import PromptSet


def equal_length_pairs(model: ChatModel, harmful, harmless, n: int = 16, seed: int = 0,
                       min_pairs: int = 2) -> tuple[PromptSet, PromptSet]:
    """Up to `n` harmful/harmless pairs of equal token length after chat formatting, taken from the
    given prompts without reuse: within each length, the pairs that share the most tokens at the
    same positions first (the same phrasing around a different object, "make a bomb" / "make a
    cake", is what patching wants), ties broken by a seeded shuffle. Fewer than `min_pairs` is an
    InputError that says what to pass instead."""
    if n < 1:
        raise InputError(f"n must be at least 1, got {n}")
    H, L = list(harmful), list(harmless)
    if not H or not L:
        raise InputError("equal_length_pairs needs harmful and harmless prompts")
    ids_h = [model.encode([p]).tokens[0].tolist() for p in H]
    ids_l = [model.encode([p]).tokens[0].tolist() for p in L]
    rng = random.Random(seed)
    cands = []
    for i, a in enumerate(ids_h):
        for j, b in enumerate(ids_l):
            if len(a) == len(b):
                cands.append((-sum(x == y for x, y in zip(a, b)), rng.random(), i, j))
    cands.sort()
    used_h, used_l, pairs = set(), set(), []
    for _, _, i, j in cands:
        if i in used_h or j in used_l:
            continue
        used_h.add(i), used_l.add(j)
        pairs.append((i, j))
        if len(pairs) == n:
            break
    if len(pairs) < min_pairs:
        raise InputError(f"only {len(pairs)} harmful/harmless prompt pairs of equal token length could be formed for "
                         f"{model.name} from {len(H)} harmful and {len(L)} harmless prompts; activation patching needs "
                         f"at least {min_pairs}. Pass more prompts, or pairs written to the same length")
    src = "interp.causal.patching.equal_length_pairs"

    return (PromptSet(f"pairs-s{seed}:harmful", tuple(H[i] for i, _ in pairs), src),
            PromptSet(f"pairs-s{seed}:harmless", tuple(L[j] for _, j in pairs), src))


def check_pairs(model: ChatModel, source, target) -> tuple[EncodedBatch, EncodedBatch]:
    """Encode two prompt lists whose i-th prompts pair up; fail clearly unless every pair has the
    same token length (after chat formatting), so positions mean the same in both runs."""
    a, b = texts(source), texts(target)
    if not a or not b:
        raise InputError("patching needs non-empty source and target prompt sets")
    if len(a) != len(b):
        raise InputError(f"patching pairs prompt i of the source with prompt i of the target, but the sets have "
                         f"{len(a)} and {len(b)} prompts; pass sets of equal size (e.g. equal_length_pairs(model, harmful, harmless, n))")
    ea, eb = model.encode(a), model.encode(b)
    bad = [(i, x, y) for i, (x, y) in enumerate(zip(ea.lengths, eb.lengths)) if x != y]
    if bad:
        i, x, y = bad[0]
        raise InputError(f"{len(bad)} of {len(a)} prompt pairs differ in token length (pair {i}: {x} vs {y} tokens: "
                         f"{a[i]!r} / {b[i]!r}); patching needs equal lengths. Align them: use "
                         "interp.causal.patching.equal_length_pairs(model, harmful, harmless, n) "
                         "or reword each pair to the same number of tokens")
    return ea, eb
