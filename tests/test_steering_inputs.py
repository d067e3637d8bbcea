"""Bad input to the steering API raises InputError with a message (and installs no hook)."""

import pytest
import torch

from interp.errors import InputError
from interp.hooks import count_hooks
from interp.intervention import Intervention
from interp.steering import fit_antidote, fit_head_directions, select_heads, sweep
from interp.direction import Direction
from probes.directions import mean_difference_direction


@pytest.fixture(scope="module")
def tiny_prompts(plain_prompts):
    return plain_prompts.filter(label="harmful")[:6].concat(plain_prompts.filter(label="harmless")[:6])


@pytest.fixture(scope="module")
def tiny_dirs(tiny, tiny_prompts):
    return fit_head_directions(tiny, tiny_prompts)


@pytest.fixture(scope="module")
def tiny_antidote(tiny, tiny_prompts):
    return fit_antidote(tiny, tiny_prompts.filter(label="harmful"), tiny_prompts.filter(label="harmless"), calibrate=False)


def _enter(cm):
    with cm:
        pass


@pytest.mark.parametrize("alpha", [float("nan"), float("inf"), float("-inf")])
def test_alpha_not_finite(tiny, tiny_dirs, tiny_antidote, alpha):
    with pytest.raises(InputError, match="finite"):
        _enter(Intervention.steer_heads(tiny_dirs, [(0, 0)], alpha).apply(tiny))
    with pytest.raises(InputError, match="finite"):
        _enter(Intervention.steer_layer(tiny_dirs, 0, alpha).apply(tiny))
    with pytest.raises(InputError, match="finite"):
        tiny_antidote.intervention(0.1).with_strength(alpha)
    with pytest.raises(InputError, match="finite"):
        _enter(tiny_antidote.intervention(alpha).apply(tiny))
    with pytest.raises(InputError, match="finite"):
        _enter(Intervention.add_direction(torch.ones(tiny.d_model), layer=0, factor=alpha).apply(tiny))
    with pytest.raises(InputError, match="finite"):
        sweep(tiny, Intervention.steer_heads(tiny_dirs, [(0, 0)], 1.0), [alpha], {"harmless": ["hi"]})
    assert count_hooks(tiny) == 0


def test_k_larger_than_number_of_heads(tiny, tiny_dirs, tiny_prompts):
    n = tiny.n_layers * tiny.n_heads
    with pytest.raises(InputError, match="number of heads"):
        select_heads(tiny, tiny_dirs, n + 1, tiny_prompts, 1.0)
    with pytest.raises(InputError, match="K="):
        tiny_dirs.top(n + 1)
    with pytest.raises(InputError):
        select_heads(tiny, tiny_dirs, 0, tiny_prompts, 1.0)


def test_direction_wrong_width(tiny):
    with pytest.raises(InputError, match="residual width"):
        _enter(Intervention.ablate_direction(torch.ones(tiny.d_model + 1)).apply(tiny))
    with pytest.raises(InputError, match="residual width"):
        _enter(Intervention.add_direction(torch.ones(tiny.d_model * 2), layer=0).apply(tiny))
    assert count_hooks(tiny) == 0


def test_direction_from_another_model(tiny, organism, tiny_dirs, tiny_antidote):
    other = Direction(torch.ones(tiny.d_model), 0, -1, meta={"model": "some-other-model"})
    with pytest.raises(InputError, match="another model|made on model"):
        _enter(Intervention.ablate_direction(other).apply(tiny))

    class Foreign:  # duck typing is not a direction: one type, interp.Direction
        vector = torch.ones(tiny.d_model)
        layer = 0

    with pytest.raises(InputError, match="must be an interp.Direction"):
        _enter(Intervention.add_direction(Foreign()).apply(tiny))
    with pytest.raises(InputError, match="made on model"):
        _enter(Intervention.add_direction(Direction(torch.ones(tiny.d_model), 0, -1, meta={"model": "organism:xyz"})).apply(tiny))
    # artifacts fitted on the tiny model do not steer the organism
    with pytest.raises(InputError):
        _enter(Intervention.steer_heads(tiny_dirs, [(0, 0)], 1.0).apply(organism))
    with pytest.raises(InputError):
        _enter(tiny_antidote.intervention(0.1).apply(organism))
    assert count_hooks(organism) == 0


@pytest.mark.parametrize("sparsity", [0.0, -0.1, 1.5, float("nan")])
def test_sparsity_outside_unit_interval(tiny, tiny_prompts, tiny_antidote, sparsity):
    with pytest.raises(InputError, match="sparsity"):
        fit_antidote(tiny, tiny_prompts.filter(label="harmful"), tiny_prompts.filter(label="harmless"), sparsity=sparsity)
    with pytest.raises(InputError, match="sparsity"):
        tiny_antidote.with_sparsity(sparsity)


def test_layer_that_does_not_exist(tiny, tiny_dirs, tiny_prompts):
    L = tiny.n_layers
    with pytest.raises(InputError, match="does not exist"):
        _enter(Intervention.steer_layer(tiny_dirs, L, 1.0).apply(tiny))
    with pytest.raises(InputError, match="does not exist"):
        _enter(Intervention.steer_layer(tiny_dirs, -1, 1.0, mode="resid").apply(tiny))
    with pytest.raises(InputError, match="does not exist"):
        _enter(Intervention.add_direction(torch.ones(tiny.d_model), layer=L + 3).apply(tiny))
    with pytest.raises(InputError, match="does not exist"):
        fit_antidote(tiny, tiny_prompts.filter(label="harmful"), tiny_prompts.filter(label="harmless"), layers=[L])
    with pytest.raises(InputError):
        mean_difference_direction(tiny, tiny_prompts.filter(label="harmful"), tiny_prompts.filter(label="harmless"), L)
    with pytest.raises(InputError, match="does not exist"):
        _enter(Intervention.steer_heads(tiny_dirs, [(L, 0)], 1.0).apply(tiny))
    assert count_hooks(tiny) == 0


def test_head_index_out_of_range(tiny, tiny_dirs):
    H = tiny.n_heads
    for bad in ([(0, H)], [(0, -1)], [(0, 0), (1, H + 5)], [(0,)], []):
        with pytest.raises(InputError):
            _enter(Intervention.steer_heads(tiny_dirs, bad, 1.0).apply(tiny))
    assert count_hooks(tiny) == 0


def test_other_bad_inputs(tiny, tiny_prompts):
    with pytest.raises(InputError, match="kind"):
        fit_head_directions(tiny, tiny_prompts, kind="pca")
    with pytest.raises(InputError, match="one class|both"):
        fit_head_directions(tiny, tiny_prompts.filter(label="harmful"))
    with pytest.raises(InputError, match="labels"):
        fit_head_directions(tiny, ["a", "b"], labels=["harmful"])
    with pytest.raises(InputError, match="mode"):
        _enter(Intervention.steer_layer(fit_head_directions(tiny, tiny_prompts), 0, 1.0, mode="mlp").apply(tiny))


def test_probe_kind_and_artifact_roundtrip(tiny, tiny_prompts, tiny_dirs, tmp_path):
    probe = fit_head_directions(tiny, tiny_prompts, kind="probe")
    norms = probe.directions.norm(dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-4)
    assert float(probe.auroc.mean()) > 0.5  # oriented toward the refusal side
    path = tiny_dirs.save(tmp_path / "dirs")
    again = type(tiny_dirs).load(path)
    assert torch.equal(again.directions, tiny_dirs.directions) and again.model_name == tiny.name
