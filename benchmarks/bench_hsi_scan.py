"""Time of HSI's per-head scan (`single_head_steering_effects`: the effect of steering each head
alone) on a real model, and its result, so that two versions of the scan can be compared.

    .venv/bin/python benchmarks/bench_hsi_scan.py [--model organism:smollm2] [--prompts 8] [--strength 1.0]

Head directions are fitted on the English example files (data/prompts/english/, the first
`--fit` harmful and harmless requests); the scan runs on the next `--prompts` harmless ones. Prints
one JSON line: seconds of the scan (wall and this process's CPU), the number of heads, and the
top 8 heads with their effects.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="organism:smollm2")
    ap.add_argument("--prompts", type=int, default=8, help="harmless prompts the scan measures on")
    ap.add_argument("--fit", type=int, default=16, help="harmful and harmless prompts each to fit directions on")
    ap.add_argument("--strength", type=float, default=1.0, help="steering strength, in sigmas of each head")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from interp.datasets import load_prompt_file
    from interp.model import load_model
    from interp.prompts import PromptSet
    from interp.steering.heads import fit_head_directions, single_head_steering_effects

    model = load_model(args.model)
    data = ROOT / "data" / "prompts" / "english"
    harmful = load_prompt_file(data / "harmful.csv", label="harmful")
    harmless = load_prompt_file(data / "harmless.csv", label="harmless")
    fit = PromptSet("fit", tuple(harmful)[:args.fit] + tuple(harmless)[:args.fit])
    scan = PromptSet("scan", tuple(harmless)[args.fit:args.fit + args.prompts])
    hd = fit_head_directions(model, fit)
    t, c = time.perf_counter(), time.process_time()
    eff = single_head_steering_effects(model, hd, scan, args.strength)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    H = model.n_heads
    top = eff.flatten().nan_to_num(nan=-float("inf")).argsort(descending=True)[:8].tolist()
    print(json.dumps({"model": args.model, "prompts": len(scan), "heads": int(hd.fitted.sum()),
                      "seconds_wall": round(wall, 2), "seconds_cpu": round(cpu, 2), "threads": args.threads,
                      "top": [[i // H, i % H, round(float(eff.flatten()[i]), 4)] for i in top]}))


if __name__ == "__main__":
    main()
