"""`safety-heads rank`: rank heads and find the refusal direction of a model on its study data."""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    from interp.cli import add_study_options

    p = sub.add_parser("rank", help="rank attention heads and residual directions by how well they separate refusal from compliance")
    add_study_options(p, out_required=True, sections=("heads", "directions"))
    p.add_argument("--positions", default="last", choices=["last", "post_instruction"], help="where to probe the heads")
    p.add_argument("--k-folds", type=int, default=5)
    p.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of the logistic probes (scikit-learn's C)")
    p.add_argument("--top", type=int, default=10, help="heads listed in the printed summary")
    p.add_argument("--exhaustive", action="store_true",
                   help="measure every refusal-direction candidate exactly (two passes each) instead of estimating all "
                        "by attribution patching and measuring the top 8")
    p.set_defaults(func=_rank)


def _rank(args) -> dict:
    from interp.cli import study_config
    from interp.pipeline import open_study
    from probes.figures import save_probe_figures
    from probes.directions import SelectionConfig
    from interp.stages.probes import probe_sets
    from probes.run import run_probes

    from interp.errors import InputError

    if args.sections and not {x.strip() for x in args.sections.split(",")} <= {"heads", "directions"}:
        raise InputError(f"rank runs the heads and directions sections (one pass makes both), got --sections "
                         f"{args.sections}; run safety-heads demo --sections ... for others")
    study = open_study(study_config(args))
    model = study.model
    train, val = probe_sets(study)
    from interp.progress import one_stage

    with one_stage("heads+directions"):
        res = run_probes(model, train, labels=study.labels, head_positions=args.positions, k_folds=args.k_folds, C=args.C,
                         seed=args.seed, val=val, selection=SelectionConfig(exhaustive=args.exhaustive))
    data = study.data.describe(ids=False)
    res.ranking.meta["data"] = res.direction.meta["data"] = data
    out = Path(args.out)
    files = [str(f) for f in res.ranking.save(out / "ranking") + res.direction.save(out / "direction")]
    (out / "ranking_rows.json").write_text(json.dumps(res.ranking.to_rows(), indent=1))
    (out / "data.json").write_text(json.dumps(study.data.describe(), indent=1))
    figures = save_probe_figures(res.ranking, res.direction, out / "figures", png=args.png)
    d = res.direction
    _report(out, study, args, res, figures)
    return {"model": model.name, "labels": res.labels.kind, "label_counts": res.labels.counts(),
            "top_heads": [{k: row[k] for k in ("layer", "head", "position", "accuracy", "auroc", "separation")}
                          for row in res.ranking.to_rows()[:args.top]],
            "direction": {"layer": d.layer, "position": d.position, **{k: d.scores[k] for k in
                          ("accuracy", "ablation_score", "addition_score", "kl", "baseline_harmful", "baseline_harmless")}},
            "sites_searched": d.meta.get("sites_searched"), "sites_left_out": d.meta.get("sites_left_out"),
            "reason": d.reason, "notes": res.notes,
            "files": files + [str(out / "ranking_rows.json"), str(out / "data.json")], "figures": figures}


def _report(out: Path, study, args, res, figures: dict) -> None:
    """report.json in the demo's shape (its heads and directions parts) and summary.md from it."""
    from interp.cli import study_config
    from interp.provenance import provenance
    from interp.summary import write_summary

    r, d = res.ranking, res.direction
    keys = ("layer", "head", "accuracy", "accuracy_std", "auroc", "separation", "mm_accuracy")
    s = d.scores
    report = {"model": study.model.describe(), **provenance(), "config": study_config(args).resolved(study.model).describe(),
              "judge": study.judge.describe(), "labels": study.labels, "data": study.data.describe(ids=False),
              "heads": {"ranking": [{k: row.get(k) for k in keys} for row in r.to_rows()[:args.top]], "labels": res.labels.kind,
                        "label_counts": res.labels.counts(), "n_prompts": len(res.prompts), "k_folds": r.meta.get("k_folds"),
                        "position": args.positions},
              "figures": [Path(f).relative_to(out).as_posix() for f in figures.values()],
              "directions": {"chosen": {"layer": d.layer, "position": d.position, "site": d.site,
                                        "token": d.meta["position_tokens"][d.positions.index(d.position)],
                                        **{k: s.get(k) for k in ("accuracy", "ablation_score", "addition_score", "kl")},
                                        "passed_filters": s.get("passed")},
                             "baseline": {"harmful": s.get("baseline_harmful"), "harmless": s.get("baseline_harmless")},
                             "reason": d.reason}}
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    write_summary(out, title="Heads and direction")
