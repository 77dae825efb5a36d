"""Structural moves on running statistics: birth, merge and prune, each an exact operation on
the statistics (`online_em.stats.SufficientStatistics`, averages over their `count` points), so
that every path (one point, mini-batches, Dask) gets them alike.

- `birth(stats, k, rows, pooled)`: the rows (points held back as novel) become component k's
  statistics, their covariance shrunk toward `pooled` with D + 1 pseudo-points; the running
  statistics now average over `count + len(rows)` points.
- `merge(stats, keep, drop)`: component `drop`'s statistics are added to `keep`'s (sums of
  statistics add up: the moment-matched Gaussian of the two), `drop` becomes inactive.
- `prune(stats, k)`: component k is removed, the others' weights renormalised (their moments
  unchanged).
- `best_reduction`: when a birth is due and no slot is free, whether merging a pair of
  components to free one costs less than leaving the would-be newborn to the components there are.

An inactive component has all-zero statistics: weight 0, never responsible, never predicted.
`merge_cost` is the criterion for a merge: the log-likelihood that one Gaussian loses against the
pair, (n_i + n_j) KL(pair || moment-matched Gaussian), estimated on fixed quasi-random points
(the same for every call, so the decision is deterministic).

>>> import numpy as np
>>> from online_em.stats import SufficientStatistics
>>> X = np.array([[0.0], [1.0], [10.0], [11.0]])
>>> resp = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
>>> stats = SufficientStatistics.from_batch(X, resp, np.zeros(1), "full").average()
>>> merged = merge(stats, 0, 1)
>>> merged.s0.tolist(), (merged.s1[0] / merged.s0[0]).tolist()  # the mean of all four points
([1.0, 0.0], [5.5])

"""

from __future__ import annotations

import functools
import math

import numpy as np

from .stats import MixtureParameters, SufficientStatistics

__all__ = ["CHECK_EVERY", "CHECK_FRACTION", "MERGE_AGE", "NEWBORN_ITERATIONS", "PRUNE_AGE", "STALE_SHARE",
           "best_merge", "best_reduction", "birth", "reducible", "born_shares", "check_spacing",
           "full_covariances", "old_enough", "pooled_covariance", "merge", "merge_cost", "merge_cost_bounds",
           "merge_costs", "merge_penalty", "merged_shares", "newborn_moments", "prune", "pruned_shares",
           "second_moment", "reshaped", "stale_component"]

# The model looks for merges and prunes every this many points learned at first, then every
# CHECK_FRACTION of the points so far (`check_spacing`),
CHECK_EVERY = 500
CHECK_FRACTION = 1 / 16
# among components at least this many points old (merges),
MERGE_AGE = 500
# and prunes a component under the weight floor once it is this many points old.
PRUNE_AGE = 1000
# Pairs whose means lie further apart than this (squared Mahalanobis distance under either
# component) are not worth the divergence estimate: one Gaussian explains them badly.
MERGE_SCREEN = 16.0

# Points per component at which `merge_cost` estimates the divergence (a fixed Sobol-like set:
# a seeded standard normal sample, drawn once).
KL_POINTS = 256
_STANDARD = np.random.default_rng(20091).standard_normal((KL_POINTS, 64))


# With forgetting, a component whose recent share of the points (its recency mass) is under
# this is stale: a birth due while no slot is free takes its place.
STALE_SHARE = 0.01


def stale_component(recency: np.ndarray, weights: np.ndarray) -> int | None:
    """The active component with the smallest recent share of the points, if that share is
    under STALE_SHARE (and another component stays): what a forgetting model lets go of when a
    new cluster needs a slot (the stream has forgotten it; a stationary model never does this).

    >>> stale_component(np.array([0.004, 0.5, 0.496]), np.array([0.2, 0.4, 0.4]))
    0
    >>> stale_component(np.array([0.2, 0.4, 0.4]), np.array([0.2, 0.4, 0.4])) is None
    True

    """
    live = np.flatnonzero(weights > 0)
    if len(live) < 2:
        return None
    shares = recency[live] / recency[live].sum()
    k = int(np.argmin(shares))
    return int(live[k]) if shares[k] < STALE_SHARE else None


def check_spacing(t: int, halflife: float | None = None) -> int:
    """Points from a merge-and-prune check at point t to the next: CHECK_EVERY, or a sixteenth
    of the stream so far once that is more (a stationary stream's structure settles; the checks'
    cost, a divergence estimate per pair of nearby components, was the largest fixed cost of a
    batch of 1,024), but no more than half a half-life when the model forgets.

    >>> check_spacing(2000), check_spacing(160_000), check_spacing(160_000, halflife=4000)
    (500, 10000, 2000)

    """
    spacing = max(CHECK_EVERY, int(t * CHECK_FRACTION))
    if halflife is not None:
        spacing = min(spacing, max(CHECK_EVERY, int(halflife / 2)))
    return spacing


def prune(stats: SufficientStatistics, k: int) -> SufficientStatistics:
    """The statistics without component k: it becomes inactive, the others keep their moments
    and share its weight in proportion to theirs."""
    out = stats.copy()
    left = 1.0 - float(out.s0[k])
    if out.covariance_type == "tied":
        within = out.s2 - _explained(out)
    out.s0[k] = 0.0
    out.s1[k] = 0.0
    if out.covariance_type != "tied":
        out.s2[k] = 0.0
    if left > 0.0:
        out.s0 /= left
        out.s1 /= left
        if out.covariance_type != "tied":
            out.s2 /= left
    if out.covariance_type == "tied":
        out.s2 = within + _explained(out)
    return out


def merge(stats: SufficientStatistics, keep: int, drop: int) -> SufficientStatistics:
    """The statistics with component `drop` merged into `keep` (`drop` becomes inactive)."""
    out = stats.copy()
    out.s0[keep] += out.s0[drop]
    out.s1[keep] += out.s1[drop]
    out.s0[drop] = 0.0
    out.s1[drop] = 0.0
    if out.covariance_type != "tied":  # a tied s2 is the total second moment: merging keeps it
        out.s2[keep] += out.s2[drop]
        out.s2[drop] = 0.0
    return out


def birth(stats: SufficientStatistics, k: int, rows: np.ndarray, pooled: np.ndarray) -> SufficientStatistics:
    """The statistics with the points `rows` (j, D) learned as a new component k (inactive
    before): their mean, and their covariance shrunk toward `pooled` (D, D) with D + 1
    pseudo-points (`pooled` in the shape of one full covariance)."""
    rows = np.asarray(rows, dtype=np.float64)
    j, D = rows.shape
    out = stats.copy()
    total = out.count + j
    share = j / total
    keep = out.count / total
    out.s0 *= keep
    out.s1 *= keep
    out.s2 = out.s2 * keep
    mean, cov = newborn_moments(rows, pooled)
    centred = rows - mean
    d = mean - out.shift
    out.s0[k] = share
    out.s1[k] = share * d
    if out.covariance_type == "tied":
        out.s2 += share * (centred.T @ centred / j + np.outer(d, d))
    else:
        out.s2[k] = share * second_moment(out.covariance_type, d, cov)
    out.count = total
    return out


def second_moment(covariance_type: str, mean: np.ndarray, cov: np.ndarray):
    """One component's second moment per unit mass about the shift, in the shape its statistics
    keep (full, diag or spherical), from its mean about the shift and its full covariance.

    >>> second_moment("diag", np.array([1.0, 2.0]), np.eye(2)).tolist()
    [2.0, 5.0]

    """
    if covariance_type == "full":
        return cov + np.outer(mean, mean)
    if covariance_type == "diag":
        return np.diag(cov) + mean * mean
    return np.trace(cov) + mean @ mean


def newborn_moments(rows: np.ndarray, pooled: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """How a new component starts from its points `rows` (j, D), weighted by `weights` (j,)
    if given: their mean, and their covariance shrunk toward `pooled` (D, D) with D + 1
    pseudo-points (a few dozen points do not make a full covariance of their own).

    >>> mean, cov = newborn_moments(np.array([[0.0], [2.0]]), np.array([[1.0]]))
    >>> mean.tolist(), cov.round(6).tolist()  # (scatter 2 + 2 pseudo-points of 1) / (2 + 2)
    ([1.0], [[1.0]])

    """
    D = rows.shape[1]
    weights = np.ones(len(rows)) if weights is None else weights
    mass = float(weights.sum())
    mean = weights @ rows / mass
    deviation = rows - mean
    scatter = (deviation.T * weights) @ deviation
    return mean, (scatter + (D + 1) * pooled) / (mass + D + 1)


# EM iterations of a newborn alone over the batch it was born in (`reshaped`).
NEWBORN_ITERATIONS = 5


def reshaped(stats: SufficientStatistics, k: int, batch: SufficientStatistics) -> SufficientStatistics:
    """The statistics with component k's mean and covariance taken from `batch` (the summed
    E-step statistics of some points, about the same shift), its mass kept: one EM step of a
    newborn alone over the batch it was born in. Born from the novel points of a batch, which
    lie beyond the other components' reach, a newborn is narrower than its cluster; a few such
    steps let it take its share of the batch's other points first (the tutorial in its own
    order, batches of 1,000: a newborn of sd 3.7 for a cluster of sd 5 grew a second newborn
    from its own tail). Tied covariances are left as they are.

    >>> import numpy as np
    >>> shift = np.zeros(1)
    >>> stats = SufficientStatistics("diag", shift, np.array([0.9, 0.1]), np.array([[0.0], [4.5]]),
    ...                              np.array([[0.9], [2.1]]), count=100.0)
    >>> batch = SufficientStatistics("diag", shift, np.array([10.0, 50.0]), np.array([[0.0], [200.0]]),
    ...                              np.array([[10.0], [850.0]]), count=60.0)
    >>> out = reshaped(stats, 1, batch)
    >>> float(out.s0[1]), float(out.s1[1, 0] / out.s0[1]), float(out.s2[1, 0] / out.s0[1])
    (0.1, 4.0, 17.0)

    """
    out = stats.copy()
    if out.covariance_type == "tied" or not batch.s0[k] > 0.0:
        return out
    scale = out.s0[k] / batch.s0[k]
    out.s1[k] = batch.s1[k] * scale
    out.s2[k] = batch.s2[k] * scale
    return out


def pruned_shares(shares: np.ndarray, k: int) -> np.ndarray:
    """Per-component shares summing to 1 (the recency masses) after `prune(stats, k)`."""
    out = shares.copy()
    out[k] = 0.0
    return out / out.sum()


def merged_shares(shares: np.ndarray, keep: int, drop: int) -> np.ndarray:
    """Per-component shares summing to 1 after `merge(stats, keep, drop)`."""
    out = shares.copy()
    out[keep] += out[drop]
    out[drop] = 0.0
    return out


def born_shares(shares: np.ndarray, k: int, share: float) -> np.ndarray:
    """Per-component shares summing to 1 after a birth in slot k that takes `share` of them."""
    out = shares * (1.0 - share)
    out[k] = share
    return out


def _explained(stats: SufficientStatistics) -> np.ndarray:
    """Tied statistics: the part of the total second moment the component means explain."""
    live = stats.s0 > 0.0
    means = stats.s1[live] / stats.s0[live, None]
    return (means.T * stats.s0[live]) @ means


def merge_penalty(covariance_type: str, n_features: int, n_points: float) -> float:
    """The log-likelihood a merge may cost: half the parameters of one component times log N
    (BIC's price of the component the merge saves)."""
    D = n_features
    per_component = {"full": D * (D + 1) // 2, "diag": D, "spherical": 1, "tied": 0}[covariance_type] + D + 1
    return 0.5 * per_component * math.log(max(n_points, 2.0))


def merge_cost(params: MixtureParameters, i: int, j: int, n_i: float, n_j: float) -> float:
    """(n_i + n_j) KL(p || q): p the two components' mixture (weights n_i, n_j), q the Gaussian
    with p's mean and covariance. Estimated on KL_POINTS fixed points drawn from each component
    (`merge_costs` for one pair)."""
    return float(merge_costs(params, np.array([[i, j]]), np.array([[n_i, n_j]], dtype=np.float64))[0])


def _moment_matched(params: MixtureParameters, pairs: np.ndarray, masses: np.ndarray):
    """For each pair (i, j) of `pairs` (P, 2) with masses (P, 2): the weights w (P, 2), the two
    means (P, 2, D) and covariances (P, 2, D, D), and the mean (P, D) and covariance (P, D, D) of
    the Gaussian q that matches the pair's mixture p."""
    D = params.n_features
    w = masses / masses.sum(axis=1, keepdims=True)
    means = params.means[pairs]
    covs = full_covariances(params, pairs.ravel()).reshape(len(pairs), 2, D, D)
    mean = np.einsum("pc,pcd->pd", w, means)
    gaps = means - mean[:, None, :]
    cov = np.einsum("pc,pcde->pde", w, covs) + np.einsum("pc,pcd,pce->pde", w, gaps, gaps)
    return w, means, covs, mean, cov


@functools.lru_cache(maxsize=64)
def _pair_indices(n: int) -> tuple[np.ndarray, np.ndarray]:
    """`np.triu_indices(n, 1)`, cached (it costs more than the rest of a check of two components)."""
    a, b = np.triu_indices(n, 1)
    a.flags.writeable = b.flags.writeable = False
    return a, b


def _pair_log_dets(params: MixtureParameters, pairs: np.ndarray, masses: np.ndarray, w: np.ndarray):
    """For each pair (P, 2) with masses (P, 2) and weights w (their shares, (P, 2)): the log determinants of the two covariances
    (P, 2) and of the moment-matched Gaussian's (P,), and which are valid (P,). With one variance
    per feature (diag, spherical, or one feature) in closed form: q's covariance is the diagonal
    sum_c w_c var_c plus w_1 w_2 g g' (g the gap of the means), whose log determinant the matrix
    determinant lemma gives; else by `np.linalg.slogdet`."""
    K, D = params.means.shape
    if params.covariance_type in ("diag", "spherical") or (params.covariance_type == "full" and D == 1):
        variances = np.broadcast_to(np.reshape(params.covariances, (K, -1)), (K, D))[pairs]  # (P, 2, D)
        pooled = np.einsum("pc,pcd->pd", w, variances)
        gap = params.means[pairs[:, 0]] - params.means[pairs[:, 1]]
        with np.errstate(divide="ignore", invalid="ignore"):
            log_det_c = np.log(variances).sum(axis=2)
            log_det_q = np.log(pooled).sum(axis=1) + np.log1p(w[:, 0] * w[:, 1] * (gap * gap / pooled).sum(axis=1))
        valid = (variances > 0).all(axis=(1, 2))
        return log_det_c, log_det_q, valid
    _, _, covs, _, cov = _moment_matched(params, pairs, masses)
    sign_c, log_det_c = np.linalg.slogdet(covs)  # (P, 2)
    sign_q, log_det_q = np.linalg.slogdet(cov)  # (P,)
    return log_det_c, log_det_q, (sign_q > 0) & (sign_c > 0).all(axis=1)


def merge_cost_bounds(params: MixtureParameters, pairs: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """A lower bound on each pair's `merge_cost`, in closed form. q matches p's first two moments,
    so KL(p || q) = H(q) - H(p); a mixture's entropy is at most its components' weighted entropy
    plus its weights' (H(p) <= H(w) + sum_c w_c H(p_c)); so
    (n_i + n_j) KL >= (n_i + n_j) (0.5 (log det q - sum_c w_c log det p_c) - H(w)).
    A pair whose bound is above the merge penalty need not be estimated: on the benchmarks'
    streams (batches of 1,024; 1-D, and D=10 diagonal) it ruled out every pair the distance screen
    let through.

    >>> from online_em.stats import MixtureParameters
    >>> params = MixtureParameters.from_covariances("full", np.array([0.5, 0.5]), np.array([[0.0], [6.0]]),
    ...                                             np.ones((2, 1, 1)), np.zeros(1))
    >>> pairs, masses = np.array([[0, 1]]), np.array([[2000.0, 2000.0]])
    >>> bool(merge_cost_bounds(params, pairs, masses)[0] <= merge_costs(params, pairs, masses)[0])
    True

    """
    w = masses / masses.sum(axis=1, keepdims=True)
    log_det_c, log_det_q, valid = _pair_log_dets(params, pairs, masses, w)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -(w * np.log(w)).sum(axis=1)
    bound = 0.5 * (log_det_q - (w * log_det_c).sum(axis=1)) - entropy
    valid &= np.isfinite(bound)
    return np.where(valid, masses.sum(axis=1) * np.maximum(bound, 0.0), 0.0)


def merge_costs(params: MixtureParameters, pairs: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """`merge_cost` of each pair (i, j) of `pairs` (P, 2), with masses (P, 2), all at once: one
    Cholesky factor and one inverse of it per Gaussian, the three log densities of each pair's
    points in one product (a pair in 10-D, alone: 550 us with a solve per density, 140 us so;
    eight pairs together about 2.5 pairs' time)."""
    D = params.n_features
    if D > _STANDARD.shape[1]:
        z = np.random.default_rng(20091).standard_normal((KL_POINTS, D))
    else:
        z = _STANDARD[:, :D]
    P = len(pairs)
    w, means, covs, mean, cov = _moment_matched(params, pairs, masses)
    chols = np.linalg.cholesky(np.concatenate([covs, cov[:, None]], axis=1))  # (P, 3, D, D): the two and q
    whiten = np.linalg.inv(chols)
    points = (means[:, :, None, :] + z @ np.swapaxes(chols[:, :2], 2, 3)).reshape(P, 1, 2 * KL_POINTS, D)
    centres = np.concatenate([means, mean[:, None]], axis=1)  # (P, 3, D)
    y = (points - centres[:, :, None, :]) @ np.swapaxes(whiten, 2, 3)  # (P, 3, 2 KL_POINTS, D), whitened
    log_det = np.log(np.diagonal(chols, axis1=2, axis2=3)).sum(axis=2)  # (P, 3)
    log_n = -0.5 * (y * y).sum(axis=3) - log_det[:, :, None] - 0.5 * D * math.log(2 * math.pi)
    log_p = np.logaddexp(np.log(w[:, :1]) + log_n[:, 0], np.log(w[:, 1:]) + log_n[:, 1])  # (P, 2 KL_POINTS)
    halves = (log_p - log_n[:, 2]).reshape(P, 2, KL_POINTS).mean(axis=2)  # (P, 2)
    divergence = (w * halves).sum(axis=1)
    return masses.sum(axis=1) * np.maximum(divergence, 0.0)


def best_merge(params: MixtureParameters, masses: np.ndarray, born: np.ndarray, t: int) -> tuple[int, int] | None:
    """The pair (keep, drop) of active components, both at least MERGE_AGE points old, whose
    `merge_cost` is lowest and below `merge_penalty`; the heavier keeps its index. None if no
    pair qualifies. Only pairs near each other (MERGE_SCREEN) whose `merge_cost_bounds` are below
    the penalty are estimated."""
    live = np.flatnonzero((params.weights > 0) & old_enough(born, t))
    if len(live) < 2:
        return None
    penalty = merge_penalty(params.covariance_type, params.n_features, float(masses.sum()))
    d2 = params.mean_distances(live)  # row: mean of i, column: component j
    a, b = _pair_indices(len(live))
    near = np.minimum(d2[a, b], d2[b, a]) <= MERGE_SCREEN
    if not near.any():
        return None
    pairs = np.stack([live[a[near]], live[b[near]]], axis=1)
    pairs = pairs[merge_cost_bounds(params, pairs, masses[pairs]) < penalty]  # the others cannot merge
    if not len(pairs):
        return None
    costs = merge_costs(params, pairs, masses[pairs])
    best = int(np.argmin(costs))  # the first of equal costs, in the order of the pairs
    if not costs[best] < penalty:
        return None
    i, j = (int(k) for k in pairs[best])
    return (i, j) if masses[i] >= masses[j] else (j, i)


def pooled_covariance(params: MixtureParameters) -> np.ndarray:
    """The active components' covariances averaged by weight, (D, D): what a newborn's
    covariance is shrunk toward (`birth`)."""
    live = np.flatnonzero(params.weights > 0)
    weights = params.weights[live] / params.weights[live].sum()
    return np.einsum("k,kde->de", weights, full_covariances(params, live))


def old_enough(born: np.ndarray, t: int) -> np.ndarray:
    """Which components are old enough to merge at point t: active for MERGE_AGE points or more
    (born: when each became active, -1 while inactive)."""
    return (born >= 0) & (t - born >= MERGE_AGE)


def reducible(born: np.ndarray, t: int) -> bool:
    """Whether `best_reduction` has a component old enough to merge at point t (`old_enough`).

    >>> reducible(np.array([0, 900, -1]), 1000), reducible(np.array([600, 900, -1]), 1000)
    (True, False)

    """
    return bool(old_enough(born, t).any())


# `best_reduction` estimates the pairs' costs this many at a time, cheapest lower bound first.
REDUCTION_CHUNK = 8


def best_reduction(params: MixtureParameters, masses: np.ndarray, born: np.ndarray, t: int,
                   rows: np.ndarray, rate: float) -> tuple[int, int] | None:
    """With every slot in use when a birth is due from the novel `rows` (j, D), arriving at `rate`
    per stream point: the merge that takes the active components and the would-be newborn back to
    as many components, the one with the lowest `merge_cost`. The newborn (as `birth` would start
    it) counts as the mass it would reach at that rate over the stream so far (rate times the
    stream's points); components younger than MERGE_AGE points do not merge.

    Returns (keep, drop), two components whose merge frees the slot `drop` for the newborn, or
    (k, K), K the number of slots, when the newborn is best merged into component k: no new
    component is worth a merge, and the rows are for the components to learn. None when no
    component is old enough. No penalty applies: the number of components stays.

    >>> from online_em.stats import MixtureParameters
    >>> params = MixtureParameters.from_covariances(  # two components 8 sd apart, far from 40
    ...     "full", np.array([0.5, 0.5]), np.array([[0.0], [8.0]]), np.ones((2, 1, 1)))
    >>> rows = np.linspace(38.0, 42.0, 20)[:, None]
    >>> best_reduction(params, np.array([5000.0, 5000.0]), np.array([0, 0]), 10_000, rows, 1.0)  # a cluster as big: merge 0 and 1
    (0, 1)
    >>> best_reduction(params, np.array([5000.0, 5000.0]), np.array([0, 0]), 10_000, rows, 0.001)  # 10 points: for component 1
    (1, 2)

    """
    rows = np.asarray(rows, dtype=np.float64)
    K = len(params.weights)
    live = np.flatnonzero(params.weights > 0)
    old = old_enough(born[live], t)
    if not old.any():  # (`reducible`)
        return None
    mean, cov = newborn_moments(rows, pooled_covariance(params))
    mass = np.append(masses[live], rate * float(masses[live].sum()))
    extended = MixtureParameters.from_covariances(
        "full", mass / mass.sum(), np.vstack([params.means[live], mean]),
        np.concatenate([full_covariances(params, live), cov[None]]), params.shift)
    slots = np.append(live, K)  # the newborn as slot K
    eligible = np.flatnonzero(np.append(old, True))
    a, b = _pair_indices(len(eligible))
    pairs = np.stack([eligible[a], eligible[b]], axis=1)
    pairs = pairs[slots[pairs[:, 0]] != K]  # (the newborn is last: it is never first)
    bounds = merge_cost_bounds(extended, pairs, mass[pairs])
    order = np.argsort(bounds, kind="stable")
    best, best_cost = None, math.inf
    for start in range(0, len(order), REDUCTION_CHUNK):
        chunk = order[start:start + REDUCTION_CHUNK]
        if bounds[chunk[0]] >= best_cost:
            break
        costs = merge_costs(extended, pairs[chunk], mass[pairs[chunk]])
        i = int(np.argmin(costs))
        if costs[i] < best_cost:
            best, best_cost = pairs[chunk[i]], float(costs[i])
    if best is None:
        return None
    i, j = (int(slots[c]) for c in best)
    if j == K:
        return i, K
    return (i, j) if masses[i] >= masses[j] else (j, i)


def full_covariances(params: MixtureParameters, components) -> np.ndarray:
    """The covariances of these components as full (n, D, D) matrices, whatever the type."""
    K, D = params.means.shape
    cov = params.covariances
    if params.covariance_type == "full":
        return cov[list(components)]
    if params.covariance_type == "tied":
        return np.broadcast_to(cov, (len(components), D, D))
    if params.covariance_type == "diag":
        return np.stack([np.diag(cov[k]) for k in components])
    return np.stack([cov[k] * np.eye(D) for k in components])
