"""The three pivot tokens on any Hugging Face causal LM: added to its tokenizer as single special
tokens, with new embedding rows (and new unembedding rows when the model does not tie them).

New rows start at the mean of the existing rows plus a small seeded perturbation (a hundredth of
the rows' per-dimension spread), so the three pivots start as plausible, nearly average tokens and
are not identical: identical unembedding rows would give [SAFE] and [UNSAFE] the same logit for
every hidden state, and no adapter could ever separate them. Training updates these rows (only
these: `row_gradient_mask`), and they are saved beside the adapter.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import ModelLoadError
from interp.r2d.data import PIVOTS


def add_pivot_tokens(tokenizer) -> dict[str, int]:
    """Add the pivots to `tokenizer` as special tokens (never split, kept when decoding); returns
    each pivot's id. Tokens already present keep their id."""
    new = [p for p in PIVOTS if p not in tokenizer.get_vocab()]
    if new:
        tokenizer.add_special_tokens({"additional_special_tokens": new}, replace_extra_special_tokens=False)
    return single_token_ids(tokenizer)


def single_token_ids(tokenizer) -> dict[str, int]:
    """Each pivot's id; a pivot that does not encode as exactly one token is a ModelLoadError."""
    out = {}
    for p in PIVOTS:
        ids = tokenizer(p, add_special_tokens=False).input_ids
        if len(ids) != 1 or ids[0] == tokenizer.unk_token_id:
            raise ModelLoadError(f"pivot {p} is not a single token of this tokenizer (encodes as {ids}); add it with "
                                 "interp.r2d.pivots.add_pivot_tokens")
        out[p] = ids[0]
    return out


def init_rows(weight: Float[Tensor, "vocab d"], n: int, seed: int) -> Float[Tensor, "n d"]:
    """`n` new rows: the mean row plus seeded noise of 1% of each dimension's standard deviation."""
    w = weight.detach().double()
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, w.shape[1], generator=gen, dtype=torch.float64)
    return (w.mean(0, keepdim=True) + 0.01 * w.std(0, keepdim=True) * noise).to(weight.dtype)


def tied(model) -> bool:
    out = model.get_output_embeddings()
    return out is not None and out.weight is model.get_input_embeddings().weight


def grow_embeddings(model, ids: dict[str, int], seed: int) -> list[int]:
    """Make room for the pivot ids in `model`'s (un)embedding and initialise their rows; returns
    the pivot rows, in PIVOTS order. (A vocabulary padded beyond the tokenizer, e.g. Qwen's,
    already has room: the tokenizer gives new tokens the ids right after its own.)"""
    rows = [ids[p] for p in PIVOTS]
    old = model.get_input_embeddings().weight.shape[0]
    if max(rows) >= old:
        model.resize_token_embeddings(max(rows) + 1, mean_resizing=False)
    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        known = emb[:min(old, min(rows))]
        emb[rows] = init_rows(known, len(rows), seed)
        if not tied(model):
            un = model.get_output_embeddings().weight
            un[rows] = init_rows(un[:known.shape[0]], len(rows), seed + 1)
    return rows


def pivot_rows(model, rows: list[int]) -> dict[str, Tensor]:
    """The pivot rows to save: `embed` (and `unembed` when untied), float32, in `rows` order."""
    out = {"embed": model.get_input_embeddings().weight[rows].detach().float().clone()}
    if not tied(model):
        out["unembed"] = model.get_output_embeddings().weight[rows].detach().float().clone()
    return out


def set_pivot_rows(model, rows: list[int], saved: dict[str, Tensor]) -> None:
    """Grow the model to hold `rows` and write the saved rows there (the loading side of `pivot_rows`)."""
    if tied(model) != ("unembed" not in saved):
        raise ModelLoadError("the saved pivot rows were made for a model whose (un)embedding tying differs from this "
                             "base model's; retrain the adapter on this base")
    if max(rows) >= model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(max(rows) + 1, mean_resizing=False)
    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        emb[rows] = saved["embed"].to(emb.dtype)
        if "unembed" in saved:
            un = model.get_output_embeddings().weight
            un[rows] = saved["unembed"].to(un.dtype)


def row_gradient_mask(weight: torch.nn.Parameter, rows: list[int]):
    """Make `weight` trainable in `rows` only (a gradient hook zeroes the rest); returns the hook handle."""
    weight.requires_grad_(True)
    keep = torch.zeros(weight.shape[0], 1, dtype=weight.dtype, device=weight.device)
    keep[rows] = 1
    return weight.register_hook(lambda g: g * keep)
