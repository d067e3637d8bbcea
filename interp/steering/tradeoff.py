"""Safety-utility trade-off sweeps: one row per (method, strength) with refusal on harmful, jailbreak
and harmless prompts, utility on harmless prompts, and the `effect` of `interp.steering.effect`.

Utility is read two ways on the harmless set: does the answer still comply (1 - harmless refusal
rate), and the KL divergence KL(p_unsteered || p_steered) of the next-token distributions at the
first response position (Arditi et al. require < 0.1 for a usable direction).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from interp.errors import InputError, NonFiniteError
from interp.evaluate import RefusalEval
from interp.generation import GenerationConfig, generate_with_logits
from interp.hooks import check_alpha, check_finite
from interp.model import ChatModel
from interp.prompts import PromptSet
from interp.scoring import RefusalJudge, last_logits, refusal_log_odds
from interp.intervention import Intervention
from interp.steering._util import texts_of
from interp.steering.calibration import EXTEND, Calibration, Swept, at_strength, calibrate, fraction_refusing, max_safe_strength  # noqa: F401

SET_NAMES = ("harmful", "jailbreak", "harmless")
def split_sets(prompts: PromptSet, harmless_wrapped: bool = True) -> dict[str, PromptSet]:
    """harmful = plain harmful requests, jailbreak = harmful requests inside a jailbreak family,
    harmless = harmless requests (also the wrapped ones unless harmless_wrapped=False)."""
    jb = PromptSet(f"{prompts.name}:jailbreak", tuple(p for p in prompts if p.label == "harmful" and p.family is not None), prompts.source)
    harmless = prompts.filter(label="harmless") if harmless_wrapped else prompts.filter(label="harmless", family=None)
    out = {"harmful": prompts.filter(label="harmful", family=None), "jailbreak": jb, "harmless": harmless}
    return {k: v for k, v in out.items() if len(v)}


def subsample(prompts: PromptSet, per_cell: int, seed: int = 0) -> PromptSet:
    """At most `per_cell` prompts of each (label, family, strength) cell, in the set's order."""
    import random

    rng = random.Random(seed)
    cells: dict[tuple, list[int]] = {}
    for i, p in enumerate(prompts):
        cells.setdefault((p.label, p.family, p.strength), []).append(i)
    keep = sorted(i for idx in cells.values() for i in (idx if len(idx) <= per_cell else rng.sample(idx, per_cell)))
    return PromptSet(f"{prompts.name}:sub{per_cell}", tuple(prompts[i] for i in keep), prompts.source)


def _as_sets(sets) -> dict[str, object]:
    if isinstance(sets, PromptSet):
        sets = split_sets(sets)
    if not isinstance(sets, dict) or not sets:
        raise InputError("sets must be a PromptSet (split into harmful/jailbreak/harmless) or a non-empty dict of them")
    for k, v in sets.items():
        texts_of(v, f"set {k!r}")
    return sets


@dataclass
class Unsteered:
    """The unsteered model's next-token log-probabilities on every set (computed once per sweep)."""

    sets: dict
    logp: dict[str, Tensor]

    @classmethod
    @torch.no_grad()
    def measure(cls, model: ChatModel, sets) -> "Unsteered":
        sets = _as_sets(sets)
        return cls(sets, {k: last_logits(model, texts_of(v)).float().log_softmax(-1).cpu() for k, v in sets.items()})


@torch.no_grad()
def evaluate_point(model: ChatModel, sets, unsteered: Unsteered, judge: RefusalJudge = RefusalJudge(),
                   gen: GenerationConfig = GenerationConfig(max_new_tokens=12, batch_size=64)) -> dict:
    """Refusal rate, mean score, effect (and KL on harmless) on each set, with whatever hooks are installed."""
    return _evaluate(model, _as_sets(sets), unsteered, judge, gen)[0]


def unsteered_point(model: ChatModel, sets, judge: RefusalJudge = RefusalJudge(),
                    gen: GenerationConfig = GenerationConfig(max_new_tokens=12, batch_size=64),
                    answers: dict | None = None) -> tuple[Unsteered, dict]:
    """The unsteered model's sweep row ("unsteered", strength 0) and the reference of every other
    sweep, from one generation pass: the reference log-probabilities are its first step's.
    `answers` (set name -> the unsteered greedy answers of its prompts at `gen`, e.g. the baseline
    stage's) skips the generation: only the one prompt pass for the reference runs."""
    sets = _as_sets(sets)
    given = None
    if answers is not None:
        given = [a for k in sets for a in answers[k]]
    row, unsteered = _evaluate(model, sets, None, judge, gen, given)
    return unsteered, {"method": "unsteered", "strength": 0.0, **row}


def _evaluate(model: ChatModel, sets: dict, unsteered: Unsteered | None, judge: RefusalJudge,
              gen: GenerationConfig, given: list[str] | None = None) -> tuple[dict, Unsteered]:
    names = list(sets)
    texts = [t for k in names for t in texts_of(sets[k])]
    if given is not None:  # answers generated already (the same model and settings): one prompt pass
        if len(given) != len(texts):
            raise InputError(f"{len(given)} answers given for {len(texts)} prompts")
        answers, first = list(given), last_logits(model, texts)
    else:  # one call over the union (fewer, fuller batches); the scores come off its first step
        answers, first = generate_with_logits(model, texts, gen)
    refused = judge(answers)
    logp = first.float().log_softmax(-1).cpu()
    scores = check_finite(refusal_log_odds(model, logp), "refusal scores")
    bounds, i = {}, 0
    for k in names:
        bounds[k] = slice(i, i + len(texts_of(sets[k])))
        i = bounds[k].stop
    if unsteered is None:  # this pass is the unsteered model: its own reference
        unsteered = Unsteered(sets, {k: logp[sl] for k, sl in bounds.items()})
    out: dict = {}
    for k in names:
        sl = bounds[k]
        n = sl.stop - sl.start
        base = refusal_log_odds(model, unsteered.logp[k])
        out[k] = sum(refused[sl]) / n
        # answers that count as refusals only because they are empty (the judge's short-answer rule)
        out.setdefault("short_answers", {})[k] = judge.short_answers(answers[sl])
        out[f"{k}_score"] = float(scores[sl].mean())
        out.setdefault("effect", {})[k] = float((scores[sl] - base).mean())
        p0 = unsteered.logp[k]
        out.setdefault("kl", {})[k] = float((p0.exp() * (p0 - logp[sl])).sum(-1).mean())
        # the answers behind the rates, for completions.jsonl (the report keeps only the rates)
        out.setdefault("per_prompt", {})[k] = {"answers": answers[sl], "refused": refused[sl],
                                               "scores": scores[sl].tolist()}
        if isinstance(sets[k], PromptSet) and sets[k].families():
            ev = RefusalEval(sets[k], answers[sl], refused[sl], scores[sl])
            out.setdefault("by_family", {})[k] = {fam: {str(s): ev.rate(family=fam, strength=s) for s in ss}
                                                  for fam, ss in sets[k].families().items()}
    if "harmless" in out:
        out["utility"] = {"harmless_comply": 1.0 - out["harmless"], "kl": out["kl"]["harmless"]}
    return out, unsteered


def sweep(model: ChatModel, intervention: Swept, strengths: Sequence[float], sets,
          method: str = "intervention", judge: RefusalJudge = RefusalJudge(),
          gen: GenerationConfig = GenerationConfig(max_new_tokens=12, batch_size=64),
          unsteered: Unsteered | None = None) -> list[dict]:
    """Evaluate `intervention` at each of `strengths` on held-out `sets` (`Intervention.none()`
    gives the unsteered row).

    Returns one dict per strength: {"method", "strength", "harmful", "jailbreak", "harmless" (refusal
    rates), "<set>_score" (mean refusal score), "effect" {set: effect}, "kl" {set: KL},
    "by_family" {set: {family: {strength: rate}}}, "utility" {"harmless_comply", "kl"}}.
    """
    if not strengths:
        raise InputError("strengths is empty: pass at least one strength")
    strengths = [check_alpha(a, "strength") for a in strengths]
    sets = _as_sets(sets)
    unsteered = unsteered or Unsteered.measure(model, sets)
    rows = []
    for a in strengths:
        try:
            with at_strength(intervention, a).apply(model):
                row = evaluate_point(model, sets, unsteered, judge, gen)
        except NonFiniteError as e:
            raise NonFiniteError(f"sweep of {method!r} at strength {a:g}: {e}") from None
        rows.append({"method": method, "strength": a, **row})
    return rows


@torch.no_grad()
def scored_sweep(model: ChatModel, intervention: Swept, strengths: Sequence[float], sets, method: str,
                 unsteered: Unsteered) -> list[dict]:
    """`sweep` without generation: each set's refusal "rate" is the fraction of prompts whose one-pass
    refusal score is > 0 (the greedy first-token decision), from one prompt pass per strength; rows
    carry `"measure": "score"` and per-prompt flags (no answers). For sweep points that are plotted
    but not reported as judged rates."""
    strengths = [check_alpha(a, "strength") for a in strengths]
    sets = _as_sets(sets)
    rows = []
    for a in strengths:
        with at_strength(intervention, a).apply(model):
            row: dict = {"method": method, "strength": a, "measure": "score"}
            for k, v in sets.items():
                logp = last_logits(model, texts_of(v)).float().log_softmax(-1).cpu()
                sc = check_finite(refusal_log_odds(model, logp), "refusal scores")
                base = refusal_log_odds(model, unsteered.logp[k])
                flags = (sc > 0).tolist()
                row[k] = sum(flags) / len(flags)
                row[f"{k}_score"] = float(sc.mean())
                row.setdefault("effect", {})[k] = float((sc - base).mean())
                p0 = unsteered.logp[k]
                row.setdefault("kl", {})[k] = float((p0.exp() * (p0 - logp)).sum(-1).mean())
                row.setdefault("per_prompt", {})[k] = {"answers": None, "refused": flags, "scores": sc.tolist()}
            if "harmless" in row:
                row["utility"] = {"harmless_comply": 1.0 - row["harmless"], "kl": row["kl"]["harmless"]}
        rows.append(row)
    return rows


def tradeoff_figure(rows: list[dict], x: str = "harmless", y: str = "jailbreak", title: str | None = None):
    """Safety-utility curve: one line per method, points labelled by strength. x: "harmless" (refusal
    rate of harmless prompts) or "kl" (KL on harmless); y: refusal rate of a set (default jailbreak)."""
    import plotly.graph_objects as go

    if x not in ("harmless", "kl"):
        raise InputError(f"x must be 'harmless' or 'kl', got {x!r}")
    from interp.plotting import error_bars
    from interp.stats import rate_record

    def rec(r, k):  # the rate of set k with its Wilson interval, from the row's per-prompt verdicts
        flags = r.get("per_prompt", {}).get(k, {}).get("refused")
        return rate_record(flags) if flags else {"rate": r.get(k)}

    fig = go.Figure()
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for m in methods:
        pts = sorted((r for r in rows if r["method"] == m), key=lambda r: r["strength"])
        xs = [r["kl"]["harmless"] if x == "kl" else r["harmless"] for r in pts]
        ys = [rec(r, y) for r in pts]
        ex = error_bars([rec(r, "harmless") for r in pts]) if x == "harmless" else None
        fig.add_trace(go.Scatter(x=xs, y=[r[y] for r in pts], mode="lines+markers+text", name=m,
                                 error_y=error_bars(ys), error_x=ex,
                                 marker={"symbol": ["circle-open" if r.get("measure") == "score" else "circle" for r in pts]},
                                 text=[f"{r['strength']:g}" for r in pts], textposition="top center",
                                 hovertemplate=f"{m}<br>strength %{{text}}<br>{x} %{{x:.3f}}<br>{y} refusal %{{y:.0%}}<extra></extra>"))
    fig.update_layout(title=(title or "Safety-utility trade-off (labels: strength)") + "<br><sup>bars: 95% Wilson "
                      "intervals; open markers: one-pass refusal score > 0, not generated</sup>",
                      xaxis_title="harmless refusal rate" if x == "harmless" else "KL(unsteered || steered) on harmless",
                      yaxis_title=f"{y} refusal rate", yaxis={"range": [-0.02, 1.02], "tickformat": ".0%"},
                      template="plotly_white", hovermode="closest")
    return fig


def compact(rows: list[dict]) -> list[dict]:
    """The report's short form of sweep rows: {"method", "strength", "harmful", "jailbreak", "harmless", ...}."""
    keep = ("method", "strength", "harmful", "jailbreak", "harmless")
    out = []
    for r in rows:
        c = {k: (round(r[k], 4) if isinstance(r[k], float) else r[k]) for k in keep if k in r}
        c["effect"] = {k: round(v, 4) for k, v in r.get("effect", {}).items()}
        if "utility" in r:
            c["kl_harmless"] = round(r["utility"]["kl"], 4)
        out.append(c)
    return out
