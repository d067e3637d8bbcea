"""Figures of probing results: layer x head heatmaps of any head score, and per-layer curves of the
residual-direction candidates (held-out accuracy and Arditi et al.'s selection scores)."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from interp.errors import InputError
from interp.plotting import layer_head_heatmap, save_figure
from interp.direction import Direction
from probes.artifacts import HeadRanking

_HOVER = ("accuracy", "accuracy_std", "auroc", "auroc_std", "mm_accuracy", "mm_auroc", "cohens_d", "sigma")
_TITLES = {"accuracy": "held-out accuracy of the logistic probe", "auroc": "held-out AUROC of the logistic probe",
           "mm_accuracy": "held-out accuracy of the mass-mean direction", "mm_auroc": "held-out AUROC of the mass-mean direction",
           "cohens_d": "held-out Cohen's d of the mass-mean direction"}


def ranking_figure(ranking: HeadRanking, score: str = "accuracy", title: str | None = None) -> go.Figure:
    """Layer x head heatmap of one score, every other score (and the probed position) on hover."""
    if score not in ranking.scores:
        raise InputError(f"no score {score!r} in this ranking; scores: {sorted(ranking.scores)}")
    view = ranking.sort(score) if score in ("accuracy", "auroc", "mm_accuracy", "mm_auroc", "cohens_d") else ranking
    hover = {k: view[k].tolist() for k in _HOVER if k in view.scores and k != score}
    if len(ranking.positions) > 1:
        hover["position"] = [[ranking.positions[int(i)] for i in row] for row in view.best_position.tolist()]
    labels = ranking.meta.get("label_info", {})
    what = f"{labels.get('positive', 'positive')} vs {labels.get('negative', 'negative')}"
    fig = layer_head_heatmap(view[score].tolist(), title or f"{_TITLES.get(score, score)} per head ({what}, "
                             f"{ranking.meta.get('model', '')})", colorbar=score, hover=hover,
                             zmid=0.0 if score == "cohens_d" else None)
    fig.update_yaxes(tickvals=list(range(ranking.n_layers)), ticktext=[str(l) for l in ranking.layers])
    return fig


def direction_figure(direction: Direction, title: str | None = None) -> go.Figure:
    """Per layer, one line per position: held-out accuracy of the difference in means; refusal
    score of harmful prompts under ablation and of harmless prompts under addition; KL on harmless
    under ablation. Dotted lines: unsteered scores and thresholds; the chosen candidate is starred."""
    rows = direction.candidates
    if not rows:
        raise InputError("this direction has no candidate table to plot")
    sel = direction.meta.get("selection", {})
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.07,
                        subplot_titles=("held-out accuracy (mass-mean probe)",
                                        "refusal score: harmful under ablation (solid), harmless under addition (dashed)",
                                        "KL(unsteered || ablated) on harmless prompts"))
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    for i, (site, pos) in enumerate(sorted({(r.get("site", "resid_pre"), r["position"]) for r in rows})):
        pr = sorted((r for r in rows if r["position"] == pos and r.get("site", "resid_pre") == site), key=lambda r: r["layer"])
        x = [r["layer"] for r in pr]
        name = f"{site} pos {pos} ({pr[0].get('token', '')})"
        c = colors[i % len(colors)]
        hover = [f"layer {r['layer']} pos {pos}<br>accuracy {r['accuracy']}<br>ablation {r['ablation_score']}<br>"
                 f"addition {r['addition_score']}<br>KL {r['kl']}<br>passed {r['passed']}" for r in pr]
        common = dict(mode="lines+markers", legendgroup=name, hovertext=hover, hoverinfo="text")
        fig.add_trace(go.Scatter(x=x, y=[r["accuracy"] for r in pr], name=name, line={"color": c}, **common), 1, 1)
        fig.add_trace(go.Scatter(x=x, y=[r["ablation_score"] for r in pr], name=f"{name} ablation", showlegend=False,
                                 line={"color": c}, **common), 2, 1)
        fig.add_trace(go.Scatter(x=x, y=[r["addition_score"] for r in pr], name=f"{name} addition", showlegend=False,
                                 line={"color": c, "dash": "dash"}, **common), 2, 1)
        fig.add_trace(go.Scatter(x=x, y=[r["kl"] for r in pr], name=f"{name} KL", showlegend=False, line={"color": c}, **common), 3, 1)
    s = direction.scores
    for y, label in ((s.get("baseline_harmful"), "unsteered harmful"), (s.get("baseline_harmless"), "unsteered harmless"),
                     (sel.get("induce_refusal_threshold", 0.0), "addition threshold")):
        if y is not None:
            fig.add_hline(y=y, line={"dash": "dot", "color": "grey"}, annotation_text=label, row=2, col=1)
    fig.add_hline(y=sel.get("kl_threshold", 0.1), line={"dash": "dot", "color": "grey"}, annotation_text="KL threshold", row=3, col=1)
    n_layers = direction.meta.get("model_shape", {}).get("n_layers")
    if n_layers:
        cut = int(n_layers * (1 - sel.get("prune_layer_fraction", 0.2)))
        for r in (1, 2, 3):
            fig.add_vrect(x0=cut - 0.5, x1=n_layers - 0.5, fillcolor="grey", opacity=0.12, line_width=0, row=r, col=1)
    ch = next((r for r in rows if r.get("chosen")), None)
    if ch:
        fig.add_trace(go.Scatter(x=[ch["layer"]], y=[ch["ablation_score"]], mode="markers", name="chosen",
                                 marker={"symbol": "star", "size": 16, "color": "gold", "line": {"color": "black", "width": 1}}), 2, 1)
    fig.update_xaxes(title_text="layer (shaded: pruned, last 20%)", dtick=1, row=3, col=1)
    searched = direction.meta.get("sites_searched") or sorted({r.get("site", "resid_pre") for r in rows})
    left_out = direction.meta.get("sites_left_out") or {}
    where = f"sites searched: {', '.join(searched)}" + (f" ({', '.join(left_out)} not on this model)" if left_out else "")
    fig.update_layout(title=title or f"Refusal direction candidates ({direction.meta.get('model', '')}): chose layer "
                      f"{direction.layer}, position {direction.position}, {direction.site}<br><sup>{where}</sup>",
                      template="plotly_white", height=900)
    return fig


def save_probe_figures(ranking: HeadRanking | None, direction: Direction | None, out_dir: str | Path, png: bool = False) -> dict[str, str]:
    """Write the standard figures (standalone HTML, PNG when asked); name -> path of the HTML."""
    out = Path(out_dir)
    written = {}
    if ranking is not None:
        for score in ("accuracy", "cohens_d"):
            written[f"heads_{score}"] = str(save_figure(ranking_figure(ranking, score), out / f"heads_{score}", png=png)[0])
    if direction is not None:
        written["directions"] = str(save_figure(direction_figure(direction), out / "directions", png=png)[0])
    return written
