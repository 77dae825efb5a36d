"""Splits (online_em.splits): a cluster that arrives within a component's spread, in a stream
sorted by cluster, gets a component of its own; nothing splits in shuffled streams."""

from __future__ import annotations

import json

import numpy as np
import pytest

from online_em import OnlineGaussianMixture, persistence, splits
from online_em.stats import SufficientStatistics

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def four_anisotropic(seed: int, n: int = 1600) -> tuple[np.ndarray, np.ndarray]:
    """The structure benchmark's four correlated 3-D Gaussians (benchmarks/structure_bench.py),
    sorted by component. The fourth's mean lies 2 standard deviations from the first's, inside
    its spread: its points are not novel one by one."""
    shape = np.random.default_rng(1234)
    rng = np.random.default_rng(seed)
    parts = []
    for _ in range(4):
        A = shape.normal(size=(3, 3))
        parts.append(rng.normal(size=(n, 3)) @ A * 0.6 + shape.uniform(-6, 6, 3))
    return np.concatenate(parts), np.repeat(np.arange(4), n)


def learn_one_by_one(model, X):
    for row in X.tolist():
        model.learn_one(dict(enumerate(row)))
    return model


def ari(model, X, z) -> float:
    return sklearn_metrics.adjusted_rand_score(z, np.asarray(model.predict_many(X)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_cluster_inside_another_ones_spread_gets_its_own_component(seed):
    X, z = four_anisotropic(seed)
    model = learn_one_by_one(OnlineGaussianMixture(n_components=6, warm_up=500, seed=seed), X)
    assert model.moves_["splits"] == 1
    assert model.n_active_components_ == 4
    assert ari(model, X, z) >= 0.85
    live = np.flatnonzero(model.weights_ > 0)
    truth = np.array([X[z == k].mean(axis=0) for k in range(4)])
    # each class's mean is within 0.3 of a component's, weights within 0.02 of a quarter
    nearest = np.linalg.norm(model.means_[live][None] - truth[:, None], axis=2).min(axis=1)
    assert nearest.max() < 0.3, nearest
    np.testing.assert_allclose(model.weights_[live], 0.25, atol=0.02)
    np.testing.assert_allclose(model.weights_.sum(), 1.0)
    assert all(np.linalg.eigvalsh(c).min() > 0 for c in model.covariances_[live])


def test_without_the_split_the_fourth_cluster_is_absorbed(monkeypatch):
    """What the split buys: with the test switched off, the same stream ends with 3 components."""
    monkeypatch.setattr(splits, "SPLIT_SHIFT", np.inf)
    X, z = four_anisotropic(0)
    model = learn_one_by_one(OnlineGaussianMixture(n_components=6, warm_up=500, seed=0), X)
    assert model.moves_["splits"] == 0 and model.n_active_components_ == 3
    assert ari(model, X, z) < 0.75


@pytest.mark.parametrize("batch", [20, 40])
def test_in_mini_batches_too(batch):
    X, z = four_anisotropic(0)
    model = OnlineGaussianMixture(n_components=6, warm_up=500, seed=0)
    for start in range(0, len(X), batch):
        model.learn_many(X[start : start + batch])
    assert model.moves_["splits"] == 1 and model.n_active_components_ == 4
    assert ari(model, X, z) >= 0.85


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nothing_splits_in_a_shuffled_stream(seed):
    X, z = four_anisotropic(seed)
    order = np.random.default_rng(seed).permutation(len(X))
    model = learn_one_by_one(OnlineGaussianMixture(n_components=10, warm_up=500, seed=seed), X[order])
    assert model.moves_["splits"] == 0 and model.n_active_components_ == 4


def test_a_cluster_that_ended_does_not_split_on_its_neighbours_tails():
    """The tutorial in its own order with room for 10: after the first process ends, its
    component still takes the low tail of the second's points (mean off its own), which is no
    reason to split it."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(20, 5, 4000), rng.normal(40, 5, 8000)])
    model = OnlineGaussianMixture(n_components=10, seed=0)
    for v in x.tolist():
        model.learn_one({"x": v})
    assert model.moves_ == {"births": 1, "merges": 0, "prunes": 0, "splits": 0}


def test_moments_before_the_window_are_recovered_from_the_steps():
    """A component learned one point at a time: its moments before the last points follow from
    its moments after them and the steps of the schedule (`splits.moments_before`)."""
    rng = np.random.default_rng(3)
    shift = np.zeros(2)
    stats = SufficientStatistics("full", shift, np.array([1.0, 0.0]), np.array([[1.0, 2.0], [0.0, 0.0]]),
                                 np.array([[[3.0, 2.5], [2.5, 6.0]], [[0.0, 0.0], [0.0, 0.0]]]), count=800.0)
    mean_before, second_before = stats.s1[0].copy(), stats.s2[0].copy()
    window = rng.normal(4.0, 1.0, (100, 2))
    resp = np.tile([1.0, 0.0], (100, 1))
    for row in window:
        stats.learn(SufficientStatistics.from_batch(row[None], resp[:1], shift, "full"), alpha=0.75)
    assert np.abs(stats.s1[0] - mean_before).max() > 0.5  # the window moved it
    mean, second = splits.moments_before(stats, 0, window - shift, resp[:, 0], alpha=0.75)
    np.testing.assert_allclose(mean, mean_before, atol=1e-9)
    np.testing.assert_allclose(second, second_before, atol=1e-9)


def test_a_split_keeps_the_weights_and_covariances_sound():
    stats = SufficientStatistics("diag", np.zeros(1), np.array([0.7, 0.3, 0.0]), np.array([[0.7], [3.0], [0.0]]),
                                 np.array([[1.4], [31.05], [0.0]]), count=1000.0)
    out = splits.split(stats, 0, 2, moved=0.2, kept=(np.array([0.0]), np.array([1.0])),
                       born=(np.array([3.0]), np.array([9.5])))
    assert out.s0.sum() == pytest.approx(1.0) and out.count == stats.count
    params = out.to_parameters(1e-6)
    np.testing.assert_allclose(params.means.ravel(), [0.0, 10.0, 3.0])
    np.testing.assert_allclose(params.covariances.ravel(), [1.0, 3.5, 0.5], rtol=1e-5)
    assert (stats.s0 == [0.7, 0.3, 0.0]).all()  # the statistics given are left as they were


@pytest.mark.parametrize("stop", [4900, 5000])  # before the split, and inside the next window
def test_a_model_saved_inside_a_window_continues_exactly(tmp_path, stop):
    X, _ = four_anisotropic(0)
    saving = learn_one_by_one(OnlineGaussianMixture(n_components=6, warm_up=500, seed=0), X[:stop])
    saving.save(tmp_path / "m.json")
    assert 0 < len(saving.get_state().window) < splits.SPLIT_EVERY
    resumed = learn_one_by_one(OnlineGaussianMixture.load(tmp_path / "m.json"), X[stop:])
    learn_one_by_one(saving, X[stop:])
    assert resumed.moves_ == saving.moves_ and saving.moves_["splits"] == 1
    np.testing.assert_array_equal(resumed.means_, saving.means_)
    np.testing.assert_array_equal(resumed.weights_, saving.weights_)


def test_a_version_4_file_loads_with_no_split_and_an_empty_window():
    X, _ = four_anisotropic(0)
    model = learn_one_by_one(OnlineGaussianMixture(n_components=6, warm_up=500, seed=0), X[:3000])
    state = json.loads(persistence.dumps(model))
    del state["structure"]["splits"], state["structure"]["window"]
    state["version"] = 4
    loaded = persistence.loads(json.dumps(state))
    assert loaded.moves_["splits"] == 0 and loaded.get_state().window == []
    np.testing.assert_array_equal(loaded.means_, model.means_)


def test_a_feature_that_appears_while_a_slot_is_free_restarts_the_window():
    """A new feature mid-stream, with points held back and a window under way: the held points
    are learned in the features they came with, the window starts again, learning goes on."""
    rng = np.random.default_rng(0)
    model = OnlineGaussianMixture(n_components=5, warm_up=200, seed=0)
    for i in range(3000):
        x = {"a": float(rng.normal() + (8.0 if 900 < i and i % 3 == 0 else 0.0))}
        if i > 1000:
            x["b"] = float(rng.normal())
        model.learn_one(x)
    state = model.get_state()
    assert model.feature_names_in_ == ["a", "b"] and model.n_samples_seen == 3000
    assert all(len(row) == 2 for row in state.window) and all(len(row) == 2 for _, row in state.held)
    assert model.moves_["births"] >= 1
