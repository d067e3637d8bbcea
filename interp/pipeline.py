"""The study as an explicit sequence of stage calls: model and data in, `report.json` and figures out.

    study = open_study(cfg)              # load the model, read the data (files or the organism), the judge
    result = run_study(study, cfg)       # baseline -> heads/directions -> causal -> steering
                                         #   -> slipping -> defenses -> r2d, each a typed result

Each stage is a plain function of the `Study` (and of earlier stages' typed results where it
uses them: the probe ranking, the recommended heads) returning a `StageResult`: its part of the
report and its figures. `run_study` calls them in order, writes the report after every stage (a
failure late in the run keeps everything before it) and saves each stage's figures. Every number
comes from `study.data`: nothing here knows where the prompts came from.
"""

from __future__ import annotations

import random
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from interp.errors import InputError
from interp.generation import GenerationConfig
from interp.model import ChatModel, load_model
from interp.placement import Placement
from interp.sources import ModelSource, claiming_source, model_sources
from interp.plotting import save_figure
from interp.study import Study, StudyConfig, StudyData, figure_ref, files_study, make_judge
from interp.threads import model_threads
# the baseline stage and the writers live in their own modules; imported here for the pipeline's callers
from interp.stages.baseline import BaselineResult, baseline_stage, evaluation_completions, evaluation_table  # noqa: F401
from interp.outputs import (COMPLETIONS, _copy_figures, _json_default, _write, save_artifacts,  # noqa: F401
                            save_stage_artifacts, write_answers)

# every stage, in the order they run; a demo runs them all unless told otherwise
STAGES = ("baseline", "heads", "directions", "causal", "steering", "slipping", "defenses", "r2d")
# figure-only stages, run (after the others) only when `sections` names them: `safety-heads figures` does
EXTRA_STAGES = ("attention_tokens",)


def load_study_data(cfg: StudyConfig, model: ChatModel) -> StudyData:
    """The study's data for `cfg`: the user's files, else the prompts the model's source brings
    (`interp.sources`: the organisms bring theirs), else those of the default model's source (the
    embedded organism's: the CLI default). Either way every role is checked against the model's
    vocabulary. Sizes left None take the demo's scale for `model` (`StudyConfig.resolved`)."""
    cfg = cfg.resolved(model)
    if cfg.uses_files:
        data = files_study(model, cfg.harmful, cfg.harmless, cfg.jailbreak, cfg.over_refusal, cfg.text_column, cfg.seed,
                           cfg.per_cell, cfg.fractions, cfg.fit_per_cell, **cfg.data_options())
        fix = "Pass prompt files written in the model's language and vocabulary."
    else:
        source = data_source(model)
        data, fix = source.study_data(model, cfg), source.data_fix
    data.check_vocabulary(model, fix)
    data.announce(model, cfg.max_new_tokens)  # how many prompts and about how long, before the first pass
    return data


def data_source(model: ChatModel) -> ModelSource:
    """The model source whose prompts a study of `model` without prompt files runs on."""
    own = next((s for s in model_sources() if s.name == model.source), None)
    if own is not None and own.study_data is not None:
        return own
    default = claiming_source(StudyConfig().model)
    if default is None or default.study_data is None:
        raise InputError(f"no prompt files were given and no model source brings prompts for {model.name}: pass "
                         "--harmful FILE --harmless FILE (e.g. AdvBench-format CSVs with a goal column)")
    return default


R2D_STAGES = ("baseline", "r2d")  # what the demo runs on an R2D model (answers that open with reasoning steps)


def open_study(cfg: StudyConfig, allow_r2d: bool = False) -> Study:
    """Load the model (with the judging phrases and system prompt of `cfg`) and the study's data.
    An R2D model (kind 'r2d') only with `allow_r2d` (the demo's R2D_STAGES read it their own way),
    and never the word-level R2D organism (its section runs from the base organism's study)."""
    model = load_model(cfg.model, device=cfg.device, dtype=getattr(torch, cfg.dtype), chat_template=cfg.chat_template,
                       refusal_phrases=cfg.refusal_phrases, compliance_phrases=cfg.compliance_phrases,
                       system_prompt=cfg.system_prompt, truncate=cfg.truncate, skip_bridge_check=cfg.skip_bridge_check,
                       placement=Placement.from_args(cfg.device_map, cfg.max_memory, cfg.offload_folder))
    if not (allow_r2d and model.kind == "r2d" and model.source != "organism"):
        model.require_direct_answers()  # the word-level R2D organism is compared from its base (--model organism)
    from interp.batching import configure_passes

    configure_passes(model.device, cfg.batch_size, cfg.pass_budget)  # --batch-size, --pass-budget (CUDA: free memory)
    cfg = cfg.resolved(model)
    data = load_study_data(cfg, model)
    return Study(model, data, make_judge(cfg), GenerationConfig(max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size or 64,
                                                                     progress=True),
                 cfg.labels, cfg.seed, cfg.per_cell)


@dataclass
class StudyResult:
    report: dict
    figures: dict[str, dict] = field(default_factory=dict)  # stage -> {figure name: plotly figure}
    out: Path | None = None


def check_sections(sections) -> list[str]:
    names = list(STAGES) if sections is None else list(sections)
    unknown = [n for n in names if n not in STAGES + EXTRA_STAGES]
    if unknown:
        raise InputError(f"unknown demo sections {unknown}; available: {list(STAGES + EXTRA_STAGES)}")
    return names


def run_study(study: Study, cfg: StudyConfig = StudyConfig(), out: str | Path | None = None, progress: bool = True,
              timings: dict | None = None) -> StudyResult:
    """Run the stages `cfg.sections` names (all by default), in order, into `out` (default
    `cfg.out`): `report.json` after every stage, each stage's figures under `figures/`. Progress
    goes to stderr (`interp.progress`); `progress=False` shows none."""
    from interp.progress import silenced

    with silenced(not progress):
        return _run_study(study, cfg, out, timings)


def _run_study(study: Study, cfg: StudyConfig, out: str | Path | None, timings: dict | None) -> StudyResult:
    from interp.provenance import provenance

    wanted = check_sections(cfg.sections)
    out = Path(out or cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    timings = dict(timings or {})
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model, data = study.model, study.data
    report = {"model": model.describe(), **provenance(), "config": cfg.resolved(model).describe(), "judge": study.judge.describe(),
              "labels": study.labels, "data": data.describe(),
              "prompt_sets": {s: data.split(s).describe() for s in ("train", "val", "test")}, "timings": timings}
    if data.over_refusal is not None:
        report["prompt_sets"]["over_refusal"] = data.over_refusal.describe()
    from interp.batching import passes_in_effect
    from interp.progress import Stages, _is_terminal, enabled, say, scope

    report["passes"] = passes_in_effect(cfg.pass_budget is not None)
    result = StudyResult(report, {}, out)
    n_stages = len(wanted) - ("heads" in wanted and "directions" in wanted)
    lines = None if _is_terminal(sys.stderr) else Stages(n_stages)  # a log file: one line per stage

    study.answers.clear()  # this run's answers only

    def stage(name: str, fn, *args, report_as=None):
        """Run one stage, save its figures, write the report (and every answer so far) to `out`."""
        if enabled() and not lines:  # a terminal (a log file gets the stage lines)
            say(f"{name} ...")
        t = lines.start(name) if lines else time.perf_counter()
        with model_threads(model), scope(name):  # small models: one intra-op thread (see interp.threads)
            res = fn(study, *args)
        for fname, fig in res.figures.items():
            save_figure(fig, out / figure_ref(fname), png=cfg.png)
        save_stage_artifacts(study, res.artifacts, out, report)
        result.figures[name] = dict(res.figures)
        for key, part in (report_as(res) if report_as else {name: res.report}).items():
            report[key] = part
        timings[name] = round(time.perf_counter() - t, 2)
        write_answers(out, study, report)
        _write(out, report)
        if lines:
            lines.end(name, t)
        return res

    if "baseline" in wanted:
        stage("baseline", baseline_stage)
    slipping = None
    given = _given(study, cfg)
    ranking, direction, recommended = given.ranking, given.direction, given.recommended
    if given.sources:
        report["given"] = given.describe()

    def reused(name: str, parts: list[str]) -> None:
        """A stage whose outputs are given: its report parts copied from the earlier run, not recomputed."""
        if enabled():
            say(f"{name}: given ({'; '.join(f'{k} from {v}' for k, v in given.sources.items())}), not recomputed")
        if lines:
            lines.end(name, lines.start(name), " (given, not recomputed)", timed=False)
        for part in parts:
            if part in given.parts:
                report[part] = {**given.parts[part], "reused_from": str(cfg.from_dir)}
                _copy_figures(given.parts[part], Path(cfg.from_dir), out)
        timings[name] = 0.0

    probe_parts = [s for s in ("heads", "directions") if s in wanted]
    if probe_parts and ranking is not None and direction is not None:
        reused("+".join(probe_parts), probe_parts)
    elif probe_parts:
        from interp.stages.probes import probe_stage

        probes = stage("+".join(probe_parts), probe_stage, report_as=lambda r: {s: getattr(r, s) for s in probe_parts})
        figs = result.figures.pop("+".join(probe_parts))  # one pass makes both parts: file each figure under its part
        for s in probe_parts:
            result.figures[s] = {k: v for k, v in figs.items() if (k == "directions") == (s == "directions")}
        ranking, direction = probes.ranking, direction if direction is not None else probes.direction
    if "causal" in wanted and recommended is not None:
        reused("causal", ["causal"])
    elif "causal" in wanted:
        from interp.stages.causal import causal_stage

        recommended = stage("causal", causal_stage, ranking).recommended_heads
    if "steering" in wanted:
        from interp.stages.steering import steering_stage

        from interp.reuse import NamedHeads

        # heads named by hand are steered as named (all of them), and said to be
        heads = NamedHeads(given.named_heads) if given.named_heads else recommended
        stage("steering", steering_stage, heads, ranking, direction)
    if given.named_heads:  # heads named by hand are the heads the slipping stage follows too
        from interp.reuse import NamedHeads

        ranking = NamedHeads(given.named_heads)
    if "slipping" in wanted:
        from interp.stages.slipping import slipping_stage

        slipping = stage("slipping", slipping_stage, ranking)
    if "defenses" in wanted:
        from interp.stages.defenses import defenses_stage

        stage("defenses", defenses_stage, slipping.top_heads if slipping else None, recommended)
    if "r2d" in wanted:
        from interp.stages.r2d import r2d_stage

        stage("r2d", r2d_stage)
    if "attention_tokens" in wanted:  # last, so that running it changes nothing the stages above compute
        from interp.stages.slipping import attention_tokens_stage

        stage("attention_tokens", attention_tokens_stage, slipping.top_heads if slipping else None,
              report_as=lambda r: {})
    timings["total"] = round(time.perf_counter() - t_start + timings.get("load", 0.0), 2)
    _write(out, report)
    return result


def _given(study: Study, cfg: StudyConfig):
    """What --from, --heads and --direction give this run (`interp.reuse`)."""
    from interp.reuse import Given, gather

    if cfg.from_dir is None and not cfg.heads and cfg.direction is None:
        return Given()
    return gather(study, cfg.from_dir, cfg.heads, cfg.direction)


def run_demo(cfg: StudyConfig = StudyConfig(), progress: bool = True) -> dict:
    """Open the study `cfg` describes and run it; returns the report (also in `cfg.out`)."""
    check_sections(cfg.sections)
    t = time.perf_counter()
    study = open_study(cfg, allow_r2d=True)
    if study.model.kind == "r2d":
        if cfg.sections is not None and not set(cfg.sections) <= set(R2D_STAGES):
            raise InputError(f"--model {cfg.model} is an R2D model (answers open with reasoning steps): the demo runs only "
                             f"--sections {','.join(R2D_STAGES)} on it; the other sections read refusal from the first "
                             "answer token")
        cfg = replace(cfg, sections=cfg.sections or R2D_STAGES)
    return run_study(study, cfg, progress=progress, timings={"load": round(time.perf_counter() - t, 2)}).report


__all__ = ["STAGES", "EXTRA_STAGES", "BaselineResult", "StudyResult", "baseline_stage", "evaluation_completions", "evaluation_table", "load_study_data", "open_study", "run_study",
           "run_demo", "ChatModel"]
