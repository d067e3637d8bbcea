"""What the load-time bridge check costs (interp.bridge_check): its two passes against the whole load.

    python benchmarks/bench_bridge_check.py [--model smollm2-135m-instruct] [--repeats 5] [--threads 1]

Loads the model once without the check, then runs `check_bridge` `repeats` times and prints the
median wall and CPU seconds of one check, the load's own time, and the check's record.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from interp.bridge_check import check_bridge
from interp.model import load_model


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t, c = time.perf_counter(), time.process_time()
    model = load_model(args.model, skip_bridge_check=True)
    load = {"wall_s": round(time.perf_counter() - t, 2), "cpu_s": round(time.process_time() - c, 2)}
    walls, cpus, record = [], [], {}
    for _ in range(args.repeats):
        t, c = time.perf_counter(), time.process_time()
        record = check_bridge(model)
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    out = {"model": model.name, "threads": args.threads, "load_without_check": load,
           "check_wall_s_median": round(statistics.median(walls), 3), "check_cpu_s_median": round(statistics.median(cpus), 3),
           "record": record}
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
