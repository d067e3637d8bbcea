"""The unablated model's own answers, read back under many head sets' ablations in one pass.

The specificity check (`interp.causal.specificity`) asks of a head set and of each of its random
sets: does the ablated model still say what the model said (the rise of the cross-entropy of its own
greedy answers, teacher forced), and how far does its next-token distribution move (KL at the last
prompt position)? Both come from one teacher-forced pass over prompt + answer: causal attention
leaves the last prompt position's logits as they are without the answer. The sets ride as stacked
replicas, each resumed at its first ablated block from one clean cached run (`interp.runner`), so a
null of 20 random sets costs about as much as the blocks they change, not 20 passes each for the
two measures.
"""

from __future__ import annotations

import weakref
from typing import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from interp.batching import ACTIVATION_BUDGET, with_answers
from interp.hooks import check_finite
from interp.model import ChatModel
from interp.prompts import PromptSet
from interp.runner import RESUME_PROMPTS, cache_block_inputs, prompt_batches, run
from interp.utility import reference_answers
from interp.causal.heads import Head

_MEMO: dict[int, tuple[weakref.ref, dict]] = {}  # id(model) -> (the model, {key: answers or reads})


def memo_of(model: ChatModel) -> dict:
    """What this module keeps per model object (a model whose weights are edited in place after a
    call reads stale values: edit a fresh one)."""
    ref, memo = _MEMO.get(id(model), (None, None))
    if ref is None or ref() is not model:  # a new model (or another one at a reused id)
        for k in [k for k, (r, _) in _MEMO.items() if r() is None]:
            del _MEMO[k]
        memo = {}
        _MEMO[id(model)] = (weakref.ref(model), memo)
    return memo


def own_answers(model: ChatModel, prompts: PromptSet, answer_tokens: int) -> list[list[int]]:
    """The unablated model's greedy answers, kept per model object (the recommendation of every
    method and the converged check read the same held-out prompts)."""
    memo = memo_of(model)
    key = ("answers", tuple(p.text for p in prompts), answer_tokens)
    if key not in memo:
        memo[key] = reference_answers(model, prompts, answer_tokens)
    return memo[key]


def _answer_slots(values: torch.Tensor | None, per_position: bool, resample: bool, n_answer: int):
    """A per-position reference for a teacher-forced pass whose last `n_answer` positions are answer
    tokens: in generation each answer token is a cached pass of one position and takes slot 0 (the
    last prompt token's value), and the prompt's slots count from the prompt's end."""
    if values is None or not per_position:
        return values
    ax = 1 if resample else 0
    first = values.narrow(ax, 0, 1)
    return torch.cat([first.expand(*[n_answer if i == ax else -1 for i in range(values.ndim)]), values], dim=ax)


def _read(clean: Tensor, targets: Tensor, counted: Tensor):
    """Per row (replica-major over the batch's prompts): [cross-entropy of the answer's counted
    tokens (NaN when none), KL(clean || row) of the next-token distribution at the last prompt
    position]."""
    ref = torch.log_softmax(clean[:, 0].float(), -1)
    n = targets.shape[1]

    def read(logits: Tensor) -> Tensor:
        k = logits.shape[0] // targets.shape[0]
        lp = torch.log_softmax(logits.float(), -1)  # [rows, n + 1, vocab]
        base = ref.to(lp.device).repeat(k, 1)
        kl = (base.exp() * (base - lp[:, 0])).sum(-1).clamp(min=0)
        nll = -lp[:, :-1].gather(-1, targets.to(lp.device).repeat(k, 1)[..., None]).squeeze(-1)  # [rows, n]
        c = counted.to(lp.device).repeat(k)
        keep = torch.arange(n, device=lp.device)[None, :] < c[:, None]
        ce = (nll * keep).sum(-1) / c  # 0 / 0 = NaN: an empty answer
        return torch.stack([ce, kl], -1).cpu()

    return read


@torch.no_grad()
def ablated_answer_reads(model: ChatModel, prompts: PromptSet, sets: Sequence[Sequence[Head]], stack, answers,
                         ) -> tuple[Float[Tensor, "set prompt"], Float[Tensor, "set prompt"]]:
    """(rise of the cross-entropy of `answers` [set, prompt] in nats per counted answer token, NaN
    for an empty answer; next-token KL [set, prompt] in nats) under each replica of `stack` (one
    per head set of `sets`, whose per-position references must already be aligned to answers of
    the longest answer's length), against the unablated model, in one resumed pass per prompt batch."""
    n = max(1, max(len(a) for a in answers))
    fill = model.tokenizer.eos_token_id if model.tokenizer.eos_token_id is not None else 0
    pad_id = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else fill
    starts = [min((l for l, _ in hs), default=model.n_layers) for hs in sets]
    first = min(min(starts), model.n_layers - 1)
    # the kept logits [rows, n + 1, vocab] are held about three times over (logits, log-probs, a copy)
    rows = max(1, ACTIVATION_BUDGET // (3 * 4 * (n + 1) * int(model.cfg.d_vocab)))
    ce = torch.full((len(sets), len(prompts)), float("nan"))
    kl = torch.empty(len(sets), len(prompts))
    texts = [p.text for p in prompts]
    for idx, b, _ in prompt_batches(model, texts, RESUME_PROMPTS, max_prompts=RESUME_PROMPTS):
        padded = [list(answers[i]) + [fill] * (n - len(answers[i])) for i in idx]
        counted = torch.tensor([len(answers[i]) for i in idx])
        cached = cache_block_inputs(model, with_answers(b, padded, pad_id), first, keep=n + 1)
        check_finite(cached.logits, "logits over the reference answers", idx)
        read = _read(cached.logits, torch.tensor(padded), counted)
        clean = read(cached.logits)  # [prompt, 2]: the unablated cross-entropy (its KL is 0)
        out = run(model, cached, stack, read=read, from_layer="auto", max_rows=rows).view(len(sets), len(idx), 2)
        ce[:, idx] = out[..., 0] - clean[None, :, 0]
        kl[:, idx] = out[..., 1]
    return ce, kl


def reads_kept(model: ChatModel, key: tuple, sets: Sequence[Sequence[Head]], compute) -> tuple[Tensor, Tensor]:
    """`compute(missing sets) -> (ce, kl)` for the sets not read before under `key` (the ablation's
    method, reference, seed, prompts and answer length): a random set of the specificity null that
    another recommendation already read is not read again."""
    memo = memo_of(model).setdefault(("reads",) + key, {})
    names = [tuple(sorted(map(tuple, hs))) for hs in sets]
    missing = list(dict.fromkeys(n for n in names if n not in memo))
    if missing:
        ce, kl = compute([list(n) for n in missing])
        for j, n in enumerate(missing):
            memo[n] = (ce[j], kl[j])
    return torch.stack([memo[n][0] for n in names]), torch.stack([memo[n][1] for n in names])
