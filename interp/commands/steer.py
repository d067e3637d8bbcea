"""`safety-heads steer`: rank heads, find the refusal direction, pick the heads that cause refusal,
then compare head steering, layer steering, the refusal direction and the Jailbreak Antidote on the
held-out sets (the demo's heads, directions, causal and steering sections, on their own)."""

from __future__ import annotations


SECTIONS = ("heads", "directions", "causal", "steering")


def register(sub) -> None:
    from interp.cli import add_study_options

    p = sub.add_parser("steer", help="compare HSI, layer steering, refusal direction and antidote; safety-utility curves")
    add_study_options(p, out_required=True, sections=SECTIONS, reuse=True)
    p.set_defaults(func=_steer)


def _steer(args) -> dict:
    from interp.cli import study_config
    from interp.pipeline import run_demo

    report = run_demo(study_config(args, sections=SECTIONS))
    st = report.get("steering", {})
    return {"out": args.out, "summary": f"{args.out}/summary.md", **{k: st[k] for k in ("hsi", "layer", "antidote", "direction") if k in st}}
