"""benchmarks/claims_table.py: the claims page from demo reports. A verdict rests on the interval
of the difference the report gives; a missing section says "not measured" with its reason; a
calibration at its grid edge is said; every number on the page is one the report holds."""

import copy
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("claims_table", ROOT / "benchmarks" / "claims_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ct = _load()


def R(rate, n, lo, hi):
    return {"rate": rate, "n": n, "ci95": [lo, hi]}


def D(diff, lo, hi, n=32):
    return {"difference": diff, "ci95": [lo, hi], "n_a": n, "n_b": n, "paired": True, "method": "newcombe paired"}


def report() -> dict:
    """A small report in the demo's shape (the keys the claims are read from)."""
    cal = {"strength": 0.5, "at_grid_edge": False, "edge": None, "extended": 0, "grid": [0.05, 7.76]}
    defense = {"jailbreak_success": R(0.6, 40, 0.45, 0.73), "harmful_refusal": R(1.0, 32, 0.89, 1.0)}
    return {
        "model": {"name": "toy", "n_layers": 4, "n_heads": 8, "n_kv_heads": 2, "d_model": 128},
        "config": {"model": "organism", "seed": 0, "max_new_tokens": 12, "per_cell": 20, "n_train": 64,
                   "plain_per_label": 20, "top_per_cell": 20},
        "data": {"sizes": {"train": 194, "val": 47, "test": 1120}}, "judge": {"type": "substring", "n_phrases": 30},
        "timings": {"total": 103.34},
        "steering": {
            "direction": {"ablation_harmful_refusal_rate": R(0.05, 32, 0.0089, 0.2361),
                          "addition_harmless_refusal_rate": R(0.97, 32, 0.84, 0.99), "site": "resid_pre", "layer": 3,
                          "position": -1, "norm_fraction": 0.0559},
            "comparisons": {"direction ablation vs none: harmful": D(-0.95, -0.9911, -0.7038),
                            "direction addition vs none: harmless": D(0.97, 0.81, 0.995),
                            "hsi (heads) vs layer (all heads): jailbreak": D(-0.0185, -0.0764, 0.0341)},
            "tradeoff": [{"method": "unsteered", "strength": 0.0, "harmful": R(1.0, 32, 0.8929, 1.0),
                          "jailbreak": R(0.5185, 54, 0.3885, 0.6461), "harmless": R(0.0, 32, 0.0, 0.1072)}],
            "hsi": {"heads": [[0, 2], [1, 5]], "sigmas": 0.571, "effect": 5.3314},
            "layer": {"layers": [0, 1], "effect": 5.4038, "ratio_heads_to_layer": 0.9866},
            "antidote": {"sparsity": 0.05, "norm_fraction": 0.4592, "effect": 3.9919, "dense_norm_fraction": 0.1617,
                         "dense_effect": 5.381, "ratio_sparse_to_dense": 0.7419, "dense_effect_same_norm_fraction": 12.0941,
                         "best_safe_jailbreak_gain": None},
            "calibrations": {"hsi_sigmas": cal, "antidote_norm_fraction": cal, "antidote_dense_norm_fraction": cal},
            "calibration": "each method's strength: the largest grid value within the harmless budget"},
        "defenses": {"none": defense, "smoothllm": {**defense, "jailbreak_success": R(0.9, 40, 0.77, 0.96)},
                     "comparisons": {"smoothllm vs none: jailbreak success": D(0.3, 0.12, 0.45, 40)}},
        "r2d": {"skipped": "the R2D organism is compared with the base organism on the organism's own prompts only"},
    }


def cell(rep, claim):
    read = next(r for c, _, r in ct.CLAIMS if c == claim)
    return read(rep)


def test_the_interval_of_the_difference_decides():
    rep = report()
    assert ct.verdict(cell(rep, "Refusal direction: ablation")) == "holds"  # below 0, as the claim predicts
    assert ct.verdict(cell(rep, "Refusal direction: addition")) == "holds"  # above 0, as predicted
    assert ct.verdict(cell(rep, "HSI heads vs their layer")) == "too few prompts to call"  # contains 0
    assert ct.verdict(cell(rep, "SmoothLLM")) == "fails"  # raises jailbreak success: the other side
    flipped = copy.deepcopy(rep)
    flipped["steering"]["comparisons"]["direction ablation vs none: harmful"] = D(0.2, 0.05, 0.4)
    assert ct.verdict(cell(flipped, "Refusal direction: ablation")) == "fails"
    flipped["steering"]["comparisons"]["direction ablation vs none: harmful"] = D(-0.1, -0.3, 0.02)
    assert ct.verdict(cell(flipped, "Refusal direction: ablation")) == "too few prompts to call"


def test_two_rates_without_a_difference_are_decided_by_their_own_intervals():
    rep = report()
    rep["slipping"] = {"attack": {"success": {"guided": {"success": R(1.0, 3, 0.4385, 1.0)},
                                              "random": {"success": R(0.0, 3, 0.0, 0.5615)}}}}
    assert ct.verdict(cell(rep, "Logit-guided attack vs random search")).startswith("too few prompts to call")
    rep["slipping"]["attack"]["success"]["guided"]["success"] = R(1.0, 32, 0.8929, 1.0)
    rep["slipping"]["attack"]["success"]["random"]["success"] = R(0.1, 32, 0.03, 0.25)
    assert ct.verdict(cell(rep, "Logit-guided attack vs random search")).startswith("holds")


def test_missing_sections_say_not_measured_with_the_reason():
    page = ct.page([("organism", report(), "out/toy")])
    rows = {line.split("|")[1].strip(): line for line in page.splitlines() if line.startswith("| **")}
    causal = rows[next(k for k in rows if "Causal heads" in k)]
    assert "not measured: the report has no causal section" in causal
    r2d = rows[next(k for k in rows if "Reasoning-to-Defend" in k)]
    assert "not measured: the R2D organism is compared with the base organism" in r2d
    assert "not measured" in rows[next(k for k in rows if "sharpening" in k)]
    # a section without an interval is not called, and says so
    assert "not called" in rows[next(k for k in rows if "sparse vs dense" in k)]
    assert "not called: no judged sweep point" in rows[next(k for k in rows if "best safety-utility" in k)]


def test_a_calibration_at_its_grid_edge_is_said():
    rep = report()
    assert "grid edge" not in ct.page([("organism", rep, "d")])
    rep["steering"]["calibrations"]["hsi_sigmas"] = {"strength": 0.05, "at_grid_edge": True, "edge": "bottom"}
    c = ct.render_cell(cell(rep, "HSI heads vs their layer"), "cmd")
    assert "head steering calibration at its grid edge (bottom edge)" in c


def test_each_cell_names_the_command_and_one_table_holds_both_organisms():
    page = ct.page([("organism", report(), "out/toy"), ("organism:smollm2", report(), "out/smol")])
    table = [line for line in page.splitlines() if line.startswith("|")]
    assert table[0] == "| claim | `organism` | `organism:smollm2` |"
    assert len(table) == 2 + len(ct.CLAIMS)
    assert all(line.count("`safety-heads demo --model organism --max-new-tokens 12 --out out/toy`") == 1
               for line in table[2:])
    assert "<!-- lead: narrative -->" in page and "## Where the organisms differ" in page


NUM = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def _leaves(x):
    if isinstance(x, dict):
        for v in x.values():
            yield from _leaves(v)
    elif isinstance(x, list):
        for v in x:
            yield from _leaves(v)
    elif isinstance(x, (int, float)) and not isinstance(x, bool):
        yield x


def assert_no_invented_numbers(page: str, rep: dict):
    """Every number in the table's cells is one of the report's, at the precision shown."""
    known = set()
    for x in _leaves(rep):
        known |= {float(x), float(f"{x:.4g}")}
    for line in page.splitlines():
        if not line.startswith("| **"):
            continue
        for cell_text in line.split(" | ")[1:]:  # the claim column is text
            text = re.sub(r"`[^`]*`", "", cell_text).replace("95% CI", "")
            for tok in NUM.findall(text):
                assert float(tok) in known, f"{tok} is not in the report: {cell_text[:200]}"


def test_every_number_in_the_table_is_the_reports():
    rep = report()
    assert_no_invented_numbers(ct.page([("organism", rep, "out/toy")]), rep)


def test_cli_writes_the_page(tmp_path):
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "report.json").write_text(json.dumps(report()))
    out = tmp_path / "claims.md"
    assert ct.main(["--report", f"organism={tmp_path / 'toy'}", "--out", str(out)]) == 0
    assert "| **Refusal direction: ablation**" in out.read_text()
    with pytest.raises(SystemExit, match="LABEL=DIR"):
        ct.main(["--report", str(tmp_path / "toy")])


@pytest.mark.slow
def test_on_a_toy_demo_report(tmp_path):
    """The reader's keys are the stages' keys: a real (small) demo report of two sections."""
    from interp.cli import main

    assert main(["demo", "--out", str(tmp_path), "--sections", "steering,defenses", "--per-cell", "2",
                 "--n-train", "16"]) == 0
    rep = json.loads((tmp_path / "report.json").read_text())
    page = ct.page([("organism", rep, str(tmp_path))])
    assert_no_invented_numbers(page, rep)
    words = {c: ct.verdict(read(rep)) for c, _, read in ct.CLAIMS}
    for c in ("Refusal direction: ablation", "Refusal direction: addition", "HSI heads vs their layer", "SmoothLLM",
              "Token Highlighter", "Attention sharpening (calibrated)"):
        assert words[c].split(" (")[0] in ("holds", "fails", "too few prompts to call"), (c, words[c])
    assert words["Causal heads vs random heads"].startswith("not measured")
    assert words["Attention slipping"].startswith("not measured")


def test_where_the_organisms_differ_is_derived_from_the_verdicts():
    toy, real = report(), report()
    real["steering"]["comparisons"]["direction addition vs none: harmless"] = D(0.1, -0.05, 0.3)
    page = ct.page([("organism", toy, "a"), ("organism:smollm2", real, "b")])
    part = page.split("## Where the organisms differ")[1]
    assert "* Refusal direction: addition: `organism` holds; `organism:smollm2` too few prompts to call" in part
    assert "Refusal direction: ablation" not in part  # holds on both
    assert "Not compared (not measured or not called on at least one organism): " in part and "Reasoning-to-Defend" in part


def test_r2d_comparisons_decide_the_r2d_row():
    rep = report()
    rep["r2d"] = {"base": {"jailbreak_success": R(0.8, 32, 0.63, 0.91)}, "r2d": {"jailbreak_success": R(0.2, 32, 0.09, 0.37)},
                  "comparisons": {"r2d vs base: jailbreak success": {**D(-0.6, -0.75, -0.4), "a": "r2d", "b": "base"}}}
    assert ct.verdict(cell(rep, "Reasoning-to-Defend")) == "holds"
    rep["r2d"]["comparisons"] = {"base vs r2d: jailbreak success": {**D(0.6, 0.4, 0.75), "a": "base", "b": "r2d"}}
    assert ct.verdict(cell(rep, "Reasoning-to-Defend")) == "holds"
    del rep["r2d"]["comparisons"]  # two records, no difference: their intervals (apart here) decide
    assert ct.verdict(cell(rep, "Reasoning-to-Defend")).startswith("holds")


def test_the_command_repeats_every_option_that_changes_the_numbers():
    rep = report()
    assert ct.command("organism", rep, "out/toy") == "safety-heads demo --model organism --max-new-tokens 12 --out out/toy"
    rep["config"] |= {"model": "smollm2-135m-instruct", "harmful": "data/h.csv", "labels": "category", "seed": 3,
                      "families": ["suffix", "topicmix"], "per_cell": 2, "n_train": 16, "plain_per_label": 2,
                      "top_per_cell": 2, "max_new_tokens": 64}
    assert ct.command("smol", rep, "my dir") == (
        "safety-heads demo --model smollm2-135m-instruct --max-new-tokens 64 --harmful data/h.csv --families "
        "suffix,topicmix --labels category --seed 3 --per-cell 2 --n-train 16 --plain-per-label 2 --top-per-cell 2 "
        "--out 'my dir'")


def test_a_real_models_r2d_section_holds_only_with_two_unseen_families_below_the_comparison():
    rep = report()
    fams = {"a": D(-0.5, -0.7, -0.2, 16), "b": D(-0.3, -0.5, -0.05, 16), "c": D(0.1, -0.1, 0.3, 16)}
    rep["r2d"] = {"model": "r2d-model", "comparison": "base-model", "families_neither_model_saw": ["a", "b", "c"],
                  "models": {"r2d-model": {"judge": {}}, "base-model": {"judge": {}}},
                  "difference": {f"jailbreak_success:{k}": v for k, v in fams.items()}}
    assert ct.verdict(cell(rep, "Reasoning-to-Defend")) == "holds"
    rep["r2d"]["difference"]["jailbreak_success:b"] = D(0.1, -0.2, 0.4, 16)  # one family below: too few
    assert ct.verdict(cell(rep, "Reasoning-to-Defend")) == "too few prompts to call"
    rep["r2d"]["difference"] = {f"jailbreak_success:{k}": D(0.5, 0.2, 0.8, 16) for k in "abc"}  # all above: fails
    assert ct.verdict(cell(rep, "Reasoning-to-Defend")) == "fails"
    rep["r2d"]["families_neither_model_saw"] = ["a"]  # a family both saw cannot carry the claim
    assert ct.verdict(cell(rep, "Reasoning-to-Defend")).startswith("not called")
