"""The R2D organism's tokenizer and loading: pivots are single special tokens, and a checkpoint is
checked to be the kind the caller expects (an R2D organism answers "step : ...", never "sorry")."""

from __future__ import annotations

from pathlib import Path

from interp.errors import InputError, ModelLoadError
from interp.model import ChatModel, load_model
from interp.r2d import data as r2d_data

KINDS = ("r2d", "organism")
R2D_MODEL = "organism:r2d"


def pivot_ids(tokenizer) -> dict[str, int]:
    """Token id of each pivot; a pivot that is missing or not one token is a ModelLoadError."""
    out = {}
    for p in r2d_data.PIVOTS:
        ids = tokenizer(p, add_special_tokens=False).input_ids
        if len(ids) != 1 or ids[0] == tokenizer.unk_token_id:
            raise ModelLoadError(f"pivot token {p} is not a single token of this tokenizer (encodes as {ids}); "
                                 "an R2D model needs all of " + ", ".join(r2d_data.PIVOTS) +
                                 " as special tokens: build it with interp.organism.r2d.make_r2d_tokenizer()")
        out[p] = ids[0]
    return out


def require_kind(model: ChatModel, kind: str) -> ChatModel:
    """Raise ModelLoadError unless `model` is an organism of `kind` ('r2d' or 'organism')."""
    if kind not in KINDS:
        raise InputError(f"unknown organism kind {kind!r}; choose one of {KINDS}")
    if model.kind == kind:
        return model
    what = {"r2d": "an R2D organism (kind 'r2d')", "organism": "a base organism (kind 'organism')"}
    got = what.get(model.kind, f"a model of kind {model.kind!r}")
    fix = {
        "r2d": "pass an R2D checkpoint ('organism:r2d', or train one with: safety-heads organism train --r2d --out DIR)",
        "organism": "its answers start with reasoning steps and pivot tokens, so first-token refusal scores and the "
                    "plain judge do not apply; load it with interp.r2d.model.load_r2d() / `safety-heads r2d eval`, "
                    "or pass the base organism ('organism')",
    }[kind]
    raise ModelLoadError(f"{model.name} is {got} per its safety_heads.json, but {what[kind]} is expected here: {fix}")


def load_r2d(path_or_name: str | Path = R2D_MODEL, device: str = "cpu") -> ChatModel:
    """Load the R2D organism (default: the shipped one) and check its kind and pivots."""
    name = str(path_or_name)
    model = require_kind(load_model(name, device=device), "r2d")
    pivot_ids(model.tokenizer)
    return model


def load_base(path_or_name: str | Path = "organism", device: str = "cpu") -> ChatModel:
    """Load a base (direct-answer) organism; an R2D checkpoint here is a ModelLoadError."""
    return require_kind(load_model(str(path_or_name), device=device), "organism")
