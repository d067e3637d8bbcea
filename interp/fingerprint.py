"""What model an artifact was made on, independent of the path or name it was loaded by.

A fingerprint is a hash of the model's configuration (the fields that define the network, not the
ones that say where it was loaded from or how it runs) and of a strided sample of every weight
tensor. Weights are sampled in bfloat16, so the same checkpoint loaded in float32, bfloat16 or
float16 gives the same fingerprint, while a retrained or fine-tuned model gives another one.

Every artifact records `model_record(model)`; every load or use checks it with `check_made_on`.
`allow_other_model=True` lets a mismatch through and says so in the artifact's metadata.
"""

from __future__ import annotations

import hashlib
import json

import torch

from interp.errors import ArtifactError, InputError

# config fields that say how a model was loaded or runs, not what it computes
_RUNTIME_KEYS = {"transformers_version", "dtype", "torch_dtype", "use_cache", "return_dict", "output_hidden_states",
                 "output_attentions", "attn_implementation", "chunk_size_feed_forward", "problem_type", "id2label",
                 "label2id", "tf_legacy_loss", "use_bfloat16", "torchscript", "pruned_heads"}
SAMPLES_PER_TENSOR = 1024


class ModelMismatchError(ArtifactError, InputError):
    """An artifact made on one model was handed to another."""


def _config_dict(model) -> dict:
    hf = getattr(model.bridge, "original_model", None)
    cfg = getattr(hf, "config", None)
    if cfg is not None and hasattr(cfg, "to_dict"):
        d = cfg.to_dict()
    else:  # no Hugging Face model behind the bridge: its own config
        d = {k: v for k, v in vars(model.bridge.cfg).items() if isinstance(v, (int, float, str, bool, type(None)))}
    return {k: v for k, v in sorted(d.items()) if not k.startswith("_") and k not in _RUNTIME_KEYS}


@torch.no_grad()
def compute_fingerprint(model) -> str:
    """sha256 (16 hex digits) of the defining config and a bfloat16 sample of every weight tensor."""
    h = hashlib.sha256()
    h.update(json.dumps(_config_dict(model), sort_keys=True, default=str).encode())
    hf = getattr(model.bridge, "original_model", None) or model.bridge
    for name, p in _named_weights(hf):
        flat = p.detach().reshape(-1)
        step = max(1, flat.numel() // SAMPLES_PER_TENSOR)
        sample = flat[::step][:SAMPLES_PER_TENSOR].to("cpu", torch.bfloat16).contiguous()
        h.update(name.replace("._original_component", "").encode())
        h.update(str(tuple(p.shape)).encode())
        h.update(sample.view(torch.int16).numpy().tobytes())
    return h.hexdigest()[:16]


def _named_weights(module):
    """`named_parameters()` with real values also for weights offloaded to CPU or disk by accelerate
    (those parameters are meta placeholders outside their module's own forward call)."""
    from contextlib import nullcontext

    try:
        from accelerate.utils import align_module_device
    except ImportError:  # accelerate absent: nothing can be offloaded
        align_module_device = None
    seen: set[int] = set()
    for mname, mod in module.named_modules():
        own = [(n, p) for n, p in mod.named_parameters(recurse=False) if id(p) not in seen]
        if not own:
            continue
        seen.update(id(p) for _, p in own)
        offloaded = any(p.device.type == "meta" for _, p in own)
        with align_module_device(mod) if offloaded and align_module_device else nullcontext():
            for pname, _ in own:
                yield (f"{mname}.{pname}" if mname else pname), getattr(mod, pname)


def model_record(model) -> dict:
    """What an artifact records about the model it was made on (and a skipped bridge check: the
    bridge's logits were not compared with the plain model's, interp.bridge_check)."""
    skipped = (getattr(model, "meta", None) or {}).get("bridge_check", {}).get("skipped")
    return {"model": model.name, "model_fingerprint": model.fingerprint,
            **({"bridge_check": "skipped (--skip-bridge-check)"} if skipped else {})}


def check_made_on(model, made_on: dict, what: str, allow_other_model: bool = False,
                  require_fingerprint: bool = False) -> dict | None:
    """Raise `ModelMismatchError` unless `made_on` (an artifact's metadata) was made on `model`.

    The fingerprint decides, not the name (the same weights loaded by another path match; another
    model under the same name does not). Objects with no fingerprint (built by hand) fall back to
    the name unless `require_fingerprint` (a saved artifact must have one). An artifact already let
    through on this model with `allow_other_model=True` passes. Returns the override record to keep
    in the artifact's metadata when a mismatch is allowed, else None.
    """
    fp, name = made_on.get("model_fingerprint"), made_on.get("model")
    override = made_on.get("allow_other_model")
    if fp is not None and fp == model.fingerprint:
        return None
    if isinstance(override, dict) and override.get("used_on", {}).get("model_fingerprint") == model.fingerprint:
        return override
    if fp is None:
        if not require_fingerprint and (name is None or name == model.name):
            return None
        why = ("it records no model fingerprint (made by an older version of the toolkit)" if fp is None and
               (name is None or name == model.name) else f"it was made on model {name!r}, not on {model.name!r}")
    else:
        why = (f"it was made on model {name!r} (fingerprint {fp}), and {model.name!r} is a different model "
               f"(fingerprint {model.fingerprint})")
    if allow_other_model:
        return {"made_on": {"model": name, "model_fingerprint": fp},
                "used_on": {"model": model.name, "model_fingerprint": model.fingerprint}}
    raise ModelMismatchError(f"{what} does not fit this model: {why}. Recompute it on this model, or pass "
                             "allow_other_model=True to use it anyway (recorded in its metadata)")
