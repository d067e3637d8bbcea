"""Probes on synthetic activations: the batched fit matches scikit-learn, a planted signal is found,
artifacts round-trip, and bad input fails with a clear InputError. No model needed (fast)."""

import json
import math

import pytest
import torch

from interp.capture import Activations, Site
from interp.errors import ArtifactError, InputError
from interp.direction import Direction
from probes import HeadRanking, LogisticConfig, fit_logistic, rank_heads_from_activations
from probes.cv import auroc, best_threshold, stratified_folds, train_masks
from probes.labels import Labels


def synthetic(n=120, layers=3, heads=4, d=16, seed=0, planted=None, strength=1.5):
    """Gaussian head outputs [n, layer, head, d] with balanced labels; `planted` (layer, head) gets
    a class shift of `strength` standard deviations along a random direction."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2 == 0
    y = y[torch.randperm(n, generator=g)]
    scale = torch.rand(layers, heads, d, generator=g) * 2 + 0.2  # features of very different size
    X = torch.randn(n, layers, heads, d, generator=g) * scale + torch.randn(layers, heads, d, generator=g)
    if planted is not None:
        u = torch.randn(d, generator=g)
        u = u / u.norm()
        X[:, planted[0], planted[1]] += (y.float() - 0.5)[:, None] * strength * 2 * u * scale[planted].mean()
    return X, y


# ---------------------------------------------------------------- agreement with scikit-learn
@pytest.mark.parametrize("C", [1.0, 0.02])
def test_batched_probe_matches_sklearn_on_same_folds(C):
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    # one BLAS thread: spinning BLAS workers would otherwise slow every later test on 2 shared cores
    with threadpool_limits(1):
        _compare_with_sklearn(C, LogisticRegression, make_pipeline, StandardScaler)


def _compare_with_sklearn(C, LogisticRegression, make_pipeline, StandardScaler):
    X, y = synthetic(n=150, planted=(1, 2), strength=0.8, seed=1)
    X[:, 0, 1, :3] += y[:, None].float() * 0.5  # a second, weaker signal
    k, seed = 5, 3
    r = rank_heads_from_activations(X, y, k_folds=k, C=C, seed=seed)
    folds = stratified_folds(y, k, seed).numpy()
    Xn, yn = X.double().numpy(), y.numpy()
    for layer, head in [(1, 2), (0, 1), (2, 3), (0, 0)]:  # a subset of heads: signal, weak signal, none
        accs = []
        for f in range(k):
            tr = folds != f
            pipe = make_pipeline(StandardScaler(), LogisticRegression(C=C)).fit(Xn[tr, layer, head], yn[tr])
            accs.append((pipe.predict(Xn[~tr, layer, head]) == yn[~tr]).mean())
        ours = float(r.scores["accuracy"][0, layer, head])
        assert abs(ours - sum(accs) / k) <= 0.01, f"head {layer}.{head} C={C}: ours {ours:.4f} vs sklearn {sum(accs) / k:.4f}"
        # the same optimum, not just the same accuracy: this pins C to sklearn's definition
        pipe = make_pipeline(StandardScaler(), LogisticRegression(C=C, tol=1e-10, max_iter=10_000)).fit(Xn[:, layer, head], yn)
        w_sk = torch.tensor(pipe[1].coef_[0] / pipe[0].scale_, dtype=torch.float32)
        w = r.vectors["probe"][0, layer, head]
        assert (w - w_sk).norm() / w_sk.norm() < 2e-3, f"head {layer}.{head}: weights differ from sklearn"


def test_fit_logistic_unregularised_limit_and_intercept():
    """Intercept is not penalised (a pure class-prior problem is fit exactly)."""
    X = torch.zeros(2, 40, 3)  # no information at all: only the intercept can fit the 30/10 prior
    y = torch.arange(40) < 30
    fit = fit_logistic(X, y, cfg=LogisticConfig(C=1e-3))
    p = torch.sigmoid(fit.bias[:, 0])
    assert torch.allclose(p, torch.full_like(p, 0.75), atol=1e-3)


def test_auroc_and_threshold_helpers():
    s = torch.tensor([[0.1, 0.4, 0.35, 0.8], [1.0, 1.0, 1.0, 1.0]])
    y = torch.tensor([False, False, True, True])
    assert torch.allclose(auroc(s, y), torch.tensor([0.75, 0.5]))
    thr = best_threshold(torch.tensor([[0.0, 1.0, 2.0, 3.0]]), torch.tensor([False, False, True, True]),
                         torch.ones(1, 4, dtype=torch.bool))
    assert 1.0 < float(thr) < 2.0


def test_folds_are_stratified_and_seeded():
    y = torch.arange(53) % 3 == 0
    f = stratified_folds(y, 5, seed=4)
    assert torch.equal(f, stratified_folds(y, 5, seed=4)) and not torch.equal(f, stratified_folds(y, 5, seed=5))
    for k in range(5):
        assert abs(int(y[f == k].sum()) - int(y.sum()) / 5) <= 1
    m = train_masks(f, 5)
    assert m.shape == (53, 6) and m[:, -1].all() and not (m[:, :5].sum(1) != 4).any()


# ---------------------------------------------------------------- ranking behaviour
def test_planted_signal_in_one_head_is_ranked_first():
    X, y = synthetic(n=160, layers=4, heads=6, planted=(2, 3), strength=1.2, seed=7)
    r = rank_heads_from_activations(X, y, k_folds=5, seed=0)
    for by in ("accuracy", "auroc", "mm_accuracy", "cohens_d"):
        assert r.top(1, by=by) == [(2, 3)], f"ranked by {by}: {r.top(3, by=by)}"
    assert r["accuracy"][2, 3] > 0.85 and r["cohens_d"][2, 3] > 1.5
    others = torch.ones(4, 6, dtype=torch.bool)
    others[2, 3] = False
    assert r["accuracy"][others].max() < 0.75
    rows = r.to_rows()
    assert len(rows) == 24 and rows[0]["layer"] == 2 and rows[0]["head"] == 3 and rows[0]["rank"] == 1
    assert {"accuracy", "accuracy_std", "auroc", "auroc_std", "mm_accuracy", "cohens_d", "separation"} <= set(rows[0])
    assert r["accuracy"].shape == (4, 6) and r.vectors["mass_mean"].shape == (1, 4, 6, 16)


def test_positions_from_an_activations_object():
    X, y = synthetic(n=80, layers=2, heads=3, seed=2)
    Xp = torch.stack([X, X.clone()], dim=1)  # [n, pos, layer, head, d]
    Xp[:, 1, 1, 2, 0] += y.float() * 4  # the signal only at the last position
    acts = Activations({Site("z", l): Xp[:, :, l] for l in range(2)}, {"model": "synthetic", "positions": "post_instruction[2]"})
    r = rank_heads_from_activations(acts, y, k_folds=4)
    assert r.positions == [-2, -1] and r.scores["accuracy"].shape == (2, 2, 3)
    assert r.top(1) == [(1, 2)] and r.to_rows()[0]["position"] == -1
    last = rank_heads_from_activations(acts, y, k_folds=4, positions="last")
    assert last.positions == [-1] and last.top(1) == [(1, 2)]
    assert r.at(-2)["accuracy"][1, 2] < 0.8
    with pytest.raises(InputError, match="not captured"):
        rank_heads_from_activations(acts, y, k_folds=4, positions=[-3])


def test_labels_object_and_bad_sort_key():
    X, y = synthetic(n=60, layers=1, heads=2, seed=3)
    r = rank_heads_from_activations(X, Labels(y, "category"), k_folds=3)
    assert r.meta["labels"] == "category" and r.meta["label_info"]["counts"] == {"harmful": 30, "harmless": 30}
    with pytest.raises(InputError, match="cannot rank heads by"):
        r.top(3, by="loss")
    with pytest.raises(InputError, match="needs the prompt set"):
        rank_heads_from_activations(X, "behaviour")


# ---------------------------------------------------------------- bad input
def test_bad_input_length_mismatch():
    X, y = synthetic(n=40)
    with pytest.raises(InputError, match="40 prompts but there are 39 labels"):
        rank_heads_from_activations(X, y[:39])


def test_bad_input_one_class():
    X, _ = synthetic(n=40)
    with pytest.raises(InputError, match="need[s]? both classes"):
        rank_heads_from_activations(X, torch.ones(40, dtype=torch.bool))


def test_bad_input_fewer_prompts_or_class_members_than_folds():
    X, y = synthetic(n=4)
    with pytest.raises(InputError, match="fewer than k_folds=5"):
        rank_heads_from_activations(X, y, k_folds=5)
    X, _ = synthetic(n=30)
    y = torch.zeros(30, dtype=torch.bool)
    y[:3] = True
    with pytest.raises(InputError, match=r"only 3 prompts are labelled 'positive', fewer than k_folds=5"):
        rank_heads_from_activations(X, y, k_folds=5)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_bad_input_non_finite_names_the_site(bad):
    X, y = synthetic(n=40)
    X[7, 1, 2, 5] = bad
    with pytest.raises(InputError, match=r"site z\.1 .*head 2.*NaN or inf"):
        rank_heads_from_activations(X, y)
    acts = Activations({Site("z", l): X[:, None, l] for l in range(3)}, {"positions": "last"})
    with pytest.raises(InputError, match=r"z\.1"):
        rank_heads_from_activations(acts, y)


def test_bad_input_site_not_captured():
    X, y = synthetic(n=40)
    resid_only = Activations({Site("resid_pre", 0): torch.randn(40, 1, 32)}, {"positions": "last"})
    with pytest.raises(InputError, match=r"no per-head \('z'\) activations were captured"):
        rank_heads_from_activations(resid_only, y)
    acts = Activations({Site("z", l): X[:, None, l] for l in range(3)}, {"positions": "last"})
    with pytest.raises(InputError, match=r"site z for layers \[5\] was not captured"):
        rank_heads_from_activations(acts, y, layers=[5])


def test_bad_input_labels_and_C():
    X, y = synthetic(n=40)
    with pytest.raises(InputError, match="booleans or 0/1"):
        rank_heads_from_activations(X, torch.arange(40))
    with pytest.raises(InputError, match="positive"):
        rank_heads_from_activations(X, y, C=0.0)


# ---------------------------------------------------------------- artifacts
def test_ranking_save_load_round_trip(tmp_path):
    X, y = synthetic(n=60, planted=(0, 1), seed=5)
    r = rank_heads_from_activations(X, y, k_folds=3, meta={"model": "synthetic"})
    files = r.save(tmp_path / "ranking")
    assert [f.name for f in files] == ["ranking.safetensors", "ranking.json"]
    meta = json.loads(files[1].read_text())
    assert meta["type"] == "HeadRanking" and meta["site"] == "z" and meta["seed"] == 0 and "toolkit_version" in meta
    back = HeadRanking.load(tmp_path / "ranking.safetensors")
    assert back.top(5) == r.top(5) and back.positions == r.positions and back.layers == r.layers
    for k in r.scores:
        assert torch.allclose(back.scores[k], r.scores[k], equal_nan=True)
    assert torch.allclose(back.vectors["probe"], r.vectors["probe"])
    assert back.to_rows() == r.to_rows()
    with pytest.raises(ArtifactError, match="HeadRanking.*not a Direction"):
        Direction.load(tmp_path / "ranking")
    with pytest.raises(ArtifactError, match="missing"):
        HeadRanking.load(tmp_path / "nothing")


def test_direction_save_load_round_trip(tmp_path):
    diffs = torch.randn(2, 4, 32)
    d = Direction(diffs[1, 2].clone(), 2, -1, "resid_pre", {"accuracy": 0.9, "ablation_score": -1.0},
                  [{"layer": 2, "position": -1, "chosen": True}], "because", {"model": "m", "model_shape": {"n_layers": 4, "d_model": 32}},
                  diffs, [-2, -1])
    d.save(tmp_path / "dir")
    back = Direction.load(tmp_path / "dir.json")
    assert torch.allclose(back.vector, d.vector)
    assert torch.allclose(back.candidate(1, -2), diffs[0, 1])
    assert (back.layer, back.position, back.site, back.reason) == (2, -1, "resid_pre", "because")
    assert back.scores == d.scores and back.candidates == d.candidates and back.hook_name == "blocks.2.hook_resid_pre"
    assert math.isclose(float(back.unit.norm()), 1.0, rel_tol=1e-5)


def test_constant_and_offset_features_are_standardized_safely():
    """A constant feature is left unscaled and a large offset does not break the variance (float32)."""
    X, y = synthetic(n=80, layers=1, heads=2, d=8, planted=(0, 1), strength=1.5, seed=9)
    shifted = X.clone()
    shifted[..., 0] = 3.0  # constant
    shifted[..., 1:] += 1e4  # offset far larger than the spread
    a = rank_heads_from_activations(X[..., 1:], y, k_folds=4)
    b = rank_heads_from_activations(shifted, y, k_folds=4)
    assert torch.isfinite(b.scores["accuracy"]).all()
    assert torch.allclose(a.scores["accuracy"], b.scores["accuracy"], atol=0.03)
