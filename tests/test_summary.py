"""summary.md: written by every command that runs a study, from report.json alone."""

import json
import re

from interp.cli import main

NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e-?\d+)?")


def numbers_of(obj, found=None) -> set[float]:
    """Every number of a JSON value, also those inside its strings."""
    found = set() if found is None else found
    if isinstance(obj, bool) or obj is None:
        return found
    if isinstance(obj, (int, float)):
        found.add(float(obj))
    elif isinstance(obj, str):
        found.update(float(x) for x in NUMBER.findall(obj))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            numbers_of(k, found)
            numbers_of(v, found)
    elif isinstance(obj, list):
        for v in obj:
            numbers_of(v, found)
    return found


def summary_numbers(text: str) -> list[float]:
    body = text.split("\n", 2)[2]  # the title and the line saying where the numbers come from
    body = re.sub(r"95% CI", "", body)
    body = re.sub(r"\[[^\]]*\]\([^)]*\)", "", body)  # links: file names
    body = re.sub(r"`[^`]*`", "", body)  # fingerprints, commands
    body = re.sub(r"\bL(\d+)H(\d+)\b", r"\1 \2", body)
    return [float(x) for x in NUMBER.findall(body)]


def check_numbers_come_from(summary: str, report: dict) -> None:
    known = numbers_of(report)
    rounded = {round(v, 4) for v in known} | known
    stray = [x for x in summary_numbers(summary) if x not in rounded]
    assert not stray, f"numbers in summary.md that report.json does not hold: {stray[:10]}"


def test_demo_writes_a_summary_whose_numbers_are_the_reports(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--per-cell", "2", "--sections",
                 "baseline,heads,directions,causal,steering,slipping,defenses"]) == 0
    printed = capsys.readouterr().out
    assert str(out / "summary.md") in printed
    report = json.loads((out / "report.json").read_text())
    text = (out / "summary.md").read_text()
    check_numbers_come_from(text, report)
    for part in ("## Model and data", "## Heads", "## Refusal direction", "## Steering", "## Jailbreaks and attention",
                 "## Defenses", "## Figures"):
        assert part in text
    # the steering table: each method's rates at its chosen point, with n and interval, as report.json records them
    hsi = report["interventions"]["hsi"]
    m = hsi["measured"]["harmful"]
    row = next(line for line in text.splitlines() if line.startswith("| hsi (heads) |"))
    assert f"{m['rate']:g} (n={m['n']}, 95% CI {m['ci95'][0]:g} to {m['ci95'][1]:g})" in row.replace(".0 ", " ")
    assert "interventions/hsi" in row
    d = report["steering"]["direction"]
    from interp.summary import num

    assert f"harmful refusal {num(d['ablation_harmful_refusal_rate'])} under ablation" in text
    recommended = report["causal"]["recommended_heads"]
    assert "Causal recommendation: " + ", ".join(f"L{l}H{h}" for l, h in recommended) in text
    for f in re.findall(r"\]\((figures/[^)]+)\)", text):
        assert (out / f).is_file()


def test_rank_and_causal_write_summaries(tmp_path, capsys):
    out = tmp_path / "rank"
    assert main(["rank", "--out", str(out), "--per-cell", "2"]) == 0
    assert "stage 1/1 heads+directions: done in" in capsys.readouterr().err  # a log file hears of every stage
    report = json.loads((out / "report.json").read_text())
    text = (out / "summary.md").read_text()
    check_numbers_come_from(text, report)
    top = report["heads"]["ranking"][0]
    assert f"| L{top['layer']}H{top['head']} |" in text and "## Refusal direction" in text
    out = tmp_path / "causal"
    assert main(["causal", "--out", str(out), "--per-cell", "2"]) == 0
    err = capsys.readouterr().err
    assert "stage 1/1 causal: started" in err and "single-head ablation" in err and "left" in err
    causal = json.loads((out / "causal.json").read_text())
    text = (out / "summary.md").read_text()
    check_numbers_come_from(text, causal)
    assert "Causal recommendation" in text
    # the judge line names the judge and the answer length the stage used, never "None"
    judge_line = next(line for line in text.splitlines() if line.startswith("- judge:"))
    assert "None" not in judge_line and f"greedy answers of {causal['ablation']['max_new_tokens']} tokens" in judge_line
