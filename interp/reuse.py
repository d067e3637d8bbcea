"""Runs that build on each other: `--from DIR` reuses what an earlier run saved (the head ranking,
the refusal direction, the causal recommendation), `--heads L.H,...` and `--direction FILE` name
them by hand. A stage whose outputs are all given is not run; its part of the report is copied from
the earlier run's, marked with where it came from.

The earlier run must be of the same model (its fingerprint) on the same data (the hash of every
split): anything else is refused in one line, before any pass. Directories read: a `demo`, `steer`,
`slipping` or `figures --work-dir` output (report.json, artifacts/ranking, artifacts/direction), a
`rank` output (report.json, ranking, direction) and a `causal` output (causal.json).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from interp.errors import InputError

SPLITS = ("train", "val", "test")


def parse_heads(text: str) -> tuple[tuple[int, int], ...]:
    """"21.4,27.0" -> ((21, 4), (27, 0))."""
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        try:
            layer, head = part.split(".")
            out.append((int(layer), int(head)))
        except ValueError:
            raise InputError(f"--heads takes comma-separated LAYER.HEAD pairs, e.g. 21.4,27.0; got {part!r}") from None
    if not out:
        raise InputError("--heads is empty; pass comma-separated LAYER.HEAD pairs, e.g. 21.4,27.0")
    return tuple(out)


class NamedHeads:
    """Heads named by hand, standing in for a ranking where a stage takes its top heads."""

    def __init__(self, heads):
        self.heads = [tuple(h) for h in heads]

    def top(self, k: int) -> list[tuple[int, int]]:
        return self.heads[:k]


@dataclass
class Given:
    """What a run does not recompute: `ranking`, `direction`, `recommended` heads (None: compute),
    the earlier run's report parts to copy, and where each came from."""

    ranking: object = None
    direction: object = None
    recommended: list | None = None
    named_heads: list | None = None
    parts: dict = field(default_factory=dict)  # report part name -> the earlier run's part
    sources: dict = field(default_factory=dict)  # "ranking"/"direction"/"heads" -> where it came from

    def describe(self) -> dict:
        return dict(self.sources)


def read_run(path: str | Path) -> tuple[dict, Path]:
    """An earlier run's report (report.json, else causal.json as its causal part)."""
    d = Path(path)
    if (d / "report.json").is_file():
        return json.loads((d / "report.json").read_text()), d
    if (d / "causal.json").is_file():
        c = json.loads((d / "causal.json").read_text())
        return {"model": c.get("model"), "data": c.get("data"), "config": c.get("config"), "causal": c}, d
    raise InputError(f"--from {d}: no report.json or causal.json there; pass the output directory of an earlier "
                     "demo, steer, slipping, rank or causal run")


def check_same(report: dict, study, where: Path) -> None:
    """One line if the earlier run was of another model or on other data."""
    fp = (report.get("model") or {}).get("fingerprint")
    if fp != study.model.fingerprint:
        raise InputError(f"--from {where}: that run was of model {(report.get('model') or {}).get('name')!r} (fingerprint "
                         f"{fp}), this one is {study.model.name!r} (fingerprint {study.model.fingerprint}); pass the same "
                         "--model, or drop --from")
    then = (report.get("data") or {}).get("splits", {})
    now = study.data.describe(ids=False)["splits"]
    diff = [s for s in SPLITS if (then.get(s) or {}).get("sha256") != now[s]["sha256"]]
    if diff:
        raise InputError(f"--from {where}: its {', '.join(diff)} split(s) hold other prompts than this run's (hash "
                         f"{(then.get(diff[0]) or {}).get('sha256')} vs {now[diff[0]]['sha256']}); pass the same data "
                         "options (--harmful/--harmless, --seed, --per-cell, --n-train, --split ...), or drop --from")


def _artifact(d: Path, name: str) -> Path | None:
    for base in (d / "artifacts" / name, d / name):
        if base.with_name(base.name + ".json").is_file() and base.with_name(base.name + ".safetensors").is_file():
            return base
    return None


def causal_part(report: dict) -> dict | None:
    c = report.get("causal")
    return c if isinstance(c, dict) and "recommended_heads" in c else None


def gather(study, from_dir: str | None = None, heads: tuple | None = None, direction: str | None = None) -> Given:
    """What `--from`, `--heads` and `--direction` give this run (checked against its model and data)."""
    from interp.direction import Direction
    from interp.direction_files import read_direction
    from probes.artifacts import HeadRanking

    g = Given()
    model = study.model
    if from_dir is not None:
        report, d = read_run(from_dir)
        check_same(report, study, d)
        r, v = _artifact(d, "ranking"), _artifact(d, "direction")
        if r is not None:
            g.ranking, g.sources["ranking"] = HeadRanking.load(r, model=model), str(r)
        if v is not None:
            g.direction, g.sources["direction"] = Direction.load(v, model=model), str(v)
        for part in ("heads", "directions"):
            if isinstance(report.get(part), dict):
                g.parts[part] = report[part]
        c = causal_part(report)
        if c is not None:
            g.recommended, g.parts["causal"] = [tuple(h) for h in c["recommended_heads"]], c
            g.sources["recommended_heads"] = f"{d}: the causal recommendation"
    if heads:
        bad = [h for h in heads if not (0 <= h[0] < model.n_layers and 0 <= h[1] < model.n_heads)]
        if bad:
            raise InputError(f"--heads {bad[0][0]}.{bad[0][1]} is not a head of {model.name} ({model.n_layers} layers x "
                             f"{model.n_heads} heads)")
        g.recommended = g.named_heads = [tuple(h) for h in heads]
        g.sources["recommended_heads"] = "--heads (named by hand)"
    if direction is not None:
        g.direction, g.sources["direction"] = read_direction(direction, model=model), f"--direction {direction}"
    return g


__all__ = ["Given", "NamedHeads", "check_same", "causal_part", "gather", "parse_heads", "read_run"]
