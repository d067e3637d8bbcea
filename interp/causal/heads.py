"""Head sets and the one hook every causal method shares: replace some heads' `hook_z` output.

A head is `(layer, head)`. `hook_z` is the input of the attention output projection,
`[batch, pos, head, d_head]`; with grouped-query attention it still has one slot per query head,
so replacing a slot removes exactly that head's write to the residual stream.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp.model import ChatModel

Head = tuple[int, int]


def check_heads(model: ChatModel, heads: Iterable, allow_empty: bool = False, what: str = "head set") -> list[Head]:
    """Validated, de-duplicated `[(layer, head), ...]` in the caller's order (`interp.intervention`'s
    check; `allow_empty`: an empty set is the unablated model)."""
    from interp.intervention import check_heads as _check

    if isinstance(heads, Tensor):
        heads = heads.tolist()
    if allow_empty and heads is not None and not isinstance(heads, (str, bytes)):
        try:
            heads = list(heads)
        except TypeError:
            pass  # not iterable: the check below says so
        else:
            if not heads:
                return []
    return _check(model, heads, what)


def all_heads(model: ChatModel) -> list[Head]:
    return [(l, h) for l in range(model.n_layers) for h in range(model.n_heads)]


def by_layer(heads: Sequence[Head]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for l, h in heads:
        out.setdefault(l, []).append(h)
    return out


def row_masks(model: ChatModel, head_sets: Sequence[Sequence[Head]], rows_per_set: int) -> Bool[Tensor, "row layer head"]:
    """Mask of the heads replaced in each row when every head set gets `rows_per_set` consecutive rows
    (the prompt batch replicated once per set)."""
    m = torch.zeros(len(head_sets), model.n_layers, model.n_heads, dtype=torch.bool)
    for i, hs in enumerate(head_sets):
        for l, h in hs:
            m[i, l, h] = True
    return m.repeat_interleave(rows_per_set, dim=0)


def z_replace_hook(mask: Bool[Tensor, "row head"] | Bool[Tensor, "row pos head"],
                   values: Callable[[int], Tensor] | Tensor) -> Callable:
    """Hook for one layer's `hook_z`: where `mask` is set, take `values` instead of the head's output.

    `mask` is per row (broadcast over positions, so it also works under the KV cache, where later
    generation steps see one position) or per row and position. `values` broadcasts against
    `[batch, pos, head, d_head]`; a callable gets the batch size and returns such a tensor.
    """

    def hook(z: Float[Tensor, "batch pos head d_head"], hook=None):
        v = values(z.shape[0]) if callable(values) else values
        m = mask.to(z.device)
        m = m[:, None, :, None] if m.ndim == 2 else m[..., None]
        return torch.where(m, v.to(z.dtype).to(z.device), z)

    return hook
