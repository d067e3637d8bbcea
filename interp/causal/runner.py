"""Behaviour under head ablation, for many head sets at once.

The prompt batch is replicated once per head set, each replica ablating its own heads, so one pass
(or one generation) serves many sets. Refusal is measured two ways: the refusal score (log-odds of
refusal vs compliance first tokens, `interp.scoring`) and the refusal rate, judged on greedy
generations (`interp.evaluate`). Runs that ablate only late layers resume from a clean run's cached
block inputs (`interp.causal.resume`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Mapping, Sequence

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp.errors import InputError
from interp.evaluate import evaluate_refusal
from interp.generation import GenerationConfig, generate_batch
from interp.hooknames import LOGITS, act_name
from interp.hooks import hooked
from interp.intervention import Intervention
from interp.model import ChatModel, EncodedBatch, texts
from interp.prompts import PromptSet
from interp.scoring import RefusalJudge, refusal_log_odds
from interp.causal.ablate import replacement_values, resolve_reference
from interp.causal.attribution import progress_bar
from interp.causal.heads import Head, check_heads, row_masks, z_replace_hook
from interp.causal.resume import cache_block_inputs, last_position_logits, prompt_batches, run_from_layer

# Short greedy answers suffice for the substring judge: the organism (and chat models generally)
# open with the refusal or compliance phrase; 6 tokens keep the many ablation runs cheap.
FAST_GEN = GenerationConfig(max_new_tokens=6, batch_size=256)


def _rows_for_sets(model: ChatModel, texts: list[str], head_sets: Sequence[Sequence[Head]], values, max_rows: int,
                   run: Callable[[EncodedBatch], Sequence], new_tokens: int = 0) -> list[list]:
    """`run(batch)` on the prompt batch replicated once per head set, each replica ablating its own
    heads; returns `out[set][prompt]` in the caller's order. Prompts are sorted by length so that
    batches carry little padding (left padding + attention mask: results do not depend on it);
    rows per pass stay within the activation budget (`interp.batching.rows_per_pass`)."""
    out: list[list] = [[None] * len(texts) for _ in head_sets]
    for idx, b, budget in prompt_batches(model, texts, max_rows, new_tokens):
        n = len(idx)
        per = max(1, budget // n)
        for s0 in range(0, len(head_sets), per):
            chunk = head_sets[s0:s0 + per]
            k = len(chunk)
            mask = row_masks(model, chunk, n)
            hooks = []
            for l in range(model.n_layers):
                if mask[:, l].any():
                    v = values(l)
                    if callable(v):  # resample: a row's reference follows its prompt, not its replica
                        v = v(n).repeat(k, 1, 1, 1)
                    hooks.append((act_name("z", l), z_replace_hook(mask[:, l], v)))
            rep = replace(b, tokens=b.tokens.repeat(k, 1), attention_mask=b.attention_mask.repeat(k, 1),
                          lengths=b.lengths * k, formatted=b.formatted * k, offsets=b.offsets * k,
                          content_starts=b.content_starts * k, content_ends=b.content_ends * k)
            with hooked(model, hooks):
                rows = run(rep)
            for j in range(k):
                for r, i in enumerate(idx):
                    out[s0 + j][i] = rows[j * n + r]
    return out


def _check_sets(model: ChatModel, prompts, head_sets) -> tuple[list[str], list[list[Head]]]:
    prompt_texts = texts(prompts)
    if not prompt_texts:
        raise InputError("no prompts given: pass a non-empty prompt set")
    sets = [check_heads(model, hs, allow_empty=True) for hs in head_sets]
    if not sets:
        raise InputError("no head sets given: pass a list of head sets, e.g. [[(1, 3)], [(2, 0), (2, 5)]]")
    return prompt_texts, sets


@torch.no_grad()
def ablation_scores(model: ChatModel, prompts, head_sets: Sequence[Sequence[Head]], method: str = "mean",
                    reference=None, seed: int = 0, positions: str = "last", max_rows: int = 512,
                    resume: bool = True, progress: str | None = None,
                    base: Sequence[Head] = ()) -> Float[Tensor, "set prompt"]:
    """Refusal score of every prompt under each head set's ablation (an empty set = unablated), in
    as few forward passes as the row budget allows. `resume`: a set whose first head is in layer l
    runs from block l on a clean run's cached block inputs (`interp.causal.resume`); False runs
    every set from the embeddings. `base`: heads every set contains (a greedy step's set so far):
    the cached run has them ablated, so each set resumes at the first layer of its other heads.
    `progress`: a label shows a progress bar over the sets."""
    prompt_texts, sets = _check_sets(model, prompts, head_sets)
    base = check_heads(model, base, allow_empty=True, what="base head set")
    if any(not set(base) <= set(hs) for hs in sets):
        raise InputError(f"every head set must contain the base set {base}")
    values = replacement_values(model, method, resolve_reference(model, method, reference, positions), seed)
    if resume and _resuming_pays(model, sets, base):
        return _scores_resumed(model, prompt_texts, sets, values, max_rows, progress, base)

    def run(b: EncodedBatch):
        return refusal_log_odds(model, last_position_logits(model, b.tokens, b.attention_mask)).tolist()

    return torch.tensor(_rows_for_sets(model, prompt_texts, sets, values, max_rows, run))


# prompts whose block inputs are cached at once for resumed runs: 16 prompts x 60 tokens x 30
# layers x 576 floats is 66 MB (SmolLM2-135M); larger sets are cached batch by batch
RESUME_PROMPTS = 16


def _resuming_pays(model: ChatModel, sets: list[list[Head]], base: list[Head]) -> bool:
    """Resumed runs cost one cached pass plus the blocks from each set's start on; plain runs one
    pass per set (all unablated sets share one). A lone set gains nothing from the cache."""
    L = model.n_layers
    starts = [min((l for l, h in hs if (l, h) not in base), default=L) for hs in sets]
    resumed = 1 + sum(L - l for l in starts) / L
    plain = sum(1 for hs in sets if hs) + any(not hs for hs in sets)
    return resumed < plain


def _layer_hooks(model: ChatModel, mask: Tensor, values, n: int, k: int, first: int = 0) -> list:
    """z-replacement hooks for the layers >= first where `mask` ([rows, layer, head]) ablates a head."""
    hooks = []
    for l in range(first, model.n_layers):
        if mask[:, l].any():
            v = values(l)
            if callable(v):  # resample: a row's reference follows its prompt, not its replica
                v = v(n).repeat(k, 1, 1, 1)
            hooks.append((act_name("z", l), z_replace_hook(mask[:, l], v)))
    return hooks


def _scores_resumed(model: ChatModel, texts: list[str], sets: list[list[Head]], values, max_rows: int,
                    progress: str | None, base: list[Head] = ()) -> Tensor:
    L = model.n_layers
    # blocks before a set's first head outside the base run as in the cached (base-ablated) run;
    # a set that is the base itself (or empty) is that run
    start = [min((l for l, h in hs if (l, h) not in base), default=L) for hs in sets]
    groups: dict[int, list[int]] = {}
    for i, l in enumerate(start):
        groups.setdefault(l, []).append(i)
    out = torch.empty(len(sets), len(texts))
    first = min(min(start), L - 1)
    with progress_bar(len(sets) * -(-len(texts) // min(len(texts), RESUME_PROMPTS)), progress, "set") as bar:
        for idx, b, budget in prompt_batches(model, texts, max_rows, max_prompts=RESUME_PROMPTS):
            idx = torch.tensor(idx)
            n = len(idx)
            cached = cache_block_inputs(model, b, first, _layer_hooks(model, row_masks(model, [base], n), values, n, 1))
            for i in groups.get(L, []):
                out[i, idx] = refusal_log_odds(model, cached.logits).cpu()
            bar.update(len(groups.get(L, [])))
            per = max(1, budget // n)
            for layer in sorted(l for l in groups if l < L):
                members = groups[layer]
                for s0 in range(0, len(members), per):
                    chunk = members[s0:s0 + per]
                    k = len(chunk)
                    hooks = _layer_hooks(model, row_masks(model, [sets[i] for i in chunk], n), values, n, k, layer)
                    logits = run_from_layer(model, cached, layer, repeat=k, hooks=hooks)
                    out[torch.tensor(chunk)[:, None], idx[None, :]] = refusal_log_odds(model, logits).view(k, n).cpu()
                    bar.update(k)
    return out


@torch.no_grad()
def ablation_refusals(model: ChatModel, prompts, head_sets: Sequence[Sequence[Head]], method: str = "mean",
                      reference=None, seed: int = 0, positions: str = "last", judge: RefusalJudge = RefusalJudge(),
                      max_new_tokens: int = FAST_GEN.max_new_tokens,
                      max_rows: int = 512) -> tuple[Bool[Tensor, "set prompt"], Float[Tensor, "set prompt"]]:
    """Judged refusal (greedy generation under the ablation, KV cache on) and refusal score of every
    prompt under each head set: what `Intervention.ablate_heads` + `evaluate_refusal` give, for many sets at
    once. The score is read from the generation's own first step (no extra pass)."""
    prompt_texts, sets = _check_sets(model, prompts, head_sets)
    values = replacement_values(model, method, resolve_reference(model, method, reference, positions), seed)

    def run(b: EncodedBatch):
        first: list[Tensor] = []

        def grab(logits, hook):
            if not first:  # the prompt pass; later steps feed one token each
                first.append(logits[:, -1].detach())

        with hooked(model, [(LOGITS, grab)]):
            new = generate_batch(model, b, max_new_tokens)
        refused = judge([model.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in new])
        return list(zip(refused, refusal_log_odds(model, first[0]).tolist()))

    rows = _rows_for_sets(model, prompt_texts, sets, values, max_rows, run, new_tokens=max_new_tokens)
    refused = torch.tensor([[r for r, _ in row] for row in rows], dtype=torch.bool)
    scores = torch.tensor([[x for _, x in row] for row in rows])
    return refused, scores


# ------------------------------------------------------------------ behaviour under ablation
def _concat(sets: Mapping[str, PromptSet]) -> tuple[PromptSet, dict[str, slice]]:
    if not sets:
        raise InputError("no prompt sets given: pass e.g. sets={'harmful': ..., 'harmless': ...}")
    prompts, spans, i = [], {}, 0
    for name, ps in sets.items():
        if ps is None or len(ps) == 0:
            raise InputError(f"prompt set {name!r} is empty: every measured set needs at least one prompt")
        prompts += list(ps)
        spans[name] = slice(i, i + len(ps))
        i += len(ps)
    return PromptSet("+".join(sets), tuple(prompts)), spans


def evaluate_sets(model: ChatModel, sets: Mapping[str, PromptSet], judge: RefusalJudge = RefusalJudge(),
                  gen: GenerationConfig = FAST_GEN) -> dict[str, dict]:
    """Refusal rate (judged on greedy generations) and mean refusal score of each named set, in one
    pass over all of them (whatever hooks are installed act on it)."""
    allp, spans = _concat(sets)
    ev = evaluate_refusal(model, allp, judge, gen)
    out = {}
    for name, sl in spans.items():
        refused = ev.refused[sl]
        out[name] = {"n": len(refused), "refusal_rate": sum(refused) / len(refused),
                     "refusal_score": float(ev.scores[sl].mean())}
    return out


def _delta(before: Mapping[str, dict], after: Mapping[str, dict]) -> dict:
    missing = [k for k in after if k not in before]
    if missing:
        raise InputError(f"baseline lacks the sets {missing}: pass evaluate_sets(model, sets) for the same sets")
    res = {}
    for name, a in after.items():
        b = before[name]
        res[name] = {"n": a["n"], "refusal_rate_before": b["refusal_rate"], "refusal_rate_after": a["refusal_rate"],
                     "delta_rate": a["refusal_rate"] - b["refusal_rate"], "refusal_score_before": b["refusal_score"],
                     "refusal_score_after": a["refusal_score"], "delta_score": a["refusal_score"] - b["refusal_score"]}
    return res


def measure_ablation(model: ChatModel, heads, sets: Mapping[str, PromptSet], method: str = "mean", reference=None,
                     seed: int = 0, positions: str = "last", judge: RefusalJudge = RefusalJudge(),
                     gen: GenerationConfig = FAST_GEN, baseline: Mapping[str, dict] | None = None) -> dict:
    """Change in refusal rate and refusal score of each named set when `heads` are ablated.

    `baseline` (an `evaluate_sets` result for the same sets and generation settings) skips the
    unablated pass. Returns {"heads", "method", "reference", "sets": {name: {n,
    refusal_rate_before, refusal_rate_after, delta_rate, refusal_score_before, refusal_score_after,
    delta_score}}}."""
    heads = check_heads(model, heads)
    ref = resolve_reference(model, method, reference, positions)
    _concat(sets)  # validate before any pass
    before = baseline if baseline is not None else evaluate_sets(model, sets, judge, gen)
    with Intervention.ablate_heads(heads, method, ref, seed).apply(model):
        after = evaluate_sets(model, sets, judge, gen)
    return {"heads": [list(h) for h in heads], "method": method,
            "reference": ref.describe() if ref is not None else None, "sets": _delta(before, after)}


def measure_head_sets(model: ChatModel, head_sets: Sequence[Sequence[Head]], sets: Mapping[str, PromptSet],
                      method: str = "mean", reference=None, seed: int = 0, positions: str = "last",
                      judge: RefusalJudge = RefusalJudge(), max_new_tokens: int = FAST_GEN.max_new_tokens,
                      baseline: Mapping[str, dict] | None = None) -> list[dict]:
    """`measure_ablation` for many head sets at once (batched: one generation serves them all)."""
    allp, spans = _concat(sets)
    head_sets = [check_heads(model, hs) for hs in head_sets]
    ref = resolve_reference(model, method, reference, positions)
    rows = [[]] + head_sets if baseline is None else head_sets
    refused, scores = ablation_refusals(model, allp, rows, method, ref, seed, positions, judge, max_new_tokens)
    refused = refused.float()

    def summary(i):
        return {name: {"n": sl.stop - sl.start, "refusal_rate": float(refused[i, sl].mean()),
                       "refusal_score": float(scores[i, sl].mean())} for name, sl in spans.items()}

    before = baseline if baseline is not None else summary(0)
    first = 0 if baseline is not None else 1
    return [{"heads": [list(h) for h in hs], "method": method, "reference": ref.describe() if ref is not None else None,
             "sets": _delta(before, summary(first + j))} for j, hs in enumerate(head_sets)]

