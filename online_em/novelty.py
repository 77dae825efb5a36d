"""Novel points and the birth test: when to start a new component.

Once an adaptive model is initialised, every point is tested against the active components
before it is learned: it is **novel** when its squared Mahalanobis distance to every
one of them exceeds the chi-square quantile `chi2_quantile(D, level)` (level 0.999: one point in a
thousand of a well-fitted mixture is novel by chance, at most). Novel points are held back, not
learned, so that they do not drag the existing components toward a region none of them explains.

A **birth** is due when the j most recent held points came within a span of L stream points that
chance would not explain: at least `min_birth_points(D)` points (10 + D) and
``P(Poisson(2 (1 - level) L) >= j) < BIRTH_P_VALUE`` (twice the chance rate, for slack). Held points
that wait longer than `HOLD_POINTS` stream points without a birth are learned as ordinary points
(isolated outliers never make a component).

>>> round(chi2_quantile(1, 0.999), 2), round(chi2_quantile(2, 0.999), 2), round(chi2_quantile(10, 0.999), 1)
(10.83, 13.82, 29.8)
>>> held = HeldPoints()
>>> for t in range(100, 111):
...     held.add(t, [40.0 + (t % 3)])
>>> held.due(now=111, n_features=1, level=0.999)  # 11 novel points in a row: a new component
11

"""

from __future__ import annotations

import functools
import math

import numpy as np

from . import missing

__all__ = ["BIRTH_P_VALUE", "HOLD_POINTS", "HeldPoints", "chi2_quantile", "held_out", "is_novel", "min_birth_points",
           "nearest_distances", "poisson_tail"]

BIRTH_P_VALUE = 1e-6
HOLD_POINTS = 2000
# The normal quantile of the default level, 0.999 (Wilson-Hilferty needs only this one).
_Z = {0.999: 3.090232306167813}


def nearest_distances(params, X):
    """The squared Mahalanobis distance of each row of X to its nearest active component of the
    `MixtureParameters` params (NaN for a row with a missing value: never novel)."""
    return params.mahalanobis(X)[:, params.weights > 0].min(axis=1)


def is_novel(params, X, threshold: float):
    """Which rows of X are novel: beyond `threshold` (a `chi2_quantile`) from every active
    component. The model's batch path and `online_em.dask`'s workers both ask this.

    >>> import numpy as np
    >>> from online_em.stats import MixtureParameters
    >>> params = MixtureParameters.from_covariances("diag", np.array([1.0, 0.0]), np.zeros((2, 1)), np.ones((2, 1)))
    >>> is_novel(params, np.array([[0.5], [4.0], [np.nan]]), chi2_quantile(1, 0.999)).tolist()
    [False, True, False]

    """
    return nearest_distances(params, X) > threshold


def held_out(params, X, threshold: float, limit: int | None = None):
    """The E-step of a batch whose novel rows are held back: (the summed statistics of its other
    rows, the offsets of the novel ones in X, increasing). At most `limit` rows are held (the
    first ones; later novel rows are learned). The model's batch path and `online_em.dask`'s
    workers both take their statistics so, so that they agree exactly. Complete rows are judged on
    the E-step's own densities (`MixtureParameters.held_out_statistics`, one pass); a row with a
    missing value is never novel (`is_novel`).

    >>> from online_em.stats import MixtureParameters
    >>> params = MixtureParameters.from_covariances("diag", np.array([1.0, 0.0]), np.zeros((2, 1)), np.ones((2, 1)))
    >>> stats, offsets = held_out(params, np.array([[0.5], [4.0], [np.nan]]), chi2_quantile(1, 0.999))
    >>> offsets.tolist(), stats.count
    ([1], 1.0)

    """
    X = np.asarray(X, dtype=np.float64)
    if not missing.has_missing(X):
        return params.held_out_statistics(X, threshold, limit)
    offsets = np.flatnonzero(is_novel(params, X, threshold))[:limit]
    return missing.expected_statistics(params, np.delete(X, offsets, axis=0) if len(offsets) else X), offsets


@functools.lru_cache(maxsize=64)
def chi2_quantile(n_features: int, level: float) -> float:
    """The chi-square quantile with `n_features` degrees of freedom: exact for one and two,
    else by Wilson and Hilferty's cube-root approximation (within 1% from three on)."""
    if n_features == 1:
        return _normal_quantile(0.5 + 0.5 * level) ** 2
    if n_features == 2:
        return -2.0 * math.log1p(-level)
    z = _Z.get(level)
    if z is None:
        z = _normal_quantile(level)
    k = float(n_features)
    c = 2.0 / (9.0 * k)
    return k * (1.0 - c + z * math.sqrt(c)) ** 3


def _normal_quantile(p: float) -> float:
    """The standard normal quantile, by bisection on erfc (a handful of calls per model)."""
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if 0.5 * math.erfc(-mid / math.sqrt(2.0)) < p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def min_birth_points(n_features: int) -> int:
    """The fewest held points a birth takes: enough for a rough mean and covariance."""
    return 10 + n_features


def poisson_tail(rate: float, j: int) -> float:
    """P(Poisson(rate) >= j), summed from the j-th term up (accurate in the far tail)."""
    if rate <= 0.0:
        return 0.0 if j > 0 else 1.0
    log_term = -rate + j * math.log(rate) - math.lgamma(j + 1)
    if j > rate and log_term < -740.0:  # the terms fall from the first, which underflows: nothing left
        return 0.0
    total, i = 0.0, j
    while True:
        term = math.exp(log_term)
        total += term
        i += 1
        log_term += math.log(rate) - math.log(i)
        if term < 1e-17 * total or i > j + 10_000:
            return min(1.0, total)


class HeldPoints:
    """The novel points held back: (stream position, row) pairs, oldest first."""

    def __init__(self, items: list | None = None):
        self.items: list[tuple[int, list[float]]] = [(int(t), list(row)) for t, row in items or []]

    def __len__(self) -> int:
        return len(self.items)

    def add(self, t: int, row: list[float]) -> None:
        self.items.append((t, row))

    def due(self, now: int, n_features: int, level: float) -> int:
        """How many of the most recent held points a birth should take now (0: none is due)."""
        j_min = min_birth_points(n_features)
        n = len(self.items)
        if n < j_min:
            return 0
        rate = 2.0 * (1.0 - level)
        for j in range(n, j_min - 1, -1):  # the most points that pass the test
            span = now - self.items[n - j][0]
            if poisson_tail(rate * span, j) < BIRTH_P_VALUE:
                return j
        return 0

    def rate(self, j: int, now: int) -> float:
        """Novel points per stream point at which the j most recent held points arrived: the
        highest over the spans of the most recent i of them, i from j/2 to j (a few old points
        held by chance would otherwise stretch the span of a batch's burst).

        >>> held = HeldPoints([(90, [1.0]), (95, [1.0]), (99, [1.0])])
        >>> held.rate(3, now=100)  # two of the last five points, three of the last ten
        0.4
        >>> HeldPoints([(10, [1.0])] + [(t, [1.0]) for t in range(900, 1000, 2)]).rate(51, now=1000)
        0.5

        """
        n = len(self.items)
        return max(i / max(1, now - self.items[n - i][0]) for i in range(max(1, (j + 1) // 2), j + 1))

    def take_recent(self, j: int) -> list[list[float]]:
        """Remove and return the j most recent rows."""
        rows = [row for _, row in self.items[len(self.items) - j:]]
        del self.items[len(self.items) - j:]
        return rows

    def expiring(self, now: int) -> bool:
        """Whether the oldest held point has waited more than HOLD_POINTS stream points."""
        return bool(self.items) and now - self.items[0][0] > HOLD_POINTS

    def take_expired(self, now: int) -> list[list[float]]:
        """Remove and return the rows held for more than HOLD_POINTS stream points."""
        n = 0
        while n < len(self.items) and now - self.items[n][0] > HOLD_POINTS:
            n += 1
        rows = [row for _, row in self.items[:n]]
        del self.items[:n]
        return rows

    def rows(self) -> list[list[float]]:
        return [row for _, row in self.items]

    def take(self, chosen: list[bool]) -> list[list[float]]:
        """Remove and return the rows where `chosen` (one flag per held point, oldest first)."""
        rows = [row for (_, row), c in zip(self.items, chosen) if c]
        self.items = [item for item, c in zip(self.items, chosen) if not c]
        return rows

    def take_all(self) -> list[list[float]]:
        rows = [row for _, row in self.items]
        self.items = []
        return rows
