"""Head ablation: hooks, methods, generation under the KV cache, search, and bad input."""

import pytest
import torch

from interp.errors import InputError
from interp.hooks import count_hooks
from interp.prompts import PromptSet
from interp.scoring import last_logits

from interp.causal.ablate import head_reference, resolve_reference
from interp.intervention import Intervention
from interp.causal.runner import ablation_refusals, ablation_scores, evaluate_sets, measure_ablation, measure_head_sets
from interp.causal.search import SearchConfig, search_heads
from interp.causal.compare import recommend_heads
from interp.threads import model_threads



def ablate_heads(model, heads, method="mean", reference=None, seed=0):
    """The ablation as the library spells it: one Intervention, its heads checked against the model
    and its reference resolved first."""
    from interp.causal.heads import check_heads

    heads = check_heads(model, heads)
    return Intervention.ablate_heads(heads, method, resolve_reference(model, method, reference), seed).apply(model)


@pytest.fixture(autouse=True)
def _one_thread(organism):
    with model_threads(organism):  # tiny matrices: threads only add synchronisation on a shared machine
        yield


@pytest.fixture(scope="module")
def split(plain_prompts):
    h, l = plain_prompts.filter(label="harmful"), plain_prompts.filter(label="harmless")
    return h[:16], l[:16]


@pytest.fixture(scope="module")
def organism_search(organism, split):
    with model_threads(organism):
        s = search_heads(organism, *split, SearchConfig(max_heads=4))
        rec = recommend_heads(organism, *split, k=4, search=s)
    return s, rec


def z_at(model, prompts, layer):
    from interp.capture import capture

    return capture(model, prompts, sites=("z", layer), positions=[0, -1])[("z", layer)]  # [batch, 2, head, d_head]


def test_hooks_removed_and_outputs_unchanged(organism, plain_prompts):
    ps = plain_prompts[:4]
    before = last_logits(organism, ps)
    with ablate_heads(organism, [(0, 1), (2, 3)], method="mean", reference=plain_prompts):
        assert count_hooks(organism) == 2
        during = last_logits(organism, ps)
    assert count_hooks(organism) == 0
    assert torch.equal(last_logits(organism, ps), before)
    assert not torch.equal(during, before)
    with pytest.raises(RuntimeError, match="boom"):
        with ablate_heads(organism, [(1, 0)], method="zero"):
            raise RuntimeError("boom")
    assert count_hooks(organism) == 0
    assert torch.equal(last_logits(organism, ps), before)


def test_zero_and_mean_replace_only_the_chosen_heads_at_every_position(organism, plain_prompts):
    ps, ref = plain_prompts[:3], plain_prompts[-8:]
    clean = z_at(organism, ps, 1)
    with ablate_heads(organism, [(1, 2), (1, 5)], method="zero"):
        z = z_at(organism, ps, 1)
    assert torch.all(z[:, :, [2, 5]] == 0)
    keep = [h for h in range(organism.n_heads) if h not in (2, 5)]
    assert torch.allclose(z[:, :, keep], clean[:, :, keep], atol=1e-6)
    last = head_reference(organism, ref, positions="last")
    with ablate_heads(organism, [(1, 2)], method="mean", reference=last):  # position-free: one value everywhere
        z = z_at(organism, ps, 1)
    assert torch.allclose(z[:, :, 2], last.mean[1, 2].expand_as(z[:, :, 2]), atol=1e-5)  # first and last position alike
    per = head_reference(organism, ref)  # the default: per position from the end
    with ablate_heads(organism, [(1, 2)], method="mean", reference=ref):
        z = z_at(organism, ps, 1)
    assert torch.allclose(z[:, 1, 2], per.mean[0, 1, 2].expand_as(z[:, 1, 2]), atol=1e-5)  # last: last-token mean
    assert torch.allclose(z[:, 1, 2], last.mean[1, 2].expand_as(z[:, 1, 2]), atol=1e-5)
    assert torch.allclose(z[:, 0, 2], per.mean[-1, 1, 2].expand_as(z[:, 0, 2]), atol=1e-5)  # early: earlier tokens' mean


def test_reference_positions(organism, plain_prompts):
    ref = plain_prompts[-6:]
    last, every = head_reference(organism, ref, "last"), head_reference(organism, ref, "all")
    assert last.z.shape == every.z.shape == (6, organism.n_layers, organism.n_heads, organism.d_head)
    assert not torch.allclose(last.mean, every.mean)
    per = head_reference(organism, ref, window=4)
    assert per.z.shape == (6, 5, organism.n_layers, organism.n_heads, organism.d_head)
    assert torch.allclose(per.last, last.z, atol=1e-5)
    with pytest.raises(InputError, match="positions"):
        head_reference(organism, ref, "first")


def test_resample_is_seeded_and_takes_reference_outputs(organism, plain_prompts):
    ps, ref = plain_prompts[:4], plain_prompts[-6:]
    refz = head_reference(organism, ref, "last").z[:, 2, 1]  # [n_ref, d_head]
    with ablate_heads(organism, [(2, 1)], method="resample", reference=ref, seed=3):
        a = z_at(organism, ps, 2)[:, -1, 1]
    with ablate_heads(organism, [(2, 1)], method="resample", reference=ref, seed=3):
        b = z_at(organism, ps, 2)[:, -1, 1]
    assert torch.equal(a, b)
    assert all(torch.isclose(refz, row, atol=1e-5).all(-1).any() for row in a)


def test_ablation_holds_during_generation_with_kv_cache(organism, plain_prompts):
    from interp.generation import GenerationConfig, generate

    ps = plain_prompts.filter(label="harmful")[:6]
    with ablate_heads(organism, [(0, h) for h in range(organism.n_heads)], method="zero"):
        cached = generate(organism, ps, GenerationConfig(max_new_tokens=5, use_kv_cache=True))
        full = generate(organism, ps, GenerationConfig(max_new_tokens=5, use_kv_cache=False))
    assert cached == full  # position-free: later steps (one position each) see the same ablation
    assert cached != generate(organism, ps, GenerationConfig(max_new_tokens=5))


def test_batched_measurement_matches_the_context_manager(organism, plain_prompts):
    sets = {"harmful": plain_prompts.filter(label="harmful")[:6], "harmless": plain_prompts.filter(label="harmless")[:6]}
    heads, ref = [(0, 0), (0, 2), (0, 5)], plain_prompts.filter(label="harmless")[-8:]
    one = measure_ablation(organism, heads, sets, reference=ref)
    many = measure_head_sets(organism, [heads, [(3, 1)]], sets, reference=ref)
    for name in sets:
        for key in ("refusal_rate_before", "refusal_rate_after"):
            assert one["sets"][name][key] == pytest.approx(many[0]["sets"][name][key])
        assert one["sets"][name]["refusal_score_after"] == pytest.approx(many[0]["sets"][name]["refusal_score_after"], abs=1e-3)
    s = ablation_scores(organism, sets["harmful"], [[], heads], reference=ref)
    _, s2 = ablation_refusals(organism, sets["harmful"], [[], heads], reference=ref)
    assert torch.allclose(s, s2, atol=1e-3)  # the generation's first step gives the same score


def test_search_finds_few_heads_that_flip_behaviour(organism_search):
    s, rec = organism_search
    best = s.best
    assert best.success and 1 <= len(best.heads) <= 4
    assert best.effect >= 0.5
    assert rec.confident and rec.heads and set(rec.heads) <= set(best.heads)
    assert rec.set_effect > rec.null["max"]


def test_recommended_heads_move_held_out_refusal_far_more_than_random_heads(organism, organism_search, eval_prompts):
    import random

    s, rec = organism_search
    label = "harmful" if rec.flip == "refusal" else "harmless"
    held = {label: eval_prompts.filter(label=label, family=None)}
    others = [(l, h) for l in range(organism.n_layers) for h in range(organism.n_heads) if (l, h) not in rec.heads]
    rng = random.Random(0)
    rand = [rng.sample(others, len(rec.heads)) for _ in range(10)]
    res = measure_head_sets(organism, [rec.heads] + rand, held, reference=s.references[rec.flip])
    moved = abs(res[0]["sets"][label]["delta_rate"])
    random_moved = abs(sum(r["sets"][label]["delta_rate"] for r in res[1:]) / len(rand))
    assert moved >= 0.5
    assert random_moved <= 0.15
    assert moved - random_moved >= 0.4


def test_random_model_has_no_confident_heads(tiny, plain_prompts):
    h, l = plain_prompts.filter(label="harmful")[:12], plain_prompts.filter(label="harmless")[:12]
    with model_threads(tiny):
        s = search_heads(tiny, h, l, SearchConfig(max_heads=2))
        rec = recommend_heads(tiny, h, l, k=2, search=s)
    assert not rec.confident and rec.heads == []
    assert rec.reasons
    for d in ("refusal", "compliance"):
        assert s.single[d].abs().max() < 0.5  # log-odds: no head matters on a random model


@pytest.mark.parametrize("heads, match", [
    ([], "empty"),
    ([(4, 0)], "layer 4"),
    ([(-1, 0)], "layer -1"),
    ([(0, 8)], "head 8"),
    ([(0,)], "not a \\(layer, head\\) pair"),
    ([(0.5, 1)], "integers"),
])
def test_bad_head_sets(organism, heads, match):
    with pytest.raises(InputError, match=match):
        with ablate_heads(organism, heads):
            pass
    assert count_hooks(organism) == 0


def test_bad_reference_and_method(organism, plain_prompts):
    empty = PromptSet("empty", ())
    with pytest.raises(InputError, match="reference set is empty"):
        with ablate_heads(organism, [(0, 0)], method="mean", reference=empty):
            pass
    with pytest.raises(InputError, match="reference set is empty"):
        ablation_scores(organism, plain_prompts[:2], [[(0, 0)]], method="resample", reference=[])
    with pytest.raises(InputError, match="unknown ablation method"):
        with ablate_heads(organism, [(0, 0)], method="median"):
            pass
    # no default reference set (it would be some dataset's prompts): the caller passes its own
    with pytest.raises(InputError, match="pass reference="):
        with ablate_heads(organism, [(0, 0)], method="mean"):
            pass
    with pytest.raises(InputError, match="empty"):
        evaluate_sets(organism, {"harmful": empty})
    assert count_hooks(organism) == 0


def test_single_head_ablation_effects_are_the_signed_mean_score_change(organism, split):
    from interp.causal.search import single_head_ablation_effects
    from interp.scoring import refusal_log_odds

    harmful, harmless = split[0][:6], split[1][:6]
    eff = single_head_ablation_effects(organism, harmful, "refusal", method="zero")
    assert eff.shape == (organism.n_layers, organism.n_heads)
    base = refusal_log_odds(organism, last_logits(organism, harmful)).mean()
    for head in [tuple(divmod(int(eff.argmax()), organism.n_heads)), (0, 0)]:
        with ablate_heads(organism, [head], method="zero"):
            after = refusal_log_odds(organism, last_logits(organism, harmful)).mean()
        # refusal: positive = ablating the head lowers the harmful prompts' refusal score
        assert float(eff[head]) == pytest.approx(float(base - after), abs=1e-4)
    comp = single_head_ablation_effects(organism, harmless, "compliance", method="zero")
    base = refusal_log_odds(organism, last_logits(organism, harmless)).mean()
    head = tuple(divmod(int(comp.argmax()), organism.n_heads))
    with ablate_heads(organism, [head], method="zero"):
        after = refusal_log_odds(organism, last_logits(organism, harmless)).mean()
    assert float(comp[head]) == pytest.approx(float(after - base), abs=1e-4)
    with pytest.raises(InputError, match="unknown flip"):
        single_head_ablation_effects(organism, harmful, "sideways", method="zero")


def test_a_head_whose_effect_goes_through_the_others_is_left_out(organism, organism_search, split):
    """`_downstream`: a head adding under min_share of the set's effect once the others are ablated is
    left out when the set without it keeps the effect; when the small adders are the ones carrying
    the effect (redundant with each other), none is left out."""
    from interp.causal.recommend import _downstream
    from interp.causal.search import FLIPS

    s, rec = organism_search
    prompts = split[0] if rec.flip == "refusal" else split[1]
    sign, ref, extra = FLIPS[rec.flip][1], s.references[rec.flip], (3, 7)
    assert rec.confident and extra not in rec.candidates
    cand = list(rec.candidates) + [extra]
    sc = ablation_scores(organism, prompts, [[], cand], s.cfg.method, ref, s.cfg.seed, s.cfg.positions)
    set_eff = float((sign * (sc[1] - sc[0])).mean())
    marg = {h: set_eff / len(cand) for h in cand} | {extra: 0.01 * set_eff}
    reasons: list[str] = []
    assert _downstream(organism, prompts, cand, [], marg, set_eff, sc[0], sign, s.cfg, ref, 0.1, reasons) == [extra]
    assert "left out" in reasons[-1] and str(extra) in reasons[-1]
    # the harm detectors claimed to add 1% each: without them the set (the one idle head) keeps nothing
    marg = {h: 0.01 * set_eff for h in rec.candidates} | {extra: set_eff}
    reasons = []
    assert _downstream(organism, prompts, cand, [], marg, set_eff, sc[0], sign, s.cfg, ref, 0.1, reasons) == []
    assert "redundant" in reasons[-1]
    assert count_hooks(organism) == 0


def test_recommendation_reports_each_heads_share_of_the_set(organism_search):
    from interp.causal.recommend import RecommendConfig

    s, rec = organism_search
    shares = {h: ev["drop_one_share"] for h, ev in rec.evidence.items()}
    assert set(shares) == set(rec.candidates)
    # each harm detector adds a large share once the others are ablated: none is left out
    assert all(v >= 0.1 for v in shares.values()) and rec.heads == rec.candidates, shares
    with pytest.raises(InputError, match="min_share"):
        RecommendConfig(min_share=1.0)
