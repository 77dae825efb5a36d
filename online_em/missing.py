"""Missing values: the E-step and the densities of rows with NaN for the coordinates not observed.

A row x with observed coordinates o and missing ones m is explained by the marginal of each
component on o, N(x_o; mu_o, Sigma_oo): the responsibilities and log densities come from it (a
Cholesky factor of the observed block for full and tied covariances; diagonal and spherical
ones just drop the missing coordinates). Its expected sufficient statistics fill each missing
coordinate with its conditional mean, x_m = mu_m + Sigma_mo Sigma_oo^-1 (x_o - mu_o), and add the
conditional covariance Sigma_mm - Sigma_mo Sigma_oo^-1 Sigma_om to the second moment (Ghahramani &
Jordan, 1994); with diagonal and spherical covariances the fill is mu_m and the addition the
variances. This is the exact E-step of EM with values missing at random, never mean imputation.

A batch stays vectorised: full and tied covariances are factored once per pattern of missing
values, all patterns in one stacked Cholesky (`_Incomplete`), and every incomplete row is then
whitened and filled at once, in row chunks that bound the temporaries; diagonal structures need
no factoring. Rows with nothing observed are left out (the statistics' ``count`` is the number of
rows learned); complete rows go through `MixtureParameters.expected_statistics` unchanged (one
``np.isnan`` test a batch decides).

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

import math
import typing

import numpy as np

from .stats import E_STEP_CHUNK_VALUES, MixtureParameters, SufficientStatistics, second_moment_shape

_LOG_2PI = math.log(2.0 * math.pi)

__all__ = [
    "column_moments", "complete_rows", "e_step", "expected_statistics", "has_missing", "log_responsibilities",
    "observed_rows", "score", "start_parameters", "weighted_log_prob",
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


def weighted_log_prob(params: MixtureParameters, X: np.ndarray) -> np.ndarray:
    """log w_k + log N(x_o; mu_o, Sigma_oo) for every row and component, shape (N, K): the
    marginal on each row's observed coordinates (just log w_k for a row with none)."""
    if not has_missing(X):
        return params.weighted_log_prob(X)
    kinds = _Rows(X)
    out = np.empty((len(X), params.n_components))
    with np.errstate(divide="ignore"):
        out[:] = np.log(params.weights)  # rows with nothing observed keep the weights alone
    if len(kinds.complete):
        out[kinds.complete] = params.weighted_log_prob(X[kinds.complete])
    for rows in kinds.incomplete_chunks(params):
        out[rows] = _Incomplete(params, X[rows], fill=False).weighted_log_prob
    return out


def log_responsibilities(params: MixtureParameters, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Log responsibilities (N, K) and log densities (N,) of the observed coordinates of each
    row (a row with nothing observed: the weights, and log density 0)."""
    if not has_missing(X):
        return params.log_responsibilities(X)
    wlp = weighted_log_prob(params, X)
    log_norm = _log_sum_exp(wlp)
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


def e_step(
    params: MixtureParameters, X: np.ndarray, resp: np.ndarray | None = None
) -> tuple[SufficientStatistics, np.ndarray]:
    """The summed expected statistics of the rows of X with an observed value, and the log
    density of each of those rows' observed coordinates (in their order in X): what batch EM
    needs from one E-step. Given `resp` (N, K), the statistics of those responsibilities
    instead, the missing values filled under `params` (a start from labels), and no densities."""
    X = np.asarray(X, dtype=np.float64)
    kinds = _Rows(X)
    log_norm = np.zeros(len(X))
    complete = kinds.complete
    total = None
    if len(complete) or not kinds.n_incomplete:  # (statistics of no rows: zeros)
        if resp is not None:
            given = resp[complete]
        elif len(complete):
            given, log_norm[complete] = params.responsibilities(X[complete])
        else:
            given = np.zeros((0, params.n_components))
        total = SufficientStatistics.from_batch(X[complete], given, params.shift, params.covariance_type)
    for rows in kinds.incomplete_chunks(params):
        part = _Incomplete(params, X[rows], fill=True)
        if resp is None:
            log_norm[rows] = _log_sum_exp(part.weighted_log_prob)
            weights = np.exp(part.weighted_log_prob - log_norm[rows, None])
        else:
            weights = resp[rows]
        part = part.statistics(weights)
        total = part if total is None else total.merge(part)
    total.count = float(len(complete) + kinds.n_incomplete)
    return total, log_norm[kinds.learned]


def _log_sum_exp(wlp: np.ndarray) -> np.ndarray:
    top = wlp.max(axis=1)
    top[~np.isfinite(top)] = 0.0
    return np.log(np.exp(wlp - top[:, None]).sum(axis=1)) + top


class _Rows:
    """Which rows of X are complete, which have both observed and missing values (incomplete),
    and which are learned (either)."""

    def __init__(self, X: np.ndarray):
        gaps = np.isnan(X)
        some = gaps.any(axis=1)
        every = gaps.all(axis=1) if X.shape[1] else some
        self.complete = np.flatnonzero(~some)
        self.incomplete = np.flatnonzero(some & ~every)
        self.learned = np.flatnonzero(~every)
        self.n_incomplete = len(self.incomplete)

    def incomplete_chunks(self, params: MixtureParameters) -> typing.Iterator[np.ndarray]:
        """The incomplete rows in chunks whose (rows, K, D, D) temporaries (D for diagonal
        structures) stay within E_STEP_CHUNK_VALUES values."""
        K, D = params.means.shape
        per_row = K * D * (D if params.covariance_type in ("full", "tied") else 1)
        size = max(1, E_STEP_CHUNK_VALUES // per_row)
        for start in range(0, self.n_incomplete, size):
            yield self.incomplete[start : start + size]


class _Incomplete:
    """Rows X that each have an observed and a missing value, under `params`: every component's
    weighted log density of their observed values (`weighted_log_prob`, (n, K)) and, with
    `fill`, their statistics for given responsibilities (`statistics`).

    Each pattern of missing values (the rows' patterns, P of them) gets, for every component, the
    covariance with its missing rows and columns replaced by the identity's: its Cholesky factor
    L has the marginal's factor in the observed block and the identity in the missing one, so
    that with the deviations of the missing values set to 0, |L^-1 (x - mu)|^2 is the marginal's
    Mahalanobis distance and log det L the marginal's (all patterns factored in one call). The
    same factors give the regression of the missing values on the observed ones.
    """

    def __init__(self, params: MixtureParameters, X: np.ndarray, fill: bool):
        self.params = params
        cov_type = params.covariance_type
        self.missing = np.isnan(X)
        observed = ~self.missing
        centred_means = params.means - params.shift
        # deviations from each component's mean, 0 where missing: (n, K, D)
        deviation = np.where(observed[:, None, :], (X - params.shift)[:, None, :] - centred_means, 0.0)
        n_observed = observed.sum(axis=1)
        with np.errstate(divide="ignore"):
            log_weights = np.log(params.weights)
        if cov_type in ("diag", "spherical"):
            var = params.covariances if cov_type == "diag" else params.covariances[:, None]
            var = np.broadcast_to(var, centred_means.shape)
            distance = np.einsum("nkd,kd->nk", deviation * deviation, 1.0 / var)
            log_det = observed @ np.log(var).T  # (n, K): log det of each marginal covariance
            self.variances = var
            filled = deviation
        else:
            patterns, self.pattern = _unique_rows(self.missing)
            factor, regression, self.conditional = _pattern_factors(params.covariances, ~patterns, fill)
            inverse = factor[self.pattern]  # (n, K or 1, D, D)
            whitened = np.matmul(inverse, deviation[..., None])[..., 0]
            distance = np.einsum("nkd,nkd->nk", whitened, whitened)
            # log det Sigma_oo = 2 sum log diag L = -2 sum log diag W
            log_det = -2.0 * np.log(np.diagonal(factor, axis1=-2, axis2=-1)).sum(axis=-1)[self.pattern]
            filled = deviation + np.matmul(regression[self.pattern], deviation[..., None])[..., 0] if fill else None
        self.weighted_log_prob = log_weights - 0.5 * (n_observed[:, None] * _LOG_2PI + log_det + distance)
        # each component's fill of the rows, about the shift: observed values, conditional means
        self.filled = None if filled is None else filled + centred_means

    def statistics(self, resp: np.ndarray) -> SufficientStatistics:
        """The summed statistics of the rows for responsibilities resp (n, K): every component's
        moments of the rows as it fills them, plus its conditional covariance of the missing
        values, weighted by its responsibility for each row."""
        params, Z = self.params, self.filled
        cov_type = params.covariance_type
        K, D = params.means.shape
        s0 = resp.sum(axis=0)
        s1 = np.einsum("nk,nkd->kd", resp, Z)
        if cov_type in ("full", "tied"):
            weighted = np.swapaxes(Z * resp[:, :, None], 0, 1)  # (K, n, D)
            s2 = np.matmul(np.swapaxes(weighted, 1, 2), np.swapaxes(Z, 0, 1))
            s2 = 0.5 * (s2 + np.swapaxes(s2, 1, 2))
            mass = np.stack([np.bincount(self.pattern, r, len(self.conditional)) for r in resp.T], axis=1)
            if cov_type == "tied":
                s2 = s2.sum(axis=0) + np.einsum("p,pde->de", mass.sum(axis=1), self.conditional[:, 0])
            else:
                s2 += np.einsum("pk,pkde->kde", mass, self.conditional)
        else:
            spread = (resp.T @ self.missing) * self.variances  # (K, D): conditional variances
            if cov_type == "diag":
                s2 = np.einsum("nk,nkd->kd", resp, Z * Z) + spread
            else:
                s2 = np.einsum("nk,nk->k", resp, np.einsum("nkd,nkd->nk", Z, Z)) + spread.sum(axis=1)
        assert s2.shape == second_moment_shape(cov_type, K, D)
        return SufficientStatistics(cov_type, params.shift, s0, s1, s2, float(len(Z)))


def _unique_rows(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of a boolean matrix (sorted) and the index of each row among them:
    `np.unique(mask, axis=0, return_inverse=True)`, faster through an integer code per row."""
    n, D = mask.shape
    if n == 1:
        return mask, np.zeros(1, dtype=np.intp)
    if D > 62:
        patterns, inverse = np.unique(mask, axis=0, return_inverse=True)
        return patterns, inverse.ravel()
    codes = mask @ (1 << np.arange(D - 1, -1, -1, dtype=np.int64))  # the first feature most significant
    distinct, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    return mask[first], inverse.ravel()


def _pattern_factors(
    covariances: np.ndarray, observed: np.ndarray, fill: bool
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """For full (K, D, D) or tied (D, D) covariances and P patterns (`observed`, (P, D)): per
    pattern and component, W = L^-1 for the Cholesky factor L of the covariance with its missing
    rows and columns made the identity's; and with `fill`, the regression B (zero but for the
    missing rows and observed columns, where it is Sigma_mo Sigma_oo^-1) and the conditional
    covariance (zero but for the missing block, Sigma_mm - B Sigma_om). Shapes (P, K, D, D), or
    (P, 1, D, D) for tied."""
    S = covariances.reshape((-1,) + covariances.shape[-2:])[None]  # (1, K', D, D)
    D = S.shape[-1]
    gone = ~observed
    both = (observed[:, :, None] & observed[:, None, :])[:, None]  # (P, 1, D, D)
    M = np.where(both, S, 0.0)
    M[..., np.arange(D), np.arange(D)] += gone[:, None, :]
    W = np.linalg.inv(_cholesky(M))
    if not fill:
        return W, None, None
    cross = np.where((gone[:, :, None] & observed[:, None, :])[:, None], S, 0.0)  # Sigma_mo, padded
    regression = cross @ (np.swapaxes(W, -1, -2) @ W)  # Sigma_mo Sigma_oo^-1: M^-1 = W'W
    conditional = np.where((gone[:, :, None] & gone[:, None, :])[:, None], S, 0.0) - regression @ np.swapaxes(cross, -1, -2)
    return W, regression, conditional


def _cholesky(M: np.ndarray) -> np.ndarray:
    """Lower Cholesky factors of a stack of matrices that are positive definite in exact
    arithmetic (principal blocks of factored covariances, the identity elsewhere); one that
    rounding made indefinite has its eigenvalues clipped above a tiny fraction of its largest."""
    try:
        return np.linalg.cholesky(M)
    except np.linalg.LinAlgError:
        values, vectors = np.linalg.eigh(M)
        floor = np.maximum(values.max(axis=-1, keepdims=True) * 1e-12, np.finfo(np.float64).tiny)
        repaired = (vectors * np.maximum(values, floor)[..., None, :]) @ np.swapaxes(vectors, -1, -2)
        return np.linalg.cholesky(0.5 * (repaired + np.swapaxes(repaired, -1, -2)))


def column_moments(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per feature, the mean and (biased) variance of its observed values and how many there
    are; a feature never observed has mean 0, variance 0 and count 0.

    >>> mean, var, n = column_moments(np.array([[1.0, np.nan], [3.0, np.nan]]))
    >>> mean.tolist(), var.tolist(), n.tolist()
    ([2.0, 0.0], [1.0, 0.0], [2, 0])

    """
    observed = ~np.isnan(X)
    n = observed.sum(axis=0)
    mean = np.where(observed, X, 0.0).sum(axis=0) / np.maximum(n, 1)
    deviation = np.where(observed, X - mean, 0.0)
    return mean, (deviation * deviation).sum(axis=0) / np.maximum(n, 1), n


def start_parameters(
    X: np.ndarray, resp: np.ndarray, covariance_type: str, shift: np.ndarray, reg_covar: float
) -> MixtureParameters:
    """Parameters to start batch EM on rows with missing values from responsibilities (N, K),
    typically k-means labels: each component's weight, its mean and variance of every feature
    over the values observed (weighted by resp; the whole data's where a component has none, 1
    for a variance that is 0), and no correlations. Only the start: EM takes it from there.

    >>> X = np.array([[0.0, np.nan], [1.0, 5.0], [10.0, 7.0], [11.0, np.nan]])
    >>> params = start_parameters(X, np.repeat(np.eye(2), 2, axis=0), "diag", np.zeros(2), 0.0)
    >>> params.means.tolist(), params.covariances.tolist()
    ([[0.5, 5.0], [10.5, 7.0]], [[0.25, 1.0], [0.25, 1.0]])

    """
    observed = ~np.isnan(X)
    Z = np.where(observed, X - shift, 0.0)
    overall, overall_var, _ = column_moments(X - shift)
    mass = resp.T @ observed  # (K, D): responsibility of the observed values
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(mass > 0, (resp.T @ Z) / mass, overall)
        var = np.where(mass > 0, (resp.T @ (Z * Z)) / mass - means * means, overall_var)
    var = np.maximum(var, 0.0)
    var = np.where(var > 0, var, np.where(overall_var > 0, overall_var, 1.0)) + reg_covar
    weights = resp.sum(axis=0) + 10.0 * np.finfo(np.float64).eps
    weights /= weights.sum()
    cov = {
        "full": lambda: np.stack([np.diag(v) for v in var]),
        "tied": lambda: np.diag(weights @ var),
        "diag": lambda: var,
        "spherical": lambda: var.mean(axis=1),
    }[covariance_type]()
    return MixtureParameters.from_covariances(covariance_type, weights, means + shift, cov, shift)
