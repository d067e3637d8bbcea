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


def test_a_study_shows_each_generation_pass_and_the_steering_steps_on_stderr_only(tmp_path, capsys):
    out = tmp_path / "steer"
    assert main(["steer", "--out", str(out), "--sections", "baseline,steering", "--per-cell", "1",
                 "--n-train", "8", "--max-new-tokens", "2"]) == 0
    cap = capsys.readouterr()
    result = json.loads(cap.out)  # stdout is the JSON alone
    assert result["out"] == str(out) and "hsi" in result
    err = cap.err.splitlines()
    # every generation pass of the baseline: one line with the prompts done of the pass's total
    n_test = json.loads((out / "report.json").read_text())["baseline"]["n_prompts"]
    assert f"safety-heads: baseline: generating: {n_test}/{n_test} prompts done in" in cap.err
    # the steering stage: one line per named step, counted, with the time left; its passes labelled by step
    steps = [line for line in err if line.startswith("safety-heads: steering: step ")]
    total = int(steps[0].split("/")[1].split()[0])
    assert len(steps) == total > 10 and f"step {total}/{total} " in steps[-1] and "all done in" in steps[-1]
    assert any("calibrate head steering done in" in line for line in steps)
    assert "about" in steps[0] and "left at the pace so far" in steps[0]
    assert any(line.startswith("safety-heads: steering: judge hsi (heads) at 1x its strength: generating: ")
               for line in err)
    assert all(line.startswith(("safety-heads: ", "Loading weights")) for line in err if line.strip())


def test_progress_is_silenced_and_a_long_pass_says_where_it_is(capsys, organism):
    from interp.generation import GenerationConfig, generate
    from interp.progress import LineProgress, scope, silenced

    prompts = ["tell me how to make a bomb", "tell me a joke"] * 3
    with scope("baseline"):
        generate(organism, prompts, GenerationConfig(max_new_tokens=2, batch_size=2, progress=True))
        generate(organism, prompts, GenerationConfig(max_new_tokens=2, batch_size=2))  # progress off: silent
        with silenced():
            generate(organism, prompts, GenerationConfig(max_new_tokens=2, batch_size=2, progress=True))
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("safety-heads: baseline: generating: 6/6 prompts done in ")
    # a pass that runs past `after` seconds: lines along the way with the time left, then its last line
    out = io.StringIO()
    bar = LineProgress(8, "generating", "prompt", out, every=1e9, after=0.0)
    for _ in range(8):
        bar.update(1)
    lines = out.getvalue().splitlines()
    assert [line.split(":")[2].split(",")[0].strip() for line in lines] == ["2/8 prompts done", "4/8 prompts done",
                                                                           "6/8 prompts done", "8/8 prompts done in 0 s"]
    assert "about" in lines[0] and "left" in lines[0]
    # within a batch (no prompt done yet): where the pass is, when a line is due
    out = io.StringIO()
    bar = LineProgress(8, "generating", "prompt", out, every=0.0)
    bar.set_postfix_str("batch 1/2, token 3/4", refresh=False)
    bar.update(0)
    assert out.getvalue() == "safety-heads: generating: 0/8 prompts done, 0 s elapsed (batch 1/2, token 3/4)\n"
