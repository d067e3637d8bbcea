"""Layer steering: the baseline that head steering must beat or match.

mode="heads": the head-steering shift (`alpha * sigma * u` per head) on every head of the layer.
mode="resid": `alpha * sigma * u` on the residual stream at `hook_resid_mid` of the layer (right
after the layer's head outputs are added), `u` the unit mass-mean direction of the residual there
and `sigma` the std of the training residuals projected on it. Both act at every position.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Literal

from interp.hooks import FwdHook, check_alpha, check_layer, hooked
from interp.model import ChatModel
from interp.errors import InputError
from interp.steering._util import check_heads
from interp.steering.effect import EffectMeter
from interp.steering.heads import HeadDirections, head_steering_hooks

Mode = Literal["heads", "resid"]


def layer_steering_hooks(model: ChatModel, head_dirs: HeadDirections, layer: int, alpha: float, mode: Mode = "heads") -> list[FwdHook]:
    check_layer(model, layer)
    alpha = check_alpha(alpha)
    head_dirs.check(model)
    if mode == "heads":
        return head_steering_hooks(model, head_dirs, [(layer, h) for h in range(model.n_heads)], alpha)
    if mode != "resid":
        raise InputError(f"mode must be 'heads' or 'resid', got {mode!r}")
    if float(head_dirs.resid_sigma[layer]) == 0.0:
        raise InputError(f"layer {layer} has no fitted residual direction; fit_head_directions must include a head of that layer")
    shift = (alpha * head_dirs.resid_sigma[layer] * head_dirs.resid[layer]).to(model.device, model.dtype)

    def add(act, hook):
        return act + shift.to(act.device)

    return [(f"blocks.{layer}.hook_resid_mid", add)]


@contextmanager
def steer_layer(model: ChatModel, head_dirs: HeadDirections, layer: int, alpha: float, mode: Mode = "heads") -> Iterator[ChatModel]:
    """Steer a whole layer: all its heads (mode="heads") or its residual stream (mode="resid")."""
    with hooked(model, layer_steering_hooks(model, head_dirs, layer, alpha, mode),
                f"layer steering ({mode}) of layer {layer}, alpha={float(alpha):g}", guard=True):
        yield model


@contextmanager
def steer_layers(model: ChatModel, head_dirs: HeadDirections, layers, alpha: float, mode: Mode = "heads") -> Iterator[ChatModel]:
    """`steer_layer` on several layers at once."""
    hooks: list[FwdHook] = []
    for l in layers:
        hooks += layer_steering_hooks(model, head_dirs, l, alpha, mode)
    with hooked(model, hooks, f"layer steering ({mode}) of layers {list(layers)}, alpha={float(alpha):g}", guard=True):
        yield model


def compare_heads_vs_layer(model: ChatModel, head_dirs: HeadDirections, heads, alpha: float, sets,
                           mode: Mode = "heads") -> dict:
    """Effect of steering `heads` against steering their whole layer(s), at the same alpha, on each set.

    `sets`: one prompt set or {name: prompts}. Returns {"heads", "layers", "alpha", "mode",
    "effect_heads": {name: e}, "effect_layer": {name: e}, "ratio": {name: heads / layer}}; the
    effect is `interp.steering.effect` (mean change in refusal score vs the unsteered model).
    """
    heads = check_heads(model, heads)
    alpha = check_alpha(alpha)
    head_dirs.check(model)
    layers = sorted({l for l, _ in heads})
    named = sets if isinstance(sets, dict) else {"prompts": sets}
    from interp.steering.heads import steer_heads

    out = {"heads": [list(h) for h in heads], "layers": layers, "alpha": alpha, "mode": mode,
           "effect_heads": {}, "effect_layer": {}, "ratio": {}}
    for name, prompts in named.items():
        meter = EffectMeter(model, prompts)
        e_h = meter(lambda: steer_heads(model, head_dirs, heads, alpha))
        e_l = meter(lambda: steer_layers(model, head_dirs, layers, alpha, mode))
        out["effect_heads"][name] = e_h
        out["effect_layer"][name] = e_l
        out["ratio"][name] = e_h / e_l if e_l != 0 else float("nan")
    return out
