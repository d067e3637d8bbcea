"""`safety-heads rank`: rank heads and find the refusal direction of a model on prompt files."""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    from interp.cli import add_model_args

    p = sub.add_parser("rank", help="rank attention heads and residual directions by how well they separate refusal from compliance")
    add_model_args(p)
    p.add_argument("--harmful", required=True, help="prompt file of harmful requests (see interp.datasets for formats)")
    p.add_argument("--harmless", required=True, help="prompt file of harmless requests")
    p.add_argument("--jailbreak", default=None, help="prompt file of jailbreak prompts (harmful; with behaviour labels, "
                                                      "the ones the model complies with are labelled complied)")
    p.add_argument("--labels", default="behaviour", choices=["behaviour", "category"],
                   help="behaviour: refused/complied judged on greedy answers (default); category: harmful/harmless")
    p.add_argument("--positions", default="last", choices=["last", "post_instruction"], help="where to probe the heads")
    p.add_argument("--k-folds", type=int, default=5)
    p.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of the logistic probes (scikit-learn's C)")
    p.add_argument("--val-fraction", type=float, default=0.25, help="share of prompts held out to select the direction")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top", type=int, default=10, help="heads listed in the printed summary")
    p.add_argument("--exhaustive", action="store_true",
                   help="measure every refusal-direction candidate exactly (two passes each) instead of estimating all "
                        "by attribution patching and measuring the top 8")
    p.add_argument("--png", action="store_true", help="also write PNG figures (needs kaleido + chrome)")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=_rank)


def _rank(args) -> dict:
    from interp.cli_core import load_from_args
    from interp.datasets import load_prompt_sets
    from probes.figures import save_probe_figures
    from probes.directions import SelectionConfig
    from probes.run import run_probes

    prompts = load_prompt_sets(harmful=args.harmful, harmless=args.harmless, jailbreak=args.jailbreak)
    model = load_from_args(args)
    res = run_probes(model, prompts, labels=args.labels, head_positions=args.positions, k_folds=args.k_folds, C=args.C,
                     seed=args.seed, val_fraction=args.val_fraction, selection=SelectionConfig(exhaustive=args.exhaustive))
    out = Path(args.out)
    files = [str(f) for f in res.ranking.save(out / "ranking") + res.direction.save(out / "direction")]
    (out / "ranking_rows.json").write_text(json.dumps(res.ranking.to_rows(), indent=1))
    figures = save_probe_figures(res.ranking, res.direction, out / "figures", png=args.png)
    d = res.direction
    return {"model": model.name, "labels": res.labels.kind, "label_counts": res.labels.counts(),
            "top_heads": [{k: row[k] for k in ("layer", "head", "position", "accuracy", "auroc", "separation")}
                          for row in res.ranking.to_rows()[:args.top]],
            "direction": {"layer": d.layer, "position": d.position, **{k: d.scores[k] for k in
                          ("accuracy", "ablation_score", "addition_score", "kl", "baseline_harmful", "baseline_harmless")}},
            "reason": d.reason, "notes": res.notes, "files": files + [str(out / "ranking_rows.json")], "figures": figures}
