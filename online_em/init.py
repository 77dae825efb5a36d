"""Initialisation on a warm-up buffer: seeded k-means++ and a few iterations of batch EM.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = np.concatenate([rng.normal(0, 1, (200, 1)), rng.normal(10, 1, (200, 1))])
>>> stats = initial_statistics(X, 2, "full", reg_covar=1e-6, rng=np.random.default_rng(1))
>>> sorted(np.round(stats.to_parameters(1e-6).means.ravel()).tolist())
[0.0, 10.0]

"""

from __future__ import annotations

import numpy as np

from .stats import SufficientStatistics

__all__ = ["kmeans_plusplus", "initial_statistics"]


def kmeans_plusplus(X: np.ndarray, n_clusters: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of `n_clusters` rows of X chosen by k-means++ (Arthur & Vassilvitskii, 2007).

    Each new centre is drawn with probability proportional to its squared distance to the nearest
    centre already chosen. When every remaining distance is 0 (constant data) rows are drawn
    uniformly, so duplicated points never divide by zero.
    """
    n = len(X)
    scale = float(np.abs(X - X.mean(axis=0)).max()) or 1.0
    Z = (X - X.mean(axis=0)) / scale  # keeps squared distances finite for data near 1e150
    chosen = [int(rng.integers(n))]
    closest = np.einsum("nd,nd->n", Z - Z[chosen[0]], Z - Z[chosen[0]])
    for _ in range(1, n_clusters):
        total = closest.sum()
        if total > 0 and np.isfinite(total):
            index = int(rng.choice(n, p=closest / total))
        else:
            index = int(rng.integers(n))
        chosen.append(index)
        diff = Z - Z[index]
        closest = np.minimum(closest, np.einsum("nd,nd->n", diff, diff))
    return np.array(chosen)


def _hard_assignment(X: np.ndarray, centres: np.ndarray) -> np.ndarray:
    d2 = ((X[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    resp = np.zeros((len(X), len(centres)))
    resp[np.arange(len(X)), d2.argmin(axis=1)] = 1.0
    return resp


def batch_em(
    X: np.ndarray,
    resp: np.ndarray,
    covariance_type: str,
    reg_covar: float,
    shift: np.ndarray,
    max_iter: int,
    tol: float = 1e-6,
) -> tuple[SufficientStatistics, float]:
    """Run batch EM from initial responsibilities; return the summed statistics and the mean
    log-likelihood of X under the parameters they give."""
    stats = SufficientStatistics.from_batch(X, resp, shift, covariance_type)
    previous = -np.inf
    log_likelihood = -np.inf
    for _ in range(max_iter):
        params = stats.to_parameters(reg_covar)
        log_resp, log_norm = params.log_responsibilities(X)
        log_likelihood = float(log_norm.mean())
        stats = SufficientStatistics.from_batch(X, np.exp(log_resp), shift, covariance_type)
        if abs(log_likelihood - previous) < tol:
            break
        previous = log_likelihood
    return stats, log_likelihood


def initial_statistics(
    X: np.ndarray,
    n_components: int,
    covariance_type: str,
    reg_covar: float,
    rng: np.random.Generator,
    n_init: int = 3,
    max_iter: int = 20,
) -> SufficientStatistics:
    """Summed statistics of the best of `n_init` k-means++ starts refined by batch EM.

    The statistics are taken about the mean of X. Each start seeds centres with k-means++,
    assigns every row to its nearest centre, and runs at most `max_iter` EM iterations; the start
    with the highest log-likelihood wins.
    """
    X = np.asarray(X, dtype=np.float64)
    shift = X.mean(axis=0)
    best, best_ll = None, -np.inf
    for _ in range(max(1, n_init)):
        centres = X[kmeans_plusplus(X, n_components, rng)]
        resp = _hard_assignment(X - shift, centres - shift)
        stats, ll = batch_em(X, resp, covariance_type, reg_covar, shift, max_iter)
        if best is None or ll > best_ll:
            best, best_ll = stats, ll
    return best

