"""Interventions as artifacts: a study saves every steering method at its chosen point under
OUT/interventions/, and `safety-heads apply` / `eval --intervention` give its numbers back."""

import json
import shutil

import pytest

from interp.cli import main


@pytest.fixture(scope="module")
def steered(tmp_path_factory):
    out = tmp_path_factory.mktemp("steer")
    assert main(["steer", "--out", str(out), "--per-cell", "4"]) == 0
    return out, json.loads((out / "report.json").read_text())


def _apply(capsys, out, *args) -> dict:
    capsys.readouterr()
    assert main(["apply", "--out", str(out), *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_every_steering_method_is_saved_with_its_card(steered):
    from interp.intervention import Intervention

    out, report = steered
    names = {"hsi", "layer", "antidote", "antidote_dense", "direction_ablation", "direction_addition"}
    assert names <= set(report["interventions"])
    for name in names:
        d = out / "interventions" / name
        card = json.loads((d / "card.json").read_text())
        iv = Intervention.load(d)
        if card["strength"] is not None:
            assert iv.strength == pytest.approx(card["strength"]) and iv.unit == card["unit"]
        assert card["model_fingerprint"] and card["max_new_tokens"] == report["config"]["max_new_tokens"]
    assert json.loads((out / "interventions/hsi/card.json").read_text())["strength"] == pytest.approx(
        report["steering"]["hsi"]["sigmas"], abs=1e-4)


def test_apply_reproduces_the_reports_rates(steered, capsys, tmp_path):
    out, report = steered
    st = report["steering"]
    for name, method in (("hsi", "hsi (heads)"), ("layer", "layer (all heads)"), ("antidote", "antidote (5%)")):
        card = json.loads((out / "interventions" / name / "card.json").read_text())
        row = next(r for r in st["tradeoff"] if r["method"] == method and r["strength"] == round(card["strength"], 4))
        got = _apply(capsys, tmp_path / name, "--intervention", str(out / "interventions" / name))
        rates = got["conditions"][name]["refusal_rate"]
        for k in ("harmful", "jailbreak", "harmless"):
            assert rates[k] == row[k], (name, k)  # the report's record: rate, n and interval
            assert rates[k] == card["measured"][k]
        assert (tmp_path / name / "completions.jsonl").is_file()
    got = _apply(capsys, tmp_path / "abl", "--intervention", str(out / "interventions/direction_ablation"))
    assert got["conditions"]["direction_ablation"]["refusal_rate"]["harmful"] == st["direction"]["ablation_harmful_refusal_rate"]
    got = _apply(capsys, tmp_path / "add", "--intervention", str(out / "interventions/direction_addition"))
    assert got["conditions"]["direction_addition"]["refusal_rate"]["harmless"] == st["direction"]["addition_harmless_refusal_rate"]


def test_several_interventions_in_one_stacked_pass_match_each_alone(steered, capsys, tmp_path):
    from interp.completions import read_completions

    out, _ = steered
    ivs = [str(out / "interventions" / n) for n in ("hsi", "antidote")]
    prompts = str(out / "interventions/hsi/prompts.jsonl")
    got = _apply(capsys, tmp_path / "both", "--intervention", ivs[0], "--intervention", ivs[1], "--baseline",
                 "--prompts", prompts)
    assert list(got["conditions"]) == ["baseline", "hsi", "antidote"]
    _, rows = read_completions(tmp_path / "both/completions.jsonl")
    for name, iv in zip(("hsi", "antidote"), ivs):
        _apply(capsys, tmp_path / name, "--intervention", iv, "--prompts", prompts)
        _, alone = read_completions(tmp_path / name / "completions.jsonl")
        assert [r.answer for r in rows if r.condition == name] == [r.answer for r in alone]
    # the unmodified model and the steered ones differ: the stack did not apply one intervention to every row
    assert got["conditions"]["baseline"]["refusal_rate"] != got["conditions"]["hsi"]["refusal_rate"]


def test_eval_under_an_intervention(steered, capsys):
    out, _ = steered
    capsys.readouterr()
    assert main(["eval", "--per-cell", "2"]) == 0
    base = json.loads(capsys.readouterr().out)
    assert main(["eval", "--per-cell", "2", "--intervention", str(out / "interventions/direction_ablation")]) == 0
    under = json.loads(capsys.readouterr().out)
    assert under["intervention"]["direction_ablation"]["method"] == "direction ablation"
    assert base["refusal_rate"]["harmful"]["rate"] > 0.5 > under["refusal_rate"]["harmful"]["rate"]


def test_an_intervention_of_another_model_is_refused(steered, capsys, tmp_path):
    out, _ = steered
    d = tmp_path / "hsi"
    shutil.copytree(out / "interventions/hsi", d)
    meta = json.loads((d / "intervention.json").read_text())
    meta["model_fingerprint"] = "0" * 16
    (d / "intervention.json").write_text(json.dumps(meta))
    assert main(["apply", "--out", str(tmp_path / "x"), "--intervention", str(d)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "does not fit this model" in err
    assert main(["apply", "--out", str(tmp_path / "x"), "--intervention", str(tmp_path)]) == 2
    assert "not a saved intervention" in capsys.readouterr().err


def test_defenses_are_saved_and_apply_reproduces_their_rates(tmp_path, capsys):
    out = tmp_path / "slip"
    assert main(["slipping", "--out", str(out), "--per-cell", "2"]) == 0
    report = json.loads((out / "report.json").read_text())
    for name in ("sharpening", "smoothllm", "token_highlighter"):
        d = out / "interventions" / name
        assert (d / ("intervention.json" if name == "sharpening" else "defense.json")).is_file()
        got = _apply(capsys, tmp_path / name, "--intervention", str(d))
        key = name if name == "sharpening" else f"defense:{name}"
        table = got["conditions"][key]["table"]["refusal_rate"]
        assert table["harmful"] == report["defenses"][name]["harmful_refusal"], name
        assert table["harmless"] == report["defenses"][name]["harmless_refusal"], name
