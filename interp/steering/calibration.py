"""Calibrating a strength on training prompts: the largest strength of a grid at which harmless
prompts stay within a refusal budget (one-pass refusal score > 0), found by bisection; a grid whose
end is reached is continued past it a bounded number of times, and an answer still at an end is
flagged (`Calibration.at_grid_edge`), never returned silently."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence, Union

import torch

from interp.errors import InputError
from interp.hooks import check_alpha
from interp.intervention import Intervention
from interp.model import ChatModel

# what a sweep varies: an Intervention (taken at each strength with `with_strength`, in the intervention's
# own unit: sigmas, a fraction of the residual norm, ...), or a function of a strength returning one
# (for a knob that is not the intervention's own strength)
Swept = Union[Intervention, Callable[[float], Intervention]]


def at_strength(intervention: Swept, strength: float) -> Intervention:
    """`intervention` at `strength`."""
    if isinstance(intervention, Intervention):
        return intervention.with_strength(strength)
    if callable(intervention):
        out = intervention(strength)
        if isinstance(out, Intervention):
            return out
        raise InputError(f"the function of the strength returned {type(out).__name__}, not an interp.intervention.Intervention")
    raise InputError(f"expected an Intervention (or a function of a strength returning one), got {type(intervention).__name__}")


def fraction_refusing(model: ChatModel, intervention: Intervention, harmless) -> float:
    """Fraction of `harmless` prompts whose one-pass refusal score is > 0 under `intervention`."""
    from interp.steering.effect import scores_under

    return float((scores_under(model, intervention, harmless) > 0).float().mean())


@dataclass
class Calibration:
    """A calibrated strength: the largest safe value of the grid searched, and whether it sits at
    an end of that grid after the grid was extended `extended` times (then the true limit lies
    beyond what was searched, and a report must say so)."""

    strength: float
    at_grid_edge: bool
    edge: str | None  # "top" (even the largest value was safe), "bottom" (none was), or None
    extended: int
    grid: tuple[float, float]  # the first and last value of the grid finally searched

    def to_dict(self) -> dict:
        return {"strength": round(self.strength, 6), "at_grid_edge": self.at_grid_edge, "edge": self.edge,
                "extended": self.extended, "grid": [round(g, 6) for g in self.grid]}

    def note(self, what: str) -> str | None:
        if not self.at_grid_edge:
            return None
        side = ("every value up to the grid's largest kept harmless refusal within budget: the safe limit is higher"
                if self.edge == "top" else "no value of the grid kept harmless refusal within budget: the smallest was used")
        return f"{what} calibration stopped at the {self.edge} edge of its grid after {self.extended} extension(s) ({side})"


EXTEND = 2  # how many times a calibration extends its grid past an edge before it reports the edge


def _bisect(ok, strengths: list[float]) -> int:
    """Index of the last safe value (refusal only grows with the strength), -1 when none is."""
    lo, hi = -1, len(strengths)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(strengths[mid]) else (lo, mid)
    return lo


@torch.no_grad()
def calibrate(model: ChatModel, intervention: Swept, harmless, grid: Sequence[float], max_refusal: float = 0.1,
              extend: int = EXTEND) -> Calibration:
    """The largest strength at which at most `max_refusal` of `harmless` prompts lean to refuse
    (one-pass refusal score > 0), by bisection over `grid`. When the answer is an end of the grid
    (the largest value is still safe, or even the smallest is not), the grid is continued
    geometrically past that end, with as many values again, up to `extend` times; if the answer is
    still at an end, `at_grid_edge` is True. Calibrate on training prompts, then measure on held-out ones."""
    if not grid:
        raise InputError("grid is empty: pass at least one strength")
    strengths = sorted(check_alpha(g, "strength") for g in grid)
    ratio = strengths[-1] / strengths[-2] if len(strengths) > 1 and strengths[-2] > 0 else 2.0
    ratio = ratio if ratio > 1 else 2.0
    ok = lambda a: fraction_refusing(model, at_strength(intervention, a), harmless) <= max_refusal  # noqa: E731
    m, direction, known_safe = len(strengths), None, None
    for extended in range(extend + 1):
        i = _bisect(ok, strengths)
        edge = "top" if i == len(strengths) - 1 else "bottom" if i < 0 else None
        if direction == "up" and edge == "bottom":  # the previous grid's top was safe, this grid's first is not
            return Calibration(known_safe, False, None, extended, (strengths[0], strengths[-1]))
        if direction == "down" and edge == "top":  # the previous grid's bottom was unsafe: the limit is found
            edge = None
        if edge is None or extended == extend:
            break
        if edge == "top":  # safe up to the largest value: search above it
            direction, known_safe = "up", strengths[-1]
            strengths = [strengths[-1] * ratio ** j for j in range(1, m + 1)]
        else:  # nothing safe: search below the smallest value
            direction = "down"
            strengths = [strengths[0] / ratio ** j for j in range(m, 0, -1)]
    if edge == "bottom":
        return Calibration(strengths[0], True, edge, extended, (strengths[0], strengths[-1]))
    return Calibration(strengths[i], edge is not None, edge, extended, (strengths[0], strengths[-1]))


@torch.no_grad()
def max_safe_strength(model: ChatModel, intervention: Swept, harmless, grid: Sequence[float],
                      max_refusal: float = 0.1) -> float:
    """The largest strength of `grid` at which at most `max_refusal` of `harmless` prompts lean to refuse
    (refusal score > 0, the greedy first-token decision); the smallest grid value if none qualifies.
    `calibrate` extends the grid past an edge and says when it stays there."""
    if not grid:
        raise InputError("grid is empty: pass at least one strength")
    return calibrate(model, intervention, harmless, grid, max_refusal, extend=0).strength
