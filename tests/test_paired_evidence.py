"""Comparisons a verdict rests on: 0/1 outcomes paired by prompt take Newcombe's paired interval, a
mean difference over too few prompts gets no interval, and the verdict follows the interval."""

import pytest

from interp.completions import Completion
from interp.stages.evidence import MIN_BOOTSTRAP_N, compare
from interp.stats import newcombe_paired


def _rows(flags, condition="x"):
    return [Completion(f"p{i}", "harmful", None, None, condition, "", 0.0, bool(f)) for i, f in enumerate(flags)]


def test_newcombe_paired_properties():
    lo, hi = newcombe_paired(10, 0, 0, 22)  # identical outcomes: difference 0, interval around it
    assert lo < 0 < hi and lo == pytest.approx(-hi, abs=1e-9)
    lo, hi = newcombe_paired(4, 20, 0, 8)  # 20 of 32 discordant one way
    assert 0 < lo < 20 / 32 < hi <= 1
    lo2, hi2 = newcombe_paired(4, 0, 20, 8)  # the mirror image
    assert (lo2, hi2) == pytest.approx((-hi, -lo))
    lo, hi = newcombe_paired(0, 1, 0, 0)  # one prompt
    assert -1 <= lo < 1 and hi == 1


def test_paired_rates_use_newcombe_and_agree_with_the_verdict():
    a = _rows([1] * 20 + [0] * 12)
    b = _rows([0] * 32)
    d = compare(a, b, "steered", "unsteered")
    assert d["paired"] and d["method"].startswith("newcombe paired") and d["difference"] == pytest.approx(20 / 32, abs=1e-4)
    assert d["ci95"][0] > 0 and "higher" in d["verdict"]
    d = compare(_rows([1, 0, 1, 0]), _rows([0, 1, 1, 0]), "a", "b")
    assert d["ci95"][0] < 0 < d["ci95"][1] and d["verdict"].startswith("too few prompts to call")


def test_a_mean_difference_over_few_prompts_is_not_called():
    rec = _rows([1] * 4)
    rand = [r for k in range(3) for r in _rows([0] * 4, f"random_{k}")]  # three sets over the same prompts
    d = compare(rec, rand, "heads", "random heads")
    assert d["paired"] and d["n_a"] == 4 < MIN_BOOTSTRAP_N and d["ci95"] is None
    assert d["verdict"].startswith("too few prompts to call")
    rec = _rows([1] * 12)
    rand = [r for k in range(3) for r in _rows([0] * 12, f"random_{k}")]
    d = compare(rec, rand, "heads", "random heads")
    assert d["ci95"] is not None and "higher" in d["verdict"]
