"""Which heads write an R2D model's pivot decision, on any R2D model with pivot tokens (`r2d:DIR`,
organism:smollm2-r2d): probes, then causes, then the decision as jailbreaks get stronger. (The word-
level organism's own comparison with its base is `interp.r2d.inside`.)

Decision position: the last token of the teacher's reasoning before the deciding pivot
(`interp.r2d.teacher`: the restated request, after a [RETHINK] step when the prompt wraps its
request), teacher-forced after the chat-formatted prompt. Label: the pivot the teacher writes there
([UNSAFE] for harmful, [SAFE] for harmless). Pivot gap: logit[UNSAFE] - logit[SAFE] there; > 0
decides to refuse.

* probes: `inside.head_scores` on each head's output (`hook_z`) at the decision position;
* causes: attribution patching of the gap (one forward and one backward pass) picks candidates, the
  probe's top heads join them, exact single-head ablations on the plain harmful prompts measure
  each, and the `top_k` heads whose ablation lowers the gap most are the pivot heads;
* flips: the share of plain harmful prompts decided [UNSAFE] that turn [SAFE] with the pivot heads
  ablated (and with the probe's top heads), against `n_random` random sets of the same size, with
  Wilson intervals and the interval of the difference;
* slipping, R2D's own form: the gap on harmful prompts per jailbreak family and strength (mean,
  bootstrap 95%), and per family its strongest strength minus the plain requests.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from interp.batching import prompt_chunks, with_answers
from interp.capture import LastPosition, capture_hooks
from interp.errors import InputError
from interp.hooknames import LOGITS, act_name
from interp.intervention import Intervention
from interp.intervention.heads import AblateHeads
from interp.model import ChatModel, EncodedBatch
from interp.prompts import PromptSet
from interp.r2d.data import SAFE, UNSAFE
from interp.r2d.inside import Decisions, probe_name, head_scores, top_heads
from interp.r2d.model import pivot_ids
from interp.r2d.teacher import response_ids, teacher_steps
from interp.runner import run
from interp.stats import bootstrap_mean, difference, rate_record, verdict

METHODS = ("zero", "mean")


@dataclass(frozen=True)
class PivotHeadsConfig:
    top_k: int = 3  # heads in the ablated set
    n_candidates: int = 12  # measured exactly: the top by attribution (the probe's top_k join them)
    n_random: int = 20  # random head sets of top_k heads
    method: str = "zero"  # or "mean": each head's mean output at the decision position, over every prompt
    seed: int = 0
    batch_size: int = 16


@dataclass
class DecisionRuns:
    """The prompts as teacher-forced decision batches: (rows, batch) in passes sorted by length."""

    prompts: PromptSet
    labels: Tensor  # bool [n]: the teacher's pivot is [UNSAFE]
    batches: list[tuple[list[int], EncodedBatch]]

    def select(self, rows: list[int]) -> "DecisionRuns":
        keep = set(rows)
        return DecisionRuns(self.prompts, self.labels, [(r, b) for r, b in self.batches if set(r) <= keep])


def decision_runs(model: ChatModel, prompts: PromptSet, batch_size: int = 16) -> DecisionRuns:
    tok = model.tokenizer
    piv = pivot_ids(tok)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    steps = [teacher_steps(p) for p in prompts]
    labels = torch.tensor([s[-1][1] == UNSAFE for s in steps])
    batches = []
    # passes of one label and form each (plain or wrapped), so that plain harmful prompts run alone
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault((bool(labels[i]), p.family is None), []).append(i)
    for _, rows in sorted(groups.items(), reverse=True):
        for chunk in prompt_chunks(model, [prompts[i].text for i in rows], batch_size):
            idx = [rows[j] for j in chunk]
            enc = model.encode([prompts[i].text for i in idx], indices=idx)
            # the teacher's steps up to, not including, the deciding pivot: the last position predicts it
            b = with_answers(enc, [response_ids(tok, steps[i], piv, [])[:-1] for i in idx], pad)
            batches.append((idx, b))
    return DecisionRuns(prompts, labels, batches)


def gap_read(model: ChatModel):
    piv = pivot_ids(model.tokenizer)
    return lambda logits: (logits[:, piv[UNSAFE]] - logits[:, piv[SAFE]]).float().cpu()


def _sequences(b: EncodedBatch) -> list[list[int]]:
    return [b.tokens[r, p:].tolist() for r, p in enumerate(b.pad)]


@torch.no_grad()
def decision_gaps(model: ChatModel, prompts: PromptSet, batch_size: int = 16) -> Float[Tensor, "prompt"]:
    """The pivot gap of each prompt at its decision position, in prompt order (one pass per batch)."""
    runs = decision_runs(model, prompts, batch_size)
    out = torch.empty(len(prompts))
    for idx, b in runs.batches:
        out[torch.tensor(idx)] = run(model, b, read=gap_read(model))
    return out


@torch.no_grad()
def read_decisions(model: ChatModel, runs: DecisionRuns, batch_size: int = 16) -> Decisions:
    """Each head's output and the logits at the decision position, rows in prompt order."""
    reads = {"logits": (LOGITS, LastPosition())}
    reads.update({("z", l): (act_name("z", l), LastPosition()) for l in range(model.n_layers)})
    rows = [i for idx, _ in runs.batches for i in idx]
    got = capture_hooks(model, [s for _, b in runs.batches for s in _sequences(b)], reads, batch_size)
    order = torch.empty(len(rows), dtype=torch.long)
    order[torch.tensor(rows)] = torch.arange(len(rows))
    z = torch.stack([got[("z", l)] for l in range(model.n_layers)], dim=1)[order]
    # no attention is read here: the request mass is left at zero (`inside.mass_by_cell` is the toy's)
    return Decisions(z, runs.labels, torch.zeros(len(rows), model.n_layers, model.n_heads), None, runs.prompts,
                     got["logits"][order])


def ablation_values(model: ChatModel, dec: Decisions, method: str) -> Tensor | None:
    if method not in METHODS:
        raise InputError(f"unknown ablation method {method!r} for the pivot heads; choose one of {METHODS}")
    return dec.z.mean(0) if method == "mean" else None


def attribution(model: ChatModel, runs: DecisionRuns, values: Tensor | None) -> Float[Tensor, "layer head"]:
    """First-order estimate of each head's ablation effect on the gap, mean over `runs`' prompts."""
    from interp.causal.attribution import attribute

    names = [act_name("z", l) for l in range(model.n_layers)]
    total, n = torch.zeros(model.n_layers, model.n_heads), 0
    read = gap_read(model)

    def reduce(name, z, g):  # m(v) - m ~ sum over positions of g . (v - z)
        g, z = g.float(), z.float()
        est = -(g * z).sum((1, 3))
        if values is not None:
            l = names.index(name)
            est = est + (g.sum(1) * values[l].to(g.device)).sum(-1)
        return est.sum(0).cpu()

    for idx, b in runs.batches:
        red, _ = attribute(model, b, names, read, reduce)
        total += torch.stack([red[nm] for nm in names])
        n += len(idx)
    return total / max(n, 1)


@torch.no_grad()
def ablated_gaps(model: ChatModel, runs: DecisionRuns, sets: list[list[tuple[int, int]]], method: str,
                 values: Tensor | None, seed: int) -> Float[Tensor, "set prompt"]:
    """Gap of every prompt of `runs` (in batch order) under each set's ablation (an empty set: none);
    one stacked pass per batch, each replica resumed at its first head's block."""
    stack = Intervention.stack([Intervention.of(AblateHeads(tuple(map(tuple, s)), method, values, seed)) if s
                                else Intervention.none() for s in sets])
    return torch.cat([run(model, b, stack, read=gap_read(model), from_layer="auto").view(len(sets), len(idx))
                      for idx, b in runs.batches], dim=1)


def pivot_heads(model: ChatModel, prompts: PromptSet, cfg: PivotHeadsConfig = PivotHeadsConfig()) -> dict:
    """The analysis of the module docstring on `prompts` (both labels; plain prompts have family None)."""
    if cfg.top_k < 1 or cfg.n_random < 1 or cfg.n_candidates < cfg.top_k:
        raise InputError(f"pivot heads need top_k >= 1, n_random >= 1 and n_candidates >= top_k; got {cfg}")
    prompts.require("pivot-head prompts", 4, both_labels=True)
    plain = [i for i, p in enumerate(prompts) if p.family is None and p.label == "harmful"]
    if len(plain) < 2:
        raise InputError("pivot heads need at least 2 plain harmful prompts (family empty) to ablate on")
    runs = decision_runs(model, prompts, cfg.batch_size)
    dec = read_decisions(model, runs, cfg.batch_size)
    gap = gap_read(model)(dec.logits)
    acc, key = head_scores(dec)
    probe_top = top_heads(key, cfg.top_k)
    values = ablation_values(model, dec, cfg.method)
    harm = runs.select(plain)
    est = attribution(model, harm, values)
    cand = [tuple(h) for h in top_heads(-est, cfg.n_candidates)]
    cand += [tuple(h) for h in probe_top if tuple(h) not in cand]
    single = ablated_gaps(model, harm, [[]] + [[h] for h in cand], cfg.method, values, cfg.seed)
    effect = single[1:] - single[:1]  # [candidate, prompt]
    order = effect.mean(1).argsort().tolist()
    chosen = [list(cand[i]) for i in order[:cfg.top_k]]
    rng = random.Random(f"pivot-heads:{cfg.seed}")
    others = [(l, h) for l in range(model.n_layers) for h in range(model.n_heads) if [l, h] not in chosen]
    randoms = [rng.sample(others, cfg.top_k) for _ in range(cfg.n_random)]
    sets = [[], chosen, probe_top] + randoms
    after = ablated_gaps(model, harm, sets, cfg.method, values, cfg.seed)
    decided = after[0] > 0  # decided [UNSAFE] without ablation
    flips = lambda k: [bool(x) for x in (after[k][decided] < 0)]  # noqa: E731
    pooled = [f for k in range(3, len(sets)) for f in flips(k)]
    out_flips = {"pivot_heads": rate_record(flips(1)), "probe_heads": rate_record(flips(2)), "random_heads": rate_record(pooled)}
    for name, k in (("pivot_heads", 1), ("probe_heads", 2)):
        d = difference(flips(k), pooled)
        out_flips[f"{name}_vs_random"] = {**d, "verdict": verdict(d, name.replace("_", " "), "random heads", "[UNSAFE] -> [SAFE] flip rate")}
    return {
        "n_prompts": {"probed": len(prompts), "harmful_plain": len(plain), "decided_unsafe": int(decided.sum())},
        "decision": "teacher-forced: the token before the deciding pivot of the teacher's steps; gap = logit[UNSAFE] - logit[SAFE]",
        "method": cfg.method, "probe": probe_name(),
        "decided_right": {lab: rate_record([bool((g > 0) == bool(y)) for g, y in zip(gap, runs.labels) if bool(y) == (lab == "harmful")])
                          for lab in ("harmful", "harmless")},
        "probe_scores": [[round(float(x), 4) for x in row] for row in acc], "probe_heads": probe_top,
        "candidates": [{"head": list(cand[i]), "attribution": round(float(est[cand[i]]), 4),
                        "gap_change": bootstrap_mean(effect[i], seed=cfg.seed)} for i in order],
        "pivot_heads": chosen, "random_sets": [[list(h) for h in s] for s in randoms],
        "gap_change": {"pivot_heads": bootstrap_mean(after[1] - after[0], seed=cfg.seed),
                       "probe_heads": bootstrap_mean(after[2] - after[0], seed=cfg.seed),
                       "random_heads": bootstrap_mean((after[3:] - after[0]).flatten(), seed=cfg.seed)},
        "flips": out_flips,
        "gap_by_strength": gap_by_strength(prompts, gap, cfg.seed),
    }


def gap_by_strength(prompts: PromptSet, gap: Tensor, seed: int = 0) -> dict:
    """Harmful prompts' pivot gap per family and strength (plain requests: family "plain", strength
    0), and per family its strongest strength minus the plain requests, with the verdict."""
    cells: dict[str, dict[int, list[float]]] = {}
    for p, g in zip(prompts, gap.tolist()):
        if p.label == "harmful":
            cells.setdefault(p.family or "plain", {}).setdefault(int(p.strength or 0), []).append(g)
    plain = cells.get("plain", {}).get(0, [])
    out = {"cells": {f: {str(s): bootstrap_mean(v, seed=seed) for s, v in sorted(row.items())} for f, row in sorted(cells.items())},
           "strongest_minus_plain": {}}
    for f, row in sorted(cells.items()):
        if f == "plain" or not plain:
            continue
        top = max(row)
        d = difference(row[top], plain, kind="mean", seed=seed)
        out["strongest_minus_plain"][f] = {**d, "strength": top,
                                           "verdict": verdict(d, f"{f} at strength {top}", "plain requests", "pivot gap")}
    return out
