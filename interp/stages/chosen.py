"""The steering and defenses stages' chosen points as `interp.saved.Chosen` artifacts: each method's
intervention at the strength the stage calibrated, with a card of what the stage measured under it,
on which prompts (see `interp.saved`)."""

from __future__ import annotations

from interp.prompts import PromptSet
from interp.saved import Chosen
from interp.stats import rate_record

SWEEP_SETS = ("harmful", "jailbreak", "harmless")


def _record(rate, n: int) -> dict:
    """A rate record: as the stage reported it, or rebuilt from a rate over `n` prompts."""
    if isinstance(rate, dict):
        return rate
    return rate_record(round(float(rate) * n), n)


def union(sets: dict[str, PromptSet], names=SWEEP_SETS) -> PromptSet:
    """The sets in the order a trade-off sweep generates them (`interp.steering.tradeoff`)."""
    prompts = tuple(p for k in names if k in sets for p in sets[k])
    return PromptSet("heldout", prompts, "the study's test split")


def sweep_chosen(iv, method: str, rows: list[dict], sets: dict[str, PromptSet], how: str, **card) -> Chosen:
    """`iv` (at its chosen strength) with the rates of its trade-off row at that strength."""
    strength = float(iv.strength)
    row = next((r for r in rows if r["method"] == method and r["strength"] == strength), None)
    measured = None
    if row is not None:
        measured = {k: _record(row[k], len(sets[k])) for k in SWEEP_SETS if k in sets and k in row}
    return Chosen(iv, card={"method": method, "strength": strength, "unit": iv.unit, "chosen": how,
                            "measured": measured, "measured_as": "the trade-off sweep's row at this strength "
                            "(steering.tradeoff); refusal rates of plain harmful, harmful jailbreak and harmless prompts",
                            **card}, prompts=union(sets) if row is not None else None)


def steering_chosen(*, hsi, layer, antidote, antidote_dense, direction, rows, gen_sets, d_report, calibration: str,
                    effects: dict) -> dict[str, Chosen]:
    """Every steering method at its chosen point (the names are the directories under interventions/)."""
    from interp.intervention import Intervention

    out = {"hsi": sweep_chosen(hsi, "hsi (heads)", rows, gen_sets, calibration, effect=effects.get("hsi")),
           "layer": sweep_chosen(layer, "layer (all heads)", rows, gen_sets, calibration, effect=effects.get("layer")),
           "antidote": sweep_chosen(antidote, "antidote (5%)", rows, gen_sets, calibration, effect=effects.get("antidote")),
           "antidote_dense": Chosen(antidote_dense, card={"method": "antidote (dense)", "strength": float(antidote_dense.strength),
                                                          "unit": antidote_dense.unit, "chosen": calibration,
                                                          "effect": effects.get("antidote_dense"), "measured": None})}
    for name, iv, key, label in (("direction_ablation", Intervention.ablate_direction(direction), "ablation_harmful_refusal_rate", "harmful"),
                                 ("direction_addition", Intervention.add_direction(direction), "addition_harmless_refusal_rate", "harmless")):
        ps = gen_sets.get(label)
        measured = {label: _record(d_report[key], len(ps))} if ps is not None and d_report.get(key) is not None else None
        out[name] = Chosen(iv, card={"method": name.replace("_", " "), "strength": None, "unit": None,
                                     "chosen": f"the refusal direction ({d_report.get('source')}), layer {d_report.get('layer')}",
                                     "measured": measured, "measured_as": f"steering.direction.{key}"},
                           prompts=ps if measured else None)
    return out


def defenses_chosen(defenses: dict, table, prompts: PromptSet) -> dict[str, Chosen]:
    """Every defense of the defenses stage at its setting: sharpening as an intervention, SmoothLLM
    and Token Highlighter (which change the prompt, not the model) by their settings."""
    from interp.intervention import Intervention
    from interp.slipping.defenses import Sharpening

    n = {"harmful": len(prompts.filter(label="harmful", family=None)),
         "harmless": len(prompts.filter(label="harmless", family=None))}
    out = {}
    for name, d in defenses.items():
        row = table.rows.get(name)
        if name == "none" or row is None:
            continue
        measured = {"harmful": _record(row.harmful_refusal, n["harmful"]),
                    "harmless": _record(row.harmless_refusal, n["harmless"])}
        how = ("calibrated on the validation split under the harmless budget (defenses.sharpening.calibration)"
               if isinstance(d, Sharpening) else "the defense's default setting (docs/slipping.md)")
        card = {"method": f"defense: {name}", "chosen": how,
                "measured": measured, "measured_as": f"defenses.{name}: refusal rates of plain harmful and harmless prompts",
                "jailbreak_success": round(float(row.jailbreak_success_mean), 4)}
        if isinstance(d, Sharpening):
            iv = Intervention.sharpen(d.T, d.layers, d.heads)
            out[name] = Chosen(iv, card={**card, "strength": float(d.T), "unit": iv.unit}, prompts=prompts)
        else:
            out[name] = Chosen(defense=d, card={**card, "strength": None, "unit": None}, prompts=prompts)
    return out
