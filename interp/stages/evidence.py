"""What the stages report from their answers: rate records, paired comparisons with their verdicts,
and batched judged runs that keep every answer for completions.jsonl.

Every stage that generates records its answers with `Study.record` (one condition per measurement)
and computes the rates it reports from those rows here, so `safety-heads judge --completions
OUT/completions.jsonl` gives the report's refusal rates exactly. A comparison a verdict rests on is
`compare`: the difference of two conditions on the same prompts, paired by prompt id, with its
bootstrap interval and the sentence of `interp.stats.verdict` ("too few prompts to call" when the
interval contains 0).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

from interp.evaluate import evaluate_stack
from interp.generation import GenerationConfig
from interp.prompts import PromptSet
from interp.stats import difference, newcombe_paired, rate_record, verdict
from interp.study import Study

ANY = ...
MIN_BOOTSTRAP_N = 10  # prompts below which a bootstrap interval of a mean difference is withheld (verdict: too few)


def select(rows: Sequence, label: str | None = None, family=ANY, strength=ANY, set: str | None = "test") -> list:
    """The rows of one label / family (None: plain requests) / strength, of prompt set `set`."""
    return [r for r in rows if (label is None or r.label == label) and (family is ANY or r.family == family)
            and (strength is ANY or r.strength == strength) and (set is None or r.set == set)]


def rate(rows: Sequence, label: str | None = None, family=ANY, strength=ANY, complied: bool = False) -> dict:
    """{"rate", "n", "ci95"} of refusal (or, `complied`, of compliance: jailbreak success) over the selected rows."""
    return rate_record([r.refused != complied for r in select(rows, label, family, strength)])


def compare(a: Sequence, b: Sequence, name_a: str, name_b: str, what: str = "refusal rate",
            value: Callable = lambda r: float(r.refused), seed: int = 0) -> dict:
    """mean(value) over rows `a` minus over rows `b`, paired by prompt where both hold the same
    prompts, with its 95% interval and verdict. `b` may hold several rows per prompt (e.g. one per
    random head set): they are averaged per prompt first. 0/1 outcomes paired by prompt take
    Newcombe's paired score interval; a mean difference over fewer than `MIN_BOOTSTRAP_N` prompts gets
    no interval, so its verdict is "too few prompts to call"."""
    def per_prompt(rows):
        acc: dict[str, list[float]] = {}
        for r in rows:
            acc.setdefault(r.prompt_id, []).append(value(r))
        return list(acc), [sum(v) / len(v) for v in acc.values()], any(len(v) > 1 for v in acc.values())

    ia, va, ma = per_prompt(a)
    ib, vb, mb = per_prompt(b)
    binary = not (ma or mb or any(v not in (0.0, 1.0) for v in va + vb))
    d = difference(va, vb, ia, ib, kind="rate" if binary else "mean", seed=seed)
    if d["paired"] and binary and d["difference"] is not None:
        # 0/1 outcomes on the same prompts: Newcombe's paired score interval, not the bootstrap (which
        # collapses to a point when every pair differs the same way)
        pos = {i: j for j, i in enumerate(ib)}
        pairs = [(va[k] == 1.0, vb[pos[i]] == 1.0) for k, i in enumerate(ia)]
        cells = [sum(1 for x, y in pairs if (x, y) == c) for c in ((True, True), (True, False), (False, True), (False, False))]
        d = {**d, "ci95": [round(c, 4) for c in newcombe_paired(*cells)], "method": "newcombe paired (method 10)"}
    elif d["difference"] is not None and min(d["n_a"], d["n_b"]) < MIN_BOOTSTRAP_N:
        # a percentile bootstrap over fewer prompts than this is not an interval to rest a verdict on
        d = {**d, "ci95": None, "method": f"{d['method']} (not shown below {MIN_BOOTSTRAP_N} prompts)"}
    return {**d, "a": name_a, "b": name_b, "what": what, "verdict": verdict(d, name_a, name_b, what)}


def _baseline_rows(study: Study, prompts, max_new_tokens: int) -> list | None:
    """The baseline stage's rows for `prompts` when it generated all of them at `max_new_tokens`
    with the study's own settings, else None."""
    rows = {r.prompt_id: r for r in study.answers
            if r.condition == "baseline" and r.set == "test" and r.max_new_tokens == max_new_tokens}
    if not rows or any(p.id not in rows for p in prompts):
        return None
    return [rows[p.id] for p in prompts]


def baseline_answers(study: Study, prompts) -> list[str] | None:
    """The baseline stage's answers to `prompts` when it generated all of them with the study's own
    settings (the unmodified model: the same answers again), else None. So no stage generates the
    unmodified model's answers twice."""
    rows = _baseline_rows(study, prompts, study.gen.max_new_tokens)
    return None if rows is None else [r.answer for r in rows]


def judged_runs(study: Study, prompts: PromptSet, interventions: Mapping[str, object], prefix: str,
                max_new_tokens: int | None = None, alphas: Mapping[str, float] | None = None) -> dict[str, list]:
    """Generate and judge `prompts` under every named intervention in one batched pass
    (`interp.evaluate.evaluate_stack`), record each as condition `prefix + name` (at `alphas[name]`),
    and return name -> its rows. An identity intervention (`Intervention.none()`) on prompts the
    baseline stage already answered at this length takes the baseline's rows: no pass runs twice."""
    n = study.gen.max_new_tokens if max_new_tokens is None else max_new_tokens
    alphas = alphas or {}
    known = {name: rows for name, iv in interventions.items()
             if getattr(iv, "is_none", lambda: False)() and (rows := _baseline_rows(study, prompts, n)) is not None}
    todo = {name: iv for name, iv in interventions.items() if name not in known}
    gen = GenerationConfig(max_new_tokens=n, batch_size=study.gen.batch_size, progress=study.gen.progress)
    evs = dict(zip(todo, evaluate_stack(study.model, prompts, list(todo.values()), study.judge, gen))) if todo else {}
    out = {}
    for name in interventions:
        if name in known:
            rows = known[name]
            scores = [float("nan") if r.score is None else r.score for r in rows]
            out[name] = study.record(prompts, [r.answer for r in rows], [r.refused for r in rows], scores,
                                     prefix + name, alphas.get(name), max_new_tokens=n)
        else:
            out[name] = study.record_eval(evs[name], prefix + name, alphas.get(name), max_new_tokens=n)
    return out


__all__ = ["baseline_answers", "compare", "judged_runs", "rate", "select"]
