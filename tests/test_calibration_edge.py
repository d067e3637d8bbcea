"""A calibration never stops silently at an end of its grid: it extends the grid, and flags the edge
when the limit is still beyond it."""

import pytest

from interp.steering import calibration as tradeoff  # where calibrate lives (re-exported by tradeoff)


def _fake(monkeypatch, limit):
    """Harmless refusal is 0 up to `limit` and 1 above it; counts the probes."""
    calls = []

    def fraction(model, intervention, harmless):
        a = intervention.strength
        calls.append(a)
        return 0.0 if a <= limit else 1.0

    monkeypatch.setattr(tradeoff, "fraction_refusing", fraction)
    return calls


class _Swept:  # a strength-carrying stand-in for an Intervention
    def __init__(self, strength):
        self.strength = strength


def _cal(grid, **kw):
    return tradeoff.calibrate(None, _Swept, None, grid, 0.1, **kw)


@pytest.fixture(autouse=True)
def _accept_stand_in(monkeypatch):
    monkeypatch.setattr(tradeoff, "at_strength", lambda f, a: f(a))


def test_limit_inside_the_grid_is_not_an_edge(monkeypatch):
    _fake(monkeypatch, 0.35)
    c = _cal([0.1, 0.2, 0.3, 0.4, 0.5])
    assert c.strength == 0.3 and not c.at_grid_edge and c.extended == 0 and c.note("x") is None


def test_top_edge_extends_the_grid_and_finds_the_limit(monkeypatch):
    _fake(monkeypatch, 0.9)
    c = _cal([0.1, 0.2, 0.4])  # ratio 2: the next grid is 0.8, 1.6, 3.2
    assert c.strength == pytest.approx(0.8) and not c.at_grid_edge and c.extended == 1


def test_top_edge_beyond_every_extension_is_flagged(monkeypatch):
    _fake(monkeypatch, 1e9)
    c = _cal([0.1, 0.2, 0.4], extend=2)
    assert c.at_grid_edge and c.edge == "top" and c.extended == 2
    assert c.strength == pytest.approx(0.4 * 2 ** 6)
    assert c.to_dict()["at_grid_edge"] is True and "top edge" in c.note("HSI")


def test_bottom_edge_extends_down_then_flags(monkeypatch):
    _fake(monkeypatch, 0.03)
    c = _cal([0.1, 0.2, 0.4])  # next grid down: 0.0125, 0.025, 0.05
    assert c.strength == pytest.approx(0.025) and not c.at_grid_edge and c.extended == 1
    _fake(monkeypatch, -1.0)  # nothing is ever safe
    c = _cal([0.1, 0.2, 0.4], extend=1)
    assert c.at_grid_edge and c.edge == "bottom" and c.strength == pytest.approx(0.1 / 8)


def test_safe_top_then_unsafe_next_grid_is_the_old_top(monkeypatch):
    _fake(monkeypatch, 0.5)
    c = _cal([0.1, 0.2, 0.4])
    assert c.strength == pytest.approx(0.4) and not c.at_grid_edge


def test_tradeoff_still_exports_the_calibration():
    from interp.steering import max_safe_strength
    from interp.steering.tradeoff import calibrate

    assert calibrate is tradeoff.calibrate and max_safe_strength is tradeoff.max_safe_strength


def test_max_safe_strength_keeps_its_old_meaning(monkeypatch):
    _fake(monkeypatch, 1e9)
    assert tradeoff.max_safe_strength(None, _Swept, None, [0.1, 0.2]) == 0.2
    _fake(monkeypatch, -1)
    assert tradeoff.max_safe_strength(None, _Swept, None, [0.1, 0.2]) == 0.1
