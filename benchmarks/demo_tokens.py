"""Where a command's forward passes go: padded tokens, calls and seconds of every bridge pass, per
pipeline stage and per calling function (the first frame in `interp/` or `probes/` above the
generation/capture plumbing).

    python benchmarks/demo_tokens.py demo --model organism:smollm2 --out out/tokens [any safety-heads arguments]

Prints one line per (stage, caller), most seconds first, and writes `tokens.json` beside the
report. A padded position costs as much as a real one, so a caller whose tokens far exceed its
prompts' real tokens batches without `interp.batching.prompt_chunks`. The stack walk costs a few
milliseconds per pass: read the seconds as shares, not as the command's own timing. Only forward
calls are counted (a backward pass, e.g. Token Highlighter's gradient, is not).
"""

from __future__ import annotations

import collections
import json
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PLUMBING = {"_step", "generate_batch", "_read", "capture_hooks", "_generate", "capture", "generate",
            "generate_with_logits", "capture_with_answers", "hook", "<lambda>",
            # interp.runner: the forward pass, stacked runs and their reads
            "forward", "last_logits", "run", "_full", "cache_block_inputs", "__call__"}


def main(argv: list[str]) -> int:
    import torch
    from transformer_lens import TransformerBridge

    from interp.cli import main as cli

    counts: dict[tuple[str, str], list] = collections.defaultdict(lambda: [0, 0, 0.0])  # calls, tokens, seconds
    forward = TransformerBridge.forward
    depth = [0]

    def counted(self, input, *a, **k):
        if depth[0]:  # a pass inside a pass (none expected): count the outer one only
            return forward(self, input, *a, **k)
        stage, caller = "-", "-"
        for fr in reversed(traceback.extract_stack()[:-1]):
            ours = "/interp/" in fr.filename or "/probes/" in fr.filename
            if caller == "-" and ours and fr.name not in PLUMBING:
                caller = f"{Path(fr.filename).name}:{fr.name}"
            if fr.name.endswith("_stage"):
                stage = fr.name
                break
        t = time.perf_counter()
        depth[0] += 1
        try:
            return forward(self, input, *a, **k)
        finally:
            depth[0] -= 1
            c = counts[(stage, caller)]
            c[0] += 1
            c[1] += int(input.numel()) if torch.is_tensor(input) else 0
            c[2] += time.perf_counter() - t

    TransformerBridge.forward = counted
    try:
        rc = cli(argv)
    finally:
        TransformerBridge.forward = forward
    rows = sorted(counts.items(), key=lambda kv: -kv[1][2])
    out = next((Path(argv[i + 1]) for i, a in enumerate(argv[:-1]) if a == "--out"), Path("."))
    target = (out.parent if out.suffix else out) / "tokens.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps([{"stage": s, "caller": c, "calls": n, "tokens": tok, "seconds": round(sec, 2)}
                                  for (s, c), (n, tok, sec) in rows], indent=1))
    print(f"{'stage':26s} {'caller':48s} {'calls':>6s} {'tokens':>9s} {'s':>7s}")
    for (s, c), (n, tok, sec) in rows:
        print(f"{s:26s} {c:48s} {n:6d} {tok:9d} {sec:7.1f}")
    print(f"wrote {target}")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]) or 0)
