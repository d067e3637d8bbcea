"""The seed claims measured again on `organism:smollm2`, one row at a time, with small prompt counts
(CPU). docs/claims.md shows the numbers beside the embedded organism's.

    python benchmarks/claims_smollm2.py ROW[,ROW...] [--seed 0] [--n-train 16] [--per-cell 2] [--n-eval 16] [--out DIR]

Rows (fastest first): direction, heads, antidote, causal, slipping (with the logit-guided attack
against random search), defenses. Every row uses the same study data (`smollm2_study`: fitting
on plain English requests of every topic and template, measuring on the held-out grid of held-out
templates, every jailbreak family at every strength) and writes `DIR/ROW.json` with the prompt
counts it used. The methods are the toolkit's, with the settings the demo stages use; only the
prompt counts are smaller.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ROWS = ("direction", "heads", "antidote", "causal", "slipping", "defenses")
N_EVAL = 16  # plain held-out requests per label for judged rates (--n-eval)
JB_FAMILIES: tuple[str, ...] = ()  # jailbreak families of the held-out sets (--families; empty: all)


def open_study(seed: int, n_train: int, per_cell: int):
    from interp.generation import GenerationConfig
    from interp.model import load_model
    from organisms.provider import smollm2_study
    from interp.study import Study, StudyConfig, make_judge

    model = load_model("organism:smollm2")
    data = smollm2_study(seed=seed, per_cell=per_cell, n_train=n_train, fit_per_cell=1)
    return Study(model, data, make_judge(StudyConfig()), GenerationConfig(max_new_tokens=12, batch_size=32), "category", seed)


def held_out(study, per_cell: int):
    """Plain harmful, harmless, and harmful jailbreaks (at most `per_cell` per family x strength) of the test split."""
    from interp.steering.tradeoff import split_sets, subsample

    from organisms import smollm2_data as sd

    sets = split_sets(subsample(study.data.test, per_cell, seed=study.seed), harmless_wrapped=False)
    # plain requests: a larger held-out draw than the grid's (held-out templates, every topic), fixed by the seed
    plain = sd.eval_prompts(seed=study.seed + 2000, per_label=N_EVAL, topic_split="all")
    sets["harmful"], sets["harmless"] = plain.filter(label="harmful"), plain.filter(label="harmless")
    if JB_FAMILIES:  # e.g. the short found families: many-shot prompts are ~700 tokens, costly on a CPU
        jb = sets["jailbreak"]
        sets["jailbreak"] = type(jb)(jb.name, tuple(p for p in jb if p.family in JB_FAMILIES), jb.source)
    return sets


def row_direction(study, args) -> dict:
    from interp.evaluate import evaluate_refusal
    from interp.intervention import Intervention
    from probes.directions import find_refusal_direction

    d = study.data
    m = study.model
    h_tr, l_tr = d.plain("train", "harmful"), d.plain("train", "harmless")
    own = find_refusal_direction(m, d.plain("train"), d.plain("val"), labels="category", seed=study.seed)
    rows = own.candidates
    sets = held_out(study, args.per_cell)
    base_h = evaluate_refusal(m, sets["harmful"], study.judge, study.gen, with_scores=False).rate()
    base_l = evaluate_refusal(m, sets["harmless"], study.judge, study.gen, with_scores=False).rate()
    with Intervention.ablate_direction(own).apply(m):
        abl = evaluate_refusal(m, sets["harmful"], study.judge, study.gen, with_scores=False)
    with Intervention.add_direction(own).apply(m):
        add = evaluate_refusal(m, sets["harmless"], study.judge, study.gen, with_scores=False)
    return {"site": own.site, "layer": own.layer, "position": own.position,
            "harmful_refused": {"unsteered": base_h, "ablated": round(abl.rate(), 4)},
            "harmless_refused": {"unsteered": base_l, "added": round(add.rate(), 4)},
            "examples": {"ablation": abl.answers[:2], "addition": add.answers[:2]},
            "n": {"train": [len(h_tr), len(l_tr)], "val": [len(d.plain("val", "harmful")), len(d.plain("val", "harmless"))],
                  "harmful": len(sets["harmful"]), "harmless": len(sets["harmless"])},
            "candidates_passing_filters": sum(bool(r["passed"]) for r in rows),
            "candidates": len(rows), "chosen_scores": own.scores, "reason": own.reason}


def _heads(study, args):
    from interp.intervention import Intervention
    from interp.steering.heads import fit_head_directions, select_heads
    from interp.stages.steering import HEAD_GRID, MAX_HARMLESS_REFUSAL, SELECT_SIGMAS
    from interp.steering.tradeoff import max_safe_strength

    m = study.model
    train = study.data.plain("train")
    harmless_tr = train.filter(label="harmless")
    hd = fit_head_directions(m, train)
    heads = select_heads(m, hd, 4, harmless_tr[: min(8, len(harmless_tr))], SELECT_SIGMAS, by="steering")
    sigmas = max_safe_strength(m, Intervention.steer_heads(hd, heads, 1.0), harmless_tr, HEAD_GRID, MAX_HARMLESS_REFUSAL)
    return hd, heads, sigmas


def row_heads(study, args) -> dict:
    from interp.evaluate import evaluate_refusal
    from interp.intervention import Intervention
    from interp.steering.layer import compare_heads_vs_layer

    m = study.model
    hd, heads, sigmas = _heads(study, args)
    sets = held_out(study, args.per_cell)
    cmp = compare_heads_vs_layer(m, hd, heads, sigmas, {k: sets[k] for k in ("jailbreak", "harmless")})
    judged = {}
    for name, iv in (("unsteered", Intervention.none()), ("heads", Intervention.steer_heads(hd, heads, sigmas)),
                     ("layer", Intervention.steer_layer(hd, cmp["layers"], sigmas))):
        with iv.apply(m):
            judged[name] = {k: round(evaluate_refusal(m, sets[k], study.judge, study.gen, with_scores=False).rate(), 4)
                            for k in ("jailbreak", "harmless")}
    r4 = lambda x: round(float(x), 4)  # noqa: E731
    return {"heads": [list(h) for h in heads], "heads_source": "HSI: largest single-head steering effect on 8 train harmless prompts",
            "sigmas": r4(sigmas), "layers": cmp["layers"],
            "effect_heads": {k: r4(v) for k, v in cmp["effect_heads"].items()},
            "effect_layer": {k: r4(v) for k, v in cmp["effect_layer"].items()},
            "ratio_heads_to_layer": {k: r4(v) for k, v in cmp["ratio"].items()}, "judged_refusal": judged,
            "n": {"train": len(study.data.plain("train")), "jailbreak": len(sets["jailbreak"]), "harmless": len(sets["harmless"])}}


def row_antidote(study, args) -> dict:
    from interp.evaluate import evaluate_refusal
    from interp.intervention import Intervention
    from interp.steering.antidote import fit_antidote
    from interp.steering.effect import EffectMeter
    from interp.stages.steering import ANTIDOTE_GRID, MAX_HARMLESS_REFUSAL
    from interp.steering.tradeoff import max_safe_strength

    m = study.model
    d = study.data
    h_tr, l_tr = d.plain("train", "harmful"), d.plain("train", "harmless")
    anti = fit_antidote(m, h_tr, l_tr, sparsity=0.05)
    sparse, dense = anti.intervention(), anti.with_sparsity(1.0).intervention()
    a_s = max_safe_strength(m, sparse, l_tr, ANTIDOTE_GRID, MAX_HARMLESS_REFUSAL)
    a_d = max_safe_strength(m, dense, l_tr, ANTIDOTE_GRID, MAX_HARMLESS_REFUSAL)
    sets = held_out(study, args.per_cell)
    meter = EffectMeter(m, sets["jailbreak"])
    e_s, e_d, e_same = meter(sparse.with_strength(a_s)), meter(dense.with_strength(a_d)), meter(dense.with_strength(a_s))
    judged = {}
    for name, iv in (("unsteered", Intervention.none()), ("sparse_5pct", sparse.with_strength(a_s)),
                     ("dense", dense.with_strength(a_d))):
        with iv.apply(m):
            judged[name] = {k: round(evaluate_refusal(m, sets[k], study.judge, study.gen, with_scores=False).rate(), 4)
                            for k in ("jailbreak", "harmless")}
    r4 = lambda x: round(float(x), 4)  # noqa: E731
    return {"norm_fraction_sparse": r4(a_s), "norm_fraction_dense": r4(a_d), "effect_sparse": r4(e_s), "effect_dense": r4(e_d),
            "ratio_sparse_to_dense": r4(e_s / e_d) if e_d else None, "effect_dense_same_norm_fraction": r4(e_same),
            "layers": anti.layers, "judged_refusal_at_calibrated_strength": judged,
            "n": {"train": [len(h_tr), len(l_tr)], "jailbreak": len(sets["jailbreak"]), "harmless": len(sets["harmless"])}}


def row_causal(study, args) -> dict:
    from interp.stages.causal import CausalConfig, causal_stage

    cfg = CausalConfig(n_search=min(8, args.n_train), n_pairs=8, n_random=5, jailbreak_per_cell=1, seed=study.seed)
    res = causal_stage(_short(study), None, cfg)
    rep = res.report
    keep = {k: rep[k] for k in ("ablation", "recommendation", "timings") if k in rep}
    return {"config": cfg.__dict__, **json.loads(json.dumps(keep, default=str))}


def _short(study):
    """The study with its test split limited to --families (plain prompts kept): many-shot prompts
    are ~700 tokens, and full-vocabulary logits over them (and Token Highlighter's backward pass)
    took a defenses run past 22 GB here."""
    from dataclasses import replace

    if not JB_FAMILIES:
        return study
    t = study.data.test
    test = type(t)(t.name, tuple(p for p in t if p.family is None or p.family in JB_FAMILIES), t.source)
    return replace(study, data=replace(study.data, test=test))


def row_slipping(study, args) -> dict:
    from interp.stages.slipping import SlippingDemoConfig, slipping_stage

    cfg = SlippingDemoConfig(per_cell=args.per_cell, control_per_cell=1, attack_prompts=3, seed=study.seed)
    res = slipping_stage(_short(study), None, cfg)
    rep = res.report
    return {"config": cfg.__dict__, "top_heads": rep["top_heads"], "top_heads_source": rep["top_heads_source"],
            "correlations": rep["correlations"],
            "per_family": {f: {k: v[k] for k in ("strengths", "attention_on_request", "harmless_control_attention_on_request",
                                                 "refusal_rate", "refusal_score", "correlation_within_step")}
                           for f, v in rep["per_family"].items()},
            "attack": rep["attack"]["summary"], "n_traced": rep["n_traced"]}


def row_defenses(study, args) -> dict:
    from interp.stages.defenses import defenses_stage
    from interp.stages.slipping import SlippingDemoConfig

    cfg = SlippingDemoConfig(defense_per_cell=args.per_cell, seed=study.seed)
    res = defenses_stage(_short(study), None, cfg=cfg)
    return json.loads(json.dumps(res.report, default=str))


def main(argv=None) -> int:
    global N_EVAL, JB_FAMILIES
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("rows", help=f"comma-separated rows, run in one process: {','.join(ROWS)}")
    p.add_argument("--n-eval", type=int, default=16, help="plain held-out requests per label for judged rates")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-train", type=int, default=16, help="plain training prompts per label")
    p.add_argument("--per-cell", type=int, default=2, help="held-out prompts per (label, family, strength) cell")
    p.add_argument("--families", default="", help="comma-separated jailbreak families for the held-out jailbreak set "
                   "(default: all six)")
    p.add_argument("--out", default="out/claims_smollm2")
    args = p.parse_args(argv)
    if args.n_train < 4 or args.per_cell < 1 or args.n_eval < 1:
        p.error("--n-train must be at least 4, --per-cell and --n-eval at least 1")
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    bad = [r for r in rows if r not in ROWS]
    if bad or not rows:
        p.error(f"unknown rows {bad}; choose from {','.join(ROWS)}")
    N_EVAL = args.n_eval
    from organisms.smollm2_jailbreaks import FAMILIES

    JB_FAMILIES = tuple(f.strip() for f in args.families.split(",") if f.strip())
    if set(JB_FAMILIES) - set(FAMILIES):
        p.error(f"unknown families {sorted(set(JB_FAMILIES) - set(FAMILIES))}; known: {','.join(FAMILIES)}")
    import torch

    torch.set_num_threads(1)
    study = open_study(args.seed, args.n_train, args.per_cell)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for row in rows:
        t = time.perf_counter()
        result = globals()[f"row_{row}"](study, args)
        result = {"row": row, "model": study.model.name, "fingerprint": study.model.fingerprint, "seed": args.seed,
                  "n_train_per_label": args.n_train, "per_cell": args.per_cell, "n_eval": args.n_eval,
                  "jailbreak_families": list(JB_FAMILIES) or "all", **result,
                  "seconds": round(time.perf_counter() - t, 1),
                  "command": f"python benchmarks/claims_smollm2.py {row} --seed {args.seed} --n-train {args.n_train} "
                             f"--per-cell {args.per_cell} --n-eval {args.n_eval}"
                             + (f" --families {','.join(JB_FAMILIES)}" if JB_FAMILIES else "")}
        (out / f"{row}.json").write_text(json.dumps(result, indent=1, default=str))
        print(json.dumps(result, indent=1, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
