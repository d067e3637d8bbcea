"""The refusal direction (Arditi et al. 2024): a difference-in-means fallback for when no probe
direction is at hand, and Arditi's selection among candidates.

Directional ablation and activation addition are `Intervention.ablate_direction(d)` and
`Intervention.add_direction(d, layer=None, alpha=1.0)` (interp.intervention); they accept a tensor
(plus a layer) or any object with `.vector` and `.layer` (a `probes` Direction, or the
`RefusalDirection` made here).

Arditi et al.'s recipe (their code): candidates are the difference in means of the block input
(`resid_pre`) between harmful and harmless prompts at each post-instruction position and layer;
the chosen one minimises harmful refusal under ablation, subject to addition making harmless
prompts refused, KL on harmless < 0.1 and layer below 80% of depth. Ablation projects the unit
direction out of every block input and attention/MLP output at every position; addition adds the
un-normalised difference in means (coefficient 1) to the block input of its layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from interp.capture import capture
from interp.errors import InputError
from interp.hooks import check_direction, check_layer
from interp.intervention import Intervention, direction_parts
from interp.model import ChatModel
from interp.steering._util import check_same_model, texts_of


@dataclass(frozen=True)
class RefusalDirection:
    """A residual-stream direction with the layer whose block input it was read from."""

    vector: Float[Tensor, "d_model"]
    layer: int
    model_name: str
    site: str = "resid_pre"
    position: str = "last"
    meta: dict | None = None
    model_fingerprint: str | None = None


def resolve_direction(model: ChatModel, direction, layer: int | None = None) -> tuple[Float[Tensor, "d_model"], int | None]:
    """(vector on the model's device, layer) from a tensor (+ layer) or a `.vector`/`.layer` object."""
    vec, own_layer, made_on = direction_parts(direction)
    check_same_model(model, made_on, "this direction")
    layer = own_layer if layer is None else layer
    vec = check_direction(model, vec)
    if layer is not None:
        layer = check_layer(model, int(layer) if isinstance(layer, (int, Tensor)) and not isinstance(layer, bool) else layer)
    return vec, layer


RESID_SITES = ("resid_pre", "resid_mid", "resid_post")


def _diff_means(model: ChatModel, harmful, harmless, sites: list[tuple[str, int]], position: str) -> dict[tuple[str, int], Tensor]:
    """Harmful-minus-harmless mean activation at each (site, layer), from one capture per set."""
    if position not in ("last", "post_instruction"):
        raise InputError(f"position must be 'last' or 'post_instruction', got {position!r}")
    for site, l in sites:
        if site not in RESID_SITES:
            raise InputError(f"site must be one of {RESID_SITES}, got {site!r}")
        check_layer(model, l)
    a = capture(model, texts_of(harmful, "harmful prompts"), sites, position)
    b = capture(model, texts_of(harmless, "harmless prompts"), sites, position)
    # mean over the kept positions of each prompt, then over prompts
    return {s: a[s].float().mean(1).mean(0) - b[s].float().mean(1).mean(0) for s in sites}


@torch.no_grad()
def refusal_direction(model: ChatModel, harmful, harmless, layer: int, position: str = "last",
                      site: str = "resid_pre") -> RefusalDirection:
    """Difference in means of `site` (default the block input) between harmful and harmless prompts
    at the last token (position="last") or averaged over the post-instruction tokens
    (position="post_instruction"); not normalised, so that addition with alpha=1 has the natural size.
    Addition puts it at the block input of `layer`."""
    vec = _diff_means(model, harmful, harmless, [(site, layer)], position)[(site, layer)]
    return RefusalDirection(vec, layer, model.name, site, position,
                            {"n_harmful": len(texts_of(harmful)), "n_harmless": len(texts_of(harmless))}, model.fingerprint)


@torch.no_grad()
def calibrate_direction(model: ChatModel, direction, harmful, harmless, layer: int | None = None) -> RefusalDirection:
    """Give a (possibly unit-norm, e.g. probe) direction the natural size for addition: its unit
    vector times the harmful-minus-harmless mean projection at its layer's block input, last token."""
    vec, layer = resolve_direction(model, direction, layer)
    if layer is None:
        raise InputError("calibrating a direction needs its layer: pass layer= or a direction with .layer")
    u = (vec / vec.norm()).float().cpu()
    dm = refusal_direction(model, harmful, harmless, layer).vector
    gap = float(dm @ u)
    if gap == 0.0:
        raise InputError("the direction is orthogonal to the harmful-harmless difference at its layer; it cannot be calibrated")
    return RefusalDirection(u * gap, layer, model.name, "resid_pre", "last", {"calibrated_from": type(direction).__name__},
                            model.fingerprint)


@torch.no_grad()
def select_refusal_direction(model: ChatModel, harmful, harmless, val_harmful, val_harmless, layers=None,
                             sites=("resid_pre", "resid_mid"), positions=("last", "post_instruction"),
                             max_depth: float = 0.8, max_kl: float = 0.1) -> tuple[RefusalDirection, list[dict]]:
    """Arditi et al.'s selection, on refusal scores. Candidates: difference in means at each
    (site, layer, position) with layer < max_depth * n_layers. Kept: those whose addition (alpha=1,
    at the block input of their layer) makes the validation harmless prompts lean to refuse (mean
    score > 0) and whose ablation moves harmless next-token distributions by KL < max_kl. Chosen:
    the kept candidate whose ablation leaves the validation harmful prompts with the lowest mean
    refusal score. `resid_mid` (the MLP input) is a candidate site beside Arditi's `resid_pre`
    because a shallow model can decide refusal inside one block (the organism does, in layer 0)."""
    from interp.scoring import last_logits
    from interp.steering.effect import scores_under

    if layers is None:
        layers = [l for l in range(model.n_layers) if l < max(1.0, max_depth * model.n_layers)]
    base_logp = last_logits(model, texts_of(val_harmless)).float().log_softmax(-1)
    rows, dirs = [], []
    for pos in positions:
        means = _diff_means(model, harmful, harmless, [(site, l) for site in sites for l in layers], pos)
        for (site, l), vec in means.items():
            d = RefusalDirection(vec, l, model.name, site, pos, None, model.fingerprint)
            if float(d.vector.norm()) < 1e-6:  # e.g. resid_pre of layer 0 at the last token: one embedding for all
                continue
            ablation = Intervention.ablate_direction(d)
            abl = float(scores_under(model, ablation, val_harmful).mean())
            add = float(scores_under(model, Intervention.add_direction(d), val_harmless).mean())
            with ablation.apply(model):
                logp = last_logits(model, texts_of(val_harmless)).float().log_softmax(-1)
            kl = float((base_logp.exp() * (base_logp - logp)).sum(-1).mean())
            rows.append({"site": site, "layer": l, "position": pos, "ablation_harmful_score": abl,
                         "addition_harmless_score": add, "ablation_harmless_kl": kl})
            dirs.append(d)
    if not rows:
        raise InputError(f"no usable candidate among layers {list(layers)}: the harmful and harmless means coincide there")
    ok = [i for i, r in enumerate(rows) if r["addition_harmless_score"] > 0 and r["ablation_harmless_kl"] < max_kl]
    ok = ok or [i for i, r in enumerate(rows) if r["addition_harmless_score"] > 0] or list(range(len(rows)))
    best = min(ok, key=lambda i: rows[i]["ablation_harmful_score"])
    return dirs[best], rows
