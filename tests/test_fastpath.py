"""The plain-Python one-point engine agrees with the vectorised numpy path."""

from __future__ import annotations

import numpy as np
import pytest

from online_em import OnlineGaussianMixture, fastpath

from .datagen import synthetic_mixture


def _numpy_only(model: OnlineGaussianMixture) -> OnlineGaussianMixture:
    """The same model with the fast path switched off (every learn_one goes through numpy)."""
    model._start_engine = lambda: None
    return model


@pytest.mark.parametrize(
    "covariance_type, n_features",
    [("diag", 1), ("diag", 5), ("spherical", 3), ("full", 1), ("full", 3), ("full", 8)],
)
def test_engine_matches_the_numpy_path(covariance_type, n_features):
    X, _ = synthetic_mixture(3000, n_features, 3, "full" if covariance_type == "full" else "diag", seed=n_features)
    fast = OnlineGaussianMixture(3, covariance_type=covariance_type, warm_up=200, average_after=1000, seed=0)
    slow = _numpy_only(OnlineGaussianMixture(3, covariance_type=covariance_type, warm_up=200, average_after=1000, seed=0))
    assert fastpath.supports(covariance_type, n_features)
    labels_fast, labels_slow = [], []
    for i, row in enumerate(X.tolist()):
        x = dict(enumerate(row))
        labels_fast.append(fast.learn_predict_one(x))
        labels_slow.append(slow.learn_predict_one(x))
        if i % 500 == 499:  # predictions and scores agree along the way, not only at the end
            assert fast._engine is not None and slow._engine is None
            np.testing.assert_allclose(
                list(fast.predict_proba_one(x).values()), list(slow.predict_proba_one(x).values()), rtol=1e-7
            )
            assert fast.score_one(x) == pytest.approx(slow.score_one(x), rel=1e-8)
    assert labels_fast == labels_slow
    np.testing.assert_allclose(fast.means_, slow.means_, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(fast.covariances_, slow.covariances_, rtol=1e-7)
    np.testing.assert_allclose(fast.weights_, slow.weights_, rtol=1e-7)
    assert fast.n_samples_seen == slow.n_samples_seen == 3000


def test_switching_between_one_point_and_batch_calls_loses_nothing():
    X, _ = synthetic_mixture(4000, 2, 2, "diag", seed=9)
    mixed = OnlineGaussianMixture(2, covariance_type="diag", warm_up=100, seed=1)
    slow = _numpy_only(OnlineGaussianMixture(2, covariance_type="diag", warm_up=100, seed=1))
    for start in range(0, 4000, 400):
        chunk = X[start : start + 400]
        if (start // 400) % 2:
            mixed.learn_many(chunk)
            slow.learn_many(chunk)
        else:
            for row in chunk.tolist():
                mixed.learn_one({0: row[0], 1: row[1]})
                slow.learn_one({0: row[0], 1: row[1]})
        _ = mixed.weights_  # reading an attribute syncs the engine back to arrays
    np.testing.assert_allclose(mixed.means_, slow.means_, rtol=1e-7)
    np.testing.assert_allclose(mixed.covariances_, slow.covariances_, rtol=1e-7)


def test_structures_without_an_engine_use_numpy():
    assert not fastpath.supports("full", fastpath.MAX_FULL_FEATURES + 1)
    assert not fastpath.supports("tied", 1)


def test_full_engine_refreshes_every_component_it_moves():
    """Skipping negligible refreshes never lets a cached factor drift from the statistics."""
    X, _ = synthetic_mixture(6000, 3, 3, "full", seed=4)
    model = OnlineGaussianMixture(3, warm_up=300, seed=0)
    for row in X.tolist():
        model.learn_one(dict(enumerate(row)))
    engine = model._engine
    assert isinstance(engine, fastpath.FullEngine)
    fresh = engine._parameters(engine.s0, engine.s1, engine.s2)[0]
    for cached, exact in zip(engine.iterate[0], fresh):
        np.testing.assert_allclose(cached[1], exact[1], rtol=1e-9, atol=1e-12)
        for a, b in zip(cached[2], exact[2]):
            np.testing.assert_allclose(a, b, rtol=1e-9)


def test_two_component_engine_equals_the_general_one_point_engine():
    """PairEngine unrolls ScalarEngine's loops for K=2; the arithmetic is the same, bit for bit."""
    from .datagen import tutorial_stream

    x, _ = tutorial_stream(3)
    pair = OnlineGaussianMixture(2, seed=0)
    general = OnlineGaussianMixture(2, seed=0)
    labels_pair, labels_general = [], []
    for i, value in enumerate(x[:6000].tolist()):
        labels_pair.append(pair.learn_predict_one({"v": value}))
        engine = general._engine
        if type(engine) is fastpath.PairEngine:  # swap in the general engine, same state
            stats, average, n_averaged, pending, t = engine.export()
            general._engine = fastpath.ScalarEngine(
                stats, average, n_averaged, pending, t, engine.alpha, engine.reg_covar, engine.average_after
            )
        labels_general.append(general.learn_predict_one({"v": value}))
        if i % 250 == 0:
            probes = [{"v": p} for p in (value, 25.0, 30.0, 35.0)]
            assert [pair.predict_one(p) for p in probes] == [general.predict_one(p) for p in probes]
    assert type(pair._engine) is fastpath.PairEngine and type(general._engine) is fastpath.ScalarEngine
    assert labels_pair == labels_general
    np.testing.assert_array_equal(pair.means_, general.means_)
    np.testing.assert_array_equal(pair.covariances_, general.covariances_)
    np.testing.assert_array_equal(pair.weights_, general.weights_)
