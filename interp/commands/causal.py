"""`safety-heads causal`: the causal stage on its own, writing causal.json and its figures."""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    from interp.cli import add_study_options

    p = sub.add_parser("causal", help="which heads drive refusal (ablation, patching, DLA) and which K to steer")
    add_study_options(p, out_required=True, out_help="directory for causal.json and figures/")
    p.add_argument("--k", type=int, default=4, help="recommend at most K heads (1-4)")
    p.add_argument("--method", default="mean", choices=["mean", "zero", "resample"], help="ablation method")
    p.add_argument("--exhaustive", action="store_true",
                   help="ablate and patch every head exactly (one pass each) instead of estimating all by attribution "
                        "patching and measuring the top 8")
    p.set_defaults(func=_causal)


def _causal(args) -> dict:
    from interp.stages.causal import CausalConfig, causal_stage
    from interp.cli import study_config
    from interp.errors import InputError
    from interp.pipeline import _json_default, open_study, write_answers
    from interp.plotting import save_figure
    from interp.provenance import provenance
    from interp.study import figure_ref
    from interp.threads import model_threads

    if not 1 <= args.k <= 4:
        raise InputError(f"--k must be from 1 to 4, got {args.k}")
    cfg = study_config(args)
    out = Path(cfg.out)
    study = open_study(cfg)
    with model_threads(study.model):
        res = causal_stage(study, None, CausalConfig(k=args.k, method=args.method, seed=args.seed,
                                                        exhaustive=args.exhaustive))
    out.mkdir(parents=True, exist_ok=True)
    for name, fig in res.figures.items():
        save_figure(fig, out / figure_ref(name), png=cfg.png)
    result = {"model": study.model.describe(), **provenance(), "config": cfg.describe(), "data": study.data.describe(),
              **res.report}
    write_answers(out, study, result)  # every judged answer to out/completions.jsonl
    path = out / "causal.json"
    path.write_text(json.dumps(result, indent=1, default=_json_default))
    ab = result["ablation"]
    return {"out": str(path), "recommended_heads": result["recommended_heads"], "direction": ab["direction"],
            "refusal_rate_before": {k: v["refusal_rate"] for k, v in ab["baseline"].items()},
            "refusal_rate_harmful_after": ab["refusal_rate_harmful_after"],
            "refusal_rate_harmless_after": ab["refusal_rate_harmless_after"],
            "random_heads_refusal_rate_harmful_after": ab["random_heads_refusal_rate_harmful_after"],
            "random_heads_refusal_rate_harmless_after": ab["random_heads_refusal_rate_harmless_after"],
            "verdict": ab.get("verdict"), "completions": str(out / "completions.jsonl"),
            "correlations": result["correlations"]}
