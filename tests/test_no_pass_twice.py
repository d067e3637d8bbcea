"""The unmodified model's answers are generated once per study: a stage's "unablated" or
"unsteered" condition on prompts the baseline stage answered takes the baseline's rows."""

from __future__ import annotations

import interp.stages.evidence as evidence
from interp.generation import GenerationConfig
from interp.intervention import Intervention
from interp.study import Study, StudyData


def test_judged_runs_reuse_the_baseline_answers_and_generate_the_rest(organism, plain_prompts, eval_prompts, monkeypatch):
    from interp.stages.baseline import baseline_stage

    test = eval_prompts.filter(family=None)
    study = Study(organism, StudyData(plain_prompts, plain_prompts[:0], test, provider="test"),
                  gen=GenerationConfig(max_new_tokens=6))
    baseline_stage(study)
    base = {r.prompt_id: r for r in study.answers if r.condition == "baseline"}
    generated = []
    real = evidence.evaluate_stack

    def counting(model, prompts, ivs, judge, gen):
        generated.append(len(ivs))
        return real(model, prompts, ivs, judge, gen)

    monkeypatch.setattr(evidence, "evaluate_stack", counting)
    ablate = Intervention.ablate_heads([(0, 0), (0, 2)], "zero")
    rows = evidence.judged_runs(study, test, {"unablated": Intervention.none(), "heads": ablate}, "t:", max_new_tokens=6)
    assert generated == [1]  # one pass, for the ablation only
    assert [r.answer for r in rows["unablated"]] == [base[p.id].answer for p in test]
    assert [r.refused for r in rows["unablated"]] == [base[p.id].refused for p in test]
    assert {r.condition for r in rows["unablated"]} == {"t:unablated"} and len(rows["heads"]) == len(test)
    # another answer length is another measurement: generated, not taken from the baseline
    generated.clear()
    rows = evidence.judged_runs(study, test, {"unablated": Intervention.none()}, "u:", max_new_tokens=3)
    assert generated == [1] and all(r.max_new_tokens == 3 for r in rows["unablated"])
