"""The organisms' subcommands, added to `safety-heads` through their model source
(`organisms.source`): `organism train` / `organism eval` (train an organism from scratch, its
behaviour table on the organism's held-out sets), `r2d eval` (base vs R2D [vs SFT-only] on the full
held-out grid) and `r2d train` (an R2D organism with a chosen CPO weight, e.g. 0 for the ablation)."""

from __future__ import annotations

import json
from pathlib import Path

from interp.commands.core import load_from_args
from interp.errors import InputError


def register(sub) -> None:
    from interp.cli import add_model_args

    org = sub.add_parser("organism", help="train or evaluate the model organism")
    osub = org.add_subparsers(dest="organism_command", required=True)
    t = osub.add_parser("train", help="train an organism from scratch (deterministic for a seed)")
    t.add_argument("--out", required=True)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--variant", default="gqa", choices=["gqa", "mha", "r2d", "smollm2", "smollm2-r2d"],
                   help="smollm2: a safety LoRA on SmolLM2-135M-Instruct (docs/organism_smollm2.md); smollm2-r2d: "
                   "R2D on SmolLM2-135M-Instruct from organism:smollm2's training requests (organisms.smollm2_r2d)")
    t.add_argument("--steps", type=int, default=None, help="training steps (default: the recipe's)")
    t.add_argument("--threads", type=int, default=None, help="smollm2 and smollm2-r2d only: torch threads (default: the recipe's, 1); "
                   "the adapter is bit-identical only at the same thread count")
    t.add_argument("--r2d", action="store_true", help="train the Reasoning-to-Defend organism (same as --variant r2d)")
    t.set_defaults(func=_organism_train)
    e = osub.add_parser("eval", help="behaviour table of a model on the organism's held-out sets")
    add_model_args(e)
    e.add_argument("--seed", type=int, default=1234)
    e.add_argument("--per-cell", type=int, default=None, help="prompts per jailbreak cell (default: 40; 32 on English sets)")
    e.add_argument("--sets", default="auto", choices=["auto", "organism", "english"],
                   help="held-out sets: the word-level organism's, or the English ones of organism:smollm2 (auto: by model kind)")
    e.add_argument("--harmful", default=None, help="english: an independent harmful prompt file (e.g. AdvBench goal CSV)")
    e.add_argument("--harmless", default=None, help="english: an independent harmless prompt file")
    e.add_argument("--over-refusal", default=None, help="english: an independent file of harmless look-alikes")
    e.add_argument("--per-label", type=int, default=None, help="english: plain held-out prompts per label and topic split (default: 64)")
    e.add_argument("--n-lookalike", type=int, default=None, help="english: held-out look-alikes (default: 48)")
    e.add_argument("--max-new-tokens", type=int, default=None,
                   help="greedy answer length the judge reads (default: 12 on the word-level sets, 32 on the English ones)")
    e.add_argument("--families", default=None, help="english: comma-separated jailbreak families (default: all)")
    e.add_argument("--no-base", action="store_true", help="english: skip the base-model comparison (first-8-token match)")
    e.add_argument("--out", default=None, help="english: write the behaviour table to this JSON file")
    e.set_defaults(func=_organism_eval)

    from interp.commands.r2d import r2d_subcommands

    rsub = r2d_subcommands(sub)  # `r2d train --model M` is the study layer's; without --model it trains this organism
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
    e.set_defaults(func=_r2d_eval)
    if "train" in rsub.choices:
        rsub.choices["train"].set_defaults(organism_train=_r2d_train)
    else:
        t = rsub.add_parser("train", help="train an R2D organism (deterministic for a seed)")
        t.add_argument("--out", required=True)
        t.add_argument("--seed", type=int, default=0)
        t.add_argument("--steps", type=int, default=None)
        t.add_argument("--cpo-weight", type=float, default=1.0, help="0 = SFT on the traces only (the ablation)")
        t.set_defaults(func=_r2d_train)


def _organism_train(args):
    from organisms.train import OrganismConfig, train_organism

    variant = "r2d" if args.r2d else args.variant
    if args.threads is not None and variant not in ("smollm2", "smollm2-r2d"):
        raise InputError("--threads applies to --variant smollm2 and smollm2-r2d only")
    if variant == "smollm2-r2d":
        from pathlib import Path

        from organisms.smollm2_r2d import build, default_config, summary

        kw = {k: v for k, v in (("steps", args.steps), ("threads", args.threads)) if v is not None}
        return summary(build(args.out, seed=args.seed, cfg=default_config(**kw)), Path(args.out))
    if variant == "smollm2":
        from dataclasses import replace

        from organisms.smollm2 import Smollm2Config, train_smollm2

        kw = {k: v for k, v in (("steps", args.steps), ("threads", args.threads)) if v is not None}
        rec = train_smollm2(args.out, seed=args.seed, cfg=replace(Smollm2Config(), **kw))
        return {k: rec[k] for k in ("seed", "train_seconds", "final_loss", "torch_threads", "adapter_bytes", "fingerprints")}
    if variant == "r2d":
        from organisms.r2d import train_r2d_organism  # the reasoning organism has its own recipe

        return train_r2d_organism(args.out, seed=args.seed, steps=args.steps)
    kw = {"steps": args.steps} if args.steps else {}
    return train_organism(args.out, seed=args.seed, cfg=OrganismConfig.for_variant(variant, **kw))


def _organism_eval(args):
    from interp.evaluate import evaluate_refusal
    from organisms.data import eval_prompts

    model = load_from_args(args).require_direct_answers()
    english = args.sets == "english" or (args.sets == "auto" and model.kind == "smollm2")
    if not english:
        if args.harmful or args.harmless or args.over_refusal or args.out or args.families or args.per_label or args.n_lookalike:
            raise InputError("--harmful, --harmless, --over-refusal, --families, --per-label, --n-lookalike and --out apply to "
                             "the English sets (--sets english)")
        from interp.estimate import announce

        prompts = eval_prompts(seed=args.seed, per_cell=args.per_cell or 40)
        from interp.generation import GenerationConfig

        gen = GenerationConfig(max_new_tokens=args.max_new_tokens or 12)
        announce(model, prompts, "organism eval", new_tokens=gen.max_new_tokens)
        ev = evaluate_refusal(model, prompts, gen=gen)
        return {"model": model.name, "refusal_rate": ev.table()}
    import json

    from interp.model import load_model
    from organisms.smollm2_eval import EvalConfig, behaviour_table

    sizes = {k: v for k, v in (("per_label", args.per_label), ("n_lookalike", args.n_lookalike),
                               ("max_new_tokens", args.max_new_tokens)) if v is not None}
    cfg = EvalConfig(seed=args.seed, per_cell=args.per_cell or 32, **sizes,
                     families=tuple(args.families.split(",")) if args.families else None)
    base = None if args.no_base else load_model("smollm2-135m-instruct", device=args.device)
    table = behaviour_table(model, cfg, base=base, harmful_file=args.harmful, harmless_file=args.harmless,
                            lookalike_file=args.over_refusal)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(table, indent=1))
    return {"model": model.name, "plain": {k: {lab: v[lab]["refused"] for lab in ("harmful", "harmless") if lab in v}
                                           for k, v in table["plain"].items()},
            "jailbreaks_harmful_refused": {f: r["harmful_refused"] for f, r in table["jailbreaks"].items()},
            "out": args.out}


def _r2d_eval(args):
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
        from interp.r2d.evaluate import measured_problems
        from organisms import paths

        R2D_DIR = paths.R2D_DIR

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


def _r2d_train(args):
    from organisms.r2d import train_r2d_organism

    return train_r2d_organism(args.out, seed=args.seed, steps=args.steps, cpo_weight=args.cpo_weight)
