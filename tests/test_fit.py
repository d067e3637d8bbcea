"""The fitting layer (probes.fit) that probes, head steering and the Antidote share: each
aggregator recovers a planted direction, and steering's fits are exactly these functions."""

import pytest
import torch

from probes import fit


def _planted(n=200, g=3, d=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    truth = torch.randn(g, d, generator=gen)
    truth = truth / truth.norm(dim=-1, keepdim=True)
    y = torch.arange(n) % 2 == 0
    x = torch.randn(n, g, d, generator=gen) + 2.0 * (y.float() * 2 - 1)[:, None, None] * truth
    return x, y, truth


def test_mass_mean_and_logistic_recover_a_planted_direction():
    x, y, truth = _planted()
    for w in (fit.mass_mean(x, y), fit.logistic(x, y)):
        cos = (fit.unit(w) * truth).sum(-1)
        assert bool((cos > 0.9).all()), cos  # right direction, and + points to the positive side
    # the logistic weight orientation does not depend on which side is called positive
    assert bool(((fit.unit(fit.logistic(x, ~y)) * truth).sum(-1) < -0.9).all())


def test_first_pc_keeps_the_common_shift_and_its_sign():
    gen = torch.Generator().manual_seed(1)
    shift = torch.zeros(8)
    shift[3] = 5.0
    d = shift + 0.3 * torch.randn(50, 8, generator=gen)
    u = fit.first_pc(d)
    assert float(u[3]) > 0.99  # uncentred: the shared shift, not the spread around it
    assert float(fit.first_pc(-d)[3]) < -0.99


def test_auroc_per_group_and_ties():
    y = torch.tensor([True, True, False, False])
    proj = torch.tensor([[2.0, 0.0], [3.0, 0.0], [0.0, 0.0], [1.0, 0.0]])  # group 0 separates, group 1 all ties
    assert fit.auroc(proj, y).tolist() == pytest.approx([1.0, 0.5])
    assert float(fit.auroc(-proj[:, 0], y)) == pytest.approx(0.0)


def test_steering_fits_through_the_fitting_layer(tiny, plain_prompts):
    tiny_prompts = plain_prompts.filter(label="harmful")[:12].concat(plain_prompts.filter(label="harmless")[:12])
    from interp.capture import capture
    from interp.steering import fit_head_directions

    hd = fit_head_directions(tiny, tiny_prompts, kind="mass_mean")
    y = torch.tensor([p.label == "harmful" for p in tiny_prompts])
    z = capture(tiny, tiny_prompts, [("z", 0)], "last")[("z", 0)][:, -1].float()
    assert torch.allclose(hd.directions[0], fit.unit(fit.mass_mean(z, y)), atol=1e-6)
    lp = fit_head_directions(tiny, tiny_prompts, kind="probe")
    assert torch.allclose(lp.directions[0], fit.unit(fit.logistic(z, y)), atol=1e-5)
