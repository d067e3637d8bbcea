"""Operations on any activation: patching in another run's values, scaling, attention sharpening
and token weighting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InputError
from interp.hooknames import EMBED, HOOK_TEMPLATES, act_name
from interp.hooks import FwdHook, check_layer
from interp.model import ChatModel
from interp.intervention.checks import HEAD_AXIS, by_layer, check_heads, check_layers, check_strength, check_temperature, pairs
from interp.intervention.op import Build, Op, Strength, register


@register
@dataclass(frozen=True, eq=False)
class Patch(Op):
    """Replace activation `site` of `layer` by `values` from another run, at `positions` ("all",
    "last" or indices; `values` holds those positions, [batch, pos, ...], or [batch, ...] for
    "last") and, for a per-head site, only at `heads` ((layer, head) pairs of that layer; `values`
    then holds those heads only)."""

    site: str
    layer: int
    values: Tensor
    positions: str | tuple[int, ...] = "all"
    heads: tuple[tuple[int, int], ...] | None = None

    def __post_init__(self) -> None:
        if self.site not in HOOK_TEMPLATES:
            raise InputError(f"unknown activation kind {self.site!r}; known: {sorted(HOOK_TEMPLATES)}")
        pos = self.positions if isinstance(self.positions, str) else tuple(int(p) for p in self.positions)
        if isinstance(pos, str) and pos not in ("all", "last"):
            raise InputError(f"positions must be 'all', 'last' or a list of indices, got {self.positions!r}")
        object.__setattr__(self, "positions", pos)
        object.__setattr__(self, "layer", int(self.layer))
        if self.heads is not None:
            if self.site not in HEAD_AXIS:
                raise InputError(f"heads= needs a per-head kind ({sorted(HEAD_AXIS)}), got {self.site!r}")
            hs = pairs(self.heads, strict=True)
            if any(l != self.layer for l, _ in hs):
                raise InputError(f"patched heads {list(hs)} must lie in the patched layer {self.layer}")
            object.__setattr__(self, "heads", hs)

    def first_layer(self, model: ChatModel) -> int:
        return self.layer

    def summary(self) -> str:
        return f"patching {self.site} of layer {self.layer}"

    def _index(self):
        return slice(None) if self.positions == "all" else (-1 if self.positions == "last" else list(self.positions))

    def build(self, model: ChatModel) -> Build:
        check_layer(model, self.layer)
        hs = None if self.heads is None else [h for _, h in check_heads(model, self.heads)]
        pos, src = self._index(), self.values

        def patch(act):
            new = act.clone()
            v = src.to(act.device, act.dtype)
            if hs is None:
                new[:, pos] = v
            elif HEAD_AXIS[self.site] == 2:
                new[:, pos, hs] = v
            else:
                new[:, hs, pos] = v
            return new

        return [(act_name(self.site, self.layer), patch)]

    @classmethod
    def stacked_hooks(cls, model: ChatModel, entries: list, n_rows: int) -> list[FwdHook]:
        # whole positions of [row, pos, ...] activations (or of per-head [row, pos, head, d] ones):
        # one selection per hook, each row taking its replica's values
        def fast(op):
            return op.positions in ("all", "last") and (op.heads is None or HEAD_AXIS[op.site] == 2)

        out = [h for op, rows in entries if not fast(op) for h in op.hooks(model, rows)]
        groups: dict[str, list] = {}
        for op, rows in (e for e in entries if fast(e[0])):
            op.check_model(model)
            check_layer(model, op.layer)
            groups.setdefault(act_name(op.site, op.layer), []).append((op, rows))
        for name, group in groups.items():
            out.append((name, _select_rows(model, group, n_rows)))
        return out


def _select_rows(model: ChatModel, group: list, n_rows: int):
    def hook(act, hook=None):
        P = act.shape[1]
        v = torch.zeros(n_rows, *act.shape[1:], dtype=act.dtype, device=act.device)
        m = torch.zeros(n_rows, P, *([model.n_heads] if act.ndim == 4 else []), dtype=torch.bool, device=act.device)
        for op, rows in group:
            pos = slice(None) if op.positions == "all" else slice(P - 1, P)
            x = op.values.to(act.device, act.dtype)
            x = x if op.positions == "all" else x[:, None]  # "last": values hold that one position
            if op.heads is None:
                v[rows, pos] = x
                m[rows, pos] = True
            else:  # values hold the patched heads only: [row, pos, head, d_head]
                hs = [h for _, h in op.heads]
                v[rows, pos, hs] = x
                m[rows, pos, hs] = True
        return torch.where(m.view(*m.shape, *([1] * (act.ndim - m.ndim))), v, act)
    return hook


@register
@dataclass(frozen=True, eq=False)
class ScaleActivation(Strength, Op):
    """Multiply activation `site` of `layers` (None: every layer) by `factor`."""

    site: str
    layers: tuple[int, ...] | None = None
    factor: float = 1.0
    unit: ClassVar[str] = "factor"
    guard: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.site not in HOOK_TEMPLATES:
            raise InputError(f"unknown activation kind {self.site!r}; known: {sorted(HOOK_TEMPLATES)}")
        object.__setattr__(self, "factor", check_strength(self.factor, "factor"))
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(l) for l in self.layers))

    def first_layer(self, model: ChatModel) -> int:
        return min(check_layers(model, self.layers))

    def summary(self) -> str:
        return f"scaling {self.site} by factor={self.factor:g}"

    def build(self, model: ChatModel) -> Build:
        a = self.factor
        return [(act_name(self.site, l), lambda act: act * a) for l in check_layers(model, self.layers)]


@register
@dataclass(frozen=True, eq=False)
class SharpenAttention(Strength, Op):
    """Every attention softmax of the chosen heads runs at `temperature` (scores divided by it; below
    1 sharpens). `heads`: (layer, head) pairs, or None for every head of `layers` (None: all)."""

    temperature: float = 1.0
    layers: tuple[int, ...] | None = None
    heads: tuple[tuple[int, int], ...] | None = None
    unit: ClassVar[str] = "temperature"

    def __post_init__(self) -> None:
        object.__setattr__(self, "temperature", check_temperature(self.temperature))
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(self.layers))
        if self.heads is not None:
            hs = pairs(self.heads)
            if self.layers is not None:
                hs = tuple(p for p in hs if p[0] in self.layers)
                if not hs:
                    raise InputError(f"none of the heads {list(self.heads)} lies in the chosen layers {list(self.layers)}")
            object.__setattr__(self, "heads", hs)

    def with_strength(self, value: float) -> "SharpenAttention":
        return super().with_strength(check_temperature(value))

    def first_layer(self, model: ChatModel) -> int:
        return min(self._select(model))

    def summary(self) -> str:
        return f"attention sharpening at T={self.temperature:g}"

    def _select(self, model: ChatModel) -> dict[int, list[int] | None]:
        """layer -> heads (None: all heads)."""
        layers = check_layers(model, self.layers)
        if self.heads is None:
            return {l: None for l in layers}
        L, H = model.n_layers, model.n_heads
        for l, h in self.heads:
            if not (0 <= l < L and 0 <= h < H):
                raise InputError(f"head ({l}, {h}) does not exist on {model.name} ({L} layers x {H} heads)")
        return by_layer(self.heads)

    def build(self, model: ChatModel) -> Build:
        """Divide the chosen heads' `hook_attn_scores` by the temperature (see
        interp.slipping.sharpen for why the result is clamped: masked entries stay finite)."""
        inv = 1.0 / self.temperature
        out = []
        for l, hs in self._select(model).items():
            cache: dict = {}

            def scale(scores: Float[Tensor, "batch head q k"], hs=hs, cache=cache):
                key = (scores.dtype, scores.device, scores.shape[1])
                if key not in cache:  # per-head factor, built once per dtype/device
                    s = torch.ones(scores.shape[1], dtype=scores.dtype, device=scores.device)
                    s[hs if hs is not None else slice(None)] = inv
                    fi = torch.finfo(scores.dtype)
                    cache[key] = (s.view(1, -1, 1, 1), fi.min, fi.max)
                s, lo, hi = cache[key]
                # out of place (the input may be needed by autograd), then clamp the overflowed masks back
                return (scores * s).clamp_(min=lo, max=hi)

            out.append((act_name("attn_scores", l), scale))
        return out


@register
@dataclass(frozen=True, eq=False)
class WeighTokens(Op):
    """Multiply each prompt token's embedding by its weight (Token Highlighter's soft removal), for
    the batch the weights were made for: only on a pass of its padded length, so cached generation
    steps (one new token each) are left alone."""

    weights: Float[Tensor, "batch pos"]

    def __post_init__(self) -> None:
        if not isinstance(self.weights, Tensor) or self.weights.ndim != 2:
            raise InputError("weights must be a tensor [batch, pos] (one weight per prompt token)")

    def first_layer(self, model: ChatModel) -> int:
        return -1

    def summary(self) -> str:
        return "token weighting of the embeddings"

    def build(self, model: ChatModel) -> Build:
        w, n_pos = self.weights, self.weights.shape[1]

        def weigh(embed):
            if embed.shape[1] == n_pos:  # the prompt pass only; cached steps see one new token
                return embed * w[..., None].to(embed.dtype)
            return None

        return [(EMBED, weigh)]
