"""Per-token generation cost of attention sharpening against plain generation (target <= 1.05x).

    python benchmarks/bench_sharpening.py [--batch 1 16] [--tokens 16] [--repeats 7] [--threads 1]

Greedy generation with the KV cache through `interp.generation.generate_batch`, with and without
`Intervention.sharpen(T=0.5)` on every layer, on the organism and on the 25M-parameter random
Llama. Runs alternate (none, sharpened, none, ...) so that machine load hits both alike. Two
clocks: process CPU time (with one torch thread it is the compute actually spent, and it is far
less disturbed by other processes on a shared machine) and wall time; for each, the ratio of the
minima (the least-disturbed runs) and the median of the per-pair ratios. Time per token = time /
generated tokens (the prompt pass included, as in real use); stop tokens are suppressed so every
run generates the same number of tokens.

On a busy shared machine both clocks move by +-10 % between runs, more than the effect itself,
so a third, load-robust estimate is printed: the time spent inside the sharpening hooks during
the sharpened runs plus the hook-dispatch cost (an identity hook on a HookPoint against none,
timed in a tight loop), per generated token, over the plain per-token time.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from interp.generation import generate_batch
from interp.hooks import hooked
from interp.model import load_model
from organisms.data import eval_prompts
from organisms.random import random_llama_25m
from interp.intervention import Intervention


def _no_eos(model):
    """Generation must run the full number of steps in every run: stop tokens are suppressed."""
    eos = model.tokenizer.eos_token_id

    def hook(logits, hook):
        logits[..., eos] = -1e9
        return logits

    return [("unembed.hook_out", hook)]


def bench(model, texts: list[str], batch: int, tokens: int, repeats: int, T: float = 0.5) -> dict:
    enc = model.encode(texts[:batch])

    def run(sharpen: bool) -> tuple[float, float]:
        c, t = time.process_time(), time.perf_counter()
        with hooked(model, _no_eos(model)):
            if sharpen:
                with Intervention.sharpen(T).apply(model):
                    out = generate_batch(model, enc, tokens)
            else:
                out = generate_batch(model, enc, tokens)
        cpu, wall = time.process_time() - c, time.perf_counter() - t
        assert all(len(o) == tokens for o in out)
        return cpu / tokens, wall / tokens

    # in-hook time of the sharpening hooks during sharpened runs (wrapped with a timer)
    spent = [0.0]

    def timed_sharpen():

        def wrap(fn):
            def hook(x, hook):
                t0 = time.thread_time()  # CPU time of this thread: not inflated by preemption
                y = fn(x, hook)
                spent[0] += time.thread_time() - t0
                return y
            return hook
        return [(n, wrap(f)) for n, f in Intervention.sharpen(T).hooks(model)]

    run(False), run(True)  # warm-up
    none, sharp = [], []
    for i in range(repeats):  # alternate which goes first
        if i % 2:
            sharp.append(run(True)), none.append(run(False))
        else:
            none.append(run(False)), sharp.append(run(True))
    out = {"batch": batch, "prompt_tokens": int(enc.tokens.shape[1]), "new_tokens": tokens, "repeats": repeats}
    spent[0] = 0.0
    n_runs = 3
    for _ in range(n_runs):
        with hooked(model, _no_eos(model)), hooked(model, timed_sharpen()):
            generate_batch(model, enc, tokens)
    in_hook = spent[0] / n_runs / tokens
    dispatch = model.n_layers * _dispatch_cost(model)
    base = min(x[0] for x in none)  # CPU time per plain token
    out["estimate"] = {"in_hook_ms_per_token": round(1000 * in_hook, 4), "dispatch_ms_per_token": round(1000 * dispatch, 4),
                       "ratio": round((base + in_hook + dispatch) / base, 4)}
    for k, clock in enumerate(("cpu", "wall")):
        a, b = [x[k] for x in none], [x[k] for x in sharp]
        pairs = sorted(y / x for x, y in zip(a, b))
        out[clock] = {"ms_per_token_none": round(1000 * min(a), 3), "ms_per_token_sharpened": round(1000 * min(b), 3),
                      "ratio_min": round(min(b) / min(a), 3), "ratio_median_pairs": round(pairs[len(pairs) // 2], 3)}
    return out


def _dispatch_cost(model, n: int = 3000) -> float:
    """Seconds one identity hook adds to one HookPoint call (tight loop, median of 5)."""
    hp = model.bridge.blocks[0].attn.hook_attn_scores
    x = torch.zeros(1, model.n_heads, 1, 8)

    def loop():
        t = time.thread_time()
        for _ in range(n):
            hp(x)
        return (time.thread_time() - t) / n

    bare = sorted(loop() for _ in range(5))[2]
    with hooked(model, [("blocks.0.attn.hook_attn_scores", lambda a, hook: a)]):
        with_hook = sorted(loop() for _ in range(5))[2]
    return max(0.0, with_hook - bare)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core box)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    texts = [p.text for p in eval_prompts(seed=5, per_cell=2) if p.family == "distractor"]
    out = {}
    for name, model in (("organism", load_model("organism")), ("random-llama-25M", random_llama_25m())):
        for b in args.batch:
            r = bench(model, texts, b, args.tokens, args.repeats)
            out[f"{name}/batch{b}"] = r
            for clock in ("cpu", "wall"):
                c = r[clock]
                print(f"{name:18s} batch {b:3d} {clock:4s}: none {c['ms_per_token_none']:8.3f} ms/token  sharpened "
                      f"{c['ms_per_token_sharpened']:8.3f} ms/token  ratio(min) {c['ratio_min']:.3f}  "
                      f"ratio(median of pairs) {c['ratio_median_pairs']:.3f}", flush=True)
            e = r["estimate"]
            print(f"{name:18s} batch {b:3d} load-robust estimate: in-hook {e['in_hook_ms_per_token']:.4f} + dispatch "
                  f"{e['dispatch_ms_per_token']:.4f} ms/token -> ratio {e['ratio']:.4f}", flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
