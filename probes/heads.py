"""Rank every attention head by how well its output (hook_z) separates the two classes.

ITI (Li et al. 2023) probes each head's `hook_z` at the last token with a logistic regression and
keeps the top K heads by validation accuracy. Here every head (x every captured position x every
fold) is one problem of a single batched fit, and each head also gets a mass-mean score.
"""

from __future__ import annotations

import re
from typing import Sequence

import torch
from einops import rearrange
from jaxtyping import Float
from torch import Tensor

from interp.capture import Activations, Positions, capture
from interp.errors import InputError
from interp.hooknames import HOOK_TEMPLATES, act_name
from interp.model import ChatModel
from interp.prompts import PromptSet
from probes.artifacts import HeadRanking
from probes.cv import check_problem, heldout_metrics, stratified_folds, train_masks
from interp.threads import compute_threads, model_threads
from probes.labels import Labels, resolve_labels
from probes.logistic import LogisticConfig, fit_logistic
from probes.massmean import cv_mass_mean


def relative_positions(label: str | None, n_pos: int) -> list[int]:
    """Captured positions counted from the end of the prompt (-1 = last token), from the capture's
    position label ("last", "post_instruction[2]", "indices[...]")."""
    if label == "last":
        return [-1]
    m = re.fullmatch(r"post_instruction\[(\d+)\]", label or "")
    if m and int(m.group(1)) == n_pos:  # the template's tokens after the message end the prompt
        return list(range(-n_pos, 0))
    m = re.fullmatch(r"indices\[(.*)\]", label or "")
    if m:
        idx = [int(x) for x in m.group(1).split(",") if x.strip()]
        if len(idx) == n_pos:
            return idx
    return list(range(-n_pos, 0))


def head_activations(acts: Activations | Tensor, layers: Sequence[int] | None = None
                     ) -> tuple[Float[Tensor, "batch pos layer head d_head"], list[int], list[int], dict]:
    """Stack the captured per-head outputs: (tensor, layers, relative positions, capture meta).

    Accepts `Activations` with 'z' sites, or a tensor [batch, layer, head, d_head] (one position) or
    [batch, pos, layer, head, d_head]."""
    if isinstance(acts, Tensor):
        X = acts.float()
        if X.ndim == 4:
            X = X[:, None]
        if X.ndim != 5:
            raise InputError(f"head activations must be [batch, layer, head, d_head] or [batch, pos, layer, head, d_head], "
                             f"got shape {tuple(X.shape)}")
        all_layers = list(range(X.shape[2]))
        keep = all_layers if layers is None else list(layers)
        missing = [l for l in keep if l not in all_layers]
        if missing:
            raise InputError(f"layers {missing} are not in the activations (layers 0..{len(all_layers) - 1})")
        return (X if keep == all_layers else X[:, :, keep]), keep, list(range(-X.shape[1], 0)), {}
    if not isinstance(acts, Activations):
        raise InputError(f"expected Activations or a tensor of head outputs, got {type(acts).__name__}")
    z = {s.layer: t for s, t in acts.acts.items() if s.kind == "z" and s.head is None}
    if not z:
        raise InputError(f"no per-head ('z') activations were captured (captured sites: {[str(s) for s in acts.sites]}); "
                         "capture them with capture(model, prompts, sites='z')")
    keep = sorted(z) if layers is None else list(layers)
    missing = [l for l in keep if l not in z]
    if missing:
        raise InputError(f"site z for layers {missing} was not captured (captured z layers: {sorted(z)}); "
                         f"capture with sites=[('z', l) for l in {missing}] or rank the captured layers")
    X = torch.stack([z[l].float() for l in keep], dim=2)  # [batch, pos, layer, head, d_head]
    return X, keep, relative_positions(acts.meta.get("positions"), X.shape[1]), dict(acts.meta)


def _check_finite(X: Tensor, layers: list[int], positions: list[int]) -> None:
    if bool(torch.isfinite(X.sum())):  # fast path: one reduction instead of a boolean copy of X
        return
    bad = ~torch.isfinite(X)
    if bool(bad.any()):
        n, p, l, h, _ = torch.nonzero(bad)[0].tolist()
        count = int(bad.flatten(0, 1).any(0).any(-1).sum())
        raise InputError(f"activations at site z.{layers[l]} (hook {act_name('z', layers[l])}, head {h}, position "
                         f"{positions[p]}, prompt {n}) contain NaN or inf ({count} head(s) affected); "
                         "check the model's dtype (float16 overflow?) and the captured prompts")


def rank_heads_from_activations(acts: Activations | Tensor, labels, k_folds: int = 5, C: float = 1.0, seed: int = 0,
                                positions: int | Sequence[int] | str | None = None, layers: Sequence[int] | None = None,
                                by: str = "accuracy", logistic: LogisticConfig | None = None,
                                model: ChatModel | None = None, meta: dict | None = None) -> HeadRanking:
    """Score every captured head: k-fold L2 logistic probe (accuracy, AUROC) and mass-mean
    direction (accuracy, AUROC, Cohen's d), all heads and folds fitted as one batched problem.

    `labels`: a `Labels` or booleans (True = refused / harmful), one per captured prompt.
    `positions`: None (every captured position), "last", or captured positions counted from the end
    (e.g. -1). `C` is scikit-learn's inverse regularisation strength (ignored when `logistic` is given).
    """
    lab = resolve_labels(labels)
    X, layer_list, rel, cap_meta = head_activations(acts, layers)
    if model is not None and cap_meta.get("model_fingerprint"):
        from interp.fingerprint import check_made_on

        check_made_on(model, cap_meta, "these activations")  # captured on another model: the ranking would be mislabelled
    check_problem(X.shape[0], lab.y, k_folds, lab.names)
    ids = cap_meta.get("prompt_ids") if "prompt_set" in cap_meta else None  # ids of a captured PromptSet
    if lab.prompt_ids is not None and ids is not None and list(lab.prompt_ids) != list(ids):
        raise InputError("the labels were made for other prompts (or another order) than the captured activations; "
                         "label the same PromptSet that was captured")
    if positions is not None:
        want = [rel[-1]] if positions == "last" else ([positions] if isinstance(positions, int) else list(positions))
        missing = [p for p in want if p not in rel]
        if missing:
            raise InputError(f"positions {missing} were not captured; captured positions (from the end): {rel}")
        X = X[:, [rel.index(p) for p in want]]
        rel = want
    _check_finite(X, layer_list, rel)
    cfg = logistic or LogisticConfig(C=C)
    n, n_pos, n_layers, n_heads, d_head = X.shape
    y = lab.y
    with compute_threads(X.numel() * (k_folds + 1)):
        Xp = rearrange(X, "n p l h d -> (p l h) n d").contiguous()
        del X
        folds = stratified_folds(y, k_folds, seed)
        fit = fit_logistic(Xp, y, train_masks(folds, k_folds, with_full=True), cfg)
        lr = heldout_metrics(fit.decision(Xp), y, folds, k_folds)
        mm = cv_mass_mean(Xp, y, folds, k_folds)

    def grid(t: Tensor) -> Tensor:
        return rearrange(t, "(p l h) ... -> p l h ...", p=n_pos, l=n_layers, h=n_heads).contiguous()

    scores = {}
    for name, per_fold in (("accuracy", lr["accuracy"]), ("auroc", lr["auroc"]), ("mm_accuracy", mm.accuracy),
                           ("mm_auroc", mm.auroc), ("cohens_d", mm.cohens_d)):
        scores[name] = grid(per_fold.mean(0))
        scores[name + "_std"] = grid(per_fold.std(0, correction=0))
    scores["sigma"] = grid(mm.sigma)
    scores["converged"] = grid(fit.converged.all(-1).float())
    vectors = {"probe": grid(fit.weight[:, k_folds]), "mass_mean": grid(mm.direction)}

    from interp.provenance import provenance

    info = {k: cap_meta[k] for k in ("model", "model_fingerprint", "bridge_check", "prompt_set", "positions", "prompt_ids")
            if k in cap_meta}
    info["model_shape"] = {"n_heads": n_heads, "d_head": d_head}
    if model is not None:
        info.update(model=model.name, model_fingerprint=model.fingerprint)
        info["model_shape"] = {"n_layers": model.n_layers, "n_heads": model.n_heads, "d_head": model.d_head}
    info.update(site="z", hook=HOOK_TEMPLATES["z"], labels=lab.kind, label_info=lab.describe(), seed=seed,
                k_folds=k_folds, C=cfg.C, n_prompts=n, lbfgs_iterations=fit.n_iter, **provenance())
    info.update(meta or {})
    return HeadRanking(scores, vectors, layer_list, rel, by, info)


def rank_heads(model: ChatModel, prompts: PromptSet, labels: str | Labels | Sequence[bool] = "behaviour",
               positions: Positions = "last", k_folds: int = 5, C: float = 1.0, seed: int = 0,
               by: str = "accuracy", batch_size: int = 32) -> HeadRanking:
    """Capture every head's output (hook_z) at `positions` ("last" as in ITI, or "post_instruction")
    for `prompts`, label them (behaviour: judge the model's greedy answers; category: harmful or
    harmless) and rank the heads (see `rank_heads_from_activations`)."""
    if not isinstance(prompts, PromptSet):
        raise InputError(f"rank_heads needs a PromptSet, got {type(prompts).__name__}; wrap texts with PromptSet.from_texts")
    prompts.require("prompt set for ranking heads")
    with model_threads(model):
        lab = resolve_labels(labels, prompts, model)
        check_problem(len(prompts), lab.y, k_folds, lab.names)  # fail before the capture
        acts = capture(model, prompts, "z", positions, batch_size=batch_size)
    ranking = rank_heads_from_activations(acts, lab, k_folds, C, seed, by=by, model=model)
    ranking.meta["position_tokens"] = position_tokens(model, prompts, ranking.positions)
    return ranking


def position_tokens(model: ChatModel, prompts: PromptSet, positions: Sequence[int]) -> list[str]:
    """The token at each relative position of the first prompt (e.g. '<|assistant|>' for -1)."""
    b = model.encode([prompts[0]])
    toks = b.tokens[0, -b.lengths[0]:].tolist()
    return [model.to_str_tokens([toks[p]])[0] if -len(toks) <= p < len(toks) else "?" for p in positions]
