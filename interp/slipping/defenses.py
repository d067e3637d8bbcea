"""Jailbreak defenses compared with attention sharpening: SmoothLLM and Token Highlighter, plus
the undefended model and sharpening itself behind one interface.

Every defense answers `respond(model, prompts, judge, gen) -> DefenseOutput`: greedy answers,
the judge's verdict per prompt (True = refused) and its cost (prompt-length forward passes,
backward passes, wall time), so that `defense_eval` compares them on the same sets.

SmoothLLM (Robey et al. 2023, "SmoothLLM: Defending Large Language Models Against Jailbreaking
Attacks"): N perturbed copies of the prompt, each answered; the verdict is the majority vote of
the judge. Paper/official-code defaults: N = 10 copies, q = 10 % of characters, swap
perturbation, alphabet = Python's `string.printable`, a prompt counts as jailbroken when more
than half of the copies are (so 5 of 10 is a refusal); the answer returned is one of the copies
that agrees with the vote. Here only the request (+ suffix) span is perturbed, as in the
paper's threat model (the attack is a suffix appended to the request); the rest of the message
(role-play wrapper, distractors, examples) is kept verbatim.

Token Highlighter (Hu, Chen & Ho, AAAI 2025, "Token Highlighter: Inspecting and Mitigating
Jailbreak Prompts for Large Language Models"): affirmation loss = cross-entropy of an affirmative
reply given the prompt (paper: "Sure, I'd like to help you with this."; ours by default: the
model's own compliance opener, its first compliance phrase, e.g. the organism's "sure ! here is
how to" or a user's `--compliance-phrases certainly`); influence of a user-message token = L2 norm of the
loss's gradient at its input embedding; the top `token_fraction` of tokens by influence (the paper's alpha) have their
embeddings multiplied by `factor` (its beta; "soft removal"), then the model answers once. Defaults 0.25
and 0.5, which is our reading of the paper's main setting (highlight percentage and
soft-removal level); the stored reference pages we could consult do not print the table, so
treat them as to be checked against the paper.
"""

from __future__ import annotations

import random
import string
import time
from dataclasses import dataclass, field, replace
from typing import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from interp.batching import prompt_chunks, rows_per_pass
from interp.errors import InputError
from interp.generation import GenerationConfig, generate, generate_batch
from interp.hooknames import EMBED
from interp.hooks import hooked
from interp.model import ChatModel
from interp.prompts import Prompt
from interp.runner import forward
from interp.scoring import RefusalJudge
from interp.intervention import Intervention, check_temperature
from interp.slipping.trace import as_prompts


@dataclass
class DefenseOutput:
    """Answers and verdicts of one defense on one prompt set, with what they cost."""

    answers: list[str]
    refused: list[bool]
    forward_passes: int  # prompt-length forward passes (cached decode steps not counted)
    backward_passes: int
    seconds: float
    meta: dict = field(default_factory=dict)


class _PassCounter:
    """Counts prompt-length forward passes (row-wise) through a hook on the token embeddings."""

    def __init__(self):
        self.n = 0

    def hook(self, embed, hook):
        if embed.shape[1] > 1:
            self.n += embed.shape[0]
        return embed


def _generate_counted(model: ChatModel, prompts, gen: GenerationConfig) -> tuple[list[str], int]:
    c = _PassCounter()
    with hooked(model, [(EMBED, c.hook)]):
        answers = generate(model, prompts, gen)
    return answers, c.n


# ---------------------------------------------------------------- no defense / sharpening
@dataclass(frozen=True)
class NoDefense:
    name: str = "none"

    def respond(self, model: ChatModel, prompts, judge: RefusalJudge, gen: GenerationConfig) -> DefenseOutput:
        t = time.perf_counter()
        answers, n = _generate_counted(model, prompts, gen)
        return DefenseOutput(answers, judge(answers), n, 0, time.perf_counter() - t)


@dataclass(frozen=True)
class Sharpening:
    """Attention sharpening at temperature T on the chosen layers/heads (None: all)."""

    T: float = 0.25  # lowest jailbreak success without over-refusal on held-out organism prompts (docs/slipping.md)
    layers: tuple[int, ...] | None = None
    heads: tuple | None = None
    name: str = "sharpening"

    def __post_init__(self) -> None:
        check_temperature(self.T)

    def respond(self, model: ChatModel, prompts, judge: RefusalJudge, gen: GenerationConfig) -> DefenseOutput:
        t = time.perf_counter()
        with Intervention.sharpen(self.T, self.layers, self.heads).apply(model):
            answers, n = _generate_counted(model, prompts, gen)
        return DefenseOutput(answers, judge(answers), n, 0, time.perf_counter() - t, {"T": self.T})


# ---------------------------------------------------------------- SmoothLLM
PERTURBATIONS = ("swap", "insert", "patch")


@dataclass(frozen=True)
class SmoothLLM:
    n_copies: int = 10  # paper: N = 10
    q: float = 10.0  # percent of the perturbed span's characters; paper: 10 %
    perturbation: str = "swap"  # paper's main setting; "insert" and "patch" also available
    spans: tuple[str, ...] = ("request", "suffix")  # only these parts of the message are perturbed
    alphabet: str = string.printable
    seed: int = 0
    name: str = "smoothllm"

    def __post_init__(self) -> None:
        check_smoothllm(self.n_copies, self.q, self.perturbation)
        if not self.alphabet:
            raise InputError("SmoothLLM needs a non-empty alphabet to draw perturbations from")

    def respond(self, model: ChatModel, prompts, judge: RefusalJudge, gen: GenerationConfig) -> DefenseOutput:
        ps = as_prompts(prompts)
        t = time.perf_counter()
        rng = random.Random(self.seed)
        copies = [perturb(p, self.q, self.perturbation, rng, self.spans, self.alphabet) for p in ps for _ in range(self.n_copies)]
        answers_all, n = _generate_counted(model, copies, gen)
        refused_all = judge(answers_all)
        answers, refused = [], []
        for i in range(len(ps)):
            a = answers_all[i * self.n_copies:(i + 1) * self.n_copies]
            r = refused_all[i * self.n_copies:(i + 1) * self.n_copies]
            jailbroken = sum(not x for x in r) / self.n_copies > 0.5  # strict majority, as the official code
            agree = [j for j, x in enumerate(r) if x != jailbroken]
            answers.append(a[rng.choice(agree)])
            refused.append(not jailbroken)
        return DefenseOutput(answers, refused, n, 0, time.perf_counter() - t,
                             {"n_copies": self.n_copies, "q": self.q, "perturbation": self.perturbation})


def check_smoothllm(n_copies: int, q: float, perturbation: str = "swap") -> None:
    if not isinstance(n_copies, int) or n_copies < 1:
        raise InputError(f"SmoothLLM needs at least 1 copy (n_copies >= 1), got {n_copies!r}")
    if not isinstance(q, (int, float)) or not 0 <= q <= 100:
        raise InputError(f"SmoothLLM perturbation rate q is a percentage in [0, 100], got {q!r}")
    if perturbation not in PERTURBATIONS:
        raise InputError(f"unknown SmoothLLM perturbation {perturbation!r}; choose one of {PERTURBATIONS}")


def _perturb_chars(s: str, q: float, kind: str, rng: random.Random, alphabet: str) -> list[tuple[int, str]]:
    """Perturb q % of the characters of `s` (swap: replace them; insert: add one after each;
    patch: replace one contiguous run). Returns (original index it belongs to, char) pairs."""
    out = [(i, c) for i, c in enumerate(s)]
    n = int(len(s) * q / 100)
    if n == 0:
        return out
    if kind == "swap":
        for i in rng.sample(range(len(s)), n):
            out[i] = (i, rng.choice(alphabet))
    elif kind == "insert":
        chosen = set(rng.sample(range(len(s)), n))
        out = [x for i, c in enumerate(s) for x in ([(i, c), (i, rng.choice(alphabet))] if i in chosen else [(i, c)])]
    else:  # patch
        start = rng.randrange(0, len(s) - n + 1)
        for i in range(start, start + n):
            out[i] = (i, rng.choice(alphabet))
    return out


def perturb(prompt: Prompt, q: float = 10.0, kind: str = "swap", rng: random.Random | None = None,
            spans: Sequence[str] = ("request", "suffix"), alphabet: str = string.printable) -> Prompt:
    """One SmoothLLM copy: q % of the characters inside `spans` change (each span counted on its
    own), everything else stays verbatim; the prompt's spans are moved to the new offsets."""
    check_smoothllm(1, q, kind)
    rng = rng or random.Random(0)
    if "request" not in prompt.spans:
        raise InputError(f"prompt {prompt.id or prompt.text[:40]!r} has no 'request' span, so SmoothLLM cannot "
                         "locate the request to perturb")
    chars: list[tuple[int, str]] = [(i, c) for i, c in enumerate(prompt.text)]
    # perturb right to left so that earlier offsets stay valid while splicing
    for a, b in sorted({prompt.spans[k] for k in spans if k in prompt.spans}, reverse=True):
        piece = [(a + i, c) for i, c in _perturb_chars(prompt.text[a:b], q, kind, rng, alphabet)]
        chars[a:b] = piece
    owners = [o for o, _ in chars]
    text = "".join(c for _, c in chars)

    def start_of(a: int) -> int:
        return next((j for j, o in enumerate(owners) if o >= a), len(owners))

    def end_of(b: int) -> int:
        return max((j + 1 for j, o in enumerate(owners) if o < b), default=0)

    new_spans = {k: (start_of(a), end_of(b)) for k, (a, b) in prompt.spans.items()}
    return replace(prompt, text=text, spans=new_spans, meta={**prompt.meta, "smoothllm": kind})


# ---------------------------------------------------------------- Token Highlighter
@dataclass(frozen=True)
class TokenHighlighter:
    affirmation: str | None = None  # None: the model's first compliance phrase (paper: "Sure, I'd like to help you with this.")
    # the paper's alpha and beta, named after their units
    token_fraction: float = 0.25  # fraction of the user-message tokens highlighted
    factor: float = 0.5  # soft removal: highlighted embeddings are multiplied by this
    batch_size: int = 32
    name: str = "token_highlighter"

    def __post_init__(self) -> None:
        if not 0 < self.token_fraction <= 1:
            raise InputError(f"Token Highlighter token_fraction (fraction of tokens highlighted) must be in (0, 1], got {self.token_fraction}")
        if not 0 <= self.factor <= 1:
            raise InputError(f"Token Highlighter factor (embedding scale of highlighted tokens) must be in [0, 1], got {self.factor}")
        if self.affirmation is not None and not self.affirmation.strip():
            raise InputError("Token Highlighter needs a non-empty affirmation text (or None: the model's compliance opener)")

    def respond(self, model: ChatModel, prompts, judge: RefusalJudge, gen: GenerationConfig) -> DefenseOutput:
        ps = as_prompts(prompts)
        t = time.perf_counter()
        affirmation = self.affirmation or affirmation_of(model)
        answers: list[str] = [""] * len(ps)
        highlighted: list[list[int]] = [[] for _ in ps]
        # passes of similar lengths (interp.batching): one 700-token many-shot prompt would pad the
        # whole batch to its length, for the gradient and the generation alike
        for chunk in prompt_chunks(model, [p.text for p in ps], self.batch_size):
            batch = model.encode([ps[i] for i in chunk])
            infl = token_influence(model, batch, affirmation)
            scale = torch.ones(batch.tokens.shape, device=batch.tokens.device)
            for r, i in enumerate(chunk):
                content = _content_positions(batch, r)
                k = max(1, round(self.token_fraction * len(content)))
                pad = batch.tokens.shape[1] - batch.lengths[r]
                top = sorted(content, key=lambda j: -float(infl[r, pad + j]))[:k]
                highlighted[i] = sorted(top)
                scale[r, [pad + j for j in top]] = self.factor
            with Intervention.weigh_tokens(scale).apply(model):
                new = generate_batch(model, batch, gen.max_new_tokens, gen.use_kv_cache)
            for r, i in enumerate(chunk):
                answers[i] = model.tokenizer.decode(new[r], skip_special_tokens=True).strip()
        return DefenseOutput(answers, judge(answers), 2 * len(ps), len(ps), time.perf_counter() - t,
                             {"token_fraction": self.token_fraction, "factor": self.factor, "affirmation": affirmation,
                              "highlighted": highlighted})


def affirmation_of(model: ChatModel) -> str:
    """The affirmative reply Token Highlighter's loss is about: the model's own compliance opener."""
    if not model.compliance_phrases:
        raise InputError(f"{model.name} has no compliance phrases to take Token Highlighter's affirmation from; pass "
                         "affirmation= or load it with compliance_phrases= (CLI: --compliance-phrases)")
    return model.compliance_phrases[0]


def _content_positions(batch, row: int) -> list[int]:
    """Unpadded indices of the user's message tokens (the template's tokens are never highlighted)."""
    cs, ce = batch.content_starts[row], batch.content_ends[row]
    return [j for j, (a, b) in enumerate(batch.offsets[row]) if a >= cs and b <= ce and b > a]


def token_influence(model: ChatModel, batch, affirmation: str) -> Float[Tensor, "batch pos"]:
    """L2 norm of d(affirmation loss)/d(input embedding) at each padded prompt position.

    The affirmation tokens are appended after the left-padded prompt; the gradient is taken with
    respect to an additive zero tensor on `hook_embed`, through `torch.autograd.grad`, so no
    parameter gradient is accumulated."""
    aff = model.tokenizer(" " + affirmation.strip(), add_special_tokens=False).input_ids
    unk = model.tokenizer.unk_token_id
    if not aff or (unk is not None and unk in aff):
        raise InputError(f"affirmation {affirmation!r} does not tokenize cleanly for {model.name} (unknown tokens); "
                         "use words from the model's vocabulary")
    B, L = batch.tokens.shape
    aff_t = torch.tensor(aff, device=batch.tokens.device).expand(B, -1)
    tokens = torch.cat([batch.tokens, aff_t], 1)
    mask = torch.cat([batch.attention_mask, torch.ones_like(aff_t)], 1)
    # rows are independent: as many per backward pass as the activation budget allows (a batch of
    # long prompts kept every layer's attention for the backward pass at once and ran out of memory)
    step = rows_per_pass(model, tokens.shape[1], B, grad=True)
    norms = []
    for r0 in range(0, B, step):
        rows = slice(r0, r0 + step)
        holder: dict[str, Tensor] = {}

        def add_delta(embed, hook):
            delta = torch.zeros_like(embed, requires_grad=True)
            holder["delta"] = delta
            return embed + delta

        with torch.enable_grad(), hooked(model, [(EMBED, add_delta)]):
            # only the positions that predict the affirmation: position L-1+i predicts token i
            logits = forward(model, tokens[rows], mask[rows], logits_to_keep=len(aff) + 1)
            pred = logits[:, :len(aff)].float().log_softmax(-1)
            loss = -pred.gather(-1, aff_t[rows][..., None]).sum()
            (grad,) = torch.autograd.grad(loss, holder["delta"])
        norms.append(grad[:, :L].norm(dim=-1).detach())
    return torch.cat(norms)
