"""Behaviour evaluation: refusal rate and mean refusal score on harmful, harmless and jailbreak sets.

`evaluate_refusal` is the one measurement every stage reports (baseline, under steering, under a
defense), so that numbers in report.json are comparable across sections.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from interp.generation import GenerationConfig, generate, generate_with_logits
from interp.hooks import check_finite
from interp.model import ChatModel
from interp.prompts import PromptSet
from interp.scoring import RefusalJudge, refusal_log_odds


@dataclass
class RefusalEval:
    """Per-prompt outcome of one evaluation pass over a prompt set."""

    prompts: PromptSet
    answers: list[str]
    refused: list[bool]
    scores: torch.Tensor  # refusal log-odds at the first response position

    def rate(self, label: str | None = None, family=..., strength=...) -> float:
        sel = [i for i, p in enumerate(self.prompts)
               if (label is None or p.label == label) and (family is ... or p.family == family)
               and (strength is ... or p.strength == strength)]
        if not sel:
            return float("nan")
        return sum(self.refused[i] for i in sel) / len(sel)

    def mean_score(self, label: str | None = None, family=..., strength=...) -> float:
        sel = [i for i, p in enumerate(self.prompts)
               if (label is None or p.label == label) and (family is ... or p.family == family)
               and (strength is ... or p.strength == strength)]
        return float(self.scores[sel].mean()) if sel else float("nan")

    def table(self) -> dict:
        """{"harmful": x, "harmless": y, "jailbreak": {family: {strength: rate}}, "jailbreak_harmless": ...}.

        Strength 0 of each family is the plain request (the family's starting point)."""
        out = {"harmful": self.rate("harmful", family=None), "harmless": self.rate("harmless", family=None),
               "jailbreak": {}, "jailbreak_harmless": {}}
        for fam, strengths in self.prompts.families().items():
            for key, label in (("jailbreak", "harmful"), ("jailbreak_harmless", "harmless")):
                if not any(p.family == fam and p.label == label for p in self.prompts):
                    continue  # e.g. a user's jailbreak file: no harmless controls
                row = {"0": self.rate(label, family=None)}
                row.update({str(s): self.rate(label, family=fam, strength=s) for s in strengths})
                out[key][fam] = row
        return out

    def score_table(self) -> dict:
        return {"harmful": self.mean_score("harmful", family=None), "harmless": self.mean_score("harmless", family=None),
                "jailbreak": {fam: {str(s): self.mean_score("harmful", family=fam, strength=s) for s in ss}
                              for fam, ss in self.prompts.families().items()}}


def evaluate_refusal(model: ChatModel, prompts: PromptSet, judge: RefusalJudge = RefusalJudge(),
                     gen: GenerationConfig = GenerationConfig(max_new_tokens=12), with_scores: bool = True,
                     world=None) -> RefusalEval:
    """Greedy-generate, judge and score every prompt (whatever hooks are installed act on both).
    `world` (`interp.distributed.World`, under torchrun): the work is spread over the ranks and the
    result, on every rank, is the single-process one."""
    prompts.require("evaluation set")
    if with_scores:  # the score comes from the first generation step: one prompt pass, not two
        answers, first = generate_with_logits(model, prompts, gen, world=world)
        scores = check_finite(refusal_log_odds(model, first), "refusal scores")
    else:
        answers = generate(model, prompts, gen, world=world)
        scores = torch.full((len(prompts),), float("nan"))
    refused = judge(answers)
    return RefusalEval(prompts, answers, refused, scores)


@torch.no_grad()
def evaluate_stack(model: ChatModel, prompts: PromptSet, interventions, judge: RefusalJudge = RefusalJudge(),
                   gen: GenerationConfig = GenerationConfig(max_new_tokens=12), max_rows: int = 512) -> list[RefusalEval]:
    """`evaluate_refusal` under each of several interventions (a sequence, or an
    `interp.intervention.Stack`; `Intervention.none()` is the unmodified model), batched: the prompts
    are tiled once per intervention and greedy generation runs once over the tiles
    (`interp.runner.run`). Returns one `RefusalEval` per intervention, in order; each equals
    `evaluate_refusal` under `with intervention.apply(model):`."""
    from interp.generation import Greedy
    from interp.intervention import Intervention, Stack
    from interp.progress import pass_bar, silenced
    from interp.runner import prompt_batches, run

    prompts.require("evaluation set")
    stack = interventions if isinstance(interventions, Stack) else Intervention.stack(list(interventions))
    k, n = len(stack), len(prompts)
    answers: list[list[str]] = [[""] * n for _ in range(k)]
    scores = torch.empty(k, n)
    with silenced(not gen.progress), pass_bar(n * k, f"generating under {k} conditions" if k > 1 else "generating") as bar:
        for idx, b, _ in prompt_batches(model, prompts.texts, max_rows, new_tokens=gen.max_new_tokens):
            rows = run(model, b, stack, read=Greedy(gen.max_new_tokens), max_rows=max_rows)
            first = check_finite(refusal_log_odds(model, torch.stack([logits for _, logits in rows])), "refusal scores")
            for r, (ids, _) in enumerate(rows):
                answers[r // len(idx)][idx[r % len(idx)]] = model.tokenizer.decode(ids, skip_special_tokens=True).strip()
            scores[:, idx] = first.float().cpu().view(k, len(idx))
            bar.update(len(idx) * k)
    return [RefusalEval(prompts, a, judge(a), scores[c]) for c, a in enumerate(answers)]
