"""How prompts are grouped into forward passes: sorted by length, at most `batch_size` prompts and
at most `max_tokens` padded tokens per pass.

A padded position costs as much as a real one. Sorting alone leaves the longest prompts of a set
(a many-shot jailbreak of 700 tokens) in a batch with 63 others padded to their length: on the
SmolLM2 study a 60-prompt validation pass took 118 s where its real tokens needed 15 s. The token
cap splits such batches; sets of short prompts (every organism set) keep their `batch_size`
batches unchanged, so their numbers do not move.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import torch
from jaxtyping import Int
from torch import Tensor

from interp.model import ChatModel, EncodedBatch

MAX_BATCH_TOKENS = 16384  # padded tokens per pass (64 prompts of 256 tokens)
# a pass bigger than this is also closed before its padding would pass half its real tokens (one
# 700-token prompt among 13 of 100 tokens): small passes are not worth splitting. Measured on the
# SmolLM2 demo's test split (256 prompts, 29,975 real tokens): at most 2x real, 39,712 padded tokens
# in 5 passes; at most 1.5x, 34,256 in 7 (a pass's extra decoding steps cost ~0.1 s each)
MIN_SPLIT_TOKENS = 4096
MAX_PADDING = 1.5  # padded / real tokens of a pass above MIN_SPLIT_TOKENS


# Transient activation memory one replicated pass may take. Rows of a replicated batch are cheap
# to add on a CPU only while they fit: 512 rows of 60 tokens through one SmolLM2 MLP are 4 x 512 x
# 60 x 1536 floats (750 MB), and their key/value cache during generation 1.5 GB.
ACTIVATION_BUDGET = 256 * 2**20


def rows_per_pass(model: ChatModel, seq_len: int, max_rows: int, new_tokens: int = 0, grad: bool = False,
                  budget: int | None = None) -> int:
    """How many rows of `seq_len` tokens one pass may hold within `budget` bytes (at least 1, at
    most `max_rows`): the widest moment of a block (residual copies, the MLP's gate, up and product,
    the attention scores), plus the key/value cache when `new_tokens` are generated. With `grad`,
    what a backward pass keeps of every layer (norm inputs, queries, keys, values, attention
    probabilities, the MLP's three activations; with frozen weights no linear layer's input)."""
    budget = activation_budget() if budget is None else budget
    cfg = model.cfg
    d_mlp = int(getattr(cfg, "d_mlp", None) or 4 * model.d_model)
    n_kv = int(getattr(cfg, "n_key_value_heads", None) or model.n_heads)
    per_token = 6 * model.d_model + 3 * d_mlp + 2 * model.n_heads * (seq_len + new_tokens)
    if grad:
        per_token *= model.n_layers
    kv = 2 * model.n_layers * n_kv * model.d_head * (seq_len + new_tokens) if new_tokens else 0
    per_row = 4 * (seq_len * per_token + kv)  # float32 bytes
    return max(1, min(max_rows, budget // per_row))


# The same count for the plain passes of `prompt_chunks` (scoring, generation, capture): the attention
# scores grow with the square of the prompt, so a pass of long prompts is capped in rows. Eager
# attention holds several copies of the scores: 16 many-shot prompts of 727 tokens in one SmolLM2
# pass (984 MB by this count) raised the peak resident memory by 2.4 GB.
PASS_BUDGET = 2 * ACTIVATION_BUDGET


def prompt_chunks(model: ChatModel, prompt_texts: Sequence[str], batch_size: int, max_tokens: int | None = None,
                  sort: bool = True) -> list[list[int]]:
    """Indices of `prompt_texts` in passes: in order of character length (`sort`) or as given, each
    pass closed at `batch_size` prompts or before its padded size (prompts x longest prompt, in
    tokens after chat formatting) would pass `max_tokens`, or its rows `rows_per_pass` within
    PASS_BUDGET, or pass MIN_SPLIT_TOKENS while more than MAX_PADDING times its real tokens. A
    prompt longer than `max_tokens` gets a pass of its own. `--batch-size` and `--pass-budget`
    (`configure_passes`) replace `batch_size` and scale the token cap."""
    batch_size = _SETTINGS["batch_size"] or batch_size
    if max_tokens is None:
        max_tokens = MAX_BATCH_TOKENS * max(1, pass_budget() // PASS_BUDGET)
    order = sorted(range(len(prompt_texts)), key=lambda i: len(prompt_texts[i])) if sort else list(range(len(prompt_texts)))
    lengths = model.token_lengths([prompt_texts[i] for i in order])
    chunks: list[list[int]] = []
    cur: list[int] = []
    longest = real = 0
    for i, n in zip(order, lengths):
        padded = max(longest, n) * (len(cur) + 1)
        rows = rows_per_pass(model, max(longest, n), batch_size, budget=pass_budget())
        if cur and (len(cur) >= rows or padded > max_tokens or (padded > MIN_SPLIT_TOKENS and padded > MAX_PADDING * (real + n))):
            chunks.append(cur)
            cur, longest, real = [], 0, 0
        cur.append(i)
        longest, real = max(longest, n), real + n
    if cur:
        chunks.append(cur)
    return chunks


# ------------------------------------------------------------------ the command line's knobs
# Set once per command (`configure_passes`, called where the model is loaded): --batch-size replaces
# every pass's prompt count, --pass-budget the memory a plain pass may take (a replicated pass of the
# runner: half of it). Without --pass-budget: PASS_BUDGET on a CPU; on CUDA a quarter of the device
# memory free after the weights loaded.
_SETTINGS: dict = {"batch_size": None, "budget": None}
CUDA_SHARE = 0.25


def pass_budget() -> int:
    """Bytes a plain forward pass may take (`prompt_chunks`)."""
    return _SETTINGS["budget"] or PASS_BUDGET


def activation_budget() -> int:
    """Bytes a replicated pass of the runner may take (`rows_per_pass`'s default)."""
    return _SETTINGS["budget"] // 2 if _SETTINGS["budget"] else ACTIVATION_BUDGET


def default_budget(device) -> int | None:
    """A quarter of the free memory of a CUDA device; None (the CPU default) elsewhere."""
    import torch

    dev = torch.device(device) if device is not None else None
    if dev is None or dev.type != "cuda" or not torch.cuda.is_available():
        return None
    free, _ = torch.cuda.mem_get_info(dev)
    return max(PASS_BUDGET, int(free * CUDA_SHARE))


def configure_passes(device=None, batch_size: int | None = None, budget: int | None = None) -> dict:
    """Set this process's prompts per pass and pass budget (None: the defaults, also on CUDA where
    the budget follows the free memory); returns the settings in effect, for the report."""
    from interp.errors import InputError

    if batch_size is not None and batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {batch_size}")
    if budget is not None and budget < 1:
        raise InputError(f"--pass-budget must be positive, got {budget}")
    _SETTINGS["batch_size"] = batch_size
    _SETTINGS["budget"] = budget if budget is not None else default_budget(device)
    return passes_in_effect(budget is not None)


def passes_in_effect(given: bool = False) -> dict:
    return {"batch_size": _SETTINGS["batch_size"], "pass_budget_mb": round(pass_budget() / 2**20, 1),
            "budget_from": "--pass-budget" if given else ("free CUDA memory" if _SETTINGS["budget"] else "default")}


# ------------------------------------------------------------------ token sequences
def left_pad(seqs: Sequence[Sequence[int]], pad_id: int, device=None) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
    """(tokens, attention mask) of token sequences, left padded: every sequence ends at the last
    position, where the next-token logits are read."""
    L = max(len(s) for s in seqs)
    tokens = torch.full((len(seqs), L), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(seqs), L), dtype=torch.long, device=device)
    for r, s in enumerate(seqs):
        tokens[r, L - len(s):] = torch.tensor(list(s), dtype=torch.long)
        mask[r, L - len(s):] = 1
    return tokens, mask


def with_answers(b: EncodedBatch, answers: Sequence[Sequence[int]], pad_id: int) -> EncodedBatch:
    """`b` (left-padded prompts) with answer i appended to row i, left padded again: every answer
    ends at the last position (a teacher-forced pass over prompt + answer)."""
    seqs = [b.tokens[r, p:].tolist() + list(a) for r, (p, a) in enumerate(zip(b.pad, answers))]
    tokens, mask = left_pad(seqs, pad_id, b.tokens.device)
    return replace(b, tokens=tokens, attention_mask=mask.to(b.attention_mask.dtype), lengths=[len(s) for s in seqs])
