"""Plotly figures shared by every stage, and one way to save them (standalone HTML, PNG on request)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import plotly.graph_objects as go


def save_figure(fig: go.Figure, path: str | Path, png: bool = False) -> list[Path]:
    """Write `path` as standalone HTML (plotly.js inlined: opens offline); PNG beside it if asked.

    PNG needs kaleido and a browser engine; when they are missing the HTML is still written and
    the error says how to install them."""
    path = Path(path).with_suffix(".html")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(str(path), include_plotlyjs=True, full_html=True)
    written = [path]
    if png:
        try:
            fig.write_image(str(path.with_suffix(".png")), scale=2)
            written.append(path.with_suffix(".png"))
        except Exception as e:  # kaleido or its browser missing: the HTML stands on its own
            raise RuntimeError(f"wrote {path} but not the PNG ({e}); install the static-image extra: "
                               "pip install 'safety-heads[png]' && plotly_get_chrome") from e
    return written


def rate_of(x) -> float | None:
    """The rate of a record {"rate", "n", "ci95"} (or a plain number)."""
    return x.get("rate") if isinstance(x, dict) else x


def error_bars(records, color: str | None = None) -> dict | None:
    """Plotly `error_y` drawing the 95% intervals of rate records (None when they carry none)."""
    recs = [r if isinstance(r, dict) else {} for r in records]
    if not any(r.get("ci95") for r in recs):
        return None
    up = [(r["ci95"][1] - r["rate"]) if r.get("ci95") else 0.0 for r in recs]
    down = [(r["rate"] - r["ci95"][0]) if r.get("ci95") else 0.0 for r in recs]
    return {"type": "data", "symmetric": False, "array": up, "arrayminus": down, "thickness": 1, "width": 3,
            **({"color": color} if color else {})}


def refusal_vs_strength(table: dict, title: str = "Refusal rate against jailbreak strength") -> go.Figure:
    """One line per jailbreak family: harmful refusal (solid) and harmless refusal (dotted), each
    rate with its 95% interval as an error bar when the table holds rate records."""
    import plotly.express as px

    fig = go.Figure()
    palette = px.colors.qualitative.Plotly
    for i, (fam, row) in enumerate(table["jailbreak"].items()):
        xs = [int(s) for s in row]
        color = palette[i % len(palette)]  # one colour per family: harmful solid, harmless dotted
        recs = [row[str(s)] for s in xs]
        fig.add_trace(go.Scatter(x=xs, y=[rate_of(r) for r in recs], mode="lines+markers", name=f"{fam} (harmful)",
                                 line={"color": color}, error_y=error_bars(recs, color),
                                 legendgroup=fam, hovertemplate=f"{fam}<br>strength %{{x}}<br>refusal %{{y:.0%}}<extra></extra>"))
        hrow = table.get("jailbreak_harmless", {}).get(fam)
        if hrow:
            hrecs = [hrow[str(s)] for s in xs]
            fig.add_trace(go.Scatter(x=xs, y=[rate_of(r) for r in hrecs], mode="lines", line={"dash": "dot", "color": color},
                                     name=f"{fam} (harmless)", legendgroup=fam, opacity=0.6, error_y=error_bars(hrecs, color),
                                     hovertemplate=f"{fam} harmless<br>strength %{{x}}<br>refusal %{{y:.0%}}<extra></extra>"))
    fig.update_layout(title=title + "<br><sup>bars: 95% Wilson intervals</sup>", xaxis_title="jailbreak strength (0 = plain request)",
                      yaxis_title="refusal rate", yaxis={"range": [-0.02, 1.02], "tickformat": ".0%"},
                      template="plotly_white", hovermode="closest")
    return fig


def layer_head_heatmap(values, title: str, colorbar: str = "score", hover: dict[str, Sequence] | None = None,
                       zmid: float | None = None, colorscale: str = "Viridis") -> go.Figure:
    """Layer x head heatmap (layers on y, heads on x) with every number on hover."""
    import numpy as np

    z = np.asarray(values, dtype=float)
    n_layers, n_heads = z.shape
    custom = None
    tmpl = "layer %{y}, head %{x}<br>" + colorbar + " %{z:.3f}"
    if hover:
        custom = np.stack([np.asarray(v, dtype=float) for v in hover.values()], axis=-1)
        tmpl += "".join(f"<br>{k} %{{customdata[{i}]:.3f}}" for i, k in enumerate(hover))
    fig = go.Figure(go.Heatmap(z=z, x=list(range(n_heads)), y=list(range(n_layers)), colorscale=colorscale if zmid is None else "RdBu_r",
                               zmid=zmid, customdata=custom, hovertemplate=tmpl + "<extra></extra>",
                               colorbar={"title": colorbar}))
    fig.update_layout(title=title, xaxis_title="head", yaxis_title="layer", template="plotly_white",
                      xaxis={"dtick": 1}, yaxis={"dtick": 1, "autorange": True})
    return fig
