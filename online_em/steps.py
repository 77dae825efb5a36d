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

__all__ = ["AVERAGE_HALFLIFE", "PRIOR_FLOOR", "RECENCY_ALPHA", "average_share", "average_shares", "batch_step", "check_alpha",
           "component_step", "component_steps", "forgetting_step", "log_survival", "point_step",
           "prior_weights", "weight_step"]

# The E-step's prior weight of a component is its recent share of the points (the recency mass,
# on the global clock), but at least this fraction of its weight (its share of all points).
PRIOR_FLOOR = 0.01
# The decay of the global step the recency masses are blended with (faster than a component's
# own clock: measured on the tutorial in its own order, a newborn then claims its region within
# a few hundred points; recency at 0.8 let the old component take the new process's points).
RECENCY_ALPHA = 0.6


# With a half-life h, the Polyak average forgets with half-life AVERAGE_HALFLIFE * h: it still
# smooths the iterate's noise and adds an eighth of its lag on a drifting stream. (Measured, 1-D,
# h = 1,000, 3 seeds: after a jump of 6 sd the reported mean is within 1 sd after 3.5-3.6 half-lives
# at 1/4, 3.3-3.4 at 1/8, 3.1-3.3 without averaging; on a stationary stream h = 1,000 at 1/8 costs
# at most 0.0014 nats per sample of held-out log-likelihood.)
AVERAGE_HALFLIFE = 0.125
_LN2 = math.log(2.0)


def forgetting_step(taken: float, halflife: float | None) -> float:
    """The step of forgetting with a half-life of `halflife` (in the units of `taken`): the old
    statistics keep ``2 ** (-taken / halflife)`` of their weight; 0 without a half-life.

    Forgetting is a floor under each of the schedule's steps, so that with ``halflife=h`` a
    statistic weighs a point by half after h more points: the weights (`weight_step`), each
    component's moments (`component_step`, whose half-life is h times its weight, in its own
    mass), the recency masses (`point_step`, `batch_step`) and the Polyak average
    (`average_share`, AVERAGE_HALFLIFE times h). Steps compose: one step for m points is that
    of m steps of one.

    >>> forgetting_step(1000.0, 1000.0)
    0.5
    >>> whole = forgetting_step(3.0, 10.0)
    >>> abs(whole - (1 - (1 - forgetting_step(1.0, 10.0)) * (1 - forgetting_step(2.0, 10.0)))) < 1e-15
    True
    >>> forgetting_step(5.0, None)
    0.0

    """
    if halflife is None:
        return 0.0
    return -math.expm1(-_LN2 * taken / halflife)


def weight_step(count: float, m: float, halflife: float | None = None) -> float:
    """The step the masses (weights) take in a batch of m points with, after `count` points:
    the exact running average, m / (count + m), or forgetting's floor.

    >>> weight_step(99.0, 1.0)
    0.01
    >>> round(weight_step(1e6, 1.0, 1000.0), 6)
    0.000693

    """
    exact = m / (count + m)
    if halflife is None:
        return exact
    return max(exact, forgetting_step(m, halflife))


def average_share(taken: float, n_averaged: float, halflife: float | None = None) -> float:
    """The share of the iterate when the Polyak average takes it in, for `taken` points of the
    `n_averaged` it now covers (those included): their exact share of the average, or with a
    half-life, forgetting's floor (half-life AVERAGE_HALFLIFE * halflife).

    >>> average_share(16, 64)
    0.25
    >>> round(average_share(16, 1e6, 1000.0), 4)
    0.0849

    """
    exact = min(1.0, taken / n_averaged) if n_averaged > 0 else 1.0
    if halflife is None:
        return exact
    return max(exact, forgetting_step(taken, AVERAGE_HALFLIFE * halflife))


def average_shares(taken: float, covered: np.ndarray, halflife: float | None = None) -> np.ndarray:
    """`average_share` for each component, whose average covers `covered` points (those taken
    included): a component born while the average ran averages its own iterates since its birth.

    >>> average_shares(16, np.array([64, 16, 8])).tolist()
    [0.25, 1.0, 1.0]

    """
    covered = np.asarray(covered, dtype=np.float64)
    exact = np.minimum(1.0, taken / np.maximum(covered, 1e-300))
    if halflife is None:
        return exact
    return np.maximum(exact, forgetting_step(taken, AVERAGE_HALFLIFE * halflife))


def check_alpha(alpha: float) -> float:
    if not 0.5 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0.5, 1], got {alpha!r}")
    return alpha


def component_step(mass: float, taken: float, alpha: float, memory: float | None = None) -> float:
    """The step of a component of `mass` that takes in `taken` more (a point's responsibility,
    or a batch's summed responsibilities): ``1 - exp(F(mass) - F(mass + taken))``; with a
    `memory` (the model's half-life times the component's weight), at least
    ``forgetting_step(taken, memory)``."""
    if taken <= 0.0:
        return 0.0
    if alpha == 1.0:
        step = taken / (mass + taken)
    else:
        e = 1.0 - alpha
        step = -math.expm1((mass**e - (mass + taken) ** e) / e)
    if memory is None:
        return step
    floor = -math.expm1(-_LN2 * taken / memory) if memory > 0.0 else 1.0
    return floor if floor > step else step


# Up to this many components `component_steps` maps `component_step` over plain floats: numpy's
# dozen calls on arrays of a few values cost about 12 us, the floats 0.3 us a component.
SCALAR_COMPONENTS = 16


def component_steps(mass: np.ndarray, taken: np.ndarray, alpha: float,
                    memory: np.ndarray | None = None) -> np.ndarray:
    """`component_step` for arrays of components (the batch path).

    >>> component_steps(np.array([100.0, 0.0]), np.array([3.0, 0.0]), 0.6).tolist() == [
    ...     component_step(100.0, 3.0, 0.6), 0.0]
    True

    """
    mass = np.asarray(mass, dtype=np.float64)
    if mass.size <= SCALAR_COMPONENTS:
        memories = [None] * mass.size if memory is None else np.asarray(memory, dtype=np.float64).tolist()
        return np.array([component_step(n, r, alpha, h) for n, r, h in
                         zip(mass.tolist(), np.asarray(taken, dtype=np.float64).tolist(), memories)])
    after = mass + taken
    with np.errstate(divide="ignore", invalid="ignore"):
        if alpha == 1.0:
            step = np.where(after > 0.0, taken / np.where(after > 0.0, after, 1.0), 0.0)
        else:
            e = 1.0 - alpha
            step = -np.expm1((mass**e - after**e) / e)
        if memory is not None:
            floor = np.where(memory > 0.0, -np.expm1(-_LN2 * taken / np.where(memory > 0.0, memory, 1.0)), 1.0)
            step = np.maximum(step, floor)
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


def point_step(t: int, alpha: float, halflife: float | None = None) -> float:
    """The step for the t-th point (t >= 1); with a half-life, at least forgetting's."""
    step = t**-alpha
    if halflife is None:
        return step
    floor = -math.expm1(-_LN2 / halflife)
    return floor if floor > step else step


def batch_step(t: int, m: int, alpha: float, halflife: float | None = None) -> float:
    """The combined step for points t+1 .. t+m; with a half-life, at least forgetting's (for m
    points; the floor of a batch is that of its points while the decaying step is above it)."""
    if m == 1:
        return point_step(t + 1, alpha, halflife)
    step = float(-math.expm1(log_survival(t + 1, t + m, alpha)))
    return max(step, forgetting_step(m, halflife))


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
