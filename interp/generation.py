"""Batched greedy generation through the bridge, so that every installed hook acts on every step.

The prompt is run once with left padding and the attention mask; later steps feed one token each
with the key/value cache. Interventions therefore must not index positions: at step t the hooks
see one position (the toolkit's steering hooks are position-free or use `last_only`).

The cache is checked after the prompt pass. Some transformers releases hand the attention layers
the cache under a name the bridge does not read (transformers 5.24 renamed `past_key_values` to
`cache`); the cache then stays empty and every later token would be computed from itself alone,
with no error. When the check fails, generation falls back to full recomputation (exact, slower)
and warns once per model, naming the installed versions.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from interp.errors import InputError
from interp.hooks import check_finite
from interp.model import ChatModel, EncodedBatch, texts
from interp.provenance import library_versions


@dataclass(frozen=True)
class GenerationConfig:
    max_new_tokens: int = 24
    batch_size: int = 32
    use_kv_cache: bool = True
    progress: bool = False


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


def _forward_cached(bridge, step_input, mask, past, pos):
    return bridge(step_input, attention_mask=mask, past_key_values=past, position_ids=pos[:, -step_input.shape[1]:],
                  use_cache=True, return_type="logits_and_cache")


@torch.no_grad()
def generate_batch(model: ChatModel, batch: EncodedBatch, max_new_tokens: int, use_kv_cache: bool = True,
                   rows: list[int] | None = None) -> list[list[int]]:
    """Greedy continuation of one encoded batch; returns new token ids per row (stopped at EOS).
    `rows`: the caller's prompt index of each row (for error messages)."""
    bridge = model.bridge
    eos = model.tokenizer.eos_token_id
    tokens, mask = batch.tokens, batch.attention_mask
    n = tokens.shape[0]
    out = [[] for _ in range(n)]
    done = torch.zeros(n, dtype=torch.bool, device=tokens.device)
    past = None
    step_input = tokens
    use_cache = use_kv_cache and model.cache_works is not False
    for step in range(max_new_tokens):
        # positions follow the mask so that left padding does not shift rotary positions
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        if use_cache:
            logits, past = _forward_cached(bridge, step_input, mask, past, pos)
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
            logits = bridge(tokens, attention_mask=mask, position_ids=pos)
        # NaN logits would argmax to an arbitrary token and come out as an empty answer
        nxt = check_finite(logits[:, -1, :], f"logits at generation step {step}", rows).argmax(-1)
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


def generate(model: ChatModel, prompts, cfg: GenerationConfig = GenerationConfig(), truncate: bool | None = None,
             world: "World | None" = None) -> list[str]:
    """Greedy responses (do_sample is never used: results are reproducible) for a list of prompts.

    `world` (`interp.distributed.World`, under torchrun): each rank generates its share of the
    batches a single process would form, and every rank gets all answers, identical to one process."""
    prompt_texts = texts(prompts)
    if not prompt_texts:
        raise InputError("no prompts to generate from: pass a non-empty prompt list")
    if cfg.max_new_tokens < 1:
        raise InputError(f"max_new_tokens must be at least 1, got {cfg.max_new_tokens}")
    # sort by length so batches carry little padding; answers come back in the caller's order
    order = sorted(range(len(prompt_texts)), key=lambda i: len(prompt_texts[i]))
    answers: list[str] = [""] * len(prompt_texts)
    chunks = [order[i:i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    mine = chunks if world is None else world.share(chunks)
    for chunk in tqdm(mine, desc="generating", disable=not cfg.progress):
        batch = model.encode([prompt_texts[i] for i in chunk], truncate=truncate, indices=chunk)
        new = generate_batch(model, batch, cfg.max_new_tokens, cfg.use_kv_cache, rows=chunk)
        for i, ids in zip(chunk, new):
            answers[i] = model.tokenizer.decode(ids, skip_special_tokens=True).strip()
    if world is not None and world.distributed:
        answers = world.merge({i: answers[i] for chunk in mine for i in chunk}, len(answers))
    return answers
