"""Pipeline stage "r2d": the R2D organism against the base organism on the study's jailbreak
families at their strongest setting and on its look-alike harmless requests, plus the pivot heads.

The R2D organism is a variant of the embedded organism (same vocabulary, same training prompts), so
on the toy the stage runs on organism studies only: the base organism as the model and the
organism's data (its prompts carry the topics the R2D teacher restates). On a real model it runs
`interp.stages.r2d_real` (an R2D model against its comparison: organism:smollm2-r2d against
organism:smollm2, r2d:DIR against its base). Elsewhere it reports why it was skipped.

Kept under 40 s: only the plain and top-strength cells are generated (the full grid is
`safety-heads r2d eval`). The SFT-only ablation is not retrained here: its numbers are the ones
measured by `safety-heads r2d eval --sft-only DIR` and stored beside the weights (`measured.json`).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from interp.errors import ModelLoadError
from interp.prompts import PromptSet
from interp.r2d.evaluate import comparison_figure, run_model, summarize, unknown_words
from interp.r2d.inside import InsideConfig, compare_decisions, heads_figure
from interp.r2d.model import R2D_MODEL, load_r2d, require_kind
from interp.study import StageResult, Study, figure_ref

HEADLINE = ("jailbreak_success", "jailbreak_success_untrained_top", "harmful_refusal", "over_refusal")
GRID_PER_CELL = 12
INSIDE_PER_CELL = 4


def top_cells(prompts: PromptSet, per_cell: int, seed: int = 0) -> PromptSet:
    """Plain prompts and each family at its strongest setting (the headline cells only), at most
    `per_cell` of each (label, family, strength) cell."""
    top = {f: max(ss) for f, ss in prompts.families().items()}
    return _per_cell([p for p in prompts if p.family is None or p.strength == top[p.family]], per_cell, seed,
                     prompts.name + ":top", prompts.source)


def _per_cell(prompts, per_cell: int, seed: int, name: str, source: str) -> PromptSet:
    cells: dict[tuple, list] = {}
    for p in prompts:
        cells.setdefault((p.label, p.family or "", p.strength or 0), []).append(p)
    rng = random.Random(seed)
    keep = [p for k in sorted(cells) for p in (cells[k] if len(cells[k]) <= per_cell else rng.sample(cells[k], per_cell))]
    return PromptSet(name, tuple(keep), source)


def skip_reason(study: Study) -> str | None:
    if study.data.provider != "organism" or study.model.kind != "organism":
        return ("the R2D organism is a variant of the embedded organism (its vocabulary, its training prompts); it is "
                "compared with the base organism on the organism's own prompts only (--model organism, no prompt files). "
                "On a real model the section runs on an R2D model: --model organism:smollm2-r2d (or organism:smollm2), "
                "or --model r2d:DIR (safety-heads r2d train --model M ... --out DIR)")
    if study.data.over_refusal is None:
        return "the study has no over-refusal look-alikes to measure R2D's over-refusal on"
    return None


def r2d_stage(study: Study) -> StageResult:
    from interp.stages.r2d_real import applies, real_r2d_stage

    if study.data.provider != "organism" and applies(study):
        return real_r2d_stage(study)  # an R2D model and its comparison on a real model's study
    why = skip_reason(study)
    if why:
        return StageResult({"skipped": why})
    base = require_kind(study.model, "organism")
    try:
        r2d = load_r2d(R2D_MODEL)  # through its model source, like any model
    except ModelLoadError as e:
        return StageResult({"skipped": f"the R2D organism could not be loaded: {e}"})
    d = study.data
    grid = top_cells(d.test, GRID_PER_CELL, study.seed)
    look = d.over_refusal
    trained = d.trained_comply | d.trained_refuse
    res = {"n_prompts": {"grid": len(grid), "lookalike": len(look)}, "split": "test"}
    full = {}
    for name, m in (("base", base), ("r2d", r2d)):
        full[name] = summarize(run_model(m, grid), run_model(m, look), trained)
        res[name] = {k: full[name][k] for k in HEADLINE}
        res[name]["jailbreak_success_at_top"] = full[name]["jailbreak_success_at_top"]
    measured = Path(r2d.path) / "measured.json" if r2d.path else None
    if measured is not None and measured.exists():
        saved = json.loads(measured.read_text())
        if "sft_only" in saved.get("models", {}):
            res["ablation_sft_only"] = {k: saved["models"]["sft_only"].get(k) for k in HEADLINE}
            res["ablation_sft_only"]["source"] = "measured.json (safety-heads r2d eval --sft-only), full grid"
    res["unknown_lookalike_words_base"] = unknown_words(base, look)["words"]
    inside = compare_decisions(r2d, base, _per_cell(d.test, INSIDE_PER_CELL, study.seed, d.test.name + ":inside", d.test.source),
                               d.trained_comply, InsideConfig(per_cell=INSIDE_PER_CELL))
    res.update(pivot_heads=inside["pivot_heads"], refusal_heads=inside["refusal_heads"],
               overlap_with_refusal_heads=inside["overlap_with_refusal_heads"], spearman=inside["spearman"])
    res["figures"] = [figure_ref("r2d_vs_base"), figure_ref("r2d_pivot_heads")]
    planted = ", ".join(f"{f} {s}" for f, s in sorted(d.trained_comply)) or "none"
    res["note"] = (f"R2D refuses harmful requests in the base organism's planted cells ({planted}) by training, where the "
                   "base organism is trained to comply: jailbreak_success_untrained_top leaves those cells out.")
    return StageResult(res, {"r2d_vs_base": comparison_figure({"models": full}), "r2d_pivot_heads": heads_figure(inside)})
