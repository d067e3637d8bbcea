"""Capture throughput against a bare forward pass over the same batches, and what capture keeps.

    python benchmarks/bench_capture.py [--n 256] [--batch 32] [--repeats 3]

Prints prompts/s for a bare forward (no hooks) and for capture of every layer's head outputs and
residual stream at the last position (and at the post-instruction positions), the ratio, and the
bytes capture keeps against the bytes a whole-sequence cache of the same hooks would hold.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from interp.capture import KeepPositions, capture_hooks, parse_sites
from interp.model import load_model
from organisms.data import eval_prompts
from organisms.random import random_llama_25m


def bench(model, texts, batch, repeats, positions):
    batches = [model.encode(texts[i:i + batch]) for i in range(0, len(texts), batch)]
    sites = parse_sites(model, ["z", "resid_post"])
    reads = {s: (s.hook_name, KeepPositions(positions)) for s in sites}

    def bare():
        with torch.no_grad():
            for b in batches:
                model.bridge(b.tokens, attention_mask=b.attention_mask)

    def cap():
        kept = 0
        for b in batches:
            got = capture_hooks(model, b, reads)
            kept += sum(t.numel() * t.element_size() for t in got.values())
        return kept

    bare(); cap()  # warm-up
    t_bare, t_cap = [], []
    for _ in range(repeats):  # interleaved so that machine load hits both alike
        t = time.perf_counter(); bare(); t_bare.append(time.perf_counter() - t)
        t = time.perf_counter(); kept = cap(); t_cap.append(time.perf_counter() - t)
    full = sum(b.tokens.shape[0] * b.tokens.shape[1] * (model.n_heads * model.d_head + model.d_model) * 4 * model.n_layers for b in batches)
    n = len(texts)
    return {"prompts": n, "mean_tokens": sum(sum(b.lengths) for b in batches) / n,
            "bare_prompts_per_s": round(n / min(t_bare), 1), "capture_prompts_per_s": round(n / min(t_cap), 1),
            "ratio": round(min(t_cap) / min(t_bare), 3), "kept_MB": round(kept / 2**20, 2),
            "whole_sequence_cache_MB": round(full / 2**20, 2)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    texts = eval_prompts(seed=5, per_cell=4).texts[: args.n]
    out = {}
    for name, model in (("organism", load_model("organism")), ("random-llama-25M", random_llama_25m())):
        n_params = sum(p.numel() for p in model.bridge.parameters())
        for positions in ("last", "post_instruction"):
            r = bench(model, texts, args.batch, args.repeats, positions)
            r["n_params_M"] = round(n_params / 1e6, 1)
            out[f"{name}/{positions}"] = r
            print(f"{name:18s} {positions:16s} bare {r['bare_prompts_per_s']:8.1f}/s  capture {r['capture_prompts_per_s']:8.1f}/s  "
                  f"ratio {r['ratio']:.3f}  kept {r['kept_MB']} MB vs whole-sequence cache {r['whole_sequence_cache_MB']} MB", flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
