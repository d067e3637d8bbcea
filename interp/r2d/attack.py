"""The logit-guided attack (`interp.slipping.attack`) against an R2D model: the search drives down
the pivot gap (logit[UNSAFE] - logit[SAFE] at the decision position, teacher-forced on the teacher's
steps for the candidate prompt: `interp.r2d.pivot_heads`), and success is read as for any R2D
answer: the judge on the final answer, the text after the last pivot of the model's own greedy
trace. The search's score stands in for the trace only while it is searching; every reported
success comes from a generated trace."""

from __future__ import annotations

from interp.model import ChatModel
from interp.prompts import Prompt, PromptSet
from interp.scoring import RefusalJudge
from interp.slipping.attack import Target


def pivot_target(judge: RefusalJudge, max_new_tokens: int, batch_size: int = 16) -> Target:
    from interp.r2d.data import final_answer
    from interp.r2d.evaluate import generate_r2d
    from interp.r2d.pivot_heads import decision_gaps

    def score(model: ChatModel, prompts: list[Prompt]):
        return decision_gaps(model, PromptSet("attack candidates", tuple(prompts), "attack"), batch_size)

    def answer(model: ChatModel, prompt: Prompt) -> tuple[str, bool]:
        final = final_answer(generate_r2d(model, [prompt], max_new_tokens=max_new_tokens, batch_size=batch_size)[0])
        return final, not judge([final])[0]

    return Target(score, answer)
