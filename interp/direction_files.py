"""Directions saved by other tools, read into the one `Direction` type.

andyrdt/refusal_direction (Arditi et al.'s code) saves its chosen direction as `direction.pt`: a
`torch.save`d 1-D tensor of the residual width (the difference in means at the chosen block input,
not normalised; on the device and in the dtype the run used), and beside it
`direction_metadata.json` with `"pos"` (the post-instruction position, counted from the end, -1 =
last token) and `"layer"` (the block whose input it was read at). Both keys are optional here: a
file without metadata loads with layer 0 and position -1 and says so in `meta["assumed"]`.

The tensor is read with `torch.load(weights_only=True)`: plain tensors only, never arbitrary
pickled objects.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from interp.errors import ArtifactError, InputError
from interp.direction import Direction

METADATA_FILE = "direction_metadata.json"


def load_refusal_direction(path: str | Path, metadata: str | Path | None = None, model=None) -> Direction:
    """A `Direction` from a `direction.pt` (andyrdt/refusal_direction layout) and its metadata JSON
    (default: `direction_metadata.json` beside it, when present). With `model`, the vector must
    have its residual width and the layer must be one of its blocks."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"direction file {p} does not exist; pass the direction.pt a refusal-direction run saved")
    try:
        vec = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # not a torch file, or one holding more than plain tensors
        raise ArtifactError(f"{p} could not be read as a saved tensor ({type(e).__name__}: {str(e).splitlines()[0][:160]}); "
                            "only plain tensors are read (torch.load with weights_only=True)") from None
    if isinstance(vec, dict) and len(vec) == 1:
        vec = next(iter(vec.values()))
    if not isinstance(vec, torch.Tensor) or vec.ndim != 1 or not vec.is_floating_point():
        shape = tuple(vec.shape) if isinstance(vec, torch.Tensor) else type(vec).__name__
        raise ArtifactError(f"{p} holds {shape}; a direction is one 1-D float tensor of the residual width")
    if not torch.isfinite(vec).all() or float(vec.norm()) == 0.0:
        raise ArtifactError(f"{p}: the direction is zero or not finite; it cannot be normalised")
    meta_path = Path(metadata).expanduser() if metadata is not None else p.parent / METADATA_FILE
    info: dict = {}
    if meta_path.is_file():
        try:
            info = json.loads(meta_path.read_text())
        except json.JSONDecodeError as e:
            raise ArtifactError(f"{meta_path} is not valid JSON ({e.msg}, line {e.lineno})") from None
        if not isinstance(info, dict):
            raise ArtifactError(f"{meta_path} holds a JSON {type(info).__name__}; expected an object with 'pos' and 'layer'")
    elif metadata is not None:
        raise InputError(f"direction metadata file {meta_path} does not exist")
    assumed = [k for k in ("layer", "pos") if k not in info]
    try:
        layer, pos = int(info.get("layer", 0)), int(info.get("pos", -1))
    except (TypeError, ValueError):
        raise ArtifactError(f"{meta_path}: 'layer' and 'pos' must be whole numbers, got {info.get('layer')!r}, "
                            f"{info.get('pos')!r}") from None
    if model is not None:
        if vec.shape[0] != model.d_model:
            raise ArtifactError(f"{p}: the direction has {vec.shape[0]} dimensions, {model.name} a residual width of "
                                f"{model.d_model}; it was made on another model")
        if not 0 <= layer < model.n_layers:
            raise ArtifactError(f"{meta_path}: layer {layer} is not a block of {model.name} (0..{model.n_layers - 1})")
    meta = {"source": str(p), "format": "andyrdt/refusal_direction direction.pt",
            **({"metadata": str(meta_path)} if info else {}), **({"assumed": {"layer": 0, "pos": -1}} if assumed else {})}
    return Direction(vec.detach().float().cpu(), layer, pos, "resid_pre", reason="loaded from a refusal_direction run",
                     meta=meta)


def read_direction(path: str | Path, model=None, allow_other_model: bool = False) -> Direction:
    """A direction file of either kind: this toolkit's artifact (`NAME.safetensors` + `NAME.json`,
    checked against `model`'s fingerprint) or a `.pt` in the refusal_direction layout."""
    if Path(path).suffix == ".pt":
        return load_refusal_direction(path, model=model)
    return Direction.load(path, model=model, allow_other_model=allow_other_model)
