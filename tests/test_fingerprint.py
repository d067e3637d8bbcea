"""Artifacts are bound to a model by its fingerprint (config + weights), not by its name or path:
a retrained organism refuses the shipped organism's rankings and directions, the shipped organism
loaded by its directory accepts them, and `allow_other_model=True` is the recorded way through."""

import json
import shutil

import pytest
import torch

from interp.direction import Direction
from interp.errors import ArtifactError, InputError
from interp.fingerprint import ModelMismatchError, model_record
from interp.hooks import count_hooks
from interp.model import load_model
from organisms.paths import ORGANISM_DIR
from probes import HeadRanking, rank_heads


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    """The shipped organism copied elsewhere, and a 'retrained' one: same config, other weights."""
    from safetensors.torch import load_file, save_file

    root = tmp_path_factory.mktemp("models")
    same, other = root / "copy_of_organism", root / "organism_retrained"
    shutil.copytree(ORGANISM_DIR / "gqa", same)
    shutil.copytree(ORGANISM_DIR / "gqa", other)
    w = load_file(str(other / "model.safetensors"))
    g = torch.Generator().manual_seed(0)
    save_file({k: (v + 1e-3 * torch.randn(v.shape, generator=g)).contiguous() for k, v in w.items()}, str(other / "model.safetensors"))
    return same, other


@pytest.fixture(scope="module")
def retrained(copies):
    return load_model(str(copies[1]))


@pytest.fixture(scope="module")
def ranking(organism, plain_prompts):
    return rank_heads(organism, plain_prompts[:12].concat(plain_prompts[-12:]), labels="category", k_folds=2)


def _direction(model) -> Direction:
    meta = {**model_record(model), "model_shape": {"n_layers": model.n_layers, "d_model": model.d_model}}
    return Direction(torch.ones(model.d_model), 1, -1, meta=meta)


def test_fingerprint_ignores_path_and_dtype_but_not_weights(organism, copies, retrained):
    same = load_model(str(copies[0]))
    assert same.fingerprint == organism.fingerprint
    assert load_model("organism", dtype=torch.bfloat16).fingerprint == organism.fingerprint
    assert retrained.fingerprint != organism.fingerprint
    assert len(organism.fingerprint) == 16 and organism.describe()["fingerprint"] == organism.fingerprint


def test_names_come_from_the_directory_not_a_path_prefix(copies, monkeypatch):
    monkeypatch.chdir(copies[1].parent)
    assert load_model("organism_retrained").name == "organism_retrained"  # was 'organism:gqa'
    assert load_model(str(ORGANISM_DIR / "gqa")).name == "organism:gqa"


def test_retrained_organism_refuses_the_shipped_artifacts(tmp_path, organism, retrained, ranking):
    ranking.save(tmp_path / "ranking")
    _direction(organism).save(tmp_path / "direction")
    with pytest.raises(ArtifactError, match="different model"):
        HeadRanking.load(tmp_path / "ranking", model=retrained)
    with pytest.raises(ArtifactError, match="different model"):
        Direction.load(tmp_path / "direction", model=retrained)
    # the shipped organism loaded by its directory is the same model: accepted
    by_path = load_model(str(ORGANISM_DIR / "gqa"))
    assert HeadRanking.load(tmp_path / "ranking", model=by_path).top(4) == ranking.top(4)
    Direction.load(tmp_path / "direction", model=by_path)


def test_allow_other_model_is_recorded(tmp_path, organism, retrained, ranking):
    ranking.save(tmp_path / "ranking")
    r = HeadRanking.load(tmp_path / "ranking", model=retrained, allow_other_model=True)
    rec = r.meta["allow_other_model"]
    assert rec["made_on"]["model_fingerprint"] == organism.fingerprint
    assert rec["used_on"] == {"model": retrained.name, "model_fingerprint": retrained.fingerprint}
    r.save(tmp_path / "again")
    assert json.loads((tmp_path / "again.json").read_text())["allow_other_model"] == rec
    HeadRanking.load(tmp_path / "again", model=retrained)  # already let through on this model: no flag needed


def test_loaded_without_a_model_is_checked_when_it_steers(tmp_path, organism, retrained, plain_prompts):
    from interp.intervention import Intervention
    from interp.steering import fit_antidote, fit_head_directions
    from interp.steering.heads import HeadDirections

    _direction(organism).save(tmp_path / "direction")
    d = Direction.load(tmp_path / "direction")  # no model: nothing to compare with yet
    with pytest.raises(ModelMismatchError, match="different model"):
        with Intervention.ablate_direction(d).apply(retrained):
            pass
    with pytest.raises(InputError, match="different model"):
        with Intervention.add_direction(d).apply(retrained):
            pass
    with Intervention.ablate_direction(d).apply(organism):  # the model it was made on
        pass
    hd = fit_head_directions(organism, plain_prompts[:8].concat(plain_prompts[-8:]))
    hd.save(tmp_path / "heads")
    assert json.loads((tmp_path / "heads.json").read_text())["model_fingerprint"] == organism.fingerprint
    loaded = HeadDirections.load(tmp_path / "heads")
    with pytest.raises(InputError, match="different model"):
        with Intervention.steer_heads(loaded, [(0, 0)], 1.0).apply(retrained):
            pass
    with pytest.raises(ArtifactError, match="different model"):
        HeadDirections.load(tmp_path / "heads", model=retrained)
    moved = HeadDirections.load(tmp_path / "heads", model=retrained, allow_other_model=True)
    with Intervention.steer_heads(moved, [(0, 0)], 1.0).apply(retrained):
        pass
    anti = fit_antidote(organism, plain_prompts[:8], plain_prompts[-8:], calibrate=False)
    assert anti.describe()["model_fingerprint"] == organism.fingerprint
    with pytest.raises(InputError, match="different model"):
        with anti.intervention(0.1).apply(retrained):
            pass
    assert count_hooks(retrained) == 0 and count_hooks(organism) == 0


def test_artifact_without_fingerprint_is_refused_on_load(tmp_path, organism, ranking):
    ranking.save(tmp_path / "old")
    meta = json.loads((tmp_path / "old.json").read_text())
    del meta["model_fingerprint"]  # as written before fingerprints existed
    (tmp_path / "old.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="records no model fingerprint"):
        HeadRanking.load(tmp_path / "old", model=organism)
    assert HeadRanking.load(tmp_path / "old", model=organism, allow_other_model=True).meta["allow_other_model"]


def test_captures_record_and_check_the_fingerprint(tmp_path, organism, retrained, plain_prompts):
    from interp.capture import Activations, capture

    acts = capture(organism, plain_prompts[:4], ["z"], "last")
    assert acts.meta["model_fingerprint"] == organism.fingerprint
    acts.save(tmp_path / "acts")
    Activations.load(tmp_path / "acts", model=organism)
    with pytest.raises(ArtifactError, match="different model"):
        Activations.load(tmp_path / "acts", model=retrained)
