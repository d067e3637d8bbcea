"""The base of every operation: one frozen dataclass per kind of change (in the spirit of pyvene's
one class per intervention), with its own fields, its hooks, and a registry by class name so that
saved operations come back as the same class.

A subclass states its fields and implements `build(model)`: (hook name, function of the
activation) pairs, each function returning the new activation or None (no change). `hooks(model,
rows)` wraps them so that only the batch rows `rows` are changed (the replica axis of
`interp.intervention.Stack`). An operation with a strength mixes in `Strength` and names the field
after its unit (`sigmas`, `factor`, `norm_fraction`, `temperature`); only those have
`with_strength`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from typing import Callable, ClassVar, Mapping

import torch
from torch import Tensor

from interp.errors import InputError
from interp.hooks import FwdHook
from interp.model import ChatModel
from interp.intervention.checks import check_strength, on_rows, plain

OP_CLASSES: dict[str, type["Op"]] = {}  # class name -> class: what a saved file names


def register(cls: type["Op"]) -> type["Op"]:
    """Add an operation class to the registry `load` reads files with (its name is the key)."""
    if cls.__name__ in OP_CLASSES and OP_CLASSES[cls.__name__] is not cls:
        raise InputError(f"an operation class named {cls.__name__} is already registered")
    OP_CLASSES[cls.__name__] = cls
    return cls


Build = list[tuple[str, Callable[[Tensor], Tensor | None]]]


@dataclass(frozen=True, eq=False)
class Op:
    """One change to a model. `made_on`: the model it was made for (name / fingerprint; checked
    when its hooks are built); `label`: how errors name it (`{strength:g}` is filled in)."""

    guard: ClassVar[bool] = False  # add interp.hooks.overflow_guards (vectors of a chosen size)
    noun: ClassVar[str] = "intervention"  # what a model-mismatch error calls it ("this direction")
    made_on: Mapping | None = field(default=None, kw_only=True)
    label: str = field(default="", kw_only=True)

    # ------------------------------------------------------------ what a subclass provides
    def build(self, model: ChatModel) -> Build:
        raise NotImplementedError

    def first_layer(self, model: ChatModel) -> int:
        """The first block whose computation it changes (-1: before block 0, the embeddings)."""
        raise NotImplementedError

    def summary(self) -> str:
        return type(self).__name__

    # ------------------------------------------------------------ shared
    def hooks(self, model: ChatModel, rows: slice | None = None) -> list[FwdHook]:
        """(hook name, function) pairs doing this operation on `model`, on the batch rows `rows`
        only (None: every row)."""
        self.check_model(model)
        return [(name, on_rows(f, rows)) for name, f in self.build(model)]

    @classmethod
    def stacked_hooks(cls, model: ChatModel, entries: list[tuple["Op", slice]], n_rows: int) -> list[FwdHook]:
        """Hooks doing each `(op, rows)` of `entries` (all of this class, on disjoint rows of a
        batch of `n_rows`). Classes whose operations merge into one per-row hook override this."""
        return [h for op, rows in entries for h in op.hooks(model, rows)]

    def check_model(self, model: ChatModel) -> None:
        if self.made_on is not None:
            from interp.fingerprint import check_made_on

            made_on = self.made_on
            check_made_on(model, {"model": made_on} if isinstance(made_on, str) else dict(made_on), f"this {self.noun}")

    def describe(self) -> str:
        if self.label:
            return self.label.format(strength=getattr(self, "strength", None))
        return self.summary()

    # ------------------------------------------------------------ equality and records
    def record(self) -> tuple[dict, dict[str, Tensor]]:
        """(JSON fields, tensors) of this operation, as `interp.intervention.files` writes them."""
        fields, tensors = {}, {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Tensor):
                tensors[f.name] = v
            else:
                fields[f.name] = plain(_listed(v))
        return fields, tensors

    @classmethod
    def from_record(cls, fields: Mapping, tensors: Mapping[str, Tensor]) -> "Op":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise InputError(f"{cls.__name__} has no field(s) {unknown}")
        return cls(**{k: _tupled(v) if k not in ("made_on",) else v for k, v in fields.items()}, **tensors)

    def __eq__(self, other) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        (a, ta), (b, tb) = self.record(), other.record()
        return a == b and ta.keys() == tb.keys() and all(
            ta[k].dtype == tb[k].dtype and torch.equal(ta[k], tb[k]) for k in ta)

    __hash__ = None  # holds tensors


class Strength:
    """Mixed into an operation with a strength. `unit` names the field holding it."""

    unit: ClassVar[str]

    @property
    def strength(self) -> float:
        return getattr(self, self.unit)

    def with_strength(self, value: float) -> "Op":
        """The same operation at strength `value` (in its unit); nothing is mutated."""
        return replace(self, **{self.unit: check_strength(value, self.unit)})

    def scaled(self, factor: float) -> "Op":
        """The same operation at `factor` times its strength."""
        return self.with_strength(check_strength(factor, "factor") * self.strength)


def _listed(x):
    if isinstance(x, (tuple, list)):
        return [_listed(v) for v in x]
    return x


def _tupled(x):
    if isinstance(x, list):
        return tuple(_tupled(v) for v in x)
    return x
