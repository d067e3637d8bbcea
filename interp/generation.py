"""Batched greedy generation through the bridge, so that every installed hook acts on every step.

The prompt is run once with left padding and the attention mask; later steps feed one token each
with the key/value cache. Interventions therefore must not index positions: at step t the hooks
see one position (the toolkit's interventions act on every position, or on the last one only).

The cache is checked after the prompt pass. Some transformers releases hand the attention layers
the cache under a name the bridge does not read (transformers 5.24 renamed `past_key_values` to
`cache`); the cache then stays empty and every later token would be computed from itself alone,
with no error. When the check fails, generation falls back to full recomputation (exact, slower)
and warns once per model, naming the installed versions.
"""

from __future__ import annotations

import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from interp.batching import prompt_chunks
from interp.errors import InputError
from interp.hooks import FwdHook, check_finite, hooked
from interp.model import ChatModel, EncodedBatch, texts
from interp.progress import pass_bar, silenced
from interp.provenance import library_versions
from interp.runner import PassRead, forward


@dataclass(frozen=True)
class GenerationConfig:
    max_new_tokens: int = 24
    batch_size: int = 32
    use_kv_cache: bool = True
    progress: bool = False  # each pass's prompts done on stderr (`interp.progress.pass_bar`; the study's passes show it)


class BrokenCacheWarning(RuntimeWarning):
    """The key/value cache did not hold the prompt after the prompt pass."""


def _cache_length(past) -> int | None:
    """Tokens held by a Hugging Face cache object (None when it cannot say)."""
    if past is None:
        return 0
    get = getattr(past, "get_seq_length", None)
    if get is None:
        return None
    try:
        return int(get())
    except Exception:  # a cache type that cannot report its length: do not trust it
        return None


def broken_cache_message(model: ChatModel, held, expected: int) -> str:
    v = library_versions()
    return (f"the key/value cache of {model.name} holds {held} tokens after a prompt pass of {expected}: cached "
            f"generation would compute every new token from itself alone. Installed: transformers {v['transformers']}, "
            f"transformer-lens {v['transformer-lens']}, torch {v['torch']}. Generating without the cache instead "
            "(exact, slower). Fix: install the locked versions (bash scripts/setup.sh, or "
            "pip install -r requirements.lock), or pass GenerationConfig(use_kv_cache=False) to silence this.")


def _step(model: ChatModel, step_input, mask, past, use_cache: bool):
    """One generation step through the runner's forward pass (its positions, only the next token's
    logits: a replicated batch's logits at every prompt position would take rows x positions x
    vocabulary floats)."""
    return forward(model, step_input, mask, past_key_values=past, use_cache=use_cache)


@torch.no_grad()
def generate_batch(model: ChatModel, batch: EncodedBatch, max_new_tokens: int, use_kv_cache: bool = True,
                   rows: list[int] | None = None, first_logits: list | None = None,
                   prompt_hooks: Sequence[FwdHook] = (), on_step: Callable[[int], None] | None = None) -> list[list[int]]:
    """Greedy continuation of one encoded batch; returns new token ids per row (stopped at EOS).
    `rows`: the caller's prompt index of each row (for error messages). `first_logits`: a list that
    receives the first step's logits [batch, d_vocab] (the next-token logits at the first response
    position: what `interp.scoring.last_logits` computes, without a pass of its own).
    `prompt_hooks`: forward hooks active in the first step only, the pass over the whole prompt
    (`interp.capture.capture_with_answers` reads activations there). `on_step(step)` after each
    step (a progress bar's "token t of n")."""
    eos = model.tokenizer.eos_token_id
    tokens, mask = batch.tokens, batch.attention_mask
    n = tokens.shape[0]
    out = [[] for _ in range(n)]
    done = torch.zeros(n, dtype=torch.bool, device=tokens.device)
    past = None
    step_input = tokens
    use_cache = use_kv_cache and model.cache_works is not False
    for step in range(max_new_tokens):
        reads = (hooked(model, prompt_hooks, label="reads of the prompt pass") if step == 0 and prompt_hooks
                 else nullcontext())
        if use_cache:
            with reads:
                logits, past = _step(model, step_input, mask, past, use_cache=True)
            if step == 0:
                held = _cache_length(past)
                if held != tokens.shape[1]:
                    if model.cache_works is not False:
                        warnings.warn(broken_cache_message(model, held, tokens.shape[1]), BrokenCacheWarning, stacklevel=3)
                    model.cache_works = False
                    use_cache, past = False, None
                else:
                    model.cache_works = True
        else:
            with reads:
                logits = _step(model, tokens, mask, None, use_cache=False)
        # NaN logits would argmax to an arbitrary token and come out as an empty answer
        step_logits = check_finite(logits[:, -1, :], f"logits at generation step {step}", rows)
        if step == 0 and first_logits is not None:
            first_logits.append(step_logits)
        if on_step is not None:
            on_step(step)
        nxt = step_logits.argmax(-1)
        for r in range(n):
            if not done[r]:
                out[r].append(int(nxt[r]))
        done |= nxt == eos
        if bool(done.all()):
            break
        nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        step_input = nxt[:, None]
    return [[t for t in row if t != eos] for row in out]


@dataclass(frozen=True)
class Greedy(PassRead):
    """`interp.runner.run`'s read for greedy generation: per row, (new token ids, the first step's
    next-token logits) - the answer and the refusal score's logits from one prompt pass."""

    max_new_tokens: int
    use_kv_cache: bool = True

    @property
    def new_tokens(self) -> int:
        return self.max_new_tokens

    def __call__(self, model: ChatModel, batch: EncodedBatch) -> list[tuple[list[int], Tensor]]:
        first: list[Tensor] = []
        new = generate_batch(model, batch, self.max_new_tokens, self.use_kv_cache, first_logits=first)
        return list(zip(new, first[0]))


def generate(model: ChatModel, prompts, cfg: GenerationConfig = GenerationConfig(), truncate: bool | None = None,
             world: "World | None" = None) -> list[str]:
    """Greedy responses (do_sample is never used: results are reproducible) for a list of prompts.

    `world` (`interp.distributed.World`, under torchrun): each rank generates its share of the
    batches a single process would form, and every rank gets all answers, identical to one process."""
    return _generate(model, prompts, cfg, truncate, world)[0]


def generate_with_logits(model: ChatModel, prompts, cfg: GenerationConfig = GenerationConfig(),
                         truncate: bool | None = None, world: "World | None" = None
                         ) -> tuple[list[str], Float[Tensor, "batch d_vocab"]]:
    """`generate`, plus each prompt's next-token logits at the first response position, read off
    the first generation step (so scoring and judging the same prompts costs one prompt pass)."""
    return _generate(model, prompts, cfg, truncate, world, keep_logits=True)


def _generate(model: ChatModel, prompts, cfg: GenerationConfig, truncate: bool | None, world: "World | None",
              keep_logits: bool = False) -> tuple[list[str], Tensor | None]:
    prompt_texts = texts(prompts)
    if not prompt_texts:
        raise InputError("no prompts to generate from: pass a non-empty prompt list")
    if cfg.max_new_tokens < 1:
        raise InputError(f"max_new_tokens must be at least 1, got {cfg.max_new_tokens}")
    # sorted by length, capped in padded tokens (interp.batching); answers come back in the caller's order
    answers: list[str] = [""] * len(prompt_texts)
    chunks = prompt_chunks(model, prompt_texts, cfg.batch_size)
    mine = chunks if world is None else world.share(chunks)
    logits: list[Tensor | None] = [None] * len(prompt_texts)
    with silenced(not cfg.progress or (world is not None and not world.is_main)), \
            pass_bar(sum(len(c) for c in mine)) as bar:
        for b, chunk in enumerate(mine):
            batch = model.encode([prompt_texts[i] for i in chunk], truncate=truncate, indices=chunk)
            first: list[Tensor] | None = [] if keep_logits else None

            def step_done(t: int) -> None:  # where a long pass is between its batches' ends
                bar.set_postfix_str(f"batch {b + 1}/{len(mine)}, token {t + 1}/{cfg.max_new_tokens}", refresh=False)
                bar.update(0)

            new = generate_batch(model, batch, cfg.max_new_tokens, cfg.use_kv_cache, rows=chunk, first_logits=first,
                                 on_step=step_done)
            for r, (i, ids) in enumerate(zip(chunk, new)):
                answers[i] = model.tokenizer.decode(ids, skip_special_tokens=True).strip()
                if keep_logits:
                    logits[i] = first[0][r]
            bar.update(len(chunk))
    if world is not None and world.distributed:
        answers = world.merge({i: answers[i] for chunk in mine for i in chunk}, len(answers))
        if keep_logits:
            logits = [r.to(model.device) for r in world.merge({i: logits[i].cpu() for chunk in mine for i in chunk},
                                                                len(logits))]
    return answers, (torch.stack(logits) if keep_logits else None)
