"""Operations on attention heads' outputs (`hook_z`, the input of the output projection, one slot
per query head also under grouped-query attention): steering, ablation, scaling. Heads are always
(layer, head) pairs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InputError
from interp.hooknames import act_name
from interp.hooks import FwdHook
from interp.model import ChatModel
from interp.intervention.checks import ABLATE_METHODS, HEAD_AXIS, by_layer, check_heads, check_strength, pairs
from interp.intervention.op import Build, Op, Strength, register


@register
@dataclass(frozen=True, eq=False)
class SteerHeads(Strength, Op):
    """ITI / HSI: add `sigmas * sigma[l, h] * units[l, h]` to each chosen head's output at every
    position (so it holds under the key/value cache). `units` and `sigma` cover the layers of
    `heads` in ascending order: a unit direction per head and the std of the training activations
    projected on it."""

    heads: tuple[tuple[int, int], ...]
    units: Float[Tensor, "layer head d_head"]
    sigma: Float[Tensor, "layer head"]
    sigmas: float = 1.0
    unit: ClassVar[str] = "sigmas"
    guard: ClassVar[bool] = True
    noun: ClassVar[str] = "head steering"

    def __post_init__(self) -> None:
        object.__setattr__(self, "heads", pairs(self.heads))
        object.__setattr__(self, "sigmas", check_strength(self.sigmas, "sigmas"))
        if self.units.ndim != 3 or self.units.shape[0] != len(self.layers) or tuple(self.sigma.shape) != tuple(self.units.shape[:2]):
            raise InputError(f"SteerHeads needs units [{len(self.layers)}, head, d_head] and sigma [{len(self.layers)}, head] "
                             f"for the layers {list(self.layers)}; got {tuple(self.units.shape)} and {tuple(self.sigma.shape)}")

    @property
    def layers(self) -> list[int]:
        return sorted({l for l, _ in self.heads})

    def first_layer(self, model: ChatModel) -> int:
        return self.layers[0]

    def summary(self) -> str:
        return f"head steering of {len(self.heads)} head(s) {[list(h) for h in self.heads[:4]]}, sigmas={self.sigmas:g}"

    def shifts(self, model: ChatModel) -> Float[Tensor, "layer head d_head"]:
        check_heads(model, self.heads)
        if tuple(self.units.shape[1:]) != (model.n_heads, model.d_head):
            raise InputError(f"the head directions of {self.describe()} have shape {tuple(self.units.shape[1:])}, but z of "
                             f"{model.name} has {(model.n_heads, model.d_head)}; were they made on another model?")
        mask = torch.zeros(self.sigma.shape, dtype=torch.bool)
        row = {l: i for i, l in enumerate(self.layers)}
        for l, h in self.heads:
            mask[row[l], h] = True
        scale = self.sigmas * self.sigma
        scale = torch.where(mask, scale, torch.zeros_like(scale))
        return (self.units * scale[..., None]).to(model.device, model.dtype)

    def build(self, model: ChatModel) -> Build:
        shift, zero = self.shifts(model), self.sigmas == 0.0

        def make(s):
            def add(act):  # s broadcasts over batch and position
                return None if zero else act + s.to(act.device)
            return add

        return [(act_name("z", l), make(shift[i])) for i, l in enumerate(self.layers)]

    @classmethod
    def stacked_hooks(cls, model: ChatModel, entries: list, n_rows: int) -> list[FwdHook]:
        # one per-row shift [row, head, d_head] per layer (zero on the rows of other replicas)
        table: dict[int, Tensor] = {}
        for op, rows in entries:
            op.check_model(model)
            shift = op.shifts(model)
            for i, l in enumerate(op.layers):
                if l not in table:
                    table[l] = torch.zeros(n_rows, model.n_heads, model.d_head, dtype=model.dtype, device=model.device)
                table[l][rows] = shift[i]

        def make(s: Tensor):
            def hook(act, hook=None):
                return act + s[:, None].to(act.device, act.dtype)
            return hook

        return [(act_name("z", l), make(s)) for l, s in table.items()]


@register
@dataclass(frozen=True, eq=False)
class AblateHeads(Op):
    """Replace each chosen head's output. `method`: "zero"; "mean" (`values`: a reference mean,
    [layer, head, d_head] applied at every position, or per position [slot, layer, head, d_head]);
    "values" (given `values` [layer, head, d_head]); "resample" (`values` [prompt, layer, head,
    d_head], or per position [prompt, slot, layer, head, d_head]: each batch row takes a reference
    prompt's outputs, drawn by a permutation seeded by `seed`).

    Per-position values have `window + 1` slots: slot k (k < window) holds the value at the k-th
    position from the end of a pass (0: the last), slot `window` the value for the positions before
    them. Under the key/value cache a generation step is a pass of one position, its last, so it
    takes slot 0: the ablation holds during cached generation. Position-free values hold everywhere."""

    heads: tuple[tuple[int, int], ...]
    method: str = "zero"
    values: Tensor | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "heads", pairs(self.heads, strict=True))
        if self.method not in ABLATE_METHODS:
            raise InputError(f"unknown ablation method {self.method!r}; choose one of {ABLATE_METHODS}")
        want = {"mean": (3, 4), "values": (3,), "resample": (4, 5)}.get(self.method)
        if want is not None and (not isinstance(self.values, Tensor) or self.values.ndim not in want):
            raise InputError(f"{self.method}-ablation needs values, a tensor of {' or '.join(map(str, want))} axes "
                             f"({'[layer, head, d_head]' if self.method != 'resample' else '[prompt, layer, head, d_head]'}"
                             f"{'' if self.method == 'values' else ', with a slot axis before layer when per position'})")
        if self.method == "resample" and self.values.shape[0] == 0:
            raise InputError("the reference activations hold no prompt: capture them on a non-empty reference set")
        object.__setattr__(self, "seed", int(self.seed))

    @property
    def per_position(self) -> bool:
        return self.values is not None and self.values.ndim == (5 if self.method == "resample" else 4)

    def first_layer(self, model: ChatModel) -> int:
        return min(l for l, _ in self.heads)

    def summary(self) -> str:
        return f"{self.method}-ablation{' (per position)' if self.per_position else ''} of heads " \
               f"{[tuple(h) for h in self.heads[:4]]}" + (f" (+{len(self.heads) - 4} more)" if len(self.heads) > 4 else "")

    def layer_values(self, model: ChatModel):
        """layer -> a function (batch size, positions) -> replacement values broadcasting over
        [batch, pos, head, d_head] (resample: row r takes reference prompt perm[r mod n])."""
        dtype = model.dtype
        if self.values is not None:
            want = (model.n_layers, model.n_heads, model.d_head)
            if tuple(self.values.shape[-3:]) != want:
                raise InputError(f"reference activations have shape {tuple(self.values.shape)}, expected [..., {want[0]}, "
                                 f"{want[1]}, {want[2]}] for {model.name}; were they captured on another model?")
        if self.method == "zero":
            zero = torch.zeros(model.n_heads, model.d_head, dtype=dtype, device=model.device)
            return lambda l: (lambda batch, n_pos: zero)
        table = self.values.to(model.device, dtype)
        per_pos = self.per_position
        if self.method in ("mean", "values"):
            if per_pos:  # [slot, layer, head, d_head] -> [pos, head, d_head]
                window = table.shape[0] - 1
                return lambda l: (lambda batch, n_pos: table[slot_index(n_pos, window, table.device), l])
            return lambda l: (lambda batch, n_pos: table[l])
        g = torch.Generator().manual_seed(self.seed)
        perm = torch.randperm(table.shape[0], generator=g).to(table.device)
        # row r takes reference prompt perm[r mod n]: stable across generation steps (same rows)
        if per_pos:
            window = table.shape[1] - 1
            return lambda l: (lambda batch, n_pos: table[perm[torch.arange(batch, device=table.device) % len(perm)]][
                :, slot_index(n_pos, window, table.device), l])
        return lambda l: (lambda batch, n_pos: table[perm[torch.arange(batch, device=table.device) % len(perm)], l][:, None])

    def build(self, model: ChatModel) -> Build:
        heads = check_heads(model, self.heads)
        values = self.layer_values(model)
        out = []
        for l, hs in by_layer(heads).items():
            mask = torch.zeros(model.n_heads, dtype=torch.bool)
            mask[hs] = True
            out.append((act_name("z", l), _replace(mask, values(l))))
        return out

    @classmethod
    def stacked_hooks(cls, model: ChatModel, entries: list, n_rows: int) -> list[FwdHook]:
        # per layer: which heads each row replaces, and the values of each row's replica
        masks: dict[int, Tensor] = {}
        vals: dict[int, list] = {}
        tables: dict[tuple, object] = {}  # one value table per distinct reference (shared by the replicas)
        for op, rows in entries:
            op.check_model(model)
            key = (op.method, id(op.values), op.seed)
            if key not in tables:
                tables[key] = (op.layer_values(model), op.method == "resample")
            values, by_row = tables[key]
            for l, hs in by_layer(check_heads(model, op.heads)).items():
                if l not in masks:
                    masks[l] = torch.zeros(n_rows, model.n_heads, dtype=torch.bool)
                    vals[l] = []
                masks[l][rows, hs] = True
                vals[l].append((rows, key, by_row, values(l)))
        out = []
        for l, m in masks.items():
            entries_l = vals[l]
            if len({key for _, key, _, _ in entries_l}) == 1 and not entries_l[0][2]:  # one table for every replica
                v = entries_l[0][3]  # [head, d_head] or per position [pos, head, d_head]: broadcasts over rows
            else:
                def v(batch, n_pos, entries_l=entries_l):
                    out_v = torch.zeros(n_rows, n_pos, model.n_heads, model.d_head, dtype=model.dtype, device=model.device)
                    for rows, _, _, fn in entries_l:
                        # resample: a row's reference follows its prompt, not its replica
                        out_v[rows] = fn(rows.stop - rows.start, n_pos)
                    return out_v
            out.append((act_name("z", l), _replace(m, v, per_row=True)))
        return out


def slot_index(n_pos: int, window: int, device=None) -> Tensor:
    """Slot of each position of a pass: its offset from the end inside the window, else `window`."""
    return (n_pos - 1 - torch.arange(n_pos, device=device)).clamp(max=window)


def _replace(mask, values, per_row: bool = False):
    """Where `mask` ([head], or [row, head] when `per_row`) is set, take `values(batch, n_pos)`
    (broadcasting against [batch, pos, head, d_head])."""

    def hook(z, hook=None):
        v = values(z.shape[0], z.shape[1])
        m = mask.to(z.device)
        m = m[:, None, :, None] if per_row else m[None, None, :, None]
        return torch.where(m, v.to(z.dtype).to(z.device), z)

    return hook


@register
@dataclass(frozen=True, eq=False)
class ScaleHeads(Strength, Op):
    """Multiply the chosen heads' activation `site` (a per-head kind; default their outputs,
    `hook_z`) by `factor`, at every position."""

    heads: tuple[tuple[int, int], ...]
    factor: float = 1.0
    site: str = "z"
    unit: ClassVar[str] = "factor"

    def __post_init__(self) -> None:
        object.__setattr__(self, "heads", pairs(self.heads, strict=True))
        object.__setattr__(self, "factor", check_strength(self.factor, "factor"))
        if self.site not in HEAD_AXIS:
            raise InputError(f"ScaleHeads acts on a per-head kind ({sorted(HEAD_AXIS)}), got {self.site!r}")

    def first_layer(self, model: ChatModel) -> int:
        return min(l for l, _ in self.heads)

    def summary(self) -> str:
        return f"scaling {self.site} of heads {[tuple(h) for h in self.heads[:4]]} by factor={self.factor:g}"

    def build(self, model: ChatModel) -> Build:
        a, axis = self.factor, HEAD_AXIS[self.site]

        def make(hs):
            def scale(act):
                new = act.clone()
                new[tuple([slice(None)] * axis + [hs])] *= a
                return new
            return scale

        return [(act_name(self.site, l), make(hs)) for l, hs in by_layer(check_heads(model, self.heads)).items()]
