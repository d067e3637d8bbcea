"""Foundation subcommands: demo, organism train/eval, capture, generate."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    from interp.cli import add_model_args, add_study_args

    p = sub.add_parser("demo", help="run the whole study on a model and write report.json and figures")
    add_model_args(p)
    add_study_args(p, out_default="out/demo")
    p.add_argument("--harmful", default=None, help="prompt file of harmful requests (replaces the built-in training set)")
    p.add_argument("--harmless", default=None, help="prompt file of harmless requests")
    p.add_argument("--sections", default=None, help="comma-separated sections to run (default: all)")
    p.set_defaults(func=_demo)

    org = sub.add_parser("organism", help="train or evaluate the model organism")
    osub = org.add_subparsers(dest="organism_command", required=True)
    t = osub.add_parser("train", help="train an organism from scratch (deterministic for a seed)")
    t.add_argument("--out", required=True)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--variant", default="gqa", choices=["gqa", "mha", "r2d"])
    t.add_argument("--steps", type=int, default=None, help="training steps (default: the recipe's)")
    t.add_argument("--r2d", action="store_true", help="train the Reasoning-to-Defend organism (same as --variant r2d)")
    t.set_defaults(func=_organism_train)
    e = osub.add_parser("eval", help="behaviour table of a model on the organism's held-out sets")
    add_model_args(e)
    e.add_argument("--seed", type=int, default=1234)
    e.add_argument("--per-cell", type=int, default=40)
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
    c.set_defaults(func=_capture)


def load_from_args(args):
    import torch

    from interp.model import load_model
    from interp.placement import Placement

    placement = Placement.from_args(getattr(args, "device_map", None), getattr(args, "max_memory", None),
                                    getattr(args, "offload_folder", None))
    return load_model(args.model, device=args.device, dtype=getattr(torch, args.dtype), chat_template=args.chat_template,
                      truncate=getattr(args, "truncate", False), placement=placement)


def _demo(args):
    from interp.pipeline import DemoConfig, run_demo

    cfg = DemoConfig(model=args.model, out=args.out, seed=args.seed, per_cell=args.per_cell, device=args.device,
                     dtype=args.dtype, harmful_file=args.harmful, harmless_file=args.harmless, chat_template=args.chat_template,
                     sections=tuple(args.sections.split(",")) if args.sections else None, png=args.png, truncate=args.truncate)
    report = run_demo(cfg)
    print(f"wrote {Path(args.out) / 'report.json'} in {report['timings']['total']:.1f}s")
    return {"baseline": report.get("baseline", {}).get("refusal_rate")}


def _organism_train(args):
    from interp.organism.train import OrganismConfig, train_organism

    variant = "r2d" if args.r2d else args.variant
    if variant == "r2d":
        from interp.r2d.train import train_r2d_organism  # the reasoning organism has its own recipe

        return train_r2d_organism(args.out, seed=args.seed, steps=args.steps)
    kw = {"steps": args.steps} if args.steps else {}
    return train_organism(args.out, seed=args.seed, cfg=OrganismConfig.for_variant(variant, **kw))


def _organism_eval(args):
    from interp.evaluate import evaluate_refusal
    from interp.organism.data import eval_prompts

    model = load_from_args(args).require_direct_answers()
    ev = evaluate_refusal(model, eval_prompts(seed=args.seed, per_cell=args.per_cell))
    return {"model": model.name, "refusal_rate": ev.table()}


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
