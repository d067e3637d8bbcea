"""Attention sharpening is calibrated like the other interventions: temperature and head set chosen
on validation prompts under a harmless budget, the grid extended past its sharp end, the edge flagged."""

import torch

from interp.prompts import Prompt, PromptSet
from interp.slipping import calibrate as cal


def _sets(n=4):
    h = PromptSet("h", tuple(Prompt(f"how do i make a bomb {i}", "harmful", id=f"h{i}") for i in range(n)))
    b = PromptSet("b", tuple(Prompt(f"how do i bake bread {i}", "harmless", id=f"b{i}") for i in range(n)))
    return h, b


def _fake(monkeypatch, harmful_of, harmless_of):
    """Scores as functions of 1/T (1 without sharpening) and of the head set."""
    def scores(model, prompts, ivs, max_rows=512):
        rows = []
        for iv in ivs:
            op = iv.ops[0] if iv.ops else None
            inv = 1.0 / op.temperature if op else 1.0
            where = None if op is None else op.heads
            rows.append([harmful_of(inv, where) if p.label == "harmful" else harmless_of(inv, where) for p in prompts])
        return torch.tensor(rows, dtype=torch.float32)

    monkeypatch.setattr(cal, "stacked_scores", scores)


def test_sharper_always_better_extends_then_flags_the_edge(monkeypatch):
    _fake(monkeypatch, lambda inv, w: inv - 3.0, lambda inv, w: -1.0)  # harmful refused from 1/T > 3 on, harmless never
    h, b = _sets()
    c = cal.calibrate_sharpening(None, h, b, {"all layers": None}, budget=0.1, grid=(1.0, 1.25, 1.6, 2.0, 2.5, 3.2, 4.0),
                                 extend=2)
    # ties on the harmful fraction go to the mildest: 1/T = 3.2 already refuses all, so no extension is needed
    assert c.T == round(1 / 3.2, 6) and not c.at_grid_edge and c.extended == 0
    _fake(monkeypatch, lambda inv, w: 0.1 * inv - 0.95, lambda inv, w: -1.0)  # refused only beyond the grid (1/T > 9.5)
    c = cal.calibrate_sharpening(None, h, b, {"all layers": None}, budget=0.1, grid=(1.0, 2.0, 4.0), extend=2)
    assert c.extended >= 1 and c.T < 0.25 and not c.at_grid_edge  # found past the first grid's sharp end
    _fake(monkeypatch, lambda inv, w: 1e-3 * inv - 1e3, lambda inv, w: -1.0)  # never within reach
    c = cal.calibrate_sharpening(None, h, b, {"all layers": None}, budget=0.1, grid=(1.0, 2.0, 4.0), extend=2)
    assert c.T == 1.0 and c.where == "no sharpening" and c.extended == 2  # nothing beats the unsharpened model: T = 1
    _fake(monkeypatch, lambda inv, w: inv, lambda inv, w: -1.0)  # everything refuses; sharper scores only higher
    c = cal.calibrate_sharpening(None, h, b, {"all layers": None}, budget=0.1, grid=(1.0, 2.0, 4.0), extend=1)
    assert c.T == 1.0  # a tie on the refused fraction goes to no sharpening


def test_edge_is_flagged_when_every_extension_still_improves(monkeypatch):
    h, b = _sets(8)
    # the harmful fraction grows with 1/T one prompt at a time: every sharper temperature refuses one more
    def scores(model, prompts, ivs, max_rows=512):
        rows = []
        for iv in ivs:
            inv = 1.0 / iv.ops[0].temperature if iv.ops else 1.0
            k = int(torch.log2(torch.tensor(inv)).round()) if inv > 1 else 0  # 1/T = 2^k refuses k harmful prompts
            rows.append([(1.0 if i < k else -1.0) if p.label == "harmful" else -1.0 for i, p in enumerate(prompts)])
        return torch.tensor(rows)

    monkeypatch.setattr(cal, "stacked_scores", scores)
    c = cal.calibrate_sharpening(None, h, b, {"all layers": None}, budget=0.1, grid=(1.0, 2.0, 4.0), extend=1)
    assert c.at_grid_edge and c.extended == 1 and "sharpest" in c.note() and c.to_dict()["at_grid_edge"]


def test_budget_and_head_set_choice(monkeypatch):
    heads = ((1, 2), (3, 0))
    # every layer: refuses harmful prompts but also harmless ones (over budget); the heads: harmful only
    _fake(monkeypatch, lambda inv, w: 1.0 if inv > 1 else -1.0,
          lambda inv, w: 1.0 if (inv > 1 and w is None) else -1.0)
    h, b = _sets()
    c = cal.calibrate_sharpening(None, h, b, {"all layers": None, "causal heads": heads}, budget=0.1, grid=(1.0, 2.0, 4.0))
    assert c.where == "causal heads" and c.heads == heads and c.T == 0.5
    assert {x["where"] for x in c.candidates} == {"none", "all layers", "causal heads"}
    assert c.intervention().ops[0].heads == heads


def test_on_the_organism_sharpening_is_calibrated_on_validation(organism, plain_prompts, eval_prompts):
    from interp.slipping.calibrate import stacked_scores
    from interp.intervention import Intervention
    from interp.steering.effect import scores_under

    val = eval_prompts.filter(family="distractor")
    harmful = val.filter(label="harmful")[:6].concat(plain_prompts.filter(label="harmful")[:4])
    harmless = plain_prompts.filter(label="harmless")[:8]
    ivs = [Intervention.none(), Intervention.sharpen(0.5), Intervention.sharpen(0.25, None, [(1, 0), (1, 1)])]
    s = stacked_scores(organism, harmful, ivs)
    for i, iv in enumerate(ivs):  # stacked = one at a time
        assert torch.allclose(s[i], scores_under(organism, iv, harmful), atol=1e-4)
    c = cal.calibrate_sharpening(organism, harmful, harmless, {"all layers": None, "some heads": [(1, 0), (1, 1)]})
    best = max(x["harmful_refusal"] for x in c.candidates if x["harmless_refusal"] <= 0.1)
    chosen = next(x for x in c.candidates if x["T"] == c.T and x["where"] == ("none" if c.heads is None and c.T == 1 else c.where))
    assert chosen["harmful_refusal"] == best and chosen["harmless_refusal"] <= 0.1


def test_another_head_defense_is_calibrated_through_the_same_search(organism, plain_prompts):
    """The extension point a new defense uses: `make(strength, heads)` builds its intervention. Here
    the defense damps heads' outputs (ScaleHeads with factor = strength): damping the organism's
    layer-0 harm detectors lowers harmful refusal, so within the budget the search keeps factor 1
    (no change) and never picks a damping that costs refusal."""
    from interp.intervention import Intervention, ScaleHeads
    from interp.hooks import count_hooks

    made = []

    def make(strength, heads):
        made.append((strength, heads))
        return Intervention.of(ScaleHeads(tuple(heads), strength))

    harmful = plain_prompts.filter(label="harmful")
    harmless = plain_prompts.filter(label="harmless")
    heads = {"layer 0": [(0, h) for h in range(organism.n_heads)]}
    c = cal.calibrate_sharpening(organism, harmful, harmless, heads, budget=0.1, grid=(1.0, 2.0, 4.0), extend=0, make=make)
    assert made and all(hs == heads["layer 0"] for _, hs in made) and {round(s, 4) for s, _ in made} == {0.5, 0.25}
    damped = [x for x in c.candidates if x["where"] == "layer 0"]
    none = c.candidates[0]
    assert min(x["harmful_refusal"] for x in damped) < none["harmful_refusal"]  # the damping really ran
    assert c.T == 1.0 and c.where == "no sharpening"
    assert count_hooks(organism) == 0
