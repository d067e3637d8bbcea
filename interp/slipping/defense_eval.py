"""Defenses side by side on the same prompts: jailbreak success per family and strength, harmful
and harmless refusal (over-refusal), and cost (prompt-length forward passes and wall time per
prompt).

Jailbreak success of a cell = fraction of its harmful prompts that the judge says were complied
with (1 - refusal rate). Strength 0 is the plain harmful request. Harmless refusal is reported
plain and under every wrapper (pooled): a defense that refuses everything would "win" on
jailbreaks and show up here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from interp.errors import InputError
from interp.generation import GenerationConfig
from interp.model import ChatModel
from interp.prompts import PromptSet
from interp.scoring import RefusalJudge
from interp.slipping.defenses import DefenseOutput
from interp.threads import model_threads


def subsample(prompts: PromptSet, per_cell: int, seed: int = 0, families=None, strengths=None,
              labels=("harmful", "harmless")) -> PromptSet:
    """At most `per_cell` prompts of every (label, family, strength) cell (plain prompts are the
    cell (label, None, None)); `strengths` maps a family to the strengths to keep."""
    if per_cell < 1:
        raise InputError(f"per_cell must be >= 1, got {per_cell}")
    rng = random.Random(seed)
    cells: dict[tuple, list] = {}
    for p in prompts:
        if p.label not in labels:
            continue
        if p.family is not None and families is not None and p.family not in families:
            continue
        if p.family is not None and strengths and p.family in strengths and p.strength not in strengths[p.family]:
            continue
        cells.setdefault((p.label, p.family, p.strength), []).append(p)
    keep = []
    for key in sorted(cells, key=lambda k: (k[0], k[1] or "", k[2] or 0)):
        group = cells[key]
        keep += group if len(group) <= per_cell else rng.sample(group, per_cell)
    return PromptSet(f"{prompts.name}:sub{per_cell}", tuple(keep), prompts.source)


@dataclass
class DefenseRow:
    name: str
    jailbreak_success: dict  # family -> {strength: success rate}; "0" = plain harmful
    harmful_refusal: float  # plain harmful requests
    harmless_refusal: float  # plain harmless requests (over-refusal)
    harmless_refusal_wrapped: float  # harmless requests under every wrapper
    jailbreak_success_mean: float  # over every jailbreak cell (strength >= 1)
    forward_per_prompt: float
    backward_per_prompt: float
    seconds_per_prompt: float
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        r = lambda x: round(float(x), 4)
        return {"jailbreak_success": r(self.jailbreak_success_mean),
                "harmless_refusal": r(self.harmless_refusal), "harmless_refusal_wrapped": r(self.harmless_refusal_wrapped),
                "harmful_refusal": r(self.harmful_refusal), "per_family": self.jailbreak_success,
                "cost": {"forward_per_prompt": r(self.forward_per_prompt), "backward_per_prompt": r(self.backward_per_prompt),
                         "seconds_per_prompt": round(self.seconds_per_prompt, 5)}, **self.meta}


@dataclass
class DefenseTable:
    prompts: PromptSet
    rows: dict[str, DefenseRow]
    outputs: dict[str, DefenseOutput]

    def to_dict(self) -> dict:
        return {name: row.to_dict() for name, row in self.rows.items()}

    def markdown(self) -> str:
        """One line per defense: mean jailbreak success, per-family success at the top strength,
        harmful/harmless refusal and cost."""
        fams = sorted({f for row in self.rows.values() for f in row.jailbreak_success})
        head = ["defense", "jailbreak success (mean)"] + [f"{f} @max" for f in fams] + \
               ["harmful refusal", "harmless refusal", "harmless refusal (wrapped)", "fwd/prompt", "ms/prompt"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, row in self.rows.items():
            top = []
            for f in fams:
                cells = row.jailbreak_success.get(f, {})
                s = max((int(k) for k in cells), default=None)
                top.append(f"{cells[str(s)]:.2f}" if s is not None else "-")
            lines.append("| " + " | ".join([name, f"{row.jailbreak_success_mean:.2f}"] + top +
                                          [f"{row.harmful_refusal:.2f}", f"{row.harmless_refusal:.2f}",
                                           f"{row.harmless_refusal_wrapped:.2f}", f"{row.forward_per_prompt:.1f}",
                                           f"{1000 * row.seconds_per_prompt:.1f}"]) + " |")
        return "\n".join(lines)


def _rate(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else float("nan")


def _row(name: str, prompts: PromptSet, out: DefenseOutput) -> DefenseRow:
    refused = out.refused
    idx = lambda pred: [i for i, p in enumerate(prompts) if pred(p)]
    plain_h = idx(lambda p: p.label == "harmful" and p.family is None)
    plain_b = idx(lambda p: p.label == "harmless" and p.family is None)
    wrap_b = idx(lambda p: p.label == "harmless" and p.family is not None)
    per_family: dict[str, dict[str, float]] = {}
    jb_cells = []
    for fam, strengths in prompts.families().items():
        row = {}
        if plain_h:
            row["0"] = round(1 - _rate([refused[i] for i in plain_h]), 4)
        for s in strengths:
            cell = idx(lambda p, s=s: p.label == "harmful" and p.family == fam and p.strength == s)
            if cell:
                v = 1 - _rate([refused[i] for i in cell])
                row[str(s)] = round(v, 4)
                jb_cells.append(v)
        per_family[fam] = row
    n = max(1, len(prompts))
    return DefenseRow(name, per_family, _rate([refused[i] for i in plain_h]), _rate([refused[i] for i in plain_b]),
                      _rate([refused[i] for i in wrap_b]), sum(jb_cells) / len(jb_cells) if jb_cells else float("nan"),
                      out.forward_passes / n, out.backward_passes / n, out.seconds / n,
                      {k: v for k, v in out.meta.items() if k != "highlighted"})


def evaluate_defenses(model: ChatModel, prompts: PromptSet, defenses: dict, judge: RefusalJudge = RefusalJudge(),
                      gen: GenerationConfig = GenerationConfig(max_new_tokens=12, batch_size=64),
                      each: Callable[[str], None] | None = None) -> DefenseTable:
    """Run every defense (name -> object with `respond`) on the same prompts (`each(name)` as each
    starts: a stage's progress)."""
    prompts.require("defense evaluation set")
    if not defenses:
        raise InputError("no defenses to evaluate: pass a dict name -> defense (e.g. {'none': NoDefense()})")
    outs, rows = {}, {}
    for name, d in defenses.items():
        if each is not None:
            each(name)
        with model_threads(model):  # small models: one intra-op thread (interp.threads)
            out = d.respond(model, prompts, judge, gen)
        outs[name] = out
        rows[name] = _row(name, prompts, out)
    return DefenseTable(prompts, rows, outs)


def defense_figure(table: DefenseTable, title: str = "Defenses: jailbreak success and over-refusal") -> go.Figure:
    """Left: jailbreak success per family (at each family's top strength) per defense. Right:
    over-refusal and cost per defense."""
    from interp.plotting import error_bars
    from interp.stats import rate_record

    rows = table.rows
    fams = sorted({f for r in rows.values() for f in r.jailbreak_success})
    fig = make_subplots(rows=1, cols=2, column_widths=[0.65, 0.35],
                        subplot_titles=("jailbreak success at each family's top strength (lower is better)",
                                        "harmless refusal (lower is better)"))
    ps = table.prompts

    def flags(name, pred, complied=False):  # per-prompt verdicts of one defense on the prompts `pred` picks
        refused = table.outputs[name].refused
        return rate_record([refused[i] != complied for i, p in enumerate(ps) if pred(p)])

    for name, r in rows.items():
        ys, txt, recs = [], [], []
        for f in fams:
            cells = r.jailbreak_success.get(f, {})
            s = max((int(k) for k in cells), default=None)
            ys.append(cells.get(str(s)) if s is not None else None)
            txt.append(f"strength {s}")
            recs.append(flags(name, lambda p, f=f, s=s: p.label == "harmful" and p.family == f and p.strength == s, True)
                        if s is not None else {})
        fig.add_trace(go.Bar(x=fams, y=ys, name=name, legendgroup=name, customdata=txt, error_y=error_bars(recs),
                             hovertemplate=f"{name}<br>%{{x}} %{{customdata}}<br>success %{{y:.0%}}<extra></extra>"), 1, 1)
        hrecs = [flags(name, lambda p: p.label == "harmless" and p.family is None),
                 flags(name, lambda p: p.label == "harmless" and p.family is not None)]
        fig.add_trace(go.Bar(x=["plain", "wrapped"], y=[r.harmless_refusal, r.harmless_refusal_wrapped], name=name,
                             legendgroup=name, showlegend=False, error_y=error_bars(hrecs),
                             customdata=[[r.forward_per_prompt, 1000 * r.seconds_per_prompt]] * 2,
                             hovertemplate=(f"{name}<br>%{{x}} harmless refusal %{{y:.0%}}<br>"
                                            "forward passes/prompt %{customdata[0]:.1f}<br>ms/prompt %{customdata[1]:.1f}<extra></extra>")), 1, 2)
    title += "<br><sup>bars: 95% Wilson intervals over the prompts of each cell</sup>"
    fig.update_layout(title=title, barmode="group", template="plotly_white")
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%")
    return fig
