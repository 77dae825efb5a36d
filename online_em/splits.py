"""Splits: a component that has taken in a second cluster is split in two.

In a stream sorted by cluster, a cluster that arrives inside an existing component's reach is not
novel point by point (each point lies within the component's spread, so `online_em.novelty`
holds none back), and the component's moments, learned with a decaying step, move to it: the
old cluster and the new one end as one wide component. Point by point nothing shows it; the
points' mean does. While a slot is free the model keeps the last SPLIT_EVERY points it learned
(its window) and then tests each component old enough:

- **Undo the window** (`moments_before`): the component's moments are a blend, by the steps of the
  schedule (`online_em.steps.component_steps`), of what came before the window and of the
  window's points (weighted by their responsibilities now), so the moments before the window
  follow from those now by taking the window's part out.
- **Compare**: the window's responsibility-weighted mean against the mean before it, in the
  metric of the covariance before it: a squared distance d2 that is at least SPLIT_SHIFT (a
  shift of a standard deviation) and, times the window's effective number of points, beyond the
  chi-square quantile of D degrees of freedom at 1 - SPLIT_LEVEL (a component its points fit
  splits by chance about once in a million tests). Only a component that takes at least half
  its weight's share of the window is tested, on MIN_WINDOW_POINTS effective points or more.
- **Split** (`split`): the component goes back to its moments before the window, with its mass
  less the window's share, and a free slot takes the window's points (their mean, and their
  covariance shrunk toward the component's with D + 1 pseudo-points, as a birth's).

Like the other moves, a split is an operation on statistics (`online_em.moves`), applied to the
iterate and the Polyak average alike. Without a free slot there is no window and no test.

>>> import numpy as np
>>> from online_em.stats import SufficientStatistics
>>> shift = np.zeros(1)
>>> stats = SufficientStatistics("full", shift, np.array([1.0, 0.0]), np.array([[2.0], [0.0]]),
...                              np.array([[[5.0]], [[0.0]]]), count=1000.0)
>>> out = split(stats, 0, 1, moved=0.25, kept=(np.array([0.0]), np.array([[1.0]])),
...             born=(np.array([8.0]), np.array([[1.0]])))
>>> out.s0.tolist(), (out.s1[:, 0] / out.s0).tolist()
([0.75, 0.25], [0.0, 8.0])

"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import moves, steps
from .novelty import chi2_quantile
from .stats import MixtureParameters, SufficientStatistics

__all__ = ["MIN_WINDOW_POINTS", "SPLIT_AGE", "SPLIT_EVERY", "SPLIT_LEVEL", "SPLIT_MIN_KEPT", "SPLIT_SHIFT", "Split", "WINDOW_LIMIT", "find_split", "moments_before", "split", "split_shares"]

# The window: the points learned since the last test (while a slot is free).
SPLIT_EVERY = 128
# A batch longer than the window adds its last WINDOW_LIMIT points to it.
WINDOW_LIMIT = 4 * SPLIT_EVERY
# The least squared Mahalanobis distance of the window's mean from the component's mean before it.
SPLIT_SHIFT = 1.0
# The chance of a split, per test, of a component whose points all come from one Gaussian.
SPLIT_LEVEL = 1e-6
# Components younger than this many points are not tested (a newborn still moves to its cluster).
SPLIT_AGE = 500
# A component is tested on at least this many (effective) points of the window.
MIN_WINDOW_POINTS = SPLIT_EVERY // 4
# The moments before the window are recovered only while they keep this share of the component's
# moments: beyond, too little of the old cluster is left in them to recover it from.
SPLIT_MIN_KEPT = 0.25


@dataclasses.dataclass(frozen=True)
class Split:
    """Component `k` splits: it keeps its moments `kept` (mean and second moment about the
    shift, per unit mass), slot `new` takes `born`, and `moved` of the weight goes to `new`."""

    k: int
    new: int
    moved: float
    kept: tuple[np.ndarray, np.ndarray]
    born: tuple[np.ndarray, np.ndarray]


def find_split(stats: SufficientStatistics, params: MixtureParameters, rows: np.ndarray, eligible: np.ndarray,
               new: int, alpha: float, halflife: float | None = None) -> Split | None:
    """The split that the window `rows` (complete, in the order learned, the last one last) calls
    for, of the eligible component (a boolean mask) it moved furthest, into slot `new`; None if
    no component's window mean passes the test. `stats` are the running statistics after the
    window, `params` their parameters (for the responsibilities)."""
    if stats.covariance_type == "tied" or len(rows) == 0:
        return None
    rows = np.asarray(rows, dtype=np.float64)
    D = rows.shape[1]
    resp = params.responsibilities(rows)[0]  # (W, K)
    centred = rows - stats.shift
    threshold = chi2_quantile(D, 1.0 - SPLIT_LEVEL)
    best, best_score = None, 0.0
    for k in np.flatnonzero(eligible & (stats.s0 > 0.0)):
        r = resp[:, k]
        m = float(r.sum())
        n_eff = m * m / max(float((r * r).sum()), np.finfo(np.float64).tiny)
        # Only a component taking at least half its share of the window: one whose cluster has
        # ended still takes the tails of its neighbours' points, whose mean lies off its own (the
        # tutorial in its own order with room for 10 split 5 or 6 times a seed without this).
        if n_eff < max(2 * (D + 1), MIN_WINDOW_POINTS) or m < 0.5 * stats.s0[k] * len(rows) \
                or m >= 0.5 * stats.s0[k] * stats.count:
            continue
        before = moments_before(stats, k, centred, r, alpha, halflife)
        if before is None:
            continue
        mean, second = before
        cov = _covariance(stats.covariance_type, mean, second, D)
        if cov is None:
            continue
        window_mean = r @ centred / m
        d = window_mean - mean
        d2 = float(d @ np.linalg.solve(cov, d))
        score = n_eff * d2
        if d2 >= SPLIT_SHIFT and score > threshold and score > best_score:
            born = _born_moments(stats.covariance_type, centred, r, cov)
            best, best_score = Split(int(k), new, m / stats.count, before, born), score
    return best


def moments_before(stats: SufficientStatistics, k: int, centred: np.ndarray, r: np.ndarray, alpha: float,
                   halflife: float | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Component k's moments per unit mass (mean and second moment about the shift) before the
    window: its moments now, less each window point's part, by the steps it was learned with
    (its mass before point i, the mass now less the responsibilities from i on), over the share
    left to what came before. None when that share is under SPLIT_MIN_KEPT."""
    weight = float(stats.s0[k])
    mass_now = weight * stats.count
    after = mass_now - (np.cumsum(r[::-1])[::-1] - r)  # the mass after each window point
    before = after - r
    memory = None if halflife is None else halflife * weight
    eta = steps.component_steps(before, r, alpha, None if memory is None else np.full(len(r), memory))
    survive = np.cumprod((1.0 - eta)[::-1])[::-1]  # prod over j >= i of (1 - eta_j)
    later = np.append(survive[1:], 1.0)  # prod over j > i
    part = eta * later  # each point's weight in the moments now
    kept = float(survive[0]) if len(r) else 1.0
    if kept < SPLIT_MIN_KEPT:
        return None
    mean_now = stats.s1[k] / weight
    second_now = stats.s2[k] / weight
    mean = (mean_now - part @ centred) / kept
    second = (second_now - _second_moments(stats.covariance_type, centred, part)) / kept
    return mean, second


def _second_moments(covariance_type: str, centred: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """sum_i w_i times row i's second moment, in the shape of one component's s2."""
    if covariance_type == "full":
        return (centred.T * weights) @ centred
    if covariance_type == "diag":
        return weights @ (centred * centred)
    return float(weights @ np.einsum("nd,nd->n", centred, centred))


def _covariance(covariance_type: str, mean: np.ndarray, second, D: int) -> np.ndarray | None:
    """The full covariance from moments per unit mass; None unless positive definite."""
    if covariance_type == "full":
        cov = second - np.outer(mean, mean)
        cov = 0.5 * (cov + cov.T)
    elif covariance_type == "diag":
        cov = np.diag(second - mean * mean)
    else:
        cov = np.eye(D) * ((second - mean @ mean) / D)
    try:
        np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        return None
    return cov


def _born_moments(covariance_type: str, centred: np.ndarray, r: np.ndarray,
                  cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The newborn's moments per unit mass: as a birth's (`moves.newborn_moments`) from the
    window's points weighted by responsibility, shrunk toward `cov`, the component's before it."""
    born_mean, born_cov = moves.newborn_moments(centred, cov, r)
    return born_mean, moves.second_moment(covariance_type, born_mean, born_cov)


def split(stats: SufficientStatistics, k: int, new: int, moved: float, kept, born) -> SufficientStatistics:
    """The statistics with component k split: it keeps the moments `kept` with its weight less
    `moved`, and the inactive slot `new` takes the moments `born` with weight `moved` (each a
    mean and a second moment about the shift, per unit mass; the others are unchanged)."""
    out = stats.copy()
    weight = float(out.s0[k])
    moved = min(moved, 0.5 * weight)
    for slot, share, (mean, second) in ((k, weight - moved, kept), (new, moved, born)):
        out.s0[slot] = share
        out.s1[slot] = share * mean
        out.s2[slot] = share * second
    return out


def split_shares(shares: np.ndarray, k: int, new: int) -> np.ndarray:
    """Per-component shares (the recency masses) after component k splits into slot `new`:
    the two halve k's share (both have just been taking the recent points).

    >>> split_shares(np.array([0.6, 0.4, 0.0]), 0, 2).tolist()
    [0.3, 0.4, 0.3]

    """
    out = shares.copy()
    out[new] = out[k] = 0.5 * shares[k]
    return out
