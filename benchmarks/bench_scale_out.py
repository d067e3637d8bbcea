"""Two numbers for running past one device, measured in one run:

    python benchmarks/bench_scale_out.py [--n 512] [--model organism] [--repeats 3]

* `offload slowdown`: refusal scoring (one forward pass per prompt batch) with the last half of the
  blocks offloaded to disk, divided by the same with the model in memory.
* `speedup 2 processes`: wall time of `python -m interp capture` in one process divided by
  `torchrun --nproc-per-node 2 -m interp capture` (gloo, one thread each) on the same prompts,
  both including process start and model load, as a user sees them. On a 2-core machine shared
  with other work the two processes compete for the cores: report the load average beside it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from interp.model import load_model  # noqa: E402
from interp.placement import Placement  # noqa: E402
from interp.scoring import refusal_score  # noqa: E402


def offload_slowdown(name: str, texts: list[str], repeats: int) -> tuple[float, float]:
    mem = load_model(name)
    n = mem.n_layers
    split = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.norm": "cpu", "lm_head": "cpu",
             **{f"model.layers.{l}": ("cpu" if l < n // 2 else "disk") for l in range(n)}}
    off = load_model(name, placement=Placement(split, offload_folder=tempfile.mkdtemp(prefix="offload-")))
    times = {"memory": [], "offload": []}
    for _ in range(repeats):  # interleaved, so load changes hit both sides alike
        for key, m in (("memory", mem), ("offload", off)):
            t = time.perf_counter()
            refusal_score(m, texts)
            times[key].append(time.perf_counter() - t)
    a, b = min(times["memory"]), min(times["offload"])
    return a, b


def capture_wall(nproc: int, prompt_file: Path, out: Path, model: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    args = ["-m", "interp", "capture", "--model", model, "--prompts", str(prompt_file), "--sites", "z,resid_post",
            "--positions", "last", "--shard-size", "64", "--out", str(out)]
    cmd = [sys.executable, *args] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                      f"--nproc-per-node={nproc}", *args]
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--model", default="organism")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from organisms.data import eval_prompts

    ps = eval_prompts(seed=3, per_cell=max(1, args.n // 60))[: args.n]
    print(f"load average before: {os.getloadavg()}; {len(ps)} prompts; model {args.model}")
    a, b = offload_slowdown(args.model, ps.texts, args.repeats)
    print(f"refusal scoring: in memory {a:.2f}s, half the blocks on disk {b:.2f}s")
    print(f"offload slowdown: {b / a:.2f}")
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "p.jsonl"
        ps.to_jsonl(f)
        walls = {1: [], 2: []}
        for r in range(args.repeats):
            for nproc in (1, 2):
                walls[nproc].append(capture_wall(nproc, f, Path(d) / f"cap{nproc}-{r}", args.model))
        one, two = min(walls[1]), min(walls[2])
        print(f"capture wall: 1 process {one:.1f}s, 2 processes {two:.1f}s (best of {args.repeats})")
        print(f"speedup 2 processes: {one / two:.2f}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
