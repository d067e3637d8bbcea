"""One value for every change the toolkit makes to a model: `Intervention` says *where* (hook kinds,
layers, heads, positions) and *what* (an op and its tensors), and nothing else.

    iv = Intervention.steer_heads(head_dirs, heads, alpha=0.5)      # or .ablate_direction(d), .sharpen(0.5), ...
    with iv.apply(model):                                          # hooks exist only inside the block
        ...
    both = iv + Intervention.ablate_direction(d)                   # applies both (in this order)
    stronger = iv.with_alpha(1.0)                                  # a new value; nothing is mutated
    iv.save("out/hsi"); Intervention.load("out/hsi")               # intervention.json + intervention.safetensors

Ops (each a plain function of the activation, as pyvene's interventions and steering-vectors'
`patch_activations`): `add` (shift = alpha * scale * vector, at every position or the last),
`project_out` (remove a unit direction), `ablate` (replace head outputs by zeros, a reference mean,
resampled reference outputs or given values), `patch` (replace by source values), `scale` (multiply
by alpha) and `temperature` (divide attention scores by T before the softmax). `Intervention.none()`
is the unmodified model. The arithmetic of each op is the one its method always used (same float
operations, in the same order), so results do not change with this representation.
"""

from __future__ import annotations

import json
import numbers
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import ArtifactError, InputError
from interp.hooknames import EMBED, HOOK_TEMPLATES, act_name
from interp.hooks import FwdHook, check_alpha, check_direction, check_layer, hooked
from interp.model import ChatModel
from probes.artifacts import Direction

OPS = ("none", "compose", "add", "project_out", "ablate", "patch", "scale", "temperature", "weigh_tokens")
# hooks outside the blocks an intervention may change (kind -> hook name)
TOKEN_KINDS = {"embed": EMBED}
ABLATE_METHODS = ("zero", "mean", "resample", "values")
ADDITION_SITES = ("resid_pre", "resid_mid", "resid_post")
# Arditi et al.: the direction is projected out of every block input and attention / MLP output
PROJECTION_KINDS = ("resid_pre", "attn_out", "mlp_out")
# axis of the head index in each per-head activation kind
HEAD_AXIS = {"q": 2, "k": 2, "v": 2, "z": 2, "attn_scores": 1, "pattern": 1}
FILE_JSON, FILE_TENSORS = "intervention.json", "intervention.safetensors"


@dataclass(frozen=True, eq=False)
class Intervention:
    """Where and what to change in a model. Build with the constructors (`steer_heads`,
    `steer_layer`, `add_direction`, `ablate_direction`, `ablate_heads`, `patch`, `scale`, `sharpen`,
    `none`), combine with `+`, change strength with `with_alpha`/`scaled`.

    `kinds`: hook kinds (`interp.hooknames`); `layers`: None means every layer of the model it is
    applied to; `heads`: (layer, head) pairs, or head indices used in every chosen layer, None: all;
    `positions`: "all", "last" or explicit indices; `tensors`: the op's tensors (per chosen layer,
    in `layers` order); `params`: the op's settings; `label`: how errors name it (`{alpha:g}` is
    filled in); `guard`: add `interp.hooks.overflow_guards` (for vectors of a chosen size);
    `meta`: what it was made on (`made_on`: model name / fingerprint) and where it comes from;
    `parts`: the interventions of a composite (op "compose")."""

    op: str = "none"
    kinds: tuple[str, ...] = ()
    layers: tuple[int, ...] | None = ()
    heads: tuple | None = None
    positions: str | tuple[int, ...] = "all"
    alpha: float = 1.0
    tensors: Mapping[str, Tensor] = field(default_factory=dict)
    params: Mapping = field(default_factory=dict)
    label: str = ""
    guard: bool = False
    meta: Mapping = field(default_factory=dict)
    parts: tuple["Intervention", ...] = ()

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise InputError(f"unknown intervention op {self.op!r}; known: {OPS}")
        for k in self.kinds:
            if k not in HOOK_TEMPLATES and k not in TOKEN_KINDS:
                raise InputError(f"unknown activation kind {k!r}; known: {sorted(HOOK_TEMPLATES) + sorted(TOKEN_KINDS)}")
        object.__setattr__(self, "alpha", check_alpha(self.alpha))

    # ------------------------------------------------------------ composition and strength
    @classmethod
    def none(cls) -> "Intervention":
        """The identity: applying it leaves the model unmodified (no hooks at all)."""
        return cls()

    @property
    def leaves(self) -> tuple["Intervention", ...]:
        """The single-op interventions this one applies, in order (none: empty)."""
        if self.op == "compose":
            return tuple(p for part in self.parts for p in part.leaves)
        return () if self.op == "none" else (self,)

    def is_none(self) -> bool:
        return not self.leaves

    def __add__(self, other: "Intervention") -> "Intervention":
        if not isinstance(other, Intervention):
            return NotImplemented
        leaves = self.leaves + other.leaves
        if len(leaves) <= 1:
            return leaves[0] if leaves else Intervention.none()
        return Intervention(op="compose", parts=leaves)

    def with_alpha(self, alpha: float) -> "Intervention":
        """The same intervention at strength `alpha` (every part of a composite)."""
        alpha = check_alpha(alpha)
        if self.op == "compose":
            return replace(self, parts=tuple(p.with_alpha(alpha) for p in self.parts))
        return self if self.op == "none" else replace(self, alpha=alpha)

    def scaled(self, factor: float) -> "Intervention":
        """The same intervention at `factor` times its strength."""
        factor = check_alpha(factor, "factor")
        if self.op == "compose":
            return replace(self, parts=tuple(p.scaled(factor) for p in self.parts))
        return self if self.op == "none" else replace(self, alpha=factor * self.alpha)

    def describe(self) -> str:
        """What it does, as named in error messages raised while it is active."""
        if self.is_none():
            return "no intervention"
        return " + ".join(leaf.label.format(alpha=leaf.alpha) or f"{leaf.op} on {leaf.kinds}" for leaf in self.leaves)

    # ------------------------------------------------------------ hooks
    def hooks(self, model: ChatModel) -> list[FwdHook]:
        """(hook name, function) pairs doing this intervention on `model` (validated against it)."""
        out: list[FwdHook] = []
        for leaf in self.leaves:
            _check_made_on(model, leaf)
            out += _BUILDERS[leaf.op](leaf, model)
        return out

    @contextmanager
    def apply(self, model: ChatModel) -> Iterator[ChatModel]:
        """Install the hooks for the duration of the block (forward passes and generation); they are
        removed on exit, also when the block raises. The identity installs nothing."""
        if self.is_none():
            yield model
            return
        with hooked(model, self.hooks(model), self.describe(), guard=any(l.guard for l in self.leaves)):
            yield model

    # ------------------------------------------------------------ equality and artifacts
    def _record(self) -> dict:
        return {"op": self.op, "kinds": list(self.kinds), "layers": None if self.layers is None else list(self.layers),
                "heads": _jsonable(self.heads), "positions": _jsonable(self.positions), "alpha": self.alpha,
                "params": _jsonable(dict(self.params)), "label": self.label, "guard": self.guard,
                "meta": _jsonable(dict(self.meta)), "tensors": sorted(self.tensors)}

    def __eq__(self, other) -> bool:
        if not isinstance(other, Intervention):
            return NotImplemented
        a, b = self.leaves, other.leaves
        return len(a) == len(b) and all(
            x._record() == y._record()
            and all(x.tensors[k].dtype == y.tensors[k].dtype and torch.equal(x.tensors[k], y.tensors[k]) for k in x.tensors)
            for x, y in zip(a, b))

    __hash__ = None  # holds tensors

    def save(self, directory: str | Path, model: ChatModel | None = None) -> Path:
        """Write `intervention.json` (ops, where, alpha, metadata) and `intervention.safetensors`
        (its tensors) into `directory`; `model` adds its name and fingerprint to the metadata."""
        from safetensors.torch import save_file
        from interp.provenance import provenance

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        parts, tensors = [], {}
        for i, leaf in enumerate(self.leaves):
            parts.append(leaf._record())
            for k, t in leaf.tensors.items():
                tensors[f"{i}.{k}"] = t.detach().cpu().clone().contiguous()  # parts may share storage
        meta = {"format": "safety-heads intervention", "version": 1, "parts": parts, **provenance()}
        if model is not None:
            meta["model"], meta["model_fingerprint"] = model.name, model.fingerprint
        save_file(tensors, str(d / FILE_TENSORS))
        (d / FILE_JSON).write_text(json.dumps(meta, indent=1))
        return d

    @classmethod
    def load(cls, directory: str | Path) -> "Intervention":
        """Reload what `save` wrote (equal to the saved intervention)."""
        from safetensors.torch import load_file

        d = Path(directory)
        if not (d / FILE_JSON).exists() or not (d / FILE_TENSORS).exists():
            raise ArtifactError(f"{d} holds no saved intervention ({FILE_JSON} and {FILE_TENSORS}); "
                                "write one with Intervention.save(directory)")
        meta = json.loads((d / FILE_JSON).read_text())
        t = load_file(str(d / FILE_TENSORS))
        out = cls.none()
        for i, r in enumerate(meta.get("parts", [])):
            out = out + cls(op=r["op"], kinds=tuple(r["kinds"]), layers=None if r["layers"] is None else tuple(r["layers"]),
                            heads=_tupled(r["heads"]), positions=_tupled(r["positions"]), alpha=r["alpha"],
                            tensors={k: t[f"{i}.{k}"] for k in r["tensors"]}, params=r["params"], label=r["label"],
                            guard=r["guard"], meta=r["meta"])
        return out

    # ------------------------------------------------------------ constructors
    @classmethod
    def add(cls, vectors: Float[Tensor, "layer ..."], kind: str, layers: Sequence[int], alpha: float = 1.0,
            positions: str = "all", scale: Tensor | None = None, mask: Tensor | None = None, label: str = "",
            guard: bool = True, meta: Mapping | None = None) -> "Intervention":
        """Add `alpha * scale * vectors[i]` to activation `kind` of `layers[i]` (at every position or
        the last). With `scale` the shift is computed as `vector * (alpha * scale)` (zero where `mask`
        is False), else as `alpha * vector`."""
        if positions not in ("all", "last"):
            raise InputError(f"an addition acts at positions 'all' or 'last', got {positions!r}")
        tensors = {"vector": vectors}
        if scale is not None:
            tensors["scale"] = scale
        if mask is not None:
            tensors["mask"] = mask
        return cls("add", (kind,), tuple(int(l) for l in layers), None, positions, alpha, tensors, {}, label, guard,
                   dict(meta or {}))

    @classmethod
    def steer_heads(cls, head_dirs, heads, alpha: float) -> "Intervention":
        """ITI / HSI: add `alpha * sigma * u` to each chosen head's output (`hook_z`) at every
        position. `head_dirs`: `interp.steering.HeadDirections`; `heads`: (layer, head) pairs."""
        alpha = check_alpha(alpha)
        pairs = _pairs(heads)
        shown = list(heads)[:4] if not isinstance(heads, Tensor) else pairs[:4]
        return cls._head_shift(head_dirs, pairs, alpha, f"head steering of {len(pairs)} head(s) {shown}, alpha={{alpha:g}}")

    @classmethod
    def _head_shift(cls, head_dirs, pairs, alpha, label) -> "Intervention":
        if not pairs:
            raise InputError("the head list is empty: pass at least one (layer, head) pair")
        L, H = head_dirs.n_layers, head_dirs.n_heads
        mask = torch.zeros(L, H, dtype=torch.bool)
        for l, h in pairs:
            if not (0 <= l < L and 0 <= h < H):
                raise InputError(f"head ({l}, {h}) does not exist: the head directions cover {L} layers x {H} heads")
            if not head_dirs.fitted[l, h]:
                raise InputError(f"head ({l}, {h}) has no fitted direction; fit_head_directions(..., heads=...) must include it")
            mask[l, h] = True
        layers = sorted({l for l, _ in pairs})
        return cls.add(head_dirs.directions[layers], "z", layers, alpha, scale=head_dirs.sigma[layers], mask=mask[layers],
                       label=label, meta={"made_on": _plain(head_dirs.made_on), "method": "head steering",
                                          "heads": [list(p) for p in pairs]})

    @classmethod
    def steer_layer(cls, head_dirs, layers, alpha: float, mode: str = "heads") -> "Intervention":
        """Steer whole layer(s) (an int or a list): every head (mode="heads": the head-steering shift
        on each) or the residual stream where the head outputs were added (mode="resid": `alpha * sigma
        * u` at the head directions' `resid_site`, resid_mid or, on a parallel block, resid_post)."""
        alpha = check_alpha(alpha)
        single = isinstance(layers, numbers.Integral)
        ls = [layers] if single else list(layers)
        for l in ls:
            if not isinstance(l, numbers.Integral) or not 0 <= l < head_dirs.n_layers:
                raise InputError(f"layer {l} does not exist: the head directions cover layers 0..{head_dirs.n_layers - 1}")
        which = f"layer {ls[0]}" if single else f"layers {ls}"
        label = f"layer steering ({mode}) of {which}, alpha={{alpha:g}}"
        if mode == "heads":
            return cls._head_shift(head_dirs, [(int(l), h) for l in ls for h in range(head_dirs.n_heads)], alpha, label)
        if mode != "resid":
            raise InputError(f"mode must be 'heads' or 'resid', got {mode!r}")
        for l in ls:
            if float(head_dirs.resid_sigma[l]) == 0.0:
                raise InputError(f"layer {l} has no fitted residual direction; fit_head_directions must include a head of that layer")
        site = getattr(head_dirs, "resid_site", "resid_mid")
        return cls.add(head_dirs.resid[ls], site, ls, alpha, scale=head_dirs.resid_sigma[ls], label=label,
                       meta={"made_on": _plain(head_dirs.made_on), "method": "layer steering (resid)"})

    @classmethod
    def add_direction(cls, direction, layer: int | None = None, alpha: float = 1.0, site: str = "resid_pre") -> "Intervention":
        """Arditi's activation addition: add `alpha * vector` (not normalised) to the residual stream
        of `layer` (default: the direction's own `.layer`) at `site`, at every position."""
        vec, own_layer, made_on = direction_parts(direction)
        layer = own_layer if layer is None else layer
        if layer is None:
            raise InputError("adding a direction needs a layer: pass layer= or a direction object with .layer")
        if isinstance(layer, bool) or not isinstance(layer, (numbers.Integral, Tensor)):
            raise InputError(f"layer {layer!r} does not exist: pass a layer index")
        layer = int(layer)
        alpha = check_alpha(alpha)
        if site not in ADDITION_SITES:
            raise InputError(f"cannot add a direction at site {site!r}; choose one of {ADDITION_SITES}")
        return cls.add(vec[None], site, [layer], alpha, label=f"direction addition at {site} of layer {layer}, alpha={{alpha:g}}",
                       meta={"made_on": made_on, "method": "direction addition", "check": "direction"})

    @classmethod
    def ablate_direction(cls, direction) -> "Intervention":
        """Arditi's directional ablation: project the unit direction out of every block input and
        every attention and MLP output, at every position."""
        vec, _, made_on = direction_parts(direction)
        return cls("project_out", PROJECTION_KINDS, None, None, "all", 1.0, {"vector": vec}, {}, "directional ablation",
                   True, {"made_on": made_on, "method": "directional ablation"})

    @classmethod
    def ablate_heads(cls, heads, method: str = "mean", reference=None, seed: int = 0, values: Tensor | None = None) -> "Intervention":
        """Replace each given head's `hook_z` at every position (position-free: holds under the KV
        cache). method "zero"; "mean": the mean of `reference` (a `HeadReference` or its
        [prompt, layer, head, d_head] activations); "resample": each batch row takes the output of a
        reference prompt drawn by a seeded permutation; "values": the given [layer, head, d_head]
        `values`. Build a reference from prompts with `interp.causal.head_reference`."""
        if method not in ABLATE_METHODS:
            raise InputError(f"unknown ablation method {method!r}; choose one of {ABLATE_METHODS}")
        pairs = _pairs(heads, strict=True)
        tensors: dict[str, Tensor] = {}
        if method in ("mean", "resample"):
            if reference is None:
                raise InputError(f"{method}-ablation replaces a head's output by its {'mean' if method == 'mean' else 'value'} "
                                 "over a reference set: pass reference= (balanced harmful + harmless prompts, e.g. the "
                                 "study's train split, so the mean carries no label; or a HeadReference), or use method='zero'")
            z = reference.z if hasattr(reference, "z") else reference
            if not isinstance(z, Tensor) or z.ndim != 4:
                raise InputError("reference must be a HeadReference (interp.causal.head_reference) or a tensor "
                                 "[prompt, layer, head, d_head] of head outputs")
            if z.shape[0] == 0:
                raise InputError("the reference activations hold no prompt: capture them on a non-empty reference set")
            tensors["values"] = z.mean(0) if method == "mean" else z
        elif method == "values":
            if not isinstance(values, Tensor) or values.ndim != 3:
                raise InputError("method='values' needs values= a tensor [layer, head, d_head]")
            tensors["values"] = values
        return cls("ablate", ("z",), tuple(sorted({l for l, _ in pairs})), tuple(pairs), "all", 1.0, tensors,
                   {"method": method, "seed": int(seed)}, f"{method}-ablation of heads {pairs[:4]}"
                   + (f" (+{len(pairs) - 4} more)" if len(pairs) > 4 else ""), False, {})

    @classmethod
    def patch(cls, kind: str, layer: int, values: Tensor, positions: str | Sequence[int] = "all",
              heads: Sequence[int] | None = None) -> "Intervention":
        """Replace activation `kind` of `layer` by source `values` (from another run), at `positions`
        ("all", "last" or indices; `values` holds those positions) and, for per-head kinds, only at
        `heads` (indices in that layer)."""
        pos = positions if isinstance(positions, str) else tuple(int(p) for p in positions)
        if isinstance(pos, str) and pos not in ("all", "last"):
            raise InputError(f"positions must be 'all', 'last' or a list of indices, got {positions!r}")
        if heads is not None and kind not in HEAD_AXIS:
            raise InputError(f"heads= needs a per-head kind ({sorted(HEAD_AXIS)}), got {kind!r}")
        return cls("patch", (kind,), (int(layer),), None if heads is None else tuple(int(h) for h in heads), pos, 1.0,
                   {"values": values}, {}, f"patching {kind} of layer {layer}", False, {})

    @classmethod
    def scale(cls, kind: str, layers: Sequence[int] | None, factor: float, heads: Sequence[int] | None = None) -> "Intervention":
        """Multiply activation `kind` of `layers` (None: all) by `factor` (the alpha), only at `heads`
        (indices in each layer) for per-head kinds when given."""
        if heads is not None and kind not in HEAD_AXIS:
            raise InputError(f"heads= needs a per-head kind ({sorted(HEAD_AXIS)}), got {kind!r}")
        return cls("scale", (kind,), None if layers is None else tuple(int(l) for l in layers),
                   None if heads is None else tuple(int(h) for h in heads), "all", factor, {}, {},
                   f"scaling {kind} by {{alpha:g}}", True, {})

    @classmethod
    def weigh_tokens(cls, weights: Float[Tensor, "batch pos"]) -> "Intervention":
        """Multiply each prompt token's embedding by its weight (Token Highlighter's soft removal:
        the highlighted tokens at beta < 1, the others at 1), for the batch the weights were made
        for: only on a pass of its padded length, so cached generation steps (one new token
        each) are left alone."""
        if not isinstance(weights, Tensor) or weights.ndim != 2:
            raise InputError("weights must be a tensor [batch, pos] (one weight per prompt token)")
        return cls("weigh_tokens", ("embed",), None, None, "all", 1.0, {"weights": weights}, {},
                   "token weighting of the embeddings", False, {})

    @classmethod
    def sharpen(cls, T: float, layers: Sequence[int] | None = None, heads=None) -> "Intervention":
        """Attention sharpening: every attention softmax of the chosen layers/heads runs at
        temperature T (scores divided by T). `layers`: indices (None: all); `heads`: head indices
        used in each chosen layer, or (layer, head) pairs, or None for all heads."""
        T = check_temperature(T)
        hs = None if heads is None else tuple(tuple(int(x) for x in h) if isinstance(h, (tuple, list)) else h for h in heads)
        return cls("temperature", ("attn_scores",), None if layers is None else tuple(layers), hs, "all", 1.0, {}, {"T": T},
                   f"attention sharpening at T={T:g}", False, {})


# ---------------------------------------------------------------- hook builders (one per op)
def _check_made_on(model: ChatModel, iv: Intervention) -> None:
    made_on = iv.meta.get("made_on")
    if made_on is not None:
        from interp.fingerprint import check_made_on

        check_made_on(model, {"model": made_on} if isinstance(made_on, str) else made_on,
                      "this direction" if "direction" in iv.meta.get("method", "") else f"this {iv.meta.get('method', 'intervention')}")


def _add_hooks(iv: Intervention, model: ChatModel) -> list[FwdHook]:
    kind, alpha = iv.kinds[0], iv.alpha
    layers = [check_layer(model, l) for l in iv.layers]
    vec = iv.tensors["vector"]
    if iv.meta.get("check") == "direction":
        vec = torch.stack([check_direction(model, v) for v in vec])
    want = (model.n_heads, model.d_head) if kind in HEAD_AXIS else (model.d_model,)
    if tuple(vec.shape[1:]) != want:
        raise InputError(f"the vectors of {iv.describe()} have shape {tuple(vec.shape[1:])}, but {kind} of {model.name} "
                         f"has {want}; were they made on another model?")
    dtype = model.dtype
    if "scale" in iv.tensors:
        scale = alpha * iv.tensors["scale"]
        if "mask" in iv.tensors:
            scale = torch.where(iv.tensors["mask"], scale, torch.zeros_like(scale))
        shift = (vec * scale[..., None]).to(model.device, dtype)
    else:
        shift = alpha * vec.to(model.device, dtype)
    last = iv.positions == "last"
    hooks = []
    for i, l in enumerate(layers):
        s = shift[i]  # broadcasts over batch and position

        def add(act, hook, s=s):
            if alpha == 0.0:
                return None
            if last:  # in the prompt pass the last prompt token; under the KV cache each step's own position
                new = act.clone()
                new[:, -1] += s.to(act.device)
                return new
            return act + s.to(act.device)

        hooks.append((act_name(kind, l), add))
    return hooks


def _project_out_hooks(iv: Intervention, model: ChatModel) -> list[FwdHook]:
    r = check_direction(model, iv.tensors["vector"])
    r = r / r.norm()

    def ablate(act, hook):
        u = r.to(act.device)  # a no-op on one device; a split model computes blocks elsewhere
        return act - (act @ u)[..., None] * u

    layers = range(model.n_layers) if iv.layers is None else [check_layer(model, l) for l in iv.layers]
    return [(act_name(k, l), ablate) for l in layers for k in iv.kinds]


def _ablate_hooks(iv: Intervention, model: ChatModel) -> list[FwdHook]:
    heads = check_heads(model, iv.heads)
    method, dtype = iv.params["method"], model.dtype
    if method in ("mean", "resample", "values"):
        v = iv.tensors["values"]
        want = (model.n_layers, model.n_heads, model.d_head)
        if tuple(v.shape[-3:]) != want:
            raise InputError(f"reference activations have shape {tuple(v.shape)}, expected [..., {want[0]}, {want[1]}, "
                             f"{want[2]}] for {model.name}; were they captured on another model?")
    if method == "zero":
        zero = torch.zeros(model.n_heads, model.d_head, dtype=dtype, device=model.device)
        values = lambda l: zero  # noqa: E731
    elif method in ("mean", "values"):
        table = iv.tensors["values"].to(model.device, dtype)
        values = lambda l: table[l]  # noqa: E731
    else:
        g = torch.Generator().manual_seed(iv.params.get("seed", 0))
        z = iv.tensors["values"]
        perm = torch.randperm(z.shape[0], generator=g)
        z = z.to(model.device, dtype)

        def values(l):
            # row r takes reference prompt perm[r mod n]: stable across generation steps (same rows)
            return lambda batch: z[perm[torch.arange(batch) % len(perm)], l][:, None]

    hooks = []
    for l in sorted({l for l, _ in heads}):
        mask = torch.zeros(1, model.n_heads, dtype=torch.bool)
        mask[0, [h for ll, h in heads if ll == l]] = True
        hooks.append((act_name("z", l), replace_heads_hook(mask, values(l))))
    return hooks


def replace_heads_hook(mask, values: Callable[[int], Tensor] | Tensor) -> Callable:
    """Hook for one layer's `hook_z`: where `mask` ([row, head] or [row, pos, head]) is set, take
    `values` (broadcasting against [batch, pos, head, d_head]; a callable gets the batch size)."""

    def hook(z, hook=None):
        v = values(z.shape[0]) if callable(values) else values
        m = mask.to(z.device)
        m = m[:, None, :, None] if m.ndim == 2 else m[..., None]
        return torch.where(m, v.to(z.dtype).to(z.device), z)

    return hook


def _index(iv: Intervention):
    return slice(None) if iv.positions == "all" else (-1 if iv.positions == "last" else list(iv.positions))


def _patch_hooks(iv: Intervention, model: ChatModel) -> list[FwdHook]:
    kind, l = iv.kinds[0], check_layer(model, iv.layers[0])
    src, pos = iv.tensors["values"], _index(iv)

    def patch(act, hook):
        new = act.clone()
        v = src.to(act.device, act.dtype)
        if iv.heads is None:
            new[:, pos] = v
        elif HEAD_AXIS[kind] == 2:
            new[:, pos, list(iv.heads)] = v
        else:
            new[:, list(iv.heads), pos] = v
        return new

    return [(act_name(kind, l), patch)]


def _scale_hooks(iv: Intervention, model: ChatModel) -> list[FwdHook]:
    kind, a = iv.kinds[0], iv.alpha
    layers = range(model.n_layers) if iv.layers is None else [check_layer(model, l) for l in iv.layers]

    def scale(act, hook):
        if iv.heads is None:
            return act * a
        new = act.clone()
        idx = [slice(None)] * HEAD_AXIS[kind] + [list(iv.heads)]
        new[tuple(idx)] *= a
        return new

    return [(act_name(kind, l), scale) for l in layers]


def check_temperature(T: float) -> float:
    try:
        T = float(T)
    except (TypeError, ValueError):
        raise InputError(f"temperature T must be a number, got {T!r}") from None
    if not T > 0 or T == float("inf"):
        raise InputError(f"temperature T must be a finite number > 0 (T < 1 sharpens, T = 1 is the identity), got {T}")
    return T


def _select(model: ChatModel, layers: Sequence[int] | None, heads) -> dict[int, list[int] | None]:
    """layer -> heads (None: all heads). `heads` is a list of head indices (applied in every chosen
    layer) or of (layer, head) pairs (which then also choose the layers)."""
    L, H = model.n_layers, model.n_heads
    if layers is not None:
        layers = list(layers)
        bad = [l for l in layers if not (isinstance(l, int) and 0 <= l < L)]
        if bad or not layers:
            raise InputError(f"layers {bad or '[]'} out of range: {model.name} has layers 0..{L - 1}")
    if heads is None:
        return {l: None for l in (layers if layers is not None else range(L))}
    heads = list(heads)
    if not heads:
        raise InputError("heads is empty: pass head indices, (layer, head) pairs, or None for all heads")
    if all(isinstance(h, (tuple, list)) for h in heads):
        out: dict[int, list[int]] = {}
        for l, h in heads:
            if not (0 <= int(l) < L and 0 <= int(h) < H):
                raise InputError(f"head ({l}, {h}) does not exist on {model.name} ({L} layers x {H} heads)")
            if layers is None or int(l) in layers:
                out.setdefault(int(l), []).append(int(h))
        if not out:
            raise InputError(f"none of the heads {heads} lies in the chosen layers {layers}")
        return out
    bad = [h for h in heads if not (isinstance(h, int) and 0 <= h < H)]
    if bad:
        raise InputError(f"heads {bad} out of range: {model.name} has heads 0..{H - 1} per layer")
    return {l: sorted(set(heads)) for l in (layers if layers is not None else range(L))}


def _temperature_hooks(iv: Intervention, model: ChatModel) -> list[FwdHook]:
    """`hook_attn_scores` hooks dividing the scores of the chosen heads by T (see
    interp.slipping.sharpen for why the result is clamped: masked entries stay finite)."""
    sel = _select(model, iv.layers, iv.heads)
    inv = 1.0 / check_temperature(iv.params["T"])
    hooks: list[FwdHook] = []
    for l, hs in sel.items():
        scale_cache: dict = {}

        def hook(scores: Float[Tensor, "batch head q k"], hook, hs=hs, scale_cache=scale_cache):
            key = (scores.dtype, scores.device, scores.shape[1])
            if key not in scale_cache:  # per-head factor, built once per dtype/device
                s = torch.ones(scores.shape[1], dtype=scores.dtype, device=scores.device)
                s[hs if hs is not None else slice(None)] = inv
                fi = torch.finfo(scores.dtype)
                scale_cache[key] = (s.view(1, -1, 1, 1), fi.min, fi.max)
            s, lo, hi = scale_cache[key]
            # out of place (the input may be needed by autograd), then clamp the overflowed masks back
            return (scores * s).clamp_(min=lo, max=hi)

        hooks.append((act_name("attn_scores", l), hook))
    return hooks


def _weigh_tokens_hooks(iv: Intervention, model: ChatModel) -> list[FwdHook]:
    w = iv.tensors["weights"]
    n_pos = w.shape[1]

    def weigh(embed, hook):
        if embed.shape[1] == n_pos:  # the prompt pass only; cached steps see one new token
            return embed * w[..., None].to(embed.dtype)
        return embed

    return [(TOKEN_KINDS["embed"], weigh)]


_BUILDERS = {"weigh_tokens": _weigh_tokens_hooks, "add": _add_hooks, "project_out": _project_out_hooks, "ablate": _ablate_hooks, "patch": _patch_hooks,
             "scale": _scale_hooks, "temperature": _temperature_hooks}


# ---------------------------------------------------------------- inputs
def check_heads(model: ChatModel, heads, what: str = "head set") -> list[tuple[int, int]]:
    """Validated, de-duplicated `[(layer, head), ...]` in the caller's order."""
    pairs = _pairs(heads, strict=True, what=what)
    for l, h in pairs:
        if not 0 <= l < model.n_layers:
            raise InputError(f"{what}: layer {l} of head ({l}, {h}) does not exist: {model.name} has layers "
                             f"0..{model.n_layers - 1}")
        if not 0 <= h < model.n_heads:
            raise InputError(f"{what}: head {h} of head ({l}, {h}) does not exist: {model.name} has heads "
                             f"0..{model.n_heads - 1} per layer")
    return pairs


def _pairs(heads, strict: bool = False, what: str = "head set") -> list[tuple[int, int]]:
    """(layer, head) pairs, de-duplicated in order; range checks need the model (`check_heads`)."""
    if heads is None:
        raise InputError("no heads given: pass a list of (layer, head) pairs")
    if isinstance(heads, Tensor):
        heads = heads.tolist()
    try:
        raw = list(heads)
    except TypeError:
        raise InputError(f"{what} must be a list of (layer, head) pairs, got {heads!r}") from None
    if not raw:
        raise InputError(f"{what} is empty: pass at least one (layer, head) pair, e.g. [(1, 3)]")
    out: list[tuple[int, int]] = []
    for item in raw:
        try:
            l, h = item
        except (TypeError, ValueError):
            raise InputError(f"{what}: {item!r} is not a (layer, head) pair") from None
        if strict and not all(isinstance(x, numbers.Integral) and not isinstance(x, bool) for x in (l, h)):
            raise InputError(f"{what}: ({l!r}, {h!r}) must hold integers")
        try:
            p = (int(l), int(h))
        except (TypeError, ValueError):
            raise InputError(f"{what}: {item!r} is not a (layer, head) pair of integers") from None
        if p not in out:
            out.append(p)
    return out


def direction_parts(direction) -> tuple[Tensor, int | None, dict | None]:
    """(vector, layer or None, what it records about its model) of a `probes.Direction` (the one
    direction type) or of a bare tensor of the residual width."""
    if isinstance(direction, Direction):
        vec, layer, made_on = direction.vector, direction.layer, made_on_of(direction)
    elif isinstance(direction, (Tensor, list, tuple)):
        vec, layer, made_on = direction, None, None
    else:
        raise InputError(f"a direction must be a probes.Direction or a tensor of size d_model, got {type(direction).__name__}")
    if not isinstance(vec, Tensor):
        try:
            vec = torch.as_tensor(vec)
        except (TypeError, ValueError, RuntimeError):
            raise InputError(f"a direction must be a tensor of numbers, got {type(vec).__name__}") from None
    if vec.ndim != 1:
        raise InputError(f"direction has shape {tuple(vec.shape)}, but a residual direction is one vector (it has "
                         "the residual width); was it made on another model?")
    return vec.detach(), layer, made_on


def made_on_of(direction: Direction) -> dict | None:
    """What a `Direction` records about its model (None for one built by hand without it)."""
    meta = direction.meta
    if isinstance(meta, dict) and isinstance(meta.get("model"), str):
        return _plain({k: meta.get(k) for k in ("model", "model_fingerprint", "allow_other_model") if k in meta})
    return None


def _plain(d):
    return None if d is None else json.loads(json.dumps(d, default=str))


def _jsonable(x):
    if isinstance(x, (tuple, list)):
        return [_jsonable(v) for v in x]
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    return x


def _tupled(x):
    if isinstance(x, list):
        return tuple(_tupled(v) for v in x)
    return x
