"""The interventions and defenses a study chose, saved to be used again: `OUT/interventions/<name>/`.

Each directory holds what `safety-heads apply` and `safety-heads eval --intervention` read:
* `intervention.json` + `intervention.safetensors` (`Intervention.save`: the operations, the model's
  name and fingerprint), or, for a defense that changes the prompt rather than the model
  (SmoothLLM, Token Highlighter), `defense.json` (its class and settings);
* `card.json`: the method, its strength and unit, how that point was chosen, what the study measured
  under it (every rate as {"rate", "n", "ci95"}), the greedy answer length and the judge;
* `prompts.jsonl`: the prompts those rates were measured on, in the order they were measured, so that
  `safety-heads apply --intervention DIR` (whose default prompts they are) gives the report's numbers.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from interp.errors import InputError
from interp.intervention import Intervention
from interp.prompts import PromptSet

FOLDER = "interventions"
CARD, DEFENSE, PROMPTS = "card.json", "defense.json", "prompts.jsonl"


@dataclass
class Chosen:
    """One intervention (or prompt-changing defense) at the point a stage chose, with its card and
    the prompts the card's rates were measured on. A stage returns these among its artifacts; the
    pipeline writes each to `OUT/interventions/<name>/`."""

    intervention: Intervention | None = None
    defense: object | None = None  # an object with `respond(model, prompts, judge, gen)` (interp.slipping.defenses)
    card: dict = field(default_factory=dict)
    prompts: PromptSet | None = None


def _defense_classes() -> dict:
    """Every defense of `interp.slipping.defenses` by class name (a dataclass with `respond`), so a
    new defense class there is saved and loaded without being listed here."""
    from dataclasses import is_dataclass

    from interp.slipping import defenses

    return {name: c for name, c in vars(defenses).items()
            if isinstance(c, type) and is_dataclass(c) and callable(getattr(c, "respond", None))}


def save_chosen(folder: str | Path, chosen: dict[str, Chosen], model, judge=None, max_new_tokens: int | None = None,
                data: dict | None = None) -> dict[str, dict]:
    """Write every `Chosen` under `folder/<name>/`; returns {name: its card} (with its path)."""
    from interp.completions import judge_header

    out = {}
    for name, c in chosen.items():
        d = Path(folder) / name
        d.mkdir(parents=True, exist_ok=True)
        if c.intervention is not None:
            c.intervention.save(d, model)
        elif c.defense is not None:
            (d / DEFENSE).write_text(json.dumps({"defense": type(c.defense).__name__, "fields": asdict(c.defense),
                                                 "model": model.name, "model_fingerprint": model.fingerprint}, indent=1))
        else:
            raise InputError(f"chosen {name!r} holds neither an intervention nor a defense")
        card = {"name": name, **c.card, "model": model.name, "model_fingerprint": model.fingerprint,
                "max_new_tokens": max_new_tokens, **({"judge": judge_header(judge)} if judge is not None else {}),
                **({"data": data} if data is not None else {})}
        if c.prompts is not None and len(c.prompts):
            c.prompts.to_jsonl(d / PROMPTS)
            card["prompts"] = PROMPTS
            card["n_prompts"] = len(c.prompts)
        (d / CARD).write_text(json.dumps(card, indent=1, default=str))
        out[name] = {"path": f"{Path(folder).name}/{name}", **{k: card[k] for k in ("method", "strength", "unit", "chosen", "measured")
                                                                if k in card}}
    return out


@dataclass
class Condition:
    """A saved intervention or defense, loaded for use: `name` (its directory's), the
    `Intervention` or the defense object, its card and directory."""

    name: str
    intervention: Intervention | None
    defense: object | None
    card: dict
    path: Path

    @property
    def strength(self):
        return self.card.get("strength")

    def prompts_file(self) -> Path | None:
        p = self.path / self.card.get("prompts", PROMPTS)
        return p if p.is_file() else None


def load_condition(path: str | Path, model=None, allow_other_model: bool = False) -> Condition:
    """Read `path` (a directory `save_chosen` or `Intervention.save` wrote); with `model`, check that
    the intervention was made on it (fingerprint), unless `allow_other_model`."""
    from interp.fingerprint import check_made_on

    d = Path(path)
    card = json.loads((d / CARD).read_text()) if (d / CARD).is_file() else {}
    if (d / "intervention.json").is_file():
        iv = Intervention.load(d)
        meta = json.loads((d / "intervention.json").read_text())
        if model is not None and (meta.get("model_fingerprint") or meta.get("model")):
            check_made_on(model, meta, f"the intervention in {d}", allow_other_model)
        return Condition(d.name, iv, None, card, d)
    if (d / DEFENSE).is_file():
        spec = json.loads((d / DEFENSE).read_text())
        classes = _defense_classes()
        cls = classes.get(spec.get("defense"))
        if cls is None:
            raise InputError(f"{d / DEFENSE} names the defense {spec.get('defense')!r}; known: {sorted(classes)}")
        names = {f.name for f in fields(cls)}
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.get("fields", {}).items() if k in names}
        return Condition(d.name, None, cls(**kw), card, d)
    raise InputError(f"--intervention {d}: no saved intervention there (intervention.json) nor a defense "
                     f"(defense.json); pass a directory under OUT/{FOLDER}/ of a study, or one Intervention.save wrote")


def load_conditions(paths, model=None, allow_other_model: bool = False) -> list[Condition]:
    return [load_condition(d, model, allow_other_model) for d in paths or []]


def check_condition_dir(flag: str, value: str) -> None:
    """The command-line check of an --intervention directory (before any model loads)."""
    d = Path(value).expanduser()
    if not d.is_dir() or not ((d / "intervention.json").is_file() or (d / DEFENSE).is_file()):
        raise InputError(f"{flag} {value}: not a saved intervention (a directory with intervention.json or "
                         f"defense.json, e.g. OUT/{FOLDER}/hsi of a study)")


__all__ = ["FOLDER", "Chosen", "Condition", "save_chosen", "load_condition", "load_conditions", "check_condition_dir"]
