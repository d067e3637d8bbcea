"""Small checks and conversions the steering modules share (not public API)."""

from __future__ import annotations

import torch
from torch import Tensor

from interp.errors import InputError
from interp.model import ChatModel, texts
from interp.prompts import PromptSet

POSITIVE_LABELS = {"harmful", "refuse", "refusal", "unsafe", "positive"}
NEGATIVE_LABELS = {"harmless", "comply", "compliance", "safe", "negative"}


def texts_of(prompts, what: str = "prompts") -> list[str]:
    prompt_texts = texts(prompts)
    if not prompt_texts:
        raise InputError(f"{what} is empty: pass at least one prompt")
    return prompt_texts


def refuse_side(prompts, labels=None) -> Tensor:
    """Bool tensor, True where the prompt belongs to the refusal side (harmful)."""
    if labels is None:
        if isinstance(prompts, PromptSet):
            labels = prompts.labels
        else:
            raise InputError("labels are needed when prompts is not a PromptSet: pass labels=['harmful'|'harmless', ...] "
                             "or booleans (True = the refusal side)")
    out = []
    for i, y in enumerate(labels):
        if isinstance(y, str):
            key = y.lower()
            if key in POSITIVE_LABELS:
                out.append(True)
            elif key in NEGATIVE_LABELS:
                out.append(False)
            else:
                raise InputError(f"label {y!r} (prompt {i}) is not understood; use 'harmful'/'refuse' or 'harmless'/'comply'")
        elif isinstance(y, (bool, int)) or (isinstance(y, Tensor) and y.numel() == 1):
            v = int(y)
            if v not in (0, 1):
                raise InputError(f"label {y!r} (prompt {i}) must be 0/1 or a boolean")
            out.append(bool(v))
        else:
            raise InputError(f"label {y!r} (prompt {i}) is neither a string nor a boolean")
    y = torch.tensor(out, dtype=torch.bool)
    if len(y) != len(texts_of(prompts)):
        raise InputError(f"{len(y)} labels for {len(texts_of(prompts))} prompts; pass one label per prompt")
    if y.all() or not y.any():
        raise InputError("both sides are needed: the labels contain only one class (harmful and harmless prompts are required)")
    return y


def check_heads(model: ChatModel, heads) -> list[tuple[int, int]]:
    """Validated, de-duplicated (layer, head) pairs in the caller's order (`interp.intervention.check_heads`)."""
    from interp.intervention import check_heads as _check

    return _check(model, heads, "head list")


def check_k(model: ChatModel, k: int, what: str = "K") -> int:
    n = model.n_layers * model.n_heads
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= n:
        raise InputError(f"{what}={k!r} must be an integer between 1 and the number of heads ({n} in {model.name})")
    return k


def check_same_model(model: ChatModel, made_on: dict | str | None, what: str) -> None:
    """Refuse an object fitted on another model: by fingerprint when it records one (see
    interp.fingerprint), else by name. Raises `ModelMismatchError` (an InputError)."""
    from interp.fingerprint import check_made_on

    if made_on is None:
        return
    check_made_on(model, {"model": made_on} if isinstance(made_on, str) else made_on, what)


