"""`safety-heads causal`: the causal stage on its own, writing causal.json and its figures."""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    from interp.cli import add_study_options

    p = sub.add_parser("causal", help="which heads drive refusal (ablation, patching, DLA) and which K to steer")
    add_study_options(p, out_required=True, out_help="directory for causal.json and figures/", sections=("causal",),
                      reuse=True)
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
    if args.heads:
        raise InputError("causal finds the heads that drive refusal; --heads names them for steer, slipping and demo")
    if args.sections and args.sections.replace(" ", "") != "causal":
        raise InputError(f"causal runs the causal section only, got --sections {args.sections}; run "
                         "safety-heads demo --sections ... for others")
    cfg = study_config(args)
    out = Path(cfg.out)
    study = open_study(cfg)
    ccfg = CausalConfig(k=args.k, method=args.method, seed=args.seed, exhaustive=args.exhaustive)
    part, ranking = _given(study, cfg, ccfg)
    out.mkdir(parents=True, exist_ok=True)
    if part is None:
        from interp.progress import one_stage

        with model_threads(study.model), one_stage("causal"):
            res = causal_stage(study, ranking, ccfg)
        for name, fig in res.figures.items():
            save_figure(fig, out / figure_ref(name), png=cfg.png)
        part = res.report
    result = {"model": study.model.describe(), **provenance(), "config": cfg.describe(), "data": study.data.describe(),
              "judge": study.judge.describe(), **part}
    write_answers(out, study, result)  # every judged answer to out/completions.jsonl
    path = out / "causal.json"
    path.write_text(json.dumps(result, indent=1, default=_json_default))
    from interp.summary import write_summary

    saved = json.loads(path.read_text())  # the summary reads what was written, nothing else
    write_summary(out, {k: saved.get(k) for k in ("model", "config", "data", "judge")} | {"causal": saved},
                  title="Which heads drive refusal")
    ab = result["ablation"]
    return {"out": str(path), "summary": str(out / "summary.md"), "recommended_heads": result["recommended_heads"], "direction": ab["direction"],
            "refusal_rate_before": {k: v["refusal_rate"] for k, v in ab["baseline"].items()},
            "refusal_rate_harmful_after": ab["refusal_rate_harmful_after"],
            "refusal_rate_harmless_after": ab["refusal_rate_harmless_after"],
            "random_heads_refusal_rate_harmful_after": ab["random_heads_refusal_rate_harmful_after"],
            "random_heads_refusal_rate_harmless_after": ab["random_heads_refusal_rate_harmless_after"],
            "verdict": ab.get("verdict"), "completions": str(out / "completions.jsonl"),
            "correlations": result["correlations"]}


def _given(study, cfg, ccfg) -> tuple[dict | None, object]:
    """(the earlier run's causal part, when --from names one made with the same settings, else None;
    the earlier run's head ranking, compared with the causal methods when the search runs)."""
    from dataclasses import asdict

    from interp.pipeline import _copy_figures
    from interp.progress import say
    from interp.reuse import gather

    if cfg.from_dir is None:
        return None, None
    given = gather(study, cfg.from_dir, None, None)
    part = given.parts.get("causal")
    same = part is not None and all((part.get("config") or {}).get(k) == v for k, v in asdict(ccfg).items())
    if not same:
        why = "it has no causal result" if part is None else "its causal result was made with other settings"
        say(f"causal search: recomputed ({why}){'; the head ranking from ' + cfg.from_dir if given.ranking else ''}")
        return None, given.ranking
    say(f"causal: given (from {cfg.from_dir}, same settings), not recomputed")
    _copy_figures(part, Path(cfg.from_dir), Path(cfg.out))
    skip = ("model", "config", "data", "toolkit_version", "libraries", "reused_from")
    return {**{k: v for k, v in part.items() if k not in skip}, "reused_from": cfg.from_dir}, given.ranking
