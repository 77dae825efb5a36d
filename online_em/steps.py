"""Step sizes of stepwise EM: gamma_t = t ** -alpha, t counting points.

A batch of m points gets the combined step of m single-point steps with the same statistics,
``1 - prod_i (1 - gamma_{t+i})``, so that learning one point at a time and learning in batches
follow (almost) the same path.

>>> round(point_step(100, 0.6), 6)
0.063096
>>> batch_step(100, 1, 0.6) == point_step(101, 0.6)
True
>>> round(batch_step(0, 10, 1.0), 12)  # alpha = 1 is the exact running average
1.0

"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["check_alpha", "point_step", "batch_step"]


def check_alpha(alpha: float) -> float:
    if not 0.5 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0.5, 1], got {alpha!r}")
    return alpha


def point_step(t: int, alpha: float) -> float:
    """The step for the t-th point (t >= 1)."""
    return t**-alpha


def batch_step(t: int, m: int, alpha: float) -> float:
    """The combined step for points t+1 .. t+m."""
    if m == 1:
        return point_step(t + 1, alpha)
    gammas = np.arange(t + 1, t + m + 1, dtype=np.float64) ** -alpha
    # gamma_1 = 1 makes log1p(-1) = -inf, whose exp is the exact 0 we want.
    with np.errstate(divide="ignore"):
        return float(-math.expm1(np.log1p(-gammas).sum()))
