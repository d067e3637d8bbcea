"""Head-specific steering: ITI (Li et al. 2023) and HSI (head-specific intervention).

Both add `sigmas * sigma * u` to the output of chosen attention heads (`hook_z`, the input of the
output projection), where `u` is a unit direction per head that separates harmful from harmless
prompts at the last token and `sigma` is the standard deviation of the head's activations projected
on `u` over the training prompts. The shift is the same at every position, so it is correct under
the key/value cache (later generation steps see one position).

The strength is in sigmas (the papers' alpha). Defaults from the papers' code (see
`HeadSteeringConfig`): ITI steers the top K=48 heads at 15 sigmas on 7B models (mass-mean shift,
heads ranked by probe accuracy); HSI steers ~4 heads at ~35 sigmas,
choosing heads by steering each one alone and counting flipped answers. The organism defaults were
measured on held-out prompts (docs/steering.md); they are the organism's, not a default for other
models: `select_heads(by="steering")` takes the strength from its caller.

Sign convention: `u` points from the harmless mean to the harmful mean, so `sigmas > 0` raises
refusal and `sigmas < 0` lowers it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import einops
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp.capture import capture
from interp.errors import ArtifactError, InputError
from interp.hooknames import require_site_kinds, stream_after_attention
from interp.hooks import check_alpha
from interp.intervention import Intervention
from interp.model import ChatModel
from interp.steering._util import check_heads, check_k, check_same_model, refuse_side, texts_of
from probes import fit

Kind = Literal["mass_mean", "probe"]


@dataclass(frozen=True)
class HeadSteeringConfig:
    """How many heads to steer and how hard (`sigmas`: in units of each head's sigma)."""

    k: int
    sigmas: float
    kind: Kind = "mass_mean"
    source: str = ""


# Li et al. 2023 (ITI), LLaMA-7B: K=48 heads, alpha=15 (sigmas), mass-mean shift ("center of mass").
ITI_DEFAULTS = HeadSteeringConfig(k=48, sigmas=15.0, source="ITI (Li et al. 2023), LLaMA-7B")
# Head-specific intervention: a handful of heads (4) steered much harder (~35 sigmas) on 7B chat models.
HSI_DEFAULTS = HeadSteeringConfig(k=4, sigmas=35.0, source="HSI, 7B chat models")
# Measured on the organism (4 layers x 8 heads): the top 4 heads by single-head steering effect;
# 0.5 sigmas raise held-out jailbreak refusal while harmless refusal stays near 0 (docs/steering.md).
ORGANISM_DEFAULTS = HeadSteeringConfig(k=4, sigmas=0.5, source="measured on the organism (docs/steering.md)")


@dataclass(frozen=True)
class HeadDirections:
    """Per-head steering directions (and per-layer residual ones) fitted from one capture.

    `directions[l, h]` is a unit vector (zero where the head was not fitted), `sigma[l, h]` the std
    of the training activations projected on it, `auroc[l, h]` how well that projection separates
    the training labels (0.5: not at all). `resid`/`resid_sigma` are the same for the residual
    stream at `resid_site` of each layer: `resid_mid`, where the layer's head outputs have just been
    added, or `resid_post` on a model whose blocks run attention and MLP in parallel (no resid_mid);
    used by layer steering in mode "resid".
    """

    directions: Float[Tensor, "layer head d_head"]
    sigma: Float[Tensor, "layer head"]
    auroc: Float[Tensor, "layer head"]
    fitted: Bool[Tensor, "layer head"]
    resid: Float[Tensor, "layer d_model"]
    resid_sigma: Float[Tensor, "layer"]
    kind: str
    model_name: str
    n_train: int
    model_fingerprint: str | None = None
    allow_other_model: dict | None = None  # set when loaded onto another model with allow_other_model=True
    resid_site: str = "resid_mid"

    @property
    def made_on(self) -> dict:
        return {"model": self.model_name, "model_fingerprint": self.model_fingerprint,
                "allow_other_model": self.allow_other_model}

    @property
    def n_layers(self) -> int:
        return self.directions.shape[0]

    @property
    def n_heads(self) -> int:
        return self.directions.shape[1]

    def check(self, model: ChatModel) -> "HeadDirections":
        check_same_model(model, self.made_on, "these head directions")
        if tuple(self.directions.shape) != (model.n_layers, model.n_heads, model.d_head) or self.resid.shape[-1] != model.d_model:
            raise InputError(f"head directions of shape {tuple(self.directions.shape)} do not fit {model.name} "
                             f"({model.n_layers} layers x {model.n_heads} heads x d_head {model.d_head}); fit them on this model")
        require_site_kinds(model, [self.resid_site], "head directions' residual site")
        return self

    def top(self, k: int, by: str = "auroc") -> list[tuple[int, int]]:
        """The k fitted heads whose projection separates the training labels best (ITI's ranking)."""
        if by != "auroc":
            raise InputError(f"HeadDirections.top ranks by 'auroc' only (got {by!r}); use select_heads(..., by='steering') for HSI's ranking")
        n = int(self.fitted.sum())
        if not isinstance(k, int) or not 1 <= k <= n:
            raise InputError(f"K={k!r} must be between 1 and the number of fitted heads ({n})")
        score = torch.where(self.fitted, (self.auroc - 0.5).abs(), torch.full_like(self.auroc, -1.0))
        idx = score.flatten().argsort(descending=True, stable=True)[:k]
        return [(int(i) // self.n_heads, int(i) % self.n_heads) for i in idx]

    def shift(self, heads: Sequence[tuple[int, int]], sigmas: float) -> Float[Tensor, "layer head d_head"]:
        """The full shift `sigmas * sigma * u` for the chosen heads (zero elsewhere)."""
        mask = torch.zeros(self.n_layers, self.n_heads, dtype=torch.bool)
        for l, h in heads:
            if not self.fitted[l, h]:
                raise InputError(f"head ({l}, {h}) has no fitted direction; fit_head_directions(..., heads=...) must include it")
            mask[l, h] = True
        scale = torch.where(mask, sigmas * self.sigma, torch.zeros_like(self.sigma))
        return self.directions * scale[..., None]

    # ------------------------------------------------------------ artifacts
    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save_file
        from interp.provenance import provenance

        path = Path(path).with_suffix(".safetensors")
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: getattr(self, k).contiguous() for k in ("directions", "sigma", "auroc", "resid", "resid_sigma")}
        tensors["fitted"] = self.fitted.to(torch.uint8)
        save_file(tensors, str(path))
        meta = {"kind": self.kind, "model": self.model_name, "model_fingerprint": self.model_fingerprint,
                "n_train": self.n_train, "site": "z", "resid_site": self.resid_site, "positions": "last", **provenance()}
        if self.allow_other_model:
            meta["allow_other_model"] = self.allow_other_model
        path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path, model: ChatModel | None = None, allow_other_model: bool = False) -> "HeadDirections":
        """Load saved directions; with `model`, refuse ones fitted on another model (fingerprint)
        unless `allow_other_model=True`, which is recorded. Steering checks again on use."""
        from safetensors.torch import load_file

        path = Path(path).with_suffix(".safetensors")
        if not path.exists() or not path.with_suffix(".json").exists():
            raise ArtifactError(f"{path} (and its .json sidecar) not found; save HeadDirections with .save(path) first")
        t = load_file(str(path))
        meta = json.loads(path.with_suffix(".json").read_text())
        override = meta.get("allow_other_model")
        if model is not None:
            from interp.fingerprint import check_made_on

            override = check_made_on(model, meta, f"the head directions at {path}", allow_other_model,
                                     require_fingerprint=True) or override
        out = cls(t["directions"], t["sigma"], t["auroc"], t["fitted"].bool(), t["resid"], t["resid_sigma"],
                  meta["kind"], meta["model"], int(meta["n_train"]), meta.get("model_fingerprint"), override,
                  meta.get("resid_site", "resid_mid"))
        return out.check(model) if model is not None else out


# ---------------------------------------------------------------- fitting
def fit_head_directions(model: ChatModel, prompts, labels=None, heads=None, kind: Kind = "mass_mean",
                        batch_size: int = 32) -> HeadDirections:
    """Fit a unit direction and sigma per head from last-token `hook_z` activations.

    `labels`: one per prompt, "harmful"/"refuse" (or True) for the refusal side; taken from the
    PromptSet when omitted. `heads`: fit only these (layer, head) pairs (default: all). `kind`:
    "mass_mean" (ITI's center-of-mass shift, the default) or "probe" (logistic-regression weight).
    """
    if kind not in ("mass_mean", "probe"):
        raise InputError(f"kind must be 'mass_mean' or 'probe', got {kind!r}")
    texts = texts_of(prompts, "training prompts")
    y = refuse_side(prompts, labels)
    wanted = check_heads(model, heads) if heads is not None else [(l, h) for l in range(model.n_layers) for h in range(model.n_heads)]
    layers = sorted({l for l, _ in wanted})
    site = stream_after_attention(model)
    acts = capture(model, texts, [("z", l) for l in layers] + [(site, l) for l in layers], "last", batch_size)
    L, H, D = model.n_layers, model.n_heads, model.d_head
    dirs, sigma, auroc = torch.zeros(L, H, D), torch.zeros(L, H), torch.full((L, H), 0.5)
    fitted = torch.zeros(L, H, dtype=torch.bool)
    resid, resid_sigma = torch.zeros(L, model.d_model), torch.zeros(L)
    for l in layers:
        z = acts[("z", l)][:, -1].float()  # [n, head, d_head]
        u = fit.unit(fit.mass_mean(z, y) if kind == "mass_mean" else fit.logistic(z, y))
        proj = einops.einsum(z, u, "n g d, g d -> n g")
        dirs[l], sigma[l], auroc[l] = u, proj.std(0), fit.auroc(proj, y)
        r = acts[(site, l)][:, -1].float()
        resid[l] = fit.unit(fit.mass_mean(r, y))
        resid_sigma[l] = (r @ resid[l]).std()
    for l, h in wanted:
        fitted[l, h] = True
    dirs = dirs * fitted[..., None]
    return HeadDirections(dirs, sigma * fitted, torch.where(fitted, auroc, torch.full_like(auroc, 0.5)), fitted,
                          resid, resid_sigma, kind, model.name, len(texts), model.fingerprint, resid_site=site)


# ---------------------------------------------------------------- steering
# Head steering is `interp.intervention.Intervention.steer_heads(head_dirs, heads, sigmas)`: one hook
# per touched layer adding the precomputed [head, d_head] shift to `hook_z` at every position.


# ---------------------------------------------------------------- choosing heads
@torch.no_grad()
def single_head_steering_effects(model: ChatModel, head_dirs: HeadDirections, prompts, sigmas: float,
                                 max_rows: int = 512) -> Float[Tensor, "layer head"]:
    """HSI's selection signal: the effect (interp.steering.effect: mean change of the refusal score)
    of steering each fitted head alone by `sigmas`. One stacked run per prompt batch (a replica per
    head, each resumed at its head's layer from a clean run's cached block inputs)."""
    from interp.hooks import check_finite
    from interp.progress import in_scope, pass_bar, silenced
    from interp.runner import RESUME_PROMPTS, cache_block_inputs, prompt_batches, run
    from interp.scoring import refusal_log_odds

    sigmas = check_alpha(sigmas, "sigmas")
    head_dirs.check(model)
    texts = texts_of(prompts, "effect prompts")
    heads = [(int(l), int(h)) for l, h in zip(*torch.nonzero(head_dirs.fitted, as_tuple=True))]
    stack = Intervention.stack([Intervention.steer_heads(head_dirs, [p], sigmas) for p in heads])
    change = torch.zeros(len(heads))
    batches = list(prompt_batches(model, texts, max_rows, max_prompts=RESUME_PROMPTS))
    with silenced(not in_scope()):  # inside a study's stage: a bar over the heads when it takes seconds
        bar = pass_bar(len(heads) * len(batches), "single-head effects", "head", quiet_short=True)
    for idx, b, _ in batches:
        cached = cache_block_inputs(model, b, min(l for l, _ in heads))
        base = refusal_log_odds(model, cached.logits).cpu()
        s = run(model, cached, stack, read=lambda logits: refusal_log_odds(model, logits).cpu(), from_layer="auto",
                max_rows=max_rows, progress=bar.update)
        change += (check_finite(s, "refusal scores").view(len(heads), len(idx)) - base).sum(1)
    bar.close()
    out = torch.full((model.n_layers, model.n_heads), float("nan"))
    for (l, h), c in zip(heads, (change / len(texts)).tolist()):
        out[l, h] = c
    return out


def select_heads(model: ChatModel, head_dirs: HeadDirections, k: int, prompts=None, sigmas: float | None = None,
                 by: str = "steering") -> list[tuple[int, int]]:
    """The K heads to steer: by="steering" (HSI: largest single-head effect toward refusal on
    `prompts` when steered by `sigmas`, required: a strength in sigmas that suits this model, e.g.
    one calibrated with `interp.steering.tradeoff.max_safe_strength`; toy-model values do not carry
    over) or by="auroc" (ITI: best-separating projection on the training set)."""
    check_k(model, k)
    if by == "auroc":
        return head_dirs.top(k)
    if by != "steering":
        raise InputError(f"by must be 'steering' or 'auroc', got {by!r}")
    if prompts is None:
        raise InputError("select_heads(by='steering') needs prompts to measure single-head effects on")
    if sigmas is None:
        raise InputError("select_heads(by='steering') needs sigmas=, the steering strength in sigmas of each head "
                         "(calibrate it on this model, e.g. with interp.steering.tradeoff.max_safe_strength)")
    eff = single_head_steering_effects(model, head_dirs, prompts, sigmas)
    n = int(head_dirs.fitted.sum())
    if k > n:
        raise InputError(f"K={k} is larger than the number of fitted heads ({n})")
    score = torch.nan_to_num(eff * (1.0 if sigmas >= 0 else -1.0), nan=-float("inf"))
    idx = score.flatten().argsort(descending=True, stable=True)[:k]
    return [(int(i) // model.n_heads, int(i) % model.n_heads) for i in idx]
