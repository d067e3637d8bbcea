"""Head ablation: remove what chosen heads write, and measure what the model then does.

Three ways to remove a head's output (`hook_z`, the input of the attention output projection):

* ``zero``: replace it by zeros. Simple, but zero is not a value the head ever takes, so later
  layers see an input off their training distribution.
* ``mean`` (default): replace it by its mean over a reference prompt set. The mean is taken at the
  **last prompt token** (the position the refusal decision is read from; ``positions="last"``) or
  over every token of every reference prompt (``positions="all"``), and applied at **every
  position** of the ablated run. A single value per head keeps the hook position-free, so the
  ablation holds during generation with the KV cache, where later steps see one position.
* ``resample``: replace it by the same head's output on another prompt of the reference set
  (per batch row, drawn by a seeded permutation; same position choice as the mean).

Refusal is measured two ways: the refusal score (log-odds of refusal vs compliance first tokens,
`interp.scoring`) and the refusal rate, judged on greedy generations (`interp.evaluate`).
`search_heads` finds the smallest head set whose ablation removes refusal on harmful prompts, and
the smallest whose ablation removes compliance on harmless ones: a model may refuse because it
detects harm, or refuse by default and comply because it detects a harmless request. Which mean it
ablates with (label-free, or the other label's) is part of the answer: see `SearchConfig`.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Mapping, Sequence

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp.capture import capture
from interp.errors import InputError
from interp.evaluate import evaluate_refusal
from interp.generation import GenerationConfig, generate_batch
from interp.hooks import hooked
from interp.model import ChatModel, EncodedBatch, texts
from interp.prompts import PromptSet
from interp.scoring import RefusalJudge, refusal_log_odds
from interp.causal.attribution import HeadGradients, head_gradients, progress_bar
from interp.causal.heads import Z_HOOK, Head, all_heads, by_layer, check_heads, row_masks, z_replace_hook
from interp.causal.resume import cache_block_inputs, last_position_logits, prompt_batches, run_from_layer

METHODS = ("zero", "mean", "resample")
REF_POSITIONS = ("last", "all")
# Short greedy answers suffice for the substring judge: the organism (and chat models generally)
# open with the refusal or compliance phrase; 6 tokens keep the many ablation runs cheap.
FAST_GEN = GenerationConfig(max_new_tokens=6, batch_size=256)


# ------------------------------------------------------------------ reference activations
@dataclass(frozen=True)
class HeadReference:
    """Every head's output on each reference prompt: the values mean- and resample-ablation use."""

    z: Float[Tensor, "prompt layer head d_head"]
    positions: str  # "last": at the last prompt token; "all": mean over each prompt's tokens
    source: dict = field(default_factory=dict)  # the reference set's describe()

    @property
    def mean(self) -> Float[Tensor, "layer head d_head"]:
        return self.z.mean(0)

    def describe(self) -> dict:
        return {"positions": self.positions, "n": int(self.z.shape[0]), **({"set": self.source} if self.source else {})}


@torch.no_grad()
def head_reference(model: ChatModel, prompts, positions: str = "last", batch_size: int = 64) -> HeadReference:
    """Capture every head's `hook_z` on a reference set (at the last token, or averaged over tokens)."""
    if positions not in REF_POSITIONS:
        raise InputError(f"reference positions must be one of {REF_POSITIONS}, got {positions!r}")
    prompt_texts = texts(prompts)
    if not prompt_texts:
        raise InputError("the reference set is empty: mean and resample ablation need at least one reference prompt "
                         "(pass balanced harmful + harmless prompts, e.g. a study's train split, or use method='zero')")
    source = prompts.describe() if isinstance(prompts, PromptSet) else {"n": len(prompt_texts)}
    if positions == "last":
        z = capture(model, prompt_texts, sites="z", positions="last", batch_size=batch_size).stack_heads()
        return HeadReference(z, positions, source)
    parts = []
    for i in range(0, len(prompt_texts), batch_size):
        b = model.encode(prompt_texts[i:i + batch_size])
        w = b.attention_mask.float()  # average over real tokens only, never padding
        store: dict[int, Tensor] = {}

        def grab(l):
            def hook(z, hook):
                store[l] = torch.einsum("bphd,bp->bhd", z.float(), w) / w.sum(1)[:, None, None]
            return hook

        model.bridge.run_with_hooks(b.tokens, attention_mask=b.attention_mask,
                                    fwd_hooks=[(Z_HOOK.format(l=l), grab(l)) for l in range(model.n_layers)])
        parts.append(torch.stack([store[l] for l in range(model.n_layers)], dim=1).cpu())
    return HeadReference(torch.cat(parts), positions, source)


def resolve_reference(model: ChatModel, method: str, reference, positions: str = "last") -> HeadReference | None:
    if method not in METHODS:
        raise InputError(f"unknown ablation method {method!r}; choose one of {METHODS}")
    if method == "zero":
        return None
    if reference is None:
        raise InputError(f"{method}-ablation replaces a head's output by its {'mean' if method == 'mean' else 'value'} "
                         "over a reference set: pass reference= (balanced harmful + harmless prompts, e.g. the study's "
                         "train split, so the mean carries no label; or a HeadReference), or use method='zero'")
    if isinstance(reference, HeadReference):
        want = (model.n_layers, model.n_heads, model.d_head)
        if reference.z.ndim != 4 or tuple(reference.z.shape[1:]) != want:
            raise InputError(f"reference activations have shape {tuple(reference.z.shape)}, expected [n, {want[0]}, "
                             f"{want[1]}, {want[2]}] for {model.name}; were they captured on another model?")
        if reference.z.shape[0] == 0:
            raise InputError("the reference activations hold no prompt: capture them on a non-empty reference set")
        return reference
    return head_reference(model, reference, positions)


def _values(model: ChatModel, method: str, ref: HeadReference | None, seed: int):
    """Per layer: the replacement values (a tensor broadcasting over [batch, pos, head, d_head], or a
    callable of the batch size for resampling)."""
    dtype = model.dtype
    if method == "zero":
        zero = torch.zeros(model.n_heads, model.d_head, dtype=dtype, device=model.device)
        return lambda l: zero
    if method == "mean":
        mean = ref.mean.to(model.device, dtype)
        return lambda l: mean[l]
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(ref.z.shape[0], generator=g)
    z = ref.z.to(model.device, dtype)

    def per_layer(l):
        # row r takes reference prompt perm[r mod n]: stable across generation steps (same rows)
        return lambda batch: z[perm[torch.arange(batch) % len(perm)], l][:, None]

    return per_layer


def ablation_hooks(model: ChatModel, heads, method: str = "mean", reference=None, seed: int = 0,
                   positions: str = "last") -> list[tuple[str, object]]:
    """Forward hooks replacing each given head's `hook_z` (position-free: safe under the KV cache)."""
    heads = check_heads(model, heads)
    ref = resolve_reference(model, method, reference, positions)
    values = _values(model, method, ref, seed)
    hooks = []
    for l, hs in sorted(by_layer(heads).items()):
        mask = torch.zeros(1, model.n_heads, dtype=torch.bool)
        mask[0, hs] = True
        hooks.append((Z_HOOK.format(l=l), z_replace_hook(mask, values(l))))
    return hooks


@contextmanager
def ablate_heads(model: ChatModel, heads, method: str = "mean", reference=None, seed: int = 0,
                 positions: str = "last") -> Iterator[ChatModel]:
    """Ablate `heads` ([(layer, head), ...]) for the duration of the block, generation included.

    `reference`: a PromptSet (or a `HeadReference` from `head_reference`) for mean/resample
    (required for them). The hooks are removed on exit, also on error."""
    with hooked(model, ablation_hooks(model, heads, method, reference, seed, positions)):
        yield model


# ------------------------------------------------------------------ many head sets in one pass
def _rows_for_sets(model: ChatModel, texts: list[str], head_sets: Sequence[Sequence[Head]], values, max_rows: int,
                   run: Callable[[EncodedBatch], Sequence], new_tokens: int = 0) -> list[list]:
    """`run(batch)` on the prompt batch replicated once per head set, each replica ablating its own
    heads; returns `out[set][prompt]` in the caller's order. Prompts are sorted by length so that
    batches carry little padding (left padding + attention mask: results do not depend on it);
    rows per pass stay within the activation budget (`interp.causal.resume.rows_per_pass`)."""
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
                    hooks.append((Z_HOOK.format(l=l), z_replace_hook(mask[:, l], v)))
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
    texts, sets = _check_sets(model, prompts, head_sets)
    base = check_heads(model, base, allow_empty=True, what="base head set")
    if any(not set(base) <= set(hs) for hs in sets):
        raise InputError(f"every head set must contain the base set {base}")
    values = _values(model, method, resolve_reference(model, method, reference, positions), seed)
    if resume and _resuming_pays(model, sets, base):
        return _scores_resumed(model, texts, sets, values, max_rows, progress, base)

    def run(b: EncodedBatch):
        return refusal_log_odds(model, last_position_logits(model, b.tokens, b.attention_mask)).tolist()

    return torch.tensor(_rows_for_sets(model, texts, sets, values, max_rows, run))


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
            hooks.append((Z_HOOK.format(l=l), z_replace_hook(mask[:, l], v)))
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
    prompt under each head set: what `ablate_heads` + `evaluate_refusal` give, for many sets at
    once. The score is read from the generation's own first step (no extra pass)."""
    texts, sets = _check_sets(model, prompts, head_sets)
    values = _values(model, method, resolve_reference(model, method, reference, positions), seed)

    def run(b: EncodedBatch):
        first: list[Tensor] = []

        def grab(logits, hook):
            if not first:  # the prompt pass; later steps feed one token each
                first.append(logits[:, -1].detach())

        with hooked(model, [("unembed.hook_out", grab)]):
            new = generate_batch(model, b, max_new_tokens)
        refused = judge([model.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in new])
        return list(zip(refused, refusal_log_odds(model, first[0]).tolist()))

    rows = _rows_for_sets(model, texts, sets, values, max_rows, run, new_tokens=max_new_tokens)
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
    with ablate_heads(model, heads, method, ref, seed, positions):
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


# ------------------------------------------------------------------ greedy search
DIRECTIONS = {
    # name: (label whose behaviour the ablation should flip, sign of the wanted change in refusal)
    "refusal": ("harmful", -1.0),  # ablation removes refusal of harmful requests: the heads detect harm
    "compliance": ("harmless", +1.0),  # ablation removes compliance: the heads detect harmless requests
}
REFERENCE_POLICIES = ("auto", "balanced", "opposite")


@dataclass(frozen=True)
class SearchConfig:
    """Greedy search for the smallest head set whose ablation flips behaviour.

    Heads are chosen by the refusal score (all candidates in one batched pass per step) and each
    chosen set is checked by the judge on greedy generations; the search stops once the judged
    refusal rate has moved by `target` (0.5: half of the prompts changed behaviour), when no head
    helps any more, or after `max_heads`.

    The single-head scan that seeds the greedy search is estimated for every head by attribution
    patching (one forward and one backward pass, `interp.causal.attribution`); only the `top_k`
    heads with the largest estimated effect (default 8) are ablated exactly, and the best starts
    the set. Each later step estimates again around the run with the set so far ablated (where
    heads masked by saturation show their effect) and measures its `top_k_step` (4) best.
    `exhaustive=True` ablates every head exactly (one pass per head: 270 on SmolLM2-135M, 1,024 on
    a 7B model) and searches the `n_candidates` best, measuring every one at every step.

    `reference` says what mean/resample ablation replaces a head's output with:
    ``"balanced"``: the mean over harmful and harmless prompts together. It carries no label, so
    it removes the heads' signal; the direction that flips then says how the model decides
    (refuses on detecting harm, or complies on detecting a harmless request).
    ``"opposite"``: the other label's prompts, as in IOI-style mean ablation over a distribution
    that lacks the signal under test: on harmful prompts a head's output is replaced by its mean
    over harmless ones (and conversely). It asks "does this head carry the signal?" and succeeds
    even when other heads carry it too (redundancy), but cannot tell the two directions apart:
    a two-sided signal flips both ways.
    ``"auto"`` (default): balanced first; if no direction flips, opposite (recorded in `tried`)."""

    max_heads: int = 4
    target: float = 0.5
    min_gain: float = 0.05  # log-odds: stop when the best next head moves the mean score by less
    n_candidates: int = 16  # heads kept per direction after an exhaustive single-head scan (largest effects)
    method: str = "mean"
    positions: str = "last"
    reference: str = "auto"
    seed: int = 0
    top_k: int = 8  # heads ablated exactly after the attribution estimate (ignored when exhaustive)
    top_k_step: int = 4  # at each later greedy step: heads re-estimated around the set so far, then measured
    exhaustive: bool = False

    def __post_init__(self) -> None:
        if self.max_heads < 1:
            raise InputError(f"max_heads must be at least 1, got {self.max_heads}")
        if not 0 < self.target <= 1:
            raise InputError(f"target must be in (0, 1], got {self.target}")
        if self.method not in METHODS:
            raise InputError(f"unknown ablation method {self.method!r}; choose one of {METHODS}")
        if self.reference not in REFERENCE_POLICIES:
            raise InputError(f"unknown reference policy {self.reference!r}; choose one of {REFERENCE_POLICIES}")
        for name in ("top_k", "top_k_step"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise InputError(f"{name} must be a positive integer (heads ablated exactly), got {v!r}")


def direction_references(model: ChatModel, harmful: PromptSet, harmless: PromptSet, cfg: SearchConfig,
                         grads: HeadGradients | None = None) -> dict:
    """The reference activations each direction ablates with (None for zero-ablation). `grads`
    (the attribution pass over harmful + harmless, in that order) already holds every head's
    last-token output, so the last-token references need no pass of their own."""
    if cfg.method == "zero":
        return {d: None for d in DIRECTIONS}
    n = len(harmful)

    def ref(prompts: PromptSet, rows: slice) -> HeadReference:
        if grads is not None and cfg.positions == "last" and grads.z_last is not None:
            return HeadReference(grads.z_last[rows], "last", prompts.describe())
        return head_reference(model, prompts, cfg.positions)

    if cfg.reference == "balanced":
        r = ref(harmful.concat(harmless), slice(0, None))
        return {d: r for d in DIRECTIONS}
    return {"refusal": ref(harmless.require("harmless reference set"), slice(n, None)),
            "compliance": ref(harmful.require("harmful reference set"), slice(0, n))}


@dataclass(frozen=True)
class DirectionSearch:
    direction: str  # "refusal" or "compliance" (see DIRECTIONS)
    heads: list[Head]
    steps: list[dict]  # per added head: the set so far, flipped fraction, mean score, judged refusal rate
    rate_before: float
    rate_after: float
    success: bool  # the judged rate moved by at least the target
    note: str = ""  # why the search did not run, when it did not

    @property
    def effect(self) -> float:
        """Judged refusal-rate change in the wanted direction (positive = behaviour flipped)."""
        return DIRECTIONS[self.direction][1] * (self.rate_after - self.rate_before)

    def to_dict(self) -> dict:
        return {"direction": self.direction, "heads": [list(h) for h in self.heads], "success": self.success,
                "rate_before": self.rate_before, "rate_after": self.rate_after, "effect": self.effect, "steps": self.steps,
                **({"note": self.note} if self.note else {})}


@dataclass(frozen=True)
class HeadSearch:
    """Both directions' searches and the single-head scans they started from."""

    refusal: DirectionSearch
    compliance: DirectionSearch
    # per direction: wanted-way change of the mean score per head; exact where `measured`, the
    # attribution estimate elsewhere
    single: dict[str, Float[Tensor, "layer head"]]
    references: dict  # per direction: the HeadReference ablated with (None for zero-ablation)
    cfg: SearchConfig
    neutral: dict = field(default_factory=dict)  # the best set under label-free ablation, and what it says
    tried: list = field(default_factory=list)  # summaries of reference policies tried before this one ("auto")
    estimate: dict[str, Float[Tensor, "layer head"]] = field(default_factory=dict)  # attribution estimate, every head
    measured: dict[str, Bool[Tensor, "layer head"]] = field(default_factory=dict)  # heads ablated exactly

    @property
    def best(self) -> DirectionSearch:
        """The direction that flipped behaviour (fewest heads, then largest effect)."""
        return max((self.refusal, self.compliance), key=lambda d: (d.success, -len(d.heads) if d.success else 0, d.effect))

    def estimate_quality(self) -> dict:
        """Per direction: Spearman of the attribution estimate against the exact single-head
        effects over the heads measured exactly (all of them with `exhaustive`), and whether the
        exact scan's best heads are among the estimate's top k."""
        from interp.stats import spearman

        out = {}
        for d, est in self.estimate.items():
            m = self.measured[d]
            exact = self.single[d][m]
            row = {"n_exact": int(m.sum()), "spearman": spearman(est[m], exact) if int(m.sum()) >= 3 else float("nan")}
            if bool(m.all()):  # exhaustive: where the estimate's top k stands against the exact top heads
                k = self.cfg.top_k
                top_est = set(est.flatten().argsort(descending=True)[:k].tolist())
                top_exact = self.single[d].flatten().argsort(descending=True)[:self.cfg.max_heads].tolist()
                row[f"exact_top{self.cfg.max_heads}_in_estimate_top{k}"] = sum(i in top_est for i in top_exact)
                row["chosen_in_estimate_top_k"] = all(h[0] * est.shape[1] + h[1] in top_est
                                                      for h in getattr(self, d).heads)
            out[d] = row
        return out

    def to_dict(self) -> dict:
        return {"best": self.best.direction, "method": self.cfg.method, "reference": self.cfg.reference,
                "refusal": self.refusal.to_dict(), "compliance": self.compliance.to_dict(), "neutral": self.neutral,
                "tried": self.tried, "exhaustive": self.cfg.exhaustive, "top_k": self.cfg.top_k,
                "estimate": self.estimate_quality()}


def single_head_effects(model: ChatModel, prompts, direction: str, method: str = "mean", reference=None, seed: int = 0,
                        positions: str = "last") -> Float[Tensor, "layer head"]:
    """Change of the mean refusal score when each head alone is ablated (exactly, one head per
    replica), signed so that positive is the direction's wanted way (refusal: lower score on
    harmful prompts; compliance: higher score on harmless ones)."""
    return _single_scan(model, prompts, direction, method, reference, seed, positions)[0]


def estimated_head_effects(model: ChatModel, prompts, direction: str, method: str = "mean", reference=None,
                           positions: str = "last", grads: HeadGradients | None = None) -> Float[Tensor, "layer head"]:
    """The attribution-patching estimate of `single_head_effects` for every head, from one forward
    and one backward pass over `prompts` (`grads`, when already computed for them)."""
    if direction not in DIRECTIONS:
        raise InputError(f"unknown direction {direction!r}; choose one of {list(DIRECTIONS)}")
    ref = resolve_reference(model, method, reference, positions)
    grads = grads if grads is not None else head_gradients(model, prompts)
    return _estimate(model, grads, direction, method, ref)


def _estimate(model: ChatModel, grads: HeadGradients, direction: str, method: str, ref: HeadReference | None) -> Tensor:
    # resample ablation draws a reference prompt per row; to first order its expected effect is
    # that of the reference mean, which ranks the heads just as well
    values = None if method == "zero" else ref.mean
    return DIRECTIONS[direction][1] * grads.ablation_estimate(values).mean(0)


def _single_scan(model, prompts, direction, method, reference, seed, positions, heads=None):
    if direction not in DIRECTIONS:
        raise InputError(f"unknown direction {direction!r}; choose one of {list(DIRECTIONS)}")
    every = heads is None
    heads = all_heads(model) if every else heads
    s = ablation_scores(model, prompts, [[]] + [[h] for h in heads], method, reference, seed, positions,
                        progress=f"single-head ablation ({direction}, {len(prompts)} prompts)")
    eff = DIRECTIONS[direction][1] * (s[1:] - s[:1]).mean(1)
    return (eff.view(model.n_layers, model.n_heads) if every else eff), s


def _search_direction(model, prompts: PromptSet, direction: str, cfg: SearchConfig, ref, rate0: float, judge,
                      max_new_tokens, grads: HeadGradients) -> tuple[DirectionSearch, Tensor, Tensor, Tensor]:
    label, sign = DIRECTIONS[direction]
    estimate = _estimate(model, grads, direction, cfg.method, ref)
    H = model.n_heads
    room = rate0 if sign < 0 else 1.0 - rate0
    if room < cfg.target - 1e-9:
        # success needs the judged rate to move by the target, and it has less room than that: a
        # model that refuses (almost) no harmful prompt has no refusal to remove, whatever heads go
        note = (f"not searched: the judged refusal rate of the {label} prompts is {rate0:.2f}, so it cannot "
                f"{'fall' if sign < 0 else 'rise'} by the target {cfg.target}")
        if cfg.exhaustive:  # the exhaustive scan still maps every head's effect
            single, _ = _single_scan(model, prompts, direction, cfg.method, ref, cfg.seed, cfg.positions)
            measured = torch.ones_like(single, dtype=torch.bool)
        else:
            single, measured = estimate.clone(), torch.zeros_like(estimate, dtype=torch.bool)
        return DirectionSearch(direction, [], [], rate0, rate0, False, note), single, estimate, measured
    if cfg.exhaustive:
        single, scan = _single_scan(model, prompts, direction, cfg.method, ref, cfg.seed, cfg.positions)
        measured = torch.ones_like(single, dtype=torch.bool)
        row_of = {h: 1 + i for i, h in enumerate(all_heads(model))}
        order = single.flatten().argsort(descending=True).tolist()
        cands = [divmod(i, H) for i in order[:max(cfg.n_candidates, cfg.max_heads)]]
    else:  # estimate every head, measure the top k exactly, search among those
        top = [divmod(i, H) for i in estimate.flatten().argsort(descending=True)[:cfg.top_k].tolist()]
        exact, scan = _single_scan(model, prompts, direction, cfg.method, ref, cfg.seed, cfg.positions, heads=top)
        single, measured = estimate.clone(), torch.zeros_like(estimate, dtype=torch.bool)
        for h, e in zip(top, exact.tolist()):
            single[h], measured[h] = e, True
        row_of = {h: 1 + i for i, h in enumerate(top)}
        cands = sorted(top, key=lambda h: -float(single[h]))

    def key(row: Tensor) -> tuple[float, float]:  # (share of prompts flipped by score, mean wanted-way score)
        return float(((sign * row) > 0).float().mean()), float(sign * row.mean())

    current: list[Head] = []
    steps: list[dict] = []
    best_key, rate, success = key(scan[0]), rate0, False
    n_steps = min(cfg.max_heads, len(cands) if cfg.exhaustive else model.n_layers * H)
    for step in range(n_steps):
        if step == 0:  # the single-head scan already holds these rows
            options = cands
            s = scan[[row_of[h] for h in options]]
        else:
            if cfg.exhaustive:
                options = [h for h in cands if h not in current]
            else:
                # estimate again around the run with the current set ablated: a head whose effect
                # only shows once another is gone (saturated downstream) is found at this step
                g = head_gradients(model, prompts, hooks=ablation_hooks(model, current, cfg.method, ref, cfg.seed,
                                                                        cfg.positions))
                est = _estimate(model, g, direction, cfg.method, ref)
                for h in current:
                    est[h] = -float("inf")
                options = [divmod(i, H) for i in est.flatten().argsort(descending=True)[:cfg.top_k_step].tolist()
                           if divmod(i, H) not in current]
            if not options:
                break
            s = ablation_scores(model, prompts, [current + [h] for h in options], cfg.method, ref, cfg.seed, cfg.positions,
                                base=current)
        keys = [key(row) for row in s]
        j = max(range(len(options)), key=lambda i: keys[i])
        if keys[j][0] <= best_key[0] and keys[j][1] - best_key[1] < cfg.min_gain:
            break  # no head flips more prompts or moves the score enough
        current, best_key = current + [options[j]], keys[j]
        # the judge is consulted once the score says enough prompts may have flipped (or at the end)
        judged = best_key[0] >= cfg.target / 2 or step == n_steps - 1
        if judged:
            r, _ = ablation_refusals(model, prompts, [current], cfg.method, ref, cfg.seed, cfg.positions, judge,
                                     max_new_tokens)
            rate = float(r[0].float().mean())
        steps.append({"heads": [list(h) for h in current], "flipped_by_score": best_key[0],
                      "mean_score": sign * best_key[1], "refusal_rate": rate if judged else None})
        if judged and sign * (rate - rate0) >= cfg.target:
            success = True
            break
    if steps and steps[-1]["refusal_rate"] is None:  # stopped early: judge the final set
        r, _ = ablation_refusals(model, prompts, [current], cfg.method, ref, cfg.seed, cfg.positions, judge, max_new_tokens)
        rate = float(r[0].float().mean())
        steps[-1]["refusal_rate"] = rate
        success = sign * (rate - rate0) >= cfg.target
    return DirectionSearch(direction, current, steps, rate0, rate, success), single, estimate, measured


def search_heads(model: ChatModel, harmful: PromptSet, harmless: PromptSet, cfg: SearchConfig = SearchConfig(),
                 judge: RefusalJudge = RefusalJudge(), max_new_tokens: int = FAST_GEN.max_new_tokens) -> HeadSearch:
    """Greedy search, in both directions, for the smallest head set whose ablation flips behaviour:
    removes refusal of `harmful` prompts ("refusal"), or removes compliance with `harmless` ones
    ("compliance"). `best` says which direction this model's heads work in."""
    harmful = harmful.require("harmful search set")
    harmless = harmless.require("harmless search set")
    both = harmful.concat(harmless)
    # one forward+backward pass serves both directions and both reference policies, and its
    # last-token head outputs are the reference means
    grads = head_gradients(model, both)
    refused, _ = ablation_refusals(model, both, [[]], judge=judge, max_new_tokens=max_new_tokens, method="zero")
    rates = {"harmful": float(refused[0, :len(harmful)].float().mean()),
             "harmless": float(refused[0, len(harmful):].float().mean())}
    if cfg.reference == "auto":
        first = _search(model, harmful, harmless, replace(cfg, reference="balanced"), judge, max_new_tokens, grads, rates)
        if first.best.success or cfg.method == "zero":
            return first
        second = _search(model, harmful, harmless, replace(cfg, reference="opposite"), judge, max_new_tokens, grads, rates)
        return replace(second, tried=[{"reference": "balanced", "refusal": first.refusal.to_dict(),
                                       "compliance": first.compliance.to_dict(), "neutral": first.neutral,
                                       "estimate": first.estimate_quality()}])
    return _search(model, harmful, harmless, cfg, judge, max_new_tokens, grads, rates)


def _search(model: ChatModel, harmful: PromptSet, harmless: PromptSet, cfg: SearchConfig, judge, max_new_tokens,
            grads: HeadGradients, rates: dict[str, float]) -> HeadSearch:
    refs = direction_references(model, harmful, harmless, cfg, grads)
    n = len(harmful)
    rows = {"harmful": range(n), "harmless": range(n, n + len(harmless))}
    single, estimate, measured, results = {}, {}, {}, {}
    for direction, (label, _) in DIRECTIONS.items():
        prompts = harmful if label == "harmful" else harmless
        results[direction], single[direction], estimate[direction], measured[direction] = _search_direction(
            model, prompts, direction, cfg, refs[direction], rates[label], judge, max_new_tokens, grads.rows(rows[label]))
    found = HeadSearch(results["refusal"], results["compliance"], single, refs, cfg, estimate=estimate, measured=measured)
    return replace(found, neutral=_neutral(model, found.best.heads, harmful, harmless, cfg, grads))


def _neutral(model: ChatModel, heads: list[Head], harmful: PromptSet, harmless: PromptSet, cfg: SearchConfig,
             grads: HeadGradients | None = None) -> dict:
    """What the model does with the found heads silenced by a label-free ablation (zero, and the
    mean over both labels): if it then complies with everything, it refuses because these heads
    detect harm; if it refuses everything, it refuses by default and complies because they detect
    a harmless request. Flipping alone cannot tell: an opposite-label mean moves a two-sided
    signal either way."""
    if not heads:
        return {}
    both = harmful.concat(harmless)
    n = len(harmful)
    out: dict = {"heads": [list(h) for h in heads]}
    bal = (HeadReference(grads.z_last, "last", both.describe()) if grads is not None and cfg.positions == "last"
           else head_reference(model, both, cfg.positions))
    for name, method, ref in (("zero", "zero", None), ("balanced_mean", "mean", bal)):
        s = ablation_scores(model, both, [heads], method, ref, cfg.seed, cfg.positions)[0]
        out[name] = {"refusing_harmful": float((s[:n] > 0).float().mean()), "refusing_harmless": float((s[n:] > 0).float().mean()),
                     "score_harmful": float(s[:n].mean()), "score_harmless": float(s[n:].mean())}
    z = out["zero"]
    if z["refusing_harmful"] < 0.5 and z["refusing_harmless"] < 0.5:
        out["mechanism"] = "refuses on detecting harm: with these heads zeroed it complies with both labels"
    elif z["refusing_harmful"] >= 0.5 and z["refusing_harmless"] >= 0.5:
        out["mechanism"] = "refuses by default, complies on detecting a harmless request: with these heads zeroed it refuses both"
    else:
        out["mechanism"] = ("unresolved: with these heads zeroed the model still tells harmful from harmless "
                            f"({z['refusing_harmful']:.0%} / {z['refusing_harmless']:.0%} refused), so other "
                            "components carry the signal too; the heads were found by flipping with the other label's mean")
    return out
