"""Utility as the cross-entropy of an intervened model on the unsteered model's own answers."""

import pytest
import torch

from interp.generation import GenerationConfig, generate_with_logits
from interp.hooks import count_hooks
from interp.intervention import Intervention, ScaleActivation
from interp.utility import answer_cross_entropy, reference_answers, utility_loss


@pytest.fixture(scope="module")
def harmless(plain_prompts):
    return plain_prompts.filter(label="harmless")[:10]


@pytest.fixture(scope="module")
def reference(organism, harmless):
    return reference_answers(organism, harmless, max_new_tokens=10)


def test_the_first_answer_token_is_read_where_generation_read_it(organism, harmless, reference):
    # CE of each answer's first token alone = -log p(token) from generation's own first-step logits
    first_only = [a[:1] for a in reference]
    ce = answer_cross_entropy(organism, harmless, first_only)
    _, logits = generate_with_logits(organism, harmless, GenerationConfig(max_new_tokens=1))
    want = -logits.float().log_softmax(-1)[torch.arange(len(first_only)), [a[0] for a in first_only]]
    assert torch.allclose(ce, want.cpu(), atol=1e-4)


def test_zero_intervention_equals_the_unsteered_model_and_batching_changes_nothing(organism, harmless, reference):
    base = answer_cross_entropy(organism, harmless, reference)
    assert torch.isfinite(base).all() and count_hooks(organism) == 0
    # greedy answers: every token was the model's top choice, so the loss per token is small
    assert float(base.mean()) < 0.5
    assert torch.equal(answer_cross_entropy(organism, harmless, reference, Intervention.none()), base)
    # each prompt alone (no padding) gives the same loss as in the left-padded batch
    alone = torch.cat([answer_cross_entropy(organism, [harmless[i]], [reference[i]]) for i in range(len(harmless))])
    assert torch.allclose(alone, base, atol=1e-4)
    rec = utility_loss(organism, harmless, Intervention.none(), reference)
    assert rec["ce_increase"]["difference"] == 0 and rec["ce_increase"]["ci95"] == [0.0, 0.0]
    assert rec["ce"]["n"] == len(harmless) and rec["ce_increase"]["paired"]


def test_a_destructive_intervention_raises_the_loss(organism, harmless, reference):
    base = answer_cross_entropy(organism, harmless, reference)
    mild = Intervention.of(ScaleActivation("z", (organism.n_layers - 1,), 0.9))
    silence = Intervention.of(ScaleActivation("z", None, 0.0))  # every head's output zeroed
    ce_mild = answer_cross_entropy(organism, harmless, reference, mild)
    ce_dead = answer_cross_entropy(organism, harmless, reference, silence)
    assert count_hooks(organism) == 0
    assert float(ce_dead.mean()) > float(base.mean()) + 1.0 and (ce_dead > base).all()
    assert float(ce_mild.mean()) < float(ce_dead.mean())
    rec = utility_loss(organism, harmless, silence, reference, unsteered_ce=base)
    lo, hi = rec["ce_increase"]["ci95"]
    assert lo > 0 and rec["ce_increase"]["difference"] == pytest.approx(float((ce_dead - base).mean()), abs=1e-3)


def test_empty_answers_are_nan_and_bad_input_is_one_clear_error(organism, harmless, reference):
    from interp.errors import InputError

    ce = answer_cross_entropy(organism, harmless[:2], [[], reference[1]])
    assert torch.isnan(ce[0]) and torch.isfinite(ce[1])
    with pytest.raises(InputError, match="answers for"):
        answer_cross_entropy(organism, harmless[:2], [reference[0]])
