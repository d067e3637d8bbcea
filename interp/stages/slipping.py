"""Pipeline stage "slipping" (where attention goes as jailbreaks strengthen) on the study's
held-out test split; its companion "defenses" (attention sharpening against SmoothLLM and Token
Highlighter on the same prompts) is `interp.stages.defenses`.

Budget: both together well under a minute on the organism (2 CPU cores): the trace runs once
over a per-cell subsample of the held-out set, the defenses over a smaller subsample (plain
requests plus each family at a middle and its top strength); SmoothLLM is the expensive one
(N generations per prompt).

Honesty rules kept here: heads chosen by correlation are chosen on one half of the prompts and
the correlation is reported on the other half (unless a probe ranking from an earlier section
chose them); sharpening's temperature and the heads it acts on are chosen on the validation
split under the steering calibrations' harmless-refusal budget, never on the test split. Jailbreak cells the model was trained to comply
with (`StudyData.trained_comply`: planted, not found) are reported apart.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import torch

from interp.study import StageResult, Study, figure_ref
from interp.slipping.attack import AttackConfig, attack_summary, run_attacks, topic_words
from interp.slipping.defense_eval import subsample
from interp.slipping.figures import attention_refusal_lines, correlation_heatmap, step_heatmap, token_heatmap
from interp.slipping.series import SlippingSeries, attack_series, pearson, series_from_trace
from interp.slipping.trace import TraceConfig, token_attention, trace_attention, window_reach
from interp.stats import rate_record


@dataclass(frozen=True)
class SlippingDemoConfig:
    per_cell: int = 10  # harmful prompts traced per (family, strength)
    control_per_cell: int = 5  # harmless prompts traced per cell (the dilution control)
    max_new_tokens: int = 4
    k: int = 4  # top heads
    attack_prompts: int = 3
    defense_per_cell: int = 4
    sharpen_T: float = 0.25  # used only without validation prompts; otherwise calibrated (defense_evidence.calibrated_sharpening)
    seed: int = 0


CFG = SlippingDemoConfig()


@dataclass
class SlippingResult(StageResult):
    top_heads: list = None
    series: dict = None  # family -> SlippingSeries (harmful prompts)


def _heads_from_ranking(ranking, k: int, model) -> list[tuple[int, int]] | None:
    if ranking is None or not hasattr(ranking, "top"):
        return None
    try:
        heads = [(int(l), int(h)) for l, h in ranking.top(k)]
    except Exception:  # a ranking of another shape: fall back to our own selection
        return None
    ok = all(0 <= l < model.n_layers and 0 <= h < model.n_heads for l, h in heads)
    return heads if heads and ok else None


def _mean_heads(att, heads) -> torch.Tensor:
    """[batch, layer, head] -> [batch] mean over (layer, head) pairs."""
    return torch.stack([att[:, l, h] for l, h in heads], -1).mean(-1)


def _pooled(series: list[SlippingSeries], heads, idx_filter=None) -> dict:
    """Correlations pooled over families: per prompt, per step (family, strength), within step."""
    xs, ys, xw, yw, sx, sy = [], [], [], [], [], []
    for s in series:
        for step, t in zip(s.steps, s.traces):
            a = _mean_heads(t.on("request"), heads)
            sc = t.refusal_score
            if idx_filter is not None:
                keep = [i for i, p in enumerate(t.prompts) if idx_filter(p)]
                if not keep:
                    continue
                a, sc = a[keep], sc[keep]
            xs.append(a), ys.append(sc)
            xw.append(a - a.mean()), yw.append(sc - sc.mean())
            sx.append(a.mean()), sy.append(sc.mean())
    if not xs:
        return {"prompt": float("nan"), "step": float("nan"), "within_step": float("nan"), "n_prompts": 0}
    r = lambda x, y: round(float(pearson(torch.cat(x) if x[0].ndim else torch.stack(x), torch.cat(y) if y[0].ndim else torch.stack(y))), 4)
    return {"prompt": r(xs, ys), "step": r(sx, sy), "within_step": r(xw, yw), "n_prompts": int(sum(len(x) for x in xs))}


def slipping_stage(study: Study, ranking=None, cfg: SlippingDemoConfig = CFG) -> SlippingResult:
    """Trace attention on the request over every jailbreak family's strengths and over an attack's
    course; the top heads come from the probe `ranking` when given."""
    from interp.progress import Steps

    with Steps(4, label="slipping") as steps:
        return _slipping(study, ranking, cfg, steps)


def _slipping(study: Study, ranking, cfg: SlippingDemoConfig, steps) -> SlippingResult:
    model = study.model
    ev = study.data.test
    harmful = subsample(ev, study.scaled(cfg.per_cell, 2), seed=cfg.seed, labels=("harmful",))
    harmless = subsample(ev, study.scaled(cfg.control_per_cell), seed=cfg.seed, labels=("harmless",))
    steps.next(f"trace attention on {len(harmful) + len(harmless)} prompts")
    trace = trace_attention(model, harmful.concat(harmless, "slipping-traced"), TraceConfig(max_new_tokens=cfg.max_new_tokens),
                            judge=study.judge)
    traced = study.record(trace.prompts, trace.answers, trace.refused, trace.refusal_score.tolist(), "slipping:trace",
                          max_new_tokens=cfg.max_new_tokens) if cfg.max_new_tokens > 0 else []
    fams = sorted(ev.families())
    series = {f: series_from_trace(trace, f, "harmful") for f in fams}
    control = {f: series_from_trace(trace, f, "harmless") for f in fams}

    # heads: the probe ranking of an earlier section, else chosen on even prompt ids, scored on odd ones
    ranked = _heads_from_ranking(ranking, cfg.k, model)
    ids = {p.id: i for i, p in enumerate(harmful)}
    half = lambda p, par: ids.get(p.id, 0) % 2 == par
    if ranked:
        top, source, score_filter = ranked, "probe ranking (the heads stage)", None
    else:
        sel = _select_heads(list(series.values()), cfg.k, lambda p: half(p, 0))
        top, source, score_filter = sel, "within-step correlation on half of the prompts; r reported on the other half", (lambda p: half(p, 1))
        if not sel:  # too few prompts per cell to split honestly
            sel = _select_heads(list(series.values()), cfg.k, lambda p: True)
            top, source, score_filter = sel, "within-step correlation on the same prompts (too few to split)", None
    pooled = _pooled(list(series.values()), top, score_filter)

    rows, per_family = [], {}
    for f, s in series.items():
        att_top = s.attention("request")
        li = [(s.layers.index(l), h) for l, h in top]
        att = torch.stack([att_top[:, l, h] for l, h in li], -1).mean(-1)
        att_all = att_top.mean((1, 2))
        c_att = control[f].attention("request")
        c = torch.stack([c_att[:, l, h] for l, h in li], -1).mean(-1)
        for i, st in enumerate(s.steps):
            cell = [r for r in traced if r.label == "harmful" and (r.family == f and r.strength == int(st)
                                                                   or int(st) == 0 and r.family is None)]
            rows.append({"family": f, "strength": int(st), "attention_on_request": round(float(att[i]), 4),
                         "refusal_score": round(float(s.refusal_score[i]), 4),
                         "refusal_rate": rate_record([r.refused for r in cell]) if cell else round(float(s.refusal_rate[i]), 4),
                         "n": s.n_prompts[i]})
        fam_pooled = _pooled([s], top, score_filter)
        falls = bool(att[-1] < att[0] - 0.01)
        sm_top = s.span_mass()[-1]
        per_family[f] = {
            "strengths": [int(x) for x in s.steps],
            "attention_on_request": [round(float(x), 4) for x in att],
            "attention_on_request_all_heads": [round(float(x), 4) for x in att_all],
            "harmless_control_attention_on_request": [round(float(x), 4) for x in c],
            "refusal_score": [round(float(x), 4) for x in s.refusal_score],
            "refusal_rate": [r["refusal_rate"] for r in rows if r["family"] == f],
            "correlation": fam_pooled["prompt"], "correlation_steps": fam_pooled["step"],
            "correlation_within_step": fam_pooled["within_step"],
            "attention_falls": falls,
            "where_attention_goes_at_top_strength": {sp: round(float(sm_top[j]), 4) for j, sp in enumerate(trace.spans)
                                                      if float(sm_top[j]) > 0.001},
            "top_heads_by_correlation": [list(h) for h in s.top_heads(cfg.k)],
        }
        if not falls:
            per_family[f]["note"] = "attention on the request does not fall as this jailbreak strengthens"

    # an attack's course: the organism falls to single harmless topic words, so the study's topic
    # words are excluded to give a course of several iterations; few candidates per iteration for
    # the same reason
    plain = [p for p in harmful if p.family is None][:study.scaled(cfg.attack_prompts)]
    acfg = AttackConfig(n_tokens=3, n_iters=8, n_candidates=8, exclude=topic_words(study.data.plain("train")), seed=cfg.seed)
    steps.next(f"attacks on {len(plain)} prompts")
    attacks = run_attacks(model, plain, acfg, judge=study.judge)
    attack_success = {}
    for method, results in attacks.items():  # each attack's final answer, kept (label harmful: refused = not broken)
        kept = study.record([r.final for r in results], [r.answer for r in results], [not r.success for r in results],
                            None, f"slipping:attack_{method}", max_new_tokens=acfg.max_new_tokens)
        attack_success[method] = {"success": rate_record([not r.refused for r in kept]), "condition": f"slipping:attack_{method}"}
    steps.next("attention over the attack's course")
    aseries = attack_series(model, attacks["guided"], cfg=TraceConfig(max_new_tokens=0))
    a_att = _mean_heads(torch.stack([t.on("request").mean(0) for t in aseries.traces]), top)

    # the token-level example: a topic-mixing prompt (the organism's found, all-or-nothing jailbreak)
    # at its lowest strength, else the lowest strength of the first family
    jb = sorted((p for p in harmful if p.family is not None), key=lambda p: (p.family != "topicmix", p.strength, p.family))
    example = jb[0] if jb else None
    figures = {"slipping_heatmap_steps": step_heatmap(series["distractor"] if "distractor" in series else next(iter(series.values()))),
               "slipping_lines": attention_refusal_lines(list(series.values()), top),
               "slipping_correlation": correlation_heatmap(_concat_series(list(series.values())), "within")}
    steps.next("figures")
    if example is not None:
        mat, keys, queries = token_attention(model, example, max_new_tokens=6, heads=top)
        figures[f"slipping_tokens_{example.family}"] = token_heatmap(
            mat, keys, queries, f"Attention of the top heads from the response: {example.text}",
            n_prompt=model.encode([example]).lengths[0])
    report = {
        "series": rows, "correlation": pooled["prompt"], "correlations": pooled, "top_heads": [list(h) for h in top],
        "top_heads_source": source, "per_family": per_family, "sliding_windows": window_reach(model, trace),
        "attack": {"summary": attack_summary(attacks), "success": attack_success,
                   "course": [{"iteration": int(it), "attention_on_request": round(float(a_att[i]), 4),
                               "refusal_score": round(float(aseries.refusal_score[i]), 4)} for i, it in enumerate(aseries.steps)],
                   "examples": [r.to_dict() for r in attacks["guided"][:1]],
                   "config": {"n_tokens": acfg.n_tokens, "n_iters": acfg.n_iters, "n_candidates": acfg.n_candidates,
                              "excluded_topic_words": True}},
        "n_traced": len(trace), "query": "first response position (the last prompt token)",
        "condition": "slipping:trace" if traced else None,
        "figures": [figure_ref(n) for n in figures],
    }
    return SlippingResult(report, figures, {}, top, series)


def _concat_series(series: list[SlippingSeries]) -> SlippingSeries:
    steps, traces = [], []
    for s in series:
        steps += [f"{s.name}:{x}" for x in s.steps]
        traces += s.traces
    return SlippingSeries("all families", steps, traces)


def _select_heads(series: list[SlippingSeries], k: int, keep) -> list[tuple[int, int]]:
    """Heads whose attention on the request correlates most with refusal within steps (free of the
    dilution by longer jailbreaks), on the prompts `keep` accepts."""
    sub = []
    for s in series:
        traces, steps = [], []
        for st, t in zip(s.steps, s.traces):
            idx = [i for i, p in enumerate(t.prompts) if keep(p)]
            if len(idx) >= 2:
                traces.append(t.subset(idx)), steps.append(st)
        if traces:
            sub.append(SlippingSeries(s.name, steps, traces))
    if not sub:  # too few prompts per step
        return []
    r = _concat_series(sub).within_step_correlation()
    flat = r.flatten().argsort(descending=True)[:k]
    H = r.shape[1]
    return [(int(i) // H, int(i) % H) for i in flat]


def attention_tokens_stage(study: Study, top_heads=None) -> StageResult:
    """Figures only (`safety-heads figures` asks for it; no report numbers): one token-level
    attention heatmap per jailbreak family of the held-out split (a harmful prompt at the family's
    middle strength), averaged over the slipping stage's top heads (all heads if none)."""
    model, test = study.model, study.data.test
    heads = [tuple(h) for h in top_heads or []] or None
    figures = {}
    for family, strengths in test.families().items():
        strength = max(1, max(strengths) // 2)
        strength = strength if strength in strengths else strengths[0]
        cell = test.filter(label="harmful", family=family, strength=strength)
        if not len(cell):
            continue
        p = cell[0]
        mat, keys, queries = token_attention(model, p, max_new_tokens=6, heads=heads)
        who = f"heads {', '.join(f'L{l}H{h}' for l, h in heads)}" if heads else "all heads"
        text = p.text if len(p.text) <= 110 else p.text[:107] + "..."
        figures[f"attention_tokens_{family}"] = token_heatmap(
            mat, keys, queries, f"Attention from the response: {family} jailbreak (strength {strength}), "
            f"{who}<br><sup>{html.escape(text)}</sup>", n_prompt=model.encode([p]).lengths[0])
    return StageResult({}, figures)
