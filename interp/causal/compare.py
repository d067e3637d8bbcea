"""Putting the methods side by side, and choosing the heads to steer.

Each method gives one number per head:

* ``ablation``: change of the mean refusal score when the head alone is mean-ablated, in the
  direction the search found (positive = the ablation moves behaviour the flipping way);
* ``patching``: normalised activation-patching effect, mean of both directions;
* ``dla``: direct logit attribution, mean on harmful minus mean on harmless prompts;
* ``probe``: held-out probe accuracy from a `probes` head ranking, when one is given.

`Comparison` holds the maps, a per-head table, Spearman rank correlations between the methods
(of absolute effects: a head matters whichever sign it writes) and a side-by-side figure.
`recommend_heads` picks at most K heads, from the greedy ablation search, and says whether they
are recommended with confidence: the set must flip judged behaviour, move the refusal score by a
real amount, and beat every one of many random head sets of the same size (the null).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InputError
from interp.model import ChatModel
from interp.prompts import PromptSet
from interp.causal.ablate import head_reference
from interp.causal.runner import ablation_scores
from interp.causal.search import FLIPS, HeadSearch, SearchConfig, search_heads
from interp.causal.heads import Head, all_heads
from interp.causal.specificity import SpecificityConfig, off_target, specificity
from interp.stats import spearman  # in interp.stats: search, patching and the probes use it without importing this module


def probe_map(model: ChatModel, ranking, score: str | None = None) -> tuple[Float[Tensor, "layer head"], str]:
    """Per-head probe score from a `probes` HeadRanking (layers it did not probe are NaN)."""
    scores = getattr(ranking, "scores", None)
    if not isinstance(scores, dict) or not scores:
        raise InputError("ranking has no scores: pass a probes HeadRanking (from probes.rank_heads)")
    key = score or next((k for k in ("accuracy", "auroc") if k in scores), None) or next(iter(scores))
    if key not in scores:
        raise InputError(f"ranking has no score {key!r}; it has {sorted(scores)}")
    try:
        view = ranking[key]  # [probed layers, head] at each head's best position
    except Exception:
        view = scores[key]
    view = torch.as_tensor(view, dtype=torch.float32)
    while view.ndim > 2:
        view = view.max(0).values
    layers = list(getattr(ranking, "layers", range(view.shape[0])))
    out = torch.full((model.n_layers, model.n_heads), float("nan"))
    for i, l in enumerate(layers):
        out[l] = view[i]
    return out, key


@dataclass(frozen=True)
class Comparison:
    maps: dict[str, Float[Tensor, "layer head"]]
    correlations: dict[str, float]  # "a~b": Spearman of |score| between methods a and b over heads
    notes: dict[str, str] = field(default_factory=dict)
    top_overlap: dict[str, float] = field(default_factory=dict)  # "a~b": shared share of the top-k heads
    k: int = 4

    def table(self) -> list[dict]:
        """One row per head (layer-major): every method's score and its rank (1 = strongest)."""
        first = next(iter(self.maps.values()))
        L, H = first.shape
        ranks = {}
        for name, m in self.maps.items():
            mag = m.abs().nan_to_num(-1.0).flatten()
            order = mag.argsort(descending=True)
            r = torch.empty_like(order)
            r[order] = torch.arange(1, len(order) + 1)
            ranks[name] = r.view(L, H)
        rows = []
        for l in range(L):
            for h in range(H):
                row = {"layer": l, "head": h}
                for name, m in self.maps.items():
                    v = float(m[l, h])
                    row[name] = None if math.isnan(v) else round(v, 5)
                    row[f"{name}_rank"] = int(ranks[name][l, h])
                rows.append(row)
        return rows

    def figure(self, title: str = "Which heads matter, by method"):
        """Side-by-side layer x head heatmaps, one per method, every number on hover."""
        from plotly.subplots import make_subplots

        from interp.plotting import layer_head_heatmap

        names = list(self.maps)
        fig = make_subplots(rows=1, cols=len(names), subplot_titles=[self.notes.get(n, n) for n in names],
                            horizontal_spacing=0.09)
        for i, name in enumerate(names, 1):
            m = self.maps[name]
            signed = bool((m.nan_to_num(0) < 0).any())
            zmax = float(m.abs().nan_to_num(0).max()) or 1.0
            tr = layer_head_heatmap(m.tolist(), name, colorbar=name, zmid=0.0 if signed else None).data[0]
            right = fig.layout["xaxis" if i == 1 else f"xaxis{i}"].domain[1]  # colour bar beside its own panel
            tr.update(colorbar={"title": "", "x": right + 0.005, "xanchor": "left", "len": 0.8, "thickness": 10},
                      zmin=-zmax if signed else None, zmax=zmax if signed else None)
            fig.add_trace(tr, row=1, col=i)
            fig.update_xaxes(title_text="head", dtick=1, row=1, col=i)
            fig.update_yaxes(title_text="layer" if i == 1 else None, dtick=1, row=1, col=i)
        corr = ", ".join(f"{k} {v:+.2f}" for k, v in self.correlations.items() if not math.isnan(v))
        fig.update_layout(title=f"{title}<br><sup>Spearman (|effect|): {corr or 'n/a'}</sup>", template="plotly_white",
                          width=max(700, 330 * len(names)), height=420)
        return fig

    def to_dict(self) -> dict:
        return {"correlations": self.correlations, "top_overlap": self.top_overlap, "top_k": self.k, "notes": self.notes,
                "maps": {k: [[None if math.isnan(x) else x for x in row] for row in v.tolist()] for k, v in self.maps.items()}}


def _top(m: Tensor, k: int) -> set[int]:
    return set(m.nan_to_num(-float("inf")).flatten().argsort(descending=True)[:k].tolist())


def compare_maps(maps: dict[str, Tensor], notes: dict[str, str] | None = None, k: int = 4) -> Comparison:
    """Spearman correlations between every pair of per-head maps (absolute values for causal
    effects; probe scores as they are), and how many of each pair's top-k heads agree. Over all
    heads, the many near-zero ones add rank noise; the top-k overlap looks only at the heads that
    matter."""
    maps = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in maps.items() if v is not None}
    if len(maps) < 2:
        raise InputError("comparison needs at least two per-head maps")
    shapes = {tuple(v.shape) for v in maps.values()}
    if len(shapes) != 1:
        raise InputError(f"per-head maps have different shapes {sorted(shapes)}; they must all be [layer, head]")
    names = list(maps)
    mag = {k: (v if k == "probe" else v.abs()) for k, v in maps.items()}
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    corr = {f"{a}~{b}": spearman(mag[a], mag[b]) for a, b in pairs}
    overlap = {f"{a}~{b}": len(_top(mag[a], k) & _top(mag[b], k)) / k for a, b in pairs}
    return Comparison(maps, corr, dict(notes or {}), overlap, k)


def compare_methods(model: ChatModel, search: HeadSearch | None = None, patching=None, dla=None, ranking=None,
                    flip: str | None = None, k: int = 4) -> Comparison:
    """The comparison table and figure from whichever results are at hand."""
    maps, notes = {}, {}
    if search is not None:
        d = flip or search.best.flip
        maps["ablation"] = search.single[d]
        m = search.measured.get(d)
        # unless exhaustive, most heads carry the attribution estimate and only the top few an exact value
        part = "" if m is None or bool(m.all()) else f"; estimated, {int(m.sum())} exact"
        notes["ablation"] = f"ablation ({d}{part})"
    if patching is not None:
        maps["patching"] = patching.head_effect
        m = patching.measured.get("heads")
        notes["patching"] = "patching" if m is None or bool(m.all()) else f"patching (estimated, {int(m.sum())} exact)"
    if dla is not None:
        maps["dla"] = dla.head_difference() if dla.labels else dla.head_map()
        notes["dla"] = "DLA (harmful - harmless)" if dla.labels else "DLA"
    if ranking is not None:
        maps["probe"], key = probe_map(model, ranking)
        notes["probe"] = f"probe {key}"
    return compare_maps(maps, notes, k)


# ------------------------------------------------------------------ recommendation
@dataclass(frozen=True)
class RecommendConfig:
    """When a head set counts as recommended with confidence.

    The set's ablation must (1) flip judged behaviour (the search's target, 50 points of refusal
    rate), (2) move the mean refusal score by at least `min_score_effect` log-odds, and (3) move
    it more than every one of `n_null` random head sets of the same size drawn from the other
    heads (a permutation-style null: with 20 draws, beating all is p < 0.05)."""

    k: int = 4
    n_null: int = 20
    min_score_effect: float = 1.0
    seed: int = 0
    # the set must also be specific: not "disruptive" (interp.causal.specificity); None skips the check
    specificity: SpecificityConfig | None = SpecificityConfig()

    def __post_init__(self) -> None:
        if not isinstance(self.k, int) or not 1 <= self.k <= 4:
            raise InputError(f"k must be an integer from 1 to 4 (heads to steer), got {self.k!r}")
        if self.n_null < 1:
            raise InputError(f"n_null must be at least 1, got {self.n_null}")


@dataclass(frozen=True)
class Recommendation:
    heads: list[Head]  # recommended with confidence (empty when none is)
    candidates: list[Head]  # the search's best set, whether or not it passed
    confident: bool
    flip: str  # "refusal" or "compliance": what the heads' ablation removes (interp.causal.search.FLIPS)
    reasons: list[str]  # why (not) confident, in words
    evidence: dict[Head, dict]  # per candidate head: every method's number
    set_effect: float  # wanted-way change of the mean refusal score (log-odds) under the set's ablation
    null: dict  # the random-set effects' summary
    search: HeadSearch | None = None
    specificity: dict = field(default_factory=dict)  # KL on off-target prompts against random sets (specificity())

    @property
    def disruptive(self) -> bool:
        return bool(self.specificity.get("disruptive"))

    def to_dict(self) -> dict:
        return {"heads": [list(h) for h in self.heads], "candidates": [list(h) for h in self.candidates],
                "confident": self.confident, "direction": self.flip, "reasons": self.reasons,
                "label": "disruptive" if self.disruptive else "refusal heads" if self.confident else "unconfirmed",
                "method": self.search.cfg.method if self.search is not None else None,
                "set_effect": self.set_effect, "null": self.null, "specificity": self.specificity,
                "evidence": [{"head": list(h), **ev} for h, ev in self.evidence.items()]}


def _rank_of(m: Tensor, h: Head) -> int:
    mag = m.abs().nan_to_num(-1.0).flatten()
    return int((mag > mag[h[0] * m.shape[1] + h[1]]).sum()) + 1


def recommend_heads(model: ChatModel, harmful: PromptSet, harmless: PromptSet, k: int = 4,
                    search: HeadSearch | None = None, comparison: Comparison | None = None,
                    cfg: RecommendConfig | None = None, search_cfg: SearchConfig | None = None,
                    held_out: PromptSet | None = None) -> Recommendation:
    """Choose at most `k` heads to steer, with the evidence for each, and say whether the choice is
    confident (see RecommendConfig). `search` and `comparison` reuse results already computed.
    `held_out`: prompts the flip should leave alone (harmless ones for "refusal"), for the
    specificity check; default: the search's own prompts of that label."""
    cfg = cfg or RecommendConfig(k=k)
    scfg = search_cfg or (search.cfg if search is not None else SearchConfig(max_heads=cfg.k))
    if search is None:
        search = search_heads(model, harmful, harmless, scfg)
    best = search.best
    label, sign = FLIPS[best.flip]
    prompts = harmful if label == "harmful" else harmless
    ref = search.references[best.flip]
    cand = best.heads[:cfg.k]
    reasons: list[str] = []
    if not cand:
        reasons.append("no head moved behaviour at all in either direction")
        return Recommendation([], [], False, best.flip, reasons, {}, 0.0, {}, search)
    # one batched pass: unablated, the set, the set minus each head, and the random null sets
    rng = random.Random(cfg.seed)
    others = [h for h in all_heads(model) if h not in cand]
    n_draw = min(len(cand), len(others))
    null_sets = [rng.sample(others, n_draw) for _ in range(cfg.n_null)] if n_draw else []
    drop_one = [[x for x in cand if x != h] for h in cand]
    rows = [[], cand] + drop_one + null_sets
    s = ablation_scores(model, prompts, rows, scfg.method, ref, scfg.seed, scfg.positions)
    eff = sign * (s - s[:1]).mean(1)  # wanted-way change of the mean score per row
    set_eff = float(eff[1])
    marg = {h: set_eff - float(eff[2 + i]) for i, h in enumerate(cand)}
    null = eff[2 + len(cand):]
    null_d = {"n": len(null_sets), "size": n_draw, "mean": float(null.mean()) if len(null) else float("nan"),
              "max": float(null.max()) if len(null) else float("nan"),
              "q95": float(null.quantile(0.95)) if len(null) else float("nan")}
    confident = True
    if best.status == "undecided":
        confident = False
        reasons.append(best.agreement())
    elif not best.success:
        confident = False
        reasons.append(f"ablating {len(cand)} head(s) moved the judged refusal rate by only {best.effect:+.2f} "
                       f"(target {scfg.target:.2f}) in the best direction ({best.flip})")
    if set_eff < cfg.min_score_effect:
        confident = False
        reasons.append(f"the set moves the mean refusal score by {set_eff:.3f} log-odds, below {cfg.min_score_effect}")
    if len(null) and set_eff <= float(null.max()):
        confident = False
        reasons.append(f"the set's effect ({set_eff:.3f}) does not beat all {len(null)} random sets of {n_draw} heads "
                       f"(max {float(null.max()):.3f})")
    weak = [h for h in cand if marg[h] <= 0]
    spec = {}
    if cfg.specificity is not None:
        what, other = off_target(best.flip, harmful, harmless)
        if held_out is not None:
            other = held_out
        # resample from the off-target label's own prompts: a balanced pool would hand harmless
        # prompts harmful prompts' outputs, and a head that carries the label would then look disruptive
        sref = head_reference(model, off_target(best.flip, harmful, harmless)[1], scfg.positions) \
            if scfg.method == "resample" else ref
        spec = specificity(model, cand, other, scfg.method, sref, scfg.seed, scfg.positions, cfg.specificity,
                           what=f"{'held-out ' if held_out is not None else ''}{what} prompts")
        if spec["disruptive"]:
            confident = False
            reasons.append(spec["verdict"])
    if confident and weak:
        reasons.append(f"heads {weak} add nothing to the set (drop-one effect <= 0) and are left out")
    if confident:
        reasons.insert(0, f"ablating {cand} flips behaviour ({best.flip}: judged rate "
                          f"{best.rate_before:.2f} -> {best.rate_after:.2f}) and moves the score by {set_eff:.2f} "
                          f"log-odds, more than all {len(null)} random sets (max {null_d['max']:.2f})")
        if spec:
            reasons.insert(1, spec["verdict"])
    evidence = {}
    for h in cand:
        ev = {"single_ablation": float(search.single[best.flip][h]),
              "single_ablation_rank": _rank_of(search.single[best.flip], h), "drop_one": marg[h]}
        if comparison is not None:
            for name, m in comparison.maps.items():
                v = float(m[h])
                ev[name] = None if math.isnan(v) else v
                ev[f"{name}_rank"] = _rank_of(m, h)
        evidence[h] = ev
    heads = [h for h in cand if marg[h] > 0] if confident else []
    return Recommendation(heads, cand, confident, best.flip, reasons, evidence, set_eff, null_d, search, spec)
