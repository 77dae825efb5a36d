"""The covariance prior: pseudo-points that keep covariances well-conditioned on few points.

A conjugate (normal-inverse-Wishart-like) prior on each component's covariance, written as
sufficient statistics: `count` pseudo-points per component, placed at the component's mean with
covariance `scale` (a share of the data's covariance). Merged into a component's statistics they turn the M-step into the
MAP estimate

    Sigma_k = (S_k + count * scale) / (n_k + count),

where S_k is the scatter of the n_k points about the component's mean; the means are unchanged
and the weights become (n_k + count) / (n + K count), a Dirichlet prior's smoothing. Because the
prior is statistics, every path that moves statistics (batch EM on the warm-up buffer, the
stepwise updates that follow, Dask tasks) carries it the same way: the initial fit takes it in,
and the step schedule then treats it as the earliest data of the stream.

>>> import numpy as np
>>> from online_em.stats import SufficientStatistics
>>> X = np.array([[0.0], [0.0], [0.0]])  # three identical points: no scatter of their own
>>> stats = SufficientStatistics.from_batch(X, np.ones((3, 1)), np.zeros(1), "full")
>>> prior = CovariancePrior(scale=np.array([[2.0]]), count=1.0)
>>> prior.merged_into(stats).to_parameters(0.0).covariances.ravel().round(12).tolist()  # (0 + 1 * 2) / (3 + 1)
[0.5]

"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import missing
from .stats import SufficientStatistics, second_moment_shape

__all__ = ["DEFAULT_COUNT", "MAX_COUNT", "CovariancePrior", "auto_count"]

# The prior's covariance is the data's variance per feature times this: components are narrower
# than the whole data set, and a prior wider than the components would inflate small ones.
SCALE_SHARE = 0.5
# The default strength, 'auto': MAX_COUNT pseudo-points per component while the buffer holds no
# more points than the mixture has covariance parameters, falling with the square of their ratio
# beyond (`auto_count`). Measured on iris, wine, breast_cancer, digits and ImageSegments (3 seeds,
# against GaussianMixture's single start; 10 seeds for the first three):
# - 0.1 for every buffer kept the ARI within 0.03 of scikit-learn's on all five (0 lets wine's
#   single starts collapse, 1 or more shrinks breast_cancer's correlated components), but held
#   ImageSegments' nearly discrete features near a variance of count x scale / n_k (2e-4 in
#   standardised units, scikit-learn's 1e-6): held-out ll 31.04 against a target of 31.17;
# - a fixed 0.03 / 0.01 / 0.001 gives ImageSegments 31.27 / 31.67 / 32.45 (ARI 0.44 / 0.44 /
#   0.42, target 0.39) with wine, breast_cancer and iris unchanged, but digits (2,080 covariance
#   parameters a component, 144 points) falls to ARI 0.39 / 0.40 / 0.29 (target 0.41);
# - 'auto' gives digits (14.5 parameters a point) and wine and breast_cancer (about 2) the full
#   0.1, ImageSegments (0.65) 0.042 and iris (0.25) 0.006: all five within their targets.
MAX_COUNT = 0.1
DEFAULT_COUNT = "auto"


def auto_count(n_points: int, n_components: int, n_features: int, covariance_type: str) -> float:
    """The default prior strength for a buffer of `n_points`: MAX_COUNT pseudo-points per
    component while the mixture has at least as many covariance parameters as the buffer has
    points, and MAX_COUNT x (parameters / points)**2 beyond. A prior keeps an under-determined
    covariance well-conditioned; where every parameter has many points it would only hold
    nearly constant features away from their small variances.

    >>> auto_count(100, 3, 13, "full")  # 3 x 91 covariance parameters for 100 points: full strength
    0.1
    >>> round(auto_count(1848, 7, 18, "full"), 4)  # 7 x 171 for 1,848 points
    0.042
    >>> auto_count(12000, 2, 1, "full") < 1e-6  # plenty of points: (almost) no prior
    True

    """
    triangle = n_features * (n_features + 1) // 2
    parameters = {"full": n_components * triangle, "tied": triangle, "diag": n_components * n_features,
                  "spherical": n_components}[covariance_type]
    ratio = parameters / max(1, n_points)
    return MAX_COUNT * min(1.0, ratio) ** 2


@dataclasses.dataclass(frozen=True)
class CovariancePrior:
    """`count` pseudo-points per component with covariance `scale`, shape (D, D)."""

    scale: np.ndarray
    count: float

    @classmethod
    def from_data(cls, X: np.ndarray, count: float) -> CovariancePrior:
        """The prior for data like the rows of X: SCALE_SHARE of their covariance (a constant
        feature gets the average variance of the others, or 1). With missing values (NaN), the
        variances of the values observed, without correlations."""
        X = np.asarray(X, dtype=np.float64)
        if missing.has_missing(X):
            cov = np.diag(missing.column_moments(X)[1] * SCALE_SHARE)
        else:
            centred = X - X.mean(axis=0)
            cov = centred.T @ centred * (SCALE_SHARE / max(1, len(X)))
        var = np.diag(cov).copy()
        positive = var[var > 0]
        fallback = float(positive.mean()) * SCALE_SHARE if positive.size else 1.0
        cov[np.diag_indices_from(cov)] = np.where(var > 0, var, fallback)
        return cls(cov, float(count))

    def pseudo_statistics(self, stats: SufficientStatistics, count: float | None = None) -> SufficientStatistics:
        """The prior's statistics at the means of `stats`, about the same shift: `count`
        pseudo-points per component (default: the prior's own count), none for an inactive
        component (one without mass), unless none has mass."""
        K, D = stats.s1.shape
        live = stats.s0 > 0.0
        nu = (self.count if count is None else count) * (live if live.any() else np.ones(K))
        centred = stats.s1 / np.maximum(stats.s0, np.finfo(np.float64).tiny)[:, None]  # mean - shift
        s0 = nu.astype(np.float64)
        s1 = nu[:, None] * centred
        cov_type = stats.covariance_type
        if cov_type == "full":
            s2 = nu[:, None, None] * (np.einsum("kd,ke->kde", centred, centred) + self.scale)
        elif cov_type == "tied":
            s2 = (centred.T * nu) @ centred + nu.sum() * self.scale
        elif cov_type == "diag":
            s2 = nu[:, None] * (centred * centred + np.diag(self.scale))
        else:
            s2 = nu * (np.einsum("kd,kd->k", centred, centred) + np.trace(self.scale))
        assert s2.shape == second_moment_shape(cov_type, K, D)
        return SufficientStatistics(cov_type, stats.shift, s0, s1, s2, 0.0)

    def merged_into(self, stats: SufficientStatistics, count: float | None = None) -> SufficientStatistics:
        """`stats` with the prior's pseudo-points added (their count of real points unchanged)."""
        return stats.merge(self.pseudo_statistics(stats, count))
