"""Steering interventions on the organism: each moves refusal the intended way, works during
generation, and leaves the model bit-identical (no hooks) after its block, also on an exception."""

import math
import random

import pytest
import torch

from interp.errors import InputError
from interp.generation import GenerationConfig, generate
from interp.hooks import count_hooks
from organisms.data import eval_prompts as make_eval
from interp.intervention import Intervention
from interp.steering import (EffectMeter, compare_heads_vs_layer, effect, fit_antidote, fit_head_directions,
                             scores_under, select_heads)
from probes.directions import mean_difference_direction


@pytest.fixture(scope="module")
def held_out():
    ev = make_eval(seed=4321, per_cell=8, families=["suffix"])
    return {"harmful": ev.filter(label="harmful", family=None), "harmless": ev.filter(label="harmless", family=None),
            "jailbreak": ev.filter(label="harmful", family="suffix")}


@pytest.fixture(scope="module")
def head_dirs(organism, plain_prompts):
    return fit_head_directions(organism, plain_prompts)


@pytest.fixture(scope="module")
def top_heads(organism, head_dirs, plain_prompts):
    return select_heads(organism, head_dirs, 4, plain_prompts.filter(label="harmless")[:8], sigmas=1.0)


@pytest.fixture(scope="module")
def antidote(organism, plain_prompts):
    return fit_antidote(organism, plain_prompts.filter(label="harmful"), plain_prompts.filter(label="harmless"))


@pytest.fixture(scope="module")
def direction(organism, plain_prompts):
    # layer 1's block input at the last token: exists in any organism with >= 2 layers
    return mean_difference_direction(organism, plain_prompts.filter(label="harmful"), plain_prompts.filter(label="harmless"), 1)


def _logits(model, texts):
    b = model.encode(texts)
    with torch.no_grad():
        return model.bridge(b.tokens, attention_mask=b.attention_mask)


def test_head_directions_shape_and_sign(organism, head_dirs, plain_prompts):
    assert head_dirs.directions.shape == (organism.n_layers, organism.n_heads, organism.d_head)
    norms = head_dirs.directions.norm(dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-4)
    assert (head_dirs.sigma > 0).all()
    # + points to the harmful side: the best heads separate, with harmful projecting higher
    assert float(head_dirs.auroc.max()) > 0.9


def test_head_steering_moves_refusal_both_ways(organism, head_dirs, top_heads, held_out):
    up = effect(organism, Intervention.steer_heads(head_dirs, top_heads, 1.0), held_out["harmless"])
    down = effect(organism, Intervention.steer_heads(head_dirs, top_heads, -1.0), held_out["harmful"])
    assert up > 1.0, up
    assert down < -1.0, down


def test_selected_heads_beat_random_heads(organism, head_dirs, top_heads, held_out):
    """HSI's heads move refusal more than every one of 10 random sets of as many heads."""
    meter = EffectMeter(organism, held_out["harmless"])
    chosen = meter(Intervention.steer_heads(head_dirs, top_heads, 1.0))
    every = [(l, h) for l in range(organism.n_layers) for h in range(organism.n_heads)]
    rng = random.Random(0)
    draws = [rng.sample(every, len(top_heads)) for _ in range(10)]
    rand = [meter(Intervention.steer_heads(head_dirs, d, 1.0)) for d in draws]
    assert chosen > max(rand), (chosen, rand)


def test_single_head_scan_is_each_head_steered_alone(organism, head_dirs, plain_prompts):
    """HSI's per-head scan runs as one stacked, resumed pass per prompt batch and gives each head's
    effect as steering it alone does; its strength must be given (no toy default on other models)."""
    from interp.steering import single_head_steering_effects

    prompts = plain_prompts.filter(label="harmless")[:6]
    eff = single_head_steering_effects(organism, head_dirs, prompts, 1.0)
    meter = EffectMeter(organism, prompts)
    for l, h in [(0, 4), (1, 0), (2, 5), (3, 7)]:
        assert eff[l, h] == pytest.approx(meter(Intervention.steer_heads(head_dirs, [(l, h)], 1.0)), abs=1e-4), (l, h)
    assert eff.abs().max() > 0.1 and count_hooks(organism) == 0
    with pytest.raises(InputError, match="needs sigmas="):
        select_heads(organism, head_dirs, 4, prompts)


def test_heads_vs_layer_one_call(organism, head_dirs, top_heads, held_out):
    out = compare_heads_vs_layer(organism, head_dirs, top_heads, 1.0, {"harmless": held_out["harmless"]})
    assert set(out) >= {"effect_heads", "effect_layer", "ratio", "layers"}
    e_h, e_l = out["effect_heads"]["harmless"], out["effect_layer"]["harmless"]
    assert e_l > 0 and e_h > 0
    assert math.isclose(out["ratio"]["harmless"], e_h / e_l)


@pytest.mark.parametrize("mode", ["heads", "resid"])
def test_layer_steering_raises_refusal(organism, head_dirs, top_heads, held_out, mode):
    layer = top_heads[0][0]
    e = effect(organism, Intervention.steer_layer(head_dirs, layer, 1.0, mode=mode), held_out["harmless"])
    assert e > 0.5, e


def test_direction_addition_and_ablation(organism, direction, held_out):
    add = effect(organism, Intervention.add_direction(direction), held_out["harmless"])
    abl = effect(organism, Intervention.ablate_direction(direction), held_out["harmful"])
    assert add > 2.0, add
    assert abl < -1.0, abl


def test_direction_unit_or_natural_size(organism, direction, held_out):
    from interp.direction import Direction

    unit = Direction(direction.vector / direction.vector.norm(), direction.layer, -1)  # e.g. a probe's weight
    s1 = scores_under(organism, Intervention.ablate_direction(unit), held_out["harmful"][:4])
    s2 = scores_under(organism, Intervention.ablate_direction(direction.vector), held_out["harmful"][:4])
    assert torch.allclose(s1, s2, atol=1e-4)  # ablation only uses the unit direction


def test_antidote_moves_refusal_and_alpha_is_live(organism, antidote, held_out):
    assert int(antidote.mask[antidote.layers[0]].sum()) == math.ceil(0.05 * organism.d_model)
    up = effect(organism, antidote.intervention(0.3), held_out["harmless"])
    down = effect(organism, antidote.intervention(-0.3), held_out["harmful"])
    assert up > 0.5 and down < -0.5, (up, down)
    texts = held_out["jailbreak"].texts[:4]
    weak = antidote.intervention(0.1)
    with weak.apply(organism):
        a = _logits(organism, texts)
    with weak.with_strength(0.4).apply(organism):  # a new value from the same fit: no refit
        b = _logits(organism, texts)
    with antidote.intervention(0.4).apply(organism):
        c = _logits(organism, texts)
    assert not torch.equal(a, b) and torch.equal(b, c)
    assert weak.with_strength(0.4) == antidote.intervention(0.4) and weak.strength == 0.1  # nothing was mutated
    assert weak.unit == "norm_fraction"  # the antidote's strength is a fraction of the residual norm
    with weak.scaled(4.0).apply(organism):
        assert torch.allclose(_logits(organism, texts), c, atol=1e-6)


def test_antidote_touches_last_position_only(organism, antidote, held_out):
    texts = held_out["jailbreak"].texts[:4]
    base = _logits(organism, texts)
    with antidote.intervention(0.5).apply(organism):
        steered = _logits(organism, texts)
    real = organism.encode(texts).attention_mask.bool()[:, :-1]  # pad positions carry no meaning
    assert torch.equal(base[:, :-1][real], steered[:, :-1][real])
    assert not torch.equal(base[:, -1], steered[:, -1])


def test_dense_antidote_is_stronger_at_same_alpha(organism, antidote, held_out):
    sparse = effect(organism, antidote.intervention(0.2), held_out["harmless"])
    dense = effect(organism, antidote.with_sparsity(1.0).intervention(0.2), held_out["harmless"])
    assert dense > sparse > 0


def test_head_steering_same_with_and_without_kv_cache(organism, head_dirs, top_heads, held_out):
    texts = held_out["jailbreak"].texts[:3] + held_out["harmless"].texts[:3]
    with Intervention.steer_heads(head_dirs, top_heads, 0.5).apply(organism):
        kv = generate(organism, texts, GenerationConfig(max_new_tokens=5, use_kv_cache=True))
        full = generate(organism, texts, GenerationConfig(max_new_tokens=5, use_kv_cache=False))
    assert kv == full


def _interventions(organism, head_dirs, top_heads, antidote, direction):
    return {
        "heads": Intervention.steer_heads(head_dirs, top_heads, 2.0),
        "layer_heads": Intervention.steer_layer(head_dirs, 0, 2.0, mode="heads"),
        "layer_resid": Intervention.steer_layer(head_dirs, 1, 2.0, mode="resid"),
        "ablate": Intervention.ablate_direction(direction),
        "add": Intervention.add_direction(direction, factor=2.0),
        "antidote": antidote.intervention(0.5),
    }


def test_bit_identical_after_exit_and_on_exception(organism, head_dirs, top_heads, antidote, direction, held_out):
    texts = held_out["jailbreak"].texts[:3] + held_out["harmless"].texts[:2]
    before = _logits(organism, texts)
    assert count_hooks(organism) == 0
    for name, make in _interventions(organism, head_dirs, top_heads, antidote, direction).items():
        with make.apply(organism):
            inside = _logits(organism, texts)
            assert count_hooks(organism) > 0, name
        assert not torch.equal(inside, before), f"{name} changed nothing"
        assert count_hooks(organism) == 0, name
        assert torch.equal(_logits(organism, texts), before), name
        with pytest.raises(RuntimeError, match="boom"):
            with make.apply(organism):
                raise RuntimeError("boom")
        assert count_hooks(organism) == 0, name
        assert torch.equal(_logits(organism, texts), before), name
