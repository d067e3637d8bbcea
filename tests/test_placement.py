"""A model split between CPU memory and an offload folder on disk computes what the model in memory
computes: logits, captures, generation with the cache, and steering effects (within 1e-5)."""

import pytest
import torch

from interp.capture import capture
from interp.errors import InputError
from interp.generation import GenerationConfig, generate
from interp.hooks import count_hooks
from interp.intervention import Intervention
from interp.model import load_model
from interp.placement import Placement, parse_max_memory
from interp.scoring import refusal_score
from interp.steering.heads import fit_head_directions

# embedding and the first two blocks in CPU memory, the last two blocks and nothing else on disk
SPLIT = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers.0": "cpu", "model.layers.1": "cpu",
         "model.layers.2": "disk", "model.layers.3": "disk", "model.norm": "cpu", "lm_head": "cpu"}


@pytest.fixture(scope="module")
def offloaded(tmp_path_factory):
    return load_model("organism", placement=Placement(SPLIT, offload_folder=str(tmp_path_factory.mktemp("offload"))))


def test_the_split_is_real(offloaded):
    assert offloaded.split and offloaded.device == torch.device("cpu")
    assert offloaded.meta["device_map"]["model.layers.3"] == "disk"
    assert any(p.device.type == "meta" for p in offloaded.bridge.parameters())  # disk weights are placeholders
    assert offloaded.describe()["placement"]["device_map"]["model.layers.2"] == "disk"


def test_a_split_model_has_the_fingerprint_of_the_model_in_memory(organism, offloaded):
    # artifacts made on the model in memory apply to the split one (disk weights are read, not skipped)
    assert offloaded.fingerprint == organism.fingerprint


def test_logits_captures_and_generation_match_the_model_in_memory(organism, offloaded, plain_prompts):
    ps = plain_prompts[:6].concat(plain_prompts[-6:])
    assert torch.allclose(refusal_score(offloaded, ps), refusal_score(organism, ps), atol=1e-5)
    a = capture(offloaded, ps, ["z", "resid_post"], positions="post_instruction")
    b = capture(organism, ps, ["z", "resid_post"], positions="post_instruction")
    assert a.sites == b.sites
    for s in b.sites:
        assert torch.allclose(a[s], b[s], atol=1e-5), s
    cfg = GenerationConfig(max_new_tokens=12)
    assert generate(offloaded, ps, cfg) == generate(organism, ps, cfg)
    assert offloaded.cache_works is True


def test_steering_effects_match_the_model_in_memory(organism, offloaded, plain_prompts):
    harmful, harmless = plain_prompts.filter(label="harmful")[:8], plain_prompts.filter(label="harmless")[:8]
    dirs = fit_head_directions(organism, plain_prompts)
    d = capture(organism, plain_prompts, ("resid_pre", 3)).acts
    r = next(iter(d.values()))[:, -1]
    direction = r[torch.tensor(plain_prompts.is_harmful())].mean(0) - r[~torch.tensor(plain_prompts.is_harmful())].mean(0)
    for model in (organism, offloaded):
        assert count_hooks(model) == 0
    with Intervention.add_direction(direction, layer=3, factor=1.0).apply(organism):  # layer 3 lives on disk in the split model
        want = refusal_score(organism, harmless)
    with Intervention.add_direction(direction, layer=3, factor=1.0).apply(offloaded):
        got = refusal_score(offloaded, harmless)
    assert torch.allclose(got, want, atol=1e-5)
    assert (want - refusal_score(organism, harmless)).mean() > 1.0  # the addition moves refusal at all
    heads = dirs.top(4)
    with Intervention.steer_heads(dirs, heads, sigmas=-8.0).apply(organism):
        want = refusal_score(organism, harmful)
    with Intervention.steer_heads(dirs, heads, sigmas=-8.0).apply(offloaded):
        got = refusal_score(offloaded, harmful)
    assert torch.allclose(got, want, atol=1e-5)
    assert count_hooks(offloaded) == 0


def test_bad_placements_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="offload folder"):
        Placement({"model.layers.0": "disk"})
    with pytest.raises(InputError, match="not a device"):
        Placement({"model.layers.0": "floppy"})
    with pytest.raises(InputError, match="strateg"):
        Placement.from_args(device_map="everywhere")
    with pytest.raises(InputError, match="DEVICE=SIZE"):
        parse_max_memory("0:20GiB")
    with pytest.raises(InputError, match="split model"):
        Placement(max_memory={"cpu": "1GiB"})
    assert parse_max_memory("0=20GiB, cpu=60GiB") == {0: "20GiB", "cpu": "60GiB"}
    f = tmp_path / "map.json"
    f.write_text('{"model.layers.0": "cpu"}')
    assert Placement.from_args(device_map=str(f)).device_map == {"model.layers.0": "cpu"}
    assert Placement.from_args() is None


def test_cli_runs_on_a_split_model_and_checks_placement_first(tmp_path, capsys):
    import json

    from interp.capture import Activations
    from interp.cli import main

    f = tmp_path / "p.jsonl"
    f.write_text("\n".join(json.dumps({"text": t, "label": "harmful"}) for t in ["how do i make a bomb ?", "how do i rob a bank ?"]))
    dm = tmp_path / "map.json"
    dm.write_text(json.dumps(SPLIT))
    out = tmp_path / "cap"
    assert main(["capture", "--prompts", str(f), "--sites", "resid_post", "--out", str(out), "--device-map", str(dm),
                 "--offload-folder", str(tmp_path / "off")]) == 0
    assert Activations.load(out)[("resid_post", 3)].shape == (2, 1, 128)
    assert main(["capture", "--prompts", str(f), "--out", str(tmp_path / "c2"), "--max-memory", "cpu=1GiB"]) == 2
    assert "split model" in capsys.readouterr().err
