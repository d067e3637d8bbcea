"""At load: does the bridge compute what the model it wraps computes?

`TransformerBridge` installs its own components in place of the Hugging Face model's embedding,
blocks, attention, MLP and norms (each keeps the module it wraps as `original_component`); some
reimplement the module's forward to expose hooks (a fused QKV matrix is split into Q, K and V). An
adapter that splits wrongly gives a model that loads, runs and hooks without an error, and computes
something else: TransformerLens 4.3's Falcon adapter, on the new decoder architecture, splits the
fused QKV as contiguous [Q | K | V] where Hugging Face lays it out per key/value group; its logits
are off by 0.1 on logits of 0.7, and every result after that is about another model.

`check_bridge` runs one short chat prompt through the bridge and through the plain model (the
same module tree with every bridge component swapped back for the module it wraps, for one pass:
no second copy of the weights) and compares the last position's logits. Above the tolerance the
model is refused; `skip=True` (CLI `--skip-bridge-check`) loads it anyway, and the record says so.
Two passes of 16 tokens: see docs/real_models.md for the cost on SmolLM2-135M.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import torch
from torch import nn

from interp.errors import ModelLoadError

CHECK_PROMPT = "Hello! Can you tell me what the weather is like today?"
# tokens compared: the formatted prompt's first (BOS, where the template has one) and its last ones
# (the user's message and the generation prompt). A chat template's default system prompt makes
# SmolLM2's 43 tokens, and a pass costs in proportion: a 135M model takes ~0.1 s per 10 tokens on a core
CHECK_TOKENS = 16
# max |bridge - plain| allowed, relative to max(1, max |plain logit|): float32 differs only in the
# order of a few sums (5e-7 on ~30 architectures); half precision rounds every activation
RTOL = {torch.float32: 1e-3, torch.float64: 1e-6}
RTOL_HALF = 5e-2


def tl_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("transformer-lens")
    except PackageNotFoundError:
        return "unknown"


def architecture(model) -> str:
    """The Hugging Face class and model type of the wrapped model, e.g. 'FalconForCausalLM (falcon)'."""
    hf = model.bridge.original_model
    cfg = getattr(hf, "config", None)
    return f"{type(hf).__name__} ({getattr(cfg, 'model_type', '?')})"


@contextmanager
def plain_modules(hf_model: nn.Module):
    """The Hugging Face model with every bridge component replaced by the module it wraps; put
    back on exit, also on an exception. Yields how many components were swapped."""
    from transformer_lens.model_bridge.generalized_components.base import GeneralizedComponent

    swapped: list[tuple[nn.Module, str, nn.Module]] = []

    def walk(module: nn.Module) -> None:
        for name, child in list(module._modules.items()):
            if child is None:
                continue
            inner = child._modules.get("_original_component") if isinstance(child, GeneralizedComponent) else None
            if inner is not None:
                module._modules[name] = inner
                swapped.append((module, name, child))
                walk(inner)
            else:
                walk(child)

    try:
        walk(hf_model)
        yield len(swapped)
    finally:
        for module, name, child in reversed(swapped):
            module._modules[name] = child


def _last_logits(run, tokens, mask):
    try:
        out = run(tokens, mask, 1)
    except TypeError:  # no logits_to_keep on this model class
        out = run(tokens, mask, None)
    return out[:, -1].float()


@torch.no_grad()
def check_bridge(model, skip: bool = False) -> dict:
    """Compare the bridge's last-position logits with the plain model's on CHECK_PROMPT; a
    ModelLoadError above the tolerance unless `skip`. Returns the record kept in `model.meta`."""
    record = {"transformer_lens": tl_version(), "architecture": architecture(model), "prompt": CHECK_PROMPT}
    if skip:
        return {**record, "skipped": True, "note": "--skip-bridge-check: the bridge was not compared with the model"}
    t0 = time.perf_counter()
    batch = model.encode([CHECK_PROMPT])
    tokens, mask = batch.tokens, batch.attention_mask
    if tokens.shape[1] > CHECK_TOKENS:
        keep = torch.cat([torch.arange(1), torch.arange(tokens.shape[1] - CHECK_TOKENS + 1, tokens.shape[1])])
        tokens, mask = tokens[:, keep.to(tokens.device)], mask[:, keep.to(mask.device)]
    hf = model.bridge.original_model

    def bridge_run(tokens, mask, keep):
        kw = {"logits_to_keep": keep, "use_cache": False} if keep else {}
        return model.bridge(tokens, attention_mask=mask, **kw)

    def plain_run(tokens, mask, keep):
        kw = {"logits_to_keep": keep} if keep else {}
        return hf(input_ids=tokens, attention_mask=mask, use_cache=False, **kw).logits

    try:
        got = _last_logits(bridge_run, tokens, mask)
    except Exception as e:  # the adapter wraps the model but cannot run it
        raise ModelLoadError(f"{model.name}: the TransformerLens {record['transformer_lens']} bridge of the "
                             f"{record['architecture']} model fails on one short chat prompt ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:200] if str(e) else ''}): the bridge does not support this "
                             "architecture or configuration (docs/real_models.md)") from None
    with plain_modules(hf) as n_swapped:
        if not n_swapped:  # nothing to swap back: this TransformerLens wraps models some other way
            return {**record, "skipped": True, "note": "no bridge component found to compare against"}
        try:
            want = _last_logits(plain_run, tokens, mask)
        except Exception as e:
            raise ModelLoadError(f"{model.name}: the bridge check could not run the plain {record['architecture']} "
                                 f"model ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}); "
                                 "pass --skip-bridge-check (skip_bridge_check=True) to load it unchecked") from None
    scale = float(want.abs().max())
    diff = float((got - want).abs().max()) if torch.isfinite(got).all() else float("inf")
    tol = RTOL.get(model.dtype, RTOL_HALF) * max(1.0, scale)
    record.update(max_abs_diff=diff, logit_scale=scale, tolerance=tol, n_tokens=int(tokens.shape[1]),
                  seconds=round(time.perf_counter() - t0, 3), skipped=False)
    if not diff <= tol:
        raise ModelLoadError(
            f"{model.name}: the TransformerLens {record['transformer_lens']} bridge computes other logits than the "
            f"{record['architecture']} model it wraps (max |difference| {diff:.3g} on last-position logits up to "
            f"{scale:.3g}, tolerance {tol:.2g}, one short chat prompt): its adapter does not fit this model's "
            "configuration, so every hooked result would be about another model. Use a TransformerLens version "
            "that fixes the adapter, or pass --skip-bridge-check (skip_bridge_check=True) to load it anyway "
            "(recorded in the model's metadata)")
    return record
