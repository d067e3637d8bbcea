"""The forward pass: the one call of the bridge, with the positions and logits every pass shares
(see `interp.runner`)."""

from __future__ import annotations

import weakref

from jaxtyping import Float
from torch import Tensor

from interp.model import ChatModel, EncodedBatch

_TAKES_POSITIONS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def takes_position_ids(model: ChatModel) -> bool:
    """Whether the model's forward takes `position_ids` we derive from the mask (transformer_lens's
    own test of the wrapped model: a forward that owns its positions, e.g. from the mask, does not)."""
    hf = getattr(model.bridge, "original_model", None)
    if hf is None:
        return False
    if hf not in _TAKES_POSITIONS:
        from transformer_lens.utilities.position_ids import accepts_mask_derived_position_ids

        _TAKES_POSITIONS[hf] = bool(accepts_mask_derived_position_ids(hf))
    return _TAKES_POSITIONS[hf]


def position_ids(attention_mask: Tensor) -> Tensor:
    """Each token's position counted over real tokens only (left padding does not shift them)."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def forward(model: ChatModel, tokens: Tensor, attention_mask: Tensor, logits_to_keep: int | None = 1,
            past_key_values=None, use_cache: bool = False):
    """One forward pass of the bridge (hooks installed by the caller act on it). `attention_mask`
    covers any cached prefix plus `tokens`. `logits_to_keep`: the last positions unembedded (None:
    every position). With `use_cache`: (logits, key/value cache), else the logits."""
    kw = {"attention_mask": attention_mask, "use_cache": use_cache}
    if takes_position_ids(model):
        kw["position_ids"] = position_ids(attention_mask)[:, -tokens.shape[1]:]
    if use_cache:
        kw.update(past_key_values=past_key_values, return_type="logits_and_cache")
    if logits_to_keep is not None:
        try:
            return model.bridge(tokens, logits_to_keep=logits_to_keep, **kw)
        except TypeError:  # a model class without logits_to_keep: compute them all and keep the last
            pass
    out = model.bridge(tokens, **kw)
    if logits_to_keep is None:
        return out
    if use_cache:
        return out[0][:, -logits_to_keep:], out[1]
    return out[:, -logits_to_keep:]


def last_logits(model: ChatModel, batch: EncodedBatch) -> Float[Tensor, "batch d_vocab"]:
    """Logits at the last position (left padding: every row's next token)."""
    return forward(model, batch.tokens, batch.attention_mask)[:, -1]
