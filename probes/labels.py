"""Labels for probes: what the model DID (refused or complied, judged on its greedy answer) or what
the prompt IS (harmful or harmless).

Behaviour is the default: a jailbreak the model complied with is a harmful prompt labelled
"complied", so a probe on behaviour looks for the refusal decision, not for harmful words.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from jaxtyping import Bool
from torch import Tensor

from interp.errors import InputError
from interp.generation import GenerationConfig, generate
from interp.model import ChatModel
from interp.prompts import PromptSet
from interp.scoring import RefusalJudge

KINDS = ("behaviour", "category")
_NAMES = {"behaviour": ("complied", "refused"), "category": ("harmless", "harmful"), "custom": ("negative", "positive")}

# The judge reads the opening words; a few tokens decide "sorry , i cannot" against "sure ! here is".
LABEL_GENERATION = GenerationConfig(max_new_tokens=8, batch_size=64)


@dataclass(frozen=True)
class Labels:
    """Binary labels, one per prompt, in the prompts' order. `y` True is the positive class
    (refused for behaviour, harmful for category)."""

    y: Bool[Tensor, "batch"]
    kind: str = "custom"
    prompt_ids: tuple[str, ...] | None = None
    meta: dict = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, str]:
        """(negative class name, positive class name)."""
        return _NAMES.get(self.kind, _NAMES["custom"])

    def __len__(self) -> int:
        return len(self.y)

    def counts(self) -> dict[str, int]:
        neg, pos = self.names
        return {pos: int(self.y.sum()), neg: int((~self.y).sum())}

    def select(self, idx: Sequence[int]) -> "Labels":
        idx = list(idx)
        ids = tuple(self.prompt_ids[i] for i in idx) if self.prompt_ids is not None else None
        return Labels(self.y[torch.as_tensor(idx, dtype=torch.long)], self.kind, ids, dict(self.meta))

    def describe(self) -> dict:
        return {"kind": self.kind, "positive": self.names[1], "negative": self.names[0], "counts": self.counts(), **self.meta}


def category_labels(prompts: PromptSet) -> Labels:
    """harmful (True) / harmless (False) from each prompt's own label."""
    if len(prompts) == 0:
        raise InputError("category_labels got an empty prompt set")
    return Labels(torch.tensor(prompts.is_harmful(), dtype=torch.bool), "category", tuple(prompts.ids))


def behaviour_labels(model: ChatModel, prompts: PromptSet, judge: RefusalJudge = RefusalJudge(),
                     gen: GenerationConfig = LABEL_GENERATION) -> Labels:
    """refused (True) / complied (False): greedy-generate each answer and run the refusal judge
    (the same judge `interp.evaluate.evaluate_refusal` uses). Any hooks installed act on it."""
    prompts.require("prompt set for behaviour labels")
    from interp.threads import model_threads

    with model_threads(model):
        answers = generate(model, prompts, gen)
    return judged_labels(model, prompts, answers, judge, gen)


def judged_labels(model: ChatModel, prompts: PromptSet, answers: Sequence[str], judge: RefusalJudge = RefusalJudge(),
                  gen: GenerationConfig = LABEL_GENERATION) -> Labels:
    """Behaviour labels from answers already generated (with `gen`), e.g. by
    `interp.capture.capture_with_answers`: refused (True) / complied (False) by `judge`."""
    if len(answers) != len(prompts):
        raise InputError(f"{len(answers)} answers for {len(prompts)} prompts: pass one answer per prompt")
    refused = judge(list(answers))
    return Labels(torch.tensor(refused, dtype=torch.bool), "behaviour", tuple(prompts.ids),
                  {"judge": judge.describe(), "max_new_tokens": gen.max_new_tokens, "model": model.name})


def resolve_labels(labels, prompts: PromptSet | None = None, model: ChatModel | None = None) -> Labels:
    """Accept "behaviour" / "category" (computed from `prompts`, with `model` for behaviour), a
    `Labels`, or any sequence / tensor of booleans or 0/1 (True = positive class)."""
    if isinstance(labels, Labels):
        return labels
    if isinstance(labels, str):
        if labels not in KINDS:
            raise InputError(f"labels must be one of {KINDS}, a Labels object or a list of booleans; got {labels!r}")
        if prompts is None:
            raise InputError(f"labels={labels!r} needs the prompt set to compute them from; pass a Labels object "
                             "or a list of booleans when ranking precomputed activations")
        if labels == "category":
            return category_labels(prompts)
        if model is None:
            raise InputError("behaviour labels need the model (its answers are judged); pass model= or labels='category'")
        return behaviour_labels(model, prompts)
    try:
        y = torch.as_tensor(labels)
    except (TypeError, ValueError, RuntimeError):
        raise InputError(f"labels of type {type(labels).__name__} are not understood; pass 'behaviour', 'category', "
                         "a Labels object or a list of booleans") from None
    if y.ndim != 1:
        raise InputError(f"labels must be one-dimensional (one per prompt), got shape {tuple(y.shape)}")
    if y.dtype != torch.bool:
        if y.is_floating_point() and not torch.isfinite(y).all():
            raise InputError("labels contain NaN or inf; pass booleans or 0/1")
        uniq = set(y.unique().tolist())
        if not uniq <= {0, 1}:
            raise InputError(f"labels must be booleans or 0/1, found values {sorted(uniq)[:5]}")
        y = y.bool()
    return Labels(y, "custom")
