"""The converged heads (a search found them, and single-head ablation and patching both rank them
near the top) are tested as a set; the specificity check reads the model's own answers, with
per-position references aligned as in cached generation."""

from types import SimpleNamespace

import torch

from interp.causal.ablate import head_reference
from interp.causal.converge import converged
from interp.causal.specificity import _answer_slots, answer_ce_increase
from interp.hooks import count_hooks
from interp.intervention import Intervention
from interp.intervention.heads import AblateHeads
from interp.runner import forward
from interp.threads import model_threads


def _rec(cands, single, other=()):
    """What `converged` reads of a Recommendation: the refusal search found `cands`, the
    compliance search `other` (with no map of its own)."""
    return SimpleNamespace(candidates=cands, flip="refusal", search=SimpleNamespace(
        single={"refusal": single}, refusal=SimpleNamespace(heads=list(cands)),
        compliance=SimpleNamespace(heads=list(other))))


def test_converged_keeps_searched_heads_top_by_ablation_and_patching():
    L, H = 6, 4
    abl, patch = torch.zeros(L, H), torch.zeros(L, H)
    abl[1, 0], abl[4, 3], abl[2, 2] = 3.0, 2.0, 1.0  # (1, 0) needed, (4, 3) needed, (2, 2) needed
    patch[4, 3], patch[2, 2], patch[5, 1] = 1.0, 0.5, 0.8  # but (1, 0) carries no harmful/harmless difference
    recs = {"mean": _rec([(1, 0)], abl, other=[(2, 2)]), "zero": _rec([(4, 3)], abl)}
    heads, rows = converged(recs, patch, top=3, k=4)
    # best rank sum first; (2, 2) found by the flip that was not the best; (5, 1) never searched;
    # (1, 0) is needed but carries no harmful/harmless difference
    assert heads == [(4, 3), (2, 2)]
    by = {tuple(r["head"]): r for r in rows}
    assert not by[(1, 0)]["converged"] and by[(1, 0)]["ablation_rank"] == 1 and by[(1, 0)]["patching_rank"] > 3
    assert by[(4, 3)]["methods"] == ["zero"] and by[(2, 2)]["methods"] == ["mean"]
    assert converged(recs, patch, top=3, k=1)[0] == [(4, 3)]
    assert converged({"mean": _rec([(1, 0)], abl)}, patch, top=3)[0] == []


def test_answer_slots_reproduce_cached_generation(organism, plain_prompts):
    """Teacher forcing the ablated model's own greedy answer with the aligned per-position
    reference gives the logits cached generation had: the first answer token's distribution exactly,
    and the greedy token at every answer position."""
    from interp.generation import generate_batch

    m = organism
    ref = head_reference(m, plain_prompts[:16])  # per position from the end
    heads = ((0, 4), (0, 5), (2, 1))
    prompt = plain_prompts[20]
    with model_threads(m):
        b = m.encode([prompt.text])
        first = []
        with Intervention.of(AblateHeads(heads, "mean", ref.mean)).apply(m):
            ans = generate_batch(m, b, 8, first_logits=first)[0]
        assert len(ans) >= 3
        n = len(ans)
        tokens = torch.tensor([b.tokens[0].tolist() + ans])
        mask = torch.ones_like(tokens)
        for vals, aligned in ((_answer_slots(ref.mean, True, False, n), True), (ref.mean, False)):
            with Intervention.of(AblateHeads(heads, "mean", vals)).apply(m):
                logits = forward(m, tokens, mask, logits_to_keep=n + 1)[0]
            close = torch.allclose(logits[0].float(), first[0][0].float(), atol=1e-3)
            assert close == aligned  # unaligned, the prompt's last tokens take the wrong slots
            if aligned:
                assert logits[:-1].argmax(-1).tolist() == ans
    assert count_hooks(m) == 0


def test_answer_ce_increase_is_zero_for_no_heads_and_large_for_a_broken_model(organism, plain_prompts):
    m = organism
    harmless = plain_prompts.filter(label="harmless")[:8]
    ref = head_reference(m, plain_prompts[:16])
    with model_threads(m):
        ce = answer_ce_increase(m, harmless, [[], [(0, 4)], [(l, h) for l in range(2) for h in range(m.n_heads)]],
                                "mean", ref, answer_tokens=8)
    assert torch.allclose(ce[0], torch.zeros(8), atol=1e-5)
    assert float(ce[2].mean()) > 10 * max(float(ce[1].abs().mean()), 0.01)  # every head of two blocks gone
    assert count_hooks(m) == 0


def test_counted_answer_tokens_ignore_the_padding(organism, plain_prompts):
    """Padding an answer and counting only its own tokens gives the unpadded cross-entropy (later
    tokens cannot change earlier logits); counting the padding changes it."""
    from interp.utility import answer_cross_entropy, reference_answers

    m = organism
    prompts = plain_prompts.filter(label="harmless")[:4]
    with model_threads(m):
        ans = reference_answers(m, prompts, 6)
        plain = answer_cross_entropy(m, prompts, ans)
        padded = [a + [a[-1]] * 5 for a in ans]
        counted = answer_cross_entropy(m, prompts, padded, counted=[len(a) for a in ans])
        every = answer_cross_entropy(m, prompts, padded)
    assert torch.allclose(plain, counted, atol=1e-4)
    assert not torch.allclose(plain, every, atol=1e-3)


def test_a_converged_head_that_does_not_flip_alone_is_grown_and_confirmed(organism, plain_prompts):
    """One of the organism's four harm detectors does not remove refusal alone; the greedy steps
    grow the set from it with the other detectors, and the grown set passes the recommendation's test."""
    from interp.causal.converge import recommend_converged
    from interp.causal.recommend import RecommendConfig, recommend_heads
    from interp.causal.search import SearchConfig, search_heads
    from interp.scoring import RefusalJudge

    h, l = plain_prompts.filter(label="harmful")[:12], plain_prompts.filter(label="harmless")[:12]
    with model_threads(organism):
        s = search_heads(organism, h, l, SearchConfig(max_heads=4, method="mean"), max_new_tokens=6)
        recs = {"mean": recommend_heads(organism, h, l, 4, search=s)}
        m, rec, tried = recommend_converged(organism, h, l, [(0, 4)], recs, ["mean"], RecommendConfig(k=4),
                                            RefusalJudge(), 6)
    assert tried[0]["judged_alone"][1] > 0.5  # (0, 4) alone leaves most refusal in place
    assert m == "mean" and rec.confident and tried[0]["added"], tried
    assert rec.checked.heads[0] == (0, 4) and all(x[0] == 0 for x in rec.checked.heads)
    assert count_hooks(organism) == 0


def test_top_reaches_2k_heads_and_at_most_a_sixteenth():
    from interp.causal.converge import top_heads

    assert top_heads(270, 4) == 8  # SmolLM2: 2k
    assert top_heads(32, 4) == 2  # the organism: 2k would be a quarter of its heads
    assert top_heads(8, 4) == 1
