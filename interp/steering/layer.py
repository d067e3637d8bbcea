"""Layer steering: the baseline that head steering must beat or match.

`Intervention.steer_layer(head_dirs, layers, sigmas, mode)` (interp.intervention):
mode="heads": the head-steering shift (`sigmas * sigma * u` per head) on every head of the layer(s).
mode="resid": `sigmas * sigma * u` on the residual stream at `hook_resid_mid` of the layer (right
after the layer's head outputs are added; `hook_resid_post` on a model whose blocks run attention and
MLP in parallel, which has no resid_mid), `u` the unit mass-mean direction of the residual there
and `sigma` the std of the training residuals projected on it. Both act at every position.
"""

from __future__ import annotations

from typing import Literal

from interp.hooks import check_alpha
from interp.intervention import Intervention
from interp.model import ChatModel
from interp.steering._util import check_heads
from interp.steering.effect import EffectMeter
from interp.steering.heads import HeadDirections

Mode = Literal["heads", "resid"]


def compare_heads_vs_layer(model: ChatModel, head_dirs: HeadDirections, heads, sigmas: float, sets,
                           mode: Mode = "heads") -> dict:
    """Effect of steering `heads` against steering their whole layer(s), at the same strength (`sigmas`:
    each head's shift in units of its sigma), on each set.

    `sets`: one prompt set or {name: prompts}. Returns {"heads", "layers", "sigmas", "mode",
    "effect_heads": {name: e}, "effect_layer": {name: e}, "ratio": {name: heads / layer}}; the
    effect is `interp.steering.effect` (mean change in refusal score vs the unsteered model).
    """
    heads = check_heads(model, heads)
    sigmas = check_alpha(sigmas, "sigmas")
    head_dirs.check(model)
    layers = sorted({l for l, _ in heads})
    named = sets if isinstance(sets, dict) else {"prompts": sets}
    on_heads = Intervention.steer_heads(head_dirs, heads, sigmas)
    on_layers = Intervention.steer_layer(head_dirs, layers, sigmas, mode)

    out = {"heads": [list(h) for h in heads], "layers": layers, "sigmas": sigmas, "mode": mode,
           "effect_heads": {}, "effect_layer": {}, "ratio": {}}
    for name, prompts in named.items():
        meter = EffectMeter(model, prompts)
        e_h = meter(on_heads)
        e_l = meter(on_layers)
        out["effect_heads"][name] = e_h
        out["effect_layer"][name] = e_l
        out["ratio"][name] = e_h / e_l if e_l != 0 else float("nan")
    return out
