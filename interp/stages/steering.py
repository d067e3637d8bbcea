"""Pipeline stage "steering": fit every intervention on the study's train split (plain
requests), select on val, measure on the held-out test split.

Takes the causal stage's recommended heads, the probe ranking and the probes' refusal direction
when earlier stages made them, else computes its own fallback (HSI head selection; the probes
stage's Arditi selection of the refusal direction, run here alone). Kept to a few tens of seconds on the
organism: effects are logit-only passes; generation (the judge's refusal rates) runs on a small
held-out subsample.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from interp.errors import InputError
from interp.intervention import Intervention
from interp.study import FULL_PER_CELL, StageResult, Study, figure_ref
from interp.steering._util import check_heads
from interp.steering.antidote import fit_antidote
from interp.steering.effect import EFFECT_DEFINITION, EffectMeter
from interp.steering.heads import fit_head_directions, select_heads
from interp.steering.layer import compare_heads_vs_layer
from interp.steering.calibration import calibrate
from interp.steering.tradeoff import scored_sweep, sweep, tradeoff_figure, unsteered_point
from interp.stages.evidence import baseline_answers, judged_runs
from interp.stages.steering_evidence import best_points, comparisons, record_sweep, records, with_records
from interp.stages.steering_inputs import K_HEADS, _given_direction, _given_heads, _held_out, _own_direction  # noqa: F401

SELECT_SIGMAS = 1.0  # single-head steering strength for HSI's head choice (sigma units)
# calibration grids: geometric, ~19% apart (sigmas for heads, fractions of the residual norm for the antidote)
HEAD_GRID = tuple(round(0.05 * 1.19 ** i, 4) for i in range(30))  # 0.05 .. ~7
ANTIDOTE_GRID = tuple(round(0.01 * 1.19 ** i, 4) for i in range(30))  # 0.01 .. ~1.5
MAX_HARMLESS_REFUSAL = 0.10
SWEEP_FACTORS = (0.5, 1.0, 1.5, 2.0)  # trade-off points per method, as multiples of its calibrated strength
SWEEP_FACTORS_REDUCED = (1.0, 2.0)  # at the demo's real-model scale


def _best_safe_gains(rows: list[dict]) -> dict:
    """Per method: the judged sweep point with the largest jailbreak refusal gain over the unsteered
    row among those keeping harmless refusal <= MAX_HARMLESS_REFUSAL."""
    base = next((r for r in rows if r["method"] == "unsteered"), None)
    if base is None or "jailbreak" not in base or "harmless" not in base:
        return {}
    out = {}
    for m in dict.fromkeys(r["method"] for r in rows if r["method"] != "unsteered"):
        ok = [r for r in rows if r["method"] == m and r["harmless"] <= MAX_HARMLESS_REFUSAL and r.get("measure") != "score"]
        if ok:
            b = max(ok, key=lambda r: r["jailbreak"])
            out[m] = {"strength": round(b["strength"], 4), "jailbreak_gain": round(b["jailbreak"] - base["jailbreak"], 4),
                      "jailbreak": round(b["jailbreak"], 4), "harmless": round(b["harmless"], 4)}
        else:
            out[m] = None
    return out


@dataclass
class SteeringResult(StageResult):
    head_directions: object = None  # interp.steering.heads.HeadDirections
    heads: list = None
    antidote: object = None  # the Jailbreak Antidote Intervention at its calibrated strength
    refusal_direction: object = None


def steering_stage(study: Study, recommended_heads=None, ranking=None, direction=None) -> SteeringResult:
    """Head steering (on the causal stage's heads, else the probe ranking's, else HSI's choice),
    layer steering, the Jailbreak Antidote and the refusal direction (the probes stage's, else the
    same selection run here), compared on the held-out split."""
    from interp.progress import Steps
    from interp.threads import model_threads

    with model_threads(study.model), Steps(label="steering") as steps:  # one thread: far faster on a shared machine
        return _stage(study, recommended_heads, ranking, direction, steps)


def _stage(study: Study, recommended_heads, ranking, given_direction, steps) -> SteeringResult:
    t0 = time.perf_counter()
    model = study.model
    train = study.data.plain("train").require("training set", 4, both_labels=True)
    harmful_tr, harmless_tr = train.filter(label="harmful"), train.filter(label="harmless")
    # at the demo's real-model scale (cells smaller than the full 20) the jailbreak measurements take
    # each family's strongest cell only and the sweeps two strengths, to keep the stage to minutes
    reduced = study.per_cell < FULL_PER_CELL
    effect_sets = _held_out(study.data.test, plain_n=study.scaled(40, 4), cell_n=study.scaled(4), seed=study.seed,
                            top_only=reduced)
    # generation (the judged rates a claim rests on): every held-out plain request (plain_per_label of
    # them), and at the real-model scale 4 prompts of each family's strongest cell
    gen_sets = _held_out(study.data.test, plain_n=len(study.data.test), cell_n=4 if reduced else study.scaled(2),
                         seed=study.seed + 1, top_only=reduced)
    factors = SWEEP_FACTORS_REDUCED if reduced else SWEEP_FACTORS
    # generation and the judge at the calibrated point (factor 1, the reported one); at the real-model
    # scale the curve's other points are read off the one-pass refusal score
    judged_f = factors if not reduced else [f for f in factors if f == 1.0]
    steps.total = 10 + 3 * len(judged_f) + 3 * reduced  # the steps named below
    jb_key = "jailbreak" if "jailbreak" in effect_sets else "harmful"
    timings = {}

    # ---- head steering (HSI / ITI shift) and the layer baseline
    steps.next("fit head directions")
    hd = fit_head_directions(model, train)
    got = _given_heads(recommended_heads, ranking)
    if got is not None:
        try:
            heads, heads_source = check_heads(model, got[0]), got[1]
            hd.shift(heads, 1.0)  # every head must have a fitted direction
        except InputError:
            got = None
    if got is None:
        heads = select_heads(model, hd, K_HEADS, harmless_tr[: min(16, len(harmless_tr))], SELECT_SIGMAS, by="steering")
        heads_source = f"HSI: largest single-head effect at {SELECT_SIGMAS:g} sigma on training harmless prompts"
    on_heads = Intervention.steer_heads(hd, heads, 1.0)
    steps.next("calibrate head steering")
    cal_h = calibrate(model, on_heads, harmless_tr, HEAD_GRID, MAX_HARMLESS_REFUSAL)
    sigmas_h = cal_h.strength
    steps.next("heads against the layer")
    cmp = compare_heads_vs_layer(model, hd, heads, sigmas_h, {k: effect_sets[k] for k in (jb_key, "harmless") if k in effect_sets})
    layers = cmp["layers"]
    timings["heads"] = time.perf_counter() - t0

    # ---- Jailbreak Antidote, sparse and dense, each at its calibrated strength
    t = time.perf_counter()
    steps.next("fit the Antidote")
    anti = fit_antidote(model, harmful_tr, harmless_tr, sparsity=0.05)
    sparse_iv, dense_iv = anti.intervention(), anti.with_sparsity(1.0).intervention()
    steps.next("calibrate the sparse Antidote")
    cal_s = calibrate(model, sparse_iv, harmless_tr, ANTIDOTE_GRID, MAX_HARMLESS_REFUSAL)
    steps.next("calibrate the dense Antidote")
    cal_d = calibrate(model, dense_iv, harmless_tr, ANTIDOTE_GRID, MAX_HARMLESS_REFUSAL)
    nf_s, nf_d = cal_s.strength, cal_d.strength
    steps.next("Antidote effects")
    jb_meter = EffectMeter(model, effect_sets[jb_key])
    e_s = jb_meter(sparse_iv.with_strength(nf_s))
    e_d = jb_meter(dense_iv.with_strength(nf_d))
    e_d_same = jb_meter(dense_iv.with_strength(nf_s))
    timings["antidote"] = time.perf_counter() - t

    # ---- refusal direction: ablation and addition, judged on generated answers
    t = time.perf_counter()
    steps.next("refusal direction")
    from_state = _given_direction(model, given_direction, harmful_tr, harmless_tr)
    direction, d_source = from_state or _own_direction(study)

    def _norm_fraction(d) -> float | None:
        """The added direction's size as a fraction of the mean last-token residual norm where it is
        added (the Antidote's unit, from the same training prompts): a strength that carries across models."""
        site = getattr(d, "site", None) or "resid_pre"
        at = d.layer - 1 if site == "resid_pre" else d.layer  # resid_pre of layer l is resid_post of l - 1
        if at is None or not 0 <= at < len(anti.scale) or float(anti.scale[at]) == 0:
            return None
        return round(float(d.vector.norm()) / float(anti.scale[at]), 4)

    def judged(d) -> tuple[dict, dict]:
        abl = judged_runs(study, gen_sets["harmful"], {"direction_ablation": Intervention.ablate_direction(d)}, "steering:")
        add = judged_runs(study, gen_sets["harmless"], {"direction_addition": Intervention.add_direction(d)}, "steering:")
        abl, add = abl["direction_ablation"], add["direction_addition"]
        return ({"ablation_harmful_refusal_rate": records(abl)["harmful"], "addition_harmless_refusal_rate": records(add)["harmless"],
                 "conditions": {"ablation": "steering:direction_ablation", "addition": "steering:direction_addition"},
                 "site": getattr(d, "site", None), "layer": d.layer, "position": getattr(d, "position", None),
                 "norm": round(float(d.vector.norm()), 4), "norm_fraction": _norm_fraction(d),
                 "examples": {"ablation": [r.answer for r in abl[:2]], "addition": [r.answer for r in add[:2]]}},
                {"ablation": abl, "addition": add})

    steps.next("judge direction ablation and addition")
    d_report, d_rows = judged(direction)
    d_report["source"] = d_source
    timings["direction"] = time.perf_counter() - t

    # ---- safety-utility trade-off on the small generation subsample
    t = time.perf_counter()
    # the unsteered answers are the baseline stage's when it ran (the same prompts and settings)
    steps.next("unsteered answers")
    known = {k: baseline_answers(study, v) for k, v in gen_sets.items()}
    unsteered, row = unsteered_point(model, gen_sets, study.judge, study.gen,
                                     known if all(v is not None for v in known.values()) else None)
    rows = [row]
    swept = [("hsi (heads)", on_heads, sigmas_h), ("layer (all heads)", Intervention.steer_layer(hd, layers, 1.0), sigmas_h),
             ("antidote (5%)", sparse_iv, nf_s)]
    for name, iv, chosen in swept:
        for f in judged_f:
            steps.next(f"judge {name} at {f:g}x its strength")
            rows += sweep(model, iv, [f * chosen], gen_sets, name, study.judge, study.gen, unsteered)
        if reduced:
            steps.next(f"score {name} at its other strengths")
            rows += scored_sweep(model, iv, [f * chosen for f in factors if f != 1.0], gen_sets, name, unsteered)
    recorded = record_sweep(study, gen_sets, rows)
    timings["tradeoff"] = time.perf_counter() - t
    figures = {"steering_tradeoff": tradeoff_figure(rows, x="harmless", title=f"Safety-utility trade-off: {model.name}"),
               "steering_tradeoff_kl": tradeoff_figure(rows, x="kl", title=f"Safety-utility trade-off (KL): {model.name}")}

    summary = best_points(_best_safe_gains(rows), recorded, study.seed)
    r4 = lambda x: round(float(x), 4)  # noqa: E731
    report = {
        "hsi": {"heads": [list(h) for h in heads], "sigmas": r4(sigmas_h), "effect": r4(cmp["effect_heads"][jb_key]),
                "effect_harmless": r4(cmp["effect_heads"].get("harmless", float("nan"))), "heads_source": heads_source,
                "kind": hd.kind},
        "layer": {"layer": layers[0] if len(layers) == 1 else layers, "layers": layers, "sigmas": r4(sigmas_h),
                  "effect": r4(cmp["effect_layer"][jb_key]), "ratio_heads_to_layer": r4(cmp["ratio"][jb_key]),
                  "effect_harmless": r4(cmp["effect_layer"].get("harmless", float("nan")))},
        "antidote": {"sparsity": anti.sparsity, "norm_fraction": r4(nf_s), "effect": r4(e_s), "dense_norm_fraction": r4(nf_d),
                     "dense_effect": r4(e_d), "ratio_sparse_to_dense": r4(e_s / e_d) if e_d else float("nan"),
                     "dense_effect_same_norm_fraction": r4(e_d_same), "layers": anti.layers, "paired": anti.paired,
                     "best_safe_jailbreak_gain": summary.get("antidote (5%)")},
        "direction": d_report,
        "tradeoff": with_records(rows, recorded, gen_sets),
        "comparisons": comparisons(recorded, {"hsi (heads)": sigmas_h, "layer (all heads)": sigmas_h, "antidote (5%)": nf_s},
                                   d_rows, study.seed),
        "calibrations": {"hsi_sigmas": cal_h.to_dict(), "antidote_norm_fraction": cal_s.to_dict(),
                         "antidote_dense_norm_fraction": cal_d.to_dict()},
        "calibration_notes": [n for n in (cal_h.note("head steering (sigmas)"), cal_s.note("sparse Antidote (norm fraction)"),
                                          cal_d.note("dense Antidote (norm fraction)")) if n],
        "tradeoff_best": summary,
        "effect_definition": EFFECT_DEFINITION + f"; reported effects are on the held-out {jb_key} prompts",
        "calibration": f"each method's strength = the largest grid value at which <= {MAX_HARMLESS_REFUSAL:.0%} of training "
                       "harmless prompts lean to refuse (refusal score > 0)",
        "n_prompts": {"effect": {k: len(v) for k, v in effect_sets.items()}, "generation": {k: len(v) for k, v in gen_sets.items()}},
        "jailbreak_cells": "each family's strongest (the demo's real-model scale)" if reduced else "every (family, strength)",
        "sweep_factors": list(factors),
        "figure": figure_ref("steering_tradeoff"), "figure_kl": figure_ref("steering_tradeoff_kl"),
        "seconds": {k: round(v, 2) for k, v in timings.items()},
    }
    from interp.stages.chosen import steering_chosen

    chosen = steering_chosen(hsi=on_heads.with_strength(sigmas_h), layer=Intervention.steer_layer(hd, layers, 1.0).with_strength(sigmas_h),
                             antidote=sparse_iv.with_strength(nf_s), antidote_dense=dense_iv.with_strength(nf_d),
                             direction=direction, rows=rows, gen_sets=gen_sets, d_report=d_report,
                             calibration=report["calibration"], effects={"hsi": report["hsi"]["effect"], "layer": report["layer"]["effect"],
                                                                         "antidote": r4(e_s), "antidote_dense": r4(e_d)})
    return SteeringResult(report, figures, chosen, hd, heads, sparse_iv.with_strength(nf_s), direction)
