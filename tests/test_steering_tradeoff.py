"""Trade-off sweeps, strength calibration, heads-vs-layer on the organism, and the demo section (on
the tiny random model, for speed: it checks the plumbing, not the numbers)."""

import json

import pytest
import torch

from interp.generation import GenerationConfig
from interp.hooks import count_hooks
from organisms.data import eval_prompts as make_eval
from interp.scoring import RefusalJudge
from interp.intervention import Intervention
from interp.steering import (compare_heads_vs_layer, fit_head_directions, max_safe_strength, select_heads, split_sets,
                             subsample, sweep, tradeoff_figure, unsteered_point)

GEN = GenerationConfig(max_new_tokens=4, batch_size=64)


@pytest.fixture(scope="module")
def small_sets():
    ev = make_eval(seed=77, per_cell=4, families=["suffix", "distractor"])
    return split_sets(subsample(ev, 2, seed=0))


@pytest.fixture(scope="module")
def dirs_and_heads(organism, plain_prompts):
    hd = fit_head_directions(organism, plain_prompts)
    return hd, select_heads(organism, hd, 4, plain_prompts.filter(label="harmless")[:8], sigmas=1.0)


def test_split_sets(small_sets):
    assert set(small_sets) == {"harmful", "jailbreak", "harmless"}
    assert all(p.family is not None and p.label == "harmful" for p in small_sets["jailbreak"])
    assert all(p.label == "harmless" for p in small_sets["harmless"])


def test_sweep_rows_and_figure(organism, dirs_and_heads, small_sets):
    hd, heads = dirs_and_heads
    rows = sweep(organism, Intervention.steer_heads(hd, heads, 1.0), [0.0, 1.5], small_sets, "hsi", RefusalJudge(), GEN)
    assert count_hooks(organism) == 0
    r0, r1 = rows
    for r in rows:
        assert {"method", "strength", "harmful", "jailbreak", "harmless", "effect", "kl", "utility", "by_family"} <= set(r)
    assert r0["kl"]["harmless"] == pytest.approx(0.0, abs=1e-6)
    assert all(abs(v) < 1e-5 for v in r0["effect"].values())
    # a positive strength raises refusal: scores up on harmless and jailbreak, refusal rates never drop
    assert r1["effect"]["harmless"] > 0 and r1["effect"]["jailbreak"] > 0
    assert r1["jailbreak"] >= r0["jailbreak"] and r1["harmless"] >= r0["harmless"]
    assert r1["kl"]["harmless"] > 0
    assert set(r1["by_family"]["jailbreak"]) == {"suffix", "distractor"}
    rows2 = [dict(r, method="other") for r in rows]
    fig = tradeoff_figure(rows + rows2, x="kl")
    assert len(fig.data) == 2
    json.dumps(rows)  # report-ready


def test_unsteered_point_is_the_unsteered_sweep_row_and_reference(organism, dirs_and_heads, small_sets):
    """One generation pass gives the unsteered row and the reference the other rows are measured
    against: the same as a separate reference pass plus a sweep of Intervention.none()."""
    from interp.steering import Unsteered

    ref, row = unsteered_point(organism, small_sets, RefusalJudge(), GEN)
    old_ref = Unsteered.measure(organism, small_sets)
    (old_row,) = sweep(organism, Intervention.none(), [0.0], small_sets, "unsteered", RefusalJudge(), GEN, old_ref)
    for k in small_sets:
        assert row[k] == old_row[k]
        assert row[f"{k}_score"] == pytest.approx(old_row[f"{k}_score"], abs=1e-4)
        assert row["kl"][k] == 0.0 and row["effect"][k] == 0.0
        assert (ref.logp[k] - old_ref.logp[k]).abs().max() < 1e-4
    assert row["method"] == "unsteered" and row["strength"] == 0.0 and row["by_family"] == old_row["by_family"]
    hd, heads = dirs_and_heads
    (steered,) = sweep(organism, Intervention.steer_heads(hd, heads, 1.5), [1.5], small_sets, "hsi", RefusalJudge(), GEN, ref)
    assert steered["effect"]["harmless"] > 0 and steered["kl"]["harmless"] > 0


def test_max_safe_strength(organism, dirs_and_heads, plain_prompts):
    hd, heads = dirs_and_heads
    harmless = plain_prompts.filter(label="harmless")[:12]
    grid = (0.1, 0.5, 2.0, 8.0)
    a = max_safe_strength(organism, Intervention.steer_heads(hd, heads, 1.0), harmless, grid, 0.1)
    assert a in grid and a < 8.0  # strong steering makes harmless prompts lean to refuse


def test_top_heads_carry_most_of_their_layer(organism, dirs_and_heads, small_sets):
    hd, heads = dirs_and_heads
    out = compare_heads_vs_layer(organism, hd, heads, 1.0, {"harmless": small_sets["harmless"]})
    # robust version of the demo's >= 0.8 claim (measured there on held-out prompts)
    assert out["ratio"]["harmless"] > 0.5


def test_report_stage_runs(tiny, plain_prompts):
    from interp.stages.steering import steering_stage
    from interp.study import Study, StudyData

    ev = make_eval(seed=5, per_cell=1, families=["suffix"])
    train = plain_prompts.filter(label="harmful")[:8].concat(plain_prompts.filter(label="harmless")[:8])
    val = plain_prompts.filter(label="harmful")[8:12].concat(plain_prompts.filter(label="harmless")[8:12])
    study = Study(tiny, StudyData(train, val, ev, provider="test"), gen=GEN)
    res = steering_stage(study)
    out = res.report
    assert count_hooks(tiny) == 0
    assert {"hsi", "layer", "antidote", "direction", "tradeoff", "effect_definition", "figure"} <= set(out)
    assert len(out["hsi"]["heads"]) == 4 and out["antidote"]["sparsity"] == 0.05
    assert {r["method"] for r in out["tradeoff"]} >= {"unsteered", "hsi (heads)", "antidote (5%)"}
    assert out["figure"] == "figures/steering_tradeoff.html" and "steering_tradeoff" in res.figures
    assert res.heads and res.antidote is not None and res.refusal_direction is not None
    json.dumps(out, allow_nan=True)
    # the report states what was measured: recompute its numbers from the objects it hands on
    from interp.evaluate import evaluate_refusal
    from interp.steering import effect
    from interp.stages.steering import _held_out

    assert [tuple(h) for h in out["hsi"]["heads"]] == [tuple(h) for h in res.heads]
    effect_sets = _held_out(ev, plain_n=40, cell_n=4, seed=study.seed)
    hsi = effect(tiny, Intervention.steer_heads(res.head_directions, res.heads, out["hsi"]["sigmas"]), effect_sets["jailbreak"])
    assert out["hsi"]["effect"] == pytest.approx(hsi, abs=2e-4)
    gen_sets = _held_out(ev, plain_n=20, cell_n=2, seed=study.seed + 1)
    with Intervention.ablate_direction(res.refusal_direction).apply(tiny):
        abl = evaluate_refusal(tiny, gen_sets["harmful"], study.judge, study.gen, with_scores=False)
    assert out["direction"]["ablation_harmful_refusal_rate"]["rate"] == round(abl.rate(), 4)
    assert out["direction"]["examples"]["ablation"] == abl.answers[:2]  # the same prompts, the same answers
    plain = evaluate_refusal(tiny, gen_sets["harmless"], study.judge, study.gen, with_scores=False)
    unsteered = next(r for r in out["tradeoff"] if r["method"] == "unsteered")
    assert unsteered["harmless"]["rate"] == round(plain.rate(), 4) and unsteered["effect"]["harmless"] == 0.0
    assert count_hooks(tiny) == 0


def test_stage_steers_with_the_probes_direction_and_selects_none_itself(tiny, plain_prompts, monkeypatch):
    """One Arditi selection (probes.find_refusal_direction): given the probes stage's direction, the
    steering stage uses that very Direction and runs no selection of its own."""
    import interp.stages.steering as rep
    import interp.stages.steering_inputs as inputs
    from interp.study import Study, StudyData
    from probes.directions import mean_difference_direction

    def no_second_selection(*a, **k):
        raise AssertionError("the steering stage ran its own direction selection")

    monkeypatch.setattr(inputs, "find_refusal_direction", no_second_selection)
    ev = make_eval(seed=5, per_cell=1, families=["suffix"])
    train = plain_prompts.filter(label="harmful")[:8].concat(plain_prompts.filter(label="harmless")[:8])
    val = plain_prompts.filter(label="harmful")[8:12].concat(plain_prompts.filter(label="harmless")[8:12])
    given = mean_difference_direction(tiny, train.filter(label="harmful"), train.filter(label="harmless"), 1)
    res = rep.steering_stage(Study(tiny, StudyData(train, val, ev, provider="test"), gen=GEN), direction=given)
    assert res.refusal_direction is given
    d = res.report["direction"]
    assert d["source"] == "the probes stage's direction" and d["layer"] == 1 and d["position"] == -1
    assert count_hooks(tiny) == 0


def test_unsteered_point_reuses_answers_already_generated(organism, eval_prompts):
    """Given the unsteered answers (the baseline stage's), the unsteered row is the same without a
    second generation: one prompt pass gives the reference distribution."""
    from interp.generation import generate
    from interp.steering.tradeoff import split_sets, unsteered_point

    sets = split_sets(eval_prompts.filter(family="distractor", strength=2).concat(eval_prompts.filter(family=None))[:24])
    u1, row1 = unsteered_point(organism, sets, RefusalJudge(), GEN)
    answers = {k: generate(organism, v, GEN) for k, v in sets.items()}
    u2, row2 = unsteered_point(organism, sets, RefusalJudge(), GEN, answers)
    for k in sets:
        assert row1[k] == row2[k] and row1["per_prompt"][k]["answers"] == row2["per_prompt"][k]["answers"]
        assert torch.allclose(u1.logp[k], u2.logp[k], atol=1e-4)
