"""The baseline stage: behaviour of the unsteered model on the held-out split, and the same
evaluation over every prompt for `safety-heads eval`. Every rate is a record {"rate", "n",
"ci95"} computed from the answers kept for completions.jsonl."""

from __future__ import annotations

from dataclasses import dataclass

from interp.evaluate import RefusalEval, evaluate_refusal
from interp.plotting import refusal_vs_strength
from interp.study import Study, StageResult, figure_ref


@dataclass
class BaselineResult(StageResult):
    evaluation: RefusalEval | None = None


def baseline_stage(study: Study) -> BaselineResult:
    """Behaviour on the held-out split: refusal rate and score of plain harmful and harmless
    requests, of every jailbreak cell, and of the over-refusal look-alikes; every rate a record
    {"rate", "n", "ci95"} computed from the answers kept for completions.jsonl (condition "baseline")."""
    from interp.completions import OVER_REFUSAL, behaviour_table

    if study.model.kind == "r2d":
        return BaselineResult({"skipped": (f"{study.model.name} is an R2D model: its answers open with reasoning steps "
                                           "and pivot tokens, so refusal is not read from its first answer tokens here; "
                                           "its refusal rates (last pivot and judged final answer) are in the r2d section")})
    ev = evaluate_refusal(study.model, study.data.test, study.judge, study.gen)
    rows = study.record_eval(ev, "baseline")
    examples = {}
    for p, a in zip(ev.prompts, ev.answers):
        examples.setdefault(f"{p.label}/{p.family or 'plain'}/{p.strength or 0}", {"prompt": p.text, "answer": a})
    over = study.data.over_refusal
    if over is not None and len(over):
        ov = evaluate_refusal(study.model, over, study.judge, study.gen)
        rows = rows + study.record_eval(ov, "baseline", set=OVER_REFUSAL)
    table = behaviour_table(rows, seed=study.seed)
    report = {"refusal_rate": {k: v for k, v in table["refusal_rate"].items() if k != OVER_REFUSAL},
              "refusal_score": {k: v for k, v in table["refusal_score"].items() if k != OVER_REFUSAL},
              "n_prompts": len(ev.prompts), "condition": "baseline", "agreement": table["agreement"],
              "split": "test", "figure": figure_ref("refusal_vs_strength"), "examples": dict(list(examples.items())[:12])}
    if over is not None and len(over):
        report["over_refusal"] = {"refusal_rate": table["refusal_rate"][OVER_REFUSAL],
                                  "refusal_score": table["refusal_score"][OVER_REFUSAL], "n": len(over),
                                  "examples": [{"prompt": p.text, "answer": a} for p, a in list(zip(over, ov.answers))[:4]]}
    fig = refusal_vs_strength(report["refusal_rate"], f"Refusal against jailbreak strength: {study.model.name}")
    return BaselineResult(report, {"refusal_vs_strength": fig}, evaluation=ev)


def evaluation_completions(study: Study, which: str = "all", world=None) -> list:
    """Every answer of `safety-heads eval` as `interp.completions.Completion` rows (condition
    "baseline"): every prompt of the study (`which="all"`: nothing is fitted, so every split is held
    out) or of one split, then the over-refusal look-alikes (set "over_refusal")."""
    from interp.completions import OVER_REFUSAL, completions_from_eval

    d = study.data
    prompts = d.train.concat(d.val).concat(d.test, name="all") if which == "all" else d.split(which)
    n = study.gen.max_new_tokens
    ev = evaluate_refusal(study.model, prompts, study.judge, study.gen, world=world)
    rows = completions_from_eval(ev, set=which, max_new_tokens=n)
    if d.over_refusal is not None and len(d.over_refusal):
        ov = evaluate_refusal(study.model, d.over_refusal, study.judge, study.gen, world=world)
        rows += completions_from_eval(ov, set=OVER_REFUSAL, max_new_tokens=n)
    return rows


def evaluation_table(study: Study, which: str = "all", world=None) -> dict:
    """The behaviour table of `safety-heads eval` (`interp.completions.behaviour_table`: every rate
    as {"rate", "n", "ci95"}, every mean score as {"mean", "n", "ci95"}, the score-verdict agreement)."""
    from interp.completions import behaviour_table

    return behaviour_table(evaluation_completions(study, which, world), seed=study.seed)


# ------------------------------------------------------------------ opening and running a study
