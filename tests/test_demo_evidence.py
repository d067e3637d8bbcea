"""The demo keeps every answer it generates (completions.jsonl), and `safety-heads judge` on that
file gives the report's refusal rates exactly; every comparison a verdict rests on carries its
paired difference and interval."""

import json

import pytest

from interp.cli import main

SECTIONS = "baseline,causal,steering,slipping,defenses"
pytestmark = pytest.mark.slow  # one demo of five stages (about a minute on 2 cores)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--out", str(out), "--sections", SECTIONS, "--per-cell", "2", "--n-train", "16"]) == 0
    assert main(["judge", "--completions", str(out / "completions.jsonl"), "--out", str(out / "judged.json")]) == 0
    return json.loads((out / "report.json").read_text()), json.loads((out / "judged.json").read_text()), out


def _is_record(x):
    return isinstance(x, dict) and set(x) == {"rate", "n", "ci95"} and x["n"] > 0 and x["ci95"][0] <= x["rate"] <= x["ci95"][1]


def test_every_generating_stage_keeps_its_answers(demo):
    report, judged, out = demo
    conds = report["completions"]["conditions"]
    lines = (out / "completions.jsonl").read_text().splitlines()
    assert len(lines) - 1 == report["completions"]["rows"] == sum(conds.values())
    prefixes = {k.split(":")[0].split("@")[0] for k in conds}
    assert {"baseline", "causal", "steering", "slipping", "defense"} <= prefixes
    assert {"causal:unablated", "causal:heads", "steering:unsteered", "steering:direction_ablation",
            "steering:direction_addition", "slipping:trace", "defense:none", "defense:sharpening"} <= set(conds)
    assert judged["verdicts_changed"] == 0 and set(judged["conditions"]) == set(conds)


def test_judge_reproduces_the_report(demo):
    report, judged, _ = demo
    c = {k: v["refusal_rate"] for k, v in judged["conditions"].items()}
    base = report["baseline"]["refusal_rate"]
    for key in ("harmful", "harmless", "jailbreak", "jailbreak_harmless"):
        assert base[key] == c["baseline"][key]
    assert _is_record(base["harmful"]) and _is_record(base["jailbreak"]["distractor"]["1"])
    ab = report["causal"]["ablation"]
    assert ab["baseline"]["harmful"]["refusal_rate"] == c["causal:unablated"]["harmful"]
    assert ab["refusal_rate_harmful_after"] == c["causal:heads"]["harmful"]
    assert ab["refusal_rate_harmless_after"] == c["causal:heads"]["harmless"]
    for r in ab["random_heads"]:
        assert r["harmful"] == c[r["condition"]]["harmful"]
    st = report["steering"]
    assert st["direction"]["ablation_harmful_refusal_rate"] == c["steering:direction_ablation"]["harmful"]
    assert st["direction"]["addition_harmless_refusal_rate"] == c["steering:direction_addition"]["harmless"]
    scored = [row for row in st["tradeoff"] if row["measure"].startswith("one-pass")]
    assert scored and all(_is_record(row["harmless"]) for row in scored)  # the curve's other points: scored, not generated
    assert not any(k.startswith("steering:") and f"@{row['strength']:g}" in k and row["method"] in k
                   for row in scored for k in judged["conditions"])
    for row in st["tradeoff"]:
        if row in scored:
            continue
        t = c[row["condition"]]
        assert row["harmful"] == t["harmful"] and row["harmless"] == t["harmless"] and row["jailbreak"] == t["jailbreak_all"]
    for row in report["slipping"]["series"]:
        rr = c["slipping:trace"]["jailbreak"][row["family"]][str(row["strength"])]
        assert row["refusal_rate"] == rr
    for method, rec in report["slipping"]["attack"]["success"].items():  # each attack's final answers
        r = c[rec["condition"]]["jailbreak_all"]
        assert rec["success"]["n"] == r["n"] and rec["success"]["rate"] == pytest.approx(1 - r["rate"], abs=1e-4)
    d = report["defenses"]
    for name in ("none", "sharpening", "smoothllm", "token_highlighter"):
        t = c[f"defense:{name}"]
        assert d[name]["harmful_refusal"] == t["harmful"] and d[name]["harmless_refusal"] == t["harmless"]
        s, r = d[name]["jailbreak_success"], t["jailbreak_all"]
        assert s["n"] == r["n"] and s["rate"] == pytest.approx(1 - r["rate"], abs=1e-4)


def test_verdicts_rest_on_paired_differences(demo):
    report = demo[0]
    comps = [*report["causal"]["ablation"]["comparisons"].values(), *report["steering"]["comparisons"].values(),
             *report["defenses"]["comparisons"].values()]
    assert {"heads_vs_random_harmful", "heads_vs_unablated_harmful"} <= set(report["causal"]["ablation"]["comparisons"])
    assert any(k.startswith("sharpening vs none") for k in report["defenses"]["comparisons"])
    for cmp in comps:
        assert cmp["paired"] and cmp["verdict"]
        if cmp["ci95"] is None:  # a mean over too few prompts: no interval, no call
            assert cmp["verdict"].startswith("too few prompts to call")
            continue
        lo, hi = cmp["ci95"]
        assert lo <= cmp["difference"] <= hi
        assert cmp["verdict"].startswith("too few prompts to call") == (lo <= 0 <= hi)
    assert all("calibrations" in report["steering"] and "at_grid_edge" in v
               for v in report["steering"]["calibrations"].values())
