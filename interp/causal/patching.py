"""Activation patching between harmful and harmless prompts of equal token length.

Patching copies one activation from a *source* run into a *target* run and reads the refusal
logit difference (`interp.causal.dla.refusal_logit_diff`) at the last position. The effect is
normalised, `(patched - target) / (source - target)`: 0 = no change, 1 = the patch alone carries
the source's behaviour over. Both routes (source -> target) are computed: harmful -> harmless (does this head's
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

from dataclasses import dataclass, field

import einops
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp.capture import AllPositions, capture_hooks, resolve_positions
from interp.errors import InputError
from interp.hooknames import act_name
from interp.model import ChatModel, EncodedBatch, texts
from interp.prompts import PromptSet
from interp.causal.attribution import attribute, progress_bar
from interp.causal.dla import refusal_logit_diff
from interp.causal.heads import Head, all_heads
from interp.batching import rows_per_pass
from interp.intervention import Intervention
from interp.runner import BlockInputs, cache_block_inputs, run
# pairing lives in its own module; both names are part of this module's interface too
from interp.causal.pairs import check_pairs, equal_length_pairs  # noqa: F401

HEAD_POSITIONS = ("all", "last")


def _normalise(patched: Tensor, source: float, target: float, min_gap: float) -> Tensor:
    # a model that barely separates the sets has no gap to normalise by: a gap below min_gap counts
    # as min_gap, so tiny differences stay tiny instead of being blown up
    gap = source - target
    gap = gap if abs(gap) >= min_gap else (min_gap if gap >= 0 else -min_gap)
    return (patched - target) / gap


# pairs per forward+backward pass at most (fewer when the activation budget says so)
GRAD_PAIRS = 4


@dataclass
class _Run:
    """One clean run of a prompt set: its block inputs (to resume from), every head's output at
    every position (to patch from) and its mean refusal logit difference."""

    blocks: BlockInputs
    z: dict[int, Tensor]
    diff: float


@torch.no_grad()
def _clean_run(model: ChatModel, b: EncodedBatch, first: int = 0, z_layers=()) -> _Run:
    blocks = cache_block_inputs(model, b, first)
    # every position of each patched layer's head outputs, read as any activation is (capture)
    z = capture_hooks(model, b, {l: (act_name("z", l), AllPositions()) for l in z_layers}) if z_layers else {}
    return _Run(blocks, z, float(refusal_logit_diff(model, blocks.logits).mean()))


@torch.no_grad()
def _patch_heads_exact(model: ChatModel, src: _Run, tgt: _Run, heads: list[Head], positions: str, max_rows: int,
                       progress: str | None = None) -> Float[Tensor, "head"]:
    """Mean refusal logit difference of the target run with each head's `hook_z` taken from the
    source run (one replica per head, each resumed at its own layer from the target's cached
    block input)."""
    n = tgt.blocks.batch.tokens.shape[0]
    at = slice(None) if positions == "all" else -1  # "last": the values of the last position only
    stack = Intervention.stack([Intervention.patch("z", l, src.z[l][:, at, [h]], positions, heads=[(l, h)])
                                for l, h in heads])
    with progress_bar(len(heads), progress, "head") as bar:
        diff = run(model, tgt.blocks, stack, read=_logit_diff(model), from_layer="auto", max_rows=max_rows,
                   progress=bar.update)
    return diff.view(len(heads), n).mean(1)


@torch.no_grad()
def _patch_resid_exact(model: ChatModel, src: _Run, tgt: _Run, cells: list[tuple[int, int]], pos_idx: Tensor,
                       max_rows: int, progress: str | None = None) -> Float[Tensor, "cell"]:
    """Mean refusal logit difference of the target run with `resid_pre` of layer l at
    post-instruction position p taken from the source run, for each cell (l, p); each replica
    starts at block l from the target's block input, which its patch replaces."""
    n = tgt.blocks.batch.tokens.shape[0]
    out = torch.empty(len(cells))
    rows_n = torch.arange(n, device=model.device)
    groups: dict[int, list[int]] = {}
    for i, (l, _) in enumerate(cells):
        groups.setdefault(l, []).append(i)
    with progress_bar(len(cells), progress, "cell") as bar:
        for l in sorted(groups):  # one layer at a time: the patched block inputs of its cells only
            t_l, s_l = tgt.blocks.resid_at(l), src.blocks.resid_at(l)
            patches = []
            for i in groups[l]:
                resid, cols = t_l.clone(), pos_idx[:, cells[i][1]].to(model.device)
                resid[rows_n, cols] = s_l[rows_n, cols]
                patches.append(Intervention.patch("resid_pre", l, resid))
            diff = run(model, tgt.blocks, Intervention.stack(patches), read=_logit_diff(model), from_layer=l,
                       max_rows=max_rows, progress=bar.update)
            out[torch.tensor(groups[l])] = diff.view(len(patches), n).mean(1)
    return out


def _logit_diff(model: ChatModel):
    return lambda logits: refusal_logit_diff(model, logits).cpu()


@torch.no_grad()
def patch_heads(model: ChatModel, source, target, positions: str = "all", min_gap: float = 1.0,
                max_rows: int = 512) -> Float[Tensor, "layer head"]:
    """Normalised effect of patching each head's `hook_z` from the source run into the target run
    (at every position, or at the last position only), every head measured exactly."""
    if positions not in HEAD_POSITIONS:
        raise InputError(f"head positions must be one of {HEAD_POSITIONS}, got {positions!r}")
    bs, bt = check_pairs(model, source, target)
    src, tgt = _clean_run(model, bs, z_layers=range(model.n_layers)), _clean_run(model, bt)
    out = _patch_heads_exact(model, src, tgt, all_heads(model), positions, max_rows, "head patching")
    return _normalise(out, src.diff, tgt.diff, min_gap).view(model.n_layers, model.n_heads)


@torch.no_grad()
def patch_resid(model: ChatModel, source, target, min_gap: float = 1.0,
                max_rows: int = 512) -> tuple[Float[Tensor, "layer pos"], list[str]]:
    """Normalised effect of patching `resid_pre` of each layer at each post-instruction position
    from the source run into the target run (every cell measured exactly); also the position
    labels (template tokens)."""
    bs, bt = check_pairs(model, source, target)
    pos_idx, _ = resolve_positions(model, bt, "post_instruction")  # [n, n_pos] padded indices, same in both
    src, tgt = _clean_run(model, bs), _clean_run(model, bt)
    cells = [(l, p) for l in range(model.n_layers) for p in range(pos_idx.shape[1])]
    out = _patch_resid_exact(model, src, tgt, cells, pos_idx, max_rows, "residual patching")
    labels = model.to_str_tokens(bt.tokens[0, pos_idx[0]].tolist())
    return _normalise(out, src.diff, tgt.diff, min_gap).view(model.n_layers, pos_idx.shape[1]), labels


# a route names the source run and the target run a patch copies between (the keys of every map)
ROUTES = ("harmful->harmless", "harmless->harmful")


def patching_estimates(model: ChatModel, harmful, harmless, head_positions: str = "all", resid: bool = True,
                       batch_pairs: int = GRAD_PAIRS) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Attribution-patching estimate of every head's and every residual cell's patching effect,
    both routes, from one forward and one backward pass over the pairs: for a target run t
    and source s, patched - target ~ sum over patched positions of dm/da(t) . (a(s) - a(t)), m the
    refusal logit difference. Returns mean changes over the pairs (not yet normalised):
    ({route: [layer, head]}, {route: [layer, post-instruction position]})."""
    if head_positions not in HEAD_POSITIONS:
        raise InputError(f"head positions must be one of {HEAD_POSITIONS}, got {head_positions!r}")
    bh, _ = check_pairs(model, harmful, harmless)
    a, b = texts(harmful), texts(harmless)
    n, L = len(a), model.n_layers
    pos_idx, _ = resolve_positions(model, bh, "post_instruction")
    n_pos = pos_idx.shape[1]
    z_names = [act_name("z", l) for l in range(L)]
    r_names = [act_name("resid_pre", l) for l in range(L)] if resid else []
    heads = {d: torch.zeros(L, model.n_heads) for d in ROUTES}
    cells = {d: torch.zeros(L, n_pos) for d in ROUTES}
    metric = lambda logits: refusal_logit_diff(model, logits)  # noqa: E731
    c0 = 0
    while c0 < n:
        c = min(batch_pairs, n - c0)
        # what the backward pass keeps of 2c rows must fit the activation budget
        c = max(1, min(c, rows_per_pass(model, bh.tokens.shape[1], 2 * c, grad=True) // 2))
        # a pair tokenises to the same length, so harmful row i and harmless row c + i line up position by position
        batch = model.encode(a[c0:c0 + c] + b[c0:c0 + c])
        c0 += c
        P = batch.tokens.shape[1]
        pidx, _ = resolve_positions(model, batch, "post_instruction")
        rows = torch.arange(c)

        def reduce(name, act, g):
            act, g = act.float(), g.float()
            d_h = act[:c] - act[c:]  # harmful minus harmless, per pair and position
            if name in z_names:
                keep = slice(None) if head_positions == "all" else slice(P - 1, P)
                # harmful -> harmless: the harmless run's gradient times (harmful - harmless); and back
                fwd = einops.einsum(g[c:, keep], d_h[:, keep], "b p h e, b p h e -> h")
                back = einops.einsum(g[:c, keep], -d_h[:, keep], "b p h e, b p h e -> h")
            else:
                at = pidx[:c].to(act.device)
                fwd = (g[c:][rows[:, None], at] * d_h[rows[:, None], at]).sum((0, 2))
                back = (g[:c][rows[:, None], at] * -d_h[rows[:, None], at]).sum((0, 2))
            return fwd.cpu(), back.cpu()

        red, _ = attribute(model, batch, z_names + r_names, metric, reduce)
        for l in range(L):
            for r, v in zip(ROUTES, red[z_names[l]]):
                heads[r][l] += v
            if resid:
                for r, v in zip(ROUTES, red[r_names[l]]):
                    cells[r][l] += v
    return {d: v / n for d, v in heads.items()}, ({d: v / n for d, v in cells.items()} if resid else {})


@dataclass(frozen=True)
class Patching:
    """Both routes of head and residual patching between paired harmful/harmless prompts.

    Unless exhaustive, every entry of `heads` / `resid` is the attribution-patching estimate except
    the `top_k` heads (cells) with the largest estimated effect, which are patched exactly
    (`measured`); `estimate` keeps the estimate of every entry."""

    heads: dict[str, Float[Tensor, "layer head"]]  # "harmful->harmless", "harmless->harmful"
    resid: dict[str, Float[Tensor, "layer pos"]]
    positions: list[str]  # template tokens of the post-instruction positions
    logit_diff: dict[str, float]  # mean refusal logit difference of the unpatched runs
    head_positions: str
    pairs: dict = field(default_factory=dict)
    estimate: dict[str, dict[str, Tensor]] = field(default_factory=dict)  # {"heads"|"resid": {route: map}}
    measured: dict[str, Bool[Tensor, "..."]] = field(default_factory=dict)  # {"heads"|"resid": mask of exact entries}
    exhaustive: bool = False

    @property
    def head_effect(self) -> Float[Tensor, "layer head"]:
        """One number per head: the mean of the two routes' effects."""
        return (self.heads["harmful->harmless"] + self.heads["harmless->harmful"]) / 2

    def estimate_quality(self) -> dict:
        """Spearman of the estimate against the exact effects over the exactly measured entries (every
        entry when exhaustive), per kind and route."""
        from interp.stats import spearman

        out = {}
        for kind, exact in (("heads", self.heads), ("resid", self.resid)):
            m = self.measured.get(kind)
            if m is None or kind not in self.estimate:
                continue
            out[kind] = {d: (spearman(self.estimate[kind][d][m], exact[d][m]) if int(m.sum()) >= 3 else float("nan"))
                         for d in exact}
            out[kind]["n_exact"] = int(m.sum())
        return out

    def to_dict(self) -> dict:
        return {"head_positions": self.head_positions, "logit_diff": self.logit_diff, "positions": self.positions,
                "heads": {k: v.tolist() for k, v in self.heads.items()},
                "resid_pre": {k: v.tolist() for k, v in self.resid.items()}, "pairs": self.pairs,
                "exhaustive": self.exhaustive, "measured": {k: v.tolist() for k, v in self.measured.items()},
                "estimate": self.estimate_quality()}


def _top(score: Tensor, k: int) -> list[int]:
    return score.flatten().argsort(descending=True)[:k].tolist()


def activation_patching(model: ChatModel, harmful, harmless, head_positions: str = "all", min_gap: float = 1.0,
                        resid: bool = True, exhaustive: bool = False, top_k: int = 8,
                        max_rows: int = 512) -> Patching:
    """Patch every head (and every layer x post-instruction position of `resid_pre`) both ways.

    Default: estimate every entry by attribution patching (one forward and one backward pass),
    then patch exactly the `top_k` heads and `top_k` cells with the largest estimated effect
    (summed over both routes), each run resumed at its own layer. `exhaustive`: patch every
    head and cell exactly (the estimate is still computed, to report how well it ranks)."""
    if head_positions not in HEAD_POSITIONS:
        raise InputError(f"head positions must be one of {HEAD_POSITIONS}, got {head_positions!r}")
    if not isinstance(top_k, int) or top_k < 1:
        raise InputError(f"top_k must be a positive integer (entries patched exactly), got {top_k!r}")
    bh, bl = check_pairs(model, harmful, harmless)
    L, H = model.n_layers, model.n_heads
    est_h, est_r = patching_estimates(model, harmful, harmless, head_positions, resid)
    heads = all_heads(model)
    pos_idx = resolve_positions(model, bl, "post_instruction")[0] if resid else None
    cells = [(l, p) for l in range(L) for p in range(pos_idx.shape[1])] if resid else []
    # what to measure exactly: the largest estimated effects, summed over both routes (the
    # ranking is the same before and after normalising: one gap per route)
    pick = list(range(len(heads))) if exhaustive else _top(sum(v.abs() for v in est_h.values()), top_k)
    pick_r = list(range(len(cells))) if exhaustive or not resid else _top(sum(v.abs() for v in est_r.values()), top_k)
    first = min([heads[i][0] for i in pick] + [cells[i][0] for i in pick_r])
    z_layers = sorted({heads[i][0] for i in pick})
    # the two clean runs: each is the source of one route and the target of the other
    runs = {"harmful": _clean_run(model, bh, first, z_layers), "harmless": _clean_run(model, bl, first, z_layers)}
    diffs = {k: r.diff for k, r in runs.items()}
    ends = {d: (runs[d.split("->")[0]], runs[d.split("->")[1]]) for d in ROUTES}

    def norm(v, d):
        return _normalise(v, ends[d][0].diff, ends[d][1].diff, min_gap)

    def norm_change(v, d):  # estimates are changes from the target run, not patched values
        return norm(v + ends[d][1].diff, d)

    est_h = {d: norm_change(v, d) for d, v in est_h.items()}
    head_maps, measured = {}, {}
    mask = torch.zeros(L * H, dtype=torch.bool)
    mask[pick] = True
    measured["heads"] = mask.view(L, H)
    for d in ROUTES:
        exact = _patch_heads_exact(model, *ends[d], [heads[i] for i in pick], head_positions, max_rows,
                                   f"head patching {d}")
        m = est_h[d].flatten().clone()
        m[pick] = norm(exact, d)
        head_maps[d] = m.view(L, H)
    res, labels, estimate = {}, [], {"heads": est_h}
    if resid:
        n_pos = pos_idx.shape[1]
        est_r = {d: norm_change(v, d) for d, v in est_r.items()}
        estimate["resid"] = est_r
        pick = pick_r
        mask = torch.zeros(len(cells), dtype=torch.bool)
        mask[pick] = True
        measured["resid"] = mask.view(L, n_pos)
        for d in ROUTES:
            exact = _patch_resid_exact(model, *ends[d], [cells[i] for i in pick], pos_idx, max_rows,
                                       f"residual patching {d}")
            m = est_r[d].flatten().clone()
            m[pick] = norm(exact, d)
            res[d] = m.view(L, n_pos)
        labels = model.to_str_tokens(bl.tokens[0, pos_idx[0]].tolist())
    pairs = {"n": len(texts(harmful))}
    if isinstance(harmful, PromptSet):
        pairs.update(harmful=harmful.describe(), harmless=harmless.describe())
    return Patching(head_maps, res, labels, diffs, head_positions, pairs, estimate, measured, exhaustive)
