"""Features that come and go: a feature first seen while the model learns becomes a new dimension.

A point may lack some of the model's features (they are missing values: see `online_em.missing`)
and bring features the model has not seen. At inference those are ignored; while learning, each
becomes a new dimension of the model, appended after the known ones, as if it had been missing
from every earlier point:

* during the warm-up, the buffered rows get a missing value (NaN) in the new column, and the
  batch fit of the buffer learns it from the points that have it;
* once the running statistics exist, every component gets the new feature with its mean at the
  value first seen, the average variance of that component's known features, and no correlation
  with them (`grown_statistics`); the points that follow, with the feature or without it, learn
  its moments as they learn the others'. All components agree on the new feature at first, so it
  sways no responsibility until the data separate them.

>>> import numpy as np
>>> from online_em.stats import SufficientStatistics
>>> stats = SufficientStatistics("diag", np.zeros(1), np.array([0.5, 0.5]),
...     np.array([[0.0], [5.0]]), np.array([[1.0], [53.0]]), 1.0)  # variances 2 and 6
>>> grown = grown_statistics(stats, [7.0])
>>> params = grown.to_parameters(0.0)
>>> params.means.round(9).tolist(), params.covariances.round(9).tolist()
([[0.0, 7.0], [10.0, 7.0]], [[2.0, 2.0], [6.0, 6.0]])

"""

from __future__ import annotations

import typing

import numpy as np

from .stats import SufficientStatistics

__all__ = ["grown_rows", "grown_statistics", "sorted_features"]


def sorted_features(keys: typing.Iterable) -> list:
    """The model's order of features: sorted, or for keys of mixed types by type name, then text.

    >>> sorted_features(["b", "a"]), sorted_features([2, "x", 1])
    (['a', 'b'], [1, 2, 'x'])

    """
    keys = list(keys)
    try:
        return sorted(keys)
    except TypeError:  # mixed types: order by type name, then text
        return sorted(keys, key=lambda k: (type(k).__name__, str(k)))


def grown_rows(rows: list[list[float]], n_new: int, order: typing.Sequence[int]) -> list[list[float]]:
    """Buffered rows with `n_new` missing values (NaN) appended to each, then their columns
    put in `order` (column j of the result is column order[j] of the appended rows).

    >>> grown_rows([[1.0, 3.0], [2.0, 4.0]], 1, [0, 2, 1])
    [[1.0, nan, 3.0], [2.0, nan, 4.0]]

    """
    gaps = [float("nan")] * n_new
    return [[(row + gaps)[j] for j in order] for row in rows]


def grown_statistics(
    stats: SufficientStatistics, values: typing.Sequence[float], order: typing.Sequence[int] | None = None
) -> SufficientStatistics:
    """`stats` (sums or averages) with one new feature per entry of `values`, appended, then the
    features put in `order` (as in `grown_rows`): the new ones in every component at their
    value, with the average variance of the component's known features (of the shared
    covariance, for ``tied``), uncorrelated with the others. The new features' shift is their
    value, so their first moments are 0."""
    params = stats.to_parameters(0.0)
    spread = params.variances().mean(axis=1)  # (K,): each component's average variance
    K, D = stats.s1.shape
    n = len(values)
    s0 = stats.s0
    shift = np.concatenate([stats.shift, np.asarray(values, dtype=np.float64)])
    s1 = np.concatenate([stats.s1, np.zeros((K, n))], axis=1)
    cov_type = stats.covariance_type
    new = np.arange(D, D + n)
    if cov_type == "full":
        s2 = np.zeros((K, D + n, D + n))
        s2[:, :D, :D] = stats.s2
        s2[:, new, new] = (s0 * spread)[:, None]
    elif cov_type == "tied":
        s2 = np.zeros((D + n, D + n))
        s2[:D, :D] = stats.s2
        s2[new, new] = s0.sum() * spread[0]
    elif cov_type == "diag":
        s2 = np.concatenate([stats.s2, np.repeat((s0 * spread)[:, None], n, axis=1)], axis=1)
    else:  # one variance a component, kept: n more coordinates of that variance
        s2 = stats.s2 + n * s0 * spread
    if order is not None:
        o = np.asarray(order)
        shift, s1 = shift[o], s1[:, o]
        s2 = {"full": lambda: s2[:, o[:, None], o], "tied": lambda: s2[o[:, None], o],
              "diag": lambda: s2[:, o], "spherical": lambda: s2}[cov_type]()
    return SufficientStatistics(cov_type, shift, s0.copy(), s1, s2, stats.count)
