"""What a study run writes: `report.json` with `summary.md` rendered from it, each stage's
artifacts (safetensors + JSON) and chosen interventions, every generated answer in
`completions.jsonl`, and the figures a reused run copies from the run it reuses."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from interp.study import Study


def _copy_figures(part: dict, src: Path, out: Path) -> None:
    import shutil

    from interp.summary import figures

    for f in figures(part):
        if (src / f).is_file():
            (out / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / f, out / f)


def _write(out: Path, report: dict) -> None:
    """`report.json`, and `summary.md` rendered from it (interp.summary)."""
    from interp.summary import write_summary

    (out / "report.json").write_text(json.dumps(report, indent=1, default=_json_default))
    write_summary(out)


def save_stage_artifacts(study: Study, artifacts: dict, out: Path, report: dict) -> None:
    """A stage's artifacts under `out/artifacts/`, and the interventions and defenses it chose
    (`interp.saved.Chosen`) under `out/interventions/<name>/`, listed in the report's "interventions"."""
    from interp.saved import FOLDER, Chosen, save_chosen

    chosen = {k: v for k, v in artifacts.items() if isinstance(v, Chosen)}
    save_artifacts({k: v for k, v in artifacts.items() if k not in chosen}, out / "artifacts")
    if chosen:
        cards = save_chosen(out / FOLDER, chosen, study.model, study.judge, study.gen.max_new_tokens,
                            study.data.describe(ids=False))
        report.setdefault("interventions", {}).update(cards)


def save_artifacts(artifacts: dict, folder: Path) -> list[Path]:
    """Each artifact as `folder/<name>`: through its own `.save` (safetensors + JSON), or as JSON."""
    written = []
    for name, obj in artifacts.items():
        folder.mkdir(parents=True, exist_ok=True)
        if hasattr(obj, "save"):
            written += [Path(p) for p in obj.save(folder / name) or []]
        else:
            path = folder / (name if name.endswith(".json") else f"{name}.json")
            path.write_text(json.dumps(obj, indent=1, default=_json_default))
            written.append(path)
    return written


COMPLETIONS = "completions.jsonl"


def write_answers(out: Path, study: Study, report: dict) -> None:
    """Every answer the stages generated so far to `out/completions.jsonl` (`safety-heads judge
    --completions` gives the report's refusal rates from it), and its summary in the report."""
    from interp.completions import conditions, judge_header, write_completions

    if not study.answers:
        return
    header = {"judge": judge_header(study.judge), "model": study.model.name,
              "fingerprint": getattr(study.model, "fingerprint", None), "seed": study.seed,
              "max_new_tokens": study.gen.max_new_tokens, "source": "safety-heads study stages",
              "data": study.data.describe(ids=False)}
    write_completions(out / COMPLETIONS, study.answers, header)
    report["completions"] = {"file": COMPLETIONS, "rows": len(study.answers),
                             "conditions": {k: len(v) for k, v in conditions(study.answers).items()},
                             "note": "every generated answer; `safety-heads judge --completions FILE` re-judges them and "
                                     "prints one behaviour table per condition"}


def _json_default(o):
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
