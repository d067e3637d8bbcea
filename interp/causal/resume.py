"""Forward passes that compute only what a search reads.

* `last_position_logits`: next-token logits at the last prompt position only. The unembedding is
  the largest single matrix of a small chat model (SmolLM2-135M: 49,152 x 576), and logits at
  every position of a 512-row replicated batch are 512 x 60 x 49,152 floats, 6 GB: most of the
  7.4 GB peak the exhaustive causal search reached. Hugging Face models take `logits_to_keep`.
* `cache_block_inputs` / `run_from_layer`: an intervention at layer l cannot change blocks 0..l-1,
  so a run that intervenes only at layer l or later can start at block l from a clean run's
  cached block input. On average over the layers this halves the cost of a per-layer scan.

TransformerLens 4's `forward(start_at_layer=k)` swaps in the residual at block k but still runs
blocks 0..k-1 (its docstring says so), so it saves nothing. We call the bridge's blocks directly
instead, with the keyword arguments (attention mask, rotary embeddings, position ids) the Hugging
Face model handed each block in the clean run, captured by a forward pre-hook. Block hooks still
fire (the blocks are the bridge's own `BlockBridge` modules), so every hook-based intervention
works unchanged on a resumed run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from interp.batching import rows_per_pass
from interp.errors import InputError
from interp.hooks import FwdHook, hooked
from interp.model import ChatModel, EncodedBatch


def prompt_batches(model: ChatModel, texts: Sequence[str], max_rows: int, new_tokens: int = 0,
                   max_prompts: int | None = None, grad: bool = False):
    """Yield (indices, encoded batch, row budget) over `texts` sorted by length (little padding),
    each batch as large as the row budget of its own token length allows (and `max_prompts`). The
    budget of a batch follows its own longest prompt, not the set's: a few long prompts at the end
    (many-shot jailbreaks) do not shrink the batches of the short ones."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    lengths = model.token_lengths([texts[j] for j in order])
    cap = min(max_rows, max_prompts or max_rows)
    i = 0
    while i < len(order):
        n, longest = 0, 0
        while i + n < len(order) and n < cap:
            grown = max(longest, lengths[i + n])
            if n and n + 1 > rows_per_pass(model, grown, max_rows, new_tokens, grad):
                break
            n, longest = n + 1, grown
        b = model.encode([texts[j] for j in order[i:i + n]])
        yield order[i:i + n], b, rows_per_pass(model, b.tokens.shape[1], max_rows, new_tokens, grad)
        i += n


def _final_logits(model: ChatModel, h: Float[Tensor, "row 1 d_model"]) -> Float[Tensor, "row d_vocab"]:
    """Logits from the last block's output, as the model's forward computes them: final norm,
    unembedding, then what some models do to the logits (Cohere and MPT multiply them by
    `logit_scale`, Granite divides by `logits_scaling`, Gemma 2/3 soft-cap them)."""
    logits = model.bridge.unembed(model.bridge.ln_final(h))[:, -1]
    cfg = getattr(getattr(model.bridge, "original_model", None), "config", None)
    scale, divide = getattr(cfg, "logit_scale", None), getattr(cfg, "logits_scaling", None)
    if isinstance(scale, (int, float)) and not isinstance(scale, bool):
        logits = logits * scale
    if isinstance(divide, (int, float)) and not isinstance(divide, bool) and divide != 1:
        logits = logits / divide
    cap = getattr(cfg, "final_logit_softcapping", None)
    return logits if not cap else torch.tanh(logits / cap) * cap


def last_position_logits(model: ChatModel, tokens: Tensor, attention_mask: Tensor) -> Float[Tensor, "batch d_vocab"]:
    """Logits at the last position (left padding: every row's next token), without computing the
    other positions' logits."""
    try:
        logits = model.bridge(tokens, attention_mask=attention_mask, logits_to_keep=1, use_cache=False)
    except TypeError:  # a model class without logits_to_keep: compute them all and keep the last
        logits = model.bridge(tokens, attention_mask=attention_mask)
    return logits[:, -1]


@dataclass
class BlockInputs:
    """Each block's input and call arguments in one clean run of a batch, from `first` on."""

    batch: EncodedBatch
    first: int
    resid: list[Float[Tensor, "batch pos d_model"]]  # resid[i]: input of block first + i
    kwargs: list[dict]  # kwargs[i]: what the model passed block first + i besides its input
    logits: Float[Tensor, "batch d_vocab"]  # the clean run's last-position logits
    # args[i]: positional arguments after the input (GPT-2's blocks get the attention mask so)
    args: list[tuple] = field(default_factory=list)

    def resid_at(self, layer: int) -> Float[Tensor, "batch pos d_model"]:
        return self.resid[layer - self.first]


@torch.no_grad()
def cache_block_inputs(model: ChatModel, batch: EncodedBatch, first: int = 0,
                       hooks: Sequence[FwdHook] = ()) -> BlockInputs:
    """One pass over `batch` (with `hooks` installed), keeping the input of blocks first..L-1."""
    if not 0 <= first < model.n_layers:
        raise InputError(f"first layer {first} is out of range for {model.name} (layers 0..{model.n_layers - 1})")
    blocks = model.bridge.blocks
    resid: list = [None] * (model.n_layers - first)
    kwargs: list = [None] * (model.n_layers - first)
    rest: list = [()] * (model.n_layers - first)
    final: list = [None]

    def grab(i):
        def pre(module, args, kw):
            resid[i] = (args[0] if args else kw["hidden_states"]).detach()
            rest[i] = tuple(args[1:])
            kwargs[i] = {k: v for k, v in kw.items() if k != "hidden_states"}
        return pre

    def grab_final(module, args):
        final[0] = args[0][:, -1:].detach()

    handles = [blocks[l].register_forward_pre_hook(grab(l - first), with_kwargs=True) for l in range(first, model.n_layers)]
    handles.append(model.bridge.ln_final.register_forward_pre_hook(grab_final))
    try:
        with hooked(model, list(hooks)):
            logits = last_position_logits(model, batch.tokens, batch.attention_mask)
    finally:
        for h in handles:
            h.remove()
    if any(r is None for r in resid):
        raise InputError(f"{model.name}: the blocks were not called one after another with the residual stream as "
                         "input, so a run cannot be resumed at a block; pass resume=False")
    # a resumed run ends in _final_logits: it must give the clean run's logits from its last residual
    if final[0] is None or not torch.allclose(_final_logits(model, final[0]), logits, rtol=1e-4, atol=1e-4):
        raise InputError(f"{model.name}: its logits are not the unembedded final norm of the last block's output (as "
                         "far as interp.causal.resume knows this architecture), so a run cannot be resumed at a block; "
                         "pass resume=False")
    return BlockInputs(batch, first, resid, kwargs, logits, rest)


# Block arguments that are shared by every row whatever their shape: MPT's ALiBi `position_bias` is
# [heads, 1, context], which a shape rule would take for [batch, ...] when the batch has as many rows
# as the model has heads (or for BLOOM's [batch x heads, ...] with one row)
SHARED_KWARGS = frozenset({"position_bias", "cache_position"})
# ... and those built per row and head, row-major: BLOOM's ALiBi bias is [batch x heads, 1, key]
PER_ROW_AND_HEAD_KWARGS = frozenset({"alibi"})


def _repeat(x, n: int, k: int, heads: int = 1, name: str | None = None):
    """Tile every per-row tensor k times; shared tensors pass unchanged. Per row: the first axis is
    the batch (n), or for PER_ROW_AND_HEAD_KWARGS batch x heads, so that replica j of row b and head
    h is where the model would have put it had it built the tensor for the tiled batch."""
    if isinstance(x, Tensor):
        # 1-d tensors (cache positions) are per position, never per row
        rows = n * heads if name in PER_ROW_AND_HEAD_KWARGS else n
        per_row = name not in SHARED_KWARGS and x.ndim >= 2 and x.shape[0] == rows
        return x.repeat(k, *([1] * (x.ndim - 1))) if k > 1 and per_row else x
    if isinstance(x, tuple):
        return tuple(_repeat(v, n, k, heads, name) for v in x)
    if isinstance(x, list):
        return [_repeat(v, n, k, heads, name) for v in x]
    if isinstance(x, dict):
        return {key: _repeat(v, n, k, heads, key) for key, v in x.items()}
    return x


def run_from_layer(model: ChatModel, inputs: BlockInputs, layer: int, repeat: int = 1,
                   resid: Float[Tensor, "row pos d_model"] | None = None,
                   hooks: Sequence[FwdHook] = ()) -> Float[Tensor, "row d_vocab"]:
    """Last-position logits of the run that starts at block `layer` from the cached block input
    (tiled `repeat` times: one replica per intervention), or from `resid` when given, with
    `hooks` installed. Hooks on earlier layers never fire."""
    if not inputs.first <= layer < model.n_layers:
        raise InputError(f"cannot resume at layer {layer}: block inputs were cached from layer {inputs.first} on")
    n = inputs.batch.tokens.shape[0]
    h = inputs.resid_at(layer).repeat(repeat, 1, 1) if resid is None else resid
    if h.shape[0] != n * repeat:
        raise InputError(f"resumed residual has {h.shape[0]} rows, expected {n} prompts x {repeat} replicas")
    blocks = model.bridge.blocks
    with hooked(model, list(hooks)):
        for l in range(layer, model.n_layers):
            kw = _repeat(inputs.kwargs[l - inputs.first], n, repeat, model.n_heads)  # a new dict: the cache stays as captured
            args = _repeat(inputs.args[l - inputs.first], n, repeat, model.n_heads) if inputs.args else ()
            out = blocks[l](h, *args, **kw)
            h = out[0] if isinstance(out, tuple) else out
        # norms act per position: normalising the last position alone gives the same logits
        return _final_logits(model, h[:, -1:])
