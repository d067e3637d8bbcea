"""Intervals, differences and verdicts against known values (textbook Wilson and Newcombe numbers)."""

import random

import pytest
import torch

from interp.stats import agreement, auroc, bootstrap_mean, decided, difference, newcombe, rate_record, verdict, wilson


def test_wilson_matches_textbook_values():
    # closed forms at the edges: 0/n -> [0, z^2/(n+z^2)], n/n -> [n/(n+z^2), 1]
    z2 = 1.959963984540054 ** 2
    assert wilson(0, 4) == pytest.approx((0.0, z2 / (4 + z2)))
    assert wilson(0, 4)[1] == pytest.approx(0.4899, abs=1e-4)
    assert wilson(32, 32) == pytest.approx((32 / (32 + z2), 1.0))
    assert wilson(32, 32)[0] == pytest.approx(0.8928, abs=1e-4)
    # 5/10: 0.2366 to 0.7634 (Newcombe 1998, Table I style; symmetric about 1/2)
    lo, hi = wilson(5, 10)
    assert (lo, hi) == pytest.approx((0.2366, 0.7634), abs=1e-4) and lo + hi == pytest.approx(1.0)
    with pytest.raises(ValueError):
        wilson(5, 4)


def test_rate_record_carries_n_and_interval():
    r = rate_record([True, False, False, False])
    assert r == {"rate": 0.25, "n": 4, "ci95": [round(wilson(1, 4)[0], 4), round(wilson(1, 4)[1], 4)]}
    assert rate_record(32, 32)["ci95"] == [0.8928, 1.0]
    assert rate_record([]) == {"rate": None, "n": 0, "ci95": None}


def test_newcombe_matches_the_paper():
    # Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 - 48/80, method 10: 0.0524 to 0.3339
    lo, hi = newcombe(56, 70, 48, 80)
    assert (lo, hi) == pytest.approx((0.0524, 0.3339), abs=1e-4)
    d = difference([1] * 56 + [0] * 14, [1] * 48 + [0] * 32)
    assert d["method"] == "newcombe" and not d["paired"] and d["ci95"] == [0.0524, 0.3339]


def test_bootstrap_mean_is_seeded_and_near_the_normal_interval():
    rng = random.Random(0)
    v = [rng.gauss(1.0, 2.0) for _ in range(400)]
    a, b = bootstrap_mean(v, seed=3), bootstrap_mean(v, seed=3)
    assert a == b and a["n"] == 400
    se = torch.tensor(v).std().item() / 400 ** 0.5
    assert a["ci95"][0] == pytest.approx(a["mean"] - 1.96 * se, abs=0.05)
    assert a["ci95"][1] == pytest.approx(a["mean"] + 1.96 * se, abs=0.05)
    assert bootstrap_mean([float("nan"), 2.0, 4.0])["n"] == 2  # non-finite values are dropped and not counted
    assert bootstrap_mean([3.0])["ci95"] is None


def test_paired_difference_uses_the_pairing():
    rng = random.Random(1)
    ids = [f"p{i}" for i in range(40)]
    base = [rng.gauss(0, 3) for _ in ids]
    after = [x + 0.5 + rng.gauss(0, 0.2) for x in base]
    # the same prompts in another order: paired by id, so the prompt-to-prompt spread cancels
    perm = list(range(40))
    rng.shuffle(perm)
    paired = difference(after, [base[i] for i in perm], ids, [ids[i] for i in perm], kind="mean")
    assert paired["paired"] and paired["method"] == "paired bootstrap"
    diffs = torch.tensor(after) - torch.tensor(base)
    assert paired["difference"] == pytest.approx(float(diffs.mean()), abs=1e-4)
    se = float(diffs.std()) / 40 ** 0.5
    assert paired["ci95"] == pytest.approx([float(diffs.mean()) - 1.96 * se, float(diffs.mean()) + 1.96 * se], abs=0.03)
    assert decided(paired) == 1 and "higher than" in verdict(paired, "after", "before", "score")
    unpaired = difference(after, base, kind="mean")  # the same numbers without the pairing: the spread swamps 0.5
    assert not unpaired["paired"] and decided(unpaired) == 0
    # ids that name other prompts: not paired
    assert not difference(after, base, ids, [f"q{i}" for i in range(40)], kind="mean")["paired"]


def test_paired_rates_every_prompt_flipped():
    ids = list(range(32))
    d = difference([1] * 32, [0] * 32, ids, ids)
    assert d["difference"] == 1.0 and d["ci95"] == [1.0, 1.0]


def test_overlapping_intervals_are_too_few_to_call():
    # 3/8 against 5/8: the difference's interval contains 0
    d = difference([1] * 3 + [0] * 5, [1] * 5 + [0] * 3)
    assert d["ci95"][0] < 0 < d["ci95"][1] and decided(d) == 0
    text = verdict(d, "ablated heads", "random heads")
    assert text.startswith("too few prompts to call") and "-0.25" in text
    big = difference([1] * 30 + [0] * 2, [1] * 4 + [0] * 28)
    text = verdict(big, "ablated heads", "random heads")
    assert decided(big) == 1 and text.startswith("refusal rate of ablated heads is higher than random heads by 0.812")
    assert verdict(difference([], [1]), "a", "b").startswith("too few prompts to call")


def test_auroc_and_agreement():
    assert auroc([1, 2, 3, 4], [0, 0, 1, 1]) == 1.0
    assert auroc([1, 2, 3, 4], [1, 0, 1, 0]) == 0.25
    assert auroc([1, 1, 1, 1], [0, 1, 0, 1]) == 0.5  # ties count half
    assert auroc([1, 2], [1, 1]) is None
    ag = agreement([-2, -1, 0.5, 3, -0.2, 0.1], [False, False, True, True, True, False])
    # 8 of 9 (refused, complied) pairs ordered: 0.1 (complied) outranks -0.2 (refused)
    assert ag["auroc"] == pytest.approx(8 / 9, abs=1e-4)
    # best threshold: between 0.1 and 0.5 (one error: -0.2 refused); at 0 two errors
    assert ag["threshold"] == 0.3 and ag["accuracy"]["rate"] == pytest.approx(5 / 6, abs=1e-4)
    assert ag["accuracy_at_0"]["rate"] == pytest.approx(4 / 6, abs=1e-4) and ag["accuracy"]["n"] == 6
    lo, hi = ag["auroc_ci95"]
    assert 0 <= lo <= ag["auroc"] <= hi <= 1


def test_the_bootstrap_auroc_weighs_each_resample_like_a_resampled_set():
    from interp.stats import _boot_aurocs

    g = torch.Generator().manual_seed(5)
    s = torch.randn(60, generator=g, dtype=torch.float64).round(decimals=1)  # ties included
    y = torch.rand(60, generator=g) < 0.4
    order = s.argsort()
    ss, yy = s[order], y[order]
    idx = torch.randint(0, 60, (7, 60), generator=torch.Generator().manual_seed(0))
    want = [auroc(ss[i], yy[i]) for i in idx]
    assert _boot_aurocs(s, y, 7, 0).tolist() == pytest.approx(want, abs=1e-12)
