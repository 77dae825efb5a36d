"""Sufficient statistics: formulas, merging, blending and parameter recovery."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats as scipy_stats

from online_em import stats as stats_module
from online_em.stats import COVARIANCE_TYPES, MixtureParameters, SufficientStatistics


def _random_batch(seed, n=50, d=3, k=4):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * 3 + 100
    resp = rng.dirichlet(np.ones(k), size=n)
    return X, resp


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_from_batch_matches_the_definitions(covariance_type):
    X, resp = _random_batch(0)
    shift = np.array([100.0, 99.0, 101.0])
    stats = SufficientStatistics.from_batch(X, resp, shift, covariance_type)
    Xc = X - shift
    np.testing.assert_allclose(stats.s0, resp.sum(0))
    np.testing.assert_allclose(stats.s1, resp.T @ Xc)
    full = np.einsum("nk,nd,ne->kde", resp, Xc, Xc)
    expected = {
        "full": full,
        "tied": full.sum(0),
        "diag": np.einsum("kdd->kd", full),
        "spherical": np.einsum("kdd->k", full),
    }[covariance_type]
    np.testing.assert_allclose(stats.s2, expected)
    assert stats.count == len(X)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_parameters_equal_weighted_moments(covariance_type):
    X, resp = _random_batch(1, n=400)
    stats = SufficientStatistics.from_batch(X, resp, X.mean(0), covariance_type)
    params = stats.to_parameters(reg_covar=0.0)
    nk = resp.sum(0)
    np.testing.assert_allclose(params.weights, nk / nk.sum())
    means = resp.T @ X / nk[:, None]
    np.testing.assert_allclose(params.means, means, rtol=1e-12)
    full = np.stack([np.cov(X.T, aweights=resp[:, k], bias=True) for k in range(4)])
    expected = {
        "full": full,
        "tied": np.einsum("k,kde->de", nk, full) / nk.sum(),
        "diag": np.einsum("kdd->kd", full),
        "spherical": np.einsum("kdd->k", full) / 3,
    }[covariance_type]
    np.testing.assert_allclose(params.covariances, expected, rtol=1e-9)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_log_densities_match_scipy(covariance_type):
    X, resp = _random_batch(2, n=300)
    params = SufficientStatistics.from_batch(X, resp, X.mean(0), covariance_type).to_parameters(1e-6)
    covs = {
        "full": lambda k: params.covariances[k],
        "tied": lambda k: params.covariances,
        "diag": lambda k: np.diag(params.covariances[k]),
        "spherical": lambda k: params.covariances[k] * np.eye(3),
    }[covariance_type]
    expected = np.stack(
        [scipy_stats.multivariate_normal(params.means[k], covs(k)).logpdf(X) for k in range(4)], axis=1
    )
    np.testing.assert_allclose(params.log_gaussian(X), expected, rtol=1e-9)
    log_resp, log_norm = params.log_responsibilities(X)
    np.testing.assert_allclose(np.exp(log_resp).sum(1), 1.0)
    np.testing.assert_allclose(log_norm, np.log(np.exp(expected) @ params.weights), rtol=1e-9)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_distances_between_means_are_the_mahalanobis_distances_of_the_means(covariance_type):
    X, resp = _random_batch(5, n=300)
    params = SufficientStatistics.from_batch(X, resp, X.mean(0), covariance_type).to_parameters(1e-6)
    some = np.array([0, 2, 3])
    np.testing.assert_allclose(params.mean_distances(some), params.mahalanobis(params.means[some])[:, some],
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical", "tied"])
def test_learning_with_alpha_one_is_the_exact_running_average(covariance_type):
    X, resp = _random_batch(3)
    running = SufficientStatistics.from_batch(X[:10], resp[:10], np.zeros(3), covariance_type).average()
    for start in range(10, len(X), 7):
        batch = SufficientStatistics.from_batch(X[start:start + 7], resp[start:start + 7], np.zeros(3), covariance_type)
        running.learn(batch, alpha=1.0)
    whole = SufficientStatistics.from_batch(X, resp, np.zeros(3), covariance_type).average()
    assert running.count == len(X)
    for ours, exact in zip((running.s0, running.s1, running.s2), (whole.s0, whole.s1, whole.s2)):
        np.testing.assert_allclose(ours, exact, rtol=1e-12, atol=1e-14)


def test_a_component_that_takes_in_nothing_keeps_its_moments():
    X, resp = _random_batch(3)
    running = SufficientStatistics.from_batch(X[:10], resp[:10], np.zeros(3), "full").average()
    resp = resp.copy()
    resp[:, 0] = 0.0
    resp /= resp.sum(axis=1, keepdims=True)
    means_before, mass_before = running.s1[0] / running.s0[0], running.s0[0] * running.count
    running.learn(SufficientStatistics.from_batch(X[10:], resp[10:], np.zeros(3), "full"), alpha=0.6)
    np.testing.assert_allclose(running.s1[0] / running.s0[0], means_before, rtol=1e-12)
    assert running.s0[0] * running.count == pytest.approx(mass_before, rel=1e-12)


def test_combining_incompatible_statistics_is_an_error():
    X, resp = _random_batch(4)
    a = SufficientStatistics.from_batch(X, resp, np.zeros(3), "full")
    with pytest.raises(ValueError, match="different shifts"):
        a.merge(SufficientStatistics.from_batch(X, resp, np.ones(3), "full"))
    with pytest.raises(ValueError, match="'full' and 'diag'"):
        a.merge(SufficientStatistics.from_batch(X, resp, np.zeros(3), "diag"))


def test_unknown_covariance_type_is_rejected():
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        SufficientStatistics.from_batch(np.zeros((2, 1)), np.ones((2, 1)), np.zeros(1), "banana")


def test_a_singular_covariance_is_repaired_not_raised():
    cov = np.array([[[1.0, 1.0], [1.0, 1.0]], [[-1.0, 0.0], [0.0, 2.0]]])
    params = MixtureParameters.from_covariances("full", np.array([0.5, 0.5]), np.zeros((2, 2)), cov)
    assert np.isfinite(params.log_gaussian(np.ones((3, 2)))).all()
    assert (np.linalg.eigvalsh(params.covariances) > 0).all()


batches = st.integers(1, 3).flatmap(
    lambda d: st.tuples(
        *[
            st.tuples(
                hnp.arrays(np.float64, (n, d), elements=st.floats(-1e3, 1e3)),
                hnp.arrays(np.float64, (n, 3), elements=st.floats(0, 1)),
            )
            for n in (1, 4, 7)
        ]
    )
)


@settings(max_examples=60, deadline=None)
@given(batches, st.sampled_from(COVARIANCE_TYPES))
def test_merging_is_associative_and_commutative(parts, covariance_type):
    shift = np.zeros(parts[0][0].shape[1])
    a, b, c = (SufficientStatistics.from_batch(X, r, shift, covariance_type) for X, r in parts)
    left, right = (a + b) + c, a + (b + c)
    swapped = (c + a) + b
    for field in ("s0", "s1", "s2"):
        scale = np.abs(getattr(left, field)).max() + 1.0
        np.testing.assert_allclose(getattr(left, field), getattr(right, field), atol=1e-12 * scale)
        np.testing.assert_allclose(getattr(left, field), getattr(swapped, field), atol=1e-12 * scale)
    whole = SufficientStatistics.from_batch(
        np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), shift, covariance_type
    )
    np.testing.assert_allclose(left.s2, whole.s2, atol=1e-9 * (np.abs(whole.s2).max() + 1))
    assert left.count == whole.count == 12


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(np.float64, (20, 2), elements=st.floats(-1e6, 1e6)),
    hnp.arrays(np.float64, (20, 3), elements=st.floats(0, 1)),
    st.sampled_from(COVARIANCE_TYPES),
)
def test_recovered_parameters_are_valid(X, resp, covariance_type):
    params = SufficientStatistics.from_batch(X, resp, X.mean(0), covariance_type).to_parameters(1e-6)
    assert np.isclose(params.weights.sum(), 1.0)
    assert np.isfinite(params.means).all() and np.isfinite(params.covariances).all()
    if covariance_type in ("full", "tied"):
        assert (np.linalg.eigvalsh(params.covariances) > 0).all()
    else:
        assert (params.covariances > 0).all()
    log_resp = params.log_responsibilities(X)[0]
    live = resp.sum(axis=0) > 0  # a component without mass is inactive: weight 0, never responsible
    live = live if live.any() else ~live  # (unless none has mass: then all weigh alike)
    assert np.isfinite(log_resp[:, live]).all() and (log_resp[:, ~live] == -np.inf).all()
    assert (params.weights[~live] == 0).all()


def test_large_batches_are_summed_in_chunks_to_the_same_statistics(monkeypatch):
    from online_em import stats as stats_module

    X, resp = _random_batch(5, n=1000)
    params = SufficientStatistics.from_batch(X, resp, X.mean(0), "full").to_parameters(1e-6)
    whole = params.expected_statistics(X)
    monkeypatch.setattr(stats_module, "E_STEP_CHUNK_ROWS", 64)
    chunked = params.expected_statistics(X)
    assert chunked.count == whole.count == 1000
    for field in ("s0", "s1", "s2"):
        np.testing.assert_allclose(getattr(chunked, field), getattr(whole, field), rtol=1e-12)


@pytest.mark.parametrize("covariance_type, D, K, direct", [
    ("full", 10, 5, False), ("full", 10, 5, True), ("diag", 10, 5, False), ("diag", 10, 5, True),
    ("full", 1, 2, False), ("tied", 3, 3, False), ("tied", 4, 3, True), ("spherical", 3, 4, False),
])
def test_e_steps_in_chunks_equal_one_shot(monkeypatch, covariance_type, D, K, direct):
    """E-steps go in chunks of rows that keep each GEMM under OpenBLAS's threading split
    (E_STEP_CHUNK_WORK): statistics, log densities and responsibilities equal those of one chunk
    of every row up to rounding, through the expanded form and by whitening."""
    rng = np.random.default_rng(D * K)
    X = rng.normal(size=(5000, D)) @ rng.normal(size=(D, D)) + rng.uniform(-5, 5, D)
    resp = rng.dirichlet(np.ones(K), size=len(X))
    params = SufficientStatistics.from_batch(X, resp, X[:50].mean(axis=0), covariance_type).average().to_parameters(1e-6)
    if direct:
        params = _direct(params)
    assert (params.natural_parameters() is None) == direct
    with monkeypatch.context() as patch:
        if params._chunk_rows(params.natural_parameters()) >= len(X):  # light models: chunks of E_STEP_CHUNK_ROWS
            patch.setattr(stats_module, "E_STEP_CHUNK_ROWS", 1024)
        assert params._chunk_rows(params.natural_parameters()) < len(X)
        chunked = params.expected_statistics(X), params.log_responsibilities(X), params.weighted_log_prob(X)
    monkeypatch.setattr(stats_module, "E_STEP_CHUNK_WORK", 1 << 40)
    monkeypatch.setattr(stats_module, "E_STEP_CHUNK_ROWS", 1 << 40)
    assert params._chunk_rows(params.natural_parameters()) >= len(X)
    whole = params.expected_statistics(X), params.log_responsibilities(X), params.weighted_log_prob(X)
    for field in ("s0", "s1", "s2"):
        np.testing.assert_allclose(getattr(chunked[0], field), getattr(whole[0], field), rtol=1e-12, atol=1e-12)
    assert chunked[0].count == whole[0].count == len(X)
    for ours, theirs in zip((*chunked[1], chunked[2]), (*whole[1], whole[2])):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def test_e_step_chunks_stay_under_the_threading_split():
    """Each chunk's GEMMs (K x features x rows multiply-adds) stay within E_STEP_CHUNK_WORK, under
    the 2^19 at which OpenBLAS splits a GEMM across threads, unless E_STEP_MIN_CHUNK_ROWS rows
    already exceed it; D=10 K=5 full goes in chunks of about a thousand rows."""
    assert stats_module.E_STEP_CHUNK_WORK < 1 << 19
    for K, D, covariance_type in [(5, 10, "full"), (10, 10, "full"), (5, 10, "diag"), (20, 10, "diag"), (2, 1, "full"),
                                  (64, 10, "full"), (5, 50, "full")]:
        X = np.random.default_rng(K).normal(size=(200, D))
        resp = np.random.default_rng(D).dirichlet(np.ones(K), size=len(X))
        params = SufficientStatistics.from_batch(X, resp, X.mean(axis=0), covariance_type).average().to_parameters(1e-6)
        eta = params.natural_parameters()
        rows = params._chunk_rows(eta)
        work = eta.size if eta is not None else K * D * D
        assert rows * work <= stats_module.E_STEP_CHUNK_WORK or rows == stats_module.E_STEP_MIN_CHUNK_ROWS
        assert rows <= stats_module.E_STEP_CHUNK_ROWS
        if (K, D, covariance_type) == (5, 10, "full"):
            assert 700 <= rows <= 1500


@pytest.mark.parametrize("covariance_type, D", [("full", 1), ("diag", 1), ("spherical", 1), ("diag", 2), ("diag", 3)])
def test_small_diagonal_parameters_equal_the_vectorised_recovery(monkeypatch, covariance_type, D):
    """Few diagonal values are recovered in plain Python; the arrays' path must agree with it,
    natural parameters included (and the precision check decides the same)."""
    rng = np.random.default_rng(D)
    for _ in range(10):
        K = int(rng.integers(1, stats_module.SMALL_DIAGONAL_SIZE // D + 1))  # small enough for plain Python
        X = rng.normal(size=(200, D)) * rng.uniform(0.1, 10) + rng.uniform(-50, 50)
        resp = rng.dirichlet(np.ones(K), size=200)
        stats = SufficientStatistics.from_batch(X, resp, X[:10].mean(axis=0), covariance_type).average()
        small = stats.to_parameters(1e-6)
        with monkeypatch.context() as patch:
            patch.setattr(stats_module, "SMALL_DIAGONAL_SIZE", 0)
            vectorised = stats.to_parameters(1e-6)
        for field in ("weights", "means", "covariances", "precisions_cholesky", "log_det_precision_cholesky"):
            np.testing.assert_allclose(getattr(small, field), getattr(vectorised, field), rtol=1e-12, atol=0)
        np.testing.assert_allclose(small.natural_parameters(), vectorised.natural_parameters(), rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("D", [2, 5])
def test_full_recovery_equals_from_covariances(D):
    """to_parameters' fused full-covariance path against the general constructor, natural
    parameters included."""
    rng = np.random.default_rng(D)
    for _ in range(10):
        K = int(rng.integers(1, 6))
        X = rng.normal(size=(300, D)) @ rng.normal(size=(D, D)) + rng.uniform(-50, 50, D)
        resp = rng.dirichlet(np.ones(K), size=300)
        stats = SufficientStatistics.from_batch(X, resp, X[:10].mean(axis=0), "full").average()
        fused = stats.to_parameters(1e-6)
        mass = stats.s0 + stats_module.TINY_MASS
        means = stats.s1 / mass[:, None]
        cov = stats.s2 / mass[:, None, None] - means[:, :, None] * means[:, None, :] + 1e-6 * np.eye(D)
        general = MixtureParameters.from_covariances(
            "full", mass / mass.sum(), means + stats.shift, cov, stats.shift, 1e-6)
        for field in ("weights", "means", "covariances", "precisions_cholesky", "log_det_precision_cholesky"):
            np.testing.assert_allclose(getattr(fused, field), getattr(general, field), rtol=1e-9, atol=1e-12)
        fused_eta, general_eta = fused.natural_parameters(), general.natural_parameters()
        assert (fused_eta is None) == (general_eta is None) == (not stats_module.expansion_pays("full", K, D))
        if fused_eta is not None:
            np.testing.assert_allclose(fused_eta, general_eta, rtol=1e-9, atol=1e-9)


def test_diag_recovery_equals_from_covariances():
    rng = np.random.default_rng(4)
    for _ in range(10):
        K, D = int(rng.integers(3, 8)), int(rng.integers(4, 12))  # beyond the plain-Python sizes
        X = rng.normal(size=(300, D)) * rng.uniform(0.1, 10, D) + rng.uniform(-50, 50, D)
        resp = rng.dirichlet(np.ones(K), size=300)
        stats = SufficientStatistics.from_batch(X, resp, X[:10].mean(axis=0), "diag").average()
        fused = stats.to_parameters(1e-6)
        mass = stats.s0 + stats_module.TINY_MASS
        means = stats.s1 / mass[:, None]
        cov = np.maximum(stats.s2 / mass[:, None] - means**2, 0.0) + 1e-6
        general = MixtureParameters.from_covariances("diag", mass / mass.sum(), means + stats.shift, cov, stats.shift)
        for field in ("weights", "means", "covariances", "precisions_cholesky", "log_det_precision_cholesky"):
            np.testing.assert_allclose(getattr(fused, field), getattr(general, field), rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(fused.natural_parameters(), general.natural_parameters(), rtol=1e-10, atol=1e-10)


def _direct(params: MixtureParameters) -> MixtureParameters:
    """The same parameters with the expanded form switched off: E-steps whiten directly."""
    copy = MixtureParameters(params.covariance_type, params.weights, params.means, params.covariances,
                             params.precisions_cholesky, params.log_det_precision_cholesky, params.shift)
    copy.__dict__["_cached_natural"] = None
    return copy


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("D, K", [(1, 2), (3, 4), (6, 3)])
def test_expanded_e_step_equals_whitening(covariance_type, D, K):
    """The exponential-family E-step (features times natural parameters) against the direct one:
    log densities, responsibilities and every statistic."""
    rng = np.random.default_rng(10 * D + K)
    X = rng.normal(size=(2000, D)) @ rng.normal(size=(D, D)) + rng.uniform(-20, 20, D)
    resp = rng.dirichlet(np.ones(K), size=len(X))
    params = SufficientStatistics.from_batch(X, resp, X[:50].mean(axis=0), covariance_type).average().to_parameters(1e-6)
    if params.natural_parameters() is None:
        assert not stats_module.expansion_pays(covariance_type, K, D)
        return
    direct = _direct(params)
    np.testing.assert_allclose(params.weighted_log_prob(X), direct.weighted_log_prob(X), rtol=1e-10, atol=1e-8)
    ours, theirs = params.expected_statistics(X), direct.expected_statistics(X)
    for field in ("s0", "s1", "s2"):
        np.testing.assert_allclose(getattr(ours, field), getattr(theirs, field), rtol=1e-9, atol=1e-9 * len(X))


@pytest.mark.parametrize("covariance_type, D, K", [
    ("full", 5, 3), ("full", 1, 2), ("diag", 4, 6), ("diag", 2, 3), ("spherical", 3, 2), ("tied", 2, 3), ("full", 12, 2),
])
def test_new_weights_redo_only_the_constants(covariance_type, D, K):
    """`dataclasses.replace(params, weights=...)` (the model's E-step prior) carries what its
    E-steps reuse that the weights do not enter: natural parameters and whitening equal those of
    parameters built afresh, and replacing anything else recomputes them."""
    import dataclasses

    rng = np.random.default_rng(D * K)
    X = rng.normal(size=(400, D)) @ rng.normal(size=(D, D)) + rng.uniform(-5, 5, D)
    resp = rng.dirichlet(np.ones(K), size=len(X))
    params = SufficientStatistics.from_batch(X, resp, X[:50].mean(axis=0), covariance_type).average().to_parameters(1e-6)
    params.natural_parameters(), params._kernel()
    weights = rng.dirichlet(np.ones(K))
    weights[0] = 0.0  # an inactive component: its constant is -inf
    weights /= weights.sum()
    for new in (dataclasses.replace(params, weights=weights), dataclasses.replace(params, means=params.means + 0.5)):
        fresh = MixtureParameters(new.covariance_type, new.weights, new.means, new.covariances, new.precisions_cholesky,
                                  new.log_det_precision_cholesky, new.shift)
        ours, theirs = new.natural_parameters(), fresh.natural_parameters()
        assert (new._weight_free is params._weight_free) == (new.means is params.means)
        assert (ours is None) == (theirs is None)
        if ours is not None:
            np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
            assert (ours[0, 0] == -np.inf) == (new.weights[0] == 0)
        for a, b in zip(new._kernel(), fresh._kernel()):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(new.log_responsibilities(X)[1], fresh.log_responsibilities(X)[1], rtol=1e-12)
    assert params.natural_parameters() is params.natural_parameters()  # the original keeps its own


def test_far_means_fall_back_to_whitening():
    """Means thousands of standard deviations from the shift would cancel in the expanded form:
    the precision check sends the E-step the direct way."""
    params = MixtureParameters.from_covariances(
        "diag", np.array([0.5, 0.5]), np.array([[0.0], [1e5]]), np.full((2, 1), 1.0), shift=np.zeros(1))
    assert params.natural_parameters() is None
    near = MixtureParameters.from_covariances(
        "diag", np.array([0.5, 0.5]), np.array([[0.0], [10.0]]), np.full((2, 1), 1.0), shift=np.zeros(1))
    assert near.natural_parameters() is not None
