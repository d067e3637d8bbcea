"""Attention sharpening: divide attention scores by a temperature T < 1 before the softmax.

    with Intervention.sharpen(temperature=0.5, layers=None, heads=None).apply(model):   # interp.intervention

The op lives in `interp.intervention` (op "temperature"); this note says why it is built as it is.

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

from interp.intervention import check_temperature

__all__ = ["check_temperature"]
