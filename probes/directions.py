"""Residual-stream refusal directions: difference in means of the block input (`resid_pre`) at every
layer and post-instruction position, and Arditi et al. (2024)'s rule for picking one.

Selection (their `select_direction`, defaults kept): for each candidate r at (layer, position),
  * ablation score: mean refusal score on harmful val prompts with r projected out everywhere
    (`interp.hooks.ablate_direction`),
  * addition score: mean refusal score on harmless val prompts with r added to the block input of
    its layer (`interp.hooks.add_direction`, alpha 1: the difference in means at its natural size),
  * KL: KL(unsteered || ablated) of the next-token distribution on harmless val prompts;
discard candidates in the last 20% of layers, with KL > 0.1, or whose addition does not make
harmless prompts refuse (score <= 0); choose the lowest ablation score. Refusal scores are the
toolkit's `refusal_score` (log-odds of refusal vs compliance first tokens; > 0 leans to refuse).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import torch
from einops import rearrange
from jaxtyping import Bool, Float
from torch import Tensor

from interp.capture import Activations, Positions, capture
from interp.errors import InputError
from interp.hooks import ablate_direction, add_direction
from interp.model import ChatModel
from interp.prompts import PromptSet
from interp.scoring import last_logits, refusal_log_odds
from probes.artifacts import Direction
from probes.cv import check_problem, stratified_folds
from interp.threads import compute_threads, model_threads
from probes.heads import position_tokens, relative_positions
from probes.labels import Labels, resolve_labels
from probes.massmean import cv_mass_mean


@dataclass(frozen=True)
class SelectionConfig:
    """Arditi et al. (2024) defaults: kl_threshold 0.1, induce_refusal_threshold 0.0,
    prune_layer_percentage 0.2, activation addition with coefficient 1, val sets filtered to the
    harmful prompts the model refuses and the harmless ones it complies with."""

    kl_threshold: float = 0.1
    induce_refusal_threshold: float = 0.0
    prune_layer_fraction: float = 0.2
    addition_alpha: float = 1.0
    filter_val: bool = True
    k_folds: int = 5  # held-out accuracy of each candidate (mass-mean probe on the train prompts)
    batch_size: int = 64
    # Arditi et al. take the block input only. We also offer the stream between attention and MLP:
    # a small model can decide inside block 0 (the organism does), after which every block input
    # is downstream of the decision and ablating it does not undo refusal.
    sites: tuple[str, ...] = ("resid_pre", "resid_mid")

    def __post_init__(self) -> None:
        if not 0 <= self.prune_layer_fraction < 1:
            raise InputError(f"prune_layer_fraction must be in [0, 1), got {self.prune_layer_fraction}")
        if self.kl_threshold <= 0:
            raise InputError(f"kl_threshold must be positive, got {self.kl_threshold}")
        bad = [x for x in self.sites if x not in ("resid_pre", "resid_mid", "resid_post")] or not self.sites
        if bad:
            raise InputError(f"direction sites must be among resid_pre, resid_mid, resid_post; got {self.sites}")


def residual_activations(acts: Activations, n_layers: int, site: str = "resid_pre"
                         ) -> tuple[Float[Tensor, "batch pos layer d_model"], list[int]]:
    """Stack `site` over every layer: ([batch, pos, layer, d_model], positions from the end)."""
    got = {s.layer: t for s, t in acts.acts.items() if s.kind == site}
    missing = [l for l in range(n_layers) if l not in got]
    if missing:
        raise InputError(f"site {site} was not captured for layers {missing} (captured: {[str(s) for s in acts.sites]}); "
                         f"capture with sites='{site}'")
    X = torch.stack([got[l].float() for l in range(n_layers)], dim=2)
    rel = relative_positions(acts.meta.get("positions"), X.shape[1])
    bad = ~torch.isfinite(X)
    if bool(bad.any()):
        n, p, l, _ = torch.nonzero(bad)[0].tolist()
        raise InputError(f"activations at site {site}.{l} (position {rel[p]}, prompt {n}) contain NaN or inf; "
                         "check the model's dtype and the captured prompts")
    return X, rel


def mean_differences(X: Float[Tensor, "batch pos layer d_model"], y: Bool[Tensor, "batch"]) -> Float[Tensor, "pos layer d_model"]:
    """mean(positive) - mean(negative): refused minus complied, or harmful minus harmless."""
    return X[y].mean(0) - X[~y].mean(0)


def _subset(prompts: PromptSet, idx: Sequence[int], tag: str) -> PromptSet:
    return PromptSet(f"{prompts.name}:{tag}", tuple(prompts[i] for i in idx), prompts.source)


def _kl(base: Tensor, other: Tensor) -> float:
    lp, lq = base.float().log_softmax(-1), other.float().log_softmax(-1)
    return float((lp.exp() * (lp - lq)).sum(-1).mean())


def find_refusal_direction(model: ChatModel, train: PromptSet, val: PromptSet, labels: str | Labels | Sequence[bool] = "behaviour",
                           positions: Positions = "post_instruction", cfg: SelectionConfig = SelectionConfig(), seed: int = 0,
                           acts: Activations | None = None) -> Direction:
    """Candidates from `train` (difference in means of resid_pre, labels as in `rank_heads`), chosen
    on `val` (its harmful / harmless category labels) by Arditi et al.'s rule. `acts`: a capture of
    `train` with 'resid_pre' at every layer, to reuse. The returned `Direction` carries the whole
    per-layer table (`candidates`) and the reason for the choice."""
    with model_threads(model):
        return _find(model, train, val, labels, positions, cfg, seed, acts)


def _find(model: ChatModel, train: PromptSet, val: PromptSet, labels, positions: Positions, cfg: SelectionConfig, seed: int,
          acts: Activations | None) -> Direction:
    train.require("training set for the refusal direction")
    val.require("validation set for the refusal direction", 2, both_labels=True)
    lab = resolve_labels(labels, train, model)
    check_problem(len(train), lab.y, cfg.k_folds, lab.names)
    if acts is None:
        acts = capture(model, train, list(cfg.sites), positions, batch_size=cfg.batch_size)
    elif len(acts) != len(train):
        raise InputError(f"acts hold {len(acts)} prompts but the training set has {len(train)}; pass the capture of `train`")
    sites = [x for x in cfg.sites if any(s.kind == x for s in acts.sites)]
    if not sites:
        raise InputError(f"acts hold none of the sites {cfg.sites}; capture with sites={list(cfg.sites)}")
    per_site = {}
    for site in sites:
        X, rel = residual_activations(acts, model.n_layers, site)
        # held-out separability of each candidate (mass-mean probe, k-fold on the train prompts)
        with compute_threads(X.numel() * (cfg.k_folds + 1)):
            Xp = rearrange(X, "n p l d -> (p l) n d").contiguous()
            mm = cv_mass_mean(Xp, lab.y, stratified_folds(lab.y, cfg.k_folds, seed), cfg.k_folds)
        n_pos, L = X.shape[1], X.shape[2]
        grid = lambda t: rearrange(t.mean(0), "(p l) -> p l", p=n_pos)  # noqa: E731
        per_site[site] = (mean_differences(X, lab.y), grid(mm.accuracy), grid(mm.auroc), grid(mm.cohens_d))

    # val sets: by category; filtered (Arditi) to what the unsteered model refuses / complies with
    base = last_logits(model, val, cfg.batch_size)
    base_score = refusal_log_odds(model, base)
    harm = [i for i, p in enumerate(val) if p.label == "harmful"]
    safe = [i for i, p in enumerate(val) if p.label == "harmless"]
    notes = []
    if cfg.filter_val:
        h2 = [i for i in harm if base_score[i] > 0]
        s2 = [i for i in safe if base_score[i] < 0]
        if h2 and s2:
            harm, safe = h2, s2
        else:
            notes.append("val filter left an empty set; used the unfiltered val prompts")
    val_h, val_s = _subset(val, harm, "harmful"), _subset(val, safe, "harmless")
    base_h, base_s = float(base_score[harm].mean()), float(base_score[safe].mean())
    both = val_h.concat(val_s)
    toks = position_tokens(model, train, rel)
    cut = int(L * (1.0 - cfg.prune_layer_fraction))  # Arditi: layer >= int(n_layers * (1 - 0.2)) is discarded

    # a block input shared by every prompt (layer 0 at a template token is its embedding) gives a
    # difference that is round-off; its unit vector would be noise, so it is no candidate
    tiny = 1e-4 * max(float(v[0].norm(dim=-1).max()) for v in per_site.values())
    rows = []
    for site, pi, layer in [(x, p, l) for x in sites for p in range(n_pos) for l in range(L)]:
        diffs, acc, auc, cd = per_site[site]
        r = diffs[pi, layer]
        row = {"site": site, "layer": layer, "position": rel[pi], "token": toks[pi], "accuracy": round(float(acc[pi, layer]), 4),
               "auroc": round(float(auc[pi, layer]), 4), "cohens_d": round(float(cd[pi, layer]), 4),
               "norm": round(float(r.norm()), 4)}
        if float(r.norm()) <= tiny:
            row["norm"] = 0.0
            row.update(ablation_score=float("nan"), addition_score=float("nan"), kl=float("nan"))
        else:
            with torch.no_grad():
                with ablate_direction(model, r):
                    abl = last_logits(model, both, cfg.batch_size)
                with add_direction(model, r, layer, cfg.addition_alpha, site=site):
                    add = last_logits(model, val_s, cfg.batch_size)
            nh = len(val_h)
            row.update(ablation_score=round(float(refusal_log_odds(model, abl[:nh]).mean()), 4),
                       addition_score=round(float(refusal_log_odds(model, add).mean()), 4),
                       kl=round(_kl(base[safe], abl[nh:]), 5))
        row["pruned"] = layer >= cut
        row["kl_ok"] = bool(row["kl"] <= cfg.kl_threshold)
        row["induces_refusal"] = bool(row["addition_score"] > cfg.induce_refusal_threshold)
        row["passed"] = not row["pruned"] and row["kl_ok"] and row["induces_refusal"]
        rows.append(row)

    chosen, reason = _choose(rows, cfg, base_h, notes)
    for row in rows:
        row["chosen"] = row is chosen
    pi = rel.index(chosen["position"])
    diffs = per_site[chosen["site"]][0]
    from interp.provenance import provenance

    scores = {k: chosen[k] for k in ("accuracy", "auroc", "cohens_d", "ablation_score", "addition_score", "kl", "norm", "passed")}
    scores.update(baseline_harmful=round(base_h, 4), baseline_harmless=round(base_s, 4), n_val_harmful=len(harm),
                  n_val_harmless=len(safe))
    meta = {"model": model.name, "model_fingerprint": model.fingerprint, "model_shape": {"n_layers": model.n_layers, "d_model": model.d_model},
            "prompt_set": train.describe(), "val_prompt_set": val.describe(), "labels": lab.kind, "label_info": lab.describe(),
            "positions_label": acts.meta.get("positions"), "position_tokens": toks, "seed": seed, "selection": asdict(cfg),
            **provenance()}
    return Direction(diffs[pi, chosen["layer"]].clone(), chosen["layer"], chosen["position"], chosen["site"], scores, rows,
                     reason, meta, diffs, rel)


def _choose(rows: list[dict], cfg: SelectionConfig, base_h: float, notes: list[str]) -> tuple[dict, str]:
    """Arditi's rule. Their code stops when no candidate passes; we fall back (and say so) to the
    lowest ablation score among the layers not pruned, then among all scored candidates."""
    finite = [r for r in rows if r["ablation_score"] == r["ablation_score"]]
    tiers = [([r for r in finite if r["passed"]], None),
             ([r for r in finite if not r["pruned"]], "candidates outside the pruned layers"),
             (finite, "candidates (every layer is pruned or failed)"),
             (rows, "candidates (none could be scored)")]
    pool, fallback = next((t for t in tiers if t[0]), tiers[-1])
    best = min(pool, key=lambda r: (r["ablation_score"] if r["ablation_score"] == r["ablation_score"] else float("inf")))
    rejected = []
    for r in rows:
        why = []
        if not r["norm"]:
            why.append("zero difference in means (every prompt has the same block input here)")
        if r["pruned"]:
            why.append(f"in the last {cfg.prune_layer_fraction:.0%} of layers")
        if not r["kl_ok"] and r["norm"]:
            why.append(f"KL {r['kl']:.3g} > {cfg.kl_threshold}")
        if not r["induces_refusal"] and r["norm"]:
            why.append(f"addition leaves harmless refusal score at {r['addition_score']:.2f} <= {cfg.induce_refusal_threshold}")
        if why:
            rejected.append(f"{r.get('site', 'resid_pre')} layer {r['layer']} pos {r['position']}: " + ", ".join(why))
    where = f"{best.get('site', 'resid_pre')} layer {best['layer']} at position {best['position']} ({best['token']!r})"
    if fallback:
        head = (f"no candidate passed every filter; chose {where}, the lowest harmful refusal score under ablation "
                f"({best['ablation_score']:.2f}, unsteered {base_h:.2f}) among {len(pool)} {fallback}")
    else:
        head = (f"chose {where}: lowest harmful refusal score under ablation ({best['ablation_score']:.2f}, unsteered "
                f"{base_h:.2f}) among the {len(pool)} of {len(rows)} candidates that pass the filters (addition makes harmless "
                f"prompts refuse: {best['addition_score']:.2f} > {cfg.induce_refusal_threshold}; KL {best['kl']:.3g} <= {cfg.kl_threshold})")
    reason = head + (". Rejected: " + "; ".join(rejected) if rejected else "") + (". Notes: " + "; ".join(notes) if notes else "")
    return best, reason
