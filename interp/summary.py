"""`summary.md`: what a study found, for a person to read first, rendered from its `report.json`
alone (no number is typed or computed here: every one is a value of the report, at most rounded).

Sections, each present when the report has the part it reads: the model and the data; which heads
(the probe ranking, the causal recommendation) and which direction, with their evidence; what
steering does at each method's chosen point (safety against utility, every rate with n and its 95%
interval, and where each intervention is saved); how jailbreaks move attention; which defenses
help; the figures. A part whose format this renderer does not know is named, not guessed at.
"""

from __future__ import annotations

import json
from pathlib import Path

DIGITS = 4


def num(x) -> str:
    """A report value as printed: rounded to DIGITS decimals, records with n and interval."""
    if isinstance(x, dict) and "rate" in x:
        if x.get("rate") is None:
            return "n/a (n=0)"
        ci = x.get("ci95") or [None, None]
        return f"{num(x['rate'])} (n={x.get('n')}, 95% CI {num(ci[0])} to {num(ci[1])})"
    if isinstance(x, dict) and "mean" in x:
        ci = x.get("ci95") or [None, None]
        return f"{num(x['mean'])} (n={x.get('n')}, 95% CI {num(ci[0])} to {num(ci[1])})"
    if isinstance(x, bool) or x is None:
        return str(x).lower() if x is not None else "n/a"
    if isinstance(x, float):
        if x != x:
            return "n/a"
        r = round(x, DIGITS)
        return str(int(r)) if r == int(r) and abs(r) < 1e15 else f"{r:.{DIGITS}f}".rstrip("0")
    return str(x)


def heads(hs) -> str:
    return ", ".join(f"L{h[0]}H{h[1]}" for h in hs or []) or "none"


def _model(r: dict) -> list[str]:
    m, cfg, data = r.get("model", {}), r.get("config", {}), r.get("data", {})
    out = ["## Model and data",
           f"- model: `{m.get('name')}` ({m.get('kind')}), {m.get('n_layers')} layers x {m.get('n_heads')} heads "
           f"({m.get('n_kv_heads')} key/value heads), d_model {m.get('d_model')}, fingerprint `{m.get('fingerprint')}`"]
    sizes = data.get("sizes", {})
    if sizes:
        out.append(f"- data: {data.get('provider')} prompts, seed {data.get('seed')}; "
                   + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    for cap in data.get("caps", []) or []:
        out.append(f"- cap: {json.dumps(cap)}")
    j = r.get("judge") or {}
    # a causal run's own config leaves the answer length to the study: the stage records what it used
    new_tokens = cfg.get("max_new_tokens") or ((r.get("causal") or {}).get("ablation") or {}).get("max_new_tokens")
    if j or cfg:
        out.append(f"- judge: {j.get('type', 'substring')} ({j.get('n_phrases')} phrases; answers shorter than "
                   f"{j.get('min_words')} word(s) count as refusals), greedy answers of {new_tokens} tokens"
                   + (f"; probe labels: {labels}" if (labels := r.get("labels", cfg.get("labels"))) else ""))
    b = r.get("baseline", {}).get("refusal_rate")
    if b:
        out.append(f"- unsteered refusal on the held-out split: harmful {num(b.get('harmful'))}, harmless "
                   f"{num(b.get('harmless'))} ({r['baseline'].get('n_prompts')} prompts)")
    over = r.get("baseline", {}).get("over_refusal")
    if over:
        out.append(f"- over-refusal look-alikes: refusal {num(over.get('refusal_rate'))} (n={over.get('n')})")
    return out


def _heads(r: dict) -> list[str]:
    out = ["## Heads"]
    h = r.get("heads")
    if h:
        out += [f"Probe ranking ({h.get('labels')} labels, {h.get('k_folds')}-fold cross-validation on "
                f"{h.get('n_prompts')} training prompts, {h.get('position')}):", "",
                "| head | accuracy | accuracy sd | AUROC | separation (Cohen's d) |", "|---|---|---|---|---|"]
        out += [f"| L{x['layer']}H{x['head']} | {num(x.get('accuracy'))} | {num(x.get('accuracy_std'))} | "
                f"{num(x.get('auroc'))} | {num(x.get('separation'))} |" for x in h.get("ranking", [])[:5]]
        out.append("")
    c = r.get("causal")
    if c:
        a = c.get("ablation", {})
        rec = c.get("recommended_heads") or []
        out.append(f"Causal recommendation: {heads(rec)} ({'confident' if a.get('confident') else 'not confident'}; "
                   f"ablation method {a.get('method')}, direction {a.get('direction')}).")
        for why in (c.get("recommendation") or {}).get("reasons", [])[:2]:
            out.append(f"- {why}")
        base, n = a.get("baseline", {}), a.get("n", {})
        for lab in ("harmful", "harmless", "jailbreak"):
            after = a.get(f"refusal_rate_{lab}_after")
            if lab in base and after is not None:
                rnd = a.get(f"random_heads_refusal_rate_{lab}_after")
                out.append(f"- {lab} refusal (held out, n={n.get(lab)}): {num(base[lab].get('refusal_rate'))} unablated, "
                           f"{num(after)} with {heads(a.get('heads'))} ablated"
                           + (f", {num(rnd)} with random heads (mean of {len(a.get('random_heads', []))} sets)" if rnd is not None else ""))
    return out if len(out) > 1 else []


def _direction(r: dict) -> list[str]:
    d = r.get("directions")
    st = (r.get("steering") or {}).get("direction")
    if not d and not st:
        return []
    out = ["## Refusal direction"]
    if d:
        c = d.get("chosen", {})
        out.append(f"- chosen: {c.get('site')} layer {c.get('layer')}, position {c.get('position')} "
                   f"(`{c.get('token')}`); passed every filter: {num(c.get('passed_filters'))}")
        out.append(f"- refusal score of harmful prompts: {num(d.get('baseline', {}).get('harmful'))} unsteered, "
                   f"{num(c.get('ablation_score'))} with it ablated; harmless with it added: {num(c.get('addition_score'))}; "
                   f"KL {num(c.get('kl'))} (validation split)")
    if st:
        out.append(f"- judged on held-out answers: harmful refusal {num(st.get('ablation_harmful_refusal_rate'))} under "
                   f"ablation, harmless refusal {num(st.get('addition_harmless_refusal_rate'))} under addition "
                   f"(source: {st.get('source')})")
    return out


def _steering(r: dict) -> list[str]:
    st, ivs = r.get("steering"), r.get("interventions", {})
    if not st:
        return []
    out = ["## Steering: safety against utility at each method's chosen point",
           f"Chosen point: {st.get('calibration')}.", "",
           "| method | strength | harmful refusal | jailbreak refusal | harmless refusal | saved as |", "|---|---|---|---|---|---|"]
    rows = st.get("tradeoff", [])
    base = next((x for x in rows if x.get("method") == "unsteered"), None)
    if base:
        out.append(f"| unsteered | 0 | {num(base.get('harmful'))} | {num(base.get('jailbreak'))} | {num(base.get('harmless'))} | |")
    for name, iv in ivs.items():
        if str(iv.get("method", "")).startswith("defense"):
            continue
        m = iv.get("measured") or {}
        strength = "" if iv.get("strength") is None else f"{num(iv['strength'])} {iv.get('unit')}"
        out.append(f"| {iv.get('method')} | {strength} | {num(m.get('harmful')) if 'harmful' in m else '-'} | "
                   f"{num(m.get('jailbreak')) if 'jailbreak' in m else '-'} | {num(m.get('harmless')) if 'harmless' in m else '-'} "
                   f"| [{iv.get('path')}]({iv.get('path')}) |")
    h, lay = st.get("hsi", {}), st.get("layer", {})
    if h and lay:
        out += ["", f"Head steering on {heads(h.get('heads'))} ({h.get('heads_source')}) moves the refusal score of "
                    f"jailbreaks by {num(h.get('effect'))}; steering the whole layer at the same strength by "
                    f"{num(lay.get('effect'))} (ratio {num(lay.get('ratio_heads_to_layer'))})."]
    out.append("Apply one: `safety-heads apply --intervention OUT/interventions/<name>` (its prompts and judge by default).")
    return out


def _slipping(r: dict) -> list[str]:
    s = r.get("slipping")
    if not s:
        return []
    c = s.get("correlations", {})
    out = ["## Jailbreaks and attention",
           f"Top heads {heads(s.get('top_heads'))} ({s.get('top_heads_source')}). Correlation of their attention on the "
           f"request with the refusal score: {num(c.get('prompt', s.get('correlation')))} over prompts, "
           f"{num(c.get('step'))} over strengths, {num(c.get('within_step'))} within a strength ({c.get('n_prompts')} prompts).", "",
           "| family | strengths | attention on the request (weakest -> strongest) | refusal rate (weakest -> strongest) |",
           "|---|---|---|---|"]
    for fam, f in (s.get("per_family") or {}).items():
        att, rr, ss = f.get("attention_on_request", []), f.get("refusal_rate", []), f.get("strengths", [])
        if att and rr and ss:
            out.append(f"| {fam} | {ss[0]} to {ss[-1]} | {num(att[0])} -> {num(att[-1])} | {num(rr[0])} -> {num(rr[-1])} |")
    return out


def _defenses(r: dict) -> list[str]:
    d = r.get("defenses")
    if not d:
        return []
    ivs = r.get("interventions", {})
    out = ["## Defenses", f"Same {d.get('n_prompts')} held-out prompts for each.", "",
           "| defense | jailbreak success | harmful refusal | harmless refusal | forward passes per prompt | saved as |",
           "|---|---|---|---|---|---|"]
    for name, row in d.items():
        if isinstance(row, dict) and "jailbreak_success" in row:
            path = ivs.get(name, {}).get("path")
            out.append(f"| {name} | {num(row.get('jailbreak_success'))} | {num(row.get('harmful_refusal'))} | "
                       f"{num(row.get('harmless_refusal'))} | {num(row.get('cost', {}).get('forward_per_prompt'))} | "
                       + (f"[{path}]({path}) |" if path else " |"))
    return out


def figures(r, found=None) -> list[str]:
    """Every figure the report refers to (values of "figure*" keys), in order."""
    found = [] if found is None else found
    if isinstance(r, dict):
        for k, v in r.items():
            if k.startswith("figure") and isinstance(v, str) and v.endswith(".html"):
                found.append(v)
            elif k.startswith("figure") and isinstance(v, list):
                found += [x for x in v if isinstance(x, str) and x.endswith(".html")]
            else:
                figures(v, found)
    elif isinstance(r, list):
        for v in r:
            figures(v, found)
    return list(dict.fromkeys(found))


def render(report: dict, title: str | None = None) -> str:
    name = report.get("model", {}).get("name", "model")
    lines = [f"# {title or 'What this study found'}: {name}",
             "Generated from report.json: every number below is a value of that file (rounded to "
             f"{DIGITS} decimals). Rates with n and a 95% interval where the report records them.", ""]
    for part in (_model, _heads, _direction, _steering, _slipping, _defenses):
        try:
            body = part(report)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            body = [f"## {part.__name__.strip('_')}", f"(not summarised: the report's part has a format this summary "
                                                      f"does not read: {type(e).__name__})"]
        if body:
            lines += body + [""]
    figs = figures(report)
    if figs:
        lines += ["## Figures"] + [f"- [{Path(f).stem}]({f})" for f in figs] + [""]
    return "\n".join(lines)


def write_summary(out: str | Path, report: dict | None = None, title: str | None = None) -> Path:
    """Write `out/summary.md` from `report` (default: `out/report.json`)."""
    out = Path(out)
    if report is None:
        report = json.loads((out / "report.json").read_text())
    path = out / "summary.md"
    path.write_text(render(report, title))
    return path


__all__ = ["render", "write_summary", "figures", "num"]
