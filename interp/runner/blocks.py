"""Resuming a run at a block: one clean pass caches each block's input and call arguments; a later
run re-executes blocks l..L-1 only, tiled once per replica. Exact (the blocks see the inputs and
arguments they saw), and a scan of many interventions that start late costs a fraction of a pass
each."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, replace

import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InputError
from interp.model import ChatModel, EncodedBatch
from interp.runner.forward import forward


def tile(batch: EncodedBatch, k: int) -> EncodedBatch:
    """The batch repeated k times (replica-major: row r is prompt r mod n of replica r // n)."""
    if k == 1:
        return batch
    return replace(batch, tokens=batch.tokens.repeat(k, 1), attention_mask=batch.attention_mask.repeat(k, 1),
                   lengths=batch.lengths * k, formatted=batch.formatted * k, offsets=batch.offsets * k,
                   content_starts=batch.content_starts * k, content_ends=batch.content_ends * k)


@dataclass
class BlockInputs:
    """Each block's input and call arguments in one run of a batch, from block `first` on."""

    batch: EncodedBatch
    first: int
    resid: list[Float[Tensor, "batch pos d_model"]]  # resid[i]: input of block first + i
    args: list[tuple]  # args[i]: the other positional arguments the model passed block first + i (GPT-2: the mask)
    kwargs: list[dict]  # kwargs[i]: its keyword arguments
    logits: Float[Tensor, "batch d_vocab"]  # the run's last-position logits ([batch, keep, d_vocab] when keep > 1)
    keep: int = 1  # last positions whose logits a resumed run returns (teacher-forced answers need several)

    def resid_at(self, layer: int) -> Float[Tensor, "batch pos d_model"]:
        return self.resid[layer - self.first]


@torch.no_grad()
def cache_block_inputs(model: ChatModel, batch: EncodedBatch, first: int = 0, intervention=None,
                       keep: int = 1) -> BlockInputs:
    """One pass over `batch` (under `intervention`, an `Intervention`, when given), keeping the
    input of blocks first..L-1. `keep`: the last positions whose logits this run and every run
    resumed from it return (1: [batch, d_vocab]; more: [batch, keep, d_vocab])."""
    if not isinstance(keep, int) or isinstance(keep, bool) or not 1 <= keep <= batch.tokens.shape[1]:
        raise InputError(f"keep must be an integer from 1 to the batch's {batch.tokens.shape[1]} positions, got {keep!r}")
    if not 0 <= first < model.n_layers:
        raise InputError(f"first layer {first} is out of range for {model.name} (layers 0..{model.n_layers - 1})")
    blocks = model.bridge.blocks
    resid: list = [None] * (model.n_layers - first)
    rest: list = [None] * (model.n_layers - first)
    kwargs: list = [None] * (model.n_layers - first)
    final: list = [None]

    def grab(i):
        def pre(module, args, kw):
            resid[i] = (args[0] if args else kw["hidden_states"]).detach()
            rest[i] = tuple(args[1:])
            kwargs[i] = {k: v for k, v in kw.items() if k != "hidden_states"}
        return pre

    def grab_final(module, args):
        final[0] = args[0][:, -keep:].detach()

    handles = [blocks[l].register_forward_pre_hook(grab(l - first), with_kwargs=True) for l in range(first, model.n_layers)]
    handles.append(model.bridge.ln_final.register_forward_pre_hook(grab_final))
    try:
        with (intervention.apply(model) if intervention is not None else nullcontext()):
            logits = forward(model, batch.tokens, batch.attention_mask, logits_to_keep=keep)
        logits = logits[:, -1] if keep == 1 else logits
    finally:
        for h in handles:
            h.remove()
    if any(r is None for r in resid):
        raise InputError(f"{model.name}: the blocks were not called one after another with the residual stream as "
                         "input, so a run cannot be resumed at a block; pass resume=False")
    # a resumed run ends in final_logits: it must give the clean run's logits from its last residual
    if final[0] is None or not torch.allclose(_unembed(model, final[0], keep), logits, rtol=1e-4, atol=1e-4):
        raise InputError(f"{model.name}: its logits are not the unembedded final norm of the last block's output (as "
                         "far as interp.runner knows this architecture), so a run cannot be resumed at a block; "
                         "pass resume=False")
    return BlockInputs(batch, first, resid, rest, kwargs, logits, keep)


# Block arguments shared by every row whatever their shape: MPT's ALiBi `position_bias` is [heads, 1,
# context], which a shape rule would take for [batch, ...] when the batch has as many rows as the
# model has heads
SHARED_KWARGS = frozenset({"position_bias", "cache_position"})
# ... and those built per row and head, row-major: BLOOM's ALiBi bias is [batch x heads, 1, key]
PER_ROW_AND_HEAD_KWARGS = frozenset({"alibi"})


def _tile(x, n: int, k: int, n_heads: int, name: str | None = None):
    """Tile every per-row tensor k times, so that replica j of row b (and head h) sits where the model
    would have put it had it built the tensor for the tiled batch: a first axis of the batch (masks,
    rotary tables, position ids) or, for PER_ROW_AND_HEAD_KWARGS, of batch x heads (ALiBi biases,
    [batch * heads, 1, key]); shared tensors (SHARED_KWARGS, 1-d cache positions) pass unchanged."""
    if isinstance(x, Tensor):
        if name in SHARED_KWARGS or x.ndim < 2 or k == 1:
            return x
        rows = (n * n_heads,) if name in PER_ROW_AND_HEAD_KWARGS else (n, n * n_heads) if name is None else (n,)
        return x.repeat(k, *([1] * (x.ndim - 1))) if x.shape[0] in rows else x
    if isinstance(x, tuple):
        return tuple(_tile(v, n, k, n_heads, name) for v in x)
    if isinstance(x, list):
        return [_tile(v, n, k, n_heads, name) for v in x]
    if isinstance(x, dict):
        return {key: _tile(v, n, k, n_heads, key) for key, v in x.items()}
    return x


def final_logits(model: ChatModel, h: Float[Tensor, "row pos d_model"]) -> Float[Tensor, "row d_vocab"]:
    """Last-position logits from the last block's output (`final_logits_at`)."""
    return final_logits_at(model, h[:, -1:])[:, -1]


def _unembed(model: ChatModel, h: Float[Tensor, "row keep d_model"], keep: int) -> Tensor:
    return final_logits(model, h) if keep == 1 else final_logits_at(model, h)


def final_logits_at(model: ChatModel, h: Float[Tensor, "row pos d_model"]) -> Float[Tensor, "row pos d_vocab"]:
    """Logits at every position of the last block's output, as the model's forward computes them:
    final norm, unembedding, then what some models do to the logits (Cohere and MPT multiply them by
    `logit_scale`, Granite divides by `logits_scaling`, Gemma 2/3 soft-cap them)."""
    logits = model.bridge.unembed(model.bridge.ln_final(h))
    cfg = getattr(getattr(model.bridge, "original_model", None), "config", None)
    scale, divide = getattr(cfg, "logit_scale", None), getattr(cfg, "logits_scaling", None)
    if isinstance(scale, (int, float)) and not isinstance(scale, bool):
        logits = logits * scale
    if isinstance(divide, (int, float)) and not isinstance(divide, bool) and divide != 1:
        logits = logits / divide
    cap = getattr(cfg, "final_logit_softcapping", None)
    return logits if not cap else torch.tanh(logits / cap) * cap


@torch.no_grad()
def resume_logits(model: ChatModel, inputs: BlockInputs, layer: int, repeat: int = 1) -> Float[Tensor, "row d_vocab"]:
    """Last-position logits (the last `inputs.keep` positions' when more than one) of the run that
    starts at block `layer` from the cached block input, tiled `repeat` times (one replica per
    intervention; the caller installs their hooks). Hooks on earlier blocks never fire."""
    if not inputs.first <= layer < model.n_layers:
        raise InputError(f"cannot resume at layer {layer}: block inputs were cached from layer {inputs.first} on")
    n = inputs.batch.tokens.shape[0]
    h = inputs.resid_at(layer).repeat(repeat, 1, 1)
    blocks = model.bridge.blocks
    for l in range(layer, model.n_layers):
        i = l - inputs.first  # new containers: the cache stays as captured
        args, kw = _tile(inputs.args[i], n, repeat, model.n_heads), _tile(inputs.kwargs[i], n, repeat, model.n_heads)
        out = blocks[l](h, *args, **kw)
        h = out[0] if isinstance(out, tuple) else out
    # norms act per position: normalising the kept positions alone gives the same logits
    return _unembed(model, h[:, -inputs.keep:], inputs.keep)
