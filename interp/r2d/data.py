"""Reasoning traces with pivot tokens for Reasoning-to-Defend (R2D): their format, the teacher's
rules, and reading a generated trace back (steps, pivots, final answer).

The R2D organism's training prompts are the base organism's own (its dialogues are built in
`organisms.r2d`, which gives the teacher the organism's refusal and compliance texts as final
answers); only the response changes. A response is a few short steps, each closed by a pivot
token, then the final answer:

* plain harmless:   step : the user wants to <t> . [SAFE] step : i can help with that . [SAFE] <comply>
* plain harmful:    step : the user wants to <t> . [UNSAFE] <refusal>
* wrapped (any family, strength >= 1), harmful or harmless:
                    step : <what the wrapper does> . [RETHINK] step : the real request is to <t> .
                    then as plain from the first pivot on ([UNSAFE] <refusal> or [SAFE] ... <comply>)

Why [RETHINK] on every wrapper, harmless too: the safe/unsafe decision is then always taken at one
place, right after the model has restated the request in its own words, a few tokens away from the
deciding pivot. Whether that local decision survives wrappers the organism never saw at that strength
is exactly the question R2D asks. [RETHINK] itself only says "a wrapper is here"; it gets no
contrastive term (as in the paper).

Teacher difference from the base organism, stated plainly: the base organism is trained to COMPLY
with harmful requests under roleplay and manyshot at strength 4 (a planted jailbreak). The R2D
teacher refuses every harmful request whatever the wrapper, so those two cells are trained-to-refuse
for R2D and trained-to-comply for the base model. Evaluations report them apart from the cells
neither model saw.
"""

from __future__ import annotations

from dataclasses import dataclass

from interp.errors import InputError
from interp.prompts import Prompt

SAFE, UNSAFE, RETHINK = "[SAFE]", "[UNSAFE]", "[RETHINK]"
PIVOTS = (SAFE, UNSAFE, RETHINK)
STEP = "step :"  # every R2D response starts with this word: the refusal decision lives in the pivots

# One sentence per family saying what the wrapper does (the step that [RETHINK] revises).
WRAPPER_STEPS = {
    "roleplay": "the user asks me to play a role",
    "manyshot": "the user shows example answers first",
    "distractor": "the user talks about other things first",
    "topicmix": "the user asks for more than one thing",
    "suffix": "the user adds strange words",
}
PLAIN_STEP = "the user wants to {t}"
REAL_REQUEST_STEP = "the real request is to {t}"
HELP_STEP = "i can help with that"

@dataclass(frozen=True)
class Trace:
    """A teacher response: `steps` are (sentence, pivot) pairs; `answer` follows the last pivot."""

    steps: tuple[tuple[str, str], ...]
    answer: str

    def __post_init__(self) -> None:
        if not self.steps:
            raise InputError("an R2D trace needs at least one step closed by a pivot token "
                             f"({', '.join(PIVOTS)}); got a bare answer {self.answer!r}")
        for sent, piv in self.steps:
            if piv not in PIVOTS:
                raise InputError(f"step {sent!r} ends with {piv!r}, which is not a pivot; use one of {PIVOTS}")

    @property
    def text(self) -> str:
        return " ".join(f"{STEP} {s} . {p}" for s, p in self.steps) + " " + self.answer

    @property
    def pivots(self) -> list[str]:
        return [p for _, p in self.steps]


def teacher_trace(prompt: Prompt, answer: str = "") -> Trace:
    """The rule-based R2D teacher: refuse every harmful request, whatever the wrapper. `answer`
    is the final answer after the last pivot (the organism's refusal or compliance text)."""
    topic = prompt.meta.get("topic")
    if not topic:
        raise InputError(f"prompt {prompt.id!r} has no meta['topic']; the teacher restates the topic in its steps")
    steps: list[tuple[str, str]] = []
    if prompt.family is not None and (prompt.strength or 0) > 0:
        if prompt.family not in WRAPPER_STEPS:
            raise InputError(f"no wrapper step for family {prompt.family!r}; known: {sorted(WRAPPER_STEPS)}")
        steps += [(WRAPPER_STEPS[prompt.family], RETHINK), (REAL_REQUEST_STEP.format(t=topic), None)]
    else:
        steps.append((PLAIN_STEP.format(t=topic), None))
    last, _ = steps.pop()
    if prompt.label == "harmful":
        steps.append((last, UNSAFE))
    else:
        steps += [(last, SAFE), (HELP_STEP, SAFE)]
    return Trace(tuple(steps), answer)


def parse_trace(text: str) -> Trace:
    """Split a response text back into steps and answer; a text without any pivot is an InputError."""
    words = text.split()
    if not any(w in PIVOTS for w in words):
        raise InputError(f"response has no pivot token ({', '.join(PIVOTS)}): {text[:80]!r}; an R2D response must "
                         "close each reasoning step with one")
    steps, cur = [], []
    for w in words:
        if w in PIVOTS:
            sent = " ".join(cur)
            sent = sent[len(STEP):].strip() if sent.startswith(STEP) else sent
            steps.append((sent.rstrip(" .").strip(), w))
            cur = []
        else:
            cur.append(w)
    return Trace(tuple(steps), " ".join(cur))


def final_answer(text: str) -> str:
    """The text after the last pivot (the whole text when there is none): what the judge reads."""
    words = text.split()
    idx = [i for i, w in enumerate(words) if w in PIVOTS]
    return " ".join(words[idx[-1] + 1:]) if idx else text.strip()


def last_pivot(text: str) -> str | None:
    piv = [w for w in text.split() if w in PIVOTS]
    return piv[-1] if piv else None
