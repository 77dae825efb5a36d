"""One-point online EM in plain Python: one feature, diagonal and spherical covariances, and full
covariances in a few dimensions.

With a handful of floats, numpy's per-call overhead (about a microsecond a call, and a
stepwise-EM update makes dozens) costs far more than the arithmetic. These engines hold the same
running statistics as `SufficientStatistics` in Python lists and perform the same update as the
vectorised path, so the two agree to rounding. The model hands its state to an engine for runs of
`learn_one`/`predict_one` and takes it back, as arrays, before anything that needs them. Engines:
`ScalarEngine` (one feature; `PairEngine` when there are also just two components),
`DiagonalEngine` (diag and spherical, up to MAX_DIAGONAL_FEATURES features) and `FullEngine`
(full, up to MAX_FULL_FEATURES features and under ARRAY_ENGINE_MIN_ENTRIES entries K D^2). The last
two run straight-line code generated for the number of features, and `FullEngine` updates its
precisions by rank one between exact factorisations (see FIRST_ORDER_LIMIT); for more entries or
features, `online_em.array_engine` does the same with numpy over the components. The model hands
an engine its active components only.

>>> import numpy as np
>>> from online_em.stats import SufficientStatistics
>>> stats = SufficientStatistics("diag", np.zeros(1), np.array([0.5, 0.5]),
...     np.array([[0.0], [5.0]]), np.array([[1.0], [51.0]]), 1.0)
>>> engine = make_engine(stats, stats.s0, None, None, 0, 0, t=100, alpha=0.6, reg_covar=1e-6, average_after=None)
>>> type(engine).__name__
'PairEngine'
>>> engine.learn_predict([0.1]), engine.predict([9.0])
(0, 1)

"""

from __future__ import annotations

import functools
import math

import numpy as np

from .steps import PRIOR_FLOOR, RECENCY_ALPHA, average_share, component_step, point_step, weight_step
from .stats import (
    TINY_MASS,
    COLLAPSE_WEIGHT,
    RELATIVE_COVARIANCE_FLOOR,
    SufficientStatistics,
    average_every,
    factored,
)

__all__ = ["NOVEL", "supports", "make_engine", "Engine", "ScalarEngine", "PairEngine", "DiagonalEngine", "FullEngine"]

# Full covariances: FullEngine (plain Python) while a point's work, K D^2 entries, is small, the
# array engine (numpy over the components) from ARRAY_ENGINE_MIN_ENTRIES entries on, and always
# beyond MAX_FULL_FEATURES features (FullEngine's generated code grows as D^3 / 6 in its exact
# refactorisation). learn_one + predict_one, us a point, FullEngine against the array engine (the
# least of 5 runs of each block of 100 points, 2,000 points after a warm-up of 1,000), D and K:
# 5, 3: 125 / 183; 8, 3: 157 / 192; 16, 2: 140 / 149; 8, 5: 212 / 213; 12, 5: 213 / 225;
# 16, 3: 158 / 155; 12, 7: 206 / 211; 16, 5: 275 / 242; 14, 7: 263 / 217; 16, 7: 320 / 196.
MAX_FULL_FEATURES = 16
ARRAY_ENGINE_MIN_ENTRIES = 1200
# Beyond this many features the diagonal engines' generated code gets long and numpy's per-call
# overhead no longer dominates: learn_one + predict_one with K=3 took 101 us against numpy's 147 at
# 64 features, 167 against 157 at 100.
MAX_DIAGONAL_FEATURES = 64

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_TINY = 2.2250738585072014e-308  # smallest normal float64: the floor of a variance


# What `learn_predict` returns, having changed nothing, for a point beyond its `limit`: a point
# whose squared Mahalanobis distance to every active component of the iterate exceeds it (the
# novelty test of `online_em.novelty`, made on the E-step the update computes anyway).
NOVEL = None


class NotLearnable(ArithmeticError):
    """An engine's responsibilities for a point are not finite (an input so extreme that plain
    floats overflow where the arrays' log-sum-exp does not): raised before the engine's state
    changes, so that the model learns that point with arrays instead."""


def supports(covariance_type: str, n_features: int) -> bool:
    """Whether a one-point engine handles this model: diagonal structures in at most
    MAX_DIAGONAL_FEATURES dimensions, or full covariances (in plain Python up to
    MAX_FULL_FEATURES and small K, else with numpy over the components: `online_em.array_engine`)."""
    if covariance_type in ("diag", "spherical"):
        return n_features <= MAX_DIAGONAL_FEATURES
    return covariance_type == "full"


def make_engine(stats, recency, average, average_weights, n_averaged, pending, t, alpha, reg_covar, average_after,
                halflife=None, average_from=None):
    """The engine for the model's structure, holding a copy of its state."""
    if stats.n_features == 1:
        engine_class = PairEngine if stats.n_components == 2 else ScalarEngine
    elif stats.covariance_type == "full" and (stats.n_features > MAX_FULL_FEATURES
                                               or stats.n_components * stats.n_features ** 2 >= ARRAY_ENGINE_MIN_ENTRIES):
        from .array_engine import FullArrayEngine  # (it builds on this module's Engine)

        engine_class = FullArrayEngine
    elif stats.covariance_type == "full":
        engine_class = FullEngine
    else:
        engine_class = DiagonalEngine
    return engine_class(stats, recency, average, average_weights, n_averaged, pending, t, alpha, reg_covar, average_after,
                        halflife, average_from)


class Engine:
    """What the engines share: the state they take from the model and give back, and averaging."""

    __slots__ = (
        "covariance_type", "shift", "s0", "s1", "s2", "count", "rho", "avg", "avg_weights", "n_averaged", "pending", "t",
        "alpha", "reg_covar", "average_after", "halflife", "iterate", "reported", "avg_from", "due", "every",
    )

    def __init__(self, stats, recency, average, average_weights, n_averaged, pending, t, alpha, reg_covar, average_after,
                 halflife=None, average_from=None):
        self.covariance_type = stats.covariance_type
        self.shift = stats.shift.tolist()
        self.s0, self.s1, self.s2 = self._lists(stats)
        self.count = float(stats.count)  # the mass the running statistics average over
        self.rho = list(recency)  # the recency masses: the E-step's prior weights
        self.avg = None if average is None else list(self._lists(average))
        self.avg_weights = None if average_weights is None else list(average_weights)
        self.n_averaged = n_averaged
        # where each component's average began on the average's clock (0: with the average; later
        # for one born since): read-only here, the model moves it at births and splits
        self.avg_from = [0] * len(stats.s0) if average_from is None else [int(v) for v in average_from]
        self.pending = pending
        self.t = t
        self.alpha = alpha
        self.reg_covar = reg_covar
        self.average_after = average_after
        # The step count at which `_average` next has work: the learning loops test only this
        # (points counted since the average last took in the iterate: every - (due - t)).
        self.every = average_every(len(self.shift))
        if average_after is None:
            self.due = math.inf
        elif self.avg is None:
            self.due = average_after
        else:
            self.due = t + self.every - pending
        self.halflife = halflife
        self.iterate = self._reweighted(self._parameters(self.s0, self.s1, self.s2), self._prior_masses(), self.s0)
        self.reported = None  # the average's parameters, derived when first read (`_shown_average`)

    def _lists(self, stats):
        raise NotImplementedError

    def _arrays(self, s0, s1, s2) -> SufficientStatistics:
        raise NotImplementedError

    def _parameters(self, s0, s1, s2):
        """The iterate's parameters, in whatever form the engine's E-step reads."""
        raise NotImplementedError

    def _reported_parameters(self, s0, s1, s2):
        """The parameters of the Polyak average (only ever used for labels and densities)."""
        return self._parameters(s0, s1, s2)

    def _prior_masses(self):
        """The E-step's prior masses, `steps.prior_weights` unnormalised: each component's recency
        mass, at least PRIOR_FLOOR of its mass (the learning loops inline it per component)."""
        return [r if r > PRIOR_FLOOR * a else PRIOR_FLOOR * a for r, a in zip(self.rho, self.s0)]

    def _shown_average(self):
        """The reported parameters of the Polyak average (None before it begins), derived when
        first read after the average last changed: a stream that only learns never pays for them."""
        if self.avg is None:
            return None
        self.reported = self._reported()
        return self.reported

    def _iterate_reported(self):
        """What is reported before the Polyak average begins: the iterate with the exact weights
        (its constants carry the E-step's prior weights), as the model's."""
        return self._reweighted(self.iterate, self.s0, self._prior_masses())

    def _reported(self):
        """The reported parameters: the Polyak average's moments, with the weights the iterate
        had when the average last took it in (exact shares of all points), as the model's."""
        return self._reweighted(self._reported_parameters(*self.avg), self.avg_weights, self.avg[0])

    @staticmethod
    def _shifts(weights, masses):
        """log(weight) - log(mass): what turns the constants derived from masses into weights'."""
        log = math.log
        return [log(w) - log(b + TINY_MASS) if w > 0.0 else -math.inf for w, b in zip(weights, masses)]

    def _reweighted(self, parameters, weights, masses):
        """`parameters` derived from `masses`, with `weights` instead (they need not sum to 1)."""
        components, _ = parameters
        shifts = self._shifts(weights, masses)
        return [(c + shift, *rest) for (c, *rest), shift in zip(components, shifts)], sum(weights) + len(shifts) * TINY_MASS

    def export(self):
        """The state as arrays: (iterate, recency masses, average, the average's weights, number
        averaged, pending, step counter)."""
        average = None if self.avg is None else self._arrays(*self.avg)
        weights = None if self.avg_weights is None else np.array(self.avg_weights)
        pending = self.pending if self.avg is None or self.due == math.inf else self.every - (self.due - self.t)
        return (self._arrays(*self._statistics()), np.array(self.rho), average, weights, self.n_averaged,
                pending, self.t)

    def _statistics(self):
        """The running statistics (s0, s1, s2) as they stand (an engine that defers part of an
        update adds it here, without changing its own state)."""
        return self.s0, self.s1, self.s2

    def _average(self) -> None:
        """Polyak averaging of the statistics, every `average_every` points (as the numpy path):
        the learning loops call it when the step count reaches `due`."""
        if self.t < self.due:
            return
        if self.avg is None:
            self.avg = [list(self.s0), self._copy(self.s1), self._copy(self.s2)]
            self.n_averaged, self.pending = 1, 0
            self.avg_from = [0] * len(self.s0)
        else:
            taken, halflife = self.every - (self.due - self.t), self.halflife
            covered = self.n_averaged = self.n_averaged + taken
            self.pending = 0
            self._blend_average([average_share(taken, covered - start, halflife) for start in self.avg_from])
        self.due = self.t + self.every
        total = sum(self.s0)
        self.avg_weights = [a / total for a in self.s0]
        self.reported = None  # (derived again when next read)

    @staticmethod
    def _copy(values):
        return [list(v) if isinstance(v, list) else v for v in values]



class ScalarEngine(Engine):
    """One feature: every statistic is a float, every component three floats."""

    __slots__ = ()

    def _lists(self, stats):
        return stats.s0.tolist(), stats.s1.ravel().tolist(), stats.s2.ravel().tolist()

    def _arrays(self, s0, s1, s2):
        K = len(s0)
        shape = {"full": (K, 1, 1), "diag": (K, 1), "spherical": (K,)}[self.covariance_type]
        return SufficientStatistics(
            self.covariance_type,
            np.array(self.shift),
            np.array(s0),
            np.array(s1).reshape(K, 1),
            np.array(s2).reshape(shape),
            self.count,
        )

    def _parameters(self, s0, s1, s2):
        """(constants, centred means, half precisions, total mass), with
        log w_k N(x) = constant_k - half_precision_k * (x - mean_k)^2 - log(total mass)."""
        reg = self.reg_covar
        log = math.log
        constants, means, half_precisions = [], [], []
        total = 0.0
        for m0, first, second in zip(s0, s1, s2):
            mass = m0 + TINY_MASS
            total += mass
            mean = first / mass
            var = second / mass - mean * mean
            var = (var if var > 0.0 else 0.0) + reg
            if var < _TINY:
                var = _TINY
            constants.append((log(mass) if m0 > 0.0 else -math.inf) - 0.5 * log(var) - _HALF_LOG_2PI)
            means.append(mean)
            half_precisions.append(0.5 / var)
        return constants, means, half_precisions, total

    def _reweighted(self, parameters, weights, masses):
        constants, means, half_precisions, _ = parameters
        constants = [c + shift for c, shift in zip(constants, self._shifts(weights, masses))]
        return constants, means, half_precisions, sum(weights) + len(constants) * TINY_MASS

    def weighted_log_probs(self, row):
        constants, means, half_precisions, total = self.reported or self._shown_average() or self._iterate_reported()
        log_total = math.log(total)
        xc = row[0] - self.shift[0]
        return [c - log_total - h * (xc - m) * (xc - m) for c, m, h in zip(constants, means, half_precisions)]

    def predict(self, row) -> int:
        constants, means, half_precisions, _ = self.reported or self._shown_average() or self._iterate_reported()
        xc = row[0] - self.shift[0]
        best, label = -math.inf, 0
        for k, (c, m, h) in enumerate(zip(constants, means, half_precisions)):
            v = c - h * (xc - m) * (xc - m)
            if v > best:  # the first of the largest, as list.index(max(...))
                best, label = v, k
        return label

    def learn_predict(self, row, predict: bool = True, limit: float | None = None) -> int | None:
        """The label under the reported parameters (0 unless `predict`), then one update;
        -1 - label if a component collapsed (the model then repairs it); NOVEL, without an
        update, if the row is farther than `limit` from every active component."""
        xc = row[0] - self.shift[0]
        constants, means, half_precisions, _ = self.iterate
        wlp = []
        top = -math.inf
        near = math.inf  # the nearest active component's half squared distance
        for c, m, h, a in zip(constants, means, half_precisions, self.s0):
            q = h * (xc - m) * (xc - m)
            v = c - q
            wlp.append(v)
            if v > top:
                top = v
            if q < near and a > 0.0:
                near = q
        if limit is not None and 2.0 * near > limit:
            return NOVEL
        if not predict:
            label = 0
        else:
            constants, means, half_precisions, _ = self.reported or self._shown_average() or self._iterate_reported()
            guess = [c - h * (xc - m) * (xc - m) for c, m, h in zip(constants, means, half_precisions)]
            label = guess.index(max(guess))
        exp, log = math.exp, math.log
        weights = [exp(v - top) for v in wlp]
        norm = 1.0 / sum(weights)
        if norm != norm:
            raise NotLearnable
        self.t += 1
        before = self.count
        self.count = before + 1.0
        alpha = self.alpha
        halflife = self.halflife
        gamma = point_step(self.t, RECENCY_ALPHA, halflife)
        share = weight_step(before, 1.0, halflife)
        stay = 1.0 - gamma
        rho = self.rho
        s0, s1, s2 = self.s0, self.s1, self.s2
        sq = xc * xc
        reg = self.reg_covar
        # The update and the parameters it gives, in one loop over the components: the body of
        # _parameters is inlined here, the hot loop of one-point learning (tests hold them equal).
        constants, means, half_precisions = [], [], []
        total = 0.0
        lightest = math.inf
        for k, weight in enumerate(weights):
            r = weight * norm
            a_old = s0[k]
            mass = a_old * before
            a = s0[k] = a_old + share * (r - a_old)
            eta = component_step(mass, r, alpha, None if halflife is None else halflife * a)
            keep = (1.0 - eta) * a / a_old if a_old > 0.0 else 0.0
            take = eta * a
            b = s1[k] = s1[k] * keep + take * xc
            c = s2[k] = s2[k] * keep + take * sq
            if 0.0 < a < lightest:
                lightest = a
            p = rho[k] = rho[k] * stay + gamma * r
            if p < PRIOR_FLOOR * a:
                p = PRIOR_FLOOR * a
            total += p
            mass = a + TINY_MASS
            mean = b / mass
            var = c / mass - mean * mean
            var = (var if var > 0.0 else 0.0) + reg
            if var < _TINY:
                var = _TINY
            constants.append((log(p) if a > 0.0 else -math.inf) - 0.5 * log(var) - _HALF_LOG_2PI)
            means.append(mean)
            half_precisions.append(0.5 / var)
        self.iterate = (constants, means, half_precisions, total)
        if self.t >= self.due:
            self._average()
        return label if lightest >= COLLAPSE_WEIGHT * total else -1 - label

    def _blend_average(self, shares):
        a0, a1, a2 = self.avg
        for k, share in enumerate(shares):
            a0[k] += share * (self.s0[k] - a0[k])
            a1[k] += share * (self.s1[k] - a1[k])
            a2[k] += share * (self.s2[k] - a2[k])


class PairEngine(ScalarEngine):
    """One feature and two components, the commonest labeler: `ScalarEngine.learn_predict` with
    its loops over the components unrolled (the tests hold the two equal)."""

    __slots__ = ()

    def predict(self, row) -> int:
        xc = row[0] - self.shift[0]
        (c0, c1), (m0, m1), (h0, h1), _ = self.reported or self._shown_average() or self._iterate_reported()
        return 0 if c0 - h0 * (xc - m0) * (xc - m0) >= c1 - h1 * (xc - m1) * (xc - m1) else 1

    def learn_predict(self, row, predict: bool = True, limit: float | None = None) -> int | None:
        xc = row[0] - self.shift[0]
        (c0, c1), (m0, m1), (h0, h1), _ = self.iterate
        q0 = h0 * (xc - m0) * (xc - m0)
        q1 = h1 * (xc - m1) * (xc - m1)
        if limit is not None:
            a0, a1 = self.s0
            if 2.0 * min(q0 if a0 > 0.0 else math.inf, q1 if a1 > 0.0 else math.inf) > limit:
                return NOVEL
        w0 = c0 - q0
        w1 = c1 - q1
        if not predict:
            label = 0
        else:
            (c0, c1), (m0, m1), (h0, h1), _ = self.reported or self._shown_average() or self._iterate_reported()
            label = 0 if c0 - h0 * (xc - m0) * (xc - m0) >= c1 - h1 * (xc - m1) * (xc - m1) else 1
        exp, log = math.exp, math.log
        # Responsibilities by log-sum-exp: the larger weight is exp(0) = 1.
        if w0 >= w1:
            e0, e1 = 1.0, exp(w1 - w0)
        else:
            e0, e1 = exp(w0 - w1), 1.0
        norm = 1.0 / (e0 + e1)
        if norm != norm:
            raise NotLearnable
        t = self.t = self.t + 1
        before = self.count
        self.count = before + 1.0
        alpha = self.alpha
        halflife = self.halflife
        gamma = point_step(t, RECENCY_ALPHA, halflife)
        share = weight_step(before, 1.0, halflife)
        stay = 1.0 - gamma
        rho = self.rho
        s0, s1, s2 = self.s0, self.s1, self.s2
        sq = xc * xc
        reg = self.reg_covar
        r = e0 * norm
        p0 = rho[0] = rho[0] * stay + gamma * r
        a_old = s0[0]
        mass = a_old * before
        a0 = s0[0] = a_old + share * (r - a_old)
        eta = component_step(mass, r, alpha, None if halflife is None else halflife * a0)
        keep = (1.0 - eta) * a0 / a_old if a_old > 0.0 else 0.0
        take = eta * a0
        b = s1[0] = s1[0] * keep + take * xc
        c = s2[0] = s2[0] * keep + take * sq
        mass0 = a0 + TINY_MASS
        mean0 = b / mass0
        var = c / mass0 - mean0 * mean0
        var0 = (var if var > 0.0 else 0.0) + reg
        if var0 < _TINY:
            var0 = _TINY
        r = e1 * norm
        p1 = rho[1] = rho[1] * stay + gamma * r
        a_old = s0[1]
        mass = a_old * before
        a1 = s0[1] = a_old + share * (r - a_old)
        eta = component_step(mass, r, alpha, None if halflife is None else halflife * a1)
        keep = (1.0 - eta) * a1 / a_old if a_old > 0.0 else 0.0
        take = eta * a1
        b = s1[1] = s1[1] * keep + take * xc
        c = s2[1] = s2[1] * keep + take * sq
        mass1 = a1 + TINY_MASS
        mean1 = b / mass1
        var = c / mass1 - mean1 * mean1
        var1 = (var if var > 0.0 else 0.0) + reg
        if var1 < _TINY:
            var1 = _TINY
        if p0 < PRIOR_FLOOR * a0:
            p0 = PRIOR_FLOOR * a0
        if p1 < PRIOR_FLOOR * a1:
            p1 = PRIOR_FLOOR * a1
        total = p0 + p1
        self.iterate = (
            [(log(p0) if a0 > 0.0 else -math.inf) - 0.5 * log(var0) - _HALF_LOG_2PI,
             (log(p1) if a1 > 0.0 else -math.inf) - 0.5 * log(var1) - _HALF_LOG_2PI],
            [mean0, mean1],
            [0.5 / var0, 0.5 / var1],
            total,
        )
        if t >= self.due:
            self._average()
        lightest = a0 if 0.0 < a0 < a1 or a1 <= 0.0 else a1
        return label if not 0.0 < lightest < COLLAPSE_WEIGHT * total else -1 - label



# ------------------------------------------------------------------ several features
#
# With several features the engines run code generated for the number of features: arithmetic
# on local variables, straight line, runs about three times faster than the same work through
# map/zip/sum over lists of five (measured on CPython 3.11), and the one-point update is nearly
# all such work. The generated source of a specialised class is its `_source` attribute.

# The iterate's full covariances are not refactored at every point. An update changes a
# component's covariance S (before its regulariser) by rank one: S' = (1 - rho) S + rho (1 - rho) d d^T,
# rho the point's share of the component's new mass and d = x - old mean. The regularised
# covariance is S + r I (r = reg_covar plus the relative floor), and its update adds about rho r I,
# which is not rank one. So the engine tracks T = S + r I - eps I, whose precision P = T^-1 (kept
# as g * P_hat) a Sherman-Morrison step updates in O(D^2), and eps, the isotropic part left out;
# the log det and the Mahalanobis distance are corrected for eps to first order:
#     log det(T + eps I) ~ log det T + eps tr P,   d^T (T + eps I)^-1 d ~ d^T P d - eps |P d|^2,
# each with an error below about (eps lambda_max(P))^2 times (1 + d^T P d). The component is
# refactored exactly from the statistics (an O(D^3) Cholesky factorisation) when
# - |eps| tr(P), which bounds eps lambda_max(P), reaches FIRST_ORDER_LIMIT (so the error above
#   stays under FIRST_ORDER_LIMIT^2 (1 + d^T P d));
# - the rounding the updates have added, each about 2^-52 times the condition number (bounded by
#   tr(P) tr(S + r I)), could reach DRIFT_LIMIT relative;
# - an update would cancel (1 + rho d^T P d reaches 2: it removes half of P along d or more; or it
#   is not positive, where rounding has left P indefinite along d) or
#   shrink T by half or more (1 - rho at most 0.5), or the scale g (which only grows) exceeds
#   SCALE_LIMIT.
# On overlapping clusters (5-D, 3 components) that is one update in 20 to 30. DRIFT_LIMIT is a
# bound on the sum of worst cases: on a 64-D stream (K = 10, 3,000 points past 2,000) the tracked
# log densities stayed within 1.5e-11 relative of an exact factorisation's with 1e-9, and 9.5%
# of the component updates were refactorisations with 1e-10 (1.8e-12), 2.2% with 1e-9.
# FIRST_ORDER_LIMIT bounds the first-order error by its square, 1e-10 (1 + d^T P d), the order of
# DRIFT_LIMIT: with 1e-6 (1e-12) the regulariser's part eps called for most refactorisations in
# many dimensions (64-D, K = 10, 5,000 points of a fitted model: 1,068 exact refreshes, 116 with
# 1e-5; the tracked log densities within 1.7e-13 and 4.8e-13 relative of exact ones; 18-D
# 6.2e-14 and 2.2e-12, 5-D 4.1e-12 with either).
FIRST_ORDER_LIMIT = 1e-5
DRIFT_LIMIT = 1e-9
SCALE_LIMIT = 1e8
DRIFT_BUDGET = DRIFT_LIMIT / 2.220446049250313e-16


@functools.lru_cache(maxsize=None)
def _lower_triangle(D: int) -> tuple[np.ndarray, np.ndarray]:
    """np.tril_indices(D), computed once per D (it costs some 50 us, twice per engine start)."""
    rows, cols = np.tril_indices(D)
    rows.flags.writeable = cols.flags.writeable = False
    return rows, cols


def _names(prefix: str, count: int) -> str:
    """'x0, x1, x2' for ('x', 3): local variables of the generated code."""
    return ", ".join(f"{prefix}{i}" for i in range(count))


def _lower(i: int, j: int) -> int:
    """Index of entry (i, j) of a symmetric matrix in its lower triangle, stored row by row."""
    i, j = max(i, j), min(i, j)
    return i * (i + 1) // 2 + j


def _indent(lines: list[str], depth: int = 1) -> list[str]:
    return ["    " * depth + line for line in lines]


def _centre(D: int) -> list[str]:
    """Read the row into locals x0.. about the shift."""
    return [f"{_names('x', D)}, = row", f"{_names('o', D)}, = self.shift"] + [
        f"x{i} -= o{i}" for i in range(D)
    ]


def _argmax(form, components: str) -> list[str]:
    """label = the first component with the largest weighted log density."""
    unpack, lines, value = form
    return [
        "best = -inf",
        "label = k = 0",
        f"for {unpack} in {components}:",
        *_indent(lines),
        f"    v = {value}",
        "    if v > best:",
        "        best = v",
        "        label = k",
        "    k += 1",
    ]


def _evaluate_all(form, parameters: str) -> list[str]:
    unpack, lines, value = form
    return [
        f"components, total = {parameters}",
        f"for {unpack} in components:",
        *_indent(lines),
        f"    values.append({value})",
    ]


def _inference_source(D: int, iterate_form, reported_form) -> str:
    """`predict` and `weighted_log_probs`, under the reported parameters if any, else the iterate's."""
    lines = ["def predict(self, row):", *_indent(_centre(D)), "    reported = self.reported or self._shown_average()"]
    if reported_form is iterate_form:
        lines += _indent(_argmax(iterate_form, "(reported or self._iterate_reported())[0]"))
    else:
        lines += ["    if reported is None:", *_indent(_argmax(iterate_form, "self._iterate_reported()[0]"), 2)]
        lines += ["    else:", *_indent(_argmax(reported_form, "reported[0]"), 2)]
    lines += ["    return label", "", "def weighted_log_probs(self, row):", *_indent(_centre(D))]
    lines += ["    reported = self.reported or self._shown_average()", "    values = []", "    if reported is None:"]
    lines += _indent(_evaluate_all(iterate_form, "self._iterate_reported()"), 2)
    lines += ["    else:", *_indent(_evaluate_all(reported_form, "reported"), 2)]
    lines += ["    log_total = log(total)", "    return [v - log_total for v in values]", ""]
    return "\n".join(lines)


def _learn_source(D: int, iterate_form, reported_form, update: list[str], products: list[str],
                  keep_for_update: str = "", setup: tuple[str, ...] = ()) -> str:
    """`learn_predict`: the E-step under the iterate (the locals `keep_for_update` names kept in
    `saved` for the update), the label, then `update` for each component k, which must define
    `component` and add the component's mass to `total`; `setup` lines run before the loop."""
    unpack, lines, value = iterate_form
    kept = [f"    saved.append(({keep_for_update}))"] if keep_for_update else []
    body = [
        "def learn_predict(self, row, predict=True, limit=None):",
        *_indent(_centre(D)),
        "    wlp = []",
        *(["    saved = []"] if keep_for_update else []),
        f"    for {unpack} in self.iterate[0]:",
        *_indent(lines, 2),
        f"        wlp.append({value})",
        *_indent(kept),
        "    if limit is not None and self._beyond(wlp, limit):",
        "        return NOVEL",
        "    top = max(wlp)",
        "    if not predict:",
        "        label = 0",
        "    elif (reported := self.reported or self._shown_average()) is None:",
        *_indent(_argmax(iterate_form, "self._iterate_reported()[0]"), 2),
        "    else:",
        *_indent(_argmax(reported_form, "reported[0]"), 2),
        "    weights = [exp(v - top) for v in wlp]",
        "    norm = 1.0 / sum(weights)",
        "    if norm != norm:",
        "        raise NotLearnable",
        "    t = self.t = self.t + 1",
        "    before = self.count",
        "    count = self.count = before + 1.0",
        "    alpha = self.alpha",
        "    halflife = self.halflife",
        "    gamma = point_step(t, RECENCY_ALPHA, halflife)",
        "    share = weight_step(before, 1.0, halflife)",
        "    stay = 1.0 - gamma",
        "    recency = self.rho",
        *_indent(products),
        "    s0, s1, s2 = self.s0, self.s1, self.s2",
        "    reg = self.reg_covar",
        *_indent(list(setup)),
        "    updated = []",
        "    lightest = inf",
        "    total = 0.0",
        "    for k, weight in enumerate(weights):",
        "        r = weight * norm",
        "        a_old = s0[k]",
        "        mass = a_old * before",
        "        a = s0[k] = a_old + share * (r - a_old)",
        "        eta = component_step(mass, r, alpha, None if halflife is None else halflife * a)",
        "        keep = (1.0 - eta) * a / a_old if a_old > 0.0 else 0.0",
        "        take = eta * a",
        "        p = recency[k] = recency[k] * stay + gamma * r",
        "        if p < PRIOR_FLOOR * a:",
        "            p = PRIOR_FLOOR * a",
        "        lw = log(p) if a > 0.0 else -inf",
        *_indent(update, 2),
        "        updated.append(component)",
        "    self.iterate = (updated, total)",
        "    if t >= self.due:",
        "        self._average()",
        "    return label if lightest >= COLLAPSE_WEIGHT * total else -1 - label",
        "",
    ]
    return "\n".join(body)


def _blend_lines(D: int, n_second: int) -> list[str]:
    """s1, s2 <- keep s + take (x, products) for component k, in place (a is its new mass)."""
    second = _names("e", n_second)
    return [
        f"{_names('b', D)}, = s1[k]",
        *[f"b{i} = b{i} * keep + take * x{i}" for i in range(D)],
        f"s1[k] = [{_names('b', D)}]",
        f"{second}, = s2[k]",
        *[f"e{i} = e{i} * keep + take * q{i}" for i in range(n_second)],
        f"s2[k] = [{second}]",
        "if 0.0 < a < lightest:",
        "    lightest = a",
    ]


_NAMESPACE = {
    "log": math.log,
    "exp": math.exp,
    "sqrt": math.sqrt,
    "inf": math.inf,
    "_TINY": _TINY,
    "TINY_MASS": TINY_MASS,
    "NOVEL": NOVEL,
    "COLLAPSE_WEIGHT": COLLAPSE_WEIGHT,
    "component_step": component_step,
    "point_step": point_step,
    "weight_step": weight_step,
    "RECENCY_ALPHA": RECENCY_ALPHA,
    "NotLearnable": NotLearnable,
    "PRIOR_FLOOR": PRIOR_FLOOR,
    "FLOOR": RELATIVE_COVARIANCE_FLOOR,
    "FIRST_ORDER_LIMIT": FIRST_ORDER_LIMIT,
    "SCALE_LIMIT": SCALE_LIMIT,
    "DRIFT_BUDGET": DRIFT_BUDGET,
}


def _revive(generic, key):
    """An empty engine of `generic` specialised for `key` (unpickling, copying)."""
    return object.__new__(generic._specialised(key))


class _MultiEngine(Engine):
    """Several features. The generic class is specialised, on construction, into a subclass
    whose hot methods (`learn_predict`, `predict`, `weighted_log_probs` and what derives
    parameters) are generated for the number of features; `_source` shows them."""

    __slots__ = ()
    _source: str | None = None
    _key: tuple = ()
    _generic: type | None = None

    def _beyond(self, wlp, limit: float) -> bool:
        """Whether the row whose weighted log densities under the iterate are `wlp` lies beyond
        `limit` (a squared Mahalanobis distance) from every active component: the test of
        `online_em.novelty`, on the E-step `learn_predict` has made."""
        near = math.inf
        for component, w, a in zip(self.iterate[0], wlp, self.s0):
            if a > 0.0:
                q = component[0] - w
                if q < near:
                    near = q
        return 2.0 * near > limit

    def __new__(cls, stats, *args):
        # The generic class builds (once) and instantiates the class specialised for the shape.
        special = cls if cls._source is not None else cls._specialised(cls._shape(stats, *args))
        return object.__new__(special)

    @classmethod
    def _shape(cls, stats, *args) -> tuple:
        """What the generated code depends on."""
        raise NotImplementedError

    @classmethod
    def _generate(cls, *key) -> str:
        """The source of the specialised class's methods, for the shape `key`."""
        raise NotImplementedError

    @classmethod
    def _specialised(cls, key: tuple) -> type:
        cache = cls.__dict__.get("_cache")
        if cache is None:
            cache = cls._cache = {}
        special = cache.get(key)
        if special is None:
            source = cls._generate(*key)
            namespace = dict(_NAMESPACE)
            # Generated from the shape alone (integers and flags), never from data.
            exec(compile(source, f"<online_em.fastpath: {cls.__name__}{key}>", "exec"), namespace)  # noqa: S102
            methods = {name: value for name, value in namespace.items() if name not in _NAMESPACE}
            methods.pop("__builtins__", None)
            special = type(
                f"{cls.__name__}{key[0]}",
                (cls,),
                {"__slots__": (), "_source": source, "_key": key, "_generic": cls, **methods},
            )
            cache[key] = special
        return special

    def __reduce__(self):
        """Pickled as the generic class, the key and every slot (the generated class is rebuilt)."""
        slots = {}
        for klass in type(self).__mro__:
            for name in getattr(klass, "__slots__", ()):
                if hasattr(self, name):
                    slots[name] = getattr(self, name)
        return _revive, (self._generic, self._key), (None, slots)

    def _blend_average(self, shares):
        a0, a1, a2 = self.avg
        for k, share in enumerate(shares):
            a0[k] += share * (self.s0[k] - a0[k])
            a1[k] = [a + share * (s - a) for a, s in zip(a1[k], self.s1[k])]
            a2[k] = [a + share * (s - a) for a, s in zip(a2[k], self.s2[k])]


class DiagonalEngine(_MultiEngine):
    """Diagonal or spherical covariances. A component is the tuple (constant, means, half
    precisions), with log w_k N(x) = constant - sum half_precision (x - mean)^2 - log(total mass)
    (one half precision if spherical), recomputed from the statistics at every update.
    A spherical component's second moment is kept as a one-element list."""

    __slots__ = ()

    @classmethod
    def _shape(cls, stats, recency, average, average_weights, n_averaged, pending, t, alpha, reg_covar, *rest):
        # The variance floor at the smallest normal float matters only when reg_covar is below it.
        return (stats.n_features, stats.covariance_type == "spherical", reg_covar < _TINY)

    def _lists(self, stats):
        s2 = stats.s2[:, None] if stats.covariance_type == "spherical" else stats.s2
        return stats.s0.tolist(), stats.s1.tolist(), s2.tolist()

    def _arrays(self, s0, s1, s2):
        s2 = np.array(s2, dtype=np.float64)
        if self.covariance_type == "spherical":
            s2 = s2[:, 0]
        return SufficientStatistics(
            self.covariance_type, np.array(self.shift), np.array(s0), np.array(s1), s2, self.count
        )

    @classmethod
    def _generate(cls, D: int, spherical: bool, floor: bool) -> str:
        n_second = 1 if spherical else D
        form = _diagonal_form(D, spherical)
        derive = _diagonal_component(D, spherical, floor)
        if spherical:
            products = ["q0 = " + " + ".join(f"x{i} * x{i}" for i in range(D))]
        else:
            products = [f"q{i} = x{i} * x{i}" for i in range(D)]
        update = [*_blend_lines(D, n_second), *derive, "total += p"]
        parameters = [
            "def _parameters(self, s0, s1, s2):",
            "    reg = self.reg_covar",
            "    components = []",
            "    total = 0.0",
            f"    for a, ({_names('b', D)},), ({_names('e', n_second)},) in zip(s0, s1, s2):",
            "        lw = log(a + TINY_MASS) if a > 0.0 else -inf",
            *_indent(derive, 2),
            "        components.append(component)",
            "        total += mass",
            "    return components, total",
            "",
        ]
        return "\n".join(
            [_learn_source(D, form, form, update, products), _inference_source(D, form, form), *parameters]
        )


def _diagonal_form(D: int, spherical: bool):
    """How the generated E-step reads a diagonal component: (unpacking, lines, value)."""
    lines = [f"d{i} = x{i} - m{i}" for i in range(D)]
    if spherical:
        return (
            f"c, {_names('m', D)}, h",
            lines,
            "c - h * (" + " + ".join(f"d{i} * d{i}" for i in range(D)) + ")",
        )
    return (
        f"c, {_names('m', D)}, {_names('h', D)}",
        lines,
        "c - (" + " + ".join(f"h{i} * d{i} * d{i}" for i in range(D)) + ")",
    )


def _diagonal_component(D: int, spherical: bool, floor: bool) -> list[str]:
    """Lines deriving `component` (and `mass`) from a component's statistics a, b0.., e0..,
    as `SufficientStatistics.to_parameters` does: variances clipped at 0, plus reg."""
    constant = repr(D * _HALF_LOG_2PI)
    lines = ["mass = a + TINY_MASS", *[f"m{i} = b{i} / mass" for i in range(D)]]
    means = _names("m", D)
    if spherical:
        lines += [
            "v = (e0 / mass - (" + " + ".join(f"m{i} * m{i}" for i in range(D)) + f")) / {D}",
            "v = (v if v > 0.0 else 0.0) + reg",
            *(["v = v if v >= _TINY else _TINY"] if floor else []),
            f"component = (lw - {0.5 * D!r} * log(v) - {constant}, {means}, 0.5 / v)",
        ]
        return lines
    lines += [f"v{i} = e{i} / mass - m{i} * m{i}" for i in range(D)]
    lines += [f"v{i} = (v{i} if v{i} > 0.0 else 0.0) + reg" for i in range(D)]
    if floor:
        lines += [f"v{i} = v{i} if v{i} >= _TINY else _TINY" for i in range(D)]
    # One log of the product of the variances, unless it leaves the normal range.
    lines += [
        "product = " + " * ".join(f"v{i}" for i in range(D)),
        "log_det = log(product) if _TINY <= product < inf else "
        + " + ".join(f"log(v{i})" for i in range(D)),
        f"component = (lw - 0.5 * log_det - {constant}, {means}, "
        + ", ".join(f"0.5 / v{i}" for i in range(D))
        + ")",
    ]
    return lines


class FullEngine(_MultiEngine):
    """Full covariances in a few dimensions; lower triangles as flat lists.

    The iterate's component is (constant, means, P_hat (lower triangle), g, eps g^2) and its
    entry of `track` [log det T, tr P_hat, eps, r, drift] (see FIRST_ORDER_LIMIT): the
    log density is constant - (g d^T P_hat d - eps g^2 |P_hat d|^2) / 2, d = x - mean, with the
    constant corrected by eps tr(P) to first order. The reported component (the Polyak average,
    used only for labels and densities) is (constant, means, W) with W = L^-1 for the Cholesky
    factor L, exact."""

    __slots__ = ("track",)

    @classmethod
    def _shape(cls, stats, *args):
        return (stats.n_features,)

    def _lists(self, stats):
        rows, cols = _lower_triangle(stats.n_features)
        return stats.s0.tolist(), stats.s1.tolist(), stats.s2[:, rows, cols].tolist()

    def _arrays(self, s0, s1, s2):
        D = len(self.shift)
        rows, cols = _lower_triangle(D)
        lower = np.array(s2, dtype=np.float64)
        full = np.zeros((len(s0), D, D))
        full[:, rows, cols] = lower
        full[:, cols, rows] = lower
        return SufficientStatistics(
            self.covariance_type, np.array(self.shift), np.array(s0), np.array(s1), full, self.count
        )

    def _factors(self, a, first, second):
        """(log det, total regulariser r, means, W, P = W^T W, tr P, repaired) of a component,
        exactly; through the vectorised path's repair if its covariance is not positive definite."""
        exact = self._exact(a, first, second)
        if exact is not None:
            return (*exact, False)
        D = len(first)
        rows, cols = _lower_triangle(D)
        mass = a + TINY_MASS
        mean = np.array(first) / mass
        lower = np.array(second) / mass - mean[rows] * mean[cols]
        cov = np.zeros((D, D))
        cov[rows, cols] = lower
        cov[cols, rows] = lower
        cov[np.arange(D), np.arange(D)] += self.reg_covar
        # the vectorised path's floor and repair
        _, inverse, log_det_w, largest, _ = factored(cov[None], self.reg_covar)
        inverse = inverse[0]
        precision = inverse.T @ inverse
        return (
            -2.0 * float(log_det_w[0]),
            self.reg_covar + RELATIVE_COVARIANCE_FLOOR * float(largest[0, 0]),
            mean.tolist(),
            inverse[rows, cols].tolist(),
            precision[rows, cols].tolist(),
            float(np.trace(precision)),
            True,
        )

    def _constant(self, log_weight, log_det) -> float:
        return log_weight - 0.5 * log_det - len(self.shift) * _HALF_LOG_2PI

    def _refresh(self, k: int, a, first, second, log_weight=None):
        """Component k of the iterate, exactly, its tracking reset (the constant from the
        log weight, by default that of the mass a)."""
        if log_weight is None:
            log_weight = math.log(a + TINY_MASS) if a > 0.0 else -math.inf
        log_det, r, means, _, precision, trace, repaired = self._factors(a, first, second)
        # A repaired factor is not S + r I: refreshed again at the next update (infinite drift).
        self.track[k] = [log_det, trace, 0.0, r, math.inf if repaired else 0.0]
        return (self._constant(log_weight, log_det), *means, *precision, 1.0, 0.0)

    def _parameters(self, s0, s1, s2):
        self.track = [None] * len(s0)
        components = [self._refresh(k, *stats) for k, stats in enumerate(zip(s0, s1, s2))]
        return components, sum(s0) + len(s0) * TINY_MASS

    def _reported_parameters(self, s0, s1, s2):
        components = []
        for a, first, second in zip(s0, s1, s2):
            log_det, _, means, factor, _, _, _ = self._factors(a, first, second)
            components.append((self._constant(math.log(a + TINY_MASS) if a > 0.0 else -math.inf, log_det),
                               *means, *factor))
        return components, sum(s0) + len(s0) * TINY_MASS

    @classmethod
    def _generate(cls, D: int) -> str:
        T = D * (D + 1) // 2
        means, dev, whitened = _names("m", D), _names("d", D), _names("v", D)
        d_lines = [f"d{i} = x{i} - m{i}" for i in range(D)]
        iterate_form = (
            f"c, {means}, {_names('p', T)}, g, ge2",
            d_lines
            + [
                f"v{i} = " + " + ".join(f"p{_lower(i, j)} * d{j}" for j in range(D))
                for i in range(D)
            ]
            + [
                "dv = " + " + ".join(f"d{i} * v{i}" for i in range(D)),
                "vv = " + " + ".join(f"v{i} * v{i}" for i in range(D)),
            ],
            "c - 0.5 * (g * dv - ge2 * vv)",
        )
        reported_form = (
            f"c, {means}, {_names('w', T)}",
            d_lines
            + [
                f"z{i} = " + " + ".join(f"w{_lower(i, j)} * d{j}" for j in range(i + 1))
                for i in range(D)
            ],
            "c - 0.5 * (" + " + ".join(f"z{i} * z{i}" for i in range(D)) + ")",
        )
        products = [f"q{_lower(i, j)} = x{i} * x{j}" for i in range(D) for j in range(i + 1)]
        pairs = [(i, j) for i in range(D) for j in range(i + 1)]
        constant = repr(D * _HALF_LOG_2PI)
        update = [
            *_blend_lines(D, T),
            "mass = a + TINY_MASS",
            "total += p",
            *[f"m{i} = b{i} / mass" for i in range(D)],
            # The diagonal of S, for the relative floor and the condition estimate.
            *[f"u{i} = e{_lower(i, i)} / mass - m{i} * m{i}" for i in range(D)],
            f"r = reg + FLOOR * (max({_names('u', D)}) + reg)",
            "shrink = keep * (a_old + TINY_MASS) / mass",
            "rho = take / mass",
            f"_, {_names('n', D)}, {_names('p', T)}, g, _ = components[k]",
            f"{dev}, {whitened}, dv, vv = saved[k]",
            "log_det, trace, eps, r_old, drift = track[k]",
            "cancel = 1.0 + rho * g * dv",
            "eps = shrink * (eps - r_old) + r",
            "drift += g * trace * (" + " + ".join(f"u{i}" for i in range(D)) + f" + {D} * r)",
            "component = None",
            "if shrink > 0.5 and 0.0 < cancel < 2.0 and drift < DRIFT_BUDGET:",  # (below 1: P_hat not positive definite)
            "    beta = rho * g / cancel",
            "    g /= shrink",
            *[f"    y{i} = beta * v{i}" for i in range(D)],
            *[f"    p{_lower(i, j)} -= y{i} * v{j}" for i, j in pairs],
            "    trace -= beta * vv",
            "    log_det += log(cancel" + " * shrink" * D + ")",
            "    precision_trace = g * trace",
            "    if abs(eps) * precision_trace < FIRST_ORDER_LIMIT and g < SCALE_LIMIT:",
            (
                f"        component = (lw - 0.5 * (log_det + eps * precision_trace) - {constant}, "
                f"{means}, {_names('p', T)}, g, eps * g * g)"
            ),
            "        track[k] = [log_det, trace, eps, r, drift]",
            "if component is None:",
            "    component = self._refresh(k, a, s1[k], s2[k], lw)",
        ]
        learn = _learn_source(
            D, iterate_form, reported_form, update, products, f"{dev}, {whitened}, dv, vv",
            setup=("components = self.iterate[0]", "track = self.track"),
        )
        return "\n".join([learn, _inference_source(D, iterate_form, reported_form), _exact_source(D)])


def _exact_source(D: int) -> str:
    """`_exact(a, first, second)`: (log det, r, means, W, P, tr P) of the regularised covariance
    by a Cholesky factorisation in straight-line code, or None if it is not positive definite."""
    T = D * (D + 1) // 2
    lines = [
        "def _exact(self, a, first, second):",
        "    reg = self.reg_covar",
        f"    {_names('b', D)}, = first",
        f"    {_names('e', T)}, = second",
        "    mass = a + TINY_MASS",
        *[f"    m{i} = b{i} / mass" for i in range(D)],
    ]
    for i in range(D):
        for j in range(i + 1):
            extra = " + reg" if i == j else ""
            lines.append(f"    c{_lower(i, j)} = e{_lower(i, j)} / mass - m{i} * m{j}{extra}")
    lines.append("    floor = FLOOR * max(" + ", ".join(f"c{_lower(i, i)}" for i in range(D)) + ")")
    # Cholesky factor L, row by row; n_i = 1 / L_ii.
    for i in range(D):
        for j in range(i):
            dot = "".join(f" - l{_lower(i, k)} * l{_lower(j, k)}" for k in range(j))
            lines.append(f"    l{_lower(i, j)} = (c{_lower(i, j)}{dot}) * n{j}")
        dot = "".join(f" - l{_lower(i, k)} * l{_lower(i, k)}" for k in range(i))
        lines += [
            f"    s = c{_lower(i, i)} + floor{dot}",
            "    if not s > 0.0:",
            "        return None",
            f"    l{_lower(i, i)} = sqrt(s)",
            f"    n{i} = 1.0 / l{_lower(i, i)}",
        ]
    # W = L^-1 (lower): W_ii = n_i, W_ij = -n_i sum_{k=j}^{i-1} L_ik W_kj.
    for i in range(D):
        for j in range(i):
            dot = " + ".join(f"l{_lower(i, k)} * w{_lower(k, j)}" for k in range(j, i))
            lines.append(f"    w{_lower(i, j)} = -({dot}) * n{i}")
        lines.append(f"    w{_lower(i, i)} = n{i}")
    # P = W^T W: P_ij = sum_{k >= i} W_ki W_kj for i >= j.
    for i in range(D):
        for j in range(i + 1):
            dot = " + ".join(f"w{_lower(k, i)} * w{_lower(k, j)}" for k in range(i, D))
            lines.append(f"    p{_lower(i, j)} = {dot}")
    diagonal = [f"l{_lower(i, i)}" for i in range(D)]
    lines += [
        "    product = " + " * ".join(diagonal),
        "    half = log(product) if _TINY <= product < inf else "
        + " + ".join(f"log({v})" for v in diagonal),
        f"    return (2.0 * half, reg + floor, ({_names('m', D)},), ({_names('w', T)},), "
        f"({_names('p', T)},), " + " + ".join(f"p{_lower(i, i)}" for i in range(D)) + ")",
        "",
    ]
    return "\n".join(lines)
