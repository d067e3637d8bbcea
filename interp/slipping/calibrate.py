"""Attention sharpening calibrated like the other interventions: its temperature and where it acts
(every layer, the slipping stage's top heads, the causal heads) chosen on a validation split under a
harmless-refusal budget, from the one-pass refusal score.

Every (head set, temperature) candidate is one replica of a stacked pass (`interp.runner.run`): the
validation prompts are tiled once per candidate, and a candidate's numbers are the fraction of
harmful prompts (plain and jailbreak) whose refusal score is > 0 (the greedy first-token decision)
and the same fraction of harmless prompts. The choice: the highest harmful refusal among the
candidates whose harmless refusal stays within the budget, ties going to the mildest temperature.
T = 1 (no sharpening) is a candidate, so a sharpening that only lowers refusal is not chosen. When
the chosen temperature is the sharpest of its grid, the grid is continued (geometrically, a bounded
number of times: while the best feasible point by refusal is the sharpest searched); if the choice
is still the sharpest, `at_grid_edge` says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import torch
from torch import Tensor

from interp.errors import InputError
from interp.intervention import Intervention
from interp.model import ChatModel
from interp.prompts import PromptSet
from interp.runner import prompt_batches, run
from interp.scoring import refusal_log_odds

# 1/T: 1 is no sharpening; geometric, ~41% apart, up to T = 0.25 (the toy organism's old fixed setting)
INVERSE_T_GRID = (1.0, 1.41, 2.0, 2.83, 4.0)
EXTEND = 2


@dataclass
class SharpeningChoice:
    T: float
    where: str  # the head-set name ("all layers", ...)
    heads: tuple | None  # (layer, head) pairs, None: every head of every layer
    candidates: list[dict] = field(default_factory=list)
    at_grid_edge: bool = False
    extended: int = 0
    budget: float = 0.1
    n: dict = field(default_factory=dict)

    def intervention(self) -> Intervention:
        return Intervention.sharpen(self.T, None, list(self.heads) if self.heads else None)

    def note(self) -> str:
        if self.T == 1.0:
            return ("no sharpening kept more harmful prompts refused than the unsharpened model within the harmless "
                    f"budget on the validation split: the calibrated setting is T = 1 (no sharpening)")
        edge = (f"; the sharpest temperature searched (after {self.extended} extension(s)) was chosen: the best "
                "setting may be sharper still" if self.at_grid_edge else "")
        return f"T = {self.T:g} on {self.where}, chosen on the validation split{edge}"

    def to_dict(self) -> dict:
        return {"T": round(self.T, 6), "where": self.where, "heads": [list(h) for h in self.heads] if self.heads else None,
                "at_grid_edge": self.at_grid_edge, "extended": self.extended, "harmless_budget": self.budget,
                "n_validation": self.n, "candidates": self.candidates, "note": self.note(),
                "rule": "highest fraction of harmful validation prompts with refusal score > 0 among candidates whose "
                        "harmless fraction is within the budget; ties: the mildest temperature"}


@torch.no_grad()
def stacked_scores(model: ChatModel, prompts: PromptSet, interventions: list[Intervention], max_rows: int = 512) -> Tensor:
    """Refusal score [intervention, prompt] of every prompt under each intervention, stacked."""
    texts = prompts.texts
    out = torch.empty(len(interventions), len(texts))
    stack = Intervention.stack(interventions)
    read = lambda logits: refusal_log_odds(model, logits).float().cpu()  # noqa: E731
    for idx, b, _ in prompt_batches(model, texts, max_rows):
        out[:, idx] = run(model, b, stack, read=read, max_rows=max_rows).view(len(interventions), len(idx))
    return out


def calibrate_sharpening(model: ChatModel, harmful: PromptSet, harmless: PromptSet, head_sets: Mapping[str, object],
                         budget: float = 0.1, grid=INVERSE_T_GRID, extend: int = EXTEND, make=None) -> SharpeningChoice:
    """Choose sharpening's temperature and head set (`head_sets`: name -> (layer, head) pairs, or None
    for every layer) on validation `harmful` (plain and jailbreak) and `harmless` prompts.

    `make(strength, heads) -> Intervention` calibrates any head-set defense whose strength works
    like a temperature (1: no change, smaller: stronger), e.g. scaling heads' outputs by a factor;
    default: attention sharpening at temperature `strength`."""
    make = make or (lambda T, heads: Intervention.sharpen(T, None, heads))
    harmful.require("validation harmful prompts for the sharpening calibration")
    harmless.require("validation harmless prompts for the sharpening calibration")
    if not head_sets:
        raise InputError("no head sets to calibrate sharpening on: pass e.g. {'all layers': None}")
    both = harmful.concat(harmless, name="sharpen-val")
    is_harmful = torch.tensor([p.label == "harmful" for p in both])
    sets = {name: (None if hs is None else tuple((int(l), int(h)) for l, h in hs)) for name, hs in head_sets.items()}
    inv = sorted({float(g) for g in grid if g > 1.0})
    if not inv:
        raise InputError("the sharpening grid needs 1/T values above 1")
    ratio = inv[-1] / inv[-2] if len(inv) > 1 else 1.25

    def measure(points: list[tuple[str, float]]) -> list[dict]:
        ivs = [make(1.0 / g, list(sets[name]) if sets[name] else None) for name, g in points]
        s = stacked_scores(model, both, ivs)
        return [{"where": name, "T": round(1.0 / g, 6), "harmful_refusal": round(float((s[i][is_harmful] > 0).float().mean()), 4),
                 "harmless_refusal": round(float((s[i][~is_harmful] > 0).float().mean()), 4),
                 "harmful_score": round(float(s[i][is_harmful].mean()), 4)} for i, (name, g) in enumerate(points)]

    base = stacked_scores(model, both, [Intervention.none()])[0]
    cands = [{"where": "none", "T": 1.0, "harmful_refusal": round(float((base[is_harmful] > 0).float().mean()), 4),
              "harmless_refusal": round(float((base[~is_harmful] > 0).float().mean()), 4),
              "harmful_score": round(float(base[is_harmful].mean()), 4)}]
    cands += measure([(name, g) for name in sets for g in inv])
    sharpest = {name: 1.0 / inv[-1] for name in sets}  # the smallest T searched per set
    extended = 0

    def best() -> dict:
        ok = [c for c in cands if c["harmless_refusal"] <= budget] or [cands[0]]
        return max(ok, key=lambda c: (c["harmful_refusal"], c["T"], c["harmful_score"]))

    def still_rising() -> str | None:
        """The head set whose best feasible point by (harmful refusal, mean harmful score) is its
        sharpest temperature searched: sharper may do better still."""
        ok = [c for c in cands if c["where"] != "none" and c["harmless_refusal"] <= budget]
        if not ok:
            return None
        t = max(ok, key=lambda c: (c["harmful_refusal"], c["harmful_score"]))
        if t["harmful_refusal"] >= 1.0:  # every harmful prompt refused already: nothing left to gain
            return None
        return t["where"] if t["T"] <= sharpest[t["where"]] + 1e-9 else None

    while extended < extend and (name := still_rising()) is not None:
        extended += 1
        more = [sharpest[name] ** -1 * ratio ** j for j in range(1, 4)]
        cands += measure([(name, g) for g in more])
        sharpest[name] = 1.0 / more[-1]
    b = best()
    at_edge = b["where"] != "none" and b["T"] <= sharpest[b["where"]] + 1e-9
    where = b["where"]
    return SharpeningChoice(b["T"], "no sharpening" if where == "none" else where, None if where == "none" else sets[where],
                            cands, at_edge, extended, budget, {"harmful": len(harmful), "harmless": len(harmless)})
