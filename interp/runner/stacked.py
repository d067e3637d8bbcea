"""`run`: a batch under an intervention or a stack of them (see `interp.runner`)."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from interp.batching import rows_per_pass
from interp.errors import InputError
from interp.intervention import Intervention, Stack
from interp.model import ChatModel, EncodedBatch
from interp.runner.blocks import BlockInputs, cache_block_inputs, resume_logits, tile
from interp.runner.forward import last_logits


# prompts whose block inputs are cached at once for resumed runs: 16 prompts x 60 tokens x 30
# layers x 576 floats is 66 MB (SmolLM2-135M); larger sets are cached batch by batch
RESUME_PROMPTS = 16


class PassRead:
    """A read that runs a whole pass of its own on the (tiled) batch, e.g. greedy generation
    (`interp.generation.Greedy`); `new_tokens`: positions it adds (for the row budget)."""

    new_tokens: int = 0

    def __call__(self, model: ChatModel, batch: EncodedBatch) -> list:
        raise NotImplementedError


Read = Callable[[Tensor], Tensor] | PassRead | None


def run(model: ChatModel, batch: EncodedBatch | BlockInputs, intervention: Intervention | Stack | None = None,
        read: Read = None, from_layer: int | str | None = None, max_rows: int = 512,
        progress: Callable[[int], None] | None = None):
    """Run `batch` (n prompts) under `intervention` (one, or a `Stack` of k: row r of the result
    belongs to replica r // n) and return what `read` takes, rows replica-major:
    * None: last-position logits [k*n, d_vocab];
    * a function of the last-position logits (a metric per row), applied per pass;
    * a `PassRead` (a pass of its own, e.g. generation): a list of k*n rows.
    `from_layer`: None runs from the embeddings; an int resumes every replica at that block; "auto"
    resumes each replica at the first block it changes (those changing nothing take the cached
    clean logits). Resuming reads cached block inputs: pass `batch` as `cache_block_inputs(...)`
    (e.g. cached under a base intervention), or an `EncodedBatch` to cache a clean run here.
    Replicas are chunked to `rows_per_pass` (at most `max_rows` rows); `progress(k_done)` after
    each pass."""
    stack = intervention if isinstance(intervention, Stack) else Stack((intervention or Intervention.none(),))
    enc = batch.batch if isinstance(batch, BlockInputs) else batch
    n, P = enc.tokens.shape
    passes = isinstance(read, PassRead)
    if passes and from_layer is not None:
        raise InputError("a read that runs a pass of its own (generation) cannot resume at a block; pass from_layer=None")
    per = max(1, rows_per_pass(model, P, max_rows, read.new_tokens if passes else 0) // n)
    if from_layer is None:
        return _join([_full(model, enc, stack[c0:c0 + per], read, progress) for c0 in range(0, len(stack), per)])
    starts = _starts(model, stack, from_layer)
    cache = batch if isinstance(batch, BlockInputs) else None
    first = min((s for s in starts if s < model.n_layers), default=model.n_layers - 1)
    if cache is None:
        cache = cache_block_inputs(model, enc, max(first, 0))
    elif cache.first > first:
        raise InputError(f"cannot resume at layer {first}: block inputs were cached from layer {cache.first} on")
    rows: list = [None] * len(stack)
    groups: dict[int, list[int]] = {}
    for c, s in enumerate(starts):
        groups.setdefault(s, []).append(c)
    for layer in sorted(groups):
        members = groups[layer]
        for c0 in range(0, len(members), per):
            chunk = members[c0:c0 + per]
            sub = Stack(tuple(stack.configs[c] for c in chunk))
            if layer >= model.n_layers:  # changes nothing: the clean (cached) run
                logits = cache.logits.repeat(len(chunk), *[1] * (cache.logits.ndim - 1))
            else:
                with sub.apply(model, n):
                    logits = resume_logits(model, cache, layer, len(chunk))
            out = logits if read is None else read(logits)
            for j, c in enumerate(chunk):
                rows[c] = out[j * n:(j + 1) * n]
            if progress is not None:
                progress(len(chunk))
    return torch.cat(rows)


def _starts(model: ChatModel, stack: Stack, from_layer: int | str) -> list[int]:
    firsts = [c.first_layer(model) for c in stack.configs]
    if from_layer == "auto":
        if min(firsts) < 0:
            raise InputError(f"{stack.describe()} changes the embeddings: it cannot resume at a block; pass from_layer=None")
        return firsts
    if isinstance(from_layer, bool) or not isinstance(from_layer, int) or not 0 <= from_layer < model.n_layers:
        raise InputError(f"from_layer must be None, 'auto' or a layer 0..{model.n_layers - 1}, got {from_layer!r}")
    early = [c.describe() for c, f in zip(stack.configs, firsts) if f < from_layer]
    if early:
        raise InputError(f"{early[0]} changes blocks before layer {from_layer}, where the run resumes; its change "
                         "would be lost (cache the block inputs under it, or resume later)")
    return [from_layer] * len(stack)


def _full(model: ChatModel, enc: EncodedBatch, stack: Stack, read: Read, progress) -> Tensor | list:
    k, n = len(stack), enc.tokens.shape[0]
    tiled = tile(enc, k)
    with stack.apply(model, n):
        if isinstance(read, PassRead):
            out = read(model, tiled)
        else:
            logits = last_logits(model, tiled)
            out = logits if read is None else read(logits)
    if progress is not None:
        progress(k)
    return out


def _join(parts: Sequence):
    if parts and isinstance(parts[0], Tensor):
        return torch.cat(list(parts))
    return [row for part in parts for row in part]


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
