"""Foundation subcommands: demo, eval, organism train/eval, capture."""

from __future__ import annotations

from pathlib import Path

from interp.errors import InputError


def register(sub) -> None:
    from interp.cli import _phrases, add_model_args, add_study_options

    p = sub.add_parser("demo", help="run the whole study on a model and write report.json and figures")
    add_study_options(p, out_default="out/demo")
    p.add_argument("--sections", default=None, help="comma-separated sections to run (default: all): "
                   "baseline,heads,directions,causal,steering,slipping,defenses,r2d")
    p.set_defaults(func=_demo)

    e = sub.add_parser("eval", help="behaviour table (refusal rate and score on harmful, harmless, jailbreak and "
                                    "over-refusal prompts) as JSON on stdout")
    add_study_options(e, out_help="also write the table here (a .json file, or a directory for eval.json)")
    e.set_defaults(func=_eval)

    org = sub.add_parser("organism", help="train or evaluate the model organism")
    osub = org.add_subparsers(dest="organism_command", required=True)
    t = osub.add_parser("train", help="train an organism from scratch (deterministic for a seed)")
    t.add_argument("--out", required=True)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--variant", default="gqa", choices=["gqa", "mha", "r2d", "smollm2"],
                   help="smollm2: a safety LoRA on SmolLM2-135M-Instruct (docs/organism_smollm2.md)")
    t.add_argument("--steps", type=int, default=None, help="training steps (default: the recipe's)")
    t.add_argument("--threads", type=int, default=None, help="smollm2 only: torch threads (default: the recipe's, 1); "
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
    e.add_argument("--families", default=None, help="english: comma-separated jailbreak families (default: all)")
    e.add_argument("--no-base", action="store_true", help="english: skip the base-model comparison (first-8-token match)")
    e.add_argument("--out", default=None, help="english: write the behaviour table to this JSON file")
    e.set_defaults(func=_organism_eval)

    c = sub.add_parser("capture", help="capture activations to safetensors shards")
    add_model_args(c)
    c.add_argument("--prompts", required=True, help="prompt file (see interp.datasets for formats)")
    c.add_argument("--label", default=None, help="label for files without one (harmful/harmless)")
    c.add_argument("--sites", default="z", help="comma-separated: z,resid_pre,resid_mid,resid_post,attn_out,mlp_out")
    c.add_argument("--positions", default="last", help="last | post_instruction | comma-separated indices")
    c.add_argument("--out", required=True)
    c.add_argument("--shard-size", type=int, default=256)
    c.add_argument("--overwrite", action="store_true", help="discard a previous capture in --out instead of resuming it")
    # a capture reads no refusal score, but loading builds the token sets: a vocabulary without the
    # common openers needs its own (as on every study command)
    c.add_argument("--refusal-phrases", type=_phrases, default=None, help="openers of this model's refusals, if its "
                   "vocabulary lacks the common ones (see `safety-heads eval --help`)")
    c.add_argument("--compliance-phrases", type=_phrases, default=None, help="openers of its compliant answers, likewise")
    c.set_defaults(func=_capture)


def load_from_args(args):
    import torch

    from interp.model import load_model
    from interp.placement import Placement

    placement = Placement.from_args(getattr(args, "device_map", None), getattr(args, "max_memory", None),
                                    getattr(args, "offload_folder", None))
    return load_model(args.model, device=args.device, dtype=getattr(torch, args.dtype), chat_template=args.chat_template,
                      truncate=getattr(args, "truncate", False), placement=placement,
                      refusal_phrases=getattr(args, "refusal_phrases", None),
                      compliance_phrases=getattr(args, "compliance_phrases", None),
                      skip_bridge_check=getattr(args, "skip_bridge_check", False))


def _demo(args):
    from interp.cli import study_config
    from interp.pipeline import run_demo

    cfg = study_config(args, sections=tuple(args.sections.split(",")) if args.sections else None)
    report = run_demo(cfg)
    print(f"wrote {Path(cfg.out) / 'report.json'} in {report['timings']['total']:.1f}s")
    return {"baseline": report.get("baseline", {}).get("refusal_rate")}


def _eval(args):
    """The behaviour table on every prompt of the study (nothing is fitted, so nothing is held out)."""
    import json

    from interp.cli import study_config
    from interp.distributed import process_group
    from interp.pipeline import evaluation_table, open_study

    # nothing is fitted, so every split is evaluated: its jailbreak cells keep up to --per-cell
    # prompts too, not the few the fitting splits keep (a user's file would lose rows)
    per_cell = args.per_cell if args.per_cell is not None else 20  # every row of a file, not the demo's scale
    cfg = study_config(args, per_cell=per_cell, fit_per_cell=per_cell)
    with process_group() as w:  # under torchrun every rank takes its share of the batches
        study = open_study(cfg)
        table = {"model": study.model.name, **evaluation_table(study, world=w), "judge": study.judge.describe(),
                 "data": study.data.describe(ids=False)}
    if not w.is_main:
        return None  # rank 0 prints and writes the table
    if args.out:
        out = Path(args.out)
        if out.suffix != ".json":
            out.mkdir(parents=True, exist_ok=True)
            out = out / "eval.json"
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(table, indent=1, default=str))
    return table


def _organism_train(args):
    from interp.organism.train import OrganismConfig, train_organism

    variant = "r2d" if args.r2d else args.variant
    if args.threads is not None and variant != "smollm2":
        raise InputError("--threads applies to --variant smollm2 only")
    if variant == "smollm2":
        from dataclasses import replace

        from interp.organism.smollm2 import Smollm2Config, train_smollm2

        kw = {k: v for k, v in (("steps", args.steps), ("threads", args.threads)) if v is not None}
        rec = train_smollm2(args.out, seed=args.seed, cfg=replace(Smollm2Config(), **kw))
        return {k: rec[k] for k in ("seed", "train_seconds", "final_loss", "torch_threads", "adapter_bytes", "fingerprints")}
    if variant == "r2d":
        from interp.organism.r2d import train_r2d_organism  # the reasoning organism has its own recipe

        return train_r2d_organism(args.out, seed=args.seed, steps=args.steps)
    kw = {"steps": args.steps} if args.steps else {}
    return train_organism(args.out, seed=args.seed, cfg=OrganismConfig.for_variant(variant, **kw))


def _organism_eval(args):
    from interp.evaluate import evaluate_refusal
    from interp.organism.data import eval_prompts

    model = load_from_args(args).require_direct_answers()
    english = args.sets == "english" or (args.sets == "auto" and model.kind == "smollm2")
    if not english:
        if args.harmful or args.harmless or args.over_refusal or args.out or args.families or args.per_label or args.n_lookalike:
            raise InputError("--harmful, --harmless, --over-refusal, --families, --per-label, --n-lookalike and --out apply to "
                             "the English sets (--sets english)")
        ev = evaluate_refusal(model, eval_prompts(seed=args.seed, per_cell=args.per_cell or 40))
        return {"model": model.name, "refusal_rate": ev.table()}
    import json

    from interp.model import load_model
    from interp.organism.smollm2_eval import EvalConfig, behaviour_table

    sizes = {k: v for k, v in (("per_label", args.per_label), ("n_lookalike", args.n_lookalike)) if v is not None}
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


def _capture(args):
    from interp.capture import capture_to_disk
    from interp.datasets import load_prompt_file

    from interp.distributed import process_group

    prompts = load_prompt_file(args.prompts, label=args.label)
    with process_group() as world:  # a world of one unless started by torchrun
        args.device = world.device(args.device)
        model = load_from_args(args)
        out = capture_to_disk(model, prompts, args.out, sites=args.sites.split(","), positions=args.positions,
                              shard_size=args.shard_size, overwrite=args.overwrite, world=world)
    if not world.is_main:
        return None  # one process reports
    return {"out": str(out), "n_prompts": len(prompts), "processes": world.size}
