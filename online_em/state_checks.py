"""Are the numbers of a decoded model state ones the model could have written?

`persistence.load` decodes a file into arrays of the right shapes and types, then calls
`check_state_numbers`, which refuses (ValueError, naming the field) what no run of the model
produces: values beyond what the model accepts, negative or all-zero masses, second moments that
no positive semi-definite covariance has (a negative variance, a moment smaller than the square
of its mean), a step counter of 0 with statistics. It is kept apart from the decoding so that new
fields of the state only add a line here.

The moments are checked with a relative tolerance (`TOLERANCE`) of the size of each component's
second moment: a state the model wrote passes although rounding may make a covariance very
slightly indefinite, which the model itself floors.

>>> import numpy as np
>>> from online_em import SufficientStatistics
>>> good = SufficientStatistics("diag", np.zeros(1), np.array([1.0, 1.0]), np.array([[0.0], [2.0]]),
...                             np.array([[1.0], [5.0]]), 1.0)
>>> check_state_numbers(stats=good, average=None, t=10, buffer=None)
>>> bad = SufficientStatistics("diag", np.zeros(1), np.array([1.0, 1.0]), np.array([[0.0], [2.0]]),
...                            np.array([[1.0], [3.0]]), 1.0)
>>> check_state_numbers(stats=bad, average=None, t=10, buffer=None)
Traceback (most recent call last):
...
ValueError: stats.s2: component 1 has a second moment smaller than the square of its mean (a negative variance)

"""

from __future__ import annotations

import numpy as np

from .stats import SufficientStatistics
from .validation import MAX_ABS_VALUE

__all__ = ["TOLERANCE", "check_state_numbers", "check_statistics"]

TOLERANCE = 1e-6


def check_state_numbers(*, stats: SufficientStatistics | None, average: SufficientStatistics | None, t: int,
                        buffer: np.ndarray | None) -> None:
    """ValueError, naming the field, for numbers that the model could not have written."""
    if buffer is not None and buffer.size:
        if (np.abs(buffer) > MAX_ABS_VALUE).any():  # NaN, a missing value, is not beyond
            raise ValueError(f"buffer: values must be within ±{MAX_ABS_VALUE:g}")
        if np.isnan(buffer).all(axis=1).any():
            raise ValueError("buffer: a row has no value (the model never buffers such a point)")
    for where, value in (("stats", stats), ("average", average)):
        if value is not None:
            check_statistics(value, where)
    if stats is not None and t < 1:
        raise ValueError(f"t: the model has statistics, so it has learned points, but t={t}")


def check_statistics(stats: SufficientStatistics, where: str) -> None:
    """ValueError if `stats` are not the statistics of some weighted points (within rounding)."""
    if not (np.abs(stats.shift) <= MAX_ABS_VALUE).all():
        raise ValueError(f"{where}.shift: values must be within ±{MAX_ABS_VALUE:g}")
    s0 = stats.s0
    if (s0 < 0).any() or not s0.sum() > 0:
        raise ValueError(f"{where}.s0: masses must be non-negative with a positive total")
    live = s0 > 0
    means = stats.s1[live] / s0[live, None]
    if not (np.abs(means + stats.shift) <= MAX_ABS_VALUE).all():
        raise ValueError(f"{where}.s1: means must be within ±{MAX_ABS_VALUE:g}")
    problem = _moment_problem(stats, live, means)
    if problem is not None:
        k, what = problem
        raise ValueError(f"{where}.s2: component {k} has {what}")


def _moment_problem(stats: SufficientStatistics, live: np.ndarray, means: np.ndarray) -> tuple[int, str] | None:
    """The first component (index, what is wrong) whose second moments no covariance matches."""
    cov_type, s2, s0 = stats.covariance_type, stats.s2, stats.s0
    index = np.flatnonzero(live)
    negative = np.argwhere((np.diagonal(s2, axis1=-2, axis2=-1) if cov_type in ("full", "tied") else s2) < 0)
    if len(negative):
        return (0 if cov_type == "tied" else int(negative[0, 0])), "a negative second moment"
    if cov_type == "tied":  # one scatter for all components: s2 sums over them
        total = s0.sum()
        scatter = s2 / total - (means.T * (s0[live] / total)) @ means
        return _indefinite(scatter[None], s2[None] / total, np.array([0]))
    moments = s2[live] / s0[live].reshape((-1,) + (1,) * (s2.ndim - 1))
    if cov_type == "full":

        return _indefinite(moments - means[:, :, None] * means[:, None, :], moments, index)
    squares = means * means if cov_type == "diag" else np.einsum("kd,kd->k", means, means)
    shortfall = squares - moments > TOLERANCE * np.maximum(moments, squares)
    if shortfall.any():
        k = int(index[np.argwhere(shortfall)[0, 0]])
        return k, "a second moment smaller than the square of its mean (a negative variance)"
    return None


def _indefinite(covariances: np.ndarray, moments: np.ndarray, index: np.ndarray) -> tuple[int, str] | None:
    """The first of the (n, D, D) `covariances` that is not symmetric positive semi-definite to
    within TOLERANCE of the size of its `moments`."""
    for covariance, moment, k in zip(covariances, moments, index.tolist()):
        scale = max(float(np.abs(np.diagonal(moment)).max()), np.finfo(float).tiny)
        if not np.allclose(covariance, covariance.T, rtol=0.0, atol=TOLERANCE * scale):
            return k, "second moments that are not symmetric"
        if np.linalg.eigvalsh(covariance).min() < -TOLERANCE * scale:
            return k, "second moments of no positive semi-definite covariance (a negative variance)"
    return None
