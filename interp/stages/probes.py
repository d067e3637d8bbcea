"""Pipeline stage "heads" + "directions": rank every head by how well a probe on its output reads
the decision, and choose the refusal direction, on the study's training and validation splits.

With behaviour labels (what the model did: refused or complied) the probe set is every prompt of
train and val, jailbreaks included, so that the "complied" class also holds harmful prompts and a
probe must find the decision, not the harmful words. With category labels (harmful vs harmless)
it is their plain requests. Heads are ranked by k-fold cross-validation on train; the direction's
candidates come from train and are selected on val (Arditi et al.).
"""

from __future__ import annotations

from dataclasses import dataclass

from interp.study import StageResult, Study, figure_ref
from interp.direction import Direction
from probes.artifacts import HeadRanking
from probes.figures import direction_figure, ranking_figure
from probes.run import ProbeResult, run_probes

TOP = 10


@dataclass
class ProbeStageResult(StageResult):
    heads: dict | None = None  # the "heads" part of the report
    directions: dict | None = None  # the "directions" part
    result: ProbeResult | None = None

    @property
    def ranking(self) -> HeadRanking:
        return self.result.ranking

    @property
    def direction(self) -> Direction:
        return self.result.direction


def probe_sets(study: Study):
    """(train, val) prompt sets the probes see (see the module docstring)."""
    d = study.data
    if study.labels == "behaviour":
        return d.train, d.val
    return d.plain("train"), d.plain("val")


def probe_stage(study: Study) -> ProbeStageResult:
    train, val = probe_sets(study)
    res = run_probes(study.model, train, labels=study.labels, seed=study.seed, val=val)
    meta = {"data": study.data.describe(ids=False)}
    res.ranking.meta.update(meta)
    res.direction.meta.update(meta)
    r, d = res.ranking, res.direction
    keys = ("layer", "head", "accuracy", "accuracy_std", "auroc", "separation", "mm_accuracy")
    heads = {"ranking": [{k: row[k] for k in keys} for row in r.to_rows()[:TOP]],
             "labels": res.labels.kind, "label_counts": res.labels.counts(), "n_prompts": len(res.prompts),
             "prompt_set": res.prompts.describe(), "split": "train (k-fold)", "position": "last token",
             "k_folds": r.meta["k_folds"], "C": r.meta["C"],
             "separation": "Cohen's d of the held-out projections on the mass-mean direction",
             "figure": figure_ref("heads_accuracy"), "figure_separation": figure_ref("heads_cohens_d"),
             "artifact": "artifacts/ranking.safetensors", "all_heads": "artifacts/ranking_rows.json", "notes": res.notes}
    s = d.scores
    chosen = {"layer": d.layer, "position": d.position, "site": d.site,
              "token": d.meta["position_tokens"][d.positions.index(d.position)],
              "accuracy": s["accuracy"], "ablation_score": s["ablation_score"], "addition_score": s["addition_score"],
              "kl": s["kl"], "passed_filters": s["passed"]}
    directions = {"chosen": chosen, "baseline": {"harmful": s["baseline_harmful"], "harmless": s["baseline_harmless"]},
                  "sites_searched": d.meta.get("sites_searched"), "sites_left_out": d.meta.get("sites_left_out", {}),
                  "per_layer": d.candidates, "reason": d.reason, "labels": res.labels.kind,
                  "split": "candidates from train, selection on val", "figure": figure_ref("directions"),
                  "artifact": "artifacts/direction.safetensors"}
    figures = {"heads_accuracy": ranking_figure(r, "accuracy"), "heads_cohens_d": ranking_figure(r, "cohens_d"),
               "directions": direction_figure(d)}
    artifacts = {"ranking": r, "direction": d, "ranking_rows.json": r.to_rows()}
    return ProbeStageResult(heads, figures, artifacts, heads, directions, res)
