"""Operations on the residual stream: adding a vector (at a chosen size, in sigmas, or as a
fraction of the residual norm) and projecting a direction out.

Each keeps the arithmetic its method always used (same float operations in the same order), so
numbers do not move with this representation; the stacked forms (one hook for many replicas)
are the per-row kernels the batched searches used."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import einops
import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InputError
from interp.hooknames import act_name
from interp.hooks import FwdHook, check_direction
from interp.model import ChatModel
from interp.intervention.checks import ADDITION_SITES, PROJECTION_SITES, check_layers, check_strength
from interp.intervention.op import Build, Op, Strength, register

POSITIONS = ("all", "last")


@dataclass(frozen=True, eq=False)
class _Shift(Strength, Op):
    """Adds one vector per layer to `site` of `layers`, at every position or the last one (in the
    prompt pass the last prompt token; under the key/value cache each step's own position)."""

    guard: ClassVar[bool] = True

    def _check(self) -> None:
        if self.site not in ADDITION_SITES:
            raise InputError(f"cannot add a vector at site {self.site!r}; choose one of {ADDITION_SITES}")
        if self.positions not in POSITIONS:
            raise InputError(f"an addition acts at positions 'all' or 'last', got {self.positions!r}")
        object.__setattr__(self, "layers", tuple(int(l) for l in self.layers))
        object.__setattr__(self, self.unit, check_strength(self.strength, self.unit))
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.layers):
            raise InputError(f"{type(self).__name__} needs one vector per layer: vectors of shape "
                             f"[{len(self.layers)}, d_model], got {tuple(self.vectors.shape)}")

    def shifts(self, model: ChatModel) -> Float[Tensor, "layer d_model"]:
        """What is added at each layer, on the model's device and dtype."""
        raise NotImplementedError

    def first_layer(self, model: ChatModel) -> int:
        return min(self.layers)

    def _vectors(self, model: ChatModel) -> Tensor:
        if self.vectors.shape[-1] != model.d_model:
            raise InputError(f"the vectors of {self.describe()} have width {self.vectors.shape[-1]}, but {model.name} "
                             f"has a residual width of {model.d_model}; were they made on another model?")
        return self.vectors

    def build(self, model: ChatModel) -> Build:
        check_layers(model, self.layers)
        shift, last, zero = self.shifts(model), self.positions == "last", self.strength == 0.0
        out = []
        for i, l in enumerate(self.layers):
            def add(act, s=shift[i]):
                if zero:
                    return None
                if last:
                    new = act.clone()
                    new[:, -1] += s.to(act.device)
                    return new
                return act + s.to(act.device)
            out.append((act_name(self.site, l), add))
        return out

    @classmethod
    def stacked_hooks(cls, model: ChatModel, entries: list, n_rows: int) -> list[FwdHook]:
        # one per-row shift [row, d_model] per hook (zero on the rows of other replicas)
        table: dict[tuple[str, bool], Tensor] = {}
        for op, rows in entries:
            op.check_model(model)
            check_layers(model, op.layers)
            shift = op.shifts(model)
            for i, l in enumerate(op.layers):
                key = (act_name(op.site, l), op.positions == "last")
                if key not in table:
                    table[key] = torch.zeros(n_rows, model.d_model, dtype=model.dtype, device=model.device)
                table[key][rows] = shift[i]

        def make(s: Tensor, last: bool):
            def hook(act, hook=None):
                if last:
                    new = act.clone()
                    new[:, -1] += s.to(act.device, act.dtype)
                    return new
                return act + s.to(act.dtype)[:, None, :].to(act.device)
            return hook

        return [(name, make(s, last)) for (name, last), s in table.items()]


@register
@dataclass(frozen=True, eq=False)
class AddToResidual(_Shift):
    """Add `factor * vectors[i]` to `site` of `layers[i]` (Arditi's activation addition: the
    vector at its natural size, a difference in means, so factor 1 moves the stream by the gap)."""

    site: str
    layers: tuple[int, ...]
    vectors: Float[Tensor, "layer d_model"]
    factor: float = 1.0
    positions: str = "all"
    unit: ClassVar[str] = "factor"
    noun: ClassVar[str] = "direction"

    def __post_init__(self) -> None:
        self._check()

    def shifts(self, model: ChatModel) -> Tensor:
        vec = torch.stack([check_direction(model, v, "direction") for v in self._vectors(model)])
        return self.factor * vec.to(model.device, model.dtype)

    def summary(self) -> str:
        return f"direction addition at {self.site} of layer(s) {list(self.layers)}, factor={self.factor:g}"


@register
@dataclass(frozen=True, eq=False)
class SteerResidual(_Shift):
    """Layer steering in the residual stream: add `sigmas * sigma[i] * units[i]` (a unit direction
    and the std of the training activations projected on it) to `site` of `layers[i]`."""

    site: str
    layers: tuple[int, ...]
    vectors: Float[Tensor, "layer d_model"]  # unit directions
    sigma: Float[Tensor, "layer"]
    sigmas: float = 1.0
    positions: str = "all"
    unit: ClassVar[str] = "sigmas"
    noun: ClassVar[str] = "layer steering (resid)"

    def __post_init__(self) -> None:
        self._check()

    def shifts(self, model: ChatModel) -> Tensor:
        return (self._vectors(model) * (self.sigmas * self.sigma)[..., None]).to(model.device, model.dtype)

    def summary(self) -> str:
        return f"layer steering (resid) of layers {list(self.layers)}, sigmas={self.sigmas:g}"


@register
@dataclass(frozen=True, eq=False)
class ShiftResidual(_Shift):
    """Add `norm_fraction * vectors[i]` to `site` of `layers[i]`, each vector a direction scaled to
    its layer's mean residual norm (Jailbreak Antidote: the strength is a fraction of the norm)."""

    site: str
    layers: tuple[int, ...]
    vectors: Float[Tensor, "layer d_model"]
    norm_fraction: float = 0.0
    positions: str = "last"
    unit: ClassVar[str] = "norm_fraction"
    noun: ClassVar[str] = "antidote"

    def __post_init__(self) -> None:
        self._check()

    def shifts(self, model: ChatModel) -> Tensor:
        return self.norm_fraction * self._vectors(model).to(model.device, model.dtype)

    def summary(self) -> str:
        return f"residual shift at {self.site} of layers {list(self.layers)}, norm_fraction={self.norm_fraction:g}"


@register
@dataclass(frozen=True, eq=False)
class ProjectOut(Op):
    """Arditi's directional ablation: project the unit direction of `vector` out of `sites` of
    `layers` (None: every layer), at every position."""

    vector: Float[Tensor, "d_model"]
    layers: tuple[int, ...] | None = None
    sites: tuple[str, ...] = PROJECTION_SITES
    guard: ClassVar[bool] = True
    noun: ClassVar[str] = "direction"

    def __post_init__(self) -> None:
        if self.vector.ndim != 1:
            raise InputError(f"a direction is one vector of the residual width, got shape {tuple(self.vector.shape)}")
        object.__setattr__(self, "sites", tuple(self.sites))
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(l) for l in self.layers))

    def first_layer(self, model: ChatModel) -> int:
        return min(check_layers(model, self.layers))

    def summary(self) -> str:
        return "directional ablation"

    def _names(self, model: ChatModel) -> list[str]:
        return [act_name(k, l) for l in check_layers(model, self.layers) for k in self.sites]

    def build(self, model: ChatModel) -> Build:
        r = check_direction(model, self.vector)
        r = r / r.norm()

        def ablate(act):
            u = r.to(act.device)  # a no-op on one device; a split model computes blocks elsewhere
            return act - (act @ u)[..., None] * u

        return [(name, ablate) for name in self._names(model)]

    @classmethod
    def stacked_hooks(cls, model: ChatModel, entries: list, n_rows: int) -> list[FwdHook]:
        # each row projects out its own unit direction (zero on the rows of other replicas)
        for op, _ in entries:
            op.check_model(model)
        V = torch.stack([check_direction(model, op.vector) for op, _ in entries]).to(model.device, model.dtype)
        U = V / V.norm(dim=-1, keepdim=True)
        table: dict[str, Tensor] = {}
        for i, (op, rows) in enumerate(entries):
            for name in op._names(model):
                if name not in table:
                    table[name] = torch.zeros(n_rows, model.d_model, dtype=model.dtype, device=model.device)
                table[name][rows] = U[i]

        def make(units: Tensor):
            def hook(act, hook=None):  # act: [row, pos, d_model]
                u = units.to(act.dtype)
                return act - einops.einsum(act, u, "r p d, r d -> r p")[..., None] * u[:, None, :]
            return hook

        return [(name, make(u)) for name, u in table.items()]
