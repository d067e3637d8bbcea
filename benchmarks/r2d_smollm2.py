"""Reasoning-to-Defend trained on SmolLM2-135M-Instruct from the English prompt files, then read
back on held-out requests (CPU; the full run is about half an hour on 2 idle cores).

    python benchmarks/r2d_smollm2.py --out DIR [--steps 200] [--seed 0] [--threads 2] [--cpo-weight 1]
                                     [--answer-tokens 48] [--max-new-tokens 64] [--no-eval] [--no-base]

data/prompts/english/{harmful,harmless}.csv are split per label by the seed (three quarters for
training, a quarter held out); the adapter is trained with `interp.r2d.train.train_r2d` (what
`safety-heads r2d train` runs) into DIR/adapter and loaded back as `r2d:DIR/adapter`. On the
held-out requests and the look-alikes (over_refusal.csv) it reports, each as a rate with its n and
95% interval: refusal read from the last pivot ([UNSAFE]), refusal by the judge on the final
answer, how often the two agree, and the base model's judged refusal on the same prompts. Writes
DIR/r2d_smollm2.json (with every answer) and prints its summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "data" / "prompts" / "english"
BASE = "smollm2-135m-instruct"


def splits(seed: int):
    from interp.datasets import load_prompt_file

    ps = load_prompt_file(DATA / "harmful.csv", fallback_label="harmful").concat(
        load_prompt_file(DATA / "harmless.csv", fallback_label="harmless"))
    parts = ps.split(seed=seed, fractions=(0.75, 0.0, 0.25))
    lookalikes = load_prompt_file(DATA / "over_refusal.csv", label="harmless")
    return parts["train"], parts["test"], lookalikes


def read_r2d(model, prompts, max_new: int) -> list[dict]:
    from interp.r2d.data import UNSAFE, final_answer, last_pivot
    from interp.r2d.evaluate import generate_r2d
    from interp.scoring import RefusalJudge

    answers = generate_r2d(model, prompts, max_new_tokens=max_new, batch_size=16)
    judged = RefusalJudge()([final_answer(a) for a in answers])
    return [{"text": p.text, "label": p.label, "answer": a, "last_pivot": last_pivot(a),
             "pivot_refused": last_pivot(a) == UNSAFE, "judge_refused": bool(j)} for p, a, j in zip(prompts, answers, judged)]


def read_base(model, prompts, max_new: int) -> list[dict]:
    from interp.generation import GenerationConfig, generate
    from interp.scoring import RefusalJudge

    answers = generate(model, prompts, GenerationConfig(max_new_tokens=max_new, batch_size=16))
    return [{"text": p.text, "label": p.label, "answer": a, "judge_refused": bool(j)}
            for p, a, j in zip(prompts, answers, RefusalJudge()(answers))]


def summary(rows: list[dict], base: list[dict] | None) -> dict:
    from interp.stats import rate_record

    out = {"pivot_refusal": rate_record([r["pivot_refused"] for r in rows]),
           "judge_refusal": rate_record([r["judge_refused"] for r in rows]),
           "pivot_judge_agree": rate_record([r["pivot_refused"] == r["judge_refused"] for r in rows]),
           "no_pivot": rate_record([r["last_pivot"] is None for r in rows])}
    if base is not None:
        out["base_judge_refusal"] = rate_record([r["judge_refused"] for r in base])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cpo-weight", type=float, default=1.0)
    ap.add_argument("--answer-tokens", type=int, default=48, help="length of the base model's own answers after [SAFE]")
    ap.add_argument("--max-new-tokens", type=int, default=64, help="held-out answers: the steps take ~35 tokens")
    ap.add_argument("--no-eval", action="store_true", help="train only")
    ap.add_argument("--no-base", action="store_true", help="skip the base model's answers")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from interp.r2d.train import R2DTrainConfig, train_r2d

    out = Path(args.out)
    train, test, lookalikes = splits(args.seed)
    load0 = os.getloadavg()
    cfg = R2DTrainConfig(steps=args.steps, threads=args.threads, cpo_weight=args.cpo_weight, answer_tokens=args.answer_tokens)
    recipe = train_r2d(BASE, train, out / "adapter", cfg, seed=args.seed,
                       files={"harmful": str(DATA / "harmful.csv"), "harmless": str(DATA / "harmless.csv")})
    res = {"command": " ".join(sys.argv), "base": BASE, "train": {"n": len(train), "sha256": train.sha256()},
           "held_out": {"n": len(test), "sha256": test.sha256()}, "lookalikes": len(lookalikes),
           "recipe": {k: recipe[k] for k in ("fingerprints", "seconds", "final_lm_loss", "final_cpo_loss", "cpo_weight")},
           "loadavg_start": [round(x, 2) for x in load0]}
    if not args.no_eval:
        from interp.model import load_model

        torch.set_num_threads(args.threads)
        t0 = time.time()
        model = load_model(f"r2d:{out / 'adapter'}")
        sets = {"harmful": test.filter(label="harmful"), "harmless": test.filter(label="harmless"), "lookalike": lookalikes}
        rows = {k: read_r2d(model, s, args.max_new_tokens) for k, s in sets.items()}
        del model
        base = None
        if not args.no_base:
            bm = load_model(BASE)
            base = {k: read_base(bm, s, args.max_new_tokens) for k, s in sets.items()}
        res["eval"] = {k: summary(rows[k], base[k] if base else None) for k in sets}
        res["eval_seconds"] = round(time.time() - t0, 1)
        res["answers"] = {"r2d": rows, "base": base}
    res["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    out.mkdir(parents=True, exist_ok=True)
    (out / "r2d_smollm2.json").write_text(json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if k != "answers"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
