"""What the model reports and labels with while it is still buffering its warm-up.

Until the buffer holds `warm_up` points the model is batch EM on the buffer:

- the **reported fit** (weights, means, covariances, `predict_many`, `score_many`, `save`, and
  the initial statistics when the warm-up ends) is a converged MAP fit of *every* buffered
  point, the best of `n_init` fresh starts (warm starts from fits of fewer points were measured
  to settle in over-fitted optima: digits ARI 0.22 against 0.58 fresh);
- **labelling fits**, which `predict_one` and the other one-point calls use, are refreshed
  each time the buffer grows past a checkpoint (a quarter more points than the last one), and
  fit every point there is at that moment (or the reported fit, if one was made since). Each
  is EM from the one before (a few iterations),
  with one fresh start as well each time the buffer doubles; its labels, and the reported
  fit's, are matched to the one before, so labels handed out during the warm-up stay as stable
  as the data allow.

Every fit is a pure function of the buffer's first n points and the seed (the random starts
are seeded by both), cached by n, so a model saved and loaded during its warm-up goes on exactly
as one that was not.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = np.concatenate([rng.normal(0, 1, (60, 1)), rng.normal(8, 1, (90, 1))])[rng.permutation(150)]
>>> fits = WarmUpFits(n_components=2, covariance_type="full", reg_covar=1e-6, n_init=3,
...                   max_iter=100, prior_count=1.0, seed=0)
>>> params = fits.reported(X)
>>> sorted(np.round(params.means.ravel()).tolist()), sorted(np.round(params.weights, 1).tolist())
([0.0, 8.0], [0.4, 0.6])
>>> fits.last_checkpoint(150)  # the labelling fit in use after 150 points fits the first 148
148

"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from . import missing
from .init import fit_buffer, map_parameters, refine
from .prior import CovariancePrior, auto_count
from .selection import akaike, select_fit
from .stats import MixtureParameters, SufficientStatistics

__all__ = ["WarmUpFits", "match_components", "permuted", "single_gaussian"]

# Labelling fits are refreshed when the buffer has grown by this factor since the last one.
CHECKPOINT_GROWTH = 1.25


@dataclasses.dataclass(frozen=True)
class _Fit:
    """A fit of a buffer: summed statistics of its points (without the prior), the MAP
    parameters, and the prior they were fitted with."""

    statistics: SufficientStatistics
    parameters: MixtureParameters
    prior: CovariancePrior | None
    fresh_at: int  # the size of the latest fit in its chain that tried fresh starts


class WarmUpFits:
    """The warm-up's fits of a buffer, cached by the number of points they fit."""

    def __init__(
        self,
        n_components: int,
        covariance_type: str,
        reg_covar: float,
        n_init: int,
        max_iter: int,
        prior_count: float | str,
        seed: int | None,
        adaptive: bool = False,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.n_init = n_init
        self.max_iter = max_iter
        self.prior_count = prior_count
        self.seed = seed
        self.adaptive = adaptive  # fresh fits choose how many components (at most n_components)
        self._cache: dict[int, _Fit] = {}
        self._latest: tuple[int, _Fit] | None = None

    @property
    def first_checkpoint(self) -> int:
        """Below this many points there is no fit: every component is the buffer's Gaussian."""
        return self.n_components + 1

    def checkpoints(self, n: int) -> list[int]:
        """The labelling checkpoints up to n points."""
        points, c = [], self.first_checkpoint
        while c <= n:
            points.append(c)
            c = max(c + 1, math.ceil(c * CHECKPOINT_GROWTH))
        return points

    def last_checkpoint(self, n: int) -> int:
        """The size of the labelling fit in use after n points (0: none yet)."""
        points = self.checkpoints(n)
        return points[-1] if points else 0

    def prior(self, X: np.ndarray) -> CovariancePrior | None:
        """The prior for a fit of these rows (None: none); an 'auto' count is set by their number."""
        count = self.prior_count
        if count == "auto":
            count = auto_count(len(X), self.n_components, X.shape[1], self.covariance_type)
        return CovariancePrior.from_data(X, count) if count > 0 else None

    def _fit(self, rows, n: int, previous: int, labelling: bool) -> _Fit:
        """The fit of the first n rows, its labels matched to the (cached) fit of the first
        `previous` rows. A reported fit is the best of `n_init` fresh starts. A labelling fit is
        EM from the previous labelling fit (cheap: a few iterations), and at every doubling of
        the buffer also one fresh start, the better by log-likelihood winning."""
        X = np.asarray(rows[:n], dtype=np.float64)
        rng = np.random.default_rng(None if self.seed is None else [self.seed, n])
        prior = self.prior(X)
        before = self._cache[previous] if previous else None
        candidates = []
        if labelling and before is not None:
            candidates.append(refine(X, before.statistics, self.reg_covar, self.max_iter, prior=prior))
        fresh = not labelling or before is None or n >= 2 * before.fresh_at
        if fresh:
            fit_fresh = select_fit if self.adaptive else fit_buffer
            candidates.append(fit_fresh(
                X, self.n_components, self.covariance_type, self.reg_covar, rng,
                n_init=self.n_init if not labelling else 1, max_iter=self.max_iter, prior=prior,
            ))
        if self.adaptive:  # a warm start keeps its number of components: the criterion decides
            fit = min(candidates, key=lambda f: akaike(f, n, int(np.count_nonzero(f.statistics.s0))))
        else:
            fit = max(candidates, key=lambda f: f.log_likelihood)
        stats = fit.statistics
        params = map_parameters(stats, prior, self.reg_covar)
        # The first fit numbers its components heaviest first (inactive ones last), later fits
        # match the one before.
        if before is not None:
            order = match_components(before.parameters.means, params.means, X,
                                     before.statistics.s0 > 0, stats.s0 > 0)
        else:
            order = np.argsort(-stats.s0, kind="stable")
        stats = permuted(stats, order)
        params = map_parameters(stats, prior, self.reg_covar)
        return _Fit(stats, params, prior, n if fresh else before.fresh_at)

    def _chain(self, rows, n: int) -> int:
        """Fit every labelling checkpoint up to n rows, in order; the last one's size."""
        previous = 0
        for c in self.checkpoints(n):
            if c not in self._cache:
                self._cache[c] = self._fit(rows, c, previous, labelling=True)
            previous = c
        return previous

    def labelling(self, rows) -> MixtureParameters:
        """The parameters one-point calls label with after these rows."""
        last = self._chain(rows, len(rows))
        if self._latest is not None and last < self._latest[0] <= len(rows):
            return self._latest[1].parameters  # a reported fit newer than the checkpoint
        if not last:
            return single_gaussian(np.asarray(rows, dtype=np.float64), self.n_components, self.covariance_type, self.reg_covar)
        return self._cache[last].parameters

    def reported_fit(self, rows) -> _Fit | None:
        """The converged fit of every one of these rows (None when there are too few to fit)."""
        n = len(rows)
        last = self._chain(rows, n)
        if not last:
            return None
        if self._latest is None or self._latest[0] != n:
            self._latest = (n, self._fit(rows, n, last, labelling=False))
        return self._latest[1]

    def reported(self, rows) -> MixtureParameters:
        """The parameters reported after these rows."""
        fit = self.reported_fit(rows)
        if fit is None:
            return single_gaussian(np.asarray(rows, dtype=np.float64), self.n_components, self.covariance_type, self.reg_covar)
        return fit.parameters


def single_gaussian(X: np.ndarray, n_components: int, covariance_type: str, reg_covar: float) -> MixtureParameters:
    """Every component the Gaussian of the rows of X (standard normal with none; unit variance
    with one), with equal weights: what the model says before it has enough points to fit."""
    K = n_components
    X = np.asarray(X, dtype=np.float64)
    D = X.shape[1] if X.ndim == 2 else 0
    if len(X) and missing.has_missing(X):  # the observed values' (unit variance with one or none)
        mean, var, count = missing.column_moments(X)
        var = np.where(count > 1, var + reg_covar, 1.0)
    elif len(X):
        mean, var = X.mean(axis=0), X.var(axis=0) + reg_covar
        if len(X) == 1:
            var = np.ones(D)
    else:
        mean, var = np.zeros(D), np.ones(D)
    cov = {
        "full": np.broadcast_to(np.diag(var), (K, D, D)),
        "tied": np.diag(var),
        "diag": np.broadcast_to(var, (K, D)),
        "spherical": np.full(K, var.mean() if D else 1.0),
    }[covariance_type]
    return MixtureParameters.from_covariances(
        covariance_type, np.full(K, 1.0 / K), np.broadcast_to(mean, (K, D)), cov, mean
    )


def match_components(reference: np.ndarray, means: np.ndarray, X: np.ndarray,
                     reference_live: np.ndarray | None = None, live: np.ndarray | None = None) -> np.ndarray:
    """order[i] = the component of `means` that takes label i, matched greedily to `reference`
    by distance in units of the data's spread (of its observed values); active components
    (`live`) to active ones first."""
    if missing.has_missing(X):  # a feature seen once or never has no spread: a unit one
        var = missing.column_moments(X)[1]
        scale = np.sqrt(np.where(var > 0, var, 1.0))
    else:
        scale = X.std(axis=0) + 1e-300
    with np.errstate(over="ignore"):  # extreme data: an infinite distance still orders right
        d2 = (((reference[:, None, :] - means[None, :, :]) / scale) ** 2).sum(axis=2)
    if reference_live is not None and live is not None:
        d2 = np.minimum(d2, 1e300) + np.where(reference_live[:, None] == live[None, :], 0.0, 1e300)
    order = np.full(len(reference), -1)
    for _ in range(len(reference)):
        i, j = np.unravel_index(np.argmin(d2), d2.shape)
        order[i] = j
        d2[i, :] = np.inf
        d2[:, j] = np.inf
    return order


def permuted(stats: SufficientStatistics, order: np.ndarray) -> SufficientStatistics:
    """The statistics with component i taken from component order[i]."""
    s2 = stats.s2 if stats.covariance_type == "tied" else stats.s2[order]
    return SufficientStatistics(
        stats.covariance_type, stats.shift, stats.s0[order], stats.s1[order], s2, stats.count
    )
