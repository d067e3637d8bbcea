"""Request-span attention trace: how much attention the response puts on the unsafe request.

For each prompt the formatted chat is cut into spans taken from the prompt's own structure
(`Prompt.spans`): the request, the jailbreak's parts (wrapper, examples, extra, suffix), the chat
template's tokens, anything else in the user's message ("other"), and the tokens generated so far
("response"). Every key position belongs to exactly one span, so per head and query the masses
sum to 1.

The reduction happens inside the `hook_pattern` hook: the pattern row of the current query
(the last prompt position on the prompt pass, the newest token on each cached generation step) is
multiplied with a [key, span] membership matrix, and only [batch, head, span] is kept per layer.
Nothing of size [query, key] is stored, so memory grows with sequence length, not its square.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from einops import einsum
from jaxtyping import Bool, Float
from torch import Tensor

from interp.batching import prompt_chunks
from interp.errors import InputError
from interp.generation import generate_batch
from interp.hooknames import LOGITS, act_name
from interp.hooks import hooked
from interp.model import ChatModel, EncodedBatch
from interp.prompts import Prompt, PromptSet
from interp.runner import forward
from interp.scoring import RefusalJudge, refusal_log_odds
from interp.threads import model_threads

# Span order: the request first (it wins where spans overlap), then the jailbreak's own parts.
SPANS: tuple[str, ...] = ("request", "wrapper", "examples", "extra", "suffix", "template", "other", "response")
JAILBREAK_SPANS = ("wrapper", "examples", "extra", "suffix")


@dataclass(frozen=True)
class TraceConfig:
    """`max_new_tokens=0` traces the last prompt position only (one forward pass, no generation)."""

    max_new_tokens: int = 8
    batch_size: int = 32
    layers: tuple[int, ...] | None = None  # None: every layer


@dataclass
class SlippingTrace:
    """Attention mass of the response's query positions on each span, per layer and head.

    Step 0 is the last prompt position (it decides the first response token); step t > 0 is the
    query at generated token t-1. `valid[b, t]` is False for steps after a row stopped."""

    prompts: PromptSet
    layers: tuple[int, ...]
    mass: Float[Tensor, "batch step layer head span"]
    valid: Bool[Tensor, "batch step"]
    refusal_score: Float[Tensor, "batch"]  # log-odds refuse vs comply at the first response position
    answers: list[str]
    refused: list[bool]  # the judge on the greedy answer (with max_new_tokens=0: refusal_score > 0)
    token_spans: list[dict[str, list[int]]]  # per prompt: span name -> unpadded token indices
    spans: tuple[str, ...] = SPANS

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, idx: Sequence[int], name: str | None = None) -> "SlippingTrace":
        """The trace of some of the prompts (no recomputation)."""
        idx = list(idx)
        if not idx:
            raise InputError("subset of a trace needs at least one prompt index")
        it = torch.tensor(idx, dtype=torch.long)
        ps = PromptSet(name or f"{self.prompts.name}:subset", tuple(self.prompts[i] for i in idx), self.prompts.source)
        return SlippingTrace(ps, self.layers, self.mass[it], self.valid[it], self.refusal_score[it],
                             [self.answers[i] for i in idx], [self.refused[i] for i in idx],
                             [self.token_spans[i] for i in idx], self.spans)

    def span_index(self, span: str) -> int:
        if span not in self.spans:
            raise InputError(f"unknown span {span!r}; spans are {list(self.spans)}")
        return self.spans.index(span)

    def first(self) -> Float[Tensor, "batch layer head span"]:
        """The last prompt position: the query that picks refuse or comply."""
        return self.mass[:, 0]

    def response(self) -> Float[Tensor, "batch layer head span"]:
        """Mean over every response query position (last prompt position and generated tokens)."""
        w = self.valid.to(self.mass.dtype)
        return einsum(self.mass, w, "b t l h s, b t -> b l h s") / w.sum(1).clamp(min=1)[:, None, None, None]

    def on(self, span: str = "request", query: str = "first") -> Float[Tensor, "batch layer head"]:
        """Attention on one span; `query` is "first" (last prompt position) or "response" (mean)."""
        if query not in ("first", "response"):
            raise InputError(f"query must be 'first' or 'response', got {query!r}")
        m = self.first() if query == "first" else self.response()
        return m[..., self.span_index(span)]

    def token_share(self, span: str = "request") -> Float[Tensor, "batch"]:
        """Fraction of the prompt's tokens in `span`: what a head attending uniformly would put on it."""
        self.span_index(span)
        return torch.tensor([len(sp.get(span, [])) / max(1, sum(len(v) for v in sp.values())) for sp in self.token_spans])

    def on_jailbreak(self, query: str = "first") -> Float[Tensor, "batch layer head"]:
        """Attention on all of the jailbreak's own tokens (wrapper + examples + extra + suffix)."""
        return sum(self.on(s, query) for s in JAILBREAK_SPANS)


def _check_layers(model: ChatModel, layers) -> tuple[int, ...]:
    if layers is None:
        return tuple(range(model.n_layers))
    layers = tuple(layers)
    bad = [l for l in layers if not (isinstance(l, int) and 0 <= l < model.n_layers)]
    if bad or not layers:
        raise InputError(f"layers {bad or '()'} out of range: {model.name} has layers 0..{model.n_layers - 1}")
    return layers


def as_prompts(prompts) -> PromptSet:
    """A PromptSet of `Prompt`s; bare strings have no request span and are rejected."""
    if isinstance(prompts, PromptSet):
        return prompts.require("prompt set to trace")
    prompts = list(prompts)
    if not prompts:
        raise InputError("no prompts given: pass a non-empty list of Prompt objects or a PromptSet")
    if any(not isinstance(p, Prompt) for p in prompts):
        raise InputError("attention tracing needs Prompt objects with spans['request'] (bare strings have no "
                         "request span); wrap texts with PromptSet.from_texts(name, texts, label)")
    return PromptSet("traced", tuple(prompts))


def token_spans(model: ChatModel, batch: EncodedBatch, row: int, prompt: Prompt) -> dict[str, list[int]]:
    """Unpadded token indices of each span of one encoded prompt (a partition of its tokens)."""
    pid = prompt.id or f"#{row}"
    if "request" not in prompt.spans:
        raise InputError(f"prompt {pid!r} has no 'request' span, so the unsafe request cannot be located; "
                         f"give it spans={{'request': (start, end)}} (character offsets into its text)")
    n = batch.lengths[row]
    cs, ce = batch.content_starts[row], batch.content_ends[row]
    if cs < 0:
        raise InputError(f"prompt {pid!r}: its text was not found in the chat-formatted string, so its request "
                         f"span cannot be located")
    owner = ["other"] * n
    for j, (a, b) in enumerate(batch.offsets[row]):
        if b <= cs or a >= ce or a == b:  # chat template tokens (and zero-width specials)
            owner[j] = "template"
    # jailbreak parts first, the request last so that it wins where spans overlap
    order = [k for k in prompt.spans if k != "request"] + ["request"]
    for name in order:
        a, b = prompt.spans[name]
        if not (0 <= a < b <= len(prompt.text)):
            if name == "request":
                raise InputError(f"prompt {pid!r}: request span {(a, b)} does not fit its text of "
                                 f"{len(prompt.text)} characters, so the request cannot be located")
            continue
        try:
            t0, t1 = model.token_span(batch, row, (a, b))
        except InputError:
            if name == "request":
                raise InputError(f"prompt {pid!r}: request span {(a, b)} covers no token of the formatted chat, "
                                 f"so the request cannot be located; check its spans") from None
            continue
        label = name if name in SPANS else "other"
        for j in range(t0, t1):
            owner[j] = label
    return {s: [j for j, o in enumerate(owner) if o == s] for s in SPANS if s != "response"}


def _membership(batch: EncodedBatch, spans: list[dict[str, list[int]]], n_new: int,
                dtype: torch.dtype) -> Float[Tensor, "batch key span"]:
    """One-hot [key, span] matrix over the padded prompt plus `n_new` generated positions."""
    B, L = batch.tokens.shape
    m = torch.zeros(B, L + n_new, len(SPANS), dtype=dtype, device=batch.tokens.device)
    for r, sp in enumerate(spans):
        pad = L - batch.lengths[r]
        for s, idx in sp.items():
            if idx:
                m[r, torch.tensor(idx, device=m.device) + pad, SPANS.index(s)] = 1.0
    m[:, L:, SPANS.index("response")] = 1.0  # pads stay all-zero: they get no attention anyway
    return m


def _trace_batch(model: ChatModel, batch: EncodedBatch, spans: list[dict[str, list[int]]], layers: tuple[int, ...],
                 max_new_tokens: int) -> tuple[Tensor, Tensor, list[list[int]]]:
    """Run one batch (prompt pass + greedy steps) and reduce every pattern row inside the hook."""
    member = _membership(batch, spans, max_new_tokens, model.dtype)
    per_layer: dict[int, list[Tensor]] = {l: [] for l in layers}
    logits_first: list[Tensor] = []
    L = batch.tokens.shape[1]

    def make_hook(l: int):
        def hook(pattern: Float[Tensor, "batch head q k"], hook):
            row = pattern[:, :, -1, :]  # the newest query: last prompt position, then each generated token
            # the keys are the latest k of the `end` positions so far: all of them, or on a layer with
            # local attention under the key/value cache only the window's (Gemma 2/3, Mistral)
            k, end = row.shape[-1], L + len(per_layer[l])
            per_layer[l].append(einsum(row, member[:, end - k:end], "b h k, b k s -> b h s").detach().float())
            return pattern
        return hook

    def grab_logits(logits, hook):
        if not logits_first:  # the prompt pass: logits for the first response token
            logits_first.append(logits[:, -1].detach().float())
        return logits

    fwd = [(act_name("pattern", l), make_hook(l)) for l in layers] + [(LOGITS, grab_logits)]
    with hooked(model, fwd):
        if max_new_tokens > 0:
            new = generate_batch(model, batch, max_new_tokens)
        else:
            with torch.no_grad():
                forward(model, batch.tokens, batch.attention_mask)
            new = [[] for _ in range(batch.tokens.shape[0])]
    mass = torch.stack([torch.stack(per_layer[l], 1) for l in layers], 2)  # [b, step, layer, head, span]
    return mass, logits_first[0], new


def trace_attention(model: ChatModel, prompts, cfg: TraceConfig = TraceConfig(),
                    judge: RefusalJudge = RefusalJudge()) -> SlippingTrace:
    """Attention mass per span of the response's query positions, per layer and head.

    Also returns the greedy answers (judged) and the refusal score of the same prompt pass, so one
    run gives both sides of the slipping story."""
    ps = as_prompts(prompts)
    layers = _check_layers(model, cfg.layers)
    if cfg.max_new_tokens < 0:
        raise InputError(f"max_new_tokens must be >= 0, got {cfg.max_new_tokens}")
    if cfg.batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {cfg.batch_size}")
    with model_threads(model):  # small models: one intra-op thread (interp.threads)
        return _trace_all(model, ps, layers, cfg, judge)


def _trace_all(model: ChatModel, ps: PromptSet, layers: tuple[int, ...], cfg: TraceConfig,
               judge: RefusalJudge) -> SlippingTrace:
    n_steps = max(cfg.max_new_tokens, 1)
    N = len(ps)
    mass = torch.zeros(N, n_steps, len(layers), model.n_heads, len(SPANS))
    valid = torch.zeros(N, n_steps, dtype=torch.bool)
    scores = torch.zeros(N)
    answers, tspans = [""] * N, [None] * N
    # passes of similar lengths (interp.batching): a many-shot prompt must not pad its batch-mates
    for chunk in prompt_chunks(model, [p.text for p in ps], cfg.batch_size):
        chunk_prompts = [ps[i] for i in chunk]
        batch = model.encode(chunk_prompts)
        sp = [token_spans(model, batch, r, p) for r, p in enumerate(chunk_prompts)]
        m, logits, new = _trace_batch(model, batch, sp, layers, cfg.max_new_tokens)
        s = refusal_log_odds(model, logits)
        ran = m.shape[1]
        for r, i in enumerate(chunk):
            mass[i, :ran] = m[r].cpu()
            # steps that produced a response token (or the stop token); rows that stopped feed EOS after
            valid[i, :min(len(new[r]) + 1, ran)] = True
            scores[i] = s[r].cpu()
            answers[i] = model.tokenizer.decode(new[r], skip_special_tokens=True).strip()
            tspans[i] = sp[r]
    if cfg.max_new_tokens == 0:
        valid[:, 0] = True
    refused = judge(answers) if cfg.max_new_tokens > 0 else [bool(x > 0) for x in scores]
    return SlippingTrace(ps, layers, mass, valid, scores, answers, refused, tspans)


def sliding_windows(model: ChatModel) -> dict[int, int]:
    """Layer -> window (the keys a query sees, itself included) of each layer with local attention
    (Gemma 2/3, Mistral, Cohere 2, OLMo 3): a layer whose window ends after the request's first token
    cannot attend to all of it, whatever the jailbreak does."""
    cfg = getattr(getattr(model.bridge, "original_model", None), "config", None)
    window = getattr(cfg, "sliding_window", None)
    if not window or getattr(cfg, "use_sliding_window", True) is False:
        return {}
    types = getattr(cfg, "layer_types", None)
    layers = [l for l, t in enumerate(types) if t == "sliding_attention"] if types else range(model.n_layers)
    return {int(l): int(window) for l in layers}


def window_reach(model: ChatModel, trace: SlippingTrace) -> dict | None:
    """How many (prompt, traced layer) pairs have the request beyond the last prompt position's
    sliding window (their attention on the request is cut by the window, not by slipping); None
    when the model has no local attention."""
    windows = {l: w for l, w in sliding_windows(model).items() if l in trace.layers}
    if not windows:
        return None
    reach = [sum(len(v) for v in sp.values()) - min(sp.get("request") or [0]) for sp in trace.token_spans]
    beyond = sum(1 for r in reach for w in windows.values() if r > w)
    return {"windows": {str(l): w for l, w in windows.items()}, "longest_reach": max(reach),
            "pairs_beyond_window": beyond, "pairs": len(reach) * len(windows),
            "note": "reach = tokens from the request's first token to the last prompt position; where it exceeds a "
                    "layer's window, that layer's attention on the request is cut by the window"}


@torch.no_grad()
def token_attention(model: ChatModel, prompt: Prompt, max_new_tokens: int = 8,
                    heads: Sequence[tuple[int, int]] | None = None) -> tuple[Float[Tensor, "query key"], list[str], list[str]]:
    """Attention from each response query position onto every token, for one prompt (for the
    token-level heatmap). Averaged over `heads` ((layer, head) pairs; None: all heads of all layers).

    Returns the [query, key] matrix (keys: prompt tokens then generated tokens), the key token
    labels and the query labels (the token each query position produced)."""
    if heads is not None:
        heads = [(int(l), int(h)) for l, h in heads]
        for l, h in heads:
            if not (0 <= l < model.n_layers and 0 <= h < model.n_heads):
                raise InputError(f"head ({l}, {h}) does not exist on {model.name} "
                                 f"({model.n_layers} layers x {model.n_heads} heads)")
    batch = model.encode([prompt])
    token_spans(model, batch, 0, prompt)  # the request must be locatable here too
    sel = heads or [(l, h) for l in range(model.n_layers) for h in range(model.n_heads)]
    by_layer: dict[int, list[int]] = {}
    for l, h in sel:
        by_layer.setdefault(l, []).append(h)
    acc: list[Tensor] = []

    L = batch.tokens.shape[1]

    def make_hook(l: int, hs: list[int]):
        def hook(pattern, hook):
            row = pattern[0, hs, -1, :].sum(0).float()  # one row per step: [key]
            first = l == min(by_layer)
            end = L + len(acc) - (0 if first else 1)  # keys so far; a windowed layer holds the last row.shape[0]
            full = torch.zeros(end, dtype=row.dtype, device=row.device)
            full[end - row.shape[0]:] = row
            if first:
                acc.append(full)
            else:
                acc[-1] = acc[-1] + full
            return pattern
        return hook

    fwd = [(act_name("pattern", l), make_hook(l, hs)) for l, hs in sorted(by_layer.items())]
    with hooked(model, fwd):
        new = generate_batch(model, batch, max(max_new_tokens, 1))
    L = batch.tokens.shape[1]
    n_q = min(len(acc), len(new[0]) + 1)
    K = L + n_q - 1
    mat = torch.zeros(n_q, K)
    for t in range(n_q):
        mat[t, :acc[t].shape[0]] = acc[t] / len(sel)
    keys = model.to_str_tokens(batch.tokens[0].tolist() + new[0][:n_q - 1])
    produced = model.to_str_tokens(new[0][:n_q]) + (["<stop>"] if n_q > len(new[0]) else [])
    queries = [f"-> {t}" for t in produced[:n_q]]
    return mat, keys, queries
