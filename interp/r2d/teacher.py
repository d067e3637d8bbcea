"""The rule-based R2D teacher for a user's own prompts on any tokenizer (English text, BPE or not).

With no reasoning model to distil from, the teacher writes its reasoning from the prompt's label
and, for a jailbreak, its family and strength, by fixed rules:

* plain request:  "Step: The user asks: "<request>"." closed by [SAFE] or [UNSAFE];
* wrapped request (a family at strength >= 1): first "Step: The message wraps its request in other
  text, so I look for the real request." closed by [RETHINK], then "Step: The real request is:
  "<request>"." closed by [SAFE] or [UNSAFE];
* then the final answer: a fixed refusal after [UNSAFE], the base model's own greedy answer to the
  prompt after [SAFE] (so compliance is the model's own, not the teacher's).

<request> is the plain request (a jailbreak row's `request` span, else the whole text), cut to its
first `max_request_words` words. The decision is therefore always taken right after the model has
restated the request in its own words, as in the word-level R2D organism (`interp.r2d.data`), and
it is taken at the pivot itself: no words before the pivot give the verdict away. (An earlier
teacher wrote "It could help someone cause serious harm." before [UNSAFE]; the decision then fell
on that sentence's second token, where only the LM loss reached it, and the CPO term had nothing
left to separate: it was 0 within 33 steps on SmolLM2, and held-out harmful refusal stayed at 0.78,
docs/r2d.md.)
Responses are built as token ids, a pivot id directly after each step's text, so each pivot is one
token whatever the tokenizer does with the spaces around special tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

from interp.prompts import Prompt
from interp.r2d.data import RETHINK, SAFE, UNSAFE

REFUSAL = "I'm sorry, but I can't help with that."
STEP = "Step:"
WRAPPED = "The message wraps its request in other text, so I look for the real request."


@dataclass(frozen=True)
class TeacherConfig:
    refusal: str = REFUSAL  # the final answer after [UNSAFE]
    max_request_words: int = 16  # the restated request is cut to this many words


def request_text(prompt: Prompt) -> str:
    """The plain request inside a prompt (its `request` span when it has one)."""
    span = prompt.spans.get("request")
    return prompt.text[span[0]:span[1]] if span else prompt.text


def wrapped(prompt: Prompt) -> bool:
    return prompt.family is not None and (prompt.strength or 0) > 0


def teacher_steps(prompt: Prompt, cfg: TeacherConfig = TeacherConfig()) -> list[tuple[str, str]]:
    """(sentence, pivot) pairs of the teacher's reasoning for `prompt` (see the module docstring)."""
    words = " ".join(request_text(prompt).split()).split(" ")
    req = " ".join(words[:cfg.max_request_words]) + (" ..." if len(words) > cfg.max_request_words else "")
    decide = SAFE if prompt.label == "harmless" else UNSAFE
    if wrapped(prompt):
        return [(WRAPPED, RETHINK), (f'The real request is: "{req}".', decide)]
    return [(f'The user asks: "{req}".', decide)]


def response_ids(tokenizer, steps: list[tuple[str, str]], pivot_ids: dict[str, int], answer_ids: list[int]) -> list[int]:
    """Token ids of a teacher response: each step's text, its pivot id, then `answer_ids`."""
    out: list[int] = []
    for i, (sentence, pivot) in enumerate(steps):
        out += tokenizer(("" if i == 0 else " ") + f"{STEP} {sentence}", add_special_tokens=False).input_ids
        out.append(pivot_ids[pivot])
    return out + list(answer_ids)


def refusal_ids(tokenizer, cfg: TeacherConfig = TeacherConfig()) -> list[int]:
    """The refusal's ids, closed by the end-of-turn token."""
    return tokenizer(cfg.refusal, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]


def prompt_ids(tokenizer, text: str) -> list[int]:
    """The chat-formatted prompt's ids, as `ChatModel.encode` forms them (no system prompt of ours)."""
    f = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
    return tokenizer(f, add_special_tokens=False).input_ids
