"""Jailbreak Antidote (Shen et al. 2024): sparse, runtime-adjustable safety steering.

Per layer, a safety direction is read from the last-token block outputs (`hook_resid_post`) of
harmful and harmless prompts: the first principal component of the paired differences (or the
difference in means when the prompts are not paired). Layers are kept by how well the projection
on their direction separates harmful from harmless (the paper keeps the top ~90%), and only the
top k% coordinates of |direction| are used (the paper's grid: 1, 2.5, 5, 10, 25%; 5% is its
default). At run time `h <- h + alpha * (mask * direction)` at the block output of each kept layer,
at the last position only: in the prompt pass that is the last prompt token, and with the key/value
cache every generation step sees only its own (last) position. `alpha` is a plain number read at
call time, so it can be changed between (or during) calls with no recomputation.

Units: the paper notes that alpha's useful range follows the model's residual norm. Here the unit
direction of each layer is scaled by that layer's mean last-token residual norm, so alpha is a
fraction of the residual norm and the same grid serves any model. Sign: + raises refusal; the
geometric sign (harmful minus harmless) is checked behaviourally at fit time and flipped if adding
it lowers refusal of the training harmless prompts.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp.capture import capture
from interp.errors import InputError
from interp.hooks import FwdHook, check_alpha, hooked
from interp.model import ChatModel
from interp.steering._util import check_same_model, texts_of

SPARSITY_GRID = (0.01, 0.025, 0.05, 0.10, 0.25)  # the paper's grid of kept fractions


@dataclass(frozen=True)
class AntidoteConfig:
    """Jailbreak Antidote defaults from the paper: 5% of coordinates, top ~90% of layers."""

    sparsity: float = 0.05
    keep_layers: float = 0.9
    alpha: float = 0.0


def _check_sparsity(s: float) -> float:
    s = float(s)
    if not (0.0 < s <= 1.0) or math.isnan(s):
        raise InputError(f"sparsity must be in (0, 1] (the fraction of coordinates kept, e.g. 0.05), got {s}")
    return s


def _top_mask(u: Float[Tensor, "layer d_model"], sparsity: float) -> Bool[Tensor, "layer d_model"]:
    k = max(1, math.ceil(sparsity * u.shape[-1] - 1e-9))
    idx = u.abs().topk(k, dim=-1).indices
    return torch.zeros_like(u, dtype=torch.bool).scatter_(-1, idx, True)


@dataclass
class Antidote:
    """Fitted safety directions plus the current strength. Build with `fit_antidote`."""

    directions: Float[Tensor, "layer d_model"]  # unit, dense; + raises refusal
    scale: Float[Tensor, "layer"]  # mean last-token residual norm per layer (alpha's unit)
    separation: Float[Tensor, "layer"]  # AUROC of the projection, harmful vs harmless
    layers: list[int]  # kept layers
    sparsity: float
    model_name: str
    paired: bool
    alpha: float = 0.0
    model_fingerprint: str | None = None
    mask: Bool[Tensor, "layer d_model"] = field(init=False)
    _cache: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.sparsity = _check_sparsity(self.sparsity)
        self.mask = _top_mask(self.directions, self.sparsity)
        self.alpha = check_alpha(self.alpha)

    def set_alpha(self, alpha: float) -> "Antidote":
        """Change the strength; takes effect at the next hook call, also inside an active `apply`."""
        self.alpha = check_alpha(alpha)
        return self

    def with_sparsity(self, sparsity: float) -> "Antidote":
        """The same directions with another mask (no refitting); sparsity=1 is the dense adjustment."""
        return Antidote(self.directions, self.scale, self.separation, list(self.layers), sparsity, self.model_name,
                        self.paired, self.alpha, self.model_fingerprint)

    def vectors(self, device=None, dtype=None) -> Float[Tensor, "layer d_model"]:
        """`scale * (mask * direction)` per layer: the shift at alpha=1 (cached per device/dtype)."""
        key = (str(device), dtype)
        if key not in self._cache:
            v = (self.directions * self.mask) * self.scale[:, None]
            self._cache[key] = v.to(device=device, dtype=dtype) if device is not None else v
        return self._cache[key]

    def hooks(self, model: ChatModel) -> list[FwdHook]:
        check_same_model(model, {"model": self.model_name, "model_fingerprint": self.model_fingerprint}, "this antidote")
        if self.directions.shape != (model.n_layers, model.d_model):
            raise InputError(f"antidote directions {tuple(self.directions.shape)} do not fit {model.name} "
                             f"({model.n_layers} layers x d_model {model.d_model})")
        vecs = self.vectors(model.device, model.dtype)
        out = []
        for l in self.layers:
            v = vecs[l]

            def add_last(act, hook, v=v):
                a = self.alpha  # read at call time: set_alpha needs no re-install
                if a == 0.0:
                    return None
                new = act.clone()
                new[:, -1] += a * v.to(act.device)
                return new

            out.append((f"blocks.{l}.hook_resid_post", add_last))
        return out

    @contextmanager
    def apply(self, model: ChatModel, alpha: float | None = None) -> Iterator[ChatModel]:
        """Install the adjustment for the block (alpha: set first if given; negative -> compliance)."""
        if alpha is not None:
            self.set_alpha(alpha)
        with hooked(model, self.hooks(model), f"Jailbreak Antidote ({self.sparsity:g} sparsity), alpha={self.alpha:g}",
                    guard=True):
            yield model

    def describe(self) -> dict:
        return {"layers": list(self.layers), "sparsity": self.sparsity, "alpha": self.alpha, "paired": self.paired,
                "n_coordinates": int(self.mask[0].sum()), "separation": [round(float(x), 4) for x in self.separation],
                "model": self.model_name, "model_fingerprint": self.model_fingerprint}


def _first_pc(d: Float[Tensor, "n d_model"]) -> Float[Tensor, "d_model"]:
    # not centred: the paired differences share a large common shift (harm), and that shift is the
    # direction wanted; centring would remove it and keep only the pairs' spread.
    _, _, vh = torch.linalg.svd(d, full_matrices=False)
    u = vh[0]
    return u if float(u @ d.mean(0)) >= 0 else -u


def _auroc(pos: Tensor, neg: Tensor) -> float:
    return float((pos[:, None] > neg[None, :]).float().mean() + 0.5 * (pos[:, None] == neg[None, :]).float().mean())


@torch.no_grad()
def fit_antidote(model: ChatModel, harmful, harmless, layers=None, sparsity: float = AntidoteConfig.sparsity,
                 keep_layers: float = AntidoteConfig.keep_layers,
                 paired: bool | None = None, calibrate: bool = True, batch_size: int = 32) -> Antidote:
    """Fit per-layer safety directions from last-token `resid_post` of harmful vs harmless prompts.

    `paired`: harmful[i] and harmless[i] form a pair (default: when the sets have equal size), then
    the direction is the first principal component of the differences, else the difference in means.
    `keep_layers`: fraction of the candidate `layers` kept, best-separating first.
    """
    sparsity = _check_sparsity(sparsity)
    if not 0.0 < float(keep_layers) <= 1.0:
        raise InputError(f"keep_layers must be in (0, 1], got {keep_layers}")
    cand = list(range(model.n_layers)) if layers is None else [int(l) for l in layers]
    for l in cand:
        if not 0 <= l < model.n_layers:
            raise InputError(f"layer {l} does not exist: {model.name} has layers 0..{model.n_layers - 1}")
    if not cand:
        raise InputError("no layers given: pass layers=None (all) or a non-empty list")
    h_texts, b_texts = texts_of(harmful, "harmful prompts"), texts_of(harmless, "harmless prompts")
    paired = (len(h_texts) == len(b_texts)) if paired is None else paired
    if paired and len(h_texts) != len(b_texts):
        raise InputError(f"paired=True needs as many harmful as harmless prompts ({len(h_texts)} vs {len(b_texts)})")
    sites = [("resid_post", l) for l in cand]
    ah, ab = capture(model, h_texts, sites, "last", batch_size), capture(model, b_texts, sites, "last", batch_size)
    L, D = model.n_layers, model.d_model
    dirs, scale, sep = torch.zeros(L, D), torch.zeros(L), torch.full((L,), 0.5)
    for l in cand:
        xh, xb = ah[("resid_post", l)][:, -1].float(), ab[("resid_post", l)][:, -1].float()
        if paired:
            u = _first_pc(xh - xb)
        else:
            dm = xh.mean(0) - xb.mean(0)
            u = dm / dm.norm().clamp_min(1e-12)
        dirs[l] = u
        scale[l] = torch.cat([xh, xb]).norm(dim=-1).mean()
        sep[l] = _auroc(xh @ u, xb @ u)
    n_keep = max(1, round(float(keep_layers) * len(cand)))
    kept = sorted(sorted(cand, key=lambda l: -float(sep[l]))[:n_keep])
    anti = Antidote(dirs, scale, sep, kept, sparsity, model.name, paired, model_fingerprint=model.fingerprint)
    if calibrate:
        _calibrate_sign(model, anti, b_texts[:16])
    return anti


def _calibrate_sign(model: ChatModel, anti: Antidote, harmless_texts: list[str], alpha: float = 0.25) -> None:
    """Flip the directions if adding them (dense, small alpha) lowers refusal of harmless prompts."""
    from interp.steering.effect import EffectMeter

    meter = EffectMeter(model, harmless_texts)
    dense = anti.with_sparsity(1.0)
    if meter(lambda: dense.apply(model, alpha)) < 0:
        anti.directions.neg_()
        anti.mask = _top_mask(anti.directions, anti.sparsity)
        anti._cache.clear()
