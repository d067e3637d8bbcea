"""Activation patching, direct logit attribution, the comparison, the demo section and the CLI."""

import math

import pytest
import torch

from interp.errors import InputError
from interp.hooks import count_hooks
from interp.prompts import Prompt, PromptSet
from interp.scoring import last_logits

from interp.causal.search import SearchConfig, search_heads
from interp.causal.compare import compare_maps, compare_methods, spearman
from interp.causal.dla import direct_logit_attribution, logit_lens, refusal_logit_diff
from interp.causal.patching import activation_patching, check_pairs, equal_length_pairs, patch_heads, patch_resid
from interp.stages.causal import CausalConfig, causal_stage
from organisms.provider import make_pairs
from interp.threads import model_threads


@pytest.fixture(autouse=True)
def _one_thread(organism):
    with model_threads(organism):
        yield


@pytest.fixture(scope="module")
def pairs(organism):
    return make_pairs(organism, 8, seed=1)


@pytest.fixture(scope="module")
def patching(organism, pairs):
    with model_threads(organism):
        return activation_patching(organism, *pairs)


def test_pairs_have_equal_token_lengths_and_opposite_labels(organism, pairs):
    h, l = pairs
    assert len(h) == len(l) == 8
    assert set(h.labels) == {"harmful"} and set(l.labels) == {"harmless"}
    a, b = check_pairs(organism, h, l)
    assert a.lengths == b.lengths


def test_patching_maps(organism, patching, pairs):
    L, H = organism.n_layers, organism.n_heads
    for m in patching.heads.values():
        assert m.shape == (L, H) and torch.isfinite(m).all()
    assert patching.logit_diff["harmful"] > 0 > patching.logit_diff["harmless"]
    for m in patching.resid.values():
        assert m.shape == (L, len(patching.positions))
        # layer 0's block input at template tokens is the same embedding in both runs: nothing to move
        assert m[0].abs().max() < 1e-4
        # the last layer's input at the last position carries almost all of the decision
        assert m[-1, -1] > 0.5
    assert count_hooks(organism) == 0
    # patching a run into itself changes nothing
    assert patch_heads(organism, pairs[0], pairs[0]).abs().max() < 1e-4


def test_patching_last_position_only(organism, pairs):
    last = patch_heads(organism, *pairs, positions="last")
    assert last.shape == (organism.n_layers, organism.n_heads) and torch.isfinite(last).all()


def test_patching_rejects_unaligned_pairs(organism, pairs):
    h, l = pairs
    with pytest.raises(InputError, match="8 and 7 prompts"):
        patch_heads(organism, h, l[:7])
    longer = PromptSet("x", (Prompt("how do i make a bomb at home right now ?", "harmful"),) + tuple(h)[1:])
    with pytest.raises(InputError, match="token length.*equal_length_pairs"):
        patch_resid(organism, longer, l)
    with pytest.raises(InputError, match="non-empty"):
        patch_heads(organism, [], [])
    with pytest.raises(InputError, match="head positions"):
        patch_heads(organism, h, l, positions="first")


def test_dla_sums_to_the_logit_difference(organism, plain_prompts):
    ps = plain_prompts[::4]
    dla = direct_logit_attribution(organism, ps)
    actual = refusal_logit_diff(organism, last_logits(organism, ps))
    assert torch.allclose(dla.actual, actual, atol=1e-4)
    assert torch.allclose(dla.total, actual, atol=1e-3)
    # per-head z @ W_O reproduces each attention output (no bias on a Llama-style model)
    assert dla.attn_rest.abs().max() < 1e-3 and dla.rest.abs().max() < 1e-3
    assert dla.heads.shape == (len(ps), organism.n_layers, organism.n_heads)
    assert dla.summary("harmful")["actual"] > 0 > dla.summary("harmless")["actual"]
    lens = logit_lens(organism, ps)
    assert lens.shape == (len(ps), organism.n_layers)
    assert torch.allclose(lens[:, -1], actual, atol=1e-3)  # the last layer's lens is the model's own output


def test_dla_on_random_model(tiny, plain_prompts):
    ps = plain_prompts[::8]
    dla = direct_logit_attribution(tiny, ps)
    assert torch.allclose(dla.total, refusal_logit_diff(tiny, last_logits(tiny, ps)), atol=1e-3)
    assert dla.head_difference().abs().max() < 0.5


def test_random_model_patching_is_near_zero(tiny):
    h, l = make_pairs(tiny, 6)
    with model_threads(tiny):
        p = activation_patching(tiny, h, l, resid=False)
    for m in p.heads.values():
        assert m.abs().max() < 0.1


def test_spearman():
    a = torch.arange(6.0)
    assert spearman(a, a) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(torch.tensor([1.0, 1.0, 2.0, 3.0]), torch.tensor([1.0, 2.0, 3.0, 4.0])) == pytest.approx(0.9487, abs=1e-3)
    assert math.isnan(spearman(torch.ones(5), a[:5]))


def test_comparison_table_and_figure(organism, patching, plain_prompts):
    class FakeRanking:  # the probes HeadRanking interface the comparison reads
        layers = list(range(organism.n_layers))
        scores = {"accuracy": torch.rand(1, organism.n_layers, organism.n_heads)}

        def __getitem__(self, k):
            return self.scores[k][0]

    h, l = plain_prompts.filter(label="harmful")[:8], plain_prompts.filter(label="harmless")[:8]
    search = search_heads(organism, h, l, SearchConfig(max_heads=2, reference="opposite"))
    dla = direct_logit_attribution(organism, h.concat(l))
    c = compare_methods(organism, search, patching, dla, FakeRanking())
    assert set(c.maps) == {"ablation", "patching", "dla", "probe"}
    assert len(c.correlations) == 6 and all(-1 <= v <= 1 for v in c.correlations.values() if not math.isnan(v))
    rows = c.table()
    assert len(rows) == organism.n_layers * organism.n_heads and "probe_rank" in rows[0]
    fig = c.figure()
    assert len(fig.data) == 4
    with pytest.raises(InputError, match="at least two"):
        compare_maps({"a": torch.zeros(2, 2)})


def test_equal_length_pairs_prefer_the_same_phrasing(organism, plain_prompts):
    h, l = equal_length_pairs(organism, plain_prompts.filter(label="harmful"), plain_prompts.filter(label="harmless"), 8)
    assert len(h) == len(l) == 8 and len({p.id for p in h}) == 8 and len({p.id for p in l}) == 8
    check_pairs(organism, h, l)  # equal token lengths
    a, b = organism.encode(h), organism.encode(l)
    shared = (a.tokens == b.tokens).float().mean(1)
    assert shared.min() > 0.6, "the best pairs differ only in the topic words"
    with pytest.raises(InputError, match="only 0 harmful/harmless prompt pairs"):
        equal_length_pairs(organism, [Prompt("how do i make a bomb ?", "harmful")],
                           [Prompt("how do i make a cake now please ?", "harmless")])


def test_stage_on_organism(organism, plain_prompts, eval_prompts):
    from interp.generation import GenerationConfig
    from interp.study import Study, StudyData

    data = StudyData(plain_prompts, plain_prompts[:0], eval_prompts, provider="test")
    study = Study(organism, data, gen=GenerationConfig(max_new_tokens=6))
    res = causal_stage(study, None, CausalConfig(k=4, n_search=12, n_pairs=8, n_random=4, jailbreak_per_cell=1))
    out = res.report
    ab = out["ablation"]
    for key in ("heads", "k", "method", "refusal_rate_harmful_after", "refusal_rate_harmless_after",
                "random_heads_refusal_rate_harmful_after", "random_heads_refusal_rate_harmless_after", "baseline"):
        assert key in ab
    # the set recommended is the converged one, or the confident one the methods agree on most
    assert ab["method"] == out["methods"]["chosen"] == out["recommendation"]["method"] and 1 <= ab["k"] <= 4
    assert all(h[0] == 0 for h in out["recommended_heads"]), out["recommendation"]  # block 0's harm detectors
    assert res.recommended_heads == [tuple(h) for h in out["recommended_heads"]]
    assert set(res.figures) == {"causal_resid_patching", "causal_logit_lens", "causal_methods"}
    assert out["recommended_heads"], out["recommendation"]["reasons"]
    r = lambda key, lab=None: (ab[key] if lab is None else ab[key][lab]["refusal_rate"])["rate"]  # noqa: E731
    moved = max(abs(r("refusal_rate_harmful_after") - r("baseline", "harmful")),
                abs(r("refusal_rate_harmless_after") - r("baseline", "harmless")))
    random_moved = max(abs(r("random_heads_refusal_rate_harmful_after") - r("baseline", "harmful")),
                       abs(r("random_heads_refusal_rate_harmless_after") - r("baseline", "harmless")))
    assert moved >= 0.5 and random_moved <= 0.2
    assert set(out["correlations"]) == {"ablation~patching", "ablation~dla", "patching~dla"}
    refs = {out["figure"], out["patching"]["figure"], out["dla"]["figure"]}
    assert refs == {f"figures/{name}.html" for name in res.figures}  # the report names exactly the figures returned
    assert count_hooks(organism) == 0


def test_cli_is_registered_and_checks_k():
    from interp.cli import build_parser, main

    args = build_parser().parse_args(["causal", "--out", "x", "--k", "2"])
    assert args.k == 2 and args.func.__module__ == "interp.commands.causal"
    assert main(["causal", "--out", "x", "--k", "9"]) == 2  # InputError -> exit code 2, nothing loaded


def test_stage_reports_methods_specificity_and_intervals(organism, plain_prompts, eval_prompts):
    from interp.generation import GenerationConfig
    from interp.study import Study, StudyData

    data = StudyData(plain_prompts, plain_prompts[:0], eval_prompts, provider="test")
    study = Study(organism, data, gen=GenerationConfig(max_new_tokens=8))
    out = causal_stage(study, None, CausalConfig(k=4, n_search=12, n_pairs=8, n_random=4, jailbreak_per_cell=1)).report
    ab = out["ablation"]
    assert ab["max_new_tokens"] == 8  # the study's answer length, not a fixed 6
    assert ab["search"]["refusal"]["max_new_tokens"] == 8
    spec = ab["specificity"]
    assert spec["kl"]["n"] > 0 and spec["kl"]["ci95"] is not None and not spec["disruptive"]
    assert ab["label"] == "refusal heads"
    after, before = ab["refusal_rate_harmful_after"], ab["baseline"]["harmful"]["refusal_rate"]
    assert after["n"] == before["n"] > 0 and len(after["ci95"]) == 2
    methods = out["methods"]
    assert set(methods["methods"]) == {"mean", "zero", "resample"}
    assert set(methods["recommendations"]) == {"mean", "zero", "resample"}
    assert methods["chosen"] in methods["recommendations"]
    assert out["recommendation"]["method"] == methods["chosen"] == ab["method"]
    # the harm detectors are found by a search and top by single-head ablation and by patching:
    # the converged set is tested first, and confirmed
    conv = methods["converged"]
    assert conv["heads"] and all(h[0] == 0 for h in conv["heads"]) and conv["tried"][-1]["confident"]
    assert ab["chosen"].startswith("the converged heads") and f"confirmed under {methods['chosen']}" in ab["chosen"]
    checked = out["recommendation"]["checked"]["heads"]  # the converged heads, then any the greedy steps added
    assert checked[:len(conv["heads"])] == conv["heads"] and ab["heads"] and all(h in checked for h in ab["heads"])
    assert all(h[0] == 0 for h in checked)
    assert spec["measure"] == "ce" and spec["ce"]["n"] > 0
    # the mechanism line reads the recommended heads, not the search's own best set
    assert sorted(ab["mechanism_of"]) == sorted(ab["heads"]) and ab["mechanism"]
    # the organism's harm detectors in block 0 are found whichever way they are ablated
    assert methods["heads"] and all(h[0] == 0 for h in methods["heads"]), methods["verdict"]
    assert "more than one ablation method" in methods["verdict"]


def test_consensus_orders_heads_by_agreeing_evidence(organism, plain_prompts):
    from interp.causal.consensus import consensus, steering_flips
    from interp.steering.heads import fit_head_directions

    h, l = plain_prompts.filter(label="harmful")[:12], plain_prompts.filter(label="harmless")[:12]
    dirs = fit_head_directions(organism, h.concat(l), heads=[(0, 4), (0, 5), (3, 1)])
    flips = steering_flips(organism, dirs, l, 8.0, heads=[(0, 4), (0, 5), (3, 1)])
    assert flips.isnan().sum() == organism.n_layers * organism.n_heads - 3
    assert 0 <= float(flips[0, 4]) <= 1

    class Rec:  # what consensus reads of a Recommendation
        def __init__(self, cand, disruptive=False):
            self.candidates, self.confident, self.flip, self.disruptive = cand, True, "refusal", disruptive
            self.search, self.specificity = None, {}

    recs = {"mean": Rec([(0, 4), (0, 5)]), "zero": Rec([(0, 5), (3, 1)]), "resample": Rec([(1, 1)], disruptive=True)}
    patch = torch.zeros(organism.n_layers, organism.n_heads)
    patch[0, 5], patch[3, 1] = 0.5, 0.4
    out = consensus(recs, patching=patch, k=4)
    assert out["heads"] == [[0, 5]]  # the only head two methods found; (1, 1) came from a disruptive set
    assert "disruptive" in out["verdict"] and "(0, 5)" in out["verdict"]
    none = consensus({"mean": Rec([(0, 4)]), "zero": Rec([(3, 1)])}, k=4)
    assert none["heads"] == [] and none["verdict"].startswith("the ablation methods disagree")


def test_choose_takes_the_confident_set_the_methods_agree_on():
    from interp.causal.consensus import choose

    class Rec:  # what choose reads of a Recommendation
        def __init__(self, heads, confident, label="refusal heads"):
            self.heads = heads if confident else []
            self.candidates, self.confident, self.reasons, self.label = heads, confident, ["why"], label

        def to_dict(self):
            return {"label": self.label}

    table = [{"head": [13, 2], "n_methods": 2}, {"head": [16, 6], "n_methods": 2}, {"head": [15, 5], "n_methods": 1},
             {"head": [1, 5], "n_methods": 1}, {"head": [1, 7], "n_methods": 1}]
    recs = {"mean": Rec([(1, 5), (1, 7)], False, "disruptive"), "zero": Rec([(13, 2), (16, 6)], True),
            "resample": Rec([(13, 2), (16, 6), (15, 5)], True)}
    method, why = choose(recs, "mean", table)
    assert method == "zero"  # both its heads were found by two methods; resample's third by one
    assert why.startswith("zero ablation's set") and "disruptive" in why
    recs["mean"] = Rec([(1, 5), (1, 7)], True)  # confident, but no other method found its heads
    assert choose(recs, "mean", table)[0] == "zero"
    recs["mean"] = Rec([(13, 2), (16, 6)], True)  # as well agreed as zero's: the primary stays
    assert choose(recs, "mean", table) == ("mean", "mean ablation's set [(13, 2), (16, 6)]: its heads are found by "
                                                   "2.0 ablation methods on average")
    none = {m: Rec(r.candidates, False, "unconfirmed") for m, r in recs.items()}
    method, why = choose(none, "mean", table)
    assert method == "mean" and "no method's set is confident" in why


def test_mechanism_reading_names_the_reference_only_when_it_was_used(organism, plain_prompts):
    """One harm detector zeroed leaves the organism telling the labels apart ("unresolved"); the
    line says the heads were found with the other label's mean only when they were."""
    from interp.causal.search import SearchConfig, neutral_reading

    h, l = plain_prompts.filter(label="harmful")[:8], plain_prompts.filter(label="harmless")[:8]
    zero = neutral_reading(organism, [(0, 4)], h, l, SearchConfig(method="zero"))
    assert zero["heads"] == [[0, 4]] and zero["mechanism"].startswith("unresolved"), zero
    assert "other label's mean" not in zero["mechanism"]
    opposite = neutral_reading(organism, [(0, 4)], h, l, SearchConfig(method="mean", reference="opposite"))
    assert opposite["mechanism"].endswith("the heads were found by flipping with the other label's mean")
    four = neutral_reading(organism, [(0, 0), (0, 2), (0, 4), (0, 5)], h, l, SearchConfig(method="zero"))
    assert four["mechanism"].startswith("refuses on detecting harm"), four  # zeroed, it complies with both labels
    assert count_hooks(organism) == 0
