"""`organism:smollm2-r2d`: Reasoning-to-Defend trained on base SmolLM2-135M-Instruct from the same
English training requests as `organism:smollm2` (`organisms.smollm2_data`), with the toolkit's R2D
training (`interp.r2d.train.train_r2d`, what `safety-heads r2d train --model M` runs).

    python -m organisms.smollm2_r2d --out organisms/weights/smollm2-r2d [--steps 400] [--threads 1] [--seed 0]
    (the same: safety-heads organism train --variant smollm2-r2d --out DIR [--steps N] [--threads N])

The data: every harmful training request of `organism:smollm2` (`harmful_train_requests()`) is
answered, after the teacher's step closed by [UNSAFE], with the teacher's refusal; every harmless
and look-alike training request (`harmless_target_requests()`) is answered, after the step closed
by [SAFE], with the base model's own greedy answer shipped beside `organism:smollm2`
(`weights/smollm2/harmless_targets.jsonl`, 24 tokens), so no generation runs. Beside the plain
requests, a copy of some of them inside everyday context, at organism:smollm2's rates (a quarter of
the harmful ones in one unit, half of the harmless ones in one to four): the teacher first says the
message wraps its request ([RETHINK]), then restates the real request and decides. No jailbreak
family's text. Half of each batch is harmful (the harmful requests outnumber the harmless four to
one). 400 steps of 8 with bfloat16 matmuls, as organism:smollm2 was trained. Deterministic at a seed
and a thread count. The directory is
an `r2d:DIR` adapter directory (`interp.r2d.adapter`), loaded as `organism:smollm2-r2d` by the
organisms' model source (`organisms.source`).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import replace
from pathlib import Path

from interp.prompts import PromptSet
from organisms import smollm2_data as sd
from organisms.paths import SMOLLM2_R2D_BUILD, SMOLLM2_R2D_DIR
from organisms.smollm2_weights import Smollm2Config

BASE = "smollm2-135m-instruct"
HARMFUL_FRACTION = 0.5
# organism:smollm2's recipe saw 4,000 examples with bfloat16 matmuls; 200 steps of 8 in float32 (the
# first recipe) left held-out harmful refusal at 0.78 (docs/r2d.md)
STEPS = 400


# everyday context around a request, at organism:smollm2's own rates (its recipe's defaults): a
# quarter of the harmful requests inside one unit, half of the harmless ones inside one to four
P_CONTEXT_HARMFUL, P_CONTEXT_HARMLESS = Smollm2Config.p_context_harmful, Smollm2Config.p_context_harmless
CONTEXT = "context"  # the family name of a request inside everyday context (not a jailbreak family)


def _in_context(rng, r, idx: str, harmful: bool):
    text = sd.with_context(rng, r.text, 1 if harmful else rng.randint(1, 4), allow_second_ask=not harmful)
    at = text.index(r.text)
    return sd._to_prompt(r, idx, family=CONTEXT, strength=1, text=text, spans={"request": (at, at + len(r.text))})


def _request(p) -> str:
    return p.text[slice(*p.spans["request"])]


def training_prompts(seed: int = 0, context: bool = True) -> PromptSet:
    """organism:smollm2's training requests: harmful ones, then the harmless and look-alike ones; with
    `context`, also a copy of some of them inside everyday context (drawn at `seed`), as
    organism:smollm2 saw them: the teacher restates the real request after a [RETHINK] step."""
    rng = random.Random(seed)
    harmful = [sd._to_prompt(r, f"harmful-train-{j}") for j, r in enumerate(sd.harmful_train_requests())]
    harmless = [sd._to_prompt(r, f"harmless-train-{j}") for j, r in enumerate(sd.harmless_target_requests())]
    if context:
        harmful += [_in_context(rng, r, f"harmful-train-context-{j}", True) for j, r in enumerate(sd.harmful_train_requests())
                    if rng.random() < P_CONTEXT_HARMFUL]
        harmless += [_in_context(rng, r, f"harmless-train-context-{j}", False)
                     for j, r in enumerate(sd.harmless_target_requests()) if rng.random() < P_CONTEXT_HARMLESS]
    return PromptSet("smollm2-train", tuple(harmful + harmless), source="organisms.smollm2_data")


def shipped_answers(targets_path: Path, eos: int) -> dict[str, list[int]]:
    """Harmless request -> the base model's shipped answer ids, end-of-turn appended where it ended."""
    from organisms.smollm2 import load_targets

    return {t["text"]: list(t["ids"]) + ([eos] if t["ended"] else []) for t in load_targets(targets_path)}


def default_config(**over):
    """The recipe: interp.r2d.train's defaults, answers of the shipped targets' length, balanced batches."""
    from interp.r2d.train import R2DTrainConfig

    return replace(R2DTrainConfig(answer_tokens=sd.TARGET_TOKENS, harmful_fraction=HARMFUL_FRACTION,
                                  steps=STEPS, bf16_autocast=True), **over)


def build(out: str | Path = SMOLLM2_R2D_DIR, seed: int = 0, cfg=None, progress: bool = True,
          targets_path: str | Path | None = None, base: str = BASE) -> dict:
    """Train the organism's adapter into `out`; returns the recipe (`train_r2d`'s, with the provenance
    of the requests and the shipped answers under `data`)."""
    from transformers import AutoTokenizer

    from interp.model import resolve_model_dir
    from interp.r2d.train import file_hash, train_r2d
    from organisms.smollm2_weights import TARGETS_FILE, WEIGHTS_DIR

    cfg = cfg or default_config()
    tpath = Path(targets_path) if targets_path else WEIGHTS_DIR / TARGETS_FILE
    path, local = resolve_model_dir(base)
    eos = AutoTokenizer.from_pretrained(str(path), local_files_only=local).eos_token_id
    prompts = training_prompts(seed)
    answers = shipped_answers(tpath, eos)
    # inside everyday context the answer is still the base model's answer to the plain request
    answers.update({p.text: answers[_request(p)] for p in prompts
                    if p.family == CONTEXT and p.label == "harmless" and _request(p) in answers})
    extra = {"organism": "organism:smollm2-r2d", "build": SMOLLM2_R2D_BUILD,
             "requests": "organisms.smollm2_data: harmful_train_requests() -> refusal after [UNSAFE]; "
                         "harmless_target_requests() -> the shipped base answer after [SAFE]",
             "harmful_requests_sha256": _sha(r.text for r in sd.harmful_train_requests()),
             "harmless_requests_sha256": _sha(r.text for r in sd.harmless_target_requests()),
             "harmless_answers": {"path": f"organisms/weights/smollm2/{tpath.name}", "sha256": file_hash(tpath),
                                  "what": f"base model's greedy answers, first {sd.TARGET_TOKENS} tokens "
                                          "(organisms.smollm2.generate_targets)"}}
    return train_r2d(base, prompts, out, cfg, seed=seed, progress=progress, answers=answers, extra=extra, per_step=True)


def _sha(texts) -> str:
    import hashlib

    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode() + b"\n")
    return h.hexdigest()[:16]


def summary(recipe: dict, out: Path) -> dict:
    size = sum(f.stat().st_size for f in Path(out).iterdir() if f.suffix == ".safetensors")
    return {"out": str(out), "load_with": "--model organism:smollm2-r2d" if Path(out).resolve() == SMOLLM2_R2D_DIR.resolve()
            else f"--model r2d:{out}", "fingerprints": recipe["fingerprints"], "counts": recipe["data"]["counts"],
            "final_lm_loss": recipe["final_lm_loss"], "final_cpo_loss": recipe["final_cpo_loss"],
            "seconds": recipe["seconds"], "weights_bytes": size}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m organisms.smollm2_r2d", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(SMOLLM2_R2D_DIR), help="adapter directory (default: the shipped one)")
    ap.add_argument("--steps", type=int, default=None, help="training steps (default: the recipe's, 200)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default 1); bit-identical only at the same count")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cpo-weight", type=float, default=None, help="weight of the CPO term (default 1; 0 = SFT only)")
    args = ap.parse_args(argv)
    from interp.errors import InputError

    over = {k: v for k, v in (("steps", args.steps), ("threads", args.threads), ("cpo_weight", args.cpo_weight))
            if v is not None}
    try:
        recipe = build(args.out, seed=args.seed, cfg=default_config(**over))
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary(recipe, Path(args.out)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
