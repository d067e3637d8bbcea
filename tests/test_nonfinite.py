"""Absurd steering strengths: non-finite logits, scores or activations during an intervention raise
an error that names the intervention and its strength, instead of empty answers that the judge
counts as refusals; and the judge says when it counts empty answers as refusals."""

import pytest

from interp.errors import NonFiniteError
from interp.generation import GenerationConfig, generate
from interp.hooks import count_hooks, hooked
from interp.scoring import RefusalJudge, ShortAnswerWarning, refusal_score
from interp.intervention import Intervention
from interp.steering import effect, fit_antidote, fit_head_directions, split_sets, sweep
from probes.directions import mean_difference_direction

GEN = GenerationConfig(max_new_tokens=4)


@pytest.fixture(scope="module")
def small(plain_prompts, eval_prompts):
    train = plain_prompts[:8].concat(plain_prompts[-8:])
    sets = split_sets(eval_prompts.filter(family=None)[:4].concat(eval_prompts.filter(label="harmless", family=None)[:4]))
    return train, sets


def test_huge_alpha_in_a_sweep_names_the_intervention(organism, small):
    train, sets = small
    hd = fit_head_directions(organism, train)
    heads = hd.top(2)
    with pytest.raises(NonFiniteError, match=r"sweep of 'hsi' at strength 1e\+30: .*head steering of 2 head\(s\).*sigmas=1e\+30"):
        sweep(organism, Intervention.steer_heads(hd, heads, 1.0), [1.0, 1e30], sets, "hsi", gen=GEN)
    assert count_hooks(organism) == 0
    # a sane strength still gives a finite row, and no answer was empty
    row = sweep(organism, Intervention.steer_heads(hd, heads, 1.0), [1.0], sets, "hsi", gen=GEN)[0]
    assert row["harmless"] < 1.0 and sum(row["short_answers"].values()) == 0


def test_huge_alpha_in_generation_and_effects(organism, small, plain_prompts):
    train, sets = small
    d = mean_difference_direction(organism, train.filter(label="harmful"), train.filter(label="harmless"), 1)
    with pytest.raises(NonFiniteError, match=r"direction addition at resid_pre of layer 1, factor=1e\+30"):
        effect(organism, Intervention.add_direction(d, factor=1e30), sets["harmless"])
    anti = fit_antidote(organism, train.filter(label="harmful"), train.filter(label="harmless"), calibrate=False)
    with pytest.raises(NonFiniteError, match=r"Jailbreak Antidote.*norm_fraction=1e\+30"):
        with anti.intervention(1e30).apply(organism):
            generate(organism, sets["harmless"], GEN)
    assert count_hooks(organism) == 0


def test_nan_logits_are_an_error(organism, small):
    _, sets = small
    with pytest.raises(NonFiniteError, match=r"next-token logits of prompt\(s\) \[0, 1, 2, 3\] .* under nan maker"):
        with hooked(organism, [("unembed.hook_out", lambda act, hook: act * float("nan"))], "nan maker"):
            refusal_score(organism, sets["harmless"])
    assert count_hooks(organism) == 0


def test_judge_says_when_empty_answers_count_as_refusals():
    judge = RefusalJudge()
    with pytest.warns(ShortAnswerWarning, match="2 of 3 answers .* counted as refusals"):
        assert judge(["", "sure here it is", " "]) == [True, False, True]
    assert judge.short_answers(["", "sure"]) == 1
    assert RefusalJudge(min_words=0)(["", "sure"]) == [False, False]  # phrases only: an empty answer is no refusal
