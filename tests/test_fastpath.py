"""The plain-Python one-point engine agrees with the vectorised numpy path."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from online_em import OnlineGaussianMixture, fastpath

from .datagen import synthetic_mixture


def _numpy_only(model: OnlineGaussianMixture) -> OnlineGaussianMixture:
    """The same model with the fast path switched off (every learn_one goes through numpy)."""
    model._start_engine = lambda: None
    return model


def _agree_along(X, n_components, covariance_type, every=500, **options):
    """learn_predict_one along X with the engine and with numpy only: labels, probabilities,
    scores and predict_one along the way, and the parameters at the end, agree."""
    fast = OnlineGaussianMixture(n_components, covariance_type=covariance_type, seed=0, **options)
    slow = _numpy_only(OnlineGaussianMixture(n_components, covariance_type=covariance_type, seed=0, **options))
    labels_fast, labels_slow = [], []
    for i, row in enumerate(X.tolist()):
        x = dict(enumerate(row))
        labels_fast.append(fast.learn_predict_one(x))
        labels_slow.append(slow.learn_predict_one(x))
        if i % every == every - 1:  # predictions and scores agree along the way, not only at the end
            assert slow._engine is None
            np.testing.assert_allclose(
                list(fast.predict_proba_one(x).values()), list(slow.predict_proba_one(x).values()), rtol=1e-7
            )
            assert fast.score_one(x) == pytest.approx(slow.score_one(x), rel=1e-8)
            assert fast.predict_one(x) == slow.predict_one(x)
    assert fast._engine is not None
    assert labels_fast == labels_slow
    np.testing.assert_allclose(fast.means_, slow.means_, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(fast.covariances_, slow.covariances_, rtol=1e-7)
    np.testing.assert_allclose(fast.weights_, slow.weights_, rtol=1e-7)
    assert fast.n_samples_seen == slow.n_samples_seen == len(X)
    return fast


@pytest.mark.parametrize(
    "covariance_type, n_features",
    [("diag", 1), ("diag", 5), ("spherical", 3), ("full", 1), ("full", 2), ("full", 3), ("full", 5), ("full", 16)],
)
def test_engine_matches_the_numpy_path(covariance_type, n_features):
    X, _ = synthetic_mixture(3000, n_features, 3, "full" if covariance_type == "full" else "diag", seed=n_features)
    assert fastpath.supports(covariance_type, n_features)
    _agree_along(X, 3, covariance_type, warm_up=200, average_after=1000)


@pytest.mark.parametrize("covariance_type, n_features", [("diag", 3), ("full", 2), ("full", 4)])
def test_engine_matches_the_numpy_path_with_free_slots(covariance_type, n_features):
    """Room for 8 components, 3 clusters: the model hands the engine its active components only
    and holds novel points back; labels, densities and parameters stay the numpy path's."""
    X, _ = synthetic_mixture(3000, n_features, 3, "full" if covariance_type == "full" else "diag", seed=7)
    fast = _agree_along(X, 8, covariance_type, warm_up=300, average_after=1000)
    assert fast.n_active_components_ < 8
    fast.learn_one(dict(enumerate(X[0].tolist())))  # the engine holds the active components only
    active = np.flatnonzero(fast.weights_ > 0).tolist()
    fast.learn_one(dict(enumerate(X[1].tolist())))
    assert fast._slots == active and len(fast._engine.s0) == len(active)
    assert {fast.predict_one(dict(enumerate(row))) for row in X[:300].tolist()} <= set(active)


@pytest.mark.parametrize("covariance_type", ["diag", "spherical", "full"])
@pytest.mark.parametrize("offset, scale, reg_covar", [(1e6, 1.0, 1e-6), (0.0, 1e-100, 0.0), (0.0, 1e-100, 1e-6)])
def test_engine_matches_the_numpy_path_at_extreme_scales(covariance_type, offset, scale, reg_covar):
    """Far from the origin (the shift keeps the moments small), and at 1e-100 with or without a
    regulariser (which then dwarfs the data: the full engine refreshes its factors exactly)."""
    X, _ = synthetic_mixture(1500, 4, 3, "full" if covariance_type == "full" else "diag", seed=7)
    _agree_along(offset + scale * X, 3, covariance_type, every=300, warm_up=200, average_after=700, reg_covar=reg_covar)


@pytest.mark.parametrize("covariance_type", ["diag", "full"])
def test_starving_components_agree_with_numpy(covariance_type):
    """Three clusters in the warm-up, then only one: the others starve (their weights fall as the
    share of the points they had), the same on both paths."""
    X, z = synthetic_mixture(6000, 3, 3, "full" if covariance_type == "full" else "diag", seed=5)
    stream = np.concatenate([X[:300], X[z == 0][:3000]])
    fast = _agree_along(stream, 3, covariance_type, warm_up=300, average_after=1000)
    assert sorted(fast.weights_)[0] < 0.1


@pytest.mark.parametrize("covariance_type, n_features, n_components",
                         [("full", 1, 2), ("diag", 1, 3), ("full", 3, 2), ("diag", 4, 3)])
def test_engine_matches_the_numpy_path_with_forgetting(covariance_type, n_features, n_components):
    """With a half-life the engines (the pair, scalar, full and diagonal ones) take the same
    floors (`online_em.steps`) as the arrays: weights, moments, recency and average; the stream
    drifts, so the floors bind."""
    X, _ = synthetic_mixture(3000, n_features, n_components, "full" if covariance_type == "full" else "diag", seed=11)
    X = X + np.linspace(0.0, 3.0, len(X))[:, None]
    _agree_along(X, n_components, covariance_type, warm_up=200, average_after=600, halflife=300)


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
    assert not fastpath.supports("diag", fastpath.MAX_DIAGONAL_FEATURES + 1)
    assert not fastpath.supports("tied", 1)


# Full covariances beyond MAX_FULL_FEATURES: the numpy engine (online_em.array_engine).
HIGH_D = fastpath.MAX_FULL_FEATURES + 4


@pytest.fixture(params=["direct", "deferred"])
def deferring(request, monkeypatch):
    """The array engine both ways: each rank-one term added as it comes, and deferred
    (`array_engine.DEFER_MIN_ENTRIES`; HIGH_D with a few components is below it)."""
    from online_em import array_engine

    monkeypatch.setattr(array_engine, "DEFER_MIN_ENTRIES", 0 if request.param == "deferred" else 10**12)
    return request.param


@pytest.mark.parametrize("n_components, options", [
    (3, {}),
    (4, {}),  # a free slot: the engine holds the active components, novel points are held back
    (3, {"halflife": 400}),  # forgetting's floors bind on a drifting stream
])
def test_array_engine_matches_the_numpy_path(n_components, options, deferring):
    from online_em.array_engine import FullArrayEngine

    X, _ = synthetic_mixture(1800, HIGH_D, 3, "full", seed=HIGH_D)
    if "halflife" in options:
        X = X + np.linspace(0.0, 3.0, len(X))[:, None]
    model = OnlineGaussianMixture(n_components, warm_up=600, seed=0)
    model.learn_one(dict(enumerate(X[0].tolist())))
    assert fastpath.supports("full", HIGH_D)
    fast = _agree_along(X, n_components, "full", warm_up=600, average_after=1200, **options)
    assert fast.n_active_components_ == 3  # (with room for 4: a free slot)
    for row in X[1:700].tolist():
        model.learn_one(dict(enumerate(row)))
    assert isinstance(model._engine, FullArrayEngine)
    assert (model._engine.rank > 0) == (deferring == "deferred")
    twin = copy.deepcopy(model)  # the live engine's state is the model's own: a copy goes on alike
    for row in X[700:900].tolist():
        model.learn_one(dict(enumerate(row)))
        twin.learn_one(dict(enumerate(row)))
    assert model.means_.tolist() == twin.means_.tolist()


@pytest.mark.parametrize("offset, scale, reg_covar", [(1e6, 1.0, 1e-6), (0.0, 1e-100, 0.0)])
def test_array_engine_matches_the_numpy_path_at_extreme_scales(offset, scale, reg_covar, deferring):
    X, _ = synthetic_mixture(1200, HIGH_D, 3, "full", seed=7)
    _agree_along(offset + scale * X, 3, "full", every=300, warm_up=600, average_after=900, reg_covar=reg_covar)


def test_the_array_engine_takes_full_covariances_with_many_entries_in_few_features():
    """From fastpath.ARRAY_ENGINE_MIN_ENTRIES entries K D^2 on, numpy over the components beats
    plain Python's arithmetic: 14 features and 7 components go to the array engine (3 components
    stay with FullEngine), which agrees with the numpy path as in many dimensions."""
    from online_em.array_engine import FullArrayEngine

    X, _ = synthetic_mixture(1500, 14, 7, "full", seed=14)
    fast = _agree_along(X, 7, "full", warm_up=600, average_after=1000)
    fast.learn_one(dict(enumerate(X[0].tolist())))
    assert isinstance(fast._engine, FullArrayEngine) and fast.n_active_components_ == 7
    few = OnlineGaussianMixture(3, warm_up=600, seed=0)
    for row in X[:601].tolist():
        few.learn_one(dict(enumerate(row)))
    assert type(few._engine).__name__ == "FullEngine14"


def test_array_engine_tracks_its_factors_between_exact_refreshes(monkeypatch, deferring):
    """As FullEngine's: the rank-one-updated precisions give the densities an exact
    factorisation gives, and most updates are rank-one, not refactorisations."""
    from online_em import array_engine

    refreshed = []
    exact = array_engine.FullArrayEngine._exact
    monkeypatch.setattr(array_engine.FullArrayEngine, "_exact",
                        lambda self, s0, *s: refreshed.append(len(s0)) or exact(self, s0, *s))
    X, _ = synthetic_mixture(2100, HIGH_D, 3, "full", seed=4)
    model = OnlineGaussianMixture(3, warm_up=600, average_after=None, seed=0)
    for i, row in enumerate(X.tolist()):
        model.learn_one(dict(enumerate(row)))
        if i % 500 == 499 and i > 600:
            engine = model._engine
            fresh = fastpath.make_engine(*engine.export(), engine.alpha, engine.reg_covar, engine.average_after)
            for probe in X[i - 5 : i].tolist():
                np.testing.assert_allclose(engine.weighted_log_probs(probe), fresh.weighted_log_probs(probe), rtol=1e-10)
    refreshes = sum(refreshed) - 3 * 5  # (less the fresh engines' own factorisations)
    assert 0 < refreshes < 3 * (2100 - 600) / 10


def test_array_engine_state_read_mid_stream_changes_nothing_it_does_next(monkeypatch):
    """The array engine defers its rank-one terms (`array_engine.DEFERRED_RANK` points at a time):
    an export adds them to a copy, so a model whose state is read between points goes on exactly
    as one whose state is not, and the export is the state the deferred terms stand for."""
    from online_em import array_engine

    monkeypatch.setattr(array_engine, "DEFER_MIN_ENTRIES", 0)

    X, _ = synthetic_mixture(1000, HIGH_D, 3, "full", seed=5)
    model = OnlineGaussianMixture(3, warm_up=600, seed=0)
    for row in X[:700].tolist():
        model.learn_one(dict(enumerate(row)))
    twin = copy.deepcopy(model)
    deferred = []
    for i, row in enumerate(X[700:].tolist()):
        model.learn_one(dict(enumerate(row)))
        twin.learn_one(dict(enumerate(row)))
        if i % 7 == 3:
            engine = twin._engine
            deferred.append(engine.n_deferred_x)
            stats = engine.export()[0]
            flushed = copy.deepcopy(engine)
            flushed._flush_moments()
            np.testing.assert_allclose(stats.s2, flushed.s2, rtol=1e-12)
    assert isinstance(twin._engine, array_engine.FullArrayEngine)
    assert max(deferred) > 0  # (read while terms were deferred)
    assert model.means_.tolist() == twin.means_.tolist()
    assert model.covariances_.tolist() == twin.covariances_.tolist()


def test_full_engine_tracks_its_factors_between_exact_refreshes(monkeypatch):
    """The rank-one-updated precisions, corrected to first order for the regulariser, give the
    densities an exact factorisation gives, along a stream that crosses many exact refreshes."""
    refreshes = []
    refresh = fastpath.FullEngine._refresh
    monkeypatch.setattr(fastpath.FullEngine, "_refresh", lambda self, k, *s: refreshes.append(k) or refresh(self, k, *s))
    X, _ = synthetic_mixture(6000, 4, 3, "full", seed=4)
    model = OnlineGaussianMixture(3, warm_up=300, average_after=None, seed=0)
    for i, row in enumerate(X.tolist()):
        model.learn_one(dict(enumerate(row)))
        if i % 500 == 499:
            engine = model._engine
            exact = fastpath.make_engine(*engine.export(), engine.alpha, engine.reg_covar, engine.average_after)
            for probe in X[i - 5 : i].tolist():
                np.testing.assert_allclose(engine.weighted_log_probs(probe), exact.weighted_log_probs(probe), rtol=1e-10)
    updates = 3 * (6000 - 300)
    assert 10 < len(refreshes) < updates / 5  # refreshed now and then, rank-one updated mostly


def test_engines_pickle_and_copy_with_their_exact_state():
    """A specialised engine is rebuilt from its generic class; the copy goes on bit for bit."""
    import pickle

    for covariance_type in ("diag", "full"):
        X, _ = synthetic_mixture(1200, 3, 2, "diag", seed=3)
        model = OnlineGaussianMixture(2, covariance_type=covariance_type, warm_up=100, average_after=500, seed=0)
        for row in X[:900].tolist():
            model.learn_one(dict(enumerate(row)))
        engine = model._engine
        assert type(engine).__name__ == ("DiagonalEngine3" if covariance_type == "diag" else "FullEngine3")
        a, b = pickle.loads(pickle.dumps(engine)), copy.deepcopy(engine)
        assert type(a) is type(b) is type(engine)
        for row in X[900:].tolist():
            assert a.learn_predict(row) == b.learn_predict(row) == engine.learn_predict(row)
        assert a.export()[0].s2.tolist() == b.export()[0].s2.tolist() == engine.export()[0].s2.tolist()


def test_two_component_engine_equals_the_general_one_point_engine():
    """PairEngine unrolls ScalarEngine's loops for K=2; the arithmetic is the same, bit for bit."""
    from .datagen import tutorial_stream

    x, _ = tutorial_stream(3)
    pair = OnlineGaussianMixture(2, seed=0)
    general = OnlineGaussianMixture(2, seed=0)
    labels_pair, labels_general = [], []
    for i, value in enumerate(x[:5900].tolist()):  # (not a multiple of the structure checks' 500)
        labels_pair.append(pair.learn_predict_one({"v": value}))
        engine = general._engine
        if type(engine) is fastpath.PairEngine:  # swap in the general engine, same state
            stats, recency, average, average_weights, n_averaged, pending, t = engine.export()
            general._engine = fastpath.ScalarEngine(
                stats, recency, average, average_weights, n_averaged, pending, t, engine.alpha, engine.reg_covar, engine.average_after
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


def test_the_hot_path_for_plain_floats_equals_the_general_reading_of_a_point():
    """learn_one, learn_predict_one and predict_one read a dict of plain floats on a hot path
    (`validation.plain_row`); ints, numpy floats and extra keys go the general way: the same model."""
    X = synthetic_mixture(3_000, n_features=2, n_components=2, covariance_type="full", seed=5)[0]
    plain = OnlineGaussianMixture(2, seed=0)
    other = OnlineGaussianMixture(2, seed=0)
    for i, row in enumerate(X.tolist()):
        a, b = row
        plain_x = {"a": a, "b": b}
        other_x = {"a": np.float64(a), "b": b, "ignored": None} if i % 2 else {"a": a, "b": np.float64(b)}
        if i % 3:
            assert plain.learn_predict_one(plain_x) == other.learn_predict_one(other_x)
        else:
            plain.learn_one(plain_x)
            other.learn_one(other_x)
        assert plain.predict_one(plain_x) == other.predict_one(other_x)
    assert plain._engine is not None and other._engine is not None
    np.testing.assert_array_equal(plain.means_, other.means_)
    np.testing.assert_array_equal(plain.covariances_, other.covariances_)


@pytest.mark.parametrize("n_features", [3, HIGH_D])
def test_a_covariance_that_is_not_positive_definite_is_repaired_as_the_arrays_repair_it(n_features):
    """A collapsed component's covariance (indefinite here) goes through `stats.factored`, the
    vectorised path's floor and repair, in either full engine: its log determinant is the arrays',
    it is flagged for an exact refresh at its next update, and the engine goes on learning."""
    from online_em.stats import SufficientStatistics, factored

    D = n_features
    means = np.stack([np.zeros(D), np.full(D, 3.0)])
    bad = np.eye(D)
    bad[0, 1] = bad[1, 0] = 2.0  # eigenvalues -1 and 3: not positive definite
    s2 = 0.5 * np.stack([np.eye(D) + np.outer(means[0], means[0]), bad + np.outer(means[1], means[1])])
    stats = SufficientStatistics("full", np.zeros(D), np.array([0.5, 0.5]), 0.5 * means, s2, 100.0)
    engine = fastpath.make_engine(stats, stats.s0, None, None, 0, 0, 100, 0.6, 0.0, None)
    _, _, log_det_w, _, repaired = factored(bad[None].copy(), 0.0)
    assert repaired.tolist() == [True]
    if D <= fastpath.MAX_FULL_FEATURES:  # per component: [log det, trace, eps, r, drift]
        log_det, drift = engine.track[1][0], engine.track[1][4]
    else:  # per quantity, over the components
        log_det, drift = engine.track[0][1], engine.track[4][1]
    # (the clipped eigenvalue, about 1e-12 of the largest, carries the rounding of the moments)
    assert log_det == pytest.approx(-2.0 * log_det_w[0], rel=1e-5)
    assert drift == np.inf
    assert np.isfinite(engine.weighted_log_probs(np.full(D, 3.0).tolist())).all()
    assert engine.learn_predict(np.full(D, 0.1).tolist()) in (0, 1)
    assert np.isfinite(engine.weighted_log_probs(np.full(D, 3.0).tolist())).all()
