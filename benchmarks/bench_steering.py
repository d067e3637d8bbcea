"""Generation time with each steering intervention active, against the unsteered model, in one run.

    .venv/bin/python benchmarks/bench_steering.py [--models organism,random25m] [--reps 5] [--threads 1]

Configurations are interleaved round-robin so that drift in a shared machine's load hits every
configuration alike. The ratio is on this process's CPU time (best of `reps` runs, one torch
thread), which other processes on a shared machine disturb far less than wall-clock time; the
wall-clock median ratio is printed beside it. Target: every ratio <= 1.10.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402


def _interventions(model, train):
    from interp.intervention import Intervention
    from interp.steering import fit_antidote, fit_head_directions
    from probes.directions import mean_difference_direction

    hd = fit_head_directions(model, train)
    heads = hd.top(4)
    layer = heads[0][0]
    harmful, harmless = train.filter(label="harmful"), train.filter(label="harmless")
    direction = mean_difference_direction(model, harmful, harmless, min(1, model.n_layers - 1))
    anti = fit_antidote(model, harmful, harmless, calibrate=False)
    return {
        "unsteered": Intervention.none(),
        "heads (4)": Intervention.steer_heads(hd, heads, 0.5),
        "layer heads": Intervention.steer_layer(hd, layer, 0.5, mode="heads"),
        "layer resid": Intervention.steer_layer(hd, layer, 0.5, mode="resid"),
        "direction ablation": Intervention.ablate_direction(direction),
        "direction addition": Intervention.add_direction(direction),
        "antidote 5%": anti.intervention(0.2),
    }


def bench_model(name: str, reps: int, n_prompts: int, max_new_tokens: int) -> dict:
    from interp.generation import GenerationConfig, generate
    from interp.hooks import count_hooks
    from interp.model import load_model
    from organisms.data import eval_prompts, plain_prompts
    from organisms.random import random_llama_25m

    model = load_model("organism") if name == "organism" else random_llama_25m()
    train = plain_prompts(seed=0, n_per_label=32)
    prompts = eval_prompts(seed=3, per_cell=1).texts[:n_prompts]
    cfg = GenerationConfig(max_new_tokens=max_new_tokens, batch_size=n_prompts)
    ivs = _interventions(model, train)
    cpu: dict[str, list[float]] = {k: [] for k in ivs}
    wall: dict[str, list[float]] = {k: [] for k in ivs}
    generate(model, prompts, cfg)  # warm-up
    for _ in range(reps):
        for k, iv in ivs.items():
            c, t = time.process_time(), time.perf_counter()
            with iv.apply(model):
                generate(model, prompts, cfg)
            cpu[k].append(time.process_time() - c)
            wall[k].append(time.perf_counter() - t)
    assert count_hooks(model) == 0
    base_c, base_w = min(cpu["unsteered"]), statistics.median(wall["unsteered"])
    return {"model": model.name, "n_prompts": len(prompts), "max_new_tokens": max_new_tokens, "reps": reps,
            "threads": torch.get_num_threads(),
            "cpu_seconds": {k: round(min(v), 4) for k, v in cpu.items()},
            "ratio": {k: round(min(v) / base_c, 3) for k, v in cpu.items()},
            "wall_seconds_median": {k: round(statistics.median(v), 4) for k, v in wall.items()},
            "ratio_wall_median": {k: round(statistics.median(v) / base_w, 3) for k, v in wall.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="organism,random25m")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--n-prompts", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadiest on a shared machine)")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = [bench_model(m, args.reps, args.n_prompts, args.max_new_tokens) for m in args.models.split(",")]
    for r in results:
        print(f"\n{r['model']}: {r['n_prompts']} prompts x {r['max_new_tokens']} new tokens, {r['reps']} runs each "
              f"(CPU time of this process, best run; wall-clock median beside it)")
        for k, s in r["cpu_seconds"].items():
            flag = "" if r["ratio"][k] <= 1.10 else "   (> 1.10)"
            print(f"  {k:20s} cpu {s:8.3f} s  x{r['ratio'][k]:.3f}   wall {r['wall_seconds_median'][k]:7.3f} s  "
                  f"x{r['ratio_wall_median'][k]:.3f}{flag}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
