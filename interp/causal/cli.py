"""`safety-heads causal`: the causal section on its own, writing causal.json and its figures."""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    from interp.cli import add_model_args

    p = sub.add_parser("causal", help="which heads drive refusal (ablation, patching, DLA) and which K to steer")
    add_model_args(p)
    p.add_argument("--out", required=True, help="directory for causal.json and figures/")
    p.add_argument("--k", type=int, default=4, help="recommend at most K heads (1-4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-cell", type=int, default=20, help="held-out prompts per (label, family, strength)")
    p.add_argument("--method", default="mean", choices=["mean", "zero", "resample"], help="ablation method")
    p.set_defaults(func=_causal)


def _causal(args) -> dict:
    from interp.cli_core import load_from_args
    from interp.errors import InputError
    from interp.generation import GenerationConfig
    from interp.pipeline import DemoConfig, Study, _json_default, build_prompt_sets
    from interp.scoring import RefusalJudge
    from interp.causal.report import CausalConfig, run_causal

    if not 1 <= args.k <= 4:
        raise InputError(f"--k must be from 1 to 4, got {args.k}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_from_args(args)
    cfg = DemoConfig(model=args.model, out=str(out), seed=args.seed, per_cell=args.per_cell, device=args.device,
                     dtype=args.dtype, chat_template=args.chat_template, truncate=args.truncate,
                     sections=("causal",))
    train, ev = build_prompt_sets(cfg)
    study = Study(cfg, model, train, ev, RefusalJudge(), GenerationConfig(max_new_tokens=cfg.max_new_tokens, batch_size=64), out)
    result = run_causal(study, CausalConfig(k=args.k, method=args.method, seed=args.seed))
    from interp.provenance import provenance

    result = {"model": model.describe(), **provenance(), "prompt_sets": {"train": train.describe(), "eval": ev.describe()}, **result}
    path = out / "causal.json"
    path.write_text(json.dumps(result, indent=1, default=_json_default))
    ab = result["ablation"]
    return {"out": str(path), "recommended_heads": result["recommended_heads"], "direction": ab["direction"],
            "refusal_rate_harmful_after": ab["refusal_rate_harmful_after"],
            "refusal_rate_harmless_after": ab["refusal_rate_harmless_after"],
            "random_heads_refusal_rate_harmful_after": ab["random_heads_refusal_rate_harmful_after"],
            "random_heads_refusal_rate_harmless_after": ab["random_heads_refusal_rate_harmless_after"],
            "correlations": result["correlations"]}
