"""Estimate first, measure the top few: resumed runs, attribution patching, and the fast searches
against the exhaustive ones on the organism (same heads, same direction)."""

import pytest
import torch

from interp.errors import InputError
from interp.hooks import count_hooks, hooked
from interp.prompts import PromptSet
from interp.scoring import refusal_log_odds

from interp.causal.ablate import head_reference
from interp.causal.runner import ablation_scores
from interp.causal.search import SearchConfig, search_heads
from interp.causal.attribution import attribute, head_gradients, progress_bar, refusal_score_metric
from interp.causal.heads import all_heads
from interp.hooknames import act_name
from interp.causal.patching import activation_patching
from organisms.provider import make_pairs
from interp.runner import last_logits
from interp.threads import model_threads


@pytest.fixture(autouse=True)
def _one_thread(organism):
    with model_threads(organism):
        yield


@pytest.fixture(scope="module")
def split(plain_prompts):
    return plain_prompts.filter(label="harmful")[:16], plain_prompts.filter(label="harmless")[:16]


@pytest.fixture(scope="module")
def searches(organism, split):
    with model_threads(organism):
        return {ex: search_heads(organism, *split, SearchConfig(max_heads=4, exhaustive=ex)) for ex in (False, True)}


# ------------------------------------------------------------------ resumed runs (interp.runner)
def test_resumed_ablation_scores_equal_full_passes(organism, split):
    h, l = split
    ref = head_reference(organism, h.concat(l))
    sets = [[], [(0, 4)], [(2, 1), (3, 0)], [(1, 2), (0, 7), (3, 3)], [(3, 5)]]
    for method in ("mean", "zero", "resample"):
        a = ablation_scores(organism, h[:6], sets, method, ref, resume=True)
        b = ablation_scores(organism, h[:6], sets, method, ref, resume=False)
        assert torch.allclose(a, b, atol=1e-4), method
    # a greedy step: every set holds the set so far, cached once with it ablated
    base = [(2, 1), (1, 5)]
    steps = [base, base + [(0, 3)], base + [(3, 6)], base + [(2, 7)]]
    for method in ("mean", "resample"):
        a = ablation_scores(organism, h[:6], steps, method, ref, base=base)
        b = ablation_scores(organism, h[:6], steps, method, ref, resume=False)
        assert torch.allclose(a, b, atol=1e-4), method
    with pytest.raises(InputError, match="base set"):
        ablation_scores(organism, h[:6], [[(0, 1)]], base=[(2, 1)])
    assert count_hooks(organism) == 0


# ------------------------------------------------------------------ attribution
def test_attribution_leaves_no_hooks_and_restores_parameters_also_on_error(organism, plain_prompts):
    b = organism.encode(plain_prompts[:3].texts)
    assert all(p.requires_grad for p in organism.bridge.parameters())

    def boom(logits):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        attribute(organism, b, [act_name("z", 0)], boom, lambda n, a, g: None)
    assert count_hooks(organism) == 0 and all(p.requires_grad for p in organism.bridge.parameters())
    red, m = attribute(organism, b, ["blocks.1.hook_resid_pre"], refusal_score_metric(organism), lambda n, a, g: g.shape)
    assert red["blocks.1.hook_resid_pre"] == (3, b.tokens.shape[1], organism.d_model)
    assert torch.allclose(m, refusal_log_odds(organism, last_logits(organism, b)), atol=1e-4)
    assert count_hooks(organism) == 0 and all(p.requires_grad for p in organism.bridge.parameters())
    assert all(p.grad is None for p in organism.bridge.parameters())  # no weight gradients were taken
    with pytest.raises(InputError, match="at least one hook"):
        attribute(organism, b, [], refusal_score_metric(organism), lambda n, a, g: None)


def test_head_estimate_is_exact_for_a_small_change(organism, split):
    """First order: nudging one head's output by a small vector at every position changes the
    score by the gradient's dot product with it, as the estimate says."""
    h, _ = split
    g = head_gradients(organism, h[:4])
    gen = torch.Generator().manual_seed(0)
    for l, hd in [(0, 4), (2, 6), (3, 1)]:
        d = 1e-2 * torch.randn(organism.d_head, generator=gen)
        est = g.g_sum[:, l, hd] @ d  # sum over positions of dm/dz . d

        def nudge(z, hook):
            z = z.clone()
            z[:, :, hd] += d
            return z

        b = organism.encode(h[:4].texts)
        with hooked(organism, [(act_name("z", l), nudge)]):
            after = refusal_log_odds(organism, last_logits(organism, b))
        order = sorted(range(4), key=lambda i: len(h[i].text))  # `b` is in the caller's order, like g
        exact = after - g.metric
        assert torch.allclose(est, exact, atol=1e-3 + 0.05 * float(exact.abs().max())), (l, hd, est, exact, order)


def test_estimate_top_k_holds_the_heads_exact_ablation_finds(organism, searches):
    ex = searches[True]
    best = ex.best
    assert best.success and best.heads
    est = ex.estimate[best.flip]  # the estimate at the unablated run, every head
    top = {divmod(i, organism.n_heads) for i in est.flatten().argsort(descending=True)[:8].tolist()}
    assert best.heads[0] in top  # the head the exhaustive scan ranks first is measured by the fast search
    q = ex.estimate_quality()[best.flip]
    assert q["n_exact"] == organism.n_layers * organism.n_heads and q["spearman"] > 0.6


def test_fast_head_search_finds_the_exhaustive_heads(organism, searches):
    fast, ex = searches[False], searches[True]
    assert fast.best.flip == ex.best.flip
    assert fast.best.heads == ex.best.heads and fast.cfg.reference == ex.cfg.reference
    assert fast.best.success and fast.best.effect == pytest.approx(ex.best.effect)
    d = fast.best.flip
    assert int(fast.measured[d].sum()) == 8 and bool(ex.measured[d].all())
    # where the fast search measured a head, it holds the exhaustive scan's exact number
    m = fast.measured[d]
    assert torch.allclose(fast.single[d][m], ex.single[d][m], atol=1e-4)
    assert fast.to_dict()["estimate"][d]["n_exact"] == 8
    assert count_hooks(organism) == 0


def test_exhaustive_scan_is_the_one_pass_per_head_scan(organism, split, searches):
    """--exhaustive keeps the old definition: each head ablated alone in a full forward pass."""
    ex = searches[True]
    h, l = split
    for d, prompts in (("refusal", h), ("compliance", l)):
        sets = [[]] + [[x] for x in all_heads(organism)]
        s = ablation_scores(organism, prompts, sets, ex.cfg.method, ex.references[d], ex.cfg.seed, resume=False)
        sign = -1 if d == "refusal" else 1
        old = (sign * (s[1:] - s[:1]).mean(1)).view(organism.n_layers, organism.n_heads)
        assert torch.allclose(ex.single[d], old, atol=1e-4), d
    assert ex.best.heads == [(0, 4), (0, 5), (0, 2), (0, 0)]  # what the search chose before issue 17


# ------------------------------------------------------------------ patching
def test_fast_patching_measures_the_top_heads_and_cells_exactly(organism):
    pairs = make_pairs(organism, 8, seed=1)
    fast = activation_patching(organism, *pairs)
    ex = activation_patching(organism, *pairs, exhaustive=True)
    top = lambda p: set(p.head_effect.abs().flatten().argsort(descending=True)[:4].tolist())  # noqa: E731
    assert top(fast) == top(ex)
    for kind, maps in (("heads", "heads"), ("resid", "resid")):
        m = fast.measured[kind]
        assert int(m.sum()) == min(8, m.numel()) and bool(ex.measured[kind].all())
        for d in getattr(fast, maps):
            assert torch.allclose(getattr(fast, maps)[d][m], getattr(ex, maps)[d][m], atol=1e-4)
    assert all(v > 0.8 for d, v in ex.estimate_quality()["heads"].items() if d != "n_exact")
    assert fast.to_dict()["exhaustive"] is False
    assert count_hooks(organism) == 0
    with pytest.raises(InputError, match="top_k"):
        activation_patching(organism, *pairs, top_k=0)


# ------------------------------------------------------------------ directions
def test_fast_direction_search_selects_the_exhaustive_direction(organism, plain_prompts):
    from probes.directions import SelectionConfig, find_refusal_direction
    from probes.run import split_indices

    tr, va = split_indices(plain_prompts, 0.33, seed=0)
    train = PromptSet("plain:train", tuple(plain_prompts[i] for i in tr))
    val = PromptSet("plain:val", tuple(plain_prompts[i] for i in va))
    fast = find_refusal_direction(organism, train, val, labels="category", cfg=SelectionConfig(top_k=4))
    ex = find_refusal_direction(organism, train, val, labels="category", cfg=SelectionConfig(exhaustive=True))
    assert (fast.site, fast.layer, fast.position) == (ex.site, ex.layer, ex.position)
    assert torch.allclose(fast.vector, ex.vector)
    measured = [r for r in fast.candidates if r["measured"]]
    assert 1 <= len(measured) <= 4 * 2 and not any(r["pruned"] for r in measured)  # pruned layers are never measured
    exact = {(r["site"], r["layer"], r["position"]): r for r in ex.candidates}
    for r in measured:
        e = exact[(r["site"], r["layer"], r["position"])]
        for k in ("ablation_score", "addition_score", "kl"):
            assert r[k] == pytest.approx(e[k], abs=2e-3)
    assert all(r["measured"] for r in ex.candidates if r["norm"])
    assert ex.meta["estimate"]["ablation_spearman"] > 0.5
    assert "measured exactly" in fast.reason
    assert count_hooks(organism) == 0


def test_batched_candidate_scores_equal_one_candidate_at_a_time(organism, plain_prompts):
    """The exhaustive direction search measures every candidate as before: directional ablation
    everywhere and addition at the candidate's own site, one full pass per candidate."""
    from interp.intervention import Intervention
    from interp.scoring import last_logits
    from probes.directions import measure_candidates

    h, l = plain_prompts.filter(label="harmful")[:5], plain_prompts.filter(label="harmless")[:4]
    gen = torch.Generator().manual_seed(0)
    vecs = 3 * torch.randn(3, organism.d_model, generator=gen)
    where = [("resid_pre", 2), ("resid_mid", 0), ("resid_pre", 3)]
    base = last_logits(organism, l)
    abl, add, kl = measure_candidates(organism, h, l, vecs, where, 1.0, base, max_rows=8)  # forces several chunks
    for c, (site, layer) in enumerate(where):
        with Intervention.ablate_direction(vecs[c]).apply(organism):
            a = last_logits(organism, h.concat(l))
        with Intervention.add_direction(vecs[c], layer, 1.0, site=site).apply(organism):
            d = last_logits(organism, l)
        lp, lq = base.log_softmax(-1), a[len(h):].log_softmax(-1)
        assert float(abl[c]) == pytest.approx(float(refusal_log_odds(organism, a[:len(h)]).mean()), abs=1e-4)
        assert float(add[c]) == pytest.approx(float(refusal_log_odds(organism, d).mean()), abs=1e-4)
        assert float(kl[c]) == pytest.approx(float((lp.exp() * (lp - lq)).sum(-1).mean()), abs=1e-5)
    assert count_hooks(organism) == 0


def test_bad_top_k():
    from probes.directions import SelectionConfig

    for make in (lambda: SearchConfig(top_k=0), lambda: SelectionConfig(top_k=0), lambda: SelectionConfig(max_rounds=0)):
        with pytest.raises(InputError, match="positive integer"):
            make()


def test_progress_bar_counts_candidates_left():
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    out = Terminal()
    with progress_bar(5, "direction candidates", file=out) as bar:
        bar.update(2)
        bar.refresh()
    shown = out.getvalue()
    assert "direction candidates" in shown and "2/5" in shown and "<" in shown  # done/total [elapsed<left]
    assert progress_bar(3, None).disable  # no label: nothing shown
    log = io.StringIO()  # not a terminal (a batch job's log): one line per step instead of a bar
    with progress_bar(3, "x", file=log) as bar:
        bar.update(3)
    assert "x: 3/3 candidates done" in log.getvalue()


def test_rank_exhaustive_flag_measures_every_candidate(tmp_path):
    import json

    from interp.cli import main

    counts = {}
    for flag in ([], ["--exhaustive"]):
        out = tmp_path / ("ex" if flag else "fast")
        assert main(["rank", "--labels", "category", "--out", str(out)] + flag) == 0
        d = json.loads((out / "direction.json").read_text())
        rows = d["candidates"]
        counts[bool(flag)] = sum(r["measured"] for r in rows)
        assert d["selection"]["exhaustive"] is bool(flag)
        chosen = (d["site"], d["layer"], d["position"])
        if flag:
            assert all(r["measured"] for r in rows if r["norm"])
            assert chosen == fast_choice
        else:
            fast_choice = chosen
            assert not any(r["measured"] for r in rows if r["pruned"])
    assert counts[False] < counts[True]
