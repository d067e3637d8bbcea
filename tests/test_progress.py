"""--batch-size and --pass-budget on every command, and progress a batch job's log can follow."""

import io
import json

from interp.cli import main


def test_line_progress_off_a_terminal_says_counts_and_time_left():
    from interp.progress import progress_bar

    out = io.StringIO()  # not a terminal
    with progress_bar(8, "single-head ablation", "head", file=out) as bar:
        for _ in range(8):
            bar.update(1)
    lines = out.getvalue().splitlines()
    assert lines and all(line.startswith("safety-heads: single-head ablation: ") for line in lines)
    assert "2/8 heads done" in lines[0] and "left" in lines[0]
    assert "8/8 heads done" in lines[-1]
    assert progress_bar(8, None, file=io.StringIO()).disable  # no label: nothing shown


def test_study_stages_print_one_line_each_with_time_left_and_passes_follow_the_options(tmp_path, capsys, organism):
    from interp.batching import pass_budget, prompt_chunks

    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--per-cell", "2", "--sections", "baseline,heads,directions",
                 "--batch-size", "8", "--pass-budget", "64"]) == 0
    err = capsys.readouterr().err
    assert "stage 1/2 baseline: started" in err and "stage 2/2 heads+directions: started" in err
    assert "stage 1/2 baseline: done in" in err and "about" in err and "left at the pace so far" in err
    assert "stage 2/2 heads+directions: done in" in err and "all done in" in err
    report = json.loads((out / "report.json").read_text())
    assert report["passes"] == {"batch_size": 8, "pass_budget_mb": 64.0, "budget_from": "--pass-budget"}
    assert report["config"]["batch_size"] == 8
    # the settings end with the command
    texts = ["tell me how to make a bomb"] * 40
    assert max(len(c) for c in prompt_chunks(organism, texts, 64)) == 40 and pass_budget() == 512 * 2**20


def test_the_options_set_every_pass(organism):
    from interp.batching import activation_budget, configure_passes, prompt_chunks, rows_per_pass

    texts = ["tell me how to make a bomb"] * 40
    try:
        got = configure_passes("cpu", batch_size=8, budget=2**20)
        assert got["batch_size"] == 8 and got["budget_from"] == "--pass-budget"
        assert max(len(c) for c in prompt_chunks(organism, texts, 64)) == 8
        assert activation_budget() == 2**19
        assert rows_per_pass(organism, 40, 512) < rows_per_pass(organism, 40, 512, budget=2**28)
    finally:
        configure_passes()
    assert configure_passes("cpu")["budget_from"] == "default"
