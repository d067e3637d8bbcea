"""Input checks and small helpers every operation shares: (layer, head) pairs, temperatures,
strengths, directions, the model an operation was made on, and acting on some batch rows only."""

from __future__ import annotations

import json
import numbers
from typing import Callable

import torch
from torch import Tensor

from interp.errors import InputError
from interp.hooks import check_alpha
from interp.model import ChatModel

# Arditi et al.: the direction is projected out of every block input and attention / MLP output
PROJECTION_SITES = ("resid_pre", "attn_out", "mlp_out")
ADDITION_SITES = ("resid_pre", "resid_mid", "resid_post")
ABLATE_METHODS = ("zero", "mean", "resample", "values")
# axis of the head index in each per-head activation kind
HEAD_AXIS = {"q": 2, "k": 2, "v": 2, "z": 2, "attn_scores": 1, "pattern": 1}


def check_strength(value: float, unit: str) -> float:
    """A finite number (the strength of an operation, in its unit)."""
    return check_alpha(value, unit)


def check_temperature(temperature: float) -> float:
    try:
        temperature = float(temperature)
    except (TypeError, ValueError):
        raise InputError(f"temperature must be a number, got {temperature!r}") from None
    if not temperature > 0 or temperature == float("inf"):
        raise InputError(f"temperature must be a finite number > 0 (below 1 sharpens, 1 is the identity), got {temperature}")
    return temperature


def pairs(heads, strict: bool = False, what: str = "head set") -> tuple[tuple[int, int], ...]:
    """(layer, head) pairs, de-duplicated in order; range checks need the model (`check_heads`)."""
    if heads is None:
        raise InputError("no heads given: pass a list of (layer, head) pairs")
    if isinstance(heads, Tensor):
        heads = heads.tolist()
    try:
        raw = list(heads)
    except TypeError:
        raise InputError(f"{what} must be a list of (layer, head) pairs, got {heads!r}") from None
    if not raw:
        raise InputError(f"{what} is empty: pass at least one (layer, head) pair, e.g. [(1, 3)]")
    out: list[tuple[int, int]] = []
    for item in raw:
        try:
            l, h = item
        except (TypeError, ValueError):
            raise InputError(f"{what}: {item!r} is not a (layer, head) pair") from None
        if strict and not all(isinstance(x, numbers.Integral) and not isinstance(x, bool) for x in (l, h)):
            raise InputError(f"{what}: ({l!r}, {h!r}) must hold integers")
        try:
            p = (int(l), int(h))
        except (TypeError, ValueError):
            raise InputError(f"{what}: {item!r} is not a (layer, head) pair of integers") from None
        if p not in out:
            out.append(p)
    return tuple(out)


def check_heads(model: ChatModel, heads, what: str = "head set") -> list[tuple[int, int]]:
    """Validated, de-duplicated `[(layer, head), ...]` in the caller's order."""
    out = pairs(heads, strict=True, what=what)
    for l, h in out:
        if not 0 <= l < model.n_layers:
            raise InputError(f"{what}: layer {l} of head ({l}, {h}) does not exist: {model.name} has layers "
                             f"0..{model.n_layers - 1}")
        if not 0 <= h < model.n_heads:
            raise InputError(f"{what}: head {h} of head ({l}, {h}) does not exist: {model.name} has heads "
                             f"0..{model.n_heads - 1} per layer")
    return list(out)


def by_layer(heads) -> dict[int, list[int]]:
    """layer -> its heads, layers in ascending order."""
    out: dict[int, list[int]] = {}
    for l, h in sorted(heads, key=lambda p: p[0]):
        out.setdefault(l, []).append(h)
    return out


def check_layers(model: ChatModel, layers) -> list[int]:
    """The given layers (None: every layer), each checked against the model."""
    if layers is None:
        return list(range(model.n_layers))
    bad = [l for l in layers if isinstance(l, bool) or not isinstance(l, numbers.Integral) or not 0 <= l < model.n_layers]
    if bad or not list(layers):
        what = f"layer {bad[0]}" if len(bad) == 1 else f"layers {bad}" if bad else "an empty layer list"
        raise InputError(f"{what} does not exist: {model.name} has layers 0..{model.n_layers - 1}")
    return [int(l) for l in layers]


def direction_parts(direction) -> tuple[Tensor, int | None, dict | None]:
    """(vector, layer or None, what it records about its model) of a `Direction` (the one
    direction type) or of a bare tensor of the residual width."""
    from interp.direction import Direction

    if isinstance(direction, Direction):
        vec, layer, made_on = direction.vector, direction.layer, made_on_of(direction)
    elif isinstance(direction, (Tensor, list, tuple)):
        vec, layer, made_on = direction, None, None
    else:
        raise InputError(f"a direction must be an interp.Direction or a tensor of size d_model, got {type(direction).__name__}")
    if not isinstance(vec, Tensor):
        try:
            vec = torch.as_tensor(vec)
        except (TypeError, ValueError, RuntimeError):
            raise InputError(f"a direction must be a tensor of numbers, got {type(vec).__name__}") from None
    if vec.ndim != 1:
        raise InputError(f"direction has shape {tuple(vec.shape)}, but a residual direction is one vector (it has "
                         "the residual width); was it made on another model?")
    return vec.detach(), layer, made_on


def made_on_of(direction) -> dict | None:
    """What a `Direction` records about its model (None for one built by hand without it)."""
    meta = direction.meta
    if isinstance(meta, dict) and isinstance(meta.get("model"), str):
        return plain({k: meta.get(k) for k in ("model", "model_fingerprint", "allow_other_model") if k in meta})
    return None


def plain(d):
    """A JSON round trip: what a saved and reloaded value looks like."""
    return None if d is None else json.loads(json.dumps(d, default=str))


def on_rows(f: Callable[[Tensor], Tensor | None], rows: slice | None) -> Callable:
    """A hook running `f` on the rows `rows` of the batch only (None: every row); `f` returns the
    new activation or None for no change. The other rows pass through untouched."""
    if rows is None:
        def hook(act, hook=None):
            return f(act)
        return hook

    def hook(act, hook=None):
        part = f(act[rows])
        if part is None:
            return None
        new = act.clone()
        new[rows] = part
        return new

    return hook
