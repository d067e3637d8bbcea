"""Specificity: a head set whose ablation changes everything (not one behaviour) is "disruptive",
never recommended with confidence; the organism's refusal heads are specific."""

from dataclasses import replace

import pytest
import torch

from interp.causal.ablate import head_reference
from interp.causal.compare import recommend_heads
from interp.causal.runner import ablation_scores
from interp.causal.search import SearchConfig, search_heads
from interp.causal.specificity import DisruptionGuard, SpecificityConfig, specificity
from interp.errors import InputError
from interp.threads import model_threads

DISRUPTIVE = (0, 3)


@pytest.fixture(scope="module")
def disruptive_model():
    """The organism with one layer-0 head's output weights scaled 100x: its output dominates the
    residual stream, so ablating it scrambles every answer."""
    from interp.model import load_model

    m = load_model("organism")
    l, h = DISRUPTIVE
    with torch.no_grad():
        m.bridge.original_model.model.layers[l].self_attn.o_proj.weight[:, h * m.d_head:(h + 1) * m.d_head] *= 100
    return m


@pytest.fixture(scope="module")
def labels(plain_prompts):
    return plain_prompts.filter(label="harmful"), plain_prompts.filter(label="harmless")


def test_kl_metric_is_zero_without_ablation_and_positive_with_it(organism, labels):
    _, harmless = labels
    with model_threads(organism):
        kl = ablation_scores(organism, harmless[:6], [[], [(0, 4), (0, 5)]], "zero", metric="kl")
    assert torch.allclose(kl[0], torch.zeros(6), atol=1e-5)
    assert bool((kl[1] >= 0).all()) and float(kl[1].max()) > 0
    with pytest.raises(InputError, match="unknown metric"):
        ablation_scores(organism, harmless[:2], [[(0, 0)]], "zero", metric="entropy")


def test_disruptive_head_is_labelled_disruptive(disruptive_model, labels):
    harmful, harmless = labels
    m = disruptive_model
    ref = head_reference(m, harmful[:16].concat(harmless[:16]))
    with model_threads(m):
        for method in ("mean", "zero"):
            s = specificity(m, [DISRUPTIVE], harmless[16:], method, ref if method == "mean" else None)
            assert s["disruptive"], s
            assert s["measure"] == "ce" and s["ce"]["ci95"][0] > 10 * s["random_q95"]
            assert s["kl"]["ci95"][0] > 10 * specificity(m, [DISRUPTIVE], harmless[16:], method, ref if method == "mean"
                                                         else None, cfg=SpecificityConfig(measure="kl"))["random_q95"]
            assert s["verdict"].startswith("disruptive")
        # a search that came back with that head: the recommendation is not confident, and says why
        search = search_heads(m, harmful[:16], harmless[:16], SearchConfig(max_heads=1, method="zero"))
        faked = replace(search, refusal=replace(search.refusal, heads=[DISRUPTIVE], success=True, rate_after=0.0),
                        compliance=replace(search.compliance, heads=[], success=False))
        rec = recommend_heads(m, harmful[:16], harmless[:16], k=1, search=faked, held_out=harmless[16:])
    assert rec.disruptive and not rec.confident and rec.heads == []
    assert rec.to_dict()["label"] == "disruptive"
    assert any(r.startswith("disruptive") for r in rec.reasons)


def test_search_steps_past_a_disruptive_head(disruptive_model, labels):
    """Unguarded, the mean-ablation search starts from the head whose ablation breaks the model; the
    guard skips it (its KL is far above random heads') and finds the organism's own harm detectors."""
    harmful, harmless = labels
    m = disruptive_model
    with model_threads(m):
        bare = search_heads(m, harmful[:16], harmless[:16], SearchConfig(max_heads=4, method="mean"))  # the default
        guarded = search_heads(m, harmful[:16], harmless[:16], SearchConfig(max_heads=4, method="mean", guard=True))
    assert bare.compliance.heads[0] == DISRUPTIVE and not bare.compliance.skipped
    found = guarded.compliance  # the organism detects harmless requests under the other label's mean
    assert DISRUPTIVE not in found.heads and DISRUPTIVE in found.skipped
    assert set(found.heads) <= {(0, 4), (0, 5), (0, 2), (0, 0)} and len(found.heads) >= 2
    d = found.to_dict()
    assert d["skipped_disruptive"] == [list(DISRUPTIVE)] and d["guard"]["bounds"]
    assert d["steps"][0]["skipped_disruptive"] == [list(DISRUPTIVE)]
    assert all(st["kl"] <= float(d["guard"]["bounds"][str(len(st["heads"]))]) * 10 for st in d["steps"])
    with pytest.raises(InputError, match="guard_rounds"):
        SearchConfig(guard_rounds=-1)


def test_guard_keeps_heads_that_move_their_own_prompts_most(disruptive_model, labels):
    """Both sets below change harmful prompts far more than random heads do; only the one that
    changes them by a large share of what it does to its own (harmless) prompts is skipped."""
    harmful, harmless = labels
    m = disruptive_model
    ref = head_reference(m, harmful[:16])  # the other label's mean, as the compliance search ablates with
    g = DisruptionGuard(m, harmful[16:], harmless[16:], "harmful prompts", "mean", ref)
    with model_threads(m):
        keep, skip = g.disruptive([[(0, 4), (0, 5)], [DISRUPTIVE]])
    assert skip["disruptive"] and skip["lo"] > skip["bound"] and skip["kl"] > g.leak * skip["kl_target"]
    assert not keep["disruptive"]
    assert g.to_dict()["bounds"].keys() == {"1", "2"}
    with pytest.raises(InputError, match="leak"):
        DisruptionGuard(m, harmful[:2], harmless[:2], "x", leak=0)


def test_organism_refusal_heads_are_specific(organism, labels):
    harmful, harmless = labels
    heads = [(0, 4), (0, 5), (0, 2), (0, 0)]  # the organism's harm detectors (see docs/causal.md)
    ref = head_reference(organism, harmful[:16].concat(harmless[:16]))
    with model_threads(organism):
        for method in ("mean", "zero"):
            s = specificity(organism, heads, harmless[16:], method, ref if method == "mean" else None)
            assert not s["disruptive"], s
            assert s["kl"]["n"] == 16 and s["random"]["n"] == 20


def test_bad_specificity_config():
    with pytest.raises(InputError, match="n_random"):
        SpecificityConfig(n_random=1)
    with pytest.raises(InputError, match="specificity measure"):
        SpecificityConfig(measure="entropy")
    with pytest.raises(InputError, match="answer_tokens"):
        SpecificityConfig(answer_tokens=0)


def test_specificity_leaves_out_the_prompts_the_flip_changes_by_design(organism, labels):
    """A refusal flip removes refusal: over-refused "harmless" prompts change under it by design, so
    the check reads the off-target prompts the unablated model does not lean to refuse."""
    from interp.causal.specificity import untouched

    harmful, harmless = labels
    mixed = harmless[:12].concat(harmful[:4])  # 4 prompts the organism refuses, in the harmless role
    with model_threads(organism):
        kept, what = untouched(organism, "refusal", mixed)
        assert {p.text for p in kept} == {p.text for p in harmless[:12]} and "12 of 16 harmless" in what
        kept, what = untouched(organism, "compliance", harmful[:10].concat(harmless[:2]))
        assert len(kept) == 10 and "10 of 12 harmful" in what
        # too few untouched prompts: all of them, and the text says why
        kept, what = untouched(organism, "refusal", harmful[:10].concat(harmless[:3]))
        assert len(kept) == 13 and "too few" in what
        with pytest.raises(InputError, match="unknown flip"):
            untouched(organism, "sideways", harmless)


def test_one_teacher_forced_pass_gives_the_cross_entropy_and_the_kl_of_separate_passes(organism, labels):
    """answer_reads (every set a resumed replica of one pass) against one plain pass per set for the
    cross-entropy and the last-position KL of the refusal scan, under per-position mean ablation."""
    import random

    from interp.causal.answers import _answer_slots
    from interp.causal.specificity import answer_reads, own_answers
    from interp.hooks import count_hooks
    from interp.intervention import Intervention
    from interp.intervention.heads import AblateHeads
    from interp.utility import answer_cross_entropy

    harmful, harmless = labels
    m, prompts = organism, harmless[:12]
    ref = head_reference(m, harmful[:8].concat(harmless[:8]))
    rng = random.Random(3)
    sets = [[], [(0, 4)], [(2, 1), (3, 0)]] + [rng.sample([(l, h) for l in range(4) for h in range(8)], 2) for _ in range(4)]
    with model_threads(m):
        ce, kl = answer_reads(m, prompts, sets, "mean", ref, answer_tokens=6)
        answers = own_answers(m, prompts, 6)
        n = max(len(a) for a in answers)
        padded = [a + [m.tokenizer.eos_token_id] * (n - len(a)) for a in answers]
        counted = [len(a) for a in answers]
        vals = _answer_slots(ref.mean, True, False, n)
        base = answer_cross_entropy(m, prompts, padded, counted=counted)
        for j, hs in enumerate(sets):
            iv = Intervention.of(AblateHeads(tuple(hs), "mean", vals)) if hs else None
            want = answer_cross_entropy(m, prompts, padded, iv, counted=counted) - base
            assert torch.allclose(ce[j], want, atol=1e-4, equal_nan=True), hs
        want_kl = ablation_scores(m, prompts, sets, "mean", ref, metric="kl")
    assert torch.allclose(kl, want_kl, atol=1e-4)
    assert float(ce[0].abs().max()) < 1e-5 and float(kl[0].max()) < 1e-5  # the unablated row
    assert float(ce[1:].abs().max()) > 1e-3  # and the ablations do change the answers' likelihood
    assert count_hooks(m) == 0


def test_random_sets_are_shared_between_candidates_and_read_once(organism, labels, monkeypatch):
    """The null of a set size is one stream filtered to miss the candidate: two candidates of a
    size share the random sets that miss both, and a set read for one is not read again."""
    import interp.causal.answers as answers
    import interp.causal.specificity as spec
    from interp.causal.specificity import null_sets

    a, b = [(0, 4), (2, 1)], [(0, 4), (3, 0)]
    na, nb = null_sets(organism, a, 20, 0), null_sets(organism, b, 20, 0)
    assert all(not set(s) & set(a) for s in na) and all(not set(s) & set(b) for s in nb)
    assert len({tuple(s) for s in na} & {tuple(s) for s in nb}) >= 15 and null_sets(organism, a, 20, 0) == na
    assert null_sets(organism, a, 20, 1) != na
    harmful, harmless = labels
    ref = head_reference(organism, harmful[:8].concat(harmless[:8]))
    read = []
    real = answers.ablated_answer_reads
    monkeypatch.setattr(spec, "ablated_answer_reads", lambda m, p, sets, *r: read.append(len(sets)) or real(m, p, sets, *r))
    cfg = SpecificityConfig(answer_tokens=4)
    with model_threads(organism):
        first = specificity(organism, a, harmless[:8], "mean", ref, cfg=cfg)
        again = specificity(organism, a, harmless[:8], "mean", ref, cfg=cfg)
        specificity(organism, b, harmless[:8], "mean", ref, cfg=cfg)
    assert read[0] == 21 and len(read) == 2 and read[1] <= 6  # the second call of a reads nothing new
    assert first == again
