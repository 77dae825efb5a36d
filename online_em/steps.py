"""Step sizes of stepwise EM.

Each component learns on its own clock, its mass (the responsibilities it has taken in): a share
r of a point moves its moments by ``component_step(n, r, alpha)``, about ``r * n ** -alpha``
for a component of mass n. Exactly, the step is that of a continuous clock,
``1 - exp(F(n) - F(n + r))`` with ``F(u) = u ** (1 - alpha) / (1 - alpha)`` (``log u`` when
alpha = 1, where it is the exact running average ``r / (n + r)``), so that a batch's mass M gives the
same step as the points it sums: ``component_step(n, M, alpha)`` for the whole batch is the
combination of the steps of its parts.

>>> round(component_step(100.0, 1.0, 1.0), 12) == round(1 / 101, 12)
True
>>> whole = component_step(100.0, 3.0, 0.6)
>>> parts = 1 - (1 - component_step(100.0, 1.0, 0.6)) * (1 - component_step(101.0, 2.0, 0.6))
>>> abs(whole - parts) < 1e-15
True

The global clock t (points) drives what is not a component's own: the recency masses that set
the E-step's prior weights (`prior_weights`), with `batch_step`, ``gamma_t = t ** -alpha``.

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

__all__ = ["PRIOR_FLOOR", "RECENCY_ALPHA", "batch_step", "check_alpha", "component_step", "component_steps",
           "log_survival", "point_step", "prior_weights"]

# The E-step's prior weight of a component is its recent share of the points (the recency mass,
# on the global clock), but at least this fraction of its weight (its share of all points).
PRIOR_FLOOR = 0.01
# The decay of the global step the recency masses are blended with (faster than a component's
# own clock: measured on the tutorial in its own order, a newborn then claims its region within
# a few hundred points; recency at 0.8 let the old component take the new process's points).
RECENCY_ALPHA = 0.6


def check_alpha(alpha: float) -> float:
    if not 0.5 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0.5, 1], got {alpha!r}")
    return alpha


def component_step(mass: float, taken: float, alpha: float) -> float:
    """The step of a component of `mass` that takes in `taken` more (a point's responsibility,
    or a batch's summed responsibilities): ``1 - exp(F(mass) - F(mass + taken))``."""
    if taken <= 0.0:
        return 0.0
    if alpha == 1.0:
        return taken / (mass + taken)
    e = 1.0 - alpha
    return -math.expm1((mass**e - (mass + taken) ** e) / e)


def component_steps(mass: np.ndarray, taken: np.ndarray, alpha: float) -> np.ndarray:
    """`component_step` for arrays of components (the batch path)."""
    mass = np.asarray(mass, dtype=np.float64)
    after = mass + taken
    with np.errstate(divide="ignore", invalid="ignore"):
        if alpha == 1.0:
            step = np.where(after > 0.0, taken / np.where(after > 0.0, after, 1.0), 0.0)
        else:
            e = 1.0 - alpha
            step = -np.expm1((mass**e - after**e) / e)
    return np.where(taken > 0.0, step, 0.0)


def prior_weights(recency: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The E-step's prior weights: max(recency, PRIOR_FLOOR * weight), normalised. The recency
    masses are blended with the global step (`batch_step`): a component born late claims its
    region as fast as the points arrive there, while its weight (share of all points) would take
    as long as the stream so far; the floor keeps a component whose points all came early alive.

    >>> prior_weights(np.array([0.999, 0.001]), np.array([0.5, 0.5])).round(3).tolist()
    [0.995, 0.005]

    """
    prior = np.maximum(recency, PRIOR_FLOOR * weights)
    return prior / prior.sum()


def point_step(t: int, alpha: float) -> float:
    """The step for the t-th point (t >= 1)."""
    return t**-alpha


def batch_step(t: int, m: int, alpha: float) -> float:
    """The combined step for points t+1 .. t+m."""
    if m == 1:
        return point_step(t + 1, alpha)
    return float(-math.expm1(log_survival(t + 1, t + m, alpha)))


# Below this index the terms of `log_survival` are summed one by one; from it on, in closed form.
SERIES_FROM = 64


def log_survival(a: int, b: int, alpha: float) -> float:
    """sum of log(1 - i**-alpha) for i = a .. b, in a few microseconds whatever b - a.

    The first terms (below SERIES_FROM) are summed exactly. Beyond, log(1 - g) = -sum_j g^j / j
    turns the sum into power sums sum_i i**-(j alpha), each in closed form by Euler-Maclaurin;
    the series in j stops when its terms no longer change the result. Accurate
    to about 1e-13 relative (tested against the direct sum), where summing the m terms with numpy
    costs tens of microseconds per mini-batch.

    >>> direct = sum(math.log1p(-i ** -0.6) for i in range(1001, 2025))
    >>> abs(log_survival(1001, 2024, 0.6) - direct) < 1e-13 * abs(direct)
    True

    """
    total = 0.0
    if a < SERIES_FROM:
        head = np.arange(a, min(b, SERIES_FROM - 1) + 1, dtype=np.float64) ** -alpha
        with np.errstate(divide="ignore"):  # gamma_1 = 1: log1p(-1) = -inf, whose exp is 0
            total = float(np.log1p(-head).sum())
        a = SERIES_FROM
        if b < a:
            return total
    # The powers a**-s and b**-s for s = j alpha are those for alpha to the j-th power.
    n = b - a
    log_ratio = math.log1p(n / a)
    ga, gb = a**-alpha, b**-alpha
    fa, fb = 1.0, 1.0
    ia, ib = 1.0 / a, 1.0 / b
    ia3, ib3, ia5, ib5 = ia**3, ib**3, ia**5, ib**5
    series = 0.0
    j = 1
    while True:
        s = j * alpha
        fa *= ga
        fb *= gb
        # sum of i**-s for i = a .. b by Euler-Maclaurin to the fifth derivative (f = x**-s):
        # the remainder is below 1e-12 of the sum for a >= 64.
        if s == 1.0:
            integral = log_ratio
        else:
            integral = a * fa * math.expm1((1.0 - s) * log_ratio) / (1.0 - s)
        d1 = s * (fa * ia - fb * ib)  # f'(b) - f'(a)
        d3 = s * (s + 1.0) * (s + 2.0) * (fa * ia3 - fb * ib3)
        d5 = s * (s + 1.0) * (s + 2.0) * (s + 3.0) * (s + 4.0) * (fa * ia5 - fb * ib5)
        term = (integral + 0.5 * (fa + fb) + d1 / 12.0 - d3 / 720.0 + d5 / 30240.0) / j
        series += term
        if term <= 1e-17 * series or j >= 200:
            break
        j += 1
    return total - series
