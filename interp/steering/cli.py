"""`safety-heads steer`: rank heads, find the refusal direction, pick the heads that cause refusal,
then compare head steering, layer steering, the refusal direction and the Jailbreak Antidote on the
held-out sets (the demo's heads, directions, causal and steering sections, on their own)."""

from __future__ import annotations


def register(sub) -> None:
    from interp.cli import add_model_args, add_study_args

    p = sub.add_parser("steer", help="compare HSI, layer steering, refusal direction and antidote; safety-utility curves")
    add_model_args(p)
    add_study_args(p)
    p.set_defaults(func=_steer)


def _steer(args) -> dict:
    from interp.pipeline import DemoConfig, run_demo

    cfg = DemoConfig(model=args.model, out=args.out, seed=args.seed, per_cell=args.per_cell, device=args.device,
                     dtype=args.dtype, chat_template=args.chat_template, truncate=args.truncate, png=args.png,
                     sections=("heads", "directions", "causal", "steering"))
    report = run_demo(cfg)
    st = report["steering"]
    return {"out": args.out, **{k: st[k] for k in ("hsi", "layer", "antidote", "direction") if k in st}}
