"""Attention slipping over a jailbreak's course: the request-span trace over an ordered series of
prompt sets (rising strength of a family, successive iterations of an attack, more in-context
examples), with the refusal score at each step and, per head, the correlation between attention
on the request and refusal.

Two correlations are reported per head: across steps (the dose-response: one point per step,
few points) and across prompts (every prompt of every step is a point: many points, and it also
sees variation within a step). Both are Pearson r; a head whose attention on the request falls
together with refusal has r > 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InputError
from interp.model import ChatModel
from interp.prompts import PromptSet
from interp.slipping.trace import SPANS, SlippingTrace, TraceConfig, as_prompts, trace_attention


def pearson(x: Float[Tensor, "n ..."], y: Float[Tensor, "n"]) -> Float[Tensor, "..."]:
    """Pearson r of each column of `x` with `y` (0 where either has no variance)."""
    x = x.double()
    y = y.double().reshape(-1, *([1] * (x.ndim - 1)))
    xc, yc = x - x.mean(0), y - y.mean(0)
    den = (xc.pow(2).sum(0) * yc.pow(2).sum(0)).sqrt()
    r = (xc * yc).sum(0) / den.clamp(min=1e-12)
    return torch.where(den > 1e-12, r, torch.zeros_like(r)).float()


@dataclass
class SlippingSeries:
    """One trace per step of an ordered series, summarised per step."""

    name: str
    steps: list  # step labels: strengths, iteration numbers, ...
    traces: list[SlippingTrace]
    query: str = "first"  # which query positions the summaries use: "first" or "response"

    def __post_init__(self) -> None:
        if len(self.steps) != len(self.traces) or not self.traces:
            raise InputError("a slipping series needs one trace per step and at least one step")
        if self.query not in ("first", "response"):
            raise InputError(f"query must be 'first' or 'response', got {self.query!r}")

    # ------------------------------------------------------------ per step
    def attention(self, span: str = "request") -> Float[Tensor, "step layer head"]:
        """Mean over the step's prompts of the attention mass on `span`."""
        return torch.stack([t.on(span, self.query).mean(0) for t in self.traces])

    def span_mass(self) -> Float[Tensor, "step span"]:
        """Where attention goes, averaged over prompts, layers and heads."""
        out = []
        for t in self.traces:
            m = t.first() if self.query == "first" else t.response()
            out.append(m.mean((0, 1, 2)))
        return torch.stack(out)

    @property
    def refusal_score(self) -> Float[Tensor, "step"]:
        return torch.stack([t.refusal_score.mean() for t in self.traces])

    @property
    def refusal_rate(self) -> Float[Tensor, "step"]:
        return torch.tensor([sum(t.refused) / len(t.refused) for t in self.traces], dtype=torch.float32)

    @property
    def n_prompts(self) -> list[int]:
        return [len(t.prompts) for t in self.traces]

    @property
    def layers(self) -> tuple[int, ...]:
        return self.traces[0].layers

    # ------------------------------------------------------------ correlations
    def step_correlation(self) -> Float[Tensor, "layer head"]:
        """Per head: r between mean attention on the request and mean refusal score across steps."""
        return pearson(self.attention("request"), self.refusal_score)

    def prompt_correlation(self) -> Float[Tensor, "layer head"]:
        """Per head: r across every prompt of every step (attention on request vs refusal score)."""
        x = torch.cat([t.on("request", self.query) for t in self.traces])
        y = torch.cat([t.refusal_score for t in self.traces])
        return pearson(x, y)

    def within_step_correlation(self) -> Float[Tensor, "layer head"]:
        """Per head: r across prompts after removing each step's mean from both sides. Within a
        step the jailbreak has the same length, so this is free of the mechanical dilution of
        attention by the jailbreak's extra tokens (0 where no step has variation in refusal)."""
        xs, ys = [], []
        for t in self.traces:
            a = t.on("request", self.query)
            xs.append(a - a.mean(0))
            ys.append(t.refusal_score - t.refusal_score.mean())
        return pearson(torch.cat(xs), torch.cat(ys))

    def concentration_correlation(self) -> Float[Tensor, "layer head"]:
        """Per head: r across prompts of (attention on request / request's token share) with the
        refusal score: does attention fall faster than the request's share of the tokens?"""
        x = torch.cat([t.on("request", self.query) / t.token_share("request")[:, None, None] for t in self.traces])
        y = torch.cat([t.refusal_score for t in self.traces])
        return pearson(x, y)

    def head_correlation(self, heads: Sequence[tuple[int, int]], per: str = "prompt") -> float:
        """r between the refusal score and the attention on the request averaged over `heads`."""
        idx = [(self.layers.index(l), h) for l, h in heads]
        if per == "step":
            a = self.attention("request")
            x = torch.stack([a[:, l, h] for l, h in idx], -1).mean(-1)
            return float(pearson(x, self.refusal_score))
        xs, ys = [], []
        for t in self.traces:
            a = t.on("request", self.query)
            xs.append(torch.stack([a[:, l, h] for l, h in idx], -1).mean(-1))
            ys.append(t.refusal_score)
        return float(pearson(torch.cat(xs), torch.cat(ys)))

    def top_heads(self, k: int = 4, per: str = "prompt") -> list[tuple[int, int]]:
        """Heads whose attention on the request tracks refusal most (largest positive r)."""
        r = self.prompt_correlation() if per == "prompt" else self.step_correlation()
        flat = r.flatten().argsort(descending=True)[:k]
        H = r.shape[1]
        return [(self.layers[int(i) // H], int(i) % H) for i in flat]

    def attention_falls(self, heads: Sequence[tuple[int, int]] | None = None, tol: float = 0.01) -> bool:
        """Whether attention on the request is lower at the last step than at the first."""
        a = self.attention("request")
        if heads:
            idx = [(self.layers.index(l), h) for l, h in heads]
            series = torch.stack([a[:, l, h] for l, h in idx], -1).mean(-1)
        else:
            series = a.mean((1, 2))
        return bool(series[-1] < series[0] - tol)

    def to_rows(self, heads: Sequence[tuple[int, int]] | None = None) -> list[dict]:
        """One row per step: attention on the request (over `heads`, else all heads), refusal."""
        a = self.attention("request")
        if heads:
            idx = [(self.layers.index(l), h) for l, h in heads]
            att = torch.stack([a[:, l, h] for l, h in idx], -1).mean(-1)
        else:
            att = a.mean((1, 2))
        sm = self.span_mass()
        return [{"step": s, "attention_on_request": round(float(att[i]), 4),
                 "refusal_score": round(float(self.refusal_score[i]), 4),
                 "refusal_rate": round(float(self.refusal_rate[i]), 4), "n": self.n_prompts[i],
                 "span_mass": {sp: round(float(sm[i, j]), 4) for j, sp in enumerate(SPANS) if float(sm[i, j]) > 0}}
                for i, s in enumerate(self.steps)]


def slipping_series(model: ChatModel, steps: Sequence, labels: Sequence | None = None, name: str = "series",
                    cfg: TraceConfig = TraceConfig(), query: str = "first") -> SlippingSeries:
    """Trace each step (a PromptSet or a list of Prompts) of an ordered series."""
    steps = list(steps)
    if not steps:
        raise InputError("a slipping series needs at least one step (a non-empty list of prompt sets)")
    labels = list(labels) if labels is not None else list(range(len(steps)))
    if len(labels) != len(steps):
        raise InputError(f"{len(labels)} labels for {len(steps)} steps: pass one label per step")
    traces = [trace_attention(model, as_prompts(s), cfg) for s in steps]
    return SlippingSeries(name, labels, traces, query)


def family_steps(prompts: PromptSet, family: str, label: str = "harmful") -> tuple[list[int], list[PromptSet]]:
    """Strength 0 (the plain requests) then each strength of `family` present in `prompts`."""
    strengths = prompts.families().get(family)
    if not strengths:
        raise InputError(f"prompt set {prompts.name!r} has no prompts of family {family!r}; its families are "
                         f"{sorted(prompts.families()) or 'none'}")
    sets = [prompts.filter(label=label, family=None)] + [prompts.filter(label=label, family=family, strength=s) for s in strengths]
    labels = [0] + list(strengths)
    keep = [(l, s) for l, s in zip(labels, sets) if len(s)]
    return [l for l, _ in keep], [s for _, s in keep]


def family_series(model: ChatModel, prompts: PromptSet, family: str, label: str = "harmful",
                  cfg: TraceConfig = TraceConfig(), query: str = "first") -> SlippingSeries:
    """Slipping over a family's strengths (strength 0 = the plain requests of `prompts`)."""
    labels, sets = family_steps(prompts, family, label)
    return slipping_series(model, sets, labels, f"{family}/{label}", cfg, query)


def series_from_trace(trace: SlippingTrace, family: str, label: str = "harmful", query: str = "first") -> SlippingSeries:
    """A family's series cut out of one trace of a whole evaluation set (each prompt traced
    once; the plain requests are shared by every family's strength 0)."""
    ps = trace.prompts
    labels, sets = family_steps(ps, family, label)
    pos = {id(p): i for i, p in enumerate(ps)}
    traces = [trace.subset([pos[id(p)] for p in s], s.name) for s in sets]
    return SlippingSeries(f"{family}/{label}", labels, traces, query)


def attack_series(model: ChatModel, result, every: int = 1, cfg: TraceConfig = TraceConfig(),
                  query: str = "first") -> SlippingSeries:
    """Slipping over an attack's course: one step per recorded iteration of an `AttackResult`
    (or of several, aligned by iteration; an attack that stopped early keeps its last prompt)."""
    results = list(result) if isinstance(result, (list, tuple)) else [result]
    if not results:
        raise InputError("no attack results given")
    if every < 1:
        raise InputError(f"every must be >= 1, got {every}")
    n_it = max(len(r.iterations) for r in results)
    idx = list(range(0, n_it, every))
    if idx[-1] != n_it - 1:
        idx.append(n_it - 1)
    at = lambda r, i: r.iterations[min(i, len(r.iterations) - 1)].prompt
    sets = [PromptSet(f"attack-it{i}", tuple(at(r, i) for r in results)) for i in idx]
    return slipping_series(model, sets, idx, f"attack/{results[0].method}", cfg, query)
