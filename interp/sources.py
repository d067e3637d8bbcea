"""Model sources: models that `load_model` reaches by a name of their own, plugged in by registration.

A source claims some names and directories (`resolve` returns a `ResolvedModel` for them and None
for anything else); `load_model` asks the registered sources in registration order, and only a
name no source claims goes on to a hub registry name (`interp.hub`), a local directory or a
Hugging Face name. A source may also bring

* `check(name_or_dir) -> bool`: claim a name and check its files without reading any weights (the
  CLI checks `--model` before anything loads; without it, `resolve` is called);
* `study_data(model, cfg) -> interp.study.StudyData`: the prompts a study of one of its models runs
  on when no prompt files are given, and `data_fix`, what to do when they do not fit the model's
  vocabulary;
* `commands(subparsers)`: its own `safety-heads` subcommands.

The toolkit's model organisms are such a source (package `organisms`, registered by the `interp`
package when it is imported); nothing in the core or the analysis packages imports them.

    register_model_source("mine", lambda name: ResolvedModel("/models/mine", "mine") if name == "mine" else None)
    load_model("mine")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from interp.errors import InputError


@dataclass(frozen=True)
class ResolvedModel:
    """What a source hands `load_model` for a name it claims."""

    path: str  # the Hugging Face directory (or hub name) the bridge is built from
    name: str  # the model's display name (artifacts are bound by fingerprint, never by this)
    local: bool = True
    hf_model: object | None = None  # a transformers model already built (e.g. an adapter merged in); loads on one device
    tokenizer: object | None = None  # replaces the directory's tokenizer
    meta: dict | None = None  # None: the directory's safety_heads.json (else {})


@dataclass(frozen=True)
class ModelSource:
    """A registered source (see the module docstring)."""

    name: str
    resolve: Callable[[str], ResolvedModel | None]
    check: Callable[[str], bool] | None = None
    study_data: Callable[[object, object], object] | None = None
    data_fix: str = ""
    commands: Callable[[object], None] | None = None

    def claims(self, name_or_dir: str) -> bool:
        """Whether this source serves `name_or_dir`, its files checked (no weights read when it has `check`)."""
        return self.check(name_or_dir) if self.check is not None else self.resolve(name_or_dir) is not None


_SOURCES: dict[str, ModelSource] = {}


def register_model_source(name: str, resolve: Callable[[str], ResolvedModel | None], *,
                          check: Callable[[str], bool] | None = None, study_data: Callable | None = None,
                          data_fix: str = "", commands: Callable | None = None) -> ModelSource:
    """Register (or replace) the source `name`; sources are asked in the order they were first registered."""
    if not name or not callable(resolve):
        raise InputError("register_model_source needs a name and a resolve(name_or_dir) function")
    source = ModelSource(name, resolve, check, study_data, data_fix, commands)
    _SOURCES[name] = source
    return source


def model_sources() -> tuple[ModelSource, ...]:
    """Every registered source, in the order `load_model` asks them."""
    return tuple(_SOURCES.values())


def resolve_model(name_or_dir: str) -> tuple[ModelSource, ResolvedModel] | None:
    """The first source that claims `name_or_dir`, and what it resolved it to (None: no source does)."""
    for source in model_sources():
        resolved = source.resolve(name_or_dir)
        if resolved is not None:
            return source, resolved
    return None


def claiming_source(name_or_dir: str) -> ModelSource | None:
    """The first source that claims `name_or_dir` (its files checked, no weights read), else None."""
    return next((s for s in model_sources() if s.claims(name_or_dir)), None)
