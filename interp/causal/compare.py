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
from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InputError
from interp.model import ChatModel
from interp.causal.search import HeadSearch
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


# the recommendation lives in interp.causal.recommend; these names stay importable from here
from interp.causal.recommend import RecommendConfig, Recommendation, recommend_heads  # noqa: E402,F401  (re-exported)
