"""The benchmarks' own plumbing, on the organism (fast): a benchmark that cannot build its inputs
fails here, not after an hour of CPU."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_bench_scale_builds_the_prompts_each_command_reads(organism, tmp_path):
    """`rank` and `causal` as bench_scale runs them, with the CLI's default sizes (None: the demo's
    scale for the model), give the prompt sets the one-forward-pass reference is timed on."""
    bench = _load("bench_scale")
    harmful, harmless = bench._rank_files("random", tmp_path)
    rank = bench._read_prompts(organism, "rank", ["rank", "--harmful", str(harmful), "--harmless", str(harmless),
                                                  "--labels", "category", "--split", "0.7,0.25,0.05",
                                                  "--out", str(tmp_path / "rank")])
    assert len(rank) > 60 and set(rank.labels) == {"harmful", "harmless"}
    causal = bench._read_prompts(organism, "causal", ["causal", "--out", str(tmp_path / "causal")])
    assert len(causal) > 20 and set(causal.labels) == {"harmful", "harmless"}
    assert any(p.family is not None for p in causal)  # its held-out sets hold jailbreaks
    small = bench._read_prompts(organism, "causal", ["causal", "--per-cell", "2", "--out", str(tmp_path / "c2")])
    assert 0 < len(small) <= len(causal)


def test_demo_tokens_counts_every_stage_pass(tmp_path, capsys):
    """benchmarks/demo_tokens.py runs a command and attributes its forward passes to stages and
    callers; the bridge's forward is restored afterwards."""
    import json

    from transformer_lens import TransformerBridge

    bench = _load("demo_tokens")
    forward = TransformerBridge.forward
    assert bench.main(["demo", "--sections", "baseline,heads", "--out", str(tmp_path / "d")]) == 0
    assert TransformerBridge.forward is forward
    rows = json.loads((tmp_path / "d" / "tokens.json").read_text())  # beside report.json
    stages = {r["stage"] for r in rows}
    assert {"baseline_stage", "probe_stage"} <= stages
    assert all(r["tokens"] > 0 and r["calls"] > 0 for r in rows)
    assert any(r["caller"] == "run.py:run_probes" for r in rows)  # the probes' one pass (labels + capture)
    assert "baseline_stage" in capsys.readouterr().out


def test_demo_time_checks_the_sizes_a_claim_needs():
    """benchmarks/demo_time.py's checks: plain rows need 32 prompts, each family's strongest cell 16,
    every rate an interval; a calibration at its grid edge must be said."""
    from interp.stats import rate_record

    bench = _load("demo_time")
    r32, r16, r4 = rate_record(30, 32), rate_record(8, 16), rate_record(2, 4)
    report = {"baseline": {"refusal_rate": {"harmful": r32, "harmless": r32,
                                            "jailbreak": {"suffix": {"0": r32, "2": r4, "32": r16}}}},
              "causal": {"ablation": {"refusal_rate_harmful_after": r32, "refusal_rate_harmless_after": r4,
                                      "comparisons": {"heads_vs_random_harmful": {"n_a": 32}}}},
              "steering": {"direction": {"ablation_harmful_refusal_rate": r32, "addition_harmless_refusal_rate": r32},
                           "tradeoff": [{"method": "unsteered", "strength": 0.0, "harmful": r32, "harmless": r32,
                                         "measure": "judged answers"},
                                        {"method": "hsi", "strength": 2.0, "harmful": r4, "harmless": r4,
                                         "measure": "one-pass refusal score > 0"}],
                           "calibrations": {"hsi_sigmas": {"at_grid_edge": True}}, "calibration_notes": []},
              "extra": {"rate": 0.5, "n": 2, "ci95": None}}
    rows = {c["check"]: c["ok"] for c in bench.check_report(report)}
    assert rows["baseline harmful"] and rows["baseline suffix at strength 32"]
    assert not rows["causal heads ablated, harmless"]  # 4 < 32
    assert "steering hsi @ 2, harmful" not in rows  # a scored curve point is not a reported operating point
    assert not rows["calibration hsi_sigmas not silently at a grid edge"]
    assert not rows["every rate carries n and ci95"]


def test_planted_benchmark_finds_the_planted_head(tmp_path, monkeypatch, capsys):
    """benchmarks/planted.py on its small variant: refusal planted in head (1, 2) of a 2-layer random
    model (only that head's query rows and output columns trained) is recommended, alone, with
    confidence, and zeroing it removes the refusal that zeroing random heads leaves."""
    monkeypatch.setenv("SAFETY_HEADS_CACHE", str(tmp_path))
    bench = _load("planted")
    rows = bench.main(["--recipes", "tiny", "--max-new-tokens", "6", "--n-search", "16", "--out", str(tmp_path / "out")])
    row = rows[0]
    assert row["truth"] == [[1, 2]]
    assert row["recommended"] == [[1, 2]] and row["confident"] and row["label"] == "refusal heads"
    assert row["precision"] == 1.0 and row["recall"] == 1.0
    assert set(row["truth_ranks"]) == {"1,2"} and row["truth_ranks"]["1,2"]["ablation_rank"] == 1
    assert row["chosen"] and set(row["skipped_disruptive"]) == set(row["per_method"]) == {"mean", "zero", "resample"}
    assert [1, 2] in [r["head"] for r in row["consensus"]]
    f = row["refusal"]
    assert f["harmful_before"]["rate"] >= 0.8 and f["harmful_planted_ablated"]["rate"] <= 0.2
    assert f["harmful_random_ablated"]["rate"] >= 0.6
    assert list(tmp_path.glob("planted/tiny-*.safetensors"))  # the weight change is cached, not the model
    assert "| tiny |" in capsys.readouterr().out
    # a second run reads the cache instead of training again
    again = bench.main(["--recipes", "tiny", "--max-new-tokens", "6", "--n-search", "16"])
    assert again[0]["recommended"] == [[1, 2]] and again[0]["seconds_build"] < row["seconds_build"]


def test_planted_direction_control_recommends_no_head(tmp_path, monkeypatch):
    """The control's plumbing: refusal planted in one residual direction (a rank-1 write of the last
    MLP), no head: the model refuses harmful requests and no head is recommended with confidence.
    (On this random base the write does not tell the labels apart: harmless requests are refused too.)"""
    monkeypatch.setenv("SAFETY_HEADS_CACHE", str(tmp_path))
    row = _load("planted").main(["--recipes", "tiny_direction", "--max-new-tokens", "6", "--n-search", "16"])[0]
    assert row["truth"] == [] and row["kind"] == "direction"
    assert row["refusal"]["harmful_before"]["rate"] >= 0.7
    assert not row["confident"] and row["recommended"] == []


def test_planted_bar_reads_every_condition(tmp_path, capsys):
    """The bar: recall >= 0.5 on every head variant, no extra head on 4 of 5, no confident head on
    the control; runs of separate processes are read together from their planted.json files."""
    import json

    bench = _load("planted")

    def row(name, truth, rec, confident=True):
        hit = len({tuple(h) for h in rec} & {tuple(h) for h in truth})
        return {"variant": name, "truth": truth, "recommended": rec, "confident": confident, "label": "refusal heads",
                "candidates": rec, "found_by_several_methods": [], "seconds_causal": 1.0,
                "precision": hit / len(rec) if rec and truth else None,
                "recall": hit / len(truth) if truth else None,
                "refusal": {"harmful_before": None, "harmful_random_ablated": None}}

    good = [row(f"v{i}", [[i, 0]], [[i, 0]]) for i in range(4)] + [row("v4", [[4, 0], [5, 0]], [[4, 0], [1, 1]])]
    assert bench.verdict(good + [row("dir", [], [], confident=False)]).endswith("bar met")
    assert "bar not met" in bench.verdict(good + [row("dir", [], [[3, 3]])])  # a confident head on the control
    two_extra = good[:3] + [row("v3", [[3, 0]], [[3, 0], [0, 0]]), good[4]]
    assert "bar not met" in bench.verdict(two_extra + [row("dir", [], [], confident=False)])
    missed = good[:4] + [row("v4", [[4, 0], [5, 0], [6, 0]], [[4, 0]])]  # recall 1/3
    text = bench.verdict(missed + [row("dir", [], [], confident=False)])
    assert "recall >= 0.5: 4 of 5 (not: ['v4'])" in text and "bar not met" in text
    assert "fewer than 5" in bench.verdict(good[:2])
    files = []
    for i, part in enumerate((good[:3], good[3:] + [row("dir", [], [], confident=False)])):
        files.append(tmp_path / f"p{i}.json")
        files[-1].write_text(json.dumps(part))
    rows = bench.main(["--from-json", ",".join(map(str, files))])
    assert [r["variant"] for r in rows] == ["v0", "v1", "v2", "v3", "v4", "dir"]
    assert capsys.readouterr().out.rstrip().endswith("bar met")
