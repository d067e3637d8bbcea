"""Utility as a loss: the cross-entropy of an intervened model on the unsteered model's own answers.

An intervention that keeps a model useful should leave it about as sure of what it would have said
anyway. Arditi et al. report this as the CE loss on the base model's own completions. Here:

    ref = reference_answers(model, harmless)                    # greedy, no intervention
    ce = answer_cross_entropy(model, harmless, ref, iv)         # [prompt] nats per answer token
    utility_loss(model, harmless, iv, ref)                      # records with 95% intervals

Each prompt's CE is the mean negative log-likelihood of its reference answer's tokens, read in one
teacher-forced pass over prompt + answer (left padded, attention mask and positions from the mask,
prompts grouped by `interp.batching.prompt_chunks`). Per prompt, so the CE and its rise over the
unsteered model carry bootstrap intervals over prompts, paired by prompt.
"""

from __future__ import annotations

from typing import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from interp.batching import ACTIVATION_BUDGET, PASS_BUDGET, prompt_chunks, rows_per_pass, with_answers
from interp.errors import InputError
from interp.generation import generate_batch
from interp.hooks import check_finite
from interp.intervention import Intervention
from interp.runner import forward
from interp.model import ChatModel, texts
from interp.stats import bootstrap_mean, difference

UTILITY_NEW_TOKENS = 64  # reference answer length: long enough to be the answer, not just its opener


@torch.no_grad()
def reference_answers(model: ChatModel, prompts, max_new_tokens: int = UTILITY_NEW_TOKENS,
                      batch_size: int = 32) -> list[list[int]]:
    """The model's greedy answer token ids (end-of-sequence dropped), in the caller's order. Call it
    with no intervention installed: these are the answers the intervened model is scored on."""
    ts = texts(prompts)
    if not ts:
        raise InputError("no prompts to answer: pass a non-empty prompt list")
    out: list[list[int]] = [[] for _ in ts]
    for chunk in prompt_chunks(model, ts, batch_size):
        for i, ids in zip(chunk, generate_batch(model, model.encode([ts[i] for i in chunk], indices=chunk),
                                                max_new_tokens, rows=chunk)):
            out[i] = ids
    return out


def _passes(model: ChatModel, chunk: list[int], seq_len: int, n_answer: int, batch_size: int) -> list[list[int]]:
    """`chunk` cut so that a pass's activations and its kept logits ([rows, answer + 1, vocab], held
    about three times: logits, log-probabilities, a float copy) stay within the budgets."""
    vocab = int(model.cfg.d_vocab)
    by_logits = max(1, ACTIVATION_BUDGET // (3 * 4 * (n_answer + 1) * vocab))
    rows = max(1, min(rows_per_pass(model, seq_len, batch_size, budget=PASS_BUDGET), by_logits))
    return [chunk[i:i + rows] for i in range(0, len(chunk), rows)]


@torch.no_grad()
def answer_cross_entropy(model: ChatModel, prompts, answers: Sequence[Sequence[int]],
                         intervention: Intervention | None = None, batch_size: int = 32,
                         counted: Sequence[int] | None = None) -> Float[Tensor, "batch"]:
    """Per prompt, the mean cross-entropy (nats per token) of `answers[i]` (token ids) given prompt i,
    with `intervention` applied; NaN for an empty answer. One forward pass per batch of prompts.
    `counted[i]`: only the first that many tokens of answer i count (the rest is padding that keeps
    every prompt's end at the same offset from the end of the sequence)."""
    ts = texts(prompts)
    if len(answers) != len(ts):
        raise InputError(f"{len(answers)} answers for {len(ts)} prompts: pass one answer (token ids) per prompt")
    iv = intervention or Intervention.none()
    pad_id = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else model.tokenizer.eos_token_id
    ce = torch.full((len(ts),), float("nan"))
    for chunk in prompt_chunks(model, ts, batch_size):
        chunk = [i for i in chunk if len(answers[i])]
        if not chunk:
            continue
        lengths = model.token_lengths([ts[i] for i in chunk])
        longest = max(n + len(answers[i]) for n, i in zip(lengths, chunk))
        for rows in _passes(model, chunk, longest, max(len(answers[i]) for i in chunk), batch_size):
            ce[rows] = _pass_ce(model, [ts[i] for i in rows], [list(answers[i]) for i in rows], iv, pad_id, rows,
                                None if counted is None else [counted[i] for i in rows]).cpu()
    return ce


def _pass_ce(model: ChatModel, prompt_texts: list[str], answers: list[list[int]], iv: Intervention, pad_id: int,
             rows: list[int], counted: list[int] | None = None) -> Float[Tensor, "rows"]:
    b = with_answers(model.encode(prompt_texts, indices=rows), answers, pad_id)
    tokens, mask = b.tokens, b.attention_mask
    L, A = tokens.shape[1], max(len(a) for a in answers)
    with iv.apply(model):
        # the last A + 1 positions: logits at position t predict token t + 1, so the first answer
        # token is predicted at the last prompt position (positions follow the mask, as in generation)
        logits = forward(model, tokens, mask, logits_to_keep=A + 1)
    logits = check_finite(logits[:, :-1, :], "logits over the reference answers", rows)
    nll = -logits.float().log_softmax(-1).gather(-1, tokens[:, L - A:, None]).squeeze(-1)  # [rows, A]
    n = torch.tensor([len(a) for a in answers], device=nll.device)
    c = n if counted is None else torch.tensor(counted, device=nll.device).clamp(max=n)
    pos = torch.arange(A, device=nll.device)[None, :]
    keep = (pos >= (A - n)[:, None]) & (pos < (A - n + c)[:, None])  # each row's own (counted) answer tokens
    return (nll * keep).sum(-1) / c


def utility_loss(model: ChatModel, prompts, intervention: Intervention, reference: Sequence[Sequence[int]] | None = None,
                 unsteered_ce: Tensor | None = None, max_new_tokens: int = UTILITY_NEW_TOKENS, batch_size: int = 32,
                 seed: int = 0) -> dict:
    """{"ce": {"mean", "n", "ci95"}, "ce_unsteered": ..., "ce_increase": paired difference
    {"difference", "ci95", ...}} in nats per answer token, on the unsteered model's greedy answers to
    `prompts` (held-out harmless requests). Pass `reference` / `unsteered_ce` to reuse them across
    the points of a sweep."""
    ids = [getattr(p, "id", None) or str(i) for i, p in enumerate(prompts)]
    ref = reference if reference is not None else reference_answers(model, prompts, max_new_tokens, batch_size)
    base = unsteered_ce if unsteered_ce is not None else answer_cross_entropy(model, prompts, ref, None, batch_size)
    ce = answer_cross_entropy(model, prompts, ref, intervention, batch_size)
    return {"ce": bootstrap_mean(ce.tolist(), seed=seed), "ce_unsteered": bootstrap_mean(base.tolist(), seed=seed),
            "ce_increase": difference(ce.tolist(), base.tolist(), ids, ids, kind="mean", seed=seed),
            "n_answer_tokens": int(sum(len(a) for a in ref)), "intervention": intervention.describe()}


__all__ = ["UTILITY_NEW_TOKENS", "answer_cross_entropy", "reference_answers", "utility_loss"]
