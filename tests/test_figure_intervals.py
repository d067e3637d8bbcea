"""Figures that show rates draw their 95% intervals as error bars."""

import pytest

from interp.plotting import error_bars, refusal_vs_strength
from interp.stats import rate_record


def test_error_bars_are_the_wilson_interval():
    rec = rate_record(3, 4)
    bars = error_bars([rec, rate_record(0, 4)])
    assert bars["array"][0] == pytest.approx(rec["ci95"][1] - rec["rate"])
    assert bars["arrayminus"][0] == pytest.approx(rec["rate"] - rec["ci95"][0])
    assert bars["arrayminus"][1] == 0.0 and bars["array"][1] > 0.4  # 0/4: the interval reaches up, not down
    assert error_bars([0.5, 0.25]) is None  # plain numbers carry no interval: no bars


def test_refusal_curve_has_error_bars():
    table = {"jailbreak": {"distractor": {"0": rate_record(4, 4), "1": rate_record(2, 4), "2": rate_record(0, 4)}},
             "jailbreak_harmless": {"distractor": {"0": rate_record(0, 4), "1": rate_record(0, 4), "2": rate_record(1, 4)}}}
    fig = refusal_vs_strength(table)
    harmful, harmless = fig.data
    assert list(harmful.y) == [1.0, 0.5, 0.0] and harmful.error_y.array is not None
    assert harmful.error_y.arrayminus[0] == pytest.approx(1.0 - table["jailbreak"]["distractor"]["0"]["ci95"][0])
    assert harmless.error_y.array[0] == pytest.approx(table["jailbreak_harmless"]["distractor"]["0"]["ci95"][1])


def test_tradeoff_figure_bars_come_from_the_per_prompt_verdicts():
    from interp.steering.tradeoff import tradeoff_figure

    def row(method, strength, jb, harmless, measure=None):
        r = {"method": method, "strength": strength, "jailbreak": sum(jb) / len(jb), "harmless": sum(harmless) / len(harmless),
             "kl": {"harmless": 0.0}, "per_prompt": {"jailbreak": {"refused": jb}, "harmless": {"refused": harmless}}}
        return {**r, "measure": measure} if measure else r

    rows = [row("unsteered", 0.0, [0, 0, 1, 0], [0, 0, 0, 0]), row("hsi", 1.0, [1, 1, 1, 0], [0, 0, 0, 1]),
            row("hsi", 2.0, [1, 1, 1, 1], [1, 1, 0, 1], "score")]
    fig = tradeoff_figure(rows)
    hsi = next(t for t in fig.data if t.name == "hsi")
    want = rate_record([1, 1, 1, 0])
    assert hsi.error_y.array[0] == pytest.approx(want["ci95"][1] - want["rate"])
    assert hsi.error_x.array is not None and list(hsi.marker.symbol) == ["circle", "circle-open"]


def test_defense_figure_has_error_bars(organism, eval_prompts):
    from interp.generation import GenerationConfig
    from interp.scoring import RefusalJudge
    from interp.slipping.defense_eval import defense_figure, evaluate_defenses, subsample
    from interp.slipping.defenses import NoDefense, Sharpening

    ps = subsample(eval_prompts, 2, strengths={"distractor": [4]}, families=["distractor"])
    table = evaluate_defenses(organism, ps, {"none": NoDefense(), "sharpening": Sharpening(0.5)}, RefusalJudge(),
                              GenerationConfig(max_new_tokens=4))
    fig = defense_figure(table)
    bars = [t for t in fig.data if t.error_y is not None and t.error_y.array is not None]
    assert len(bars) == 4  # both panels, both defenses
