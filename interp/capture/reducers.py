"""What a read keeps of each hooked activation: a `Reducer` is bound once per batch and applied
inside the hook, so only what it returns outlives the pass (`KeepPositions`, the default;
`LastPosition`; `SpanSum` / `SpanMean` over a token span; `AttentionMass` of a pattern on a span;
`AllPositions`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from interp.capture.sites import Positions, parse_positions, resolve_positions
from interp.model import ChatModel, EncodedBatch

Bound = Callable[[Tensor], Tensor]


class Reducer:
    """What a capture keeps of each hooked activation. `bind(model, batch, rows)` is called once per
    batch (`rows`: the caller's index of each batch row) and returns the function applied inside
    the hook, plus a label for the metadata. Only what the function returns outlives the pass."""

    def bind(self, model: ChatModel, batch: EncodedBatch, rows: Sequence[int]) -> tuple[Bound, str]:
        raise NotImplementedError


@dataclass(frozen=True)
class KeepPositions(Reducer):
    """The default: the activations at `positions` ('last', 'post_instruction' or indices) ->
    `[batch, pos, ...]`."""

    positions: Positions = "last"

    def __post_init__(self) -> None:
        parse_positions(self.positions)  # fail before any pass

    def bind(self, model, batch, rows):
        pos_idx, label = resolve_positions(model, batch, self.positions)
        r = torch.arange(pos_idx.shape[0], device=model.device)[:, None]
        idx = pos_idx.to(model.device)
        return (lambda act: act[r, idx]), label


@dataclass(frozen=True)
class LastPosition(Reducer):
    """The activation at the last position without a position axis, `[batch, ...]` (left padding:
    the last column is every row's last token)."""

    def bind(self, model, batch, rows):
        return (lambda act: act[:, -1]), "last"


@dataclass(frozen=True)
class AllPositions(Reducer):
    """Every position, `[batch, pos, ...]` (padding included): for patching, which replaces a whole
    run's activations. Memory grows with the sequence: read few sites this way."""

    def bind(self, model, batch, rows):
        return (lambda act: act.clone()), "all"


def _span_weights(batch: EncodedBatch, rows: Sequence[int], spans) -> Float[Tensor, "batch pos"]:
    """0/1 weight of each padded position: the row's span ((start, end) in unpadded tokens, by the
    caller's row index), or every real token for `spans=None`."""
    if spans is None:
        return batch.attention_mask.float()
    w = torch.zeros(batch.tokens.shape)
    for r, (i, pad) in enumerate(zip(rows, batch.pad)):
        a, b = spans[i]
        w[r, pad + a: pad + b] = 1
    return w


@dataclass(frozen=True)
class SpanSum(Reducer):
    """Sum over a token span per row, `[batch, ...]`: `spans[i]` = (start, end) in prompt i's
    unpadded tokens; None: every real token (never padding)."""

    spans: Sequence[tuple[int, int]] | None = None
    mean: bool = False

    def bind(self, model, batch, rows):
        w = _span_weights(batch, rows, self.spans).to(model.device)

        def reduce(act):
            out = torch.einsum("bp...,bp->b...", act.float(), w)
            return out / w.sum(1).view(-1, *([1] * (out.ndim - 1))) if self.mean else out

        return reduce, ("mean" if self.mean else "sum") + ("" if self.spans is None else "[span]")


@dataclass(frozen=True)
class SpanMean(SpanSum):
    """Mean over a token span per row (default: every real token of the prompt, never padding)."""

    mean: bool = True


@dataclass(frozen=True)
class AttentionMass(Reducer):
    """For an attention pattern `[batch, head, query, key]`: the mass the last query position puts on
    each row's key span, `[batch, head]` (spans as for `SpanSum`)."""

    spans: Sequence[tuple[int, int]]

    def bind(self, model, batch, rows):
        w = _span_weights(batch, rows, self.spans)
        # the pattern row leaves the device first: [batch, head, key] is small
        return (lambda act: torch.einsum("bhk,bk->bh", act[:, :, -1].float().cpu(), w)), "attention mass[span]"


@dataclass(frozen=True)
class _OneHead(Reducer):
    inner: Reducer
    head: int

    def bind(self, model, batch, rows):
        fn, label = self.inner.bind(model, batch, rows)
        return (lambda act: fn(act)[..., self.head, :]), label  # z: [..., head, d_head]
