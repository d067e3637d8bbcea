"""Model sources (interp.sources): the organisms reach the loader, the study's default data and the
CLI only through the registry, and a user's own source plugs in the same way."""

from __future__ import annotations

import pytest

import interp.sources as sources
from interp.errors import InputError, ModelLoadError
from interp.model import load_model
from interp.sources import ResolvedModel, register_model_source
from organisms.paths import ORGANISM_DIR


@pytest.fixture
def registry(monkeypatch):
    """A copy of the registry for one test: what it registers is gone afterwards."""
    monkeypatch.setattr(sources, "_SOURCES", dict(sources._SOURCES))
    return sources._SOURCES


def test_the_organisms_are_registered_sources():
    names = [s.name for s in sources.model_sources()]
    # the adapters' names before the toy's "organism:<variant>"
    assert names[:3] == ["organism:smollm2-r2d", "organism:smollm2", "organism"]
    assert sources.claiming_source("organism").name == "organism"
    assert sources.claiming_source("organism:r2d").name == "organism"
    with pytest.raises(ModelLoadError, match="not built at"):  # a variant that is not shipped: how to build it
        sources.claiming_source("organism:mha")
    assert sources.claiming_source("organism:smollm2").name == "organism:smollm2"
    assert sources.claiming_source(str(ORGANISM_DIR / "gqa")).name == "organism"  # its shipped directory too
    assert sources.claiming_source("smollm2-135m-instruct") is None  # a hub registry model: the core's own
    with pytest.raises(ModelLoadError, match="unknown organism variant 'nope'"):
        sources.claiming_source("organism:nope")


def test_the_core_loader_knows_no_organism(registry, organism):
    registry.clear()
    with pytest.raises(ModelLoadError, match="could not load 'organism'"):  # a hub name now, and we are offline
        load_model("organism")
    # the shipped directory still loads as any model directory, under its path
    m = load_model(str(ORGANISM_DIR / "gqa"))
    assert m.source is None and m.name == str(ORGANISM_DIR / "gqa") and m.fingerprint == organism.fingerprint


def test_a_users_source_serves_its_names_data_and_commands(registry, organism, plain_prompts, eval_prompts):
    from interp.cli import build_parser
    from interp.cli_checks import check_args
    from interp.pipeline import load_study_data
    from interp.study import StudyConfig, StudyData

    seen = []

    def resolve(name):
        return ResolvedModel(str(ORGANISM_DIR / "gqa"), "mine") if name == "mine" else None

    def data(model, cfg):
        seen.append((model.name, cfg.seed, cfg.per_cell))
        h, s = plain_prompts.filter(label="harmful"), plain_prompts.filter(label="harmless")
        return StudyData(h[:8].concat(s[:8]), h[8:12].concat(s[8:12]), eval_prompts, provider="mine")

    def commands(sub):
        sub.add_parser("mine-hello").set_defaults(func=lambda args: {"hello": "mine"})

    register_model_source("mine", resolve, study_data=data, data_fix="fix mine", commands=commands)
    m = load_model("mine")
    assert (m.name, m.source, m.kind) == ("mine", "mine", "organism") and m.fingerprint == organism.fingerprint
    d = load_study_data(StudyConfig(model="mine", seed=3), m)
    assert d.provider == "mine" and seen == [("mine", 3, 20)]  # per_cell: the demo's scale for a toy model
    # a model no source loaded runs on the default model's source's prompts: the organism's
    assert load_study_data(StudyConfig(per_cell=1, n_train=8), load_model(str(ORGANISM_DIR / "gqa"))).provider == "organism"
    args = build_parser().parse_args(["mine-hello"])
    assert args.func(args) == {"hello": "mine"}
    check_args(build_parser().parse_args(["eval", "--model", "mine"]))  # claimed: no directory needed


def test_without_a_source_that_brings_data_a_study_needs_files(registry, organism):
    from interp.pipeline import load_study_data
    from interp.study import StudyConfig

    registry.clear()
    with pytest.raises(InputError, match="--harmful FILE --harmless FILE"):
        load_study_data(StudyConfig(), organism)


def test_a_broken_source_is_refused(registry):
    with pytest.raises(InputError, match="resolve"):
        register_model_source("broken", None)
    assert "broken" not in [s.name for s in sources.model_sources()]
