"""`Intervention`: a tuple of operations (applied in order), and `Stack`: several interventions over
the same prompts in one batched pass (the replica axis)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from interp.errors import InputError
from interp.hooks import FwdHook, hooked
from interp.model import ChatModel
from interp.intervention.op import Op, Strength
from interp.intervention import build, files


def _constructor(make_op):
    """A classmethod building the one-operation Intervention of `make_op` (same arguments, same doc)."""

    def make(cls, *args, **kwargs) -> "Intervention":
        return cls.of(make_op(*args, **kwargs))

    make.__name__, make.__doc__ = make_op.__name__, make_op.__doc__
    return classmethod(make)


@dataclass(frozen=True, eq=False)
class Intervention:
    """Every change the toolkit makes to a model: a tuple of operations (`interp.intervention`'s
    op classes), applied in order. `+` concatenates; `apply(model)` installs the hooks for a
    `with` block and always removes them; `with_strength` sets the strength of the operations that
    have one; `save`/`load` write and read `intervention.json` + `intervention.safetensors`."""

    ops: tuple[Op, ...] = ()

    def __post_init__(self) -> None:
        ops = tuple(self.ops)
        bad = [o for o in ops if not isinstance(o, Op)]
        if bad:
            raise InputError(f"an Intervention holds operations (interp.intervention op classes), got {type(bad[0]).__name__}")
        object.__setattr__(self, "ops", ops)

    @classmethod
    def of(cls, *ops: Op) -> "Intervention":
        return cls(tuple(ops))

    @classmethod
    def none(cls) -> "Intervention":
        """The identity: applying it leaves the model unmodified (no hooks at all)."""
        return cls()

    def is_none(self) -> bool:
        return not self.ops

    def __iter__(self) -> Iterator[Op]:
        return iter(self.ops)

    def __len__(self) -> int:
        return len(self.ops)

    def __add__(self, other) -> "Intervention":
        if isinstance(other, Op):
            other = Intervention.of(other)
        if not isinstance(other, Intervention):
            return NotImplemented
        return Intervention(self.ops + other.ops)

    def __eq__(self, other) -> bool:
        if not isinstance(other, Intervention):
            return NotImplemented
        return len(self.ops) == len(other.ops) and all(a == b for a, b in zip(self.ops, other.ops))

    __hash__ = None  # holds tensors

    # ------------------------------------------------------------ strength
    def _strengths(self) -> list[Strength]:
        ops = [o for o in self.ops if isinstance(o, Strength)]
        if not ops:
            raise InputError(f"{self.describe()} has no strength to set (operations with one: head and residual "
                             "steering, additions, scaling, sharpening)")
        units = sorted({o.unit for o in ops})
        if len(units) > 1:
            raise InputError(f"the parts of {self.describe()} have strengths in different units ({', '.join(units)}); "
                             "set each part's strength on its own and add them")
        return ops

    @property
    def strength(self) -> float:
        """The strength of its operations (one value, in one unit)."""
        values = {o.strength for o in self._strengths()}
        if len(values) > 1:
            raise InputError(f"the parts of {self.describe()} have different strengths {sorted(values)}")
        return values.pop()

    @property
    def unit(self) -> str:
        return self._strengths()[0].unit

    def with_strength(self, value: float) -> "Intervention":
        """The same intervention with every operation that has a strength at `value` (its unit);
        nothing is mutated. The identity stays the identity."""
        if self.is_none():
            return self
        self._strengths()
        return Intervention(tuple(o.with_strength(value) if isinstance(o, Strength) else o for o in self.ops))

    def scaled(self, factor: float) -> "Intervention":
        """The same intervention at `factor` times each operation's strength."""
        if self.is_none():
            return self
        self._strengths()
        return Intervention(tuple(o.scaled(factor) if isinstance(o, Strength) else o for o in self.ops))

    # ------------------------------------------------------------ hooks
    def describe(self) -> str:
        """What it does, as named in error messages raised while it is active."""
        return " + ".join(o.describe() for o in self.ops) if self.ops else "no intervention"

    def first_layer(self, model: ChatModel) -> int:
        """The first block whose computation it changes (n_layers: none; -1: the embeddings)."""
        return min((o.first_layer(model) for o in self.ops), default=model.n_layers)

    def hooks(self, model: ChatModel, rows: slice | None = None) -> list[FwdHook]:
        """(hook name, function) pairs doing this intervention on `model` (validated against it),
        on the batch rows `rows` only (None: every row)."""
        return [h for o in self.ops for h in o.hooks(model, rows)]

    @contextmanager
    def apply(self, model: ChatModel) -> Iterator[ChatModel]:
        """Install the hooks for the duration of the block (forward passes and generation); they are
        removed on exit, also when the block raises. The identity installs nothing."""
        if self.is_none():
            yield model
            return
        with hooked(model, self.hooks(model), self.describe(), guard=any(o.guard for o in self.ops)):
            yield model

    @staticmethod
    def stack(interventions: Sequence["Intervention"]) -> "Stack":
        """`Stack` of several interventions over the same prompts: row r of a batch of n prompts
        tiled k times takes intervention r // n."""
        return Stack(tuple(interventions))

    # ------------------------------------------------------------ files
    def save(self, directory: str | Path, model: ChatModel | None = None) -> Path:
        """Write `intervention.json` (the operations' fields, provenance) and
        `intervention.safetensors` (their tensors); `model` adds its name and fingerprint."""
        return files.write(directory, self.ops, model)

    @classmethod
    def load(cls, directory: str | Path) -> "Intervention":
        """Reload what `save` wrote (equal to the saved intervention); files of the first format
        (one record per part with op/kinds/layers/heads/alpha/params) are converted on read."""
        return cls(tuple(files.read(directory)))

    # ------------------------------------------------------------ constructors (interp.intervention.build)
    steer_heads = _constructor(build.steer_heads)
    steer_layer = _constructor(build.steer_layer)
    add_direction = _constructor(build.add_direction)
    ablate_direction = _constructor(build.ablate_direction)
    ablate_heads = _constructor(build.ablate_heads)
    patch = _constructor(build.patch)
    scale_heads = _constructor(build.scale_heads)
    sharpen = _constructor(build.sharpen)
    weigh_tokens = _constructor(build.weigh_tokens)


@dataclass(frozen=True, eq=False)
class Stack:
    """Several interventions over the same n prompts in one batched pass: the batch is tiled once
    per intervention, and row r takes intervention r // n (its replica). Operations of one class
    at the same place in their interventions merge into one per-row hook."""

    configs: tuple[Intervention, ...]

    def __post_init__(self) -> None:
        configs = tuple(Intervention.none() if c is None else c for c in self.configs)
        if not configs:
            raise InputError("a stack needs at least one intervention (Intervention.none() is the unmodified model)")
        bad = [c for c in configs if not isinstance(c, Intervention)]
        if bad:
            raise InputError(f"a stack holds Interventions, got {type(bad[0]).__name__}")
        object.__setattr__(self, "configs", configs)

    def __len__(self) -> int:
        return len(self.configs)

    def __getitem__(self, i) -> "Stack | Intervention":
        return Stack(self.configs[i]) if isinstance(i, slice) else self.configs[i]

    def describe(self) -> str:
        shown = "; ".join(c.describe() for c in self.configs[:3])
        return f"a stack of {len(self)} interventions ({shown}{'; ...' if len(self) > 3 else ''})"

    def hooks(self, model: ChatModel, n: int) -> list[FwdHook]:
        """Hooks for a batch of n prompts tiled len(self) times."""
        groups: dict[tuple[int, type], list[tuple[Op, slice]]] = {}
        for c, iv in enumerate(self.configs):
            for j, op in enumerate(iv.ops):
                groups.setdefault((j, type(op)), []).append((op, slice(c * n, (c + 1) * n)))
        out: list[FwdHook] = []
        # the j-th operations of every replica before the (j+1)-th: each row sees its own in order
        for (j, cls), entries in sorted(groups.items(), key=lambda kv: kv[0][0]):
            out += cls.stacked_hooks(model, entries, n * len(self))
        return out

    @contextmanager
    def apply(self, model: ChatModel, n: int) -> Iterator[ChatModel]:
        """Install the hooks for a batch of n prompts tiled len(self) times; always removed."""
        hooks = self.hooks(model, n)
        if not hooks:
            yield model
            return
        guard = any(o.guard for c in self.configs for o in c.ops)
        with hooked(model, hooks, self.describe(), guard=guard):
            yield model
