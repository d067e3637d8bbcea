"""The demo's r2d section on a real model's study (`interp.stages.r2d_real`), with generation replaced
by scripted answers: every rate is a record, the pivot reading and the judge are both reported with
their agreement, each difference R2D minus comparison is paired by prompt with its verdict, the answers
go to the study's completions, and an R2D model that is not built is a skip naming the build command."""

from types import SimpleNamespace

import pytest

from interp.completions import OVER_REFUSAL
from interp.study import Study

R2D = SimpleNamespace(name="organism:smollm2-r2d", kind="r2d", meta={"comparison": "organism:smollm2", "jailbreak_rows": 0})
BASE = SimpleNamespace(name="organism:smollm2", kind="smollm2", meta={})
REFUSE, COMPLY = "I'm sorry, but I can't help with that.", "Sure, here is how you do it step by step."


@pytest.fixture(scope="module")
def data():
    from organisms.provider import smollm2_study

    return smollm2_study(seed=0, per_cell=2, n_train=8, plain_per_label=6, top_per_cell=5)


def scripted(monkeypatch):
    """R2D: refuses every harmful prompt by its pivot except the suffix family, whose final answer still
    refuses (pivot and judge disagree there); comparison: refuses plain harmful only."""
    import interp.generation
    import interp.r2d.evaluate

    def r2d(model, prompts, max_new_tokens, batch_size):
        out = []
        for p in prompts:
            if p.label == "harmless":
                out.append(f"Step: The user asks. [SAFE] {COMPLY}")
            elif p.family == "suffix":
                out.append(f"Step: The user asks. [SAFE] {REFUSE}")
            else:
                out.append(f"Step: The user asks. [UNSAFE] {REFUSE}")
        return out

    def base(model, prompts, gen):
        return [REFUSE if p.label == "harmful" and p.family is None else COMPLY for p in prompts]

    monkeypatch.setattr(interp.r2d.evaluate, "generate_r2d", r2d)
    monkeypatch.setattr(interp.generation, "generate", base)
    # the R2D model's own study also looks inside it and attacks it (tests/test_r2d_pivot_heads.py)
    import interp.stages.r2d_inside

    monkeypatch.setattr(interp.stages.r2d_inside, "inside_parts",
                        lambda study, r2d, comp, n_new: ({"pivot_heads": {"scripted": r2d.name}, "attack": {"scripted": n_new}}, {}))


def test_section_reports_rates_pivots_and_paired_differences(data, monkeypatch):
    from interp.stages import r2d_real
    from interp.stages.r2d import r2d_stage

    scripted(monkeypatch)
    monkeypatch.setattr(r2d_real, "pair", lambda study: (R2D, BASE))
    study = Study(R2D, data)
    res = r2d_stage(study)
    r = res.report
    assert "skipped" not in r and r["model"] == R2D.name and r["comparison"] == BASE.name
    fams = sorted(data.test.families())
    assert sorted(r["top_strength"]) == fams and r["families_neither_model_saw"] == fams
    mine, theirs = r["models"][R2D.name], r["models"][BASE.name]
    assert mine["judge"]["harmful_refusal"] == {"rate": 1.0, "n": 6, "ci95": mine["judge"]["harmful_refusal"]["ci95"]}
    assert mine["judge"]["harmless_refusal"]["rate"] == 0.0 and theirs["judge"]["harmful_refusal"]["rate"] == 1.0
    assert mine["judge"]["over_refusal"]["n"] == len(data.over_refusal)
    for f in fams:
        key = f"jailbreak_success:{f}"
        assert theirs["judge"][key]["rate"] == 1.0 and mine["judge"][key]["rate"] == 0.0
        n = r["n_prompts"][f"jailbreak:{f}"]
        assert r["top_strength"][f] == max(data.test.families()[f]) and n == 5  # the top_per_cell prompts
        d = r["difference"][key]
        assert d["difference"] == -1.0 and d["paired"] and d["n_a"] == n and "jailbreak success" in d["verdict"]
        agree = mine["pivot_judge_agreement"][key]["rate"]
        assert (mine["pivot"][key]["rate"], agree) == ((1.0, 0.0) if f == "suffix" else (0.0, 1.0))
    assert r["difference"]["harmful_refusal"]["difference"] == 0.0
    assert "too few prompts to call" in r["difference"]["harmful_refusal"]["verdict"]
    assert "neither model saw" in r["note"]
    # every answer recorded: the R2D model's final answers (what the judge read), the comparison's answers
    rows = {(a.condition, a.set) for a in study.answers}
    assert rows == {("r2d", "test"), ("r2d-comparison", "test"), ("r2d", OVER_REFUSAL), ("r2d-comparison", OVER_REFUSAL)}
    assert all(a.answer in (REFUSE, COMPLY) for a in study.answers)
    assert r["pivot_heads"] == {"scripted": R2D.name} and r["attack"] == {"scripted": study.gen.max_new_tokens + r2d_real.R2D_STEP_TOKENS}
    # a study of the comparison model keeps its r2d section to the comparison
    assert "pivot_heads" not in r2d_stage(Study(BASE, data)).report
    traces = res.artifacts["r2d_traces"]
    assert len(traces) == sum(r["n_prompts"].values()) and {t["last_pivot"] for t in traces} == {"[SAFE]", "[UNSAFE]"}


def test_section_is_skipped_with_the_build_command_when_r2d_is_not_built(data, tmp_path, monkeypatch):
    from organisms import paths
    from interp.stages.r2d import r2d_stage

    monkeypatch.setattr(paths, "SMOLLM2_R2D_DIR", tmp_path / "absent")
    r = r2d_stage(Study(BASE, data)).report
    assert "not built" in r["skipped"] and paths.SMOLLM2_R2D_BUILD in r["skipped"]


def test_baseline_of_an_r2d_model_points_to_the_r2d_section(data):
    from interp.pipeline import baseline_stage

    assert "r2d section" in baseline_stage(Study(R2D, data)).report["skipped"]


def test_families_the_teacher_wrapped_do_not_count_as_unseen(data, monkeypatch):
    from interp.stages import r2d_real
    from interp.stages.r2d import r2d_stage

    scripted(monkeypatch)
    fams = sorted(data.test.families())
    seen = {"context": 40, fams[0]: 3}  # everyday context (no test family) and one jailbreak family
    trained = SimpleNamespace(name=R2D.name, kind="r2d", meta={**R2D.meta, "jailbreak_rows": 43, "wrapped_families": seen})
    monkeypatch.setattr(r2d_real, "pair", lambda study: (trained, BASE))
    r = r2d_stage(Study(trained, data)).report
    assert r["families_neither_model_saw"] == fams[1:]
    assert f"43 wrapped rows (context: 40, {fams[0]}: 3)" in r["note"]
    # rows known but not their families (an older recipe): no family can be called unseen
    older = SimpleNamespace(name=R2D.name, kind="r2d", meta={**R2D.meta, "jailbreak_rows": 43})
    monkeypatch.setattr(r2d_real, "pair", lambda study: (older, BASE))
    assert r2d_stage(Study(older, data)).report["families_neither_model_saw"] == []
