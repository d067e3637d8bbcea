"""The fitting layer: every direction the toolkit reads from activations is one of these aggregators
over labelled samples, shared by the probes, head steering (ITI/HSI) and the Jailbreak Antidote.

    mass_mean(x, y)    difference in means, positive minus negative (ITI's shift, Arditi's candidate)
    logistic(x, y)     L2 logistic-regression weight per group (`probes.logistic`, scikit-learn's objective)
    first_pc(d)        first principal direction of paired differences, not centred (the Antidote)
    auroc(proj, y)     how well a projection separates the two classes (ties count 1/2)

`y` is a boolean tensor, True on the positive (refusal / harmful) side. Cross-validated versions
for many problems at once live in `probes.massmean` and `probes.logistic`; these are the single
fits on every sample that steering needs.
"""

from __future__ import annotations

import einops
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from probes.cv import auroc as _auroc_rows
from probes.logistic import LogisticConfig, fit_logistic


def mass_mean(x: Float[Tensor, "n *group d"], y: Bool[Tensor, "n"]) -> Float[Tensor, "*group d"]:
    """mean(positive) - mean(negative) over the first axis."""
    return x[y].mean(0) - x[~y].mean(0)


def logistic(x: Float[Tensor, "n group d"], y: Bool[Tensor, "n"], cfg: LogisticConfig = LogisticConfig()
             ) -> Float[Tensor, "group d"]:
    """One L2 logistic-regression probe per group on every sample (raw activation coordinates),
    oriented so that + points to the positive side, as the mass-mean does (an unregularised fit on
    separable data may otherwise come out with either sign after standardisation)."""
    fit = fit_logistic(einops.rearrange(x, "n g d -> g n d").contiguous(), y, cfg=cfg)
    w = fit.weight[:, 0]  # [group, d]: the only training set, every sample
    agree = einops.einsum(w, mass_mean(x, y), "g d, g d -> g") >= 0
    return torch.where(agree[:, None], w, -w)


def first_pc(d: Float[Tensor, "n d"]) -> Float[Tensor, "d"]:
    """Unit first right-singular vector of `d`, signed to agree with its mean. Not centred: paired
    differences share a large common shift (harm), and that shift is the direction wanted;
    centring would remove it and keep only the pairs' spread."""
    _, _, vh = torch.linalg.svd(d, full_matrices=False)
    u = vh[0]
    return u if float(u @ d.mean(0)) >= 0 else -u


def unit(v: Float[Tensor, "*batch d"]) -> Float[Tensor, "*batch d"]:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def auroc(proj: Float[Tensor, "n *group"], y: Bool[Tensor, "n"]) -> Float[Tensor, "*group"]:
    """AUROC of the projections `proj` (samples on the first axis) for positives `y`, per group."""
    flat = einops.rearrange(proj, "n ... -> (...) n")
    return _auroc_rows(flat, y).reshape(proj.shape[1:])
