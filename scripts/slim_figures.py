"""Copy a run's figures into the docs without 5 MB of plotly.js in each.

    python scripts/slim_figures.py OUT/figures docs/NAME/figures [--png]

Each standalone HTML figure the toolkit writes embeds plotly.js; the copies load it from the
plotly CDN instead (so they need a network connection to open), and `--png` also writes a static
image of each (kaleido + a headless browser, as `--png` on the commands).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import plotly.graph_objects as go


def read_figure(html: str) -> go.Figure:
    """The figure a plotly standalone HTML file draws: the data and layout of its `Plotly.newPlot` call."""
    dec = json.JSONDecoder()
    i = html.index("Plotly.newPlot(") + len("Plotly.newPlot(")
    parts = []
    for _ in range(3):  # div id, data, layout
        while html[i].isspace():
            i += 1
        value, i = dec.raw_decode(html, i)
        parts.append(value)
        i = html.index(",", i) + 1
    _, data, layout = parts
    return go.Figure(data=data, layout=layout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--png", action="store_true")
    args = ap.parse_args()
    files = sorted(args.src.glob("*.html"))
    if not files:
        raise SystemExit(f"no .html figures in {args.src}")
    args.dst.mkdir(parents=True, exist_ok=True)
    for f in files:
        fig = read_figure(f.read_text())
        fig.write_html(args.dst / f.name, include_plotlyjs="cdn")
        if args.png:
            fig.write_image(args.dst / f"{f.stem}.png", width=1100, height=650)
        print(f"{f.name}: {f.stat().st_size // 1024} KiB -> {(args.dst / f.name).stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
