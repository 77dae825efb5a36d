"""The step sizes: the closed form of the combined batch step against the direct sum."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from online_em.steps import SERIES_FROM, batch_step, log_survival, point_step


def direct_log_survival(a: int, b: int, alpha: float) -> float:
    gammas = np.arange(a, b + 1, dtype=np.float64) ** -alpha
    with np.errstate(divide="ignore"):
        return math.fsum(np.log1p(-gammas).tolist())


@settings(max_examples=300, deadline=None)
@given(
    t=st.one_of(st.integers(0, 2 * SERIES_FROM), st.integers(0, 10**7)),
    m=st.integers(2, 20_000),
    alpha=st.one_of(st.floats(0.5001, 1.0), st.sampled_from([0.5001, 0.6, 1.0])),
)
def test_log_survival_matches_the_direct_sum(t, m, alpha):
    direct = direct_log_survival(t + 1, t + m, alpha)
    ours = log_survival(t + 1, t + m, alpha)
    if t == 0:  # gamma_1 = 1: the product is exactly 0, the step exactly 1
        assert ours == direct == -math.inf and batch_step(t, m, alpha) == 1.0
        return
    assert abs(ours - direct) <= 1e-12 * abs(direct)
    step = -math.expm1(direct)
    assert abs(batch_step(t, m, alpha) - step) <= 1e-12 * step


def test_batch_step_is_the_product_of_point_steps_across_the_series_threshold():
    for t in (SERIES_FROM - 5, SERIES_FROM - 1, SERIES_FROM, 10**6):
        keep = math.prod(1.0 - point_step(i, 0.6) for i in range(t + 1, t + 11))
        assert math.isclose(batch_step(t, 10, 0.6), 1.0 - keep, rel_tol=1e-13)


def test_alpha_one_gives_the_running_average():
    # with gamma_i = 1/i, prod (1 - 1/i) over t+1 .. t+m telescopes to t / (t + m)
    for t, m in ((1, 5), (100, 1024), (10**6, 10**5)):
        assert math.isclose(batch_step(t, m, 1.0), m / (t + m), rel_tol=1e-13)
