"""Tail probabilities of log densities under a mixture, estimated from a sample of the mixture.

An anomaly score is calibrated when it is the model's own tail probability of the point's
density: the share of the mixture's mass that is denser than the point,

    score(x) = P_{y ~ model}(log p(y) > log p(x)),

so that on data the model describes, scores are uniform on [0, 1] and a threshold of 0.99 flags
1% of the points. `draw` samples a mixture from its fitted attributes (scikit-learn's shapes);
`TailTable` keeps the sorted log densities of such a sample and turns any log density into that
tail probability: by interpolation between the sample's order statistics, and beyond its least
dense points by an exponential tail fitted to them (the log density of a Gaussian falls off as
an exponential, up to a power), so that scores keep ranking points far past the sample.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = draw(np.array([1.0]), np.zeros((1, 2)), np.ones((1, 2)), "diag", 20_000, rng)
>>> log_p = -0.5 * (X ** 2).sum(axis=1) - np.log(2 * np.pi)  # the standard normal's log density
>>> table = TailTable(log_p)
>>> # In 2-D, P(|y|^2 > r^2) = exp(-r^2 / 2): the share denser than a point at radius r is 1 - that.
>>> [round(float(table.tail(-0.5 * r * r - np.log(2 * np.pi))), 2) for r in (0.5, 2.0, 3.0)]
[0.12, 0.86, 0.99]
>>> 1 - 1e-4 < float(table.tail(-0.5 * 25 - np.log(2 * np.pi))) < 1  # r = 5, past the sample: 1 - 3.7e-6
True
>>> float(table.tail(0.0)), float(table.tail(-1e6))  # denser than every sample; very far out
(0.0, 1.0)

"""

from __future__ import annotations

import numpy as np

__all__ = ["TailTable", "draw"]

# The exponential tail takes over below this share of the sample (the least dense points), and is
# fitted to at least MIN_TAIL of them.
TAIL_SHARE = 0.005
MIN_TAIL = 10


def draw(weights: np.ndarray, means: np.ndarray, covariances: np.ndarray, covariance_type: str,
         n: int, rng: np.random.Generator) -> np.ndarray:
    """n points drawn from the Gaussian mixture with these fitted attributes (shapes as
    scikit-learn's: covariances (K, D, D) full, (D, D) tied, (K, D) diag, (K,) spherical).

    >>> import numpy as np
    >>> X = draw(np.array([0.25, 0.75]), np.array([[0.0], [10.0]]), np.array([[[1.0]], [[4.0]]]),
    ...          "full", 40_000, np.random.default_rng(1))
    >>> round(float((X > 5).mean()), 2), round(float(X[X > 5].std()), 1)
    (0.75, 2.0)

    """
    weights = np.clip(np.asarray(weights, dtype=np.float64), 0.0, None)
    means = np.asarray(means, dtype=np.float64)
    K, D = means.shape
    labels = rng.choice(K, size=n, p=weights / weights.sum())
    Z = rng.standard_normal((n, D))
    if covariance_type in ("full", "tied"):
        factors = _cholesky(np.asarray(covariances, dtype=np.float64))
        if covariance_type == "tied":
            return means[labels] + Z @ factors.T
        return means[labels] + np.einsum("nij,nj->ni", factors[labels], Z)
    spread = np.sqrt(np.asarray(covariances, dtype=np.float64))
    if covariance_type == "spherical":
        spread = spread[:, None]
    return means[labels] + Z * spread[labels]


def _cholesky(covariances: np.ndarray) -> np.ndarray:
    """Lower factors L with L Lᵀ = each covariance; from the eigen-decomposition (negative
    eigenvalues of a nearly singular matrix clipped to 0) when a Cholesky factorisation fails."""
    try:
        return np.linalg.cholesky(covariances)
    except np.linalg.LinAlgError:
        values, vectors = np.linalg.eigh(covariances)
        return vectors * np.sqrt(np.clip(values, 0.0, None))[..., None, :]


class TailTable:
    """The tail probability P(L > l) of a log density l, from a sample of L (log densities of
    points drawn from the model).

    Between the sample's order statistics the distribution function is interpolated linearly
    (the i-th smallest of n at (i - 1/2) / n). Below the least dense `TAIL_SHARE` of the sample,
    where order statistics are too few to interpolate, the lower tail is exponential,
    P(L < l) = p_u exp(-(u - l) / beta), continuous at the threshold u and with beta the mean
    excess of the sample's points beyond it (the maximum-likelihood fit).
    """

    def __init__(self, log_densities: np.ndarray):
        values = np.sort(np.asarray(log_densities, dtype=np.float64).ravel())
        values = values[np.isfinite(values)]
        if len(values) == 0:
            raise ValueError("a tail table needs at least one finite log density")
        n = len(values)
        self.values = values
        self.positions = (np.arange(n) + 0.5) / n
        m = min(n, max(MIN_TAIL, int(TAIL_SHARE * n)))
        self.threshold = values[m - 1]
        self.threshold_share = self.positions[m - 1]
        excess = self.threshold - values[: m - 1]
        self.beta = float(excess.mean()) if m > 1 and excess.mean() > 0 else 1.0

    def tail(self, log_density):
        """The share of the sample's distribution denser than `log_density` (a number or an
        array), in [0, 1]: near 1 for points much less dense than the model's typical point."""
        l = np.asarray(log_density, dtype=np.float64)
        below = np.interp(l, self.values, self.positions, right=1.0)
        low = l < self.threshold
        if np.any(low):
            with np.errstate(over="ignore", invalid="ignore"):
                far = self.threshold_share * np.exp((l - self.threshold) / self.beta)
            below = np.where(low, far, below)
        return np.clip(1.0 - np.nan_to_num(below, nan=0.0), 0.0, 1.0)
