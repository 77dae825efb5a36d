"""The missing-data E-step (online_em.missing) against a row-by-row reference, every structure."""

from __future__ import annotations

import numpy as np
import pytest

from online_em import missing
from online_em.stats import MixtureParameters, SufficientStatistics

TYPES = ["full", "diag", "spherical", "tied"]


def random_parameters(covariance_type, K=3, D=4, seed=0):
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(K))
    means = rng.normal(0, 3, (K, D))
    A = rng.normal(size=(K, D, D))
    full = A @ A.transpose(0, 2, 1) + D * np.eye(D)
    cov = {
        "full": full,
        "tied": full[0],
        "diag": np.diagonal(full, axis1=1, axis2=2).copy(),
        "spherical": rng.uniform(0.5, 3.0, K),
    }[covariance_type]
    return MixtureParameters.from_covariances(covariance_type, weights, means, cov, shift=rng.normal(size=D))


def with_holes(N=60, D=4, seed=1, rate=0.4):
    rng = np.random.default_rng(seed)
    X = rng.normal(0, 3, (N, D))
    X[rng.random((N, D)) < rate] = np.nan
    X[0] = np.nan  # one row with nothing observed
    X[1] = rng.normal(size=D)  # and a complete one
    return X


def full_covariances(params):
    K, D = params.means.shape
    cov = params.covariances
    if params.covariance_type == "full":
        return cov
    if params.covariance_type == "tied":
        return np.broadcast_to(cov, (K, D, D))
    if params.covariance_type == "diag":
        return np.stack([np.diag(c) for c in cov])
    return np.stack([c * np.eye(D) for c in cov])


def reference(params, X):
    """Row by row, component by component, with explicit inverses: (s0, s1, s2 full per
    component, log densities of the rows with an observed value)."""
    K, D = params.means.shape
    covs = full_covariances(params)
    c = params.shift
    s0, s1, s2, norms = np.zeros(K), np.zeros((K, D)), np.zeros((K, D, D)), []
    for x in X:
        o = ~np.isnan(x)
        if not o.any():
            continue
        m = ~o
        log_p, fills, conds = [], [], []
        for k in range(K):
            mu, S = params.means[k], covs[k]
            Soo = S[np.ix_(o, o)]
            d = x[o] - mu[o]
            log_p.append(np.log(params.weights[k]) - 0.5 * (o.sum() * np.log(2 * np.pi)
                         + np.linalg.slogdet(Soo)[1] + d @ np.linalg.solve(Soo, d)))
            B = S[np.ix_(m, o)] @ np.linalg.inv(Soo)
            filled = x.copy()
            filled[m] = mu[m] + B @ d
            cond = np.zeros((D, D))
            cond[np.ix_(m, m)] = S[np.ix_(m, m)] - B @ S[np.ix_(o, m)]
            fills.append(filled - c)
            conds.append(cond)
        log_p = np.array(log_p)
        top = log_p.max()
        norm = top + np.log(np.exp(log_p - top).sum())
        r = np.exp(log_p - norm)
        norms.append(norm)
        for k in range(K):
            s0[k] += r[k]
            s1[k] += r[k] * fills[k]
            s2[k] += r[k] * (np.outer(fills[k], fills[k]) + conds[k])
    return s0, s1, s2, np.array(norms)


def as_full(stats: SufficientStatistics, covariance_type):
    """Reduce the reference's full second moments to the structure's."""
    return {
        "full": lambda s2: s2,
        "tied": lambda s2: s2.sum(axis=0),
        "diag": lambda s2: np.diagonal(s2, axis1=1, axis2=2),
        "spherical": lambda s2: np.trace(s2, axis1=1, axis2=2),
    }[covariance_type](stats)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_expected_statistics_match_the_row_by_row_reference(covariance_type):
    params = random_parameters(covariance_type)
    X = with_holes()
    stats = missing.expected_statistics(params, X)
    s0, s1, s2, norms = reference(params, X)
    assert stats.count == len(X) - 1  # the empty row is left out
    np.testing.assert_allclose(stats.s0, s0, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(stats.s1, s1, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(stats.s2, as_full(s2, covariance_type), rtol=1e-9, atol=1e-8)
    _, log_norm = missing.e_step(params, X)
    np.testing.assert_allclose(log_norm, norms, rtol=1e-10)
    np.testing.assert_allclose(missing.score(params, X)[1:], norms, rtol=1e-10)
    assert missing.score(params, X)[0] == 0.0  # nothing observed: probability one
    labels = missing.weighted_log_prob(params, X).argmax(axis=1)
    assert labels[0] == int(np.argmax(params.weights))


@pytest.mark.parametrize("covariance_type", TYPES)
def test_complete_rows_take_the_existing_path_exactly(covariance_type):
    params = random_parameters(covariance_type)
    X = np.random.default_rng(3).normal(size=(50, 4))
    a, b = missing.expected_statistics(params, X), params.expected_statistics(X)
    for name in ("s0", "s1", "s2"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(missing.score(params, X), params.log_responsibilities(X)[1])


@pytest.mark.parametrize("covariance_type", TYPES)
def test_one_observed_coordinate_and_large_batches_in_chunks(covariance_type, monkeypatch):
    params = random_parameters(covariance_type, K=2, D=3, seed=4)
    rng = np.random.default_rng(5)
    X = rng.normal(size=(40, 3))
    X[:, 1:] = np.nan
    whole = missing.expected_statistics(params, X)
    monkeypatch.setattr(missing, "E_STEP_CHUNK_VALUES", 7)  # a row or so per chunk
    chunked = missing.expected_statistics(params, X)
    np.testing.assert_allclose(whole.s2, chunked.s2, rtol=1e-12)
    s0, s1, s2, _ = reference(params, X)
    np.testing.assert_allclose(whole.s2, as_full(s2, covariance_type), rtol=1e-9, atol=1e-9)


def test_nothing_observed_anywhere_learns_nothing():
    params = random_parameters("full")
    stats = missing.expected_statistics(params, np.full((5, 4), np.nan))
    assert stats.count == 0 and not stats.s0.any()
