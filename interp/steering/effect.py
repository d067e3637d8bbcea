"""The one definition of a steering "effect", used by every function and report in this package.

effect = mean refusal score of the prompts with the intervention active
         - mean refusal score of the same prompts unsteered,
where the refusal score is `interp.scoring.refusal_score` (log P(refusal first tokens) -
log P(compliance first tokens) at the first response position). Positive: the intervention pushes
toward refusing. It is measured on held-out prompts (never the ones a direction was fitted on).
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from interp.model import ChatModel
from interp.scoring import refusal_score
from interp.intervention import Intervention
from interp.steering._util import texts_of

EFFECT_DEFINITION = ("effect = mean refusal score (log P(refusal first tokens) - log P(compliance first tokens) at the "
                     "first response position) of held-out prompts with the intervention active, minus the same mean "
                     "for the unsteered model on the same prompts; > 0 pushes toward refusing")


@torch.no_grad()
def scores_under(model: ChatModel, intervention: Intervention | None, prompts) -> Float[Tensor, "batch"]:
    """Refusal score of each prompt with `intervention` active (None or `Intervention.none()`: unsteered)."""
    texts = texts_of(prompts)
    with as_intervention(intervention).apply(model):
        return refusal_score(model, texts).cpu()


def as_intervention(intervention: Intervention | None) -> Intervention:
    """`intervention` itself; None is the unsteered model (`Intervention.none()`)."""
    if intervention is None:
        return Intervention.none()
    if not isinstance(intervention, Intervention):
        from interp.errors import InputError

        raise InputError(f"expected an interp.intervention.Intervention (e.g. Intervention.steer_heads(...)), "
                         f"got {type(intervention).__name__}")
    return intervention


class EffectMeter:
    """Measures `effect` of many interventions on one prompt set, scoring the unsteered model once."""

    def __init__(self, model: ChatModel, prompts):
        self.model = model
        self.texts = texts_of(prompts, "effect prompts")
        self.baseline: Tensor = scores_under(model, None, self.texts)

    def scores(self, intervention: Intervention | None) -> Tensor:
        return scores_under(self.model, intervention, self.texts)

    def __call__(self, intervention: Intervention | None) -> float:
        return float((self.scores(intervention) - self.baseline).mean())


def effect(model: ChatModel, intervention: Intervention | None, prompts) -> float:
    """Mean change in refusal score on `prompts` caused by `intervention` (see module docstring)."""
    return EffectMeter(model, prompts)(intervention)
