"""Attention sharpening: divide attention scores by a temperature T < 1 before the softmax.

Attention slipping is attention spreading away from the request onto a jailbreak's own tokens;
a lower softmax temperature concentrates each head on its highest-scoring keys, so a head that
still scores the request highest puts more of its mass back there (the "attention sharpening"
defense proposed with the attention-slipping analysis of jailbreaks; docs/slipping.md). T > 1
flattens attention instead (a control).

Where it acts: TransformerLens 4's `hook_attn_scores` (PositionEmbeddingsAttentionBridge) sees the
scores after the 1/sqrt(d_head) scaling and after the causal and padding masks were added, right
before the softmax; what the hook returns is what the softmax gets (checked numerically in the
tests: softmax(hooked scores) == hook_pattern). Masked entries hold finfo.min (-inf in
compatibility mode). Multiplying them by 1/T > 1 overflows to -inf, and a fully masked row (a
left-pad query) would then softmax to NaN and poison the values that real queries read; so the
scaled scores are clamped back into [finfo.min, finfo.max]: masked entries end at finfo.min (or
finfo.min / T for T > 1), still exactly zero weight for every real query. Clamping is one in-place
op on the new tensor: about 6x cheaper on a prompt pass than a `where` on a mask test.

The hooks are position-free, so they act identically on the prompt pass and on every cached
generation step.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InputError
from interp.hooks import FwdHook, hooked
from interp.model import ChatModel


def check_temperature(T: float) -> float:
    try:
        T = float(T)
    except (TypeError, ValueError):
        raise InputError(f"temperature T must be a number, got {T!r}") from None
    if not T > 0 or T == float("inf"):
        raise InputError(f"temperature T must be a finite number > 0 (T < 1 sharpens, T = 1 is the identity), got {T}")
    return T


def _select(model: ChatModel, layers: Sequence[int] | None, heads) -> dict[int, list[int] | None]:
    """layer -> heads (None: all heads). `heads` is a list of head indices (applied in every chosen
    layer) or of (layer, head) pairs (which then also choose the layers)."""
    L, H = model.n_layers, model.n_heads
    if layers is not None:
        layers = list(layers)
        bad = [l for l in layers if not (isinstance(l, int) and 0 <= l < L)]
        if bad or not layers:
            raise InputError(f"layers {bad or '[]'} out of range: {model.name} has layers 0..{L - 1}")
    if heads is None:
        return {l: None for l in (layers if layers is not None else range(L))}
    heads = list(heads)
    if not heads:
        raise InputError("heads is empty: pass head indices, (layer, head) pairs, or None for all heads")
    if all(isinstance(h, (tuple, list)) for h in heads):
        out: dict[int, list[int]] = {}
        for l, h in heads:
            if not (0 <= int(l) < L and 0 <= int(h) < H):
                raise InputError(f"head ({l}, {h}) does not exist on {model.name} ({L} layers x {H} heads)")
            if layers is None or int(l) in layers:
                out.setdefault(int(l), []).append(int(h))
        if not out:
            raise InputError(f"none of the heads {heads} lies in the chosen layers {layers}")
        return out
    bad = [h for h in heads if not (isinstance(h, int) and 0 <= h < H)]
    if bad:
        raise InputError(f"heads {bad} out of range: {model.name} has heads 0..{H - 1} per layer")
    return {l: sorted(set(heads)) for l in (layers if layers is not None else range(L))}


def sharpening_hooks(model: ChatModel, T: float, layers: Sequence[int] | None = None, heads=None) -> list[FwdHook]:
    """`hook_attn_scores` hooks dividing unmasked scores of the chosen heads by T."""
    T = check_temperature(T)
    sel = _select(model, layers, heads)
    inv = 1.0 / T
    hooks: list[FwdHook] = []
    for l, hs in sel.items():
        scale_cache: dict = {}

        def hook(scores: Float[Tensor, "batch head q k"], hook, hs=hs, scale_cache=scale_cache):
            key = (scores.dtype, scores.device, scores.shape[1])
            if key not in scale_cache:  # per-head factor, built once per dtype/device
                s = torch.ones(scores.shape[1], dtype=scores.dtype, device=scores.device)
                s[hs if hs is not None else slice(None)] = inv
                fi = torch.finfo(scores.dtype)
                scale_cache[key] = (s.view(1, -1, 1, 1), fi.min, fi.max)
            s, lo, hi = scale_cache[key]
            # out of place (the input may be needed by autograd), then clamp the overflowed masks back
            return (scores * s).clamp_(min=lo, max=hi)

        hooks.append((f"blocks.{l}.attn.hook_attn_scores", hook))
    return hooks


@contextmanager
def sharpen_attention(model: ChatModel, T: float, layers: Sequence[int] | None = None, heads=None) -> Iterator[ChatModel]:
    """Within the block, every attention softmax of the chosen layers/heads runs at temperature T.

    `layers`: layer indices (None: all). `heads`: head indices applied in each chosen layer, or
    (layer, head) pairs, or None for all heads. Works for forward passes and for generation; the
    hooks are removed on exit, also when the block raises."""
    with hooked(model, sharpening_hooks(model, T, layers, heads), f"attention sharpening at T={float(T):g}"):
        yield model
