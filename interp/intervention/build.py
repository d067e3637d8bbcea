"""The operations the methods build, from their fitted objects: head and layer steering from
`HeadDirections`, direction addition and ablation from a `Direction`, head ablation from a
reference, and the rest from plain values. `Intervention.<name>(...)` wraps each in a one-part
intervention."""

from __future__ import annotations

import numbers
from typing import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InputError
from interp.intervention.activations import Patch, SharpenAttention, WeighTokens
from interp.intervention.checks import (ADDITION_SITES, HEAD_AXIS, check_strength, check_temperature, direction_parts,
                                        pairs, plain)
from interp.intervention.heads import AblateHeads, ScaleHeads, SteerHeads
from interp.intervention.residual import AddToResidual, ProjectOut, SteerResidual


def steer_heads(head_dirs, heads, sigmas: float) -> SteerHeads:
    """ITI / HSI: add `sigmas * sigma * u` to each chosen head's output (`hook_z`) at every
    position. `head_dirs`: `interp.steering.HeadDirections`; `heads`: (layer, head) pairs."""
    sigmas = check_strength(sigmas, "sigmas")
    ps = pairs(heads)
    return _head_shift(head_dirs, ps, sigmas, f"head steering of {len(ps)} head(s) {list(ps[:4])}, "
                                              "sigmas={strength:g}")


def _head_shift(head_dirs, ps, sigmas, label) -> SteerHeads:
    L, H = head_dirs.n_layers, head_dirs.n_heads
    for l, h in ps:
        if not (0 <= l < L and 0 <= h < H):
            raise InputError(f"head ({l}, {h}) does not exist: the head directions cover {L} layers x {H} heads")
        if not head_dirs.fitted[l, h]:
            raise InputError(f"head ({l}, {h}) has no fitted direction; fit_head_directions(..., heads=...) must include it")
    layers = sorted({l for l, _ in ps})
    return SteerHeads(ps, head_dirs.directions[layers], head_dirs.sigma[layers], sigmas, label=label,
                      made_on=plain(head_dirs.made_on))


def steer_layer(head_dirs, layers, sigmas: float, mode: str = "heads") -> SteerHeads | SteerResidual:
    """Steer whole layer(s) (an int or a list): every head (mode="heads": the head-steering shift
    on each) or the residual stream where the head outputs were added (mode="resid": `sigmas * sigma *
    u` at the head directions' `resid_site`: resid_mid, or resid_post on a parallel attention+MLP block)."""
    sigmas = check_strength(sigmas, "sigmas")
    single = isinstance(layers, numbers.Integral)
    ls = [layers] if single else list(layers)
    for l in ls:
        if not isinstance(l, numbers.Integral) or not 0 <= l < head_dirs.n_layers:
            raise InputError(f"layer {l} does not exist: the head directions cover layers 0..{head_dirs.n_layers - 1}")
    which = f"layer {ls[0]}" if single else f"layers {ls}"
    label = f"layer steering ({mode}) of {which}, sigmas={{strength:g}}"
    if mode == "heads":
        return _head_shift(head_dirs, tuple((int(l), h) for l in ls for h in range(head_dirs.n_heads)), sigmas, label)
    if mode != "resid":
        raise InputError(f"mode must be 'heads' or 'resid', got {mode!r}")
    for l in ls:
        if float(head_dirs.resid_sigma[l]) == 0.0:
            raise InputError(f"layer {l} has no fitted residual direction; fit_head_directions must include a head of that layer")
    return SteerResidual(getattr(head_dirs, "resid_site", "resid_mid"), tuple(int(l) for l in ls), head_dirs.resid[ls], head_dirs.resid_sigma[ls], sigmas,
                         label=label, made_on=plain(head_dirs.made_on))


def add_direction(direction, layer: int | None = None, factor: float = 1.0, site: str = "resid_pre") -> AddToResidual:
    """Arditi's activation addition: add `factor * vector` (not normalised: a difference in means at
    its natural size) to the residual stream of `layer` (default: the direction's own `.layer`) at
    `site`, at every position."""
    vec, own_layer, made_on = direction_parts(direction)
    layer = own_layer if layer is None else layer
    if layer is None:
        raise InputError("adding a direction needs a layer: pass layer= or a direction object with .layer")
    if isinstance(layer, bool) or not isinstance(layer, (numbers.Integral, Tensor)):
        raise InputError(f"layer {layer!r} does not exist: pass a layer index")
    layer = int(layer)
    factor = check_strength(factor, "factor")
    if site not in ADDITION_SITES:
        raise InputError(f"cannot add a direction at site {site!r}; choose one of {ADDITION_SITES}")
    return AddToResidual(site, (layer,), vec[None], factor, label=f"direction addition at {site} of layer {layer}, "
                         "factor={strength:g}", made_on=made_on)


def ablate_direction(direction) -> ProjectOut:
    """Arditi's directional ablation: project the unit direction out of every block input and
    every attention and MLP output, at every position."""
    vec, _, made_on = direction_parts(direction)
    return ProjectOut(vec, made_on=made_on)


def ablate_heads(heads, method: str = "mean", reference=None, seed: int = 0, values: Tensor | None = None) -> AblateHeads:
    """Replace each given head's `hook_z` (holds under the KV cache). method "zero"; "mean": the
    mean of `reference` (a `HeadReference` or its activations: [prompt, layer, head, d_head] applied
    at every position, or per position from the end, [prompt, slot, layer, head, d_head]); "resample":
    each batch row takes the output of a reference prompt drawn by a seeded permutation (at the same
    position when per position); "values": the given [layer, head, d_head]
    `values`. Build a reference from prompts with `interp.causal.head_reference`."""
    if method in ("mean", "resample"):
        if reference is None:
            raise InputError(f"{method}-ablation replaces a head's output by its {'mean' if method == 'mean' else 'value'} "
                             "over a reference set: pass reference= (balanced harmful + harmless prompts, e.g. the "
                             "study's train split, so the mean carries no label; or a HeadReference), or use method='zero'")
        z = reference.z if hasattr(reference, "z") else reference
        if not isinstance(z, Tensor) or z.ndim not in (4, 5):
            raise InputError("reference must be a HeadReference (interp.causal.head_reference) or a tensor "
                             "[prompt, layer, head, d_head] of head outputs ([prompt, slot, layer, head, d_head] per position)")
        if z.shape[0] == 0:
            raise InputError("the reference activations hold no prompt: capture them on a non-empty reference set")
        values = z.mean(0) if method == "mean" else z
    elif method == "values":
        if not isinstance(values, Tensor) or values.ndim != 3:
            raise InputError("method='values' needs values= a tensor [layer, head, d_head]")
    else:
        values = None
    return AblateHeads(heads, method, values, seed)


def patch(site: str, layer: int, values: Tensor, positions: str | Sequence[int] = "all", heads=None) -> Patch:
    """Replace activation `site` of `layer` by source `values` (from another run), at `positions`
    ("all", "last" or indices; `values` holds those positions) and, for per-head kinds, only at
    `heads` ((layer, head) pairs in that layer; `values` holds those heads)."""
    if heads is not None and site not in HEAD_AXIS:
        raise InputError(f"heads= needs a per-head kind ({sorted(HEAD_AXIS)}), got {site!r}")
    return Patch(site, layer, values, positions, heads)


def scale_heads(heads, factor: float, site: str = "z") -> ScaleHeads:
    """Multiply the chosen heads' outputs (or another per-head `site`) by `factor`."""
    return ScaleHeads(heads, factor, site)


def sharpen(temperature: float, layers: Sequence[int] | None = None, heads=None) -> SharpenAttention:
    """Attention sharpening: every attention softmax of the chosen layers/heads runs at
    `temperature` (scores divided by it). `layers`: indices (None: all); `heads`: (layer, head)
    pairs, or head indices used in each of the given `layers`, or None for all heads."""
    temperature = check_temperature(temperature)
    if heads is not None:
        heads = list(heads.tolist() if isinstance(heads, Tensor) else heads)
        if heads and not any(isinstance(h, (tuple, list)) for h in heads):
            if layers is None:
                raise InputError("head indices need layers= (they are used in each given layer); or pass "
                                 "(layer, head) pairs")
            heads = [(l, h) for l in layers for h in heads]
        if not heads:
            raise InputError("heads is empty: pass (layer, head) pairs, or None for all heads")
    return SharpenAttention(temperature, None if layers is None else tuple(layers), None if heads is None else tuple(heads))


def weigh_tokens(weights: Float[Tensor, "batch pos"]) -> WeighTokens:
    """Multiply each prompt token's embedding by its weight (Token Highlighter's soft removal:
    the highlighted tokens at beta < 1, the others at 1)."""
    return WeighTokens(weights)
