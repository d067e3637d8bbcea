"""Residual-stream refusal directions: difference in means of the block input (`resid_pre`) at every
layer and post-instruction position, and Arditi et al. (2024)'s rule for picking one.

Selection (their `select_direction`, defaults kept): for each candidate r at (layer, position),
  * ablation score: mean refusal score on harmful val prompts with r projected out everywhere
    (an `interp.intervention` direction ablation),
  * addition score: mean refusal score on harmless val prompts with r added to the block input of
    its layer (at strength 1: the difference in means at its natural size),
  * KL: KL(unsteered || ablated) of the next-token distribution on harmless val prompts;
discard candidates in the last 20% of layers, with KL > 0.1, or whose addition does not make
harmless prompts refuse (score <= 0); choose the lowest ablation score. Refusal scores are the
toolkit's `refusal_score` (log-odds of refusal vs compliance first tokens; > 0 leans to refuse).

Measuring a candidate exactly costs two forward passes over the val prompts; SmolLM2-135M has 360
candidates (2 sites x 6 positions x 30 layers), so the exhaustive scan costs 720 passes. By default
every candidate's ablation and addition scores are first *estimated* by attribution patching
(`interp.causal.attribution`: one forward and one backward pass over the val prompts gives them
all), candidates in pruned layers are dropped before anything is measured, and only the `top_k`
(8) with the lowest estimated ablation score are measured exactly, in replicated batches, the
additions resumed at their own layer (`interp.runner.run`). If none of those passes the filters,
a second round measures the `top_k` not yet measured whose estimated addition raises harmless
refusal most (the first-order addition estimate is too small for a large vector, so it ranks
rather than filters). The choice
is made by Arditi's rule among the measured candidates; `SelectionConfig(exhaustive=True)` (CLI
`--exhaustive`) measures every candidate, as Arditi et al. do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import einops
import torch
from einops import rearrange
from jaxtyping import Bool, Float
from torch import Tensor

from interp.capture import Activations, Positions, capture
from interp.errors import InputError
from interp.fingerprint import check_made_on, model_record
from interp.hooknames import act_name, present_site_kinds, require_site_kinds
from interp.hooks import check_direction, check_layer
from interp.model import ChatModel, texts
from interp.prompts import PromptSet
from interp.scoring import last_logits, refusal_log_odds
from interp.direction import Direction
from probes.cv import check_problem, stratified_folds
from interp.threads import compute_threads, model_threads
from probes.heads import position_tokens, relative_positions
from probes.labels import Labels, resolve_labels
from probes.fit import mass_mean
from probes.massmean import cv_mass_mean


RESID_SITES = ("resid_pre", "resid_mid", "resid_post")
DEFAULT_SITES = ("resid_pre", "resid_mid")


def search_sites(model: ChatModel, cfg: "SelectionConfig") -> tuple[tuple[str, ...], dict[str, str]]:
    """The residual sites a direction search reads on `model`, and {site left out: why}."""
    if cfg.sites is None:
        return present_site_kinds(model, DEFAULT_SITES)
    return require_site_kinds(model, cfg.sites, "direction sites"), {}


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
    plain_val: bool = True  # select on the val split's plain requests only (when it has some)
    k_folds: int = 5  # held-out accuracy of each candidate (mass-mean probe on the train prompts)
    batch_size: int = 64
    # Arditi et al. take the block input only. We also offer the stream between attention and MLP:
    # a small model can decide inside block 0 (the organism does), after which every block input
    # is downstream of the decision and ablating it does not undo refusal. None: DEFAULT_SITES that
    # the model has (a parallel attention+MLP block has no resid_mid; reported as left out); a
    # tuple: exactly those, each required to exist on the model.
    sites: tuple[str, ...] | None = None
    # measured exactly after the attribution estimate; more rounds of top_k only while none passes
    top_k: int = 8
    max_rounds: int = 2
    exhaustive: bool = False
    max_rows: int = 256  # rows (prompts x candidates) per replicated pass, fewer for long prompts (activation budget)
    grad_batch_size: int = 8  # prompts per forward+backward pass of the estimate, fewer for long prompts

    def __post_init__(self) -> None:
        if not isinstance(self.top_k, int) or self.top_k < 1:
            raise InputError(f"top_k must be a positive integer (candidates measured exactly), got {self.top_k!r}")
        if not isinstance(self.max_rounds, int) or self.max_rounds < 1:
            raise InputError(f"max_rounds must be a positive integer, got {self.max_rounds!r}")
        if not 0 <= self.prune_layer_fraction < 1:
            raise InputError(f"prune_layer_fraction must be in [0, 1), got {self.prune_layer_fraction}")
        if self.kl_threshold <= 0:
            raise InputError(f"kl_threshold must be positive, got {self.kl_threshold}")
        bad = self.sites is not None and ([x for x in self.sites if x not in RESID_SITES] or not self.sites)
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
    return mass_mean(X, y)


def resolve_direction(model: ChatModel, direction, layer: int | None = None) -> tuple[Float[Tensor, "d_model"], int | None]:
    """(vector on the model's device and dtype, layer) from a `Direction` (checked to be made on
    `model`) or a tensor of size d_model (+ `layer`)."""
    from interp.intervention import direction_parts

    vec, own_layer, made_on = direction_parts(direction)
    if made_on is not None:
        check_made_on(model, made_on, "this direction")
    layer = own_layer if layer is None else layer
    vec = check_direction(model, vec)
    if layer is not None:
        layer = check_layer(model, int(layer) if isinstance(layer, (int, Tensor)) and not isinstance(layer, bool) else layer)
    return vec, layer


@torch.no_grad()
def mean_difference_direction(model: ChatModel, harmful, harmless, layer: int, position: int = -1,
                              site: str = "resid_pre") -> Direction:
    """One candidate, no selection: the harmful-minus-harmless mean of `site` at `layer` and prompt
    `position` (from the end; -1 the last token), at its natural size, so that addition with
    alpha=1 moves the stream by the gap between the two means."""

    if site not in RESID_SITES:
        raise InputError(f"site must be one of {RESID_SITES}, got {site!r}")
    check_layer(model, layer)
    if isinstance(position, bool) or not isinstance(position, int) or position >= 0:
        raise InputError(f"position counts from the end of the prompt (-1 = last token), got {position!r}")
    h, b = texts(harmful), texts(harmless)
    if not h or not b:
        raise InputError(f"{'harmful' if not h else 'harmless'} prompts are empty: pass at least one of each")
    pos = "last" if position == -1 else [position]
    a, c = capture(model, h, [(site, layer)], pos), capture(model, b, [(site, layer)], pos)
    vec = a[(site, layer)].float().mean(1).mean(0) - c[(site, layer)].float().mean(1).mean(0)
    meta = {"model": model.name, "model_fingerprint": model.fingerprint, "n_harmful": len(h), "n_harmless": len(b),
            "selection": "none (mean difference at a given layer)"}
    return Direction(vec, layer, position, site, meta=meta, positions=[position])


@torch.no_grad()
def calibrate_direction(model: ChatModel, direction, harmful, harmless, layer: int | None = None) -> Direction:
    """Give a direction of any size (a unit probe weight) the natural size for addition: its unit
    vector times the harmful-minus-harmless mean projection at its layer's block input, last token."""
    vec, layer = resolve_direction(model, direction, layer)
    if layer is None:
        raise InputError("calibrating a direction needs its layer: pass layer= or a Direction")
    u = (vec / vec.norm()).float().cpu()
    gap = float(mean_difference_direction(model, harmful, harmless, layer).vector @ u)
    if gap == 0.0:
        raise InputError("the direction is orthogonal to the harmful-harmless difference at its layer; it cannot be calibrated")
    meta = {"model": model.name, "model_fingerprint": model.fingerprint, "calibrated_from": type(direction).__name__}
    return Direction(u * gap, layer, -1, "resid_pre", meta=meta, positions=[-1])


def _subset(prompts: PromptSet, idx: Sequence[int], tag: str) -> PromptSet:
    return PromptSet(f"{prompts.name}:{tag}", tuple(prompts[i] for i in idx), prompts.source)


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
    wanted, left_out = search_sites(model, cfg)
    if acts is None:
        acts = capture(model, train, list(wanted), positions, batch_size=cfg.batch_size)
    elif len(acts) != len(train):
        raise InputError(f"acts hold {len(acts)} prompts but the training set has {len(train)}; pass the capture of `train`")
    sites = [x for x in wanted if any(s.kind == x for s in acts.sites)]
    if not sites:
        raise InputError(f"acts hold none of the sites {list(wanted)}; capture with sites={list(wanted)}")
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

    # val sets: by category, plain requests (Arditi's are instructions; jailbreak prompts are 3-10x
    # longer and the direction is not chosen for them); filtered (Arditi) to what the unsteered
    # model refuses / complies with
    plain = val.filter(family=None)
    if cfg.plain_val and len(plain) < len(val) and {p.label for p in plain} >= {"harmful", "harmless"}:
        val = plain
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
    toks = position_tokens(model, train, rel)
    cut = int(L * (1.0 - cfg.prune_layer_fraction))  # Arditi: layer >= int(n_layers * (1 - 0.2)) is discarded

    # a block input shared by every prompt (layer 0 at a template token is its embedding) gives a
    # difference that is round-off; its unit vector would be noise, so it is no candidate
    tiny = 1e-4 * max(float(v[0].norm(dim=-1).max()) for v in per_site.values())
    rows, vecs = [], []
    for site, pi, layer in [(x, p, l) for x in sites for p in range(n_pos) for l in range(L)]:
        diffs, acc, auc, cd = per_site[site]
        r = diffs[pi, layer]
        row = {"site": site, "layer": layer, "position": rel[pi], "token": toks[pi], "accuracy": round(float(acc[pi, layer]), 4),
               "auroc": round(float(auc[pi, layer]), 4), "cohens_d": round(float(cd[pi, layer]), 4),
               "norm": round(float(r.norm()), 4) if float(r.norm()) > tiny else 0.0, "pruned": layer >= cut,
               "ablation_score": float("nan"), "addition_score": float("nan"), "kl": float("nan"),
               "ablation_estimate": float("nan"), "addition_estimate": float("nan"), "measured": False}
        rows.append(row)
        vecs.append(r)
    live = [i for i, row in enumerate(rows) if row["norm"]]
    if live:
        where = [(rows[i]["site"], rows[i]["layer"]) for i in live]
        est_a, est_d = estimate_scores(model, val_h, val_s, torch.stack([vecs[i] for i in live]), where, cfg.addition_alpha,
                                       cfg.grad_batch_size)
        for j, i in enumerate(live):
            rows[i]["ablation_estimate"] = round(base_h + float(est_a[j]), 4)
            rows[i]["addition_estimate"] = round(base_s + float(est_d[j]), 4)

    def measure(idx: list[int], label: str) -> None:
        abl, add, kl = measure_candidates(model, val_h, val_s, torch.stack([vecs[i] for i in idx]),
                                          [(rows[i]["site"], rows[i]["layer"]) for i in idx], cfg.addition_alpha,
                                          base[safe], cfg.max_rows, label)
        for j, i in enumerate(idx):
            rows[i].update(ablation_score=round(float(abl[j]), 4), addition_score=round(float(add[j]), 4),
                           kl=round(float(kl[j]), 5), measured=True)
            _judge(rows[i], cfg)

    for row in rows:
        _judge(row, cfg)
    if cfg.exhaustive:  # Arditi et al.: every candidate, pruned layers included (then discarded)
        measure(live, f"direction candidates ({len(live)}, exhaustive)")
    else:
        # every layer pruned (a one- or two-layer model): measure among all, as the fallback rule chooses
        eligible = [i for i in live if not rows[i]["pruned"]] or live
        for rnd in range(cfg.max_rounds):
            left = [i for i in eligible if not rows[i]["measured"]]
            if rnd == 0:  # the lowest estimated harmful refusal under ablation: what the rule minimises
                left.sort(key=lambda i: rows[i]["ablation_estimate"])
            else:  # none of those passed: the candidates likeliest to pass the addition filter
                left.sort(key=lambda i: -rows[i]["addition_estimate"])
            if not left:
                break
            measure(left[:cfg.top_k], f"direction candidates (round {rnd + 1}, top {cfg.top_k} of {len(live)})")
            if any(rows[i]["passed"] for i in eligible):
                break

    chosen, reason = _choose(rows, cfg, base_h, notes)
    for row in rows:
        row["chosen"] = row is chosen
    pi = rel.index(chosen["position"])
    diffs = per_site[chosen["site"]][0]
    from interp.provenance import provenance

    scores = {k: chosen[k] for k in ("accuracy", "auroc", "cohens_d", "ablation_score", "addition_score", "kl", "norm", "passed")}
    scores.update(baseline_harmful=round(base_h, 4), baseline_harmless=round(base_s, 4), n_val_harmful=len(harm),
                  n_val_harmless=len(safe))
    meta = {**model_record(model), "model_shape": {"n_layers": model.n_layers, "d_model": model.d_model},
            "prompt_set": train.describe(), "val_prompt_set": val.describe(), "labels": lab.kind, "label_info": lab.describe(),
            "positions_label": acts.meta.get("positions"), "position_tokens": toks, "seed": seed, "selection": asdict(cfg),
            "sites_searched": list(sites), "sites_left_out": left_out,
            "estimate": estimate_quality(rows), **provenance()}
    return Direction(diffs[pi, chosen["layer"]].clone(), chosen["layer"], chosen["position"], chosen["site"], scores, rows,
                     reason, meta, diffs, rel)


def estimate_quality(rows: list[dict]) -> dict:
    """Spearman rank correlation of the attribution estimates against the exact scores over the
    measured candidates (all of them in an exhaustive search)."""
    from interp.stats import spearman

    m = [r for r in rows if r.get("measured")]
    out = {"n_measured": len(m), "n_candidates": sum(1 for r in rows if r["norm"])}
    for key in ("ablation", "addition"):
        out[f"{key}_spearman"] = (spearman(torch.tensor([r[f"{key}_estimate"] for r in m]),
                                           torch.tensor([r[f"{key}_score"] for r in m])) if len(m) >= 3 else float("nan"))
    return out


def _judge(row: dict, cfg: SelectionConfig) -> None:
    """Arditi's filters on a row's measured scores (an unmeasured row passes none)."""
    row["kl_ok"] = bool(row["kl"] <= cfg.kl_threshold)
    row["induces_refusal"] = bool(row["addition_score"] > cfg.induce_refusal_threshold)
    row["passed"] = not row["pruned"] and row["kl_ok"] and row["induces_refusal"]


def _ablation_sites(n_layers: int) -> list[str]:
    # Directional ablation projects the direction out of every block input and every attention and
    # MLP output. Each block input after the first is the sum of outputs already projected, so its
    # own projection removes nothing: to first order the ablation is the sum of the changes at the
    # embedding and at each attention and MLP output.
    return [act_name("resid_pre", 0)] + [act_name(x, l) for l in range(n_layers) for x in ("attn_out", "mlp_out")]


def estimate_scores(model: ChatModel, harmful: PromptSet, harmless: PromptSet, vectors: Float[Tensor, "cand d_model"],
                    where: Sequence[tuple[str, int]], alpha: float = 1.0,
                    batch_size: int = 8) -> tuple[Float[Tensor, "cand"], Float[Tensor, "cand"]]:
    """Attribution-patching estimates, for every candidate direction at once, of the change of the
    mean refusal score of `harmful` under directional ablation (sum over the ablated sites of
    -(a . u)(g . u), u the unit direction, g the gradient) and of `harmless` under addition of
    `alpha * vector` at its (site, layer) (alpha * sum over positions of g . vector). One forward
    and one backward pass over both sets."""
    from interp.causal.attribution import attribute, batches, refusal_score_metric

    L = model.n_layers
    V = vectors.float().to(model.device)
    U = V / V.norm(dim=-1, keepdim=True)
    abl_names = _ablation_sites(L)
    add_names = sorted({act_name(x, l) for x, l in where})
    names = list(dict.fromkeys(abl_names + add_names))
    both = harmful.concat(harmless)
    n_h = len(harmful)
    abl = torch.zeros(len(V), dtype=torch.float64)
    g_add = {n: torch.zeros(model.d_model, dtype=torch.float64) for n in add_names}
    for idx, b in batches(model, both, batch_size):
        is_h = torch.tensor([i < n_h for i in idx], device=model.device)

        def reduce(name, a, g):
            a, g = a.float(), g.float()
            if name in g_add:
                g_add[name] += g[~is_h].sum((0, 1)).double().cpu()
            if name in abl_names and bool(is_h.any()):
                # [rows, pos, cand]: components along each unit direction, and the gradient's
                abl.sub_(((a[is_h] @ U.T) * (g[is_h] @ U.T)).sum((0, 1)).double().cpu())
            return None

        attribute(model, b, names, refusal_score_metric(model), reduce)
    col = {n: i for i, n in enumerate(add_names)}
    G = torch.stack([g_add[n] for n in add_names]).float().to(model.device)  # [site-layer, d_model]
    rows = torch.tensor([col[act_name(x, l)] for x, l in where], device=model.device)
    add = alpha * (G[rows] * V).sum(-1)
    return (abl / max(n_h, 1)).float(), (add / max(len(harmless), 1)).float().cpu()


@torch.no_grad()
def measure_candidates(model: ChatModel, harmful: PromptSet, harmless: PromptSet, vectors: Float[Tensor, "cand d_model"],
                       where: Sequence[tuple[str, int]], alpha: float, base_harmless: Float[Tensor, "n d_vocab"],
                       max_rows: int = 256, progress: str | None = None
                       ) -> tuple[Float[Tensor, "cand"], Float[Tensor, "cand"], Float[Tensor, "cand"]]:
    """Exact scores of each candidate: mean refusal score of `harmful` with the direction ablated,
    of `harmless` with `alpha * vector` added at its (site, layer), and KL(unsteered || ablated) on
    `harmless` (`base_harmless`: its unsteered last-position logits, in order). Candidates are
    stacked (`interp.runner.run`: one replica per candidate); additions resume at their own layer
    from the clean run's cached block inputs."""
    from interp.causal.attribution import progress_bar
    from interp.intervention import AddToResidual, Intervention
    from interp.runner import cache_block_inputs, prompt_batches, run

    C = len(vectors)
    both = harmful.concat(harmless)
    n_h, n = len(harmful), len(both)
    abl_scores = torch.zeros(C, n)
    kl = torch.zeros(C)
    add = torch.zeros(C, len(harmless))
    base_lp = base_harmless.float().log_softmax(-1).cpu()
    ablations = Intervention.stack([Intervention.ablate_direction(v) for v in vectors])
    additions = Intervention.stack([Intervention.of(AddToResidual(site, (l,), vectors[c][None], alpha))
                                    for c, (site, l) in enumerate(where)])
    with progress_bar(2 * C, progress, "pass") as bar:
        # ablation: every val prompt, one replica per candidate (the bar counts the first batch)
        tick = bar.update
        for idx, b, _ in prompt_batches(model, both.texts, max_rows):
            n_b = len(idx)
            safe_rows = [r for r, i in enumerate(idx) if i >= n_h]
            lp = base_lp[[idx[r] - n_h for r in safe_rows]][None]

            def read(logits):  # per row: refusal score, and its KL term on the harmless rows
                logits = logits.float().cpu().view(-1, n_b, logits.shape[-1])
                out = torch.zeros(*logits.shape[:2], 2)
                out[..., 0] = refusal_log_odds(model, logits.flatten(0, 1)).view(logits.shape[:2])
                if safe_rows:
                    lq = logits[:, safe_rows].log_softmax(-1)  # [cand, harmless rows, vocab]
                    out[:, safe_rows, 1] = (lp.exp() * (lp - lq)).sum(-1)
                return out.flatten(0, 1)

            res = run(model, b, ablations, read=read, max_rows=max_rows, progress=tick).view(C, n_b, 2)
            abl_scores[:, idx] = res[..., 0]
            if safe_rows:
                kl += res[:, safe_rows, 1].sum(-1)
            tick = None
        # addition: harmless prompts only, each candidate resumed at its layer
        tick = bar.update
        for idx, b, _ in prompt_batches(model, harmless.texts, max_rows):
            cached = cache_block_inputs(model, b, min(l for _, l in where))
            add[:, idx] = run(model, cached, additions, read=lambda logits: refusal_log_odds(model, logits).cpu(),
                              from_layer="auto", max_rows=max_rows, progress=tick).view(C, len(idx))
            tick = None
    return abl_scores[:, :n_h].mean(1), add.mean(1), kl / max(len(harmless), 1)


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
    unmeasured = [r for r in rows if r["norm"] and not r.get("measured", True)]
    skip = {id(r) for r in unmeasured}
    for r in rows:
        if id(r) in skip:
            continue  # counted below
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
    n_pruned = sum(1 for r in unmeasured if r["pruned"])
    if n_pruned:
        rejected.append(f"{n_pruned} candidates in the last {cfg.prune_layer_fraction:.0%} of layers (not measured)")
    where = f"{best.get('site', 'resid_pre')} layer {best['layer']} at position {best['position']} ({best['token']!r})"
    if fallback:
        head = (f"no candidate passed every filter; chose {where}, the lowest harmful refusal score under ablation "
                f"({best['ablation_score']:.2f}, unsteered {base_h:.2f}) among {len(pool)} {fallback}")
    else:
        head = (f"chose {where}: lowest harmful refusal score under ablation ({best['ablation_score']:.2f}, unsteered "
                f"{base_h:.2f}) among the {len(pool)} of {len(rows)} candidates that pass the filters (addition makes harmless "
                f"prompts refuse: {best['addition_score']:.2f} > {cfg.induce_refusal_threshold}; KL {best['kl']:.3g} <= {cfg.kl_threshold})")
    if unmeasured:
        n_m = sum(1 for r in rows if r.get("measured"))
        notes = [f"{n_m} candidates measured exactly; {len(unmeasured) - n_pruned} others outside the pruned layers "
                 f"were not: their attribution estimate ranked them below the top {cfg.top_k} "
                 "(SelectionConfig.exhaustive / --exhaustive measures every one)"] + list(notes)
    reason = head + (". Rejected: " + "; ".join(rejected) if rejected else "") + (". Notes: " + "; ".join(notes) if notes else "")
    return best, reason
