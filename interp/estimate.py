"""What a command is about to run, said on stderr before its first forward pass: how many prompts,
how many tokens, and about how long.

The estimate is cheap and rough (expect it within a factor of about two). Prompts are grouped into
passes exactly as generation and capture group them (`interp.batching.prompt_chunks`: tokenization
only, no forward pass), and

    seconds = FLOPs / throughput + calls x n_layers x LAYER_OVERHEAD_S

* FLOPs = 2 x parameters x (padded prompt tokens + rows x new tokens): a forward pass costs about
  two floating-point operations per parameter per token (attention's own products, small next to
  the weights for prompts of a few hundred tokens, are left out);
* throughput: this machine's matrix-multiply rate, measured just now on products the width of the
  model (about 0.05 s, with the threads torch uses now);
* calls = passes x (1 + new tokens) forward calls, each paying a fixed cost per layer for hook
  dispatch and small kernels (LAYER_OVERHEAD_S: on a CPU, 32 extra decoding steps of the 4-layer
  organism cost 0.105 s of one thread, 0.8 ms per layer and step; the CUDA figure is an assumption).

Measured against the run it announces (SmolLM2-135M-Instruct, `eval` on 48 + 48 English requests,
one torch thread, a machine under load 15): estimated 90 s, 36 s of CPU time spent. The estimate
errs long when the matrix-multiply rate is measured on a busy machine.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Sequence

import torch

from interp.batching import prompt_chunks
from interp.model import ChatModel, texts

# seconds per layer per forward call beyond the arithmetic (hooks, dispatch); see the module docstring
LAYER_OVERHEAD_S = {"cpu": 1e-3, "cuda": 2e-4}
_THROUGHPUT: dict[tuple, float] = {}  # (device, dtype, width, threads) -> FLOP/s, measured once per process


@dataclass(frozen=True)
class Estimate:
    prompts: int
    passes: int
    prompt_tokens: int  # real tokens after chat formatting
    padded_tokens: int  # what the passes compute, padding included
    new_tokens: int  # generated per prompt (0: prompt passes only)
    seconds: float
    flops_per_s: float

    def line(self, what: str) -> str:
        gen = f", generating {self.new_tokens} tokens each" if self.new_tokens else ""
        return (f"{what}: {self.prompts} prompts ({self.prompt_tokens} tokens, {self.passes} passes{gen}); estimated "
                f"{_duration(self.seconds)} (2 x parameters x tokens at the {self.flops_per_s / 1e9:.0f} GFLOP/s measured "
                "here, plus a fixed cost per layer and call; see interp.estimate)")


def _duration(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def matmul_throughput(model: ChatModel, seconds: float = 0.05) -> float:
    """Floating-point operations per second of a matrix product as wide as `model`, on its device."""
    dev, dtype, d = model.device, model.dtype, model.d_model
    key = (str(dev), str(dtype), d, torch.get_num_threads())
    if key not in _THROUGHPUT:
        a = torch.randn(256, d, device=dev, dtype=dtype)
        b = torch.randn(d, 4 * d, device=dev, dtype=dtype)
        n, t0 = 0, time.perf_counter()
        while True:
            a @ b
            n += 1
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            if time.perf_counter() - t0 > seconds and n >= 3:
                break
        _THROUGHPUT[key] = 2 * 256 * d * 4 * d * n / (time.perf_counter() - t0)
    return _THROUGHPUT[key]


def estimate(model: ChatModel, prompts, new_tokens: int = 0, batch_size: int = 64,
             max_tokens: int | None = None) -> Estimate:
    """The estimate for running `prompts` through `model` in passes of at most `batch_size` prompts,
    generating `new_tokens` after each (0: one prompt pass, as capture and scoring make)."""
    prompt_texts = texts(prompts)
    lengths = model.token_lengths(prompt_texts)
    chunks = prompt_chunks(model, prompt_texts, batch_size, max_tokens)
    padded = sum(len(c) * max(lengths[i] for i in c) for c in chunks)
    params = sum(p.numel() for p in model.bridge.parameters())
    flops = 2 * params * (padded + len(prompt_texts) * new_tokens)
    rate = matmul_throughput(model)
    calls = len(chunks) * (1 + new_tokens)
    overhead = LAYER_OVERHEAD_S.get(model.device.type, LAYER_OVERHEAD_S["cpu"])
    seconds = flops / rate + calls * model.n_layers * overhead
    return Estimate(len(prompt_texts), len(chunks), sum(lengths), padded, new_tokens, seconds, rate)


def announce(model: ChatModel, prompts, what: str, new_tokens: int = 0, batch_size: int = 64) -> Estimate:
    """`estimate`, said on stderr as one line starting with `what`."""
    est = estimate(model, prompts, new_tokens, batch_size)
    print(f"safety-heads: {est.line(what)}", file=sys.stderr, flush=True)
    return est


def announce_study(model: ChatModel, splits: dict[str, Sequence], new_tokens: int, batch_size: int = 64) -> Estimate:
    """What a study holds, said before its first pass: the prompts of each split, and the estimate
    for one pass generating `new_tokens` for every one of them (a study makes several such passes:
    the baseline, each method's fitting and each steering or defense condition)."""
    every = [t for v in splits.values() for t in texts(v)]
    est = estimate(model, every, new_tokens, batch_size)
    sizes = ", ".join(f"{k} {len(v)}" for k, v in splits.items())
    print(f"safety-heads: study data: {len(every)} prompts ({sizes}); one pass over all of them, generating "
          f"{new_tokens} tokens each: estimated {_duration(est.seconds)} at the {est.flops_per_s / 1e9:.0f} GFLOP/s measured "
          "here (`safety-heads eval` makes this one pass; a study makes several; see interp.estimate)", file=sys.stderr, flush=True)
    return est
