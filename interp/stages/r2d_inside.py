"""The r2d section's parts that look inside the R2D model and attack it, run when the study's model is
the R2D model itself (`demo --model organism:smollm2-r2d` or `r2d:DIR`; a study of the comparison model
keeps its r2d section to the comparison):

* "pivot_heads" (`interp.r2d.pivot_heads`): which heads write the pivot decision, by probe and by
  ablation, whether ablating them flips [UNSAFE] to [SAFE] against random heads, and the pivot gap
  by jailbreak strength; on the test split, every label, family and strength;
* "attack": the logit-guided attack of the slipping section, against each model on the same plain
  harmful test requests: on the R2D model it drives down the pivot gap (`interp.r2d.attack`), on the
  comparison the refusal score; success by the judge on the final answer, R2D minus comparison
  paired by prompt. Both models' final answers go to completions.jsonl.
"""

from __future__ import annotations

from interp.errors import InputError
from interp.prompts import PromptSet
from interp.stats import difference, rate_record, verdict
from interp.study import Study, figure_ref

ATTACK_PROMPTS = 16  # plain harmful test requests attacked, the same for both models


def inside_parts(study: Study, r2d, comp, n_new: int) -> tuple[dict, dict]:
    """(report parts, figures)."""
    from interp.r2d.pivot_heads import PivotHeadsConfig, pivot_heads
    from interp.threads import model_threads

    report, figures = {}, {}
    try:  # a test split too small to probe or attack is a skip with the reason, not a failed section
        with model_threads(r2d):
            ph = pivot_heads(r2d, study.data.test, PivotHeadsConfig(seed=study.seed))
        report["pivot_heads"] = ph
        figures = {"r2d_pivot_heads": heads_map(ph, r2d.name), "r2d_pivot_gap": gap_lines(ph, r2d.name)}
    except InputError as e:
        report["pivot_heads"] = {"skipped": f"the test split cannot be probed: {e}"}
    try:
        report["attack"] = attack_part(study, r2d, comp, n_new)
    except InputError as e:
        report["attack"] = {"skipped": str(e)}
    report["figures"] = [figure_ref(n) for n in figures]
    return report, figures


def attack_part(study: Study, r2d, comp, n_new: int) -> dict:
    from interp.r2d.attack import pivot_target
    from interp.slipping.attack import AttackConfig, attack_summary, run_attacks, topic_words

    plain = study.data.test.filter(label="harmful", family=None)
    # not scaled down with the study's sizes: a paired difference needs its prompts (~11 s a prompt for both)
    prompts = PromptSet(plain.name + ":attack", plain.prompts[:ATTACK_PROMPTS], plain.source)
    prompts.require("harmful test requests to attack")
    acfg = AttackConfig(n_tokens=3, n_iters=8, n_candidates=8, exclude=topic_words(study.data.plain("train")), seed=study.seed,
                        max_new_tokens=study.gen.max_new_tokens)
    got = {r2d.name: run_attacks(r2d, prompts, acfg, ("guided",), study.judge, pivot_target(study.judge, n_new))["guided"],
           comp.name: run_attacks(comp, prompts, acfg, ("guided",), study.judge)["guided"]}
    success = {}
    for name, results, cond, n in ((r2d.name, got[r2d.name], "r2d:attack_guided", n_new),
                                   (comp.name, got[comp.name], "r2d-comparison:attack_guided", acfg.max_new_tokens)):
        study.record([r.final for r in results], [r.answer for r in results], [not r.success for r in results], None, cond,
                     max_new_tokens=n)
        success[name] = {"success": rate_record([r.success for r in results]), "condition": cond}
    a, b = [r.success for r in got[r2d.name]], [r.success for r in got[comp.name]]
    d = difference(a, b, prompts.ids, prompts.ids, seed=study.seed)
    return {"n": len(prompts), "success": success, "summary": {k: attack_summary({"guided": v})["guided"] for k, v in got.items()},
            "difference": {**d, "verdict": verdict(d, r2d.name, comp.name, "attack success")},
            "objective": {r2d.name: "pivot gap at the decision position (teacher-forced steps)", comp.name: "refusal score"},
            "config": {"n_tokens": acfg.n_tokens, "n_iters": acfg.n_iters, "n_candidates": acfg.n_candidates,
                       "excluded_topic_words": True},
            "examples": [r.to_dict() for r in got[r2d.name][:1]]}


def heads_map(ph: dict, name: str):
    import plotly.graph_objects as go

    z = ph["probe_scores"]
    fig = go.Figure(go.Heatmap(z=z, zmin=0.5, zmax=1.0, colorscale="Viridis", colorbar={"title": "held-out acc"},
                               hovertemplate="layer %{y}, head %{x}<br>probe accuracy %{z:.3f}<extra></extra>"))
    for heads, symbol, label in ((ph["pivot_heads"], "x", "pivot heads (ablation)"), (ph["probe_heads"], "circle-open", "probe's top")):
        fig.add_trace(go.Scatter(x=[h[1] for h in heads], y=[h[0] for h in heads], mode="markers", name=label,
                                 marker={"symbol": symbol, "size": 12, "color": "red"}))
    f = ph["flips"]
    fig.update_layout(title=f"{name}: probe accuracy for the next pivot, per head; ablating the pivot heads flips "
                            f"{f['pivot_heads']['rate']:.2f} (n={f['pivot_heads']['n']}) vs random {f['random_heads']['rate']:.2f}",
                      xaxis_title="head", yaxis_title="layer", template="plotly_white", width=760, height=520)
    return fig


def gap_lines(ph: dict, name: str):
    import plotly.graph_objects as go

    fig = go.Figure()
    for fam, row in ph["gap_by_strength"]["cells"].items():
        xs = [int(s) for s in row]
        ys = [row[s]["mean"] for s in row]
        ci = [row[s]["ci95"] or [row[s]["mean"]] * 2 for s in row]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=fam, error_y={
            "type": "data", "symmetric": False, "array": [c[1] - y for c, y in zip(ci, ys)],
            "arrayminus": [y - c[0] for c, y in zip(ci, ys)]}))
    fig.update_layout(title=f"{name}: pivot gap logit[UNSAFE] - logit[SAFE] on harmful prompts, by jailbreak strength (95% CI)",
                      xaxis_title="strength", yaxis_title="pivot gap", template="plotly_white", width=820, height=460)
    return fig
