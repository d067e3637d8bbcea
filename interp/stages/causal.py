"""Pipeline stage "causal": which heads drive refusal, by ablation, patching and direct logit
attribution, and which K heads to steer.

Heads are searched and compared on the study's train split (plain requests; patching pairs are
matched harmful/harmless requests of equal token length from it); every refusal rate reported is
measured on the held-out test split (plain harmful / harmless, and a sample of its jailbreaks).
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from interp.prompts import PromptSet
from interp.study import StageResult, Study, figure_ref
from interp.threads import model_threads
from interp.causal.ablate import head_reference
from interp.stages.causal_measure import measure
from interp.causal.search import SearchConfig, neutral_reading, search_heads
from interp.causal.compare import RecommendConfig, compare_methods, recommend_heads
from interp.causal.consensus import by_method, choose, consensus
from interp.causal.converge import converge
from interp.causal.dla import direct_logit_attribution, logit_lens
from interp.causal.heads import all_heads
from interp.causal.patching import activation_patching, equal_length_pairs


@dataclass(frozen=True)
class CausalConfig:
    k: int = 4  # at most this many heads are recommended
    n_search: int = 32  # plain train prompts per label for the search, DLA and the null
    n_search_min: int = 32  # never fewer (when the train split has them), whatever the study's scale
    n_pairs: int = 16  # harmful/harmless pairs for patching (fewer when the train split has fewer equal-length pairs)
    n_random: int = 10  # random head sets of size K measured against the recommended set
    jailbreak_per_cell: int = 2  # held-out jailbreak prompts per (family, strength)
    max_new_tokens: int | None = None  # greedy answer length for the judge; None: the study's (--max-new-tokens)
    method: str = "mean"  # the primary ablation method (compared with the other methods, measured held out)
    # the search and recommendation also run under these, side by side (a comma-separated string: it
    # round-trips through the report's JSON, which `--from` compares settings with)
    methods: str = "mean,zero,resample"
    # single-head steering (HSI's selection) of the candidate heads, as a third line of evidence: a
    # strength large enough that a head carrying the decision flips answers alone (not calibrated); 0: off
    steer_sigmas: float = 8.0
    reference: str = "auto"  # see SearchConfig: label-free mean first, the other label's mean if that flips nothing
    seed: int = 0
    top_k: int = 8  # heads / cells measured exactly after the attribution estimate (SearchConfig, activation_patching)
    exhaustive: bool = False  # measure every head and cell exactly (one pass each)


@dataclass
class CausalResult(StageResult):
    recommended_heads: list = None  # the confident recommendation ([] when none)
    recommendation: object = None  # interp.causal.compare.Recommendation


def _eval_sets(study: Study, cfg: CausalConfig) -> dict[str, PromptSet]:
    ev = study.data.test
    sets = {"harmful": ev.filter(label="harmful", family=None), "harmless": ev.filter(label="harmless", family=None)}
    cells: dict[tuple, list] = {}
    for p in ev:
        if p.label == "harmful" and p.family is not None:
            cells.setdefault((p.family, p.strength), []).append(p)
    jb = [p for key in sorted(cells) for p in cells[key][:study.scaled(cfg.jailbreak_per_cell)]]
    if jb:
        sets["jailbreak"] = PromptSet(f"{ev.name}:jailbreak-sample", tuple(jb), ev.source)
    for name, s in sets.items():
        s.require(f"held-out {name} set")
    return sets


def _resid_figure(patching) -> go.Figure:
    names = list(patching.resid)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=[f"resid_pre patched {n}" for n in names])
    for i, n in enumerate(names, 1):
        z = patching.resid[n]
        fig.add_trace(go.Heatmap(z=z.tolist(), x=[f"{j}:{t}" for j, t in enumerate(patching.positions)],
                                 y=list(range(z.shape[0])), zmin=-1, zmax=1, colorscale="RdBu_r", zmid=0,
                                 showscale=i == len(names), colorbar={"title": "effect"},
                                 hovertemplate="layer %{y}<br>position %{x}<br>effect %{z:.3f}<extra></extra>"),
                      row=1, col=i)
        fig.update_xaxes(title_text="post-instruction position", row=1, col=i)
        fig.update_yaxes(title_text="layer", dtick=1, row=1, col=i)
    fig.update_layout(title="Residual-stream patching (normalised effect on the refusal logit difference)",
                      template="plotly_white", width=900, height=380)
    return fig


def _lens_figure(lens: torch.Tensor, labels: list[str]) -> go.Figure:
    fig = go.Figure()
    for label in ("harmful", "harmless"):
        rows = torch.tensor([y == label for y in labels])
        if rows.any():
            fig.add_trace(go.Scatter(x=list(range(lens.shape[1])), y=lens[rows].mean(0).tolist(), mode="lines+markers",
                                     name=label))
    fig.update_layout(title="Logit lens: refusal - compliance logit difference read from each layer's resid_post",
                      xaxis_title="layer", yaxis_title="logit difference", template="plotly_white", xaxis={"dtick": 1})
    return fig


def _reference_words(policy: str, direction: str, method: str, positions: str = "position") -> str:
    if method == "zero":
        return "none (zero-ablation)"
    where = {"position": "each position counted from the end (the earlier tokens' mean before the window)",
             "last": "the last prompt token, applied at every position",
             "all": "the mean over every token, applied at every position"}[positions]
    if policy == "opposite":
        other = "harmless" if direction == "refusal" else "harmful"
        return (f"{other} training prompts ({method} at {where}): the label-free mean flipped nothing, so the "
                "heads were tested by replacing their output with the other label's")
    return f"harmful + harmless training prompts ({method} at {where})"


def _methods(cfg: CausalConfig) -> list[str]:
    from interp.causal.ablate import METHODS
    from interp.errors import InputError

    names = [m.strip() for m in (cfg.methods or "").split(",") if m.strip()]
    bad = [m for m in names if m not in METHODS]
    if bad:
        raise InputError(f"unknown ablation methods {bad} in CausalConfig.methods; choose from {METHODS}")
    return names


def _steering_evidence(model, recs: dict, patching_map, H, L, flip: str, cfg: CausalConfig):
    """Share of prompts each candidate head flips when steered alone (the candidates of every
    method and patching's top 2k): toward refusal on harmless prompts when the heads detect harm,
    toward compliance on harmful ones otherwise."""
    if not cfg.steer_sigmas:
        return None
    from interp.steering.heads import fit_head_directions
    from interp.causal.consensus import steering_flips

    cand = {tuple(h) for r in recs.values() for h in r.candidates}
    top = patching_map.abs().nan_to_num(-1.0).flatten().argsort(descending=True)[:2 * cfg.k].tolist()
    cand |= {divmod(i, model.n_heads) for i in top}
    if not cand:
        return None
    cand = sorted(cand)
    dirs = fit_head_directions(model, H.concat(L), heads=cand)
    sign, prompts = (1.0, L) if flip == "refusal" else (-1.0, H)
    return steering_flips(model, dirs, prompts, sign * cfg.steer_sigmas, heads=cand)


def causal_stage(study: Study, ranking=None, cfg: CausalConfig = CausalConfig()) -> CausalResult:
    """Search, patch, attribute, compare (with the probe `ranking` when given) and recommend."""
    from interp.progress import Steps

    with model_threads(study.model), Steps(7, label="causal") as steps:
        return _run_causal(study, ranking, cfg, steps)


def _run_causal(study: Study, ranking, cfg: CausalConfig, steps) -> CausalResult:
    model = study.model
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}
    t, c = time.perf_counter(), time.process_time()

    def lap(name):  # wall and CPU seconds per phase (CPU shows the work when the machine is shared)
        nonlocal t, c
        now, now_c = time.perf_counter(), time.process_time()
        timings[name], cpu[name] = round(now - t, 2), round(now_c - c, 2)
        t, c = now, now_c

    n_search = study.scaled(cfg.n_search, min(cfg.n_search, cfg.n_search_min))
    H = study.data.plain("train", "harmful")[:n_search].require("harmful training prompts")
    L = study.data.plain("train", "harmless")[:n_search].require("harmless training prompts")
    new_tokens = cfg.max_new_tokens or study.gen.max_new_tokens
    scfg = SearchConfig(max_heads=cfg.k, method=cfg.method, reference=cfg.reference, seed=cfg.seed, top_k=cfg.top_k,
                        exhaustive=cfg.exhaustive)
    steps.next("head search")
    search = search_heads(model, H, L, scfg, study.judge, new_tokens)
    lap("search")
    pairs = equal_length_pairs(model, study.data.plain("train", "harmful"), study.data.plain("train", "harmless"),
                               study.scaled(cfg.n_pairs, 8), seed=cfg.seed)
    steps.next("activation patching")
    patching = activation_patching(model, *pairs, head_positions="all", exhaustive=cfg.exhaustive, top_k=cfg.top_k)
    lap("patching")
    both = H.concat(L)
    steps.next("direct logit attribution")
    dla = direct_logit_attribution(model, both)
    lens = logit_lens(model, both)
    lap("dla")
    steps.next("recommend heads")
    comparison = compare_methods(model, search, patching, dla, ranking, k=cfg.k)
    sets = _eval_sets(study, cfg)
    rcfg = RecommendConfig(k=cfg.k, seed=cfg.seed)
    plain = {k: sets[k] for k in ("harmful", "harmless")}
    rec = recommend_heads(model, H, L, cfg.k, search=search, comparison=comparison, cfg=rcfg,
                          held_out=plain["harmless" if search.best.flip == "refusal" else "harmful"])
    lap("recommend")
    # the same search and recommendation under the other ablation methods, side by side
    steps.next("the other ablation methods")
    alt = by_method(model, H, L, [m for m in _methods(cfg) if m != cfg.method], scfg, rcfg, study.judge, new_tokens,
                    held_out=plain, clean=search.clean)
    flips = _steering_evidence(model, {cfg.method: rec, **alt}, patching.head_effect, H, L, rec.flip, cfg)
    agree = consensus({cfg.method: rec, **alt}, patching=patching.head_effect, steering=flips, k=cfg.k)
    if flips is not None:
        agree["steering"] = {"sigmas": cfg.steer_sigmas, "flips": {f"{l},{h}": round(float(flips[l, h]), 4)
                                                                  for l, h in zip(*torch.nonzero(~flips.isnan(), as_tuple=True))}}
    lap("methods")
    recs = {cfg.method: rec, **alt}
    # the heads ablation, patching and a search agree on, tested as a set (interp.causal.converge);
    # when none is confident, the method's set the ablation methods agree on most (consensus.choose)
    steps.next("converged heads")
    conv_method, conv_rec, agree["converged"] = converge(model, H, L, recs, patching.head_effect, cfg.method, rcfg,
                                                         study.judge, new_tokens, held_out=plain)
    conv, top = [tuple(h) for h in agree["converged"]["heads"]], agree["converged"]["top"]
    lap("converge")
    if conv_rec is not None:
        chosen, rec, search = conv_method, conv_rec, conv_rec.search
        added = agree["converged"]["tried"][-1]["added"]
        why = (f"the converged heads {list(conv)} (found by a search, top {top} by single-head ablation and by "
               f"patching){f', grown by the greedy steps with {[tuple(h) for h in added]},' if added else ''} "
               f"confirmed under {conv_method} ablation")
    else:
        chosen, why = choose(recs, cfg.method, agree["table"])
        if conv:
            why += f"; the converged heads {list(conv)} were not confirmed under any method"
        if chosen != cfg.method:
            rec, search = alt[chosen], alt[chosen].search
    method = search.cfg.method

    # behaviour on held-out prompts: the recommended (or best-guess) set against random sets
    heads = rec.heads or rec.candidates
    K = len(heads) or cfg.k
    ref = search.references[rec.flip]
    rng = random.Random(cfg.seed)
    others = [h for h in all_heads(model) if h not in heads]
    random_sets = [rng.sample(others, min(K, len(others))) for _ in range(cfg.n_random)]
    # when the heads were found with the other label's mean, also report them under a label-free
    # mean: the gap between the two is the redundancy the label-free ablation ran into
    bref = (head_reference(model, both, scfg.positions)
            if heads and search.cfg.reference == "opposite" and method != "zero" else None)
    # what the model does with the recommended heads silenced label-free (the search read its own best
    # set; the recommendation may be another: the converged heads, or another method's)
    same = {tuple(h) for h in search.neutral.get("heads", [])} == set(heads)
    reading = search.neutral if same else neutral_reading(model, list(heads), H, L, search.cfg)
    steps.next("held-out behaviour against random heads")
    measured = measure(study, sets, heads, random_sets, method, ref, cfg.seed, new_tokens, bref)
    lap("measure")

    ablation = {
        "heads": [list(h) for h in heads], "k": K, "method": method, "chosen": why, "direction": rec.flip,
        "confident": rec.confident, "label": rec.to_dict()["label"], "specificity": rec.specificity,
        "max_new_tokens": new_tokens, "agreement": (rec.checked or search.best).agreement(),
        "reference": _reference_words(search.cfg.reference, rec.flip, method, search.cfg.positions),
        "mechanism": reading.get("mechanism"), "mechanism_of": reading.get("heads", []),
        **measured,
        "n": {k: len(v) for k, v in sets.items()},
        "search": search.to_dict(),
    }
    labels = both.labels
    out = {
        "ablation": ablation,
        "patching": {**patching.to_dict(), "figure": figure_ref("causal_resid_patching")},
        "dla": {"harmful": dla.summary("harmful"), "harmless": dla.summary("harmless"),
                "head_difference": dla.head_difference().tolist(),
                "logit_lens": {lab: lens[torch.tensor([y == lab for y in labels])].mean(0).tolist() for lab in ("harmful", "harmless")},
                "figure": figure_ref("causal_logit_lens"),
                "note": "contributions sum to the actual logit difference minus const (the b_U term); final RMSNorm "
                        "scale frozen at each prompt's own run"},
        "correlations": comparison.correlations,
        "top_overlap": {"k": comparison.k, **comparison.top_overlap},
        "recommended_heads": [list(h) for h in rec.heads],
        "recommendation": {**rec.to_dict(), "chosen": why},
        "methods": {**agree, "chosen": chosen, "recommendations": {m: r.to_dict() for m, r in recs.items()}},
        "table": comparison.table(),
        "figure": figure_ref("causal_methods"),
        "config": {**asdict(cfg), "n_search_used": len(H), "n_pairs_used": len(pairs[0])},
    }
    figures = {"causal_resid_patching": _resid_figure(patching), "causal_logit_lens": _lens_figure(lens, labels),
               "causal_methods": comparison.figure(f"Which heads matter: {model.name}")}
    lap("figures")
    out["timings"] = {"wall": timings, "cpu": cpu}
    return CausalResult(out, figures, {}, list(rec.heads), rec)
