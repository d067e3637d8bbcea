"""Pipeline stage "defenses": no defense, attention sharpening, SmoothLLM and Token Highlighter on
the same held-out prompts (plain requests plus each family at a middle and its top strength), with
paired comparisons against no defense. Sharpening's temperature and heads are calibrated on the
validation split (`interp.stages.defense_evidence`), never on the test split."""

from __future__ import annotations

from interp.intervention import Intervention
from interp.prompts import PromptSet
from interp.slipping.defense_eval import defense_figure, evaluate_defenses, subsample
from interp.slipping.defenses import NoDefense, SmoothLLM, TokenHighlighter
from interp.slipping.trace import TraceConfig, trace_attention
from interp.stages.defense_evidence import calibrated_sharpening, defense_evidence, sharpening_utility
from interp.stages.slipping import CFG, SlippingDemoConfig, _mean_heads
from interp.study import FULL_PER_CELL, StageResult, Study, figure_ref


def _defense_set(ev: PromptSet, per_cell: int, seed: int, top_only: bool = False) -> PromptSet:
    """Plain requests plus each family at a middle and at its top strength (`top_only`: the top)."""
    strengths = {f: sorted({max(ss)} if top_only else {max(1, max(ss) // 2), max(ss)}) for f, ss in ev.families().items()}
    return subsample(ev, per_cell, seed=seed, strengths=strengths)


def defenses_stage(study: Study, top_heads=None, causal_heads=None, cfg: SlippingDemoConfig = CFG) -> StageResult:
    """No defense, attention sharpening, SmoothLLM and Token Highlighter (its affirmation: the
    model's first compliance phrase) on the same held-out prompts; `top_heads` (the slipping
    stage's) are the heads whose attention explains what sharpening does. Sharpening's temperature
    and where it acts (every layer, `top_heads`, the causal stage's `causal_heads`) are chosen on the
    validation split under the harmless-refusal budget (`defense_evidence.calibrated_sharpening`)."""
    from interp.progress import Steps

    with Steps(7, label="defenses") as steps:
        return _defenses(study, top_heads, causal_heads, cfg, steps)


def _defenses(study: Study, top_heads, causal_heads, cfg: SlippingDemoConfig, steps) -> StageResult:
    model = study.model
    # at the demo's real-model scale each family is defended at its strongest cell only (SmoothLLM
    # alone generates ten copies of every prompt)
    ps = _defense_set(study.data.test, study.scaled(cfg.defense_per_cell), cfg.seed,
                      top_only=study.per_cell < FULL_PER_CELL)
    steps.next("calibrate sharpening on val")
    sharpening, calibration = calibrated_sharpening(study, top_heads, causal_heads, cfg.sharpen_T)
    defenses = {"none": NoDefense(), "sharpening": sharpening, "smoothllm": SmoothLLM(seed=cfg.seed),
                "token_highlighter": TokenHighlighter()}
    table = evaluate_defenses(model, ps, defenses, study.judge, study.gen,
                              each=lambda name: steps.next(f"defense {name} on {len(ps)} prompts"))
    steps.next("evidence and sharpening's utility")
    out = table.to_dict()
    evidence = defense_evidence(study, ps, table)
    trained = study.data.trained_comply
    out["sharpening"]["T"] = sharpening.T
    out["sharpening"]["layers"] = "all" if sharpening.heads is None else "heads"
    out["sharpening"]["calibration"] = calibration
    out["sharpening"]["utility"] = sharpening_utility(study, ps, sharpening)

    # why sharpening does what it does: attention on the request with and without it
    steps.next("attention with and without sharpening")
    heads = list(top_heads or [(0, h) for h in range(min(4, model.n_heads))])
    harm = ps.filter(label="harmful")
    base = trace_attention(model, harm, TraceConfig(max_new_tokens=0))
    with Intervention.sharpen(sharpening.T, None, list(sharpening.heads) if sharpening.heads else None).apply(model):
        sharp = trace_attention(model, harm, TraceConfig(max_new_tokens=0))
    mech = {}
    for f in sorted(harm.families()):
        idx = [i for i, p in enumerate(harm) if p.family == f]
        mech[f] = {"attention_on_request_none": round(float(_mean_heads(base.on("request"), heads)[idx].mean()), 4),
                   "attention_on_request_sharpened": round(float(_mean_heads(sharp.on("request"), heads)[idx].mean()), 4),
                   "refusal_score_none": round(float(base.refusal_score[idx].mean()), 4),
                   "refusal_score_sharpened": round(float(sharp.refusal_score[idx].mean()), 4)}
    out["sharpening"]["mechanism"] = {"heads": [list(h) for h in heads], "per_family": mech}
    for name, recs in evidence["records"].items():
        out[name].update(recs)
    out["comparisons"] = evidence["comparisons"]
    out["n_prompts"] = len(ps)
    out["table"] = table.markdown()
    out["figures"] = [figure_ref("defenses")]
    out["verdict"] = "; ".join(c["verdict"] for k, c in evidence["comparisons"].items() if k.endswith("jailbreak success"))
    left_out = ", ".join(f"{f} at strength {s}" for f, s in sorted(trained)) or "nothing (no cell was trained to comply)"
    out["note"] = ("jailbreak_success: a record over every harmful jailbreak prompt evaluated (pooled over the cells, of equal size ; each family at a middle and "
                   f"its top strength); jailbreak_success_untrained leaves out the cells the model was trained to obey: {left_out}. "
                   "Same prompts for every defense.")
    from interp.stages.chosen import defenses_chosen

    return StageResult(out, {"defenses": defense_figure(table)}, defenses_chosen(defenses, table, ps))
