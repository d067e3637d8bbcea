"""Refusal-direction ablation and addition on a `probes.Direction` (or a bare vector plus a layer).

There is one direction type, `probes.artifacts.Direction`, and one choice of it, Arditi et al.'s
selection in `probes.directions.find_refusal_direction`; `probes.directions` also makes a single
candidate at a given layer (`mean_difference_direction`) and gives a unit vector its natural size
(`calibrate_direction`). Ablation projects the unit direction out of every block input and
attention/MLP output at every position; addition adds the un-normalised difference in means
(coefficient 1) to the block input of its layer.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from interp.errors import InputError
from interp.hooks import add_direction as _add, ablate_direction as _ablate, check_alpha
from interp.model import ChatModel
from probes.directions import resolve_direction


@contextmanager
def ablate_direction(model: ChatModel, direction) -> Iterator[ChatModel]:
    """Project the direction out of every block input and attention/MLP output, at every position."""
    vec, _ = resolve_direction(model, direction)
    with _ablate(model, vec):
        yield model


@contextmanager
def add_direction(model: ChatModel, direction, layer: int | None = None, alpha: float = 1.0) -> Iterator[ChatModel]:
    """Add `alpha * vector` to the block input (`resid_pre`) of `layer` (default: the direction's own layer)."""
    vec, layer = resolve_direction(model, direction, layer)
    if layer is None:
        raise InputError("adding a direction needs a layer: pass layer= or a direction object with .layer")
    with _add(model, vec, layer, check_alpha(alpha)):
        yield model
