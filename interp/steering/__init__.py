"""Interventions on a chat model's refusal behaviour, each an `interp.intervention.Intervention`
(`with iv.apply(model):` always removes its hooks): head-specific steering (ITI / HSI), layer
steering, refusal-direction ablation and addition (of an `interp.direction.Direction`), Jailbreak Antidote (sparse runtime adjustment),
and safety-utility trade-off sweeps.

`effect` (interp.steering.effect) is defined once: mean change in refusal score on held-out
prompts against the unsteered model. See docs/steering.md.
"""

from interp.intervention import Intervention
from interp.steering.antidote import Antidote, AntidoteConfig, SPARSITY_GRID, fit_antidote
from interp.steering.effect import EFFECT_DEFINITION, EffectMeter, effect, scores_under
from interp.steering.heads import (HSI_DEFAULTS, ITI_DEFAULTS, ORGANISM_DEFAULTS, HeadDirections, HeadSteeringConfig,
                                   fit_head_directions, select_heads, single_head_steering_effects)
from interp.steering.layer import compare_heads_vs_layer
from interp.steering.tradeoff import Unsteered, max_safe_strength, split_sets, subsample, sweep, tradeoff_figure, unsteered_point

__all__ = [
    "Intervention",
    "Antidote", "AntidoteConfig", "SPARSITY_GRID", "fit_antidote",
    "EFFECT_DEFINITION", "EffectMeter", "effect", "scores_under",
    "HSI_DEFAULTS", "ITI_DEFAULTS", "ORGANISM_DEFAULTS", "HeadDirections", "HeadSteeringConfig", "fit_head_directions",
    "select_heads", "single_head_steering_effects",
    "compare_heads_vs_layer",
    "Unsteered", "max_safe_strength", "split_sets", "subsample", "sweep", "tradeoff_figure", "unsteered_point",
]
