"""`safety-heads slipping`: trace attention slipping over every jailbreak family and evaluate the
defenses (sharpening, SmoothLLM, Token Highlighter) on the held-out sets; the demo's two sections
on their own, written to DIR/report.json and DIR/figures/."""

from __future__ import annotations


def register(sub) -> None:
    from interp.cli import add_study_options

    p = sub.add_parser("slipping", help="attention on the request over a jailbreak's course, and the defenses")
    add_study_options(p, out_required=True, sections=("slipping", "defenses"), reuse=True)
    p.add_argument("--no-defenses", action="store_true", help="trace only")
    p.set_defaults(func=_slipping)


def _slipping(args) -> dict:
    from interp.cli import study_config
    from interp.pipeline import run_demo

    sections = ("slipping",) if args.no_defenses else ("slipping", "defenses")
    report = run_demo(study_config(args, sections=sections))
    slip = report.get("slipping", {})
    return {"out": args.out, "summary": f"{args.out}/summary.md", "top_heads": slip.get("top_heads"), "correlation": slip.get("correlation"),
            "defenses": {k: v for k, v in report.get("defenses", {}).items() if isinstance(v, dict)}}
