"""Runs that build on each other: --from DIR reuses an earlier run's heads, direction and causal
recommendation (checked against the model and the data); --heads and --direction name them by hand."""

import json
import shutil

import pytest

from interp.cli import main

SECTIONS = "heads,directions,causal,steering"


@pytest.fixture(scope="module")
def earlier(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--out", str(out), "--per-cell", "2", "--sections", SECTIONS]) == 0
    return out, json.loads((out / "report.json").read_text())


def _boom(*a, **k):
    raise AssertionError("this stage was given and must not run")


def test_steer_from_an_earlier_run_reuses_its_heads_and_direction(earlier, tmp_path, capsys, monkeypatch):
    src, before = earlier
    monkeypatch.setattr("interp.stages.probes.probe_stage", _boom)
    monkeypatch.setattr("interp.stages.causal.causal_stage", _boom)
    out = tmp_path / "steer"
    capsys.readouterr()
    assert main(["steer", "--from", str(src), "--per-cell", "2", "--out", str(out)]) == 0
    cap = capsys.readouterr()
    json.loads(cap.out)  # progress on stderr, the JSON alone on stdout
    said = cap.err
    assert "safety-heads: heads+directions: given (" in said and "safety-heads: causal: given (" in said
    assert "heads+directions: done in 0 s (given, not recomputed)" in said and "causal: done in 0 s (given, not recomputed)" in said
    assert "causal: step 1/" not in said and "steering: step 1/" in said  # the causal search did not run; steering did
    after = json.loads((out / "report.json").read_text())
    assert after["given"]["ranking"].startswith(str(src))
    assert after["causal"]["recommended_heads"] == before["causal"]["recommended_heads"]
    assert after["directions"]["chosen"] == before["directions"]["chosen"]
    a, b = after["steering"], before["steering"]
    assert a["hsi"]["heads"] == b["hsi"]["heads"] and a["hsi"]["sigmas"] == b["hsi"]["sigmas"]
    for k in ("ablation_harmful_refusal_rate", "addition_harmless_refusal_rate", "layer", "norm"):
        assert a["direction"][k] == b["direction"][k]
    assert a["tradeoff"] == b["tradeoff"]
    assert (out / "summary.md").is_file() and (out / "figures/heads_accuracy.html").is_file()


def test_another_model_or_other_data_is_refused_in_one_line(earlier, tmp_path, capsys):
    src, report = earlier
    other = tmp_path / "other"
    shutil.copytree(src, other)
    report = json.loads(json.dumps(report))
    report["model"]["fingerprint"] = "0" * 16
    (other / "report.json").write_text(json.dumps(report))
    assert main(["steer", "--from", str(other), "--per-cell", "2", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("safety-heads: error: --from") and "fingerprint" in err[-1]
    assert main(["steer", "--from", str(src), "--per-cell", "3", "--out", str(tmp_path / "y")]) == 2
    assert "split(s) hold other prompts" in capsys.readouterr().err
    assert main(["steer", "--from", str(tmp_path), "--out", str(tmp_path / "z")]) == 2
    assert "no report.json or causal.json" in capsys.readouterr().err


def test_heads_and_direction_named_by_hand(earlier, tmp_path, capsys, monkeypatch):
    src, before = earlier
    monkeypatch.setattr("interp.stages.causal.causal_stage", _boom)
    out = tmp_path / "named"
    assert main(["steer", "--heads", "0.1,2.3,1.0,1.1,3.2", "--direction", str(src / "artifacts/direction.json"),
                 "--per-cell", "2", "--sections", "steering", "--out", str(out)]) == 0
    after = json.loads((out / "report.json").read_text())
    # every named head is steered (more than the 4 the causal recommendation is cut to), and said to be named
    assert after["steering"]["hsi"]["heads"] == [[0, 1], [2, 3], [1, 0], [1, 1], [3, 2]]
    assert after["steering"]["hsi"]["heads_source"] == "the heads named by hand (--heads)"
    assert after["steering"]["direction"]["layer"] == before["steering"]["direction"]["layer"]
    assert after["given"]["recommended_heads"].startswith("--heads")
    assert main(["steer", "--heads", "9.0", "--out", str(tmp_path / "bad")]) == 2
    assert "not a head of" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["steer", "--heads", "nine", "--out", str(tmp_path / "bad")])
    assert "LAYER.HEAD" in capsys.readouterr().err


def test_causal_from_a_run_with_the_same_settings_recomputes_nothing(earlier, tmp_path, capsys, monkeypatch):
    src, before = earlier
    monkeypatch.setattr("interp.stages.causal.causal_stage", _boom)
    out = tmp_path / "causal"
    capsys.readouterr()
    assert main(["causal", "--from", str(src), "--per-cell", "2", "--out", str(out)]) == 0
    cap = capsys.readouterr()
    assert "safety-heads: causal: given (from" in cap.err and "recommended_heads" in json.loads(cap.out)
    saved = json.loads((out / "causal.json").read_text())
    assert saved["recommended_heads"] == before["causal"]["recommended_heads"]
    assert saved["reused_from"] == str(src) and (out / "summary.md").is_file()
