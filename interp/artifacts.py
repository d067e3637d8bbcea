"""Saved artifacts: tensors as `NAME.safetensors` and metadata as the `NAME.json` sidecar beside them
(model, fingerprint, prompt sets, site, positions, seed, toolkit version); never pickle. Loading with a
model checks that the artifact was made for it (fingerprint and shapes) and raises `ArtifactError`
otherwise. `interp.direction.Direction` and `probes.HeadRanking` save through here.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor

from interp.errors import ArtifactError


def artifact_paths(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.parent / (p.name + ".safetensors"), p.parent / (p.name + ".json")


def write_artifact(path: str | Path, tensors: dict[str, Tensor], meta: dict) -> list[Path]:
    from safetensors.torch import save_file

    st, js = artifact_paths(path)
    st.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().float().contiguous().cpu() for k, v in tensors.items()}, str(st))
    js.write_text(json.dumps(meta, indent=1, default=_json_default))
    return [st, js]


def read_artifact(path: str | Path, kind: str) -> tuple[dict[str, Tensor], dict]:
    from safetensors.torch import load_file

    st, js = artifact_paths(path)
    for f in (st, js):
        if not f.exists():
            raise ArtifactError(f"no {kind} artifact at {path}: {f} is missing (an artifact is a .safetensors file "
                                f"and a .json sidecar with the same name)")
    try:
        meta = json.loads(js.read_text())
        tensors = load_file(str(st))
    except Exception as e:  # corrupt or truncated files
        raise ArtifactError(f"could not read the {kind} artifact at {st} ({type(e).__name__}: {e})") from None
    if meta.get("type") != kind:
        raise ArtifactError(f"{js} holds a {meta.get('type', 'unknown')!r} artifact, not a {kind}; "
                            f"load it with the matching class")
    return tensors, meta


def _json_default(o):
    if isinstance(o, Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, torch.dtype):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def check_artifact_model(meta: dict, model, what: str, fields: tuple[str, ...], allow_other_model: bool = False) -> None:
    """Raise `ArtifactError` unless `model` is the model the artifact was made for: the same model
    fingerprint (config + weights, whatever path or name it was loaded by) and the same shapes.
    `allow_other_model=True` lets a fingerprint mismatch through (never a shape mismatch) and
    records it in `meta["allow_other_model"]`."""
    from interp.fingerprint import check_made_on

    if model is None:  # nothing to compare with now; every later use with a model checks the fingerprint
        return
    made, now = meta.get("model_shape", {}), {f: int(getattr(model, f)) for f in fields}
    diff = [f"{f} {made[f]} vs {now[f]}" for f in fields if f in made and made[f] != now[f]]
    if diff:
        raise ArtifactError(f"this {what} does not fit the model: it was made on {meta.get('model')!r}, not "
                            f"{model.name!r}; shapes differ (artifact vs model): " + ", ".join(diff)
                            + f". Recompute it on {model.name!r} (safety-heads rank --model ...) or load it with the right model")
    override = check_made_on(model, meta, f"this {what}", allow_other_model, require_fingerprint=True)
    if override:
        meta["allow_other_model"] = override
