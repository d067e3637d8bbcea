"""Jailbreak Antidote (Shen et al. 2024): sparse, runtime-adjustable safety steering.

Per layer, a safety direction is read from the last-token block outputs (`hook_resid_post`) of
harmful and harmless prompts: the first principal component of the paired differences (or the
difference in means when the prompts are not paired). Layers are kept by how well the projection
on their direction separates harmful from harmless (the paper keeps the top ~90%), and only the
top k% coordinates of |direction| are used (the paper's grid: 1, 2.5, 5, 10, 25%; 5% is its
default). At run time `h <- h + norm_fraction * scale * (mask * direction)` at the block output of
each kept layer, at the last position only: in the prompt pass that is the last prompt token, and
with the key/value cache every generation step sees only its own (last) position. The strength is
a plain number read at call time: `antidote.intervention(0.3).with_strength(0.1)` changes it with no refit.

Units: the paper (its alpha) notes that the strength's useful range follows the model's residual
norm. Here the unit direction of each layer is scaled by that layer's mean last-token residual norm
(`scale`), so the strength, `norm_fraction`, is a fraction of the residual norm and the same grid
serves any model. Sign: + raises refusal; the
geometric sign (harmful minus harmless) is checked behaviourally at fit time and flipped if adding
it lowers refusal of the training harmless prompts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp.capture import capture
from interp.errors import InputError
from interp.hooknames import require_site_kinds
from interp.intervention import Intervention, ShiftResidual
from interp.model import ChatModel
from interp.steering._util import texts_of
from probes import fit

SPARSITY_GRID = (0.01, 0.025, 0.05, 0.10, 0.25)  # the paper's grid of kept fractions


@dataclass(frozen=True)
class AntidoteConfig:
    """Jailbreak Antidote defaults from the paper: 5% of coordinates, top ~90% of layers."""

    sparsity: float = 0.05
    keep_layers: float = 0.9
    norm_fraction: float = 0.0  # the strength: a fraction of each layer's mean residual norm


def _check_sparsity(s: float) -> float:
    s = float(s)
    if not (0.0 < s <= 1.0) or math.isnan(s):
        raise InputError(f"sparsity must be in (0, 1] (the fraction of coordinates kept, e.g. 0.05), got {s}")
    return s


def _top_mask(u: Float[Tensor, "layer d_model"], sparsity: float) -> Bool[Tensor, "layer d_model"]:
    k = max(1, math.ceil(sparsity * u.shape[-1] - 1e-9))
    idx = u.abs().topk(k, dim=-1).indices
    return torch.zeros_like(u, dtype=torch.bool).scatter_(-1, idx, True)


@dataclass(frozen=True)
class Antidote:
    """Fitted safety directions (build with `fit_antidote`). It holds no strength: `intervention(norm_fraction)`
    returns the `Intervention` adding `norm_fraction * scale * (mask * direction)` at the last position of
    each kept layer's block output; `with_strength` on that value changes the strength, no refit."""

    directions: Float[Tensor, "layer d_model"]  # unit, dense; + raises refusal
    scale: Float[Tensor, "layer"]  # mean last-token residual norm per layer (the strength's unit)
    separation: Float[Tensor, "layer"]  # AUROC of the projection, harmful vs harmless
    layers: list[int]  # kept layers
    sparsity: float
    model_name: str
    paired: bool
    model_fingerprint: str | None = None
    mask: Bool[Tensor, "layer d_model"] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sparsity", _check_sparsity(self.sparsity))
        object.__setattr__(self, "mask", _top_mask(self.directions, self.sparsity))

    def with_sparsity(self, sparsity: float) -> "Antidote":
        """The same directions with another mask (no refitting); sparsity=1 is the dense adjustment."""
        return Antidote(self.directions, self.scale, self.separation, list(self.layers), sparsity, self.model_name,
                        self.paired, self.model_fingerprint)

    def vectors(self) -> Float[Tensor, "layer d_model"]:
        """`scale * (mask * direction)` per layer: the shift at norm_fraction=1."""
        return (self.directions * self.mask) * self.scale[:, None]

    def intervention(self, norm_fraction: float = AntidoteConfig.norm_fraction) -> Intervention:
        """The adjustment at `norm_fraction` of the residual norm (negative -> compliance)."""
        return Intervention.of(ShiftResidual(
            "resid_post", tuple(self.layers), self.vectors()[list(self.layers)], norm_fraction, "last",
            label=f"Jailbreak Antidote ({self.sparsity:g} sparsity), norm_fraction={{strength:g}}",
            made_on={"model": self.model_name, "model_fingerprint": self.model_fingerprint}))

    def describe(self) -> dict:
        return {"layers": list(self.layers), "sparsity": self.sparsity, "paired": self.paired,
                "n_coordinates": int(self.mask[0].sum()), "separation": [round(float(x), 4) for x in self.separation],
                "model": self.model_name, "model_fingerprint": self.model_fingerprint}


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
    require_site_kinds(model, ["resid_post"], "Jailbreak Antidote")  # every block output it may steer
    sites = [("resid_post", l) for l in cand]
    ah, ab = capture(model, h_texts, sites, "last", batch_size), capture(model, b_texts, sites, "last", batch_size)
    L, D = model.n_layers, model.d_model
    is_h = torch.arange(len(h_texts) + len(b_texts)) < len(h_texts)
    dirs, scale, sep = torch.zeros(L, D), torch.zeros(L), torch.full((L,), 0.5)
    for l in cand:
        xh, xb = ah[("resid_post", l)][:, -1].float(), ab[("resid_post", l)][:, -1].float()
        u = fit.first_pc(xh - xb) if paired else fit.unit(fit.mass_mean(torch.cat([xh, xb]), is_h))
        dirs[l] = u
        scale[l] = torch.cat([xh, xb]).norm(dim=-1).mean()
        sep[l] = fit.auroc(torch.cat([xh, xb]) @ u, is_h)
    n_keep = max(1, round(float(keep_layers) * len(cand)))
    kept = sorted(sorted(cand, key=lambda l: -float(sep[l]))[:n_keep])
    anti = Antidote(dirs, scale, sep, kept, sparsity, model.name, paired, model_fingerprint=model.fingerprint)
    if calibrate:
        anti = _calibrate_sign(model, anti, b_texts[:16])
    return anti


def _calibrate_sign(model: ChatModel, anti: Antidote, harmless_texts: list[str], norm_fraction: float = 0.25) -> Antidote:
    """The antidote with flipped directions if adding them (dense, a small strength) lowers refusal of
    harmless prompts, else the antidote itself."""
    from interp.steering.effect import EffectMeter

    meter = EffectMeter(model, harmless_texts)
    if meter(anti.with_sparsity(1.0).intervention(norm_fraction)) < 0:
        return replace(anti, directions=-anti.directions)
    return anti
