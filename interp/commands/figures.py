"""`safety-heads figures --out figures/ [--png]`: regenerate every figure the toolkit makes, as a
gallery with an `index.html` that links each figure with a one-line caption (`interp.gallery`).

How: open the study (`interp.pipeline.open_study`: the same model and data options as every
command, one model load) and run its stages (`run_study`: baseline, heads, directions, causal,
steering, slipping, defenses, r2d, plus the figure-only `attention_tokens` stage: token-level
attention heatmaps, one held-out jailbreak prompt per family, on the top slipping heads) into a
scratch folder. The gallery lists exactly the figures the stages returned, each under its stage;
they are copied into `--out` with the report. Figures are standalone HTML (plotly.js inlined: they
open offline); `--png` also writes a PNG beside each (kaleido + Chromium, see `interp.gallery`).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from interp.gallery import Gallery, entries, export_pngs, write_index
from interp.study import StudyConfig, figure_ref


@dataclass(frozen=True)
class GalleryConfig:
    """What to regenerate: the study (model, data, sizes: `StudyConfig`, the demo's defaults;
    lower `per_cell` / `n_train` for a quick gallery, the test uses 2 / 16) and the gallery's own
    options."""

    out: str = "figures"
    png: bool = False
    study: StudyConfig = StudyConfig()
    token_heatmaps: bool = True
    work_dir: str | None = None  # keep the demo's report and artifacts here (default: a temporary folder)

    def sections(self) -> tuple[str, ...]:
        """The stages to run: the study's (all by default), plus the token heatmaps after slipping."""
        from interp.pipeline import STAGES

        names = tuple(self.study.sections or STAGES)
        if self.token_heatmaps and "slipping" in names and "attention_tokens" not in names:
            names += ("attention_tokens",)
        return names


def build_gallery(cfg: GalleryConfig = GalleryConfig(), progress: bool = True) -> Gallery:
    from interp.pipeline import open_study, run_study

    t0 = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.TemporaryDirectory(prefix="safety-heads-figures-") if cfg.work_dir is None else None
    work = Path(tmp.name if tmp is not None else cfg.work_dir)
    try:
        scfg = replace(cfg.study, out=str(work), png=False, sections=cfg.sections())
        res = run_study(open_study(scfg), scfg, progress=progress)
        made = {name: fig for figs in res.figures.values() for name, fig in figs.items()}
        for name in made:
            shutil.copy2(work / figure_ref(name), out / f"{name}.html")
        (out / "report.json").write_text((work / "report.json").read_text())
    finally:
        if tmp is not None:
            tmp.cleanup()
    gallery = Gallery(out, report=res.report)
    png_names = []
    if cfg.png:
        if progress:
            print(f"[figures] PNG export of {len(made)} figures ...", flush=True)
        png_names, gallery.png_error = export_pngs({f"{n}.html": fig for n, fig in made.items()}, out)
    gallery.figures = entries({stage: list(figs) for stage, figs in res.figures.items()}, png_names, out)
    gallery.seconds = time.perf_counter() - t0
    settings = {k: v for k, v in cfg.study.describe().items() if v is not None and k not in ("out", "png")}
    write_index(gallery, f"safety-heads figures --out {cfg.out}{' --png' if cfg.png else ''}", settings,
                cfg.study.model, cfg.png)
    return gallery


def register(sub) -> None:
    from interp.cli import add_study_options

    p = sub.add_parser("figures", help="regenerate every figure the toolkit makes, with an index.html gallery")
    add_study_options(p, out_default="figures", sections=("baseline", "heads", "directions", "causal", "steering",
                                                         "slipping", "defenses", "r2d"))
    p.add_argument("--no-token-heatmaps", action="store_true", help="skip the per-family token attention heatmaps")
    p.add_argument("--work-dir", default=None, help="keep the demo's report and artifacts here (default: a temporary folder)")
    p.set_defaults(func=_figures)


def _figures(args):
    from interp.cli import study_config

    scfg = study_config(args)
    cfg = GalleryConfig(out=args.out, png=args.png, study=scfg, token_heatmaps=not args.no_token_heatmaps,
                        work_dir=args.work_dir)
    gallery = build_gallery(cfg)
    print(f"wrote {gallery.index} ({len(gallery.figures)} figures) in {gallery.seconds:.0f}s")
    if gallery.png_error:
        print(f"PNG export failed (the HTML gallery is complete): {gallery.png_error}")
    s = gallery.summary()
    s.pop("figures")
    return s
