"""Direct logit attribution: how much each head, MLP and the embedding write, directly, onto the
refusal-vs-compliance logit difference at the first response position; and the logit lens.

The refusal logit difference is `mean(logits[refusal tokens]) - mean(logits[compliance tokens])`
(`model.refusal_token_ids`, `model.compliance_token_ids`), i.e. the final residual, normalised,
projected on `d = mean(W_U[:, R]) - mean(W_U[:, C])`, plus `b_U[R].mean() - b_U[C].mean()`.

The final norm is the one non-linear step. We freeze it at the clean run: with `x` the last
residual, `s` its norm scale (the RMS for RMSNorm) and `w` the norm's weight, the normed residual
is `x * w / s`, which is linear in `x` once `s` is fixed, so each additive part `c` of `x`
(embedding, each head's `z @ W_O`, each MLP output) contributes `(c * w / s) . d`. These parts sum
to the actual logit difference minus the constant `b_U` term (`const`); anything the residual
holds beyond them (an attention output bias, a post-attention norm, numerical error) is reported
in `attn_rest` / `rest`, never dropped. For a LayerNorm final norm the parts are centred first
and its bias joins `const`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import einops
import torch
from jaxtyping import Float
from torch import Tensor

from interp.capture import LastPosition, capture_hooks
from interp.errors import InputError
from interp.hooknames import FINAL_NORM_IN, FINAL_NORM_OUT, LOGITS, act_name
from interp.model import ChatModel, texts
from interp.prompts import PromptSet


def _token_sets(model: ChatModel) -> tuple[list[int], list[int]]:
    if not model.refusal_token_ids or not model.compliance_token_ids:
        raise InputError(f"{model.name} has an empty refusal or compliance token set; load it with refusal_phrases= "
                         "and compliance_phrases= so the logit difference is defined")
    return list(model.refusal_token_ids), list(model.compliance_token_ids)


def unembed_direction(model: ChatModel) -> tuple[Float[Tensor, "d_model"], float]:
    """`d` (mean refusal unembedding column minus mean compliance column) and the `b_U` constant."""
    r, c = _token_sets(model)
    W_U = model.bridge.W_U.detach().float()  # [d_model, d_vocab]
    d = W_U[:, r].mean(1) - W_U[:, c].mean(1)
    b_U = getattr(model.bridge, "b_U", None)
    const = float(b_U[r].float().mean() - b_U[c].float().mean()) if b_U is not None else 0.0
    return d, const


def refusal_logit_diff(model: ChatModel, logits: Float[Tensor, "batch d_vocab"]) -> Float[Tensor, "batch"]:
    """Mean refusal-token logit minus mean compliance-token logit (linear in the normed residual)."""
    r, c = _token_sets(model)
    logits = logits.float()
    return logits[:, r].mean(-1) - logits[:, c].mean(-1)


def _final_norm(model: ChatModel) -> tuple[Tensor, Tensor | None, bool, torch.nn.Module]:
    """(effective weight, bias or None, centres?, module) of the final norm."""
    norm = model.bridge.ln_final
    orig = getattr(norm, "original_component", None) or norm
    if isinstance(orig, torch.nn.LayerNorm):
        w = orig.weight.detach().float() if orig.weight is not None else torch.ones(model.d_model)
        b = orig.bias.detach().float() if orig.bias is not None else None
        return w, b, True, orig
    # RMS-style norm: read its effective weight (also for `x * (1 + w)` variants) from a constant
    # input, whose RMS is exactly its value up to eps
    c = 1e3
    probe = torch.full((1, model.d_model), c, device=model.device, dtype=model.dtype)
    with torch.no_grad():
        w = orig(probe)[0].float()  # x / rms(x) = 1 for a constant x, so what is left is the weight
    return w.cpu(), None, False, orig


@dataclass(frozen=True)
class DLA:
    """Per prompt (rows in the caller's order) direct contributions to the refusal logit difference."""

    embed: Float[Tensor, "batch"]
    heads: Float[Tensor, "batch layer head"]
    mlps: Float[Tensor, "batch layer"]
    attn_rest: Float[Tensor, "batch layer"]  # attention output not made of per-head z @ W_O (bias, ...)
    rest: Float[Tensor, "batch"]  # residual not made of the parts above (should be ~0)
    const: float  # b_U term (+ final LayerNorm bias term)
    actual: Float[Tensor, "batch"]  # the logit difference the model computes
    labels: list[str] = field(default_factory=list)

    @property
    def total(self) -> Float[Tensor, "batch"]:
        return (self.embed + self.heads.sum((1, 2)) + self.mlps.sum(1) + self.attn_rest.sum(1) + self.rest + self.const)

    def _rows(self, label: str | None) -> Tensor:
        if label is None:
            return torch.ones(len(self.actual), dtype=torch.bool)
        rows = torch.tensor([y == label for y in self.labels], dtype=torch.bool)
        if not rows.any():
            raise InputError(f"no prompt labelled {label!r} in this attribution (labels: {sorted(set(self.labels))})")
        return rows

    def head_map(self, label: str | None = None) -> Float[Tensor, "layer head"]:
        """Mean per-head contribution over the prompts of `label` (all prompts for None)."""
        return self.heads[self._rows(label)].mean(0)

    def head_difference(self) -> Float[Tensor, "layer head"]:
        """Mean contribution on harmful minus on harmless prompts: what a head writes because of the
        label (a head that writes the same on both is a constant, not a detector)."""
        return self.head_map("harmful") - self.head_map("harmless")

    def summary(self, label: str | None = None) -> dict:
        rows = self._rows(label)
        return {"n": int(rows.sum()), "actual": float(self.actual[rows].mean()), "total": float(self.total[rows].mean()),
                "embed": float(self.embed[rows].mean()), "heads": float(self.heads[rows].sum((1, 2)).mean()),
                "mlps": self.mlps[rows].mean(0).tolist(), "attn_rest": float(self.attn_rest[rows].sum(1).mean()),
                "rest": float(self.rest[rows].mean()), "const": self.const,
                "max_abs_error": float((self.total[rows] - self.actual[rows]).abs().max())}


def _last_position_cache(model: ChatModel, texts: list[str], names: list[str], batch_size: int) -> dict[str, Tensor]:
    """Activations at the last prompt position (the first response position reads them) for every
    hook name, batched in the caller's order."""
    return capture_hooks(model, texts, {n: (n, LastPosition()) for n in names}, batch_size, sort=False)


def direct_logit_attribution(model: ChatModel, prompts, batch_size: int = 64) -> DLA:
    """Decompose the last-position residual into embedding, per-head and per-MLP parts and project
    each on the refusal-vs-compliance unembedding difference through the frozen final norm."""
    prompt_texts = texts(prompts)
    if not prompt_texts:
        raise InputError("direct logit attribution needs at least one prompt; the prompt list is empty")
    L = model.n_layers
    names = ([act_name("resid_pre", 0), FINAL_NORM_IN, FINAL_NORM_OUT, LOGITS]
             + [act_name(kind, l) for kind in ("z", "attn_out", "mlp_out") for l in range(L)])
    cache = _last_position_cache(model, prompt_texts, names, batch_size)
    d, const = unembed_direction(model)
    w, bias, centre, _ = _final_norm(model)
    x, out = cache[FINAL_NORM_IN], cache[FINAL_NORM_OUT]

    def centred(t):
        return t - t.mean(-1, keepdim=True) if centre else t

    # the frozen scale: the one scalar per prompt with out = centred(x) * w / s (+ bias)
    y = out - bias if bias is not None else out
    s = ((centred(x) * w) * y).sum(-1) / (y * y).sum(-1).clamp_min(1e-30)
    if bias is not None:
        const += float(bias @ d)
    proj = w * d  # [d_model]

    def contrib(t: Tensor) -> Tensor:  # [..., d_model] -> [...]; rows share the first axis with s
        return (centred(t) @ proj) / s.view(-1, *([1] * (t.ndim - 2)))

    W_O = model.bridge.W_O.detach().float().cpu()  # [layer, head, d_head, d_model]
    z = torch.stack([cache[act_name("z", l)] for l in range(L)], dim=1)  # [batch, layer, head, d_head]
    per_head = einops.einsum(z, W_O, "b l h e, l h e m -> b l h m")
    attn = torch.stack([cache[act_name("attn_out", l)] for l in range(L)], dim=1)
    mlp = torch.stack([cache[act_name("mlp_out", l)] for l in range(L)], dim=1)
    embed = cache[act_name("resid_pre", 0)]
    rest = x - embed - attn.sum(1) - mlp.sum(1)
    actual = refusal_logit_diff(model, cache[LOGITS])  # the model's own logits
    labels = prompts.labels if isinstance(prompts, PromptSet) else []
    return DLA(embed=contrib(embed), heads=contrib(per_head), mlps=contrib(mlp), attn_rest=contrib(attn - per_head.sum(2)),
               rest=contrib(rest), const=const, actual=actual, labels=labels)


def logit_lens(model: ChatModel, prompts, batch_size: int = 64) -> Float[Tensor, "batch layer"]:
    """Refusal-vs-compliance logit difference read from each layer's `resid_post` at the last
    position through the final norm (with that layer's own scale) and the unembedding."""
    prompt_texts = texts(prompts)
    if not prompt_texts:
        raise InputError("the logit lens needs at least one prompt; the prompt list is empty")
    names = [act_name("resid_post", l) for l in range(model.n_layers)]
    cache = _last_position_cache(model, prompt_texts, names, batch_size)
    d, const = unembed_direction(model)
    _, _, _, norm = _final_norm(model)
    resid = torch.stack([cache[n] for n in names], dim=1)  # [batch, layer, d_model]
    dtype = model.dtype
    with torch.no_grad():
        normed = norm(resid.to(model.device, dtype)).float().cpu()
    return normed @ d + const
