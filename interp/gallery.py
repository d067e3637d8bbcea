"""The figure gallery: an `index.html` listing figures by section, each linked with a one-line
caption (and its PNG when there is one). It only indexes: which figures there are, and under which
section, is what the pipeline's stages returned (`interp.commands.figures` builds it from a study run);
nothing here runs a model or guesses where a figure came from.

PNG export goes through kaleido, which drives a Chrome/Chromium (kaleido finds one on PATH, or where
`BROWSER_PATH` points; `bash scripts/install_browser.sh` installs Debian's `chromium`). When it fails
the HTML gallery stands, and the index says why.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

# One-line captions keyed by figure file name (without extension). Figures not listed here get a
# caption built from their name (`caption_for`).
CAPTIONS: dict[str, str] = {
    "refusal_vs_strength": "Refusal rate of harmful (solid) and harmless (dotted) held-out requests against jailbreak "
                           "strength, one line per jailbreak family.",
    "heads_accuracy": "Held-out accuracy of a logistic probe on each head's output (refused vs complied), "
                      "layer x head; every other score on hover.",
    "heads_cohens_d": "Separation of refused and complied prompts along each head's mass-mean direction "
                      "(held-out Cohen's d), layer x head.",
    "directions": "Refusal-direction candidates per layer and position: held-out accuracy, refusal under ablation "
                  "and addition, KL on harmless prompts; the chosen one is starred (Arditi et al. selection).",
    "causal_methods": "Which heads matter, by method: single-head ablation, activation patching, direct logit "
                      "attribution and probe accuracy side by side, with their rank correlations.",
    "causal_resid_patching": "Residual-stream patching: normalised effect on the refusal logit difference of patching "
                             "resid_pre at each layer and post-instruction position, both directions.",
    "causal_logit_lens": "Logit lens: the refusal-minus-compliance logit difference read from each layer's residual "
                         "stream, harmful vs harmless prompts.",
    "steering_tradeoff": "Safety-utility trade-off: held-out jailbreak refusal against harmless refusal for head "
                         "steering (HSI), layer steering and Jailbreak Antidote at several strengths.",
    "steering_tradeoff_kl": "Safety-utility trade-off with utility as KL(unsteered || steered) on harmless prompts.",
    "slipping_heatmap_steps": "Attention slipping: attention on the request per layer and head at each jailbreak "
                              "strength (one panel per step).",
    "slipping_lines": "Attention of the top heads on the request (top) and the refusal score (bottom) over each "
                      "jailbreak family's strength.",
    "slipping_correlation": "Per head: correlation between attention on the request and the refusal score within "
                            "each jailbreak step (all families pooled).",
    "slipping_tokens_topicmix": "Token-level attention of the top slipping heads from each response position onto a "
                                "topic-mixing jailbreak prompt.",
    "defenses": "Defenses on the same prompts: jailbreak success and over-refusal for no defense, attention "
                "sharpening, SmoothLLM and Token Highlighter.",
    "r2d_vs_base": "Reasoning-to-Defend organism against the base organism: jailbreak success per family and "
                   "strength, and the headline rates.",
    "r2d_pivot_heads": "Per-head probe accuracy at the decision position: R2D's pivot decision vs the base "
                       "organism's refusal decision.",
    # figures the notebooks write (notebooks/NN_*.ipynb); the gallery lists them when they are in --out
    "01_refusal_by_family": "Notebook 01: refusal of held-out harmful requests against jailbreak strength, by family.",
    "01_top_heads_heatmap": "Notebook 01: held-out probe accuracy per head, refused vs complied (the top-heads heatmap).",
    "02_probe_heads": "Notebook 02: where the decision can be read, probe accuracy per head.",
    "02_patching_heads": "Notebook 02: activation patching, mean normalised effect of each head (both directions).",
    "02_dla_heads": "Notebook 02: direct logit attribution per head, harmful minus harmless.",
    "02_methods_side_by_side": "Notebook 02: ablation, patching, DLA and probes side by side, with rank correlations.",
    "02_probe_vs_ablation": "Notebook 02: readable is not causal, probe accuracy against single-head ablation effect.",
    "03_single_head_effects": "Notebook 03: effect of steering each head alone (HSI's head choice).",
    "03_tradeoff": "Notebook 03: safety-utility curves (jailbreak vs harmless refusal) for HSI, layer steering and Antidote.",
    "03_tradeoff_kl": "Notebook 03: safety-utility curves with KL on harmless prompts as the utility cost.",
    "03_jailbreak_by_family": "Notebook 03: refusal of held-out jailbreaks by family, each method at its calibrated strength.",
    "04_slipping_steps_distractor": "Notebook 04: attention on the request per head at each distractor strength.",
    "04_slipping_lines": "Notebook 04: attention of the top heads on the request and refusal, over each family's strength.",
    "04_tokens_topicmix": "Notebook 04: token-level attention of the top heads on a topic-mixing prompt.",
    "04_tokens_topicmix_sharpened": "Notebook 04: the same prompt with attention sharpened (T = 0.5).",
    "04_attack_course": "Notebook 04: attention on the request and refusal over a guided jailbreak search's iterations.",
    "04_sharpening_temperature": "Notebook 04: prompts that lean to refuse, by attention-sharpening temperature.",
    "04_defenses": "Notebook 04: no defense, sharpening, SmoothLLM and Token Highlighter on the same prompts.",
    "05_r2d_vs_base": "Notebook 05: R2D organism vs base organism, jailbreak success per family and strength.",
    "05_over_refusal_by_topic": "Notebook 05: over-refusal of harmless look-alike requests by topic, base vs R2D.",
    "05_pivot_heads": "Notebook 05: R2D pivot heads vs base refusal heads (probe accuracy per head).",
    "06_behaviour": "Notebook 06: organism:smollm2 against base SmolLM2, refusal of held-out harmful, harmless and look-alike requests.",
    "06_jailbreak_dose": "Notebook 06: found jailbreaks of organism:smollm2 (topic mixing, suffix), refusal against strength.",
    "06_dla_heads": "Notebook 06: direct logit attribution per head of organism:smollm2, harmful minus harmless.",
    "06_steering": "Notebook 06: steering organism:smollm2's 4 DLA heads vs their whole layers on jailbroken and harmless prompts.",
}
NOTEBOOK_FIGURE = re.compile(r"\d\d_\w+\.html")
# captions for families of names: (regular expression on the stem, template using its groups)
CAPTION_PATTERNS: list[tuple[str, str]] = [
    (r"attention_tokens_(\w+)", "Token-level attention of the top slipping heads from each response position onto a "
                                "harmful request wrapped in the {0} jailbreak."),
]
# section of the demo a figure came from -> heading in the index
SECTION_TITLES = {
    "baseline": "Behaviour", "heads": "Heads (probes)", "directions": "Residual directions", "causal": "Causal analysis",
    "steering": "Steering", "slipping": "Attention slipping", "defenses": "Defenses", "r2d": "Reasoning-to-Defend",
    "attention_tokens": "Attention, token by token",
    "notebooks": "From the notebooks (written by notebooks/NN_*.ipynb, not regenerated by this command)",
}


def caption_for(name: str) -> str:
    """The caption of a figure file name (with or without extension)."""
    stem = Path(name).stem if name.endswith((".html", ".png")) else name
    if stem in CAPTIONS:
        return CAPTIONS[stem]
    for pattern, template in CAPTION_PATTERNS:
        m = re.fullmatch(pattern, stem)
        if m:
            return template.format(*m.groups())
    words = stem.replace("_", " ").replace("-", " ").strip()
    return (words[:1].upper() + words[1:] + ".") if words else name


@dataclass
class Gallery:
    out: Path
    figures: list[dict] = field(default_factory=list)  # {"file", "section", "caption", "png"}
    png_error: str | None = None
    report: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def index(self) -> Path:
        return self.out / "index.html"

    def summary(self) -> dict:
        return {"out": str(self.out), "index": str(self.index), "n_figures": len(self.figures),
                "png": sum(1 for f in self.figures if f.get("png")), "png_error": self.png_error,
                "seconds": round(self.seconds, 1), "figures": [f["file"] for f in self.figures]}


def export_pngs(recorded: dict, out: Path) -> tuple[list[str], str | None]:
    """PNG beside each recorded figure's copy in `out`, in one kaleido browser session. Returns the
    PNG names and an error message (None when every PNG was written)."""
    try:
        import plotly.io as pio
    except ImportError as e:  # pragma: no cover - plotly is a dependency
        return [], str(e)
    figs, files = [], []
    for path, fig in recorded.items():
        target = out / Path(path).with_suffix(".png").name
        figs.append(fig)
        files.append(target)
    if not figs:
        return [], None
    browser = find_browser()
    if browser and "BROWSER_PATH" not in os.environ:
        os.environ["BROWSER_PATH"] = browser
    try:
        pio.write_images(figs, files, scale=2)
    except Exception as e:  # kaleido missing, no browser, or the browser failed: the HTML stands
        done = [f.name for f in files if f.exists()]
        return done, (f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''} - install kaleido "
                      "(pip install 'safety-heads[png]') and a Chromium (bash scripts/install_browser.sh), or point "
                      "BROWSER_PATH at a Chrome/Chromium binary")
    return [f.name for f in files if f.exists()], None


def find_browser() -> str | None:
    """A Chrome/Chromium binary: `BROWSER_PATH` if set, else the first of the usual names on PATH."""
    if os.environ.get("BROWSER_PATH"):
        return os.environ["BROWSER_PATH"]
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def write_index(gallery: Gallery, command: str, settings: dict, model_name: str, png_asked: bool) -> Path:
    """A self-contained index.html: one list per section, each figure linked with its caption;
    `command` and `settings` say how it was made, `png_asked` whether PNGs were asked for."""
    from interp.provenance import __version__

    esc = html.escape
    parts = []
    current = None
    for f in gallery.figures:
        if f["section"] != current:
            if current is not None:
                parts.append("</ul>")
            current = f["section"]
            parts.append(f"<h2>{esc(SECTION_TITLES.get(current, current.replace('_', ' ').capitalize()))}</h2>\n<ul>")
        png = (f' <a class="png" href="{esc(f["png"])}">PNG</a>' if f["png"] else "")
        thumb = (f'<a href="{esc(f["file"])}"><img src="{esc(f["png"])}" alt="{esc(f["file"])}"></a>'
                 if f["png"] else "")
        parts.append(f'<li><a class="figure" href="{esc(f["file"])}">{esc(f["file"])}</a>{png}'
                     f'<div class="caption">{esc(f["caption"])}</div>{thumb}</li>')
    if current is not None:
        parts.append("</ul>")
    model = gallery.report.get("model", {})
    data = gallery.report.get("data", {})
    notes = []
    if png_asked and gallery.png_error:
        notes.append(f'<p class="warn">PNG export failed, HTML only: {esc(gallery.png_error)}</p>')
    elif not png_asked:
        notes.append("<p>HTML only; <code>safety-heads figures --png</code> also writes PNGs (kaleido + Chromium).</p>")
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>safety-heads figures</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }}
h1 {{ margin-bottom: 0.2rem; }} h2 {{ margin-top: 2rem; border-bottom: 1px solid #ddd; }}
li {{ margin: 0.6rem 0; }} .caption {{ color: #444; }} .png {{ font-size: 0.85em; margin-left: 0.5em; }}
img {{ max-width: 28rem; display: block; margin-top: 0.3rem; border: 1px solid #eee; }}
.meta, code {{ color: #555; font-size: 0.9em; }} .warn {{ color: #a40; }}
</style>
</head>
<body>
<h1>safety-heads figures</h1>
<p class="meta">{len(gallery.figures)} figures of <b>{esc(str(model.get("name", model_name)))}</b> on the
{esc(str(data.get("provider", "")))} prompts, regenerated by
<code>{esc(command)}</code> (safety-heads {esc(__version__)},
{time.strftime("%Y-%m-%d %H:%M")}, {gallery.seconds:.0f} s). Settings: <code>{esc(json.dumps(settings))}</code>.
Numbers behind the figures: <a href="report.json">report.json</a>.</p>
{"".join(notes)}
{chr(10).join(parts)}
</body>
</html>
"""
    gallery.index.write_text(page)
    return gallery.index


def entries(stage_figures: dict[str, list[str]], png_names: list[str], out: Path) -> list[dict]:
    """The gallery's rows: each figure a stage returned (stage -> figure names, without extension),
    under its stage's section, then the notebook figures already in `out` (`NN_*.html`: listed, not
    regenerated), ordered by section then name."""
    section = {f"{name}.html": stage for stage, names in stage_figures.items() for name in names}
    pngs = set(png_names)
    for p in sorted(out.glob("*.html")):
        if NOTEBOOK_FIGURE.fullmatch(p.name) and p.name not in section:
            section[p.name] = "notebooks"
            if p.with_suffix(".png").exists():
                pngs.add(p.with_suffix(".png").name)
    order = list(SECTION_TITLES)
    rows = []
    for name in sorted(section, key=lambda n: (order.index(section[n]) if section[n] in order else len(order), n)):
        png = Path(name).with_suffix(".png").name
        rows.append({"file": name, "section": section[name], "caption": caption_for(name),
                     "png": png if png in pngs else None})
    return rows
