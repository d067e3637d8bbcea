"""Answers under saved interventions and defenses (`interp.saved.Condition`), as completions rows,
and their behaviour tables: what `safety-heads apply` and `eval --intervention` compute.

One intervention runs exactly as a study measured it (`with intervention.apply(model):` around
`evaluate_refusal`: the same passes, so the same answers). Several run together: each pass of
prompts is tiled once per intervention (`interp.runner.run` over `Intervention.stack`, reading
`interp.generation.Greedy`), so k conditions cost one pass per batch, not k. A defense that changes
the prompt (SmoothLLM, Token Highlighter) answers through its own `respond`.
"""

from __future__ import annotations

import math

import torch

from interp.batching import prompt_chunks
from interp.completions import Completion, behaviour_table, completions_from_eval, conditions as by_condition
from interp.evaluate import RefusalEval, evaluate_refusal
from interp.generation import GenerationConfig, Greedy
from interp.intervention import Intervention
from interp.prompts import PromptSet
from interp.runner import run
from interp.scoring import RefusalJudge, refusal_log_odds
from interp.stats import rate_record

SET = "prompts"


def _rows(ev, name: str, n_new: int) -> list[Completion]:
    return completions_from_eval(ev, condition=name, set=SET, max_new_tokens=n_new)


def stacked_answers(model, prompts: PromptSet, interventions: list[Intervention], gen: GenerationConfig
                    ) -> list[tuple[list[str], torch.Tensor]]:
    """Per intervention: (answers, refusal scores) of every prompt, all interventions generated
    in the same passes (the batch tiled once per intervention)."""
    texts = prompts.texts
    k = len(interventions)
    answers = [[""] * len(texts) for _ in range(k)]
    scores = [torch.full((len(texts),), float("nan")) for _ in range(k)]
    stack = Intervention.stack(interventions)
    for chunk in prompt_chunks(model, texts, gen.batch_size):
        batch = model.encode([texts[i] for i in chunk], indices=chunk)
        out = run(model, batch, stack, read=Greedy(gen.max_new_tokens, gen.use_kv_cache))
        n = len(chunk)
        for c in range(k):
            part = out[c * n:(c + 1) * n]
            s = refusal_log_odds(model, torch.stack([first for _, first in part])).float().cpu()
            for r, (i, (ids, _)) in enumerate(zip(chunk, part)):
                answers[c][i] = model.tokenizer.decode(ids, skip_special_tokens=True).strip()
                scores[c][i] = s[r]
    return list(zip(answers, scores))


def generate_under(model, prompts: PromptSet, conditions: list, judge: RefusalJudge, gen: GenerationConfig,
                   baseline: bool = False, combine: bool = False) -> list[Completion]:
    """Completions rows of every prompt under every condition (condition = the directory's name;
    "baseline" for the unmodified model, "+"-joined names for `combine`)."""
    ivs = [(c.name, c.intervention) for c in conditions if c.intervention is not None]
    defenses = [c for c in conditions if c.defense is not None]
    if combine and ivs:
        total = Intervention.none()
        for _, iv in ivs:
            total = total + iv
        ivs = [("+".join(n for n, _ in ivs), total)]
    if baseline:
        ivs = [("baseline", Intervention.none())] + ivs
    rows: list[Completion] = []
    if len(ivs) == 1:
        name, iv = ivs[0]
        with iv.apply(model):
            rows += _rows(evaluate_refusal(model, prompts, judge, gen), name, gen.max_new_tokens)
    elif ivs:
        for (name, _), (answers, scores) in zip(ivs, stacked_answers(model, prompts, [iv for _, iv in ivs], gen)):
            rows += _rows(RefusalEval(prompts, answers, judge(answers), scores), name, gen.max_new_tokens)
    for c in defenses:
        out = c.defense.respond(model, prompts, judge, gen)
        rows += [Completion(p.id, p.label, p.family, p.strength, f"defense:{c.name}", a, None, bool(r), None, SET,
                            p.text, gen.max_new_tokens) for p, a, r in zip(prompts, out.answers, out.refused)]
    return rows


def pooled(rows: list[Completion]) -> dict:
    """The trade-off sweep's three rates (`interp.steering.tradeoff.split_sets`): plain harmful,
    harmful jailbreaks (every family and strength together), harmless (plain and wrapped)."""
    sets = {"harmful": [r for r in rows if r.label == "harmful" and r.family is None],
            "jailbreak": [r for r in rows if r.label == "harmful" and r.family is not None],
            "harmless": [r for r in rows if r.label == "harmless"]}
    return {k: rate_record([r.refused for r in v]) for k, v in sets.items() if v}


def summarise(rows: list[Completion], conditions: list = ()) -> dict:
    """Per condition: its card's method and strength, the pooled rates, and the behaviour table."""
    cards = {c.name: c.card for c in conditions}
    out = {}
    for name, sel in by_condition(rows).items():
        card = cards.get(name.removeprefix("defense:"), {})
        scores = [r.score for r in sel if r.score is not None and not math.isnan(r.score)]
        out[name] = {**{k: card[k] for k in ("method", "strength", "unit") if k in card},
                     "refusal_rate": pooled(sel), "table": behaviour_table(sel),
                     **({} if scores else {"note": "no refusal scores (a defense that changes the prompt)"})}
    return out


__all__ = ["generate_under", "stacked_answers", "pooled", "summarise"]
