"""The demo's sizes: the report's rows carry the sizes configured (plain requests per label, harmful
prompts at each family's strongest strength), and the real-model defaults meet what a claim needs."""

import json

import pytest

from interp.cli import main
from interp.study import CLAIM_SIZES, DEMO_SIZES, StudyConfig


def test_real_model_defaults_carry_a_claim():
    real = DEMO_SIZES["real"]
    assert real["plain_per_label"] >= CLAIM_SIZES["plain_per_label"] == 32
    assert real["top_per_cell"] >= CLAIM_SIZES["top_per_cell"] == 16


def test_sizes_follow_per_cell_when_given_and_the_demo_scale_otherwise(organism):
    c = StudyConfig(per_cell=3).resolved(organism)
    assert (c.per_cell, c.plain_per_label, c.top_per_cell) == (3, 3, 3)
    c = StudyConfig().resolved(organism)
    toy = DEMO_SIZES["toy"]
    assert (c.per_cell, c.plain_per_label, c.top_per_cell) == (toy["per_cell"], toy["plain_per_label"], toy["top_per_cell"])
    c = StudyConfig(per_cell=2, plain_per_label=5, top_per_cell=4).resolved(organism)
    assert (c.per_cell, c.plain_per_label, c.top_per_cell) == (2, 5, 4)


@pytest.mark.slow
def test_report_sizes_follow_the_configured_sizes(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--sections", "baseline,causal,steering", "--per-cell", "2",
                 "--plain-per-label", "6", "--top-per-cell", "4", "--n-train", "16"]) == 0
    r = json.loads((out / "report.json").read_text())
    assert r["config"]["plain_per_label"] == 6 and r["config"]["top_per_cell"] == 4
    base = r["baseline"]["refusal_rate"]
    assert base["harmful"]["n"] == base["harmless"]["n"] == 6
    for fam, row in base["jailbreak"].items():
        strengths = sorted(int(s) for s in row)
        assert row[str(strengths[-1])]["n"] == 4, fam  # the strongest cell, harmful
        assert all(row[str(s)]["n"] == 2 for s in strengths[1:-1]), fam  # the rest of the curve at per_cell
        assert all(v["n"] == 2 for k, v in base["jailbreak_harmless"][fam].items() if k != "0")
    ab = r["causal"]["ablation"]
    assert ab["refusal_rate_harmful_after"]["n"] == ab["refusal_rate_harmless_after"]["n"] == 6
    assert ab["comparisons"]["heads_vs_random_harmful"]["n_a"] == 6
    st = r["steering"]
    assert st["direction"]["ablation_harmful_refusal_rate"]["n"] == 6
    assert st["direction"]["addition_harmless_refusal_rate"]["n"] == 6
    for row in st["tradeoff"]:
        assert row["harmful"]["n"] == row["harmless"]["n"] == 6, row
    ids = r["data"]["splits"]["test"]["ids"]
    assert len(ids) == len(set(ids))
