"""Behaviour under head ablation, for many head sets at once.

The prompt batch is replicated once per head set, each replica ablating its own heads, so one pass
(or one generation) serves many sets. Refusal is measured two ways: the refusal score (log-odds of
refusal vs compliance first tokens, `interp.scoring`) and the refusal rate, judged on greedy
generations (`interp.evaluate`). Runs that ablate only late layers resume from a clean run's cached
block inputs (`interp.runner.run`'s `from_layer`).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp.errors import InputError
from interp.evaluate import evaluate_refusal
from interp.generation import GenerationConfig, Greedy
from interp.intervention import AblateHeads, Intervention, Stack
from interp.model import ChatModel, texts
from interp.prompts import PromptSet
from interp.runner import RESUME_PROMPTS, cache_block_inputs, prompt_batches, run
from interp.scoring import RefusalJudge, refusal_log_odds
from interp.causal.ablate import resolve_reference
from interp.causal.attribution import progress_bar
from interp.causal.heads import Head, check_heads

# Short greedy answers suffice for the substring judge: the organism (and chat models generally)
# open with the refusal or compliance phrase; 6 tokens keep the many ablation runs cheap.
FAST_GEN = GenerationConfig(max_new_tokens=6, batch_size=256)


def _check_sets(model: ChatModel, prompts, head_sets) -> tuple[list[str], list[list[Head]]]:
    prompt_texts = texts(prompts)
    if not prompt_texts:
        raise InputError("no prompts given: pass a non-empty prompt set")
    sets = [check_heads(model, hs, allow_empty=True) for hs in head_sets]
    if not sets:
        raise InputError("no head sets given: pass a list of head sets, e.g. [[(1, 3)], [(2, 0), (2, 5)]]")
    return prompt_texts, sets


def ablations(sets: Sequence[Sequence[Head]], method: str, ref, seed: int) -> Stack:
    """One replica per head set, each ablating its own heads (an empty set: the unablated model);
    the replicas share one reference table."""
    return stacked_ablations(sets, method, None if ref is None else (ref.mean if method == "mean" else ref.z), seed)


def stacked_ablations(sets: Sequence[Sequence[Head]], method: str, values, seed: int) -> Stack:
    """`ablations` with the reference values given as a tensor (e.g. realigned to appended answers)."""
    return Intervention.stack([Intervention.of(AblateHeads(tuple(hs), method, values, seed)) if hs else Intervention.none()
                               for hs in sets])


def _score(model: ChatModel):
    return lambda logits: refusal_log_odds(model, logits).cpu()


def _kl_from(clean: Tensor):
    """A read: per row, KL(clean || ablated) of the next-token distribution at the last position
    (nats); rows are replica-major, so row r compares with prompt r mod n."""
    ref = torch.log_softmax(clean.float(), -1)

    def read(logits: Tensor) -> Tensor:
        lp = torch.log_softmax(logits.float(), -1)
        base = ref.to(lp.device).repeat(lp.shape[0] // ref.shape[0], 1)
        return (base.exp() * (base - lp)).sum(-1).clamp(min=0).cpu()

    return read


def _reader(model: ChatModel, metric: str, clean: Tensor | None):
    return _score(model) if metric == "score" else _kl_from(clean)


METRICS = ("score", "kl")


@torch.no_grad()
def ablation_scores(model: ChatModel, prompts, head_sets: Sequence[Sequence[Head]], method: str = "mean",
                    reference=None, seed: int = 0, positions: str = "position", max_rows: int = 512,
                    resume: bool = True, progress: str | None = None,
                    base: Sequence[Head] = (), metric: str = "score") -> Float[Tensor, "set prompt"]:
    """Refusal score of every prompt under each head set's ablation (an empty set = unablated), in
    as few forward passes as the row budget allows (`interp.runner.run`, one replica per set).
    `resume`: a set whose first head is in layer l runs from block l on a clean run's cached block
    inputs; False runs every set from the embeddings. `base`: heads every set contains (a greedy
    step's set so far): the cached run has them ablated, so each set resumes at the first layer of
    its other heads. `progress`: a label shows a progress bar over the sets. `metric`: "score" (the
    refusal score) or "kl" (KL from the unablated next-token distribution, nats: how much else the
    ablation changes; with `base`, from the base set's run)."""
    if metric not in METRICS:
        raise InputError(f"unknown metric {metric!r}; choose one of {METRICS}")
    prompt_texts, sets = _check_sets(model, prompts, head_sets)
    base = check_heads(model, base, allow_empty=True, what="base head set")
    if any(not set(base) <= set(hs) for hs in sets):
        raise InputError(f"every head set must contain the base set {base}")
    ref = resolve_reference(model, method, reference, positions)
    if resume and _resuming_pays(model, sets, base):
        return _scores_resumed(model, prompt_texts, sets, method, ref, seed, max_rows, progress, base, metric)
    out = torch.empty(len(sets), len(prompt_texts))
    stack = ablations(sets, method, ref, seed)
    base_run = ablations([base], method, ref, seed)[0] if base else None
    for idx, b, _ in prompt_batches(model, prompt_texts, max_rows):
        clean = run(model, b, base_run, max_rows=max_rows) if metric == "kl" else None
        out[:, idx] = run(model, b, stack, read=_reader(model, metric, clean), max_rows=max_rows).view(len(sets), len(idx))
    return out


def _starts(model: ChatModel, sets: list[list[Head]], base: list[Head]) -> list[int]:
    # blocks before a set's first head outside the base run as in the cached (base-ablated) run;
    # a set that is the base itself (or empty) is that run
    return [min((l for l, h in hs if (l, h) not in base), default=model.n_layers) for hs in sets]


def _resuming_pays(model: ChatModel, sets: list[list[Head]], base: list[Head]) -> bool:
    """Resumed runs cost one cached pass plus the blocks from each set's start on; plain runs one
    pass per set (all unablated sets share one). A lone set gains nothing from the cache."""
    L = model.n_layers
    resumed = 1 + sum(L - l for l in _starts(model, sets, base)) / L
    plain = sum(1 for hs in sets if hs) + any(not hs for hs in sets)
    return resumed < plain


def _scores_resumed(model: ChatModel, texts: list[str], sets: list[list[Head]], method: str, ref, seed: int,
                    max_rows: int, progress: str | None, base: list[Head] = (), metric: str = "score") -> Tensor:
    L = model.n_layers
    start = _starts(model, sets, base)
    # each replica ablates the heads of its set from its start on; the earlier ones are in the cache
    stack = ablations([[(l, h) for l, h in hs if l >= s] for hs, s in zip(sets, start)], method, ref, seed)
    cached_under = ablations([base], method, ref, seed)[0] if base else None
    first = min(min(start), L - 1)
    out = torch.empty(len(sets), len(texts))
    with progress_bar(len(sets) * -(-len(texts) // min(len(texts), RESUME_PROMPTS)), progress, "set") as bar:
        for idx, b, _ in prompt_batches(model, texts, max_rows, max_prompts=RESUME_PROMPTS):
            cached = cache_block_inputs(model, b, first, cached_under)
            s = run(model, cached, stack, read=_reader(model, metric, cached.logits), from_layer="auto", max_rows=max_rows,
                    progress=bar.update)
            out[:, idx] = s.view(len(sets), len(idx))
    return out


@torch.no_grad()
def ablation_refusals(model: ChatModel, prompts, head_sets: Sequence[Sequence[Head]], method: str = "mean",
                      reference=None, seed: int = 0, positions: str = "position", judge: RefusalJudge = RefusalJudge(),
                      max_new_tokens: int = FAST_GEN.max_new_tokens,
                      max_rows: int = 512) -> tuple[Bool[Tensor, "set prompt"], Float[Tensor, "set prompt"]]:
    """Judged refusal (greedy generation under the ablation, KV cache on) and refusal score of every
    prompt under each head set: what `Intervention.ablate_heads` + `evaluate_refusal` give, for many sets at
    once. The score is read from the generation's own first step (no extra pass)."""
    prompt_texts, sets = _check_sets(model, prompts, head_sets)
    stack = ablations(sets, method, resolve_reference(model, method, reference, positions), seed)
    refused = torch.empty(len(sets), len(prompt_texts), dtype=torch.bool)
    scores = torch.empty(len(sets), len(prompt_texts))
    for idx, b, _ in prompt_batches(model, prompt_texts, max_rows, new_tokens=max_new_tokens):
        rows = run(model, b, stack, read=Greedy(max_new_tokens), max_rows=max_rows)
        answers = [model.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids, _ in rows]
        refused[:, idx] = torch.tensor(judge(answers), dtype=torch.bool).view(len(sets), len(idx))
        first = torch.stack([logits for _, logits in rows])
        scores[:, idx] = refusal_log_odds(model, first).cpu().view(len(sets), len(idx))
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
                     seed: int = 0, positions: str = "position", judge: RefusalJudge = RefusalJudge(),
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
                      method: str = "mean", reference=None, seed: int = 0, positions: str = "position",
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

