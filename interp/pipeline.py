"""The demo study: one pass from a model to `report.json` and figures.

Each section is a function `section(study) -> dict` that reads what earlier sections left on the
`Study` and returns its part of the report; the report is written after every section, so a
failure late in the run keeps everything before it. Later capabilities add a section to
`SECTIONS` and nothing else.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from interp.evaluate import RefusalEval, evaluate_refusal
from interp.generation import GenerationConfig
from interp.model import ChatModel, load_model
from interp.organism import data as organism_data
from interp.plotting import refusal_vs_strength, save_figure
from interp.prompts import PromptSet
from interp.scoring import RefusalJudge
from interp.threads import model_threads


@dataclass(frozen=True)
class DemoConfig:
    model: str = "organism"
    out: str = "out/demo"
    seed: int = 0
    per_cell: int = 20  # held-out prompts per (label, family, strength) cell
    n_train: int = 64  # plain prompts per label for probing / direction finding
    max_new_tokens: int = 12
    device: str = "cpu"
    dtype: str = "float32"
    harmful_file: str | None = None
    harmless_file: str | None = None
    chat_template: str | None = None
    sections: tuple[str, ...] | None = None  # None: every registered section
    png: bool = False
    truncate: bool = False  # keep the last tokens of prompts longer than the context instead of failing


@dataclass
class Study:
    """What the sections share: the model, the prompt sets, the baseline, and the report so far."""

    cfg: DemoConfig
    model: ChatModel
    train: PromptSet  # plain harmful + harmless prompts for fitting probes and directions
    eval: PromptSet  # held-out plain + jailbreak prompts for behaviour
    judge: RefusalJudge
    gen: GenerationConfig
    out: Path
    report: dict = field(default_factory=dict)
    baseline: RefusalEval | None = None
    state: dict = field(default_factory=dict)  # objects sections hand to later ones (rankings, directions)

    def figure(self, fig, name: str) -> str:
        paths = save_figure(fig, self.out / "figures" / name, png=self.cfg.png)
        return str(paths[0].relative_to(self.out))


def section_baseline(study: Study) -> dict:
    ev = evaluate_refusal(study.model, study.eval, study.judge, study.gen)
    study.baseline = ev
    table = ev.table()
    fig = study.figure(refusal_vs_strength(table, f"Refusal against jailbreak strength: {study.model.name}"), "refusal_vs_strength")
    examples = {}
    for p, a in zip(ev.prompts, ev.answers):
        key = f"{p.label}/{p.family or 'plain'}/{p.strength or 0}"
        examples.setdefault(key, {"prompt": p.text, "answer": a})
    return {"refusal_rate": table, "refusal_score": ev.score_table(), "n_prompts": len(ev.prompts),
            "figure": fig, "examples": dict(list(examples.items())[:12])}


SECTIONS: dict[str, Callable[[Study], dict]] = {"baseline": section_baseline}


def _register_optional_sections() -> None:
    """Sections that live in other modules register themselves on import."""
    import importlib

    for mod in ("probes.report", "interp.causal.report", "interp.steering.report", "interp.slipping.report", "interp.r2d.report"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name is None or not mod.startswith(e.name):
                raise


def register_section(name: str, fn: Callable[[Study], dict]) -> None:
    SECTIONS[name] = fn


def build_prompt_sets(cfg: DemoConfig) -> tuple[PromptSet, PromptSet]:
    """Training (plain) and held-out evaluation sets; user files replace the plain training set."""
    if cfg.harmful_file or cfg.harmless_file:
        from interp.datasets import load_prompt_sets

        train = load_prompt_sets(harmful=cfg.harmful_file, harmless=cfg.harmless_file).require("training set", 4, both_labels=True)
    else:
        train = organism_data.plain_prompts(seed=cfg.seed, n_per_label=cfg.n_train, templates="all")
    ev = organism_data.eval_prompts(seed=cfg.seed + 1000, per_cell=cfg.per_cell)
    return train, ev


def run_demo(cfg: DemoConfig = DemoConfig(), progress: bool = True) -> dict:
    t_start = time.perf_counter()
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    _register_optional_sections()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    model = load_model(cfg.model, device=cfg.device, dtype=getattr(torch, cfg.dtype), chat_template=cfg.chat_template,
                       truncate=cfg.truncate)
    model.require_direct_answers()
    timings["load_model"] = time.perf_counter() - t
    train, ev = build_prompt_sets(cfg)
    study = Study(cfg, model, train, ev, RefusalJudge(), GenerationConfig(max_new_tokens=cfg.max_new_tokens, batch_size=64), out)
    from interp.provenance import provenance

    study.report = {"model": model.describe(), **provenance(), "config": asdict(cfg), "judge": study.judge.describe(),
                    "prompt_sets": {"train": train.describe(), "eval": ev.describe()}, "timings": timings}
    names = list(SECTIONS) if cfg.sections is None else list(cfg.sections)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        from interp.errors import InputError

        raise InputError(f"unknown demo sections {unknown}; available: {list(SECTIONS)}")
    for name in names:
        if progress:
            print(f"[demo] {name} ...", flush=True)
        t = time.perf_counter()
        with model_threads(model):  # small models: one intra-op thread (see interp.threads)
            study.report[name] = SECTIONS[name](study)
        timings[name] = round(time.perf_counter() - t, 2)
        _write(study)
    timings["total"] = round(time.perf_counter() - t_start, 2)
    timings["load_model"] = round(timings["load_model"], 2)
    _write(study)
    return study.report


def _write(study: Study) -> None:
    (study.out / "report.json").write_text(json.dumps(study.report, indent=1, default=_json_default))


def _json_default(o):
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
