"""`safety-heads r2d eval` (base vs R2D [vs SFT-only] on the full held-out grid) and
`safety-heads r2d train` (an R2D organism with a chosen CPO weight, e.g. 0 for the ablation)."""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("r2d", help="Reasoning-to-Defend organism: evaluate against the base organism, train variants")
    rsub = p.add_subparsers(dest="r2d_command", required=True)
    e = rsub.add_parser("eval", help="jailbreak success per family/strength and look-alike over-refusal, base vs R2D")
    e.add_argument("--model", default="organism:r2d", help="R2D checkpoint (default: the shipped one)")
    e.add_argument("--base", default="organism", help="base organism to compare with")
    e.add_argument("--sft-only", default=None, help="an R2D checkpoint trained with --cpo-weight 0 (the ablation)")
    e.add_argument("--per-cell", type=int, default=20)
    e.add_argument("--seed", type=int, default=1234)
    e.add_argument("--out", default="out/r2d", help="writes r2d_eval.json and figures here")
    e.add_argument("--inside", action="store_true", help="also rank pivot heads vs the base refusal heads")
    e.add_argument("--save-measured", action="store_true",
                   help="also store the result beside the R2D weights (measured.json, read by the demo)")
    e.set_defaults(func=_eval)
    t = rsub.add_parser("train", help="train an R2D organism (deterministic for a seed)")
    t.add_argument("--out", required=True)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--steps", type=int, default=None)
    t.add_argument("--cpo-weight", type=float, default=1.0, help="0 = SFT on the traces only (the ablation)")
    t.set_defaults(func=_train)


def _eval(args):
    from organisms import data as org  # the CLI's default data: the organism's held-out grid
    from organisms.provider import TRAINED_COMPLY, TRAINED_REFUSE
    from interp.plotting import save_figure
    from interp.r2d.evaluate import EvalConfig, comparison_figure, evaluate_models
    from interp.r2d.inside import InsideConfig
    from interp.r2d.model import load_base, load_r2d

    models = {"base": load_base(args.base), "r2d": load_r2d(args.model)}
    if args.sft_only:
        models["sft_only"] = load_r2d(args.sft_only)
    cfg = EvalConfig(seed=args.seed, per_cell=args.per_cell)
    grid = org.eval_prompts(seed=cfg.seed, per_cell=cfg.per_cell, families=cfg.families)
    look = org.lookalike_prompts(seed=cfg.seed, per_topic=cfg.lookalike_per_topic)
    res = evaluate_models(models, grid, look, TRAINED_COMPLY | TRAINED_REFUSE, cfg.batch_size)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res["figures"] = [str(p) for p in save_figure(comparison_figure(res), out / "r2d_vs_base")]
    if args.inside:
        from interp.r2d.inside import compare_decisions, heads_figure

        icfg = InsideConfig()
        probe_set = org.eval_prompts(seed=icfg.seed, per_cell=icfg.per_cell)
        inside = compare_decisions(models["r2d"], models["base"], probe_set, TRAINED_COMPLY, icfg)
        res["inside"] = inside
        if "sft_only" in models:  # the same analysis on the ablation: does CPO move the pivot heads?
            res["inside_sft_only"] = compare_decisions(models["sft_only"], models["base"], probe_set, TRAINED_COMPLY, icfg)
        res["figures"] += [str(p) for p in save_figure(heads_figure(inside), out / "r2d_pivot_heads")]
    (out / "r2d_eval.json").write_text(json.dumps(res, indent=1))
    if args.save_measured:
        from interp.errors import InputError
        from interp.r2d.evaluate import measured_problems
        from interp.stages.r2d import R2D_DIR

        problems = measured_problems(res)
        if problems:
            raise InputError(f"not saving {R2D_DIR / 'measured.json'}: this run fails the checks the shipped numbers "
                             f"must pass ({'; '.join(problems)}). Its result is in {out / 'r2d_eval.json'}; check the "
                             "installed versions against requirements.lock and rerun.")
        (R2D_DIR / "measured.json").write_text(json.dumps(res, indent=1))
    keys = ("jailbreak_success", "jailbreak_success_untrained_top", "jailbreak_success_untrained_cells",
            "harmful_refusal", "over_refusal", "over_refusal_base_tokens", "harmless_refusal_wrapped")
    summary = {n: {k: round(s[k], 3) for k in keys if k in s} for n, s in res["models"].items()}
    if args.inside:
        summary["inside"] = {k: res["inside"][k] for k in ("pivot_heads", "refusal_heads", "overlap_with_refusal_heads",
                                                            "spearman", "pivot_margin")}
    return {"out": str(out), **summary}


def _train(args):
    from organisms.r2d import train_r2d_organism

    return train_r2d_organism(args.out, seed=args.seed, steps=args.steps, cpo_weight=args.cpo_weight)
