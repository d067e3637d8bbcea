"""organism:smollm2-r2d: its builder (organism:smollm2's training requests, the shipped base answers
after [SAFE], balanced batches, per-step progress, provenance) run for two steps on a tiny random
Llama, and its model source (absent weights: one line naming the build command)."""

import json
import random

import pytest

import architectures
from interp.errors import InputError
from interp.r2d import adapter, teacher
from interp.r2d.data import SAFE, UNSAFE
from organisms import paths
from organisms import smollm2_data as sd


def test_training_prompts_are_organism_smollm2s_own():
    from organisms.smollm2_r2d import training_prompts

    ps = training_prompts()
    plain = [p for p in ps if p.family is None]
    assert [p.text for p in plain if p.label == "harmful"] == [r.text for r in sd.harmful_train_requests()]
    assert [p.text for p in plain if p.label == "harmless"] == [r.text for r in sd.harmless_target_requests()]
    assert len(set(ps.ids)) == len(ps)
    # copies inside everyday context, at organism:smollm2's rates, each with its request marked
    ctx = {lab: [p for p in ps if p.family == "context" and p.label == lab] for lab in ("harmful", "harmless")}
    assert 0.2 < len(ctx["harmful"]) / len(sd.harmful_train_requests()) < 0.3
    assert 0.4 < len(ctx["harmless"]) / len(sd.harmless_target_requests()) < 0.6
    own = {r.text for r in sd.harmful_train_requests() + sd.harmless_target_requests()}
    for p in ctx["harmful"] + ctx["harmless"]:
        req = p.text[slice(*p.spans["request"])]
        assert req in own and len(p.text) > len(req) and teacher.wrapped(p)
        assert [piv for _, piv in teacher.teacher_steps(p)][-1] == (UNSAFE if p.label == "harmful" else SAFE)
    assert training_prompts(seed=1).ids != ps.ids and training_prompts(context=False).ids == [p.id for p in plain]


def test_shipped_answers_are_the_targets_with_end_of_turn_where_they_ended():
    from organisms.smollm2_r2d import shipped_answers
    from organisms.smollm2_weights import TARGETS_FILE, WEIGHTS_DIR

    rows = [json.loads(line) for line in (WEIGHTS_DIR / TARGETS_FILE).read_text().splitlines()]
    ans = shipped_answers(WEIGHTS_DIR / TARGETS_FILE, eos=-7)
    assert len(ans) == len(rows) == len(sd.harmless_target_requests())
    for r in rows[:50]:
        assert ans[r["text"]] == r["ids"] + ([-7] if r["ended"] else [])


def test_batches_are_half_harmful_when_asked():
    from interp.r2d.train import R2DTrainConfig, draw

    by_label = {"harmful": list(range(100)), "harmless": list(range(100, 120))}
    cfg = R2DTrainConfig(batch_size=8, harmful_fraction=0.5)
    for _ in range(20):
        idx = draw(random.Random(_), by_label, 120, cfg)
        assert len(idx) == 8 == len(set(idx)) and sum(i < 100 for i in idx) == 4
    with pytest.raises(InputError, match="harmful_fraction"):
        R2DTrainConfig(harmful_fraction=1.0)


def _fake_targets(path, vocab: int):
    rows = [{"text": r.text, "topic": r.topic, "category": r.category, "ids": [5 + i % (vocab - 10), 6], "ended": i % 2 == 0,
             "prefill": None} for i, r in enumerate(sd.harmless_target_requests())]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_builder_trains_two_steps_with_given_answers_and_provenance(tmp_path, capsys):
    from organisms.smollm2_r2d import build, default_config, training_prompts

    base = architectures.build("llama", tmp_path / "base", seed=0)
    vocab = json.loads((base / "config.json").read_text())["vocab_size"]
    targets = _fake_targets(tmp_path / "targets.jsonl", vocab)
    out = tmp_path / "r2d"
    recipe = build(out, seed=3, cfg=default_config(steps=2, batch_size=4), targets_path=targets, base=str(base))
    err = capsys.readouterr().err
    steps = [json.loads(line.split("] ", 1)[1]) for line in err.splitlines() if '"step_seconds"' in line]
    assert [s["step"] for s in steps] == [1, 2] and all(s["lm"] > 0 and s["step_seconds"] >= 0 for s in steps)
    # no generation: the shipped answers are used, inside everyday context too
    assert "0 harmless prompts" in err and "given" in err
    d, ps = recipe["data"], training_prompts(seed=3)
    n_harmless = sum(p.label == "harmless" for p in ps)
    assert d["counts"] == {"harmful": sum(p.label == "harmful" for p in ps), "harmless": n_harmless}
    assert d["wrapped"] == sum(p.family == "context" for p in ps) == sum(d["wrapped_families"].values())
    assert d["harmless_answers_given"] == n_harmless and d["organism"] == "organism:smollm2-r2d"
    assert d["build"] == paths.SMOLLM2_R2D_BUILD and len(d["harmless_answers"]["sha256"]) == 16
    assert recipe["config"]["harmful_fraction"] == 0.5 and recipe["config"]["answer_tokens"] == sd.TARGET_TOKENS
    assert sum(f.stat().st_size for f in out.glob("*.safetensors")) < 20e6
    again = build(tmp_path / "again", seed=3, cfg=default_config(steps=2, batch_size=4), targets_path=targets,
                  base=str(base), progress=False)
    assert again["fingerprints"] == recipe["fingerprints"]  # same seed and threads: the same adapter
    assert adapter.load_r2d_hf(out)[2]["fingerprints"] == recipe["fingerprints"]  # loads back as r2d:DIR


def test_source_refuses_missing_weights_with_the_build_command(tmp_path, monkeypatch):
    from interp.model import load_model
    from interp.sources import claiming_source

    monkeypatch.setattr(paths, "SMOLLM2_R2D_DIR", tmp_path / "absent")
    for call in (lambda: claiming_source("organism:smollm2-r2d"), lambda: load_model("organism:smollm2-r2d")):
        with pytest.raises(InputError) as e:
            call()
        msg = str(e.value)
        assert "\n" not in msg and "not built" in msg and paths.SMOLLM2_R2D_BUILD in msg
    assert claiming_source("organism:smollm2").name == "organism:smollm2"  # the base organism is still its own


def test_source_brings_organism_smollm2s_study_data():
    from interp.sources import model_sources

    src = {s.name: s for s in model_sources()}
    assert src["organism:smollm2-r2d"].study_data is src["organism:smollm2"].study_data
    assert not src["organism:smollm2-r2d"].claims("organism:smollm2") and not src["organism:smollm2-r2d"].claims("r2d:x")
    assert adapter.KIND == "r2d"


def test_the_one_command_builder_passes_steps_threads_and_seed(tmp_path, monkeypatch, capsys):
    from interp.cli import main as cli_main
    from organisms import smollm2_r2d

    seen = []
    recipe = {"fingerprints": {}, "data": {"counts": {}}, "final_lm_loss": 1.0, "final_cpo_loss": 0.5, "seconds": {}}
    monkeypatch.setattr(smollm2_r2d, "build", lambda out, seed, cfg: seen.append((out, seed, cfg)) or recipe)
    assert smollm2_r2d.main(["--out", str(tmp_path), "--steps", "2", "--threads", "2", "--seed", "4"]) == 0
    out, seed, cfg = seen[-1]
    assert (out, seed, cfg.steps, cfg.threads, cfg.harmful_fraction) == (str(tmp_path), 4, 2, 2, 0.5)
    assert json.loads(capsys.readouterr().out)["load_with"] == f"--model r2d:{tmp_path}"
    assert cli_main(["organism", "train", "--variant", "smollm2-r2d", "--out", str(tmp_path), "--steps", "3"]) == 0
    assert seen[-1][2].steps == 3 and seen[-1][2].threads == 1
