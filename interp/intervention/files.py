"""Saving and loading operations: `intervention.json` (each operation's class and fields, the
toolkit's provenance, the model) and `intervention.safetensors` (their tensors, keyed
"<index>.<field>"). Files of the first format (version 1: one record per part with
op/kinds/layers/heads/positions/alpha/params/label/guard/meta and tensor names) are converted
to the operation classes on read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

from torch import Tensor

from interp.errors import ArtifactError, InputError
from interp.model import ChatModel
from interp.intervention.activations import Patch, ScaleActivation, SharpenAttention, WeighTokens
from interp.intervention.heads import AblateHeads, ScaleHeads, SteerHeads
from interp.intervention.op import OP_CLASSES, Op
from interp.intervention.residual import AddToResidual, ProjectOut, ShiftResidual, SteerResidual

FILE_JSON, FILE_TENSORS = "intervention.json", "intervention.safetensors"
FORMAT, VERSION = "safety-heads intervention", 2


def write(directory: str | Path, ops: Sequence[Op], model: ChatModel | None = None) -> Path:
    from safetensors.torch import save_file
    from interp.provenance import provenance

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    records, tensors = [], {}
    for i, op in enumerate(ops):
        fields, ts = op.record()
        records.append({"op": type(op).__name__, "fields": fields, "tensors": sorted(ts)})
        for k, t in ts.items():
            tensors[f"{i}.{k}"] = t.detach().cpu().clone().contiguous()  # operations may share storage
    meta = {"format": FORMAT, "version": VERSION, "ops": records, **provenance()}
    if model is not None:
        meta["model"], meta["model_fingerprint"] = model.name, model.fingerprint
    save_file(tensors, str(d / FILE_TENSORS))
    (d / FILE_JSON).write_text(json.dumps(meta, indent=1))
    return d


def read(directory: str | Path) -> list[Op]:
    from safetensors.torch import load_file

    d = Path(directory)
    if not (d / FILE_JSON).exists() or not (d / FILE_TENSORS).exists():
        raise ArtifactError(f"{d} holds no saved intervention ({FILE_JSON} and {FILE_TENSORS}); "
                            "write one with Intervention.save(directory)")
    meta = json.loads((d / FILE_JSON).read_text())
    t = load_file(str(d / FILE_TENSORS))
    version = meta.get("version")
    if version == 1:
        return [_from_v1(r, {k: t[f"{i}.{k}"] for k in r["tensors"]}) for i, r in enumerate(meta.get("parts", []))]
    if version != VERSION:
        raise ArtifactError(f"{d / FILE_JSON} has format version {version!r}; this toolkit reads versions 1 and {VERSION}")
    out = []
    for i, r in enumerate(meta["ops"]):
        cls = OP_CLASSES.get(r["op"])
        if cls is None:
            raise ArtifactError(f"{d / FILE_JSON} holds an operation {r['op']!r} this toolkit does not know; "
                                f"known: {sorted(OP_CLASSES)}")
        try:
            out.append(cls.from_record(r["fields"], {k: t[f"{i}.{k}"] for k in r["tensors"]}))
        except (InputError, TypeError) as e:
            raise ArtifactError(f"{d / FILE_JSON}: operation {i} ({r['op']}) cannot be rebuilt: {e}") from None
    return out


# ---------------------------------------------------------------- version 1
def _tupled(x):
    return tuple(_tupled(v) for v in x) if isinstance(x, list) else x


def _label(r: Mapping) -> str:
    return r.get("label", "").replace("{alpha", "{strength")


def _from_v1(r: Mapping, t: Mapping[str, Tensor]) -> Op:
    """One part of a version-1 file as the operation class that does the same arithmetic."""
    op, kinds, alpha, meta = r["op"], list(r["kinds"]), float(r["alpha"]), dict(r.get("meta") or {})
    layers = None if r["layers"] is None else tuple(r["layers"])
    heads, positions = _tupled(r["heads"]), _tupled(r["positions"])
    made_on = meta.get("made_on")
    kw = {"label": _label(r), "made_on": made_on}
    if op == "add":
        kind = kinds[0]
        if kind == "z" and "scale" in t:
            mask = t.get("mask")
            hs = tuple((l, h) for i, l in enumerate(layers) for h in range(t["scale"].shape[1])
                       if mask is None or bool(mask[i, h]))
            return SteerHeads(hs, t["vector"], t["scale"], alpha, **kw)
        if "scale" in t:
            return SteerResidual(kind, layers, t["vector"], t["scale"], alpha, positions, **kw)
        if meta.get("method") == "antidote":
            return ShiftResidual(kind, layers, t["vector"], alpha, positions, **kw)
        return AddToResidual(kind, layers, t["vector"], alpha, positions, **kw)
    if op == "project_out":
        return ProjectOut(t["vector"], layers, tuple(kinds), made_on=made_on)
    if op == "ablate":
        p = r.get("params") or {}
        return AblateHeads(heads, p["method"], t.get("values"), p.get("seed", 0))
    if op == "patch":
        return Patch(kinds[0], layers[0], t["values"], positions,
                     None if heads is None else tuple((layers[0], h) for h in heads))
    if op == "scale":
        if heads is None:
            return ScaleActivation(kinds[0], layers, alpha)
        if layers is None:
            raise ArtifactError("a version-1 scaling of head indices in every layer cannot be converted; rebuild it "
                                "with Intervention.scale_heads([(layer, head), ...], factor) and save it again")
        return ScaleHeads(tuple((l, h) for l in layers for h in heads), alpha, kinds[0])
    if op == "temperature":
        T = float((r.get("params") or {})["T"])
        if heads is not None and not all(isinstance(h, tuple) for h in heads):
            if layers is None:
                raise ArtifactError("a version-1 sharpening of head indices in every layer cannot be converted; "
                                    "rebuild it with Intervention.sharpen(T, heads=[(layer, head), ...])")
            heads = tuple((l, h) for l in layers for h in heads)
        return SharpenAttention(T, layers, heads)
    if op == "weigh_tokens":
        return WeighTokens(t["weights"])
    raise ArtifactError(f"a version-1 intervention part has the unknown op {op!r}")
