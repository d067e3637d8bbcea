"""`Intervention`: one value for every change to the model, a tuple of typed operations. Identity,
composition, strength (named after its unit, only on operations that have one), save/load, hook
hygiene, and each operation against the arithmetic it stands for."""

import pytest
import torch

from interp.causal.ablate import head_reference
from interp.errors import ArtifactError, InputError
from interp.hooknames import act_name
from interp.hooks import count_hooks, hooked
from interp.intervention import Intervention, ScaleActivation, SteerHeads
from interp.steering import fit_antidote, fit_head_directions
from probes.directions import mean_difference_direction


@pytest.fixture(scope="module")
def texts(plain_prompts):
    return plain_prompts.filter(label="harmful").texts[:3] + plain_prompts.filter(label="harmless").texts[:3]


@pytest.fixture(scope="module")
def parts(organism, plain_prompts):
    harmful, harmless = plain_prompts.filter(label="harmful"), plain_prompts.filter(label="harmless")
    hd = fit_head_directions(organism, plain_prompts)
    d = mean_difference_direction(organism, harmful, harmless, 1)
    anti = fit_antidote(organism, harmful, harmless, calibrate=False)
    return {"heads": Intervention.steer_heads(hd, hd.top(3), 1.5),
            "layer": Intervention.steer_layer(hd, 1, 1.0, mode="resid"),
            "add": Intervention.add_direction(d, factor=0.7),
            "ablate": Intervention.ablate_direction(d),
            "antidote": anti.intervention(0.3),
            "sharpen": Intervention.sharpen(0.5, layers=[0, 1], heads=[1, 2]),
            "zero_heads": Intervention.ablate_heads([(0, 1), (2, 3)], "zero"),
            "mean_heads": Intervention.ablate_heads([(1, 2)], "mean", head_reference(organism, plain_prompts[-8:]))}


def _logits(model, texts):
    b = model.encode(texts)
    with torch.no_grad():
        return model.bridge(b.tokens, attention_mask=b.attention_mask)


def test_identity_is_the_unmodified_model(organism, texts):
    base = _logits(organism, texts)
    none = Intervention.none()
    assert none.hooks(organism) == [] and none.is_none()
    with none.apply(organism):
        assert count_hooks(organism) == 0
        assert torch.equal(_logits(organism, texts), base)
    assert none.with_strength(3.0) == none and none + none == none


def test_every_op_changes_the_model_and_cleans_up_also_on_exception(organism, texts, parts):
    base = _logits(organism, texts)
    for name, iv in parts.items():
        with iv.apply(organism):
            assert count_hooks(organism) > 0, name
            inside = _logits(organism, texts)
        assert not torch.equal(inside, base), f"{name} changed nothing"
        assert count_hooks(organism) == 0, name
        with pytest.raises(RuntimeError, match="boom"):
            with iv.apply(organism):
                raise RuntimeError("boom")
        assert count_hooks(organism) == 0, name
    assert torch.equal(_logits(organism, texts), base)


def test_sum_equals_applying_both(organism, texts, parts):
    a, b = parts["heads"], parts["ablate"]
    with a.apply(organism), b.apply(organism):
        nested = _logits(organism, texts)
    both = a + b
    assert both.ops == a.ops + b.ops and len(both) == 2
    with both.apply(organism):
        summed = _logits(organism, texts)
    assert torch.equal(nested, summed)
    assert [n for n, _ in both.hooks(organism)] == [n for n, _ in a.hooks(organism) + b.hooks(organism)]
    assert Intervention.none() + a == a and a + Intervention.none() == a
    assert (a + b) + parts["antidote"] == a + (b + parts["antidote"])  # a flat tuple of operations
    assert "head steering" in both.describe() and "directional ablation" in both.describe()


def test_strength_is_named_after_its_unit_and_returns_new_values(organism, texts, parts):
    iv = parts["heads"]
    stronger = iv.with_strength(3.0)
    assert iv.strength == 1.5 and iv.unit == "sigmas" and stronger.strength == 3.0 and iv.scaled(2.0) == stronger
    assert isinstance(iv.ops[0], SteerHeads) and iv.ops[0].sigmas == 1.5
    with stronger.apply(organism):
        a = _logits(organism, texts)
    with iv.scaled(2.0).apply(organism):
        b = _logits(organism, texts)
    assert torch.equal(a, b)
    with iv.with_strength(0.0).apply(organism):  # zero strength: exactly the unmodified model
        assert torch.equal(_logits(organism, texts), _logits_base(organism, texts))
    with pytest.raises(InputError, match="finite"):
        iv.with_strength(float("nan"))
    units = {name: p.unit for name, p in parts.items() if name not in ("ablate", "zero_heads", "mean_heads")}
    assert units == {"heads": "sigmas", "layer": "sigmas", "add": "factor", "antidote": "norm_fraction",
                     "sharpen": "temperature"}
    # sweeping the temperature of sharpening changes the model (its strength is the temperature)
    sharp = parts["sharpen"]
    with sharp.with_strength(0.2).apply(organism):
        hot = _logits(organism, texts)
    with sharp.apply(organism):
        assert not torch.allclose(_logits(organism, texts), hot)
    with pytest.raises(InputError, match="temperature"):
        sharp.with_strength(0.0)
    # an operation without a strength has no with_strength, and an intervention of such says so
    assert not hasattr(parts["ablate"].ops[0], "with_strength")
    for name in ("ablate", "zero_heads"):
        with pytest.raises(InputError, match="no strength"):
            parts[name].with_strength(2.0)
    with pytest.raises(InputError, match="different units"):
        (parts["heads"] + parts["sharpen"]).with_strength(1.0)
    mixed = parts["heads"] + parts["ablate"]  # only the part with a strength changes
    assert mixed.with_strength(2.0).ops[1] is mixed.ops[1] and mixed.with_strength(2.0).strength == 2.0


def _logits_base(model, texts):
    with Intervention.none().apply(model):
        return _logits(model, texts)


def test_save_load_round_trip(organism, texts, parts, tmp_path):
    every = Intervention.none()
    for name, iv in parts.items():
        iv.save(tmp_path / name, model=organism)
        again = Intervention.load(tmp_path / name)
        assert again == iv, name
        with iv.apply(organism):
            want = _logits(organism, texts)
        with again.apply(organism):
            assert torch.equal(_logits(organism, texts), want), name
        every = every + iv
    every.save(tmp_path / "all")
    assert Intervention.load(tmp_path / "all") == every
    meta = (tmp_path / "heads" / "intervention.json").read_text()
    assert organism.fingerprint in meta and (tmp_path / "heads" / "intervention.safetensors").exists()
    with pytest.raises(ArtifactError, match="no saved intervention"):
        Intervention.load(tmp_path / "nothing")


def test_ablate_heads(organism, texts, plain_prompts):
    """Each ablation method replaces exactly the chosen heads' outputs; resample is seeded."""
    from interp.scoring import last_logits, refusal_log_odds

    ref = head_reference(organism, plain_prompts[-8:])
    a, b = (Intervention.ablate_heads([(1, 2)], "resample", ref, seed=2) for _ in range(2))
    with a.apply(organism):
        la = _logits(organism, texts)
    with b.apply(organism):
        assert torch.equal(_logits(organism, texts), la)
    values = torch.full((organism.n_layers, organism.n_heads, organism.d_head), 0.25)
    got = {}
    with Intervention.ablate_heads([(2, 1)], "values", values=values).apply(organism):
        with hooked(organism, [(act_name("z", 2), lambda z, hook: got.setdefault("z", z.clone()))]):
            _logits(organism, texts)
    assert torch.all(got["z"][:, :, 1] == 0.25) and not torch.all(got["z"][:, :, 0] == 0.25)
    with Intervention.ablate_heads([(0, 1)], "mean", ref).apply(organism):
        moved = refusal_log_odds(organism, last_logits(organism, texts))
    assert not torch.allclose(moved, refusal_log_odds(organism, last_logits(organism, texts)))
    with pytest.raises(InputError, match="pass reference="):
        Intervention.ablate_heads([(0, 0)], "mean")
    with pytest.raises(InputError, match="layer 9"):
        Intervention.ablate_heads([(9, 0)], "zero").hooks(organism)


def test_patch_and_scale(organism, texts):
    b = organism.encode(texts)
    src = {}
    with torch.no_grad(), hooked(organism, [(act_name("resid_post", 1), lambda a, hook: src.setdefault("r", a.clone()))]):
        organism.bridge(b.tokens, attention_mask=b.attention_mask)
    base = _logits(organism, texts)
    # patching a run's own activation back in changes nothing; patching another's does
    with Intervention.patch("resid_post", 1, src["r"]).apply(organism):
        assert torch.allclose(_logits(organism, texts), base, atol=1e-6)
    with Intervention.patch("resid_post", 1, src["r"][:, -1].flip(0), positions="last").apply(organism):
        out = _logits(organism, texts)
    real = b.attention_mask.bool()[:, :-1]  # pad positions carry no meaning
    assert torch.equal(out[:, :-1][real], base[:, :-1][real]) and not torch.equal(out[:, -1], base[:, -1])
    with Intervention.of(ScaleActivation("z", [0], 1.0)).apply(organism):
        assert torch.equal(_logits(organism, texts), base)
    got = {}
    with Intervention.scale_heads([(0, 3)], 0.0).apply(organism):
        with hooked(organism, [(act_name("z", 0), lambda z, hook: got.setdefault("z", z.clone()))]):
            _logits(organism, texts)
    assert torch.all(got["z"][:, :, 3] == 0) and got["z"][:, :, 2].abs().sum() > 0


def test_bad_input(organism, parts):
    with pytest.raises(InputError, match="holds operations"):
        Intervention(("rotate",))
    with pytest.raises(InputError, match="unknown activation kind"):
        Intervention.patch("resid", 0, torch.zeros(1))
    with pytest.raises(InputError, match="temperature"):
        Intervention.sharpen(0.0)
    with pytest.raises(InputError, match="does not exist"):
        Intervention.add_direction(torch.ones(organism.d_model), layer=organism.n_layers).hooks(organism)
    assert count_hooks(organism) == 0


def test_weigh_tokens_scales_the_prompt_pass_only(organism, texts, tmp_path):
    """Token Highlighter's soft removal as an Intervention: the chosen tokens' embeddings shrink on
    the prompt pass; weights of 1 are the identity; it saves and loads like every other op."""
    batch = organism.encode(texts[:3])
    ones = torch.ones(batch.tokens.shape)
    base = organism.bridge(batch.tokens, attention_mask=batch.attention_mask)[:, -1]
    with Intervention.weigh_tokens(ones).apply(organism):
        same = organism.bridge(batch.tokens, attention_mask=batch.attention_mask)[:, -1]
    assert torch.equal(same, base)
    w = ones.clone()
    w[:, -4:-1] = 0.1
    step = (batch.tokens[:, :1], batch.attention_mask[:, :1])  # a pass of another length (a cached step)
    plain_step = organism.bridge(step[0], attention_mask=step[1])
    with Intervention.weigh_tokens(w).apply(organism):
        moved = organism.bridge(batch.tokens, attention_mask=batch.attention_mask)[:, -1]
        assert torch.equal(organism.bridge(step[0], attention_mask=step[1]), plain_step)
    assert not torch.allclose(moved, base)
    assert count_hooks(organism) == 0
    iv = Intervention.weigh_tokens(w)
    iv.save(tmp_path / "w")
    assert Intervention.load(tmp_path / "w") == iv
    with pytest.raises(InputError, match="batch, pos"):
        Intervention.weigh_tokens(torch.ones(3))
