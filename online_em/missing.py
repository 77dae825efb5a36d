"""Missing values: the E-step and the densities of rows with NaN for the coordinates not observed.

A row x with observed coordinates o and missing ones m is explained by the marginal of each
component on o, N(x_o; mu_o, Sigma_oo): the responsibilities and log densities come from it (a
Cholesky factor of the observed block for full and tied covariances; diagonal and spherical
ones just drop the missing coordinates). Its expected sufficient statistics fill each missing
coordinate with its conditional mean, x_m = mu_m + Sigma_mo Sigma_oo^-1 (x_o - mu_o), and add the
conditional covariance Sigma_mm - Sigma_mo Sigma_oo^-1 Sigma_om to the second moment (Ghahramani &
Jordan, 1994); with diagonal and spherical covariances the fill is mu_m and the addition the
variances. This is the exact E-step of EM with values missing at random, never mean imputation.

Rows are grouped by their pattern of missing values, so that each pattern costs a few array
operations; rows with nothing observed are left out (the statistics' ``count`` is the number of
rows learned); complete rows go through `MixtureParameters.expected_statistics` unchanged.

>>> import numpy as np
>>> from online_em.stats import MixtureParameters
>>> params = MixtureParameters.from_covariances(
...     "full", np.array([1.0]), np.array([[0.0, 0.0]]), np.array([[[1.0, 0.8], [0.8, 1.0]]]))
>>> stats = expected_statistics(params, np.array([[1.0, np.nan], [np.nan, np.nan]]))
>>> stats.count, stats.s1.round(6).tolist()  # x_2 filled with 0.8 * x_1; the empty row skipped
(1.0, [[1.0, 0.8]])
>>> stats.s2.round(6).tolist()  # 0.8^2 + the conditional variance 1 - 0.8^2 = 1
[[[1.0, 0.8], [0.8, 1.0]]]
>>> float(score(params, np.array([[1.0, np.nan]]))[0]) == float(-0.5 * np.log(2 * np.pi) - 0.5)
True

References: Ghahramani, Z. and Jordan, M. I. (1994). Supervised learning from incomplete data via
an EM approach. Advances in Neural Information Processing Systems 6, 120-127.
"""

from __future__ import annotations

import typing

import numpy as np

from .stats import E_STEP_CHUNK_VALUES, MixtureParameters, SufficientStatistics, second_moment_shape

__all__ = [
    "complete_rows", "e_step", "expected_statistics", "has_missing", "log_responsibilities", "marginal",
    "observed_rows", "score", "weighted_log_prob",
]


def has_missing(X: np.ndarray) -> bool:
    """Whether the matrix X has a missing value (NaN): one pass, no copy kept."""
    return bool(X.size) and bool(np.isnan(X).any())


def observed_rows(X: np.ndarray) -> np.ndarray:
    """The rows of X with at least one observed value (all of them when nothing is missing)."""
    if not has_missing(X):
        return X
    return X[~np.isnan(X).all(axis=1)]


def complete_rows(X: np.ndarray) -> np.ndarray:
    """The rows of X without a missing value (X itself when it has none)."""
    if not has_missing(X):
        return X
    return X[~np.isnan(X).any(axis=1)]


def marginal(params: MixtureParameters, observed: np.ndarray) -> MixtureParameters:
    """The mixture of the marginals of every component on the coordinates where `observed` (a
    boolean mask of the features) is True: same weights, the means and covariances restricted.

    >>> params = MixtureParameters.from_covariances(
    ...     "diag", np.array([0.5, 0.5]), np.array([[0.0, 1.0], [2.0, 3.0]]), np.array([[1.0, 4.0], [1.0, 9.0]]))
    >>> marginal(params, np.array([False, True])).covariances.tolist()
    [[4.0], [9.0]]

    """
    o = np.flatnonzero(observed)
    cov = params.covariances
    if params.covariance_type == "full":
        cov = cov[:, o[:, None], o]
    elif params.covariance_type == "tied":
        cov = cov[o[:, None], o]
    elif params.covariance_type == "diag":
        cov = cov[:, o]
    return MixtureParameters.from_covariances(
        params.covariance_type, params.weights, params.means[:, o], cov, params.shift[o]
    )


def _patterns(X: np.ndarray) -> typing.Iterator[tuple[np.ndarray, np.ndarray]]:
    """(observed mask, row indices) for each pattern of missing values in X with at least one
    observed and one missing coordinate, in a fixed order (the patterns sorted)."""
    missing = np.isnan(X)
    incomplete = np.flatnonzero(missing.any(axis=1) & ~missing.all(axis=1))
    if not len(incomplete):
        return
    patterns, inverse = np.unique(missing[incomplete], axis=0, return_inverse=True)
    order = np.argsort(inverse.ravel(), kind="stable")
    bounds = np.searchsorted(inverse.ravel()[order], np.arange(len(patterns) + 1))
    for p, pattern in enumerate(patterns):
        yield ~pattern, incomplete[order[bounds[p] : bounds[p + 1]]]


def _complete_mask(X: np.ndarray) -> np.ndarray:
    return ~np.isnan(X).any(axis=1)


def weighted_log_prob(params: MixtureParameters, X: np.ndarray) -> np.ndarray:
    """log w_k + log N(x_o; mu_o, Sigma_oo) for every row and component, shape (N, K): the
    marginal on each row's observed coordinates (just log w_k for a row with none)."""
    if not has_missing(X):
        return params.weighted_log_prob(X)
    out = np.empty((len(X), params.n_components))
    with np.errstate(divide="ignore"):
        out[:] = np.log(params.weights)  # rows with nothing observed keep the weights alone
    complete = _complete_mask(X)
    if complete.any():
        out[complete] = params.weighted_log_prob(X[complete])
    for observed, rows in _patterns(X):
        out[rows] = marginal(params, observed).weighted_log_prob(X[np.ix_(rows, observed)])
    return out


def log_responsibilities(params: MixtureParameters, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Log responsibilities (N, K) and log densities (N,) of the observed coordinates of each
    row (a row with nothing observed: the weights, and log density 0)."""
    if not has_missing(X):
        return params.log_responsibilities(X)
    wlp = weighted_log_prob(params, X)
    top = wlp.max(axis=1)
    top[~np.isfinite(top)] = 0.0
    log_norm = np.log(np.exp(wlp - top[:, None]).sum(axis=1)) + top
    log_norm[np.isnan(X).all(axis=1)] = 0.0  # the weights sum to one, to the last bit here
    return wlp - log_norm[:, None], log_norm


def score(params: MixtureParameters, X: np.ndarray) -> np.ndarray:
    """The log density of the observed coordinates of each row of X under the mixture."""
    return log_responsibilities(params, X)[1]


def expected_statistics(params: MixtureParameters, X: np.ndarray) -> SufficientStatistics:
    """E-step: the summed sufficient statistics of the rows of X (NaN where a value is missing)
    under these parameters, about their shift; rows with nothing observed are left out of them
    and of their count. Without a missing value, exactly `params.expected_statistics(X)`."""
    X = np.asarray(X, dtype=np.float64)
    if not has_missing(X):
        return params.expected_statistics(X)
    return e_step(params, X)[0]


def e_step(params: MixtureParameters, X: np.ndarray) -> tuple[SufficientStatistics, np.ndarray]:
    """The summed expected statistics of the rows of X with an observed value, and the log
    density of each of those rows' observed coordinates (in their order in X): what batch EM
    needs from one E-step."""
    X = np.asarray(X, dtype=np.float64)
    missing = np.isnan(X)
    complete = ~missing.any(axis=1)
    learned = ~missing.all(axis=1)
    log_norm = np.zeros(len(X))
    resp = np.zeros((0, params.n_components))
    if complete.any():
        resp, log_norm[complete] = params.responsibilities(X[complete])
    total = SufficientStatistics.from_batch(X[complete], resp, params.shift, params.covariance_type)
    for observed, rows in _patterns(X):
        part, log_norm[rows] = _pattern_statistics(params, observed, X[rows])
        total = total.merge(part)
    total.count = float(learned.sum())
    return total, log_norm[learned]


def _pattern_statistics(
    params: MixtureParameters, observed: np.ndarray, X: np.ndarray
) -> tuple[SufficientStatistics, np.ndarray]:
    """The summed statistics and the log densities of rows X that share one pattern (`observed`),
    in row chunks that bound the (K, rows, D) fills."""
    near = marginal(params, observed)
    fill = _conditional(params, near, observed)
    K, D = params.means.shape
    rows = max(1, E_STEP_CHUNK_VALUES // (K * D))
    total, norms = None, []
    for start in range(0, len(X), rows):
        chunk = X[start : start + rows]
        resp, log_norm = near.responsibilities(chunk[:, observed])
        part = _filled_statistics(params, observed, chunk, resp, *fill)
        total = part if total is None else total.merge(part)
        norms.append(log_norm)
    return total, np.concatenate(norms)


def _conditional(
    params: MixtureParameters, near: MixtureParameters, observed: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray]:
    """For each component, the regression of the missing coordinates on the observed ones,
    B = Sigma_mo Sigma_oo^-1 (shape (K, m, o); None for diagonal structures, where it is 0), and
    the conditional covariance of the missing ones, Sigma_mm - B Sigma_om: (K, m, m) for full,
    (m, m) for tied, (K, m) variances for diag, (K,) for spherical."""
    cov_type, cov = params.covariance_type, params.covariances
    o, m = np.flatnonzero(observed), np.flatnonzero(~observed)
    if cov_type == "diag":
        return None, cov[:, m]
    if cov_type == "spherical":
        return None, cov
    # Sigma_oo^-1 = P P' for the factors P of the marginal's precisions, so with A = Sigma_mo P,
    # B = A P' and Sigma_mo Sigma_oo^-1 Sigma_om = A A'.
    P = near.precisions_cholesky
    if cov_type == "tied":
        A = cov[m[:, None], o] @ P
        return np.broadcast_to(A @ P.T, (params.n_components,) + (len(m), len(o))), cov[m[:, None], m] - A @ A.T
    A = np.matmul(cov[:, m[:, None], o], P)
    return np.matmul(A, np.swapaxes(P, 1, 2)), cov[:, m[:, None], m] - np.matmul(A, np.swapaxes(A, 1, 2))


def _filled_statistics(
    params: MixtureParameters, observed: np.ndarray, X: np.ndarray, resp: np.ndarray,
    regression: np.ndarray | None, conditional: np.ndarray,
) -> SufficientStatistics:
    """The statistics of rows X of one pattern with responsibilities resp (N, K): each
    component's moments of the rows filled with its conditional means, plus its conditional
    covariance on the missing coordinates, weighted by its mass."""
    cov_type = params.covariance_type
    m = np.flatnonzero(~observed)
    K, D = params.means.shape
    Z = np.broadcast_to(X - params.shift, (K,) + X.shape).copy()  # (K, N, D), about the shift
    centred_means = params.means[:, m] - params.shift[m]  # (K, m)
    fill = np.broadcast_to(centred_means[:, None, :], (K, len(X), len(m)))
    if regression is not None:
        deviation = X[:, observed][None, :, :] - params.means[:, None, observed]  # (K, N, o)
        fill = fill + np.matmul(deviation, np.swapaxes(regression, 1, 2))
    Z[:, :, m] = fill
    s0 = resp.sum(axis=0)
    s1 = np.einsum("nk,knd->kd", resp, Z)
    if cov_type in ("full", "tied"):
        s2 = np.matmul(np.swapaxes(Z * resp.T[:, :, None], 1, 2), Z)
        s2 = 0.5 * (s2 + np.swapaxes(s2, 1, 2))
        if cov_type == "tied":
            s2 = s2.sum(axis=0)
            s2[m[:, None], m] += s0.sum() * conditional
        else:
            s2[:, m[:, None], m] += s0[:, None, None] * conditional
    elif cov_type == "diag":
        s2 = np.einsum("nk,knd->kd", resp, Z * Z)
        s2[:, m] += s0[:, None] * conditional
    else:
        s2 = np.einsum("nk,kn->k", resp, np.einsum("knd,knd->kn", Z, Z)) + s0 * len(m) * conditional
    assert s2.shape == second_moment_shape(cov_type, K, D)
    return SufficientStatistics(cov_type, params.shift, s0, s1, s2, float(len(X)))
