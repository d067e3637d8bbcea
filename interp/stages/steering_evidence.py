"""The steering stage's answers and the evidence it reports from them: every sweep point's answers
kept as condition "steering:<method>" at its strength ("steering:unsteered" for the unsteered
model; "steering:direction_ablation" / "steering:direction_addition"), the trade-off table's rates
as records, and the comparisons its verdicts rest on (each method's calibrated point against the
unsteered model, head steering against layer steering, direction ablation and addition against
no intervention), paired by prompt."""

from __future__ import annotations

from interp.stages.evidence import compare, rate, select
from interp.study import Study

PREFIX = "steering:"


def record_sweep(study: Study, sets: dict, rows: list[dict]) -> dict[str, list]:
    """Record the answers of every sweep row (its `per_prompt` part); returns condition key -> rows."""
    out = {}
    for row in rows:
        pp = row.get("per_prompt")
        if not pp or any(v["answers"] is None for v in pp.values()):  # scored, not generated: nothing to keep
            continue
        ps, ans, ref, sc = [], [], [], []
        for k, v in sets.items():
            ps += list(v)
            ans += pp[k]["answers"]
            ref += pp[k]["refused"]
            sc += pp[k]["scores"]
        alpha = None if row["method"] == "unsteered" else round(float(row["strength"]), 6)
        kept = study.record(ps, ans, ref, sc, PREFIX + row["method"], alpha)
        out[kept[0].condition_key if kept else PREFIX + row["method"]] = kept
    return out


def jailbreak_rows(rows: list) -> list:
    return [r for r in rows if r.label == "harmful" and r.family is not None]


def records(rows: list) -> dict:
    """harmful / jailbreak / harmless refusal records of one condition's rows."""
    out = {"harmful": rate(rows, "harmful", None), "harmless": rate(rows, "harmless", None)}
    jb = jailbreak_rows(rows)
    if jb:
        out["jailbreak"] = rate(jb)
    return out


def with_records(rows: list[dict], recorded: dict[str, list], sets: dict) -> list[dict]:
    """The report's trade-off rows (`compact`) with each rate replaced by its record and the condition
    named; a scored (not generated) row's records count prompts whose one-pass score is > 0."""
    from interp.steering.tradeoff import compact
    from interp.stats import rate_record

    out = []
    for row, c in zip(rows, compact(rows)):
        key = PREFIX + c["method"] if c["method"] == "unsteered" else f"{PREFIX}{c['method']}@{round(float(c['strength']), 6):g}"
        kept = recorded.get(key)
        if kept:
            c = {**c, **records(kept), "condition": key, "measure": "judged answers"}
        elif row.get("measure") == "score":
            flags = {k: row["per_prompt"][k]["refused"] for k in sets}
            c = {**c, **{k: rate_record(v) for k, v in flags.items()},
                 "measure": "one-pass refusal score > 0 (not generated: a point of the curve, not a reported operating point)"}
        out.append(c)
    return out


def best_points(summary: dict, recorded: dict[str, list], seed: int) -> dict:
    """`summary` (method -> its best safe judged point, or None) with the point's rates as records and
    its jailbreak gain over the unsteered model as a paired difference with its verdict."""
    base = recorded.get(PREFIX + "unsteered")
    out = {}
    for m, b in summary.items():
        if not b:
            out[m] = b
            continue
        key = next((k for k in recorded if k.startswith(f"{PREFIX}{m}@") and abs(float(k.rsplit("@", 1)[1]) - b["strength"]) < 1e-3), None)
        rows = recorded.get(key) if key else None
        if not rows or not base:
            out[m] = b
            continue
        gain = compare(jailbreak_rows(rows), jailbreak_rows(base), m, "unsteered", "jailbreak refusal rate", seed=seed)
        out[m] = {**b, **records(rows), "jailbreak_gain": gain, "condition": key}
    return out


def comparisons(recorded: dict[str, list], chosen: dict[str, float], direction: dict[str, list], seed: int) -> dict:
    """Paired comparisons: each method at its calibrated strength (`chosen`: method -> strength) against the
    unsteered model (jailbreak and harmless refusal), head against layer steering, and the refusal
    direction's ablation (harmful) and addition (harmless) against no intervention."""
    base = recorded.get(PREFIX + "unsteered")
    if not base:
        return {}
    at = {m: recorded.get(f"{PREFIX}{m}@{round(float(a), 6):g}") for m, a in chosen.items()}
    out = {}
    for m, rows in at.items():
        if not rows:
            continue
        jb, jb0 = jailbreak_rows(rows), jailbreak_rows(base)
        if jb:
            out[f"{m} vs unsteered: jailbreak"] = compare(jb, jb0, m, "unsteered", "jailbreak refusal rate", seed=seed)
        out[f"{m} vs unsteered: harmless"] = compare(select(rows, "harmless", None), select(base, "harmless", None), m,
                                                     "unsteered", "harmless refusal rate", seed=seed)
    heads, layer = at.get("hsi (heads)"), at.get("layer (all heads)")
    if heads and layer and jailbreak_rows(heads):
        out["hsi (heads) vs layer (all heads): jailbreak"] = compare(
            jailbreak_rows(heads), jailbreak_rows(layer), "head steering", "layer steering (same sigmas)",
            "jailbreak refusal rate", seed=seed)
    if direction.get("ablation"):
        out["direction ablation vs none: harmful"] = compare(
            direction["ablation"], select(base, "harmful", None), "refusal direction ablated", "no intervention",
            "harmful refusal rate", seed=seed)
    if direction.get("addition"):
        out["direction addition vs none: harmless"] = compare(
            direction["addition"], select(base, "harmless", None), "refusal direction added", "no intervention",
            "harmless refusal rate", seed=seed)
    return out
