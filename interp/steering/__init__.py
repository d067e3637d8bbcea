"""Interventions on a chat model's refusal behaviour, each a context manager that always removes
its hooks: head-specific steering (ITI / HSI), layer steering, refusal-direction ablation and
addition (of a `probes.Direction`), Jailbreak Antidote (sparse runtime adjustment), and safety-utility trade-off sweeps.

`effect` (interp.steering.effect) is defined once: mean change in refusal score on held-out
prompts against the unsteered model. See docs/steering.md.
"""

from interp.steering.antidote import Antidote, AntidoteConfig, SPARSITY_GRID, fit_antidote
from interp.steering.direction import ablate_direction, add_direction
from interp.steering.effect import EFFECT_DEFINITION, EffectMeter, effect, scores_under
from interp.steering.heads import (HSI_DEFAULTS, ITI_DEFAULTS, ORGANISM_DEFAULTS, HeadDirections, HeadSteeringConfig,
                                   fit_head_directions, select_heads, single_head_effects, steer_heads)
from interp.steering.layer import compare_heads_vs_layer, steer_layer, steer_layers
from interp.steering.tradeoff import Unsteered, max_safe_alpha, split_sets, subsample, sweep, tradeoff_figure
from interp.steering._util import combine

__all__ = [
    "Antidote", "AntidoteConfig", "SPARSITY_GRID", "fit_antidote",
    "ablate_direction", "add_direction",
    "EFFECT_DEFINITION", "EffectMeter", "effect", "scores_under",
    "HSI_DEFAULTS", "ITI_DEFAULTS", "ORGANISM_DEFAULTS", "HeadDirections", "HeadSteeringConfig", "fit_head_directions",
    "select_heads", "single_head_effects", "steer_heads",
    "compare_heads_vs_layer", "steer_layer", "steer_layers",
    "Unsteered", "max_safe_alpha", "split_sets", "subsample", "sweep", "tradeoff_figure", "combine",
]
