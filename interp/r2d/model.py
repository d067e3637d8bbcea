"""The R2D organism's tokenizer and loading: pivots are single special tokens, and a checkpoint is
checked to be the kind the caller expects (an R2D organism answers "step : ...", never "sorry").
The kind check itself, `require_kind`, lives with the model (`interp.model`): the loader needs it too."""

from __future__ import annotations

from pathlib import Path

from interp.errors import ModelLoadError
from interp.model import ORGANISM_KINDS as KINDS, ChatModel, load_model, require_kind  # noqa: F401 (re-exported)
from interp.r2d import data as r2d_data

R2D_MODEL = "organism:r2d"


def pivot_ids(tokenizer) -> dict[str, int]:
    """Token id of each pivot; a pivot that is missing or not one token is a ModelLoadError."""
    out = {}
    for p in r2d_data.PIVOTS:
        ids = tokenizer(p, add_special_tokens=False).input_ids
        if len(ids) != 1 or ids[0] == tokenizer.unk_token_id:
            raise ModelLoadError(f"pivot token {p} is not a single token of this tokenizer (encodes as {ids}); "
                                 "an R2D model needs all of " + ", ".join(r2d_data.PIVOTS) +
                                 " as special tokens: build it with organisms.r2d.make_r2d_tokenizer()")
        out[p] = ids[0]
    return out


def load_r2d(path_or_name: str | Path = R2D_MODEL, device: str = "cpu") -> ChatModel:
    """Load the R2D organism (default: the shipped one) and check its kind and pivots."""
    name = str(path_or_name)
    model = require_kind(load_model(name, device=device), "r2d")
    pivot_ids(model.tokenizer)
    return model


def load_base(path_or_name: str | Path = "organism", device: str = "cpu") -> ChatModel:
    """Load a base (direct-answer) organism; an R2D checkpoint here is a ModelLoadError."""
    return require_kind(load_model(str(path_or_name), device=device), "organism")
