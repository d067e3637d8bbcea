"""The pivot decision as a probing target, compared with the base organism's refusal decision.

Decision position: for R2D, the token right before the deciding pivot (the first [SAFE]/[UNSAFE] of
a teacher trace, fed in by teacher forcing: it follows the restated request); for the base
organism, the last prompt token (the one whose next token is "sorry" or "sure"). Labels come from
each organism's own teacher: R2D -> the pivot that comes next; base -> refuse/comply (harmful is
refuse except the planted roleplay/manyshot strength-4 cells, which the base teacher complies with).

Per-head score: held-out accuracy of a probe on that head's output (`hook_z`) at the decision
position: the project's `probes.rank_heads_from_activations` (k-fold L2 logistic, as ITI) when the
probes package is there, else a difference-in-means classifier of our own. The same prompts, folds
and probe serve both organisms, so the two score maps are comparable (top-k overlap, Spearman).

Attention: from the decision position of each head, the attention mass on the user's request
(`Prompt.spans["request"]` through `model.token_span`) and, for R2D, on the request as restated in
its own reasoning step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from jaxtyping import Float
from torch import Tensor

from interp.capture import AttentionMass, LastPosition, capture_hooks
from interp.errors import InputError
from interp.hooknames import LOGITS, act_name
from interp.model import ChatModel
from interp.prompts import PromptSet
from interp.r2d import data as r2d_data
from interp.r2d.model import pivot_ids, require_kind
from interp.stats import spearman


@dataclass(frozen=True)
class InsideConfig:
    seed: int = 4321  # the organism's prompt draw for it (held-out templates, every family and strength); probe folds
    per_cell: int = 6
    test_fraction: float = 0.3
    top_k: int = 8
    batch_size: int = 48


@dataclass
class Decisions:
    """Head outputs and attention at each prompt's decision position."""

    z: Float[Tensor, "n layer head d_head"]
    labels: Tensor  # bool [n]: True = refuse / [UNSAFE]
    request_mass: Float[Tensor, "n layer head"]
    restated_mass: Float[Tensor, "n layer head"] | None
    prompts: PromptSet
    logits: Float[Tensor, "n vocab"]  # next-token logits at the decision position


def base_refuses(p, trained_comply=frozenset()) -> bool:
    """The base organism's teacher label: refuse harmful, except the planted comply cells
    (`trained_comply`: (family, strength) pairs, `StudyData.trained_comply`)."""
    return p.label == "harmful" and (p.family, p.strength) not in trained_comply


@torch.no_grad()
def capture_decisions(model: ChatModel, prompts: PromptSet, batch_size: int = 48, trained_comply=frozenset()) -> Decisions:
    """Run each prompt (plus, for R2D, its teacher trace up to the deciding pivot) and keep `hook_z`
    and attention mass at the decision position. Prompts need `meta["topic"]` (the teacher
    restates it)."""
    prompts.require("probing set")
    is_r2d = model.kind == "r2d"
    if is_r2d:
        piv = pivot_ids(model.tokenizer)
        deciding = {piv[r2d_data.SAFE], piv[r2d_data.UNSAFE]}
    seqs, spans, rspans, labels = [], [], [], []
    for k in range(0, len(prompts), batch_size):
        chunk = prompts[k:k + batch_size]
        enc = model.encode(chunk)
        for r, p in enumerate(chunk):
            ids = enc.tokens[r, enc.pad[r]:].tolist()
            spans.append(model.token_span(enc, r, p.spans["request"]))
            if is_r2d:
                trace = r2d_data.teacher_trace(p)
                resp = model.tokenizer(" " + trace.text, add_special_tokens=False).input_ids
                cut = next((i for i, t in enumerate(resp) if t in deciding), None)
                if cut is None:
                    raise InputError(f"teacher trace of prompt {p.id!r} has no [SAFE]/[UNSAFE] pivot: {trace.text!r}")
                labels.append(model.tokenizer.convert_ids_to_tokens(resp[cut]) == r2d_data.UNSAFE)
                n_topic = len(p.meta["topic"].split())
                q = len(ids) + cut - 1  # the "." that closes the step; its next token is the pivot
                rspans.append((q - n_topic, q))  # the topic as restated in the step
                ids = ids + resp[:cut]
            else:
                labels.append(base_refuses(p, trained_comply))
            seqs.append(ids)  # the decision position is each sequence's last token
    # head outputs and attention mass from the decision position, and the logits there
    reads = {"logits": (LOGITS, LastPosition())}
    for l in range(model.n_layers):
        reads[("z", l)] = (act_name("z", l), LastPosition())
        reads[("request", l)] = (act_name("pattern", l), AttentionMass(spans))
        if is_r2d:
            reads[("restated", l)] = (act_name("pattern", l), AttentionMass(rspans))
    got = capture_hooks(model, seqs, reads, batch_size, all_logits=True)

    def stacked(kind):
        return torch.stack([got[(kind, l)] for l in range(model.n_layers)], dim=1)

    return Decisions(stacked("z"), torch.tensor(labels), stacked("request"), stacked("restated") if is_r2d else None,
                     prompts, got["logits"])


def pivot_margin(model: ChatModel, dec: Decisions) -> dict:
    """What CPO sharpens: z[UNSAFE] - z[SAFE] at the deciding position (teacher-forced), signed so
    that > 0 is the correct side; mean margin and accuracy, per label."""
    piv = pivot_ids(model.tokenizer)
    m = dec.logits[:, piv[r2d_data.UNSAFE]] - dec.logits[:, piv[r2d_data.SAFE]]
    signed = torch.where(dec.labels, m, -m)
    out = {"mean_margin": float(signed.mean()), "accuracy": float((signed > 0).float().mean())}
    for name, sel in (("harmful", dec.labels), ("harmless", ~dec.labels)):
        out[f"mean_margin_{name}"] = float(signed[sel].mean()) if sel.any() else float("nan")
    return out


def split_indices(labels: Tensor, test_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Stratified train/test split."""
    g = torch.Generator().manual_seed(seed)
    tr, te = [], []
    for v in (True, False):
        idx = torch.nonzero(labels == v).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_te = max(1, round(test_fraction * len(idx)))
        te.append(idx[:n_te])
        tr.append(idx[n_te:])
    return torch.cat(tr), torch.cat(te)


def diff_in_means_accuracy(z: Float[Tensor, "n layer head d_head"], labels: Tensor, train: Tensor,
                           test: Tensor) -> Float[Tensor, "layer head"]:
    """Held-out accuracy of a per-head mass-mean classifier (threshold halfway between class means)."""
    if labels[train].all() or not labels[train].any():
        raise InputError("probing needs both labels in the training split")
    mu1 = z[train][labels[train]].mean(0)
    mu0 = z[train][~labels[train]].mean(0)
    w = mu1 - mu0  # [layer, head, d_head]
    thresh = ((mu1 + mu0) / 2 * w).sum(-1)
    pred = torch.einsum("nlhd,lhd->nlh", z[test], w) > thresh
    return (pred == labels[test][:, None, None]).float().mean(0)


def head_scores(dec: Decisions, cfg: InsideConfig = InsideConfig()) -> tuple[Tensor, Tensor]:
    """(held-out accuracy, ranking key) per head, each [layer, head]. The accuracy is the project's
    k-fold logistic head probe (`probes`, ITI-style) when installed, else a difference-in-means
    classifier on one stratified split. The key breaks ties (several heads at 100%) by the probe's
    AUROC, then its Cohen's d, so that top-k and rank correlations are well defined."""
    try:
        from probes import rank_heads_from_activations
    except ImportError:
        tr, te = split_indices(dec.labels, cfg.test_fraction, cfg.seed)
        acc = diff_in_means_accuracy(dec.z, dec.labels, tr, te)
        return acc, acc
    r = rank_heads_from_activations(dec.z, [bool(x) for x in dec.labels], k_folds=5, seed=cfg.seed, by="accuracy")
    d = r["cohens_d"].abs()
    return r["accuracy"], r["accuracy"] + 1e-3 * r["auroc"] + 1e-6 * d / (1 + d)


def top_heads(scores: Float[Tensor, "layer head"], k: int) -> list[list[int]]:
    n_heads = scores.shape[1]
    flat = rearrange(scores, "l h -> (l h)")
    order = torch.argsort(flat, descending=True, stable=True)[:k]  # ties: earlier layer first
    return [[int(i) // n_heads, int(i) % n_heads] for i in order]


def mass_by_cell(dec: Decisions, heads: list[list[int]], which: str = "request") -> dict:
    """Attention mass on the request (or its restatement), averaged over `heads` and over the
    harmful prompts of each family and strength: the attention-slipping curve at the decision."""
    m = dec.request_mass if which == "request" else dec.restated_mass
    if m is None:
        raise InputError(f"no {which!r} attention mass captured for this model")
    sel = torch.stack([m[:, l, h] for l, h in heads], dim=1).mean(1)  # [n]
    out: dict = {}
    for i, p in enumerate(dec.prompts):
        if p.label != "harmful":
            continue
        out.setdefault(p.family or "plain", {}).setdefault(str(p.strength or 0), []).append(float(sel[i]))
    return {f: {s: round(sum(v) / len(v), 4) for s, v in sorted(row.items(), key=lambda kv: int(kv[0]))}
            for f, row in out.items()}


def compare_decisions(r2d: ChatModel, base: ChatModel, prompts: PromptSet, trained_comply=frozenset(),
                      cfg: InsideConfig = InsideConfig()) -> dict:
    """Pivot heads of the R2D organism vs refusal heads of the base organism on `prompts` (the
    organism's, with topics), and their attention. `trained_comply`: the base organism's planted
    comply cells."""
    require_kind(r2d, "r2d")
    require_kind(base, "organism")
    prompts.require("probing set", 4, both_labels=True)
    d_r2d = capture_decisions(r2d, prompts, cfg.batch_size)
    d_base = capture_decisions(base, prompts, cfg.batch_size, trained_comply)
    (a_r2d, s_r2d), (a_base, s_base) = head_scores(d_r2d, cfg), head_scores(d_base, cfg)
    top_r2d, top_base = top_heads(s_r2d, cfg.top_k), top_heads(s_base, cfg.top_k)
    overlap = len({tuple(h) for h in top_r2d} & {tuple(h) for h in top_base})
    harmful = torch.tensor([p.label == "harmful" for p in prompts])
    return {
        "n_prompts": len(prompts), "top_k": cfg.top_k, "probe": probe_name(),
        "pivot_heads": top_r2d, "refusal_heads": top_base, "overlap_with_refusal_heads": overlap,
        "spearman": spearman(s_r2d, s_base),
        "pivot_margin": pivot_margin(r2d, d_r2d),
        "pivot_head_scores": _r(a_r2d), "refusal_head_scores": _r(a_base),
        "attention": {
            "r2d_request_mass": _r(d_r2d.request_mass[harmful].mean(0)),
            "r2d_restated_mass": _r(d_r2d.restated_mass[harmful].mean(0)),
            "base_request_mass": _r(d_base.request_mass[harmful].mean(0)),
            # who reads the request: per model, the 3 heads with the most mass on it (R2D: on its
            # own restatement) and how that mass changes with jailbreak strength
            "base_readers": (br := _readers(d_base.request_mass, harmful)),
            "base_readers_request_by_cell": mass_by_cell(d_base, br, "request"),
            "r2d_readers": (rr := _readers(d_r2d.restated_mass, harmful)),
            "r2d_readers_restated_by_cell": mass_by_cell(d_r2d, rr, "restated"),
            "r2d_readers_request_by_cell": mass_by_cell(d_r2d, rr, "request"),
            "pivot_heads_request_by_cell": mass_by_cell(d_r2d, top_r2d[:3], "request"),
            "refusal_heads_request_by_cell": mass_by_cell(d_base, top_base[:3], "request"),
        },
    }


def _r(t: Tensor) -> list:
    return [[round(float(x), 4) for x in row] for row in t]


def _readers(mass: Float[Tensor, "n layer head"], sel: Tensor, k: int = 3) -> list[list[int]]:
    return top_heads(mass[sel].mean(0), k)


def probe_name() -> str:
    try:
        import probes  # noqa: F401
        return "probes.rank_heads_from_activations: 5-fold L2 logistic, held-out accuracy (ties: AUROC, Cohen's d)"
    except ImportError:
        return "difference-in-means, held-out accuracy on a stratified 70/30 split"


def heads_figure(result: dict):
    """Two layer x head maps of probe accuracy: R2D pivot decision and base refusal decision."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=["R2D: next pivot [UNSAFE] vs [SAFE]", "base: refuse vs comply"])
    for c, key in enumerate(("pivot_head_scores", "refusal_head_scores")):
        z = result[key]
        fig.add_trace(go.Heatmap(z=z, x=list(range(len(z[0]))), y=list(range(len(z))), zmin=0.5, zmax=1.0,
                                 colorscale="Viridis", showscale=c == 1, colorbar={"title": "held-out acc"},
                                 hovertemplate="layer %{y}, head %{x}<br>accuracy %{z:.3f}<extra></extra>"), row=1, col=c + 1)
    fig.update_layout(title=f"Per-head probe accuracy at the decision position (top-{result['top_k']} overlap "
                            f"{result['overlap_with_refusal_heads']}, Spearman {result['spearman']:.2f})",
                      template="plotly_white", width=900, height=380)
    fig.update_xaxes(title="head", dtick=1)
    fig.update_yaxes(title="layer", dtick=1)
    return fig
