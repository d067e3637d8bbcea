"""Head sets of the causal methods. A head is `(layer, head)`; what is done to it is an
`interp.intervention` operation (`AblateHeads`, `Patch`).

`hook_z` is the input of the attention output projection, `[batch, pos, head, d_head]`; with
grouped-query attention it still has one slot per query head, so replacing a slot removes exactly
that head's write to the residual stream.
"""

from __future__ import annotations

from typing import Iterable

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
