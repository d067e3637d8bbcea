"""Time the whole demo on a real model and check the sizes its report rests on.

    python benchmarks/demo_time.py                                   # organism:smollm2, out/demo_time
    python benchmarks/demo_time.py --model organism --out /tmp/d --budget 120

Runs `safety-heads demo --model MODEL --out OUT` in a fresh process (as a user would, model loading
included) and reports its wall time against `--budget` (the issue's 600 s on 2 cores), the load
average and core count it ran under (a loaded machine reads slower), each stage's seconds, and
whether OUT/report.json holds the sizes a claim needs: at least `--plain` (32) held-out harmful and
harmless requests in the baseline, the causal ablation (heads and random heads), the refusal
direction's ablation and addition and each steering method's calibrated (judged) point; at least
`--top` (16) harmful prompts at each jailbreak family's strongest strength in the baseline; every
rate a record {"rate", "n", "ci95"}; and OUT/completions.jsonl holding every generated answer (its
row count is the report's). Writes OUT/demo_time.json; exits 1 when a check fails or the budget is
exceeded. Extra arguments after `--` go to the demo (e.g. `-- --sections baseline,causal`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _n(rec) -> int | None:
    return rec.get("n") if isinstance(rec, dict) else None


def _records(x, path=""):
    """Every rate record in a report (dicts with exactly rate/n/ci95), with its path."""
    if isinstance(x, dict):
        if set(x) == {"rate", "n", "ci95"}:
            yield path, x
            return
        for k, v in x.items():
            yield from _records(v, f"{path}.{k}" if path else str(k))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _records(v, f"{path}[{i}]")


def check_report(report: dict, plain: int = 32, top: int = 16, out: Path | None = None) -> list[dict]:
    """One row {"check", "n", "need", "ok"} per size the claims rest on (a missing stage is skipped)."""
    rows = []

    def need(name, n, least):
        rows.append({"check": name, "n": n, "need": least, "ok": n is not None and n >= least})

    base = report.get("baseline", {}).get("refusal_rate")
    if base:
        need("baseline harmful", _n(base["harmful"]), plain)
        need("baseline harmless", _n(base["harmless"]), plain)
        for fam, row in base.get("jailbreak", {}).items():
            s = max(int(k) for k in row)
            need(f"baseline {fam} at strength {s}", _n(row[str(s)]), top)
    ab = report.get("causal", {}).get("ablation")
    if ab:
        need("causal heads ablated, harmful", _n(ab.get("refusal_rate_harmful_after")), plain)
        need("causal heads ablated, harmless", _n(ab.get("refusal_rate_harmless_after")), plain)
        cmp = ab.get("comparisons", {}).get("heads_vs_random_harmful", {})
        need("causal heads vs random heads (paired prompts)", cmp.get("n_a"), plain)
    st = report.get("steering")
    if st:
        d = st.get("direction", {})
        need("direction ablation, harmful", _n(d.get("ablation_harmful_refusal_rate")), plain)
        need("direction addition, harmless", _n(d.get("addition_harmless_refusal_rate")), plain)
        for row in st.get("tradeoff", []):
            if str(row.get("measure", "")).startswith("judged") and (row["method"] == "unsteered" or row.get("condition")):
                need(f"steering {row['method']} @ {row['strength']:g}, harmful", _n(row.get("harmful")), plain)
                need(f"steering {row['method']} @ {row['strength']:g}, harmless", _n(row.get("harmless")), plain)
        for name, cal in st.get("calibrations", {}).items():
            rows.append({"check": f"calibration {name} not silently at a grid edge", "n": None, "need": None,
                         "ok": not cal.get("at_grid_edge") or any(name.split("_")[0] in n.lower() or "edge" in n
                                                                  for n in st.get("calibration_notes", []))})
    bad = [p for p, r in _records(report) if r["n"] and not r["ci95"]]
    rows.append({"check": "every rate carries n and ci95", "n": len(bad), "need": 0, "ok": not bad, "missing": bad[:5]})
    if out is not None and "completions" in report:
        lines = sum(1 for _ in (out / report["completions"]["file"]).open()) - 1
        rows.append({"check": "completions.jsonl holds every generated answer", "n": lines,
                     "need": report["completions"]["rows"], "ok": lines == report["completions"]["rows"]})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="organism:smollm2")
    ap.add_argument("--out", default="out/demo_time")
    ap.add_argument("--budget", type=float, default=600.0, help="seconds the demo may take (the issue: 600 on 2 cores)")
    ap.add_argument("--plain", type=int, default=32)
    ap.add_argument("--top", type=int, default=16)
    ap.add_argument("demo_args", nargs="*", help="extra demo arguments, after --")
    args = ap.parse_args(argv)
    out = Path(args.out)
    cmd = [sys.executable, "-m", "interp", "demo", "--model", args.model, "--out", str(out), *args.demo_args]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    load_before = os.getloadavg()
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=ROOT)
    wall = time.perf_counter() - t
    result = {"command": " ".join(cmd), "returncode": proc.returncode, "wall_s": round(wall, 1), "budget_s": args.budget,
              "within_budget": wall <= args.budget, "cpus": os.cpu_count(), "loadavg_before": load_before,
              "loadavg_after": os.getloadavg()}
    ok = proc.returncode == 0 and wall <= args.budget
    if proc.returncode == 0:
        report = json.loads((out / "report.json").read_text())
        result["stage_seconds"] = report.get("timings")
        result["checks"] = check_report(report, args.plain, args.top, out)
        ok = ok and all(c["ok"] for c in result["checks"])
    result["ok"] = ok
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo_time.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "checks"}, indent=1))
    for c in result.get("checks", []):
        print(f"{'ok  ' if c['ok'] else 'FAIL'} {c['check']}: n={c['n']} (need {c['need']})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
