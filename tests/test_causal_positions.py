"""Per-position ablation references: each position gets the reference value at the same offset from
the end, so replacing a head by its own reference changes nothing, and generation under the KV cache
takes the last position's value."""

import torch

from interp.causal.ablate import HeadReference, head_reference, position_slots
from interp.causal.attribution import head_gradients
from interp.causal.runner import ablation_scores
from interp.intervention import Intervention
from interp.scoring import last_logits
from interp.scoring import refusal_log_odds


def _all_heads(model, layers=None):
    return [(l, h) for l in (layers if layers is not None else range(model.n_layers)) for h in range(model.n_heads)]


def test_position_slots_count_from_the_end_and_skip_padding():
    x = torch.arange(10.0).view(2, 5, 1)  # rows 0..4 and 5..9
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    s = position_slots(x, mask, window=2)
    assert s[0, :, 0].tolist() == [4.0, 3.0, 1.0]  # last, second to last, mean of 0, 1, 2
    assert s[1, :, 0].tolist() == [9.0, 8.0, 7.0]  # the pads (5, 6) never count
    short = position_slots(x, mask, window=4)
    assert short[1, :, 0].tolist() == [9.0, 8.0, 7.0, 8.0, 8.0]  # past its start: the mean of its tokens
    assert position_slots(x, mask, window=2, mean=False)[0, :, 0].tolist() == [4.0, 3.0, 3.0]


def test_per_position_reference_leaves_logits_unchanged_when_activation_equals_it(tiny, plain_prompts):
    p = plain_prompts[:1]
    clean = last_logits(tiny, p)
    every = _all_heads(tiny)
    own = head_reference(tiny, p, window=128)  # the prompt's own output at each of its positions
    for method in ("mean", "resample"):
        with Intervention.ablate_heads(every, method, own).apply(tiny):
            assert torch.allclose(last_logits(tiny, p), clean, atol=1e-4)
    # the last token's value at every position is not the prompt's own activation: the model moves
    last = head_reference(tiny, p, "last")
    with Intervention.ablate_heads(_all_heads(tiny, [0]), "mean", last).apply(tiny):
        assert not torch.allclose(last_logits(tiny, p), clean, atol=1e-3)
    # the batched (stacked, resumed) path gives the same numbers as the context manager
    s = ablation_scores(tiny, p, [[], every, _all_heads(tiny, [1])], "mean", own)
    base = refusal_log_odds(tiny, clean)
    assert torch.allclose(s, base.expand_as(s), atol=1e-3)


def test_per_position_ablation_under_the_kv_cache(organism, plain_prompts):
    from interp.generation import GenerationConfig, generate

    ps = plain_prompts.filter(label="harmful")[:4]
    ref = plain_prompts[-8:]
    with Intervention.ablate_heads([(0, 1), (1, 3)], "mean", head_reference(organism, ref)).apply(organism):
        cached = generate(organism, ps, GenerationConfig(max_new_tokens=4, use_kv_cache=True))
    assert len(cached) == len(ps) and all(isinstance(a, str) for a in cached)


def test_gradients_estimate_per_position_replacement(organism, plain_prompts):
    ps = plain_prompts[:6]
    ref = head_reference(organism, plain_prompts[-8:])
    g = head_gradients(organism, ps)
    assert torch.allclose(HeadReference(g.z_slot, "position").last, g.z_last, atol=1e-5)
    est = g.ablation_estimate(ref.mean)  # per position: uses the per-slot gradient sums
    assert est.shape == (6, organism.n_layers, organism.n_heads)
    # replacing by the prompts' own per-position values is (to first order) no change; the rest slot
    # is a mean, so the estimate is small but not exactly zero
    own = g.ablation_estimate(g.z_slot[0]).abs()[0]
    assert float(own.max()) < float(est.abs().max())


def test_per_position_ablation_saves_and_loads(organism, plain_prompts, tmp_path):
    ps = plain_prompts[:3]
    ref = head_reference(organism, plain_prompts[-6:])
    for method in ("mean", "resample"):
        iv = Intervention.ablate_heads([(0, 2), (2, 5)], method, ref, seed=1)
        with iv.apply(organism):
            want = last_logits(organism, ps)
        back = Intervention.load(iv.save(tmp_path / method, organism))
        with back.apply(organism):
            assert torch.allclose(last_logits(organism, ps), want, atol=1e-5)
        assert "per position" in back.ops[0].summary()
