"""Activation patching between harmful and harmless prompts of equal token length.

Patching copies one activation from a *source* run into a *target* run and reads the refusal
logit difference (`interp.causal.dla.refusal_logit_diff`) at the last position. The effect is
normalised, `(patched - target) / (source - target)`: 0 = no change, 1 = the patch alone carries
the source's behaviour over. Both directions are computed: harmful -> harmless (does this head's
output make a harmless run refuse?) and harmless -> harmful (does it make a harmful run comply?).

* Heads: `hook_z` of one head, at every position or at the last one only.
* Residual stream: `resid_pre` of one layer at one post-instruction position (the chat template's
  tokens after the user's message, where the request has been read but no answer written).

A replaced position must mean the same in both runs, so pairs must tokenise to the same length;
`equal_length_pairs` forms such pairs from any harmful and harmless prompts (those sharing the most
tokens first: the same template around a different object). Every head (or layer x position) is patched at once: the target batch is replicated, one
replica per head, each replica patching its own head.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

import torch
from jaxtyping import Float
from torch import Tensor

from interp.capture import resolve_positions
from interp.errors import InputError
from interp.hooks import hooked
from interp.model import ChatModel, EncodedBatch, texts as _texts
from interp.prompts import PromptSet
from interp.causal.dla import refusal_logit_diff
from interp.causal.heads import Z_HOOK, all_heads, row_masks, z_replace_hook

HEAD_POSITIONS = ("all", "last")


def equal_length_pairs(model: ChatModel, harmful, harmless, n: int = 16, seed: int = 0,
                       min_pairs: int = 2) -> tuple[PromptSet, PromptSet]:
    """Up to `n` harmful/harmless pairs of equal token length after chat formatting, taken from the
    given prompts without reuse: within each length, the pairs that share the most tokens at the
    same positions first (the same phrasing around a different object, "make a bomb" / "make a
    cake", is what patching wants), ties broken by a seeded shuffle. Fewer than `min_pairs` is an
    InputError that says what to pass instead."""
    if n < 1:
        raise InputError(f"n must be at least 1, got {n}")
    H, L = list(harmful), list(harmless)
    if not H or not L:
        raise InputError("equal_length_pairs needs harmful and harmless prompts")
    ids_h = [model.encode([p]).tokens[0].tolist() for p in H]
    ids_l = [model.encode([p]).tokens[0].tolist() for p in L]
    rng = random.Random(seed)
    cands = []
    for i, a in enumerate(ids_h):
        for j, b in enumerate(ids_l):
            if len(a) == len(b):
                cands.append((-sum(x == y for x, y in zip(a, b)), rng.random(), i, j))
    cands.sort()
    used_h, used_l, pairs = set(), set(), []
    for _, _, i, j in cands:
        if i in used_h or j in used_l:
            continue
        used_h.add(i), used_l.add(j)
        pairs.append((i, j))
        if len(pairs) == n:
            break
    if len(pairs) < min_pairs:
        raise InputError(f"only {len(pairs)} harmful/harmless prompt pairs of equal token length could be formed for "
                         f"{model.name} from {len(H)} harmful and {len(L)} harmless prompts; activation patching needs "
                         f"at least {min_pairs}. Pass more prompts, or pairs written to the same length")
    src = "interp.causal.patching.equal_length_pairs"

    return (PromptSet(f"pairs-s{seed}:harmful", tuple(H[i] for i, _ in pairs), src),
            PromptSet(f"pairs-s{seed}:harmless", tuple(L[j] for _, j in pairs), src))


def check_pairs(model: ChatModel, source, target) -> tuple[EncodedBatch, EncodedBatch]:
    """Encode two prompt lists whose i-th prompts pair up; fail clearly unless every pair has the
    same token length (after chat formatting), so positions mean the same in both runs."""
    a, b = _texts(source), _texts(target)
    if not a or not b:
        raise InputError("patching needs non-empty source and target prompt sets")
    if len(a) != len(b):
        raise InputError(f"patching pairs prompt i of the source with prompt i of the target, but the sets have "
                         f"{len(a)} and {len(b)} prompts; pass sets of equal size (e.g. equal_length_pairs(model, harmful, harmless, n))")
    ea, eb = model.encode(a), model.encode(b)
    bad = [(i, x, y) for i, (x, y) in enumerate(zip(ea.lengths, eb.lengths)) if x != y]
    if bad:
        i, x, y = bad[0]
        raise InputError(f"{len(bad)} of {len(a)} prompt pairs differ in token length (pair {i}: {x} vs {y} tokens: "
                         f"{a[i]!r} / {b[i]!r}); patching needs equal lengths. Align them: use "
                         "interp.causal.patching.equal_length_pairs(model, harmful, harmless, n) "
                         "or reword each pair to the same number of tokens")
    return ea, eb


def _normalise(patched: Tensor, source: float, target: float, min_gap: float) -> Tensor:
    # a model that barely separates the sets has no gap to normalise by: a gap below min_gap counts
    # as min_gap, so tiny differences stay tiny instead of being blown up
    gap = source - target
    gap = gap if abs(gap) >= min_gap else (min_gap if gap >= 0 else -min_gap)
    return (patched - target) / gap


@torch.no_grad()
def _run_diff(model: ChatModel, b: EncodedBatch, hooks=()) -> Tensor:
    with hooked(model, list(hooks)):
        logits = model.bridge(b.tokens, attention_mask=b.attention_mask)[:, -1]
    return refusal_logit_diff(model, logits).cpu()


@torch.no_grad()
def _cache(model: ChatModel, b: EncodedBatch, names: list[str]) -> dict[str, Tensor]:
    store: dict[str, Tensor] = {}

    def grab(name):
        def hook(act, hook):
            store[name] = act.detach().clone()
        return hook

    model.bridge.run_with_hooks(b.tokens, attention_mask=b.attention_mask, fwd_hooks=[(n, grab(n)) for n in names])
    return store


def _replicate(b: EncodedBatch, k: int) -> EncodedBatch:
    return replace(b, tokens=b.tokens.repeat(k, 1), attention_mask=b.attention_mask.repeat(k, 1))


@torch.no_grad()
def patch_heads(model: ChatModel, source, target, positions: str = "all", min_gap: float = 1.0,
                max_rows: int = 512) -> Float[Tensor, "layer head"]:
    """Normalised effect of patching each head's `hook_z` from the source run into the target run
    (at every position, or at the last position only)."""
    if positions not in HEAD_POSITIONS:
        raise InputError(f"head positions must be one of {HEAD_POSITIONS}, got {positions!r}")
    bs, bt = check_pairs(model, source, target)
    n, P = bt.tokens.shape
    z_src = _cache(model, bs, [Z_HOOK.format(l=l) for l in range(model.n_layers)])
    s_diff, t_diff = float(_run_diff(model, bs).mean()), float(_run_diff(model, bt).mean())
    heads = all_heads(model)
    per = max(1, max_rows // n)
    out = torch.empty(len(heads))
    for h0 in range(0, len(heads), per):
        chunk = [[h] for h in heads[h0:h0 + per]]
        k = len(chunk)
        mask = row_masks(model, chunk, n).to(model.device)  # [rows, layer, head]
        hooks = []
        for l in range(model.n_layers):
            if mask[:, l].any():
                m = mask[:, l]
                if positions == "last":  # rows x positions x heads: only the last position is patched
                    m = m[:, None, :] & (torch.arange(P, device=model.device) == P - 1)[None, :, None]
                hooks.append((Z_HOOK.format(l=l), z_replace_hook(m, z_src[Z_HOOK.format(l=l)].repeat(k, 1, 1, 1))))
        diff = _run_diff(model, _replicate(bt, k), hooks)
        out[h0:h0 + k] = diff.view(k, n).mean(1)
    return _normalise(out, s_diff, t_diff, min_gap).view(model.n_layers, model.n_heads)


@torch.no_grad()
def patch_resid(model: ChatModel, source, target, min_gap: float = 1.0,
                max_rows: int = 512) -> tuple[Float[Tensor, "layer pos"], list[str]]:
    """Normalised effect of patching `resid_pre` of each layer at each post-instruction position
    from the source run into the target run; also the position labels (template tokens)."""
    bs, bt = check_pairs(model, source, target)
    n = bt.tokens.shape[0]
    pos_idx, _ = resolve_positions(model, bt, "post_instruction")  # [n, n_pos] padded indices, same in both
    n_pos = pos_idx.shape[1]
    names = [f"blocks.{l}.hook_resid_pre" for l in range(model.n_layers)]
    src = _cache(model, bs, names)
    s_diff, t_diff = float(_run_diff(model, bs).mean()), float(_run_diff(model, bt).mean())
    cells = [(l, p) for l in range(model.n_layers) for p in range(n_pos)]
    per = max(1, max_rows // n)
    out = torch.empty(len(cells))
    rows_n = torch.arange(n, device=model.device)
    for c0 in range(0, len(cells), per):
        chunk = cells[c0:c0 + per]
        k = len(chunk)
        hooks = []
        for l in sorted({l for l, _ in chunk}):
            rows, cols = [], []
            for j, (cl, p) in enumerate(chunk):
                if cl == l:
                    rows.append(j * n + rows_n)
                    cols.append(pos_idx[:, p].to(model.device))
            rows, cols = torch.cat(rows), torch.cat(cols)
            src_l = src[names[l]].repeat(k, 1, 1)

            def hook(act, hook, rows=rows, cols=cols, src_l=src_l):
                act = act.clone()
                act[rows, cols] = src_l[rows, cols].to(act.dtype)
                return act

            hooks.append((names[l], hook))
        diff = _run_diff(model, _replicate(bt, k), hooks)
        out[c0:c0 + k] = diff.view(k, n).mean(1)
    labels = model.to_str_tokens(bt.tokens[0, pos_idx[0]].tolist())
    return _normalise(out, s_diff, t_diff, min_gap).view(model.n_layers, n_pos), labels


@dataclass(frozen=True)
class Patching:
    """Both directions of head and residual patching between paired harmful/harmless prompts."""

    heads: dict[str, Float[Tensor, "layer head"]]  # "harmful->harmless", "harmless->harmful"
    resid: dict[str, Float[Tensor, "layer pos"]]
    positions: list[str]  # template tokens of the post-instruction positions
    logit_diff: dict[str, float]  # mean refusal logit difference of the unpatched runs
    head_positions: str
    pairs: dict = field(default_factory=dict)

    @property
    def head_effect(self) -> Float[Tensor, "layer head"]:
        """One number per head: the mean of the two directions' effects."""
        return (self.heads["harmful->harmless"] + self.heads["harmless->harmful"]) / 2

    def to_dict(self) -> dict:
        return {"head_positions": self.head_positions, "logit_diff": self.logit_diff, "positions": self.positions,
                "heads": {k: v.tolist() for k, v in self.heads.items()},
                "resid_pre": {k: v.tolist() for k, v in self.resid.items()}, "pairs": self.pairs}


def activation_patching(model: ChatModel, harmful, harmless, head_positions: str = "all", min_gap: float = 1.0,
                        resid: bool = True) -> Patching:
    """Patch every head (and every layer x post-instruction position of `resid_pre`) both ways."""
    check_pairs(model, harmful, harmless)
    with torch.no_grad():
        diffs = {"harmful": float(_run_diff(model, model.encode(_texts(harmful))).mean()),
                 "harmless": float(_run_diff(model, model.encode(_texts(harmless))).mean())}
    heads = {"harmful->harmless": patch_heads(model, harmful, harmless, head_positions, min_gap),
             "harmless->harmful": patch_heads(model, harmless, harmful, head_positions, min_gap)}
    res, labels = {}, []
    if resid:
        res["harmful->harmless"], labels = patch_resid(model, harmful, harmless, min_gap)
        res["harmless->harmful"], _ = patch_resid(model, harmless, harmful, min_gap)
    pairs = {"n": len(_texts(harmful))}
    if isinstance(harmful, PromptSet):
        pairs.update(harmful=harmful.describe(), harmless=harmless.describe())
    return Patching(heads, res, labels, diffs, head_positions, pairs)
