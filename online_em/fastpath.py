"""One-point online EM in plain Python: one feature, diagonal and spherical covariances, and full
covariances in a few dimensions.

With a handful of floats, numpy's per-call overhead (about a microsecond a call, and a
stepwise-EM update makes dozens) costs far more than the arithmetic. These engines hold the same
running statistics as `SufficientStatistics` in Python lists and perform the same update as the
vectorised path, so the two agree to rounding. The model hands its state to an engine for runs of
`learn_one`/`predict_one` and takes it back, as arrays, before anything that needs them. Engines:
`ScalarEngine` (one feature; `PairEngine` when there are also just two components),
`DiagonalEngine` (diag and spherical) and `FullEngine` (full, up to MAX_FULL_FEATURES features).

>>> import numpy as np
>>> from online_em.stats import SufficientStatistics
>>> stats = SufficientStatistics("diag", np.zeros(1), np.array([0.5, 0.5]),
...     np.array([[0.0], [5.0]]), np.array([[1.0], [51.0]]), 1.0)
>>> engine = make_engine(stats, None, 0, 0, t=100, alpha=0.6, reg_covar=1e-6, average_after=None)
>>> type(engine).__name__
'PairEngine'
>>> engine.learn_predict([0.1]), engine.predict([9.0])
(0, 1)

"""

from __future__ import annotations

import math
from operator import mul, sub

import numpy as np

from .stats import (
    _TINY_MASS,
    AVERAGE_EVERY,
    COLLAPSE_WEIGHT,
    RELATIVE_COVARIANCE_FLOOR,
    SufficientStatistics,
    _cholesky_full,
)

__all__ = ["supports", "make_engine", "ScalarEngine", "PairEngine", "DiagonalEngine", "FullEngine"]

# Up to this many features, full covariances are faster in plain Python than through numpy.
MAX_FULL_FEATURES = 8

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_TINY = 2.2250738585072014e-308  # smallest normal float64: the floor of a variance


def supports(covariance_type: str, n_features: int) -> bool:
    """Whether a plain-Python engine handles this model: diagonal structures, or full covariances
    in at most MAX_FULL_FEATURES dimensions."""
    return covariance_type in ("diag", "spherical") or (
        covariance_type == "full" and n_features <= MAX_FULL_FEATURES
    )


def make_engine(stats, average, n_averaged, pending, t, alpha, reg_covar, average_after):
    """The engine for the model's structure, holding a copy of its state."""
    if stats.n_features == 1:
        engine_class = PairEngine if stats.n_components == 2 else ScalarEngine
    elif stats.covariance_type == "full":
        engine_class = FullEngine
    else:
        engine_class = DiagonalEngine
    return engine_class(stats, average, n_averaged, pending, t, alpha, reg_covar, average_after)


class _Engine:
    """What both engines share: the state they take from the model and give back, and averaging."""

    __slots__ = (
        "covariance_type", "shift", "s0", "s1", "s2", "avg", "n_averaged", "pending", "t",
        "alpha", "reg_covar", "average_after", "iterate", "reported",
    )

    def __init__(self, stats, average, n_averaged, pending, t, alpha, reg_covar, average_after):
        self.covariance_type = stats.covariance_type
        self.shift = stats.shift.tolist()
        self.s0, self.s1, self.s2 = self._lists(stats)
        self.avg = None if average is None else list(self._lists(average))
        self.n_averaged = n_averaged
        self.pending = pending
        self.t = t
        self.alpha = alpha
        self.reg_covar = reg_covar
        self.average_after = average_after
        self.iterate = self._parameters(self.s0, self.s1, self.s2)
        self.reported = None if self.avg is None else self._parameters(*self.avg)

    def _lists(self, stats):
        raise NotImplementedError

    def _arrays(self, s0, s1, s2) -> SufficientStatistics:
        raise NotImplementedError

    def _parameters(self, s0, s1, s2):
        raise NotImplementedError

    def export(self):
        """The state as arrays: (iterate, average, number averaged, pending, step counter)."""
        average = None if self.avg is None else self._arrays(*self.avg)
        return self._arrays(self.s0, self.s1, self.s2), average, self.n_averaged, self.pending, self.t

    def _average(self) -> None:
        """Polyak averaging of the statistics, every AVERAGE_EVERY points (as the numpy path)."""
        if self.average_after is None or self.t < self.average_after:
            return
        if self.avg is None:
            self.avg = [list(self.s0), self._copy(self.s1), self._copy(self.s2)]
            self.n_averaged, self.pending = 1, 0
        else:
            self.pending += 1
            if self.pending < AVERAGE_EVERY:
                return
            self.n_averaged += self.pending
            share = self.pending / self.n_averaged
            self.pending = 0
            self._blend_average(share)
        self.reported = self._parameters(*self.avg)

    @staticmethod
    def _copy(values):
        return [list(v) if isinstance(v, list) else v for v in values]



class ScalarEngine(_Engine):
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
            1.0,
        )

    def _parameters(self, s0, s1, s2):
        """(constants, centred means, half precisions, total mass), with
        log w_k N(x) = constant_k - half_precision_k * (x - mean_k)^2 - log(total mass)."""
        reg = self.reg_covar
        log = math.log
        constants, means, half_precisions = [], [], []
        total = 0.0
        for m0, first, second in zip(s0, s1, s2):
            mass = m0 + _TINY_MASS
            total += mass
            mean = first / mass
            var = second / mass - mean * mean
            var = (var if var > 0.0 else 0.0) + reg
            if var < _TINY:
                var = _TINY
            constants.append(log(mass) - 0.5 * log(var) - _HALF_LOG_2PI)
            means.append(mean)
            half_precisions.append(0.5 / var)
        return constants, means, half_precisions, total

    def weighted_log_probs(self, row):
        constants, means, half_precisions, total = self.reported or self.iterate
        log_total = math.log(total)
        xc = row[0] - self.shift[0]
        return [c - log_total - h * (xc - m) * (xc - m) for c, m, h in zip(constants, means, half_precisions)]

    def predict(self, row) -> int:
        constants, means, half_precisions, _ = self.reported or self.iterate
        xc = row[0] - self.shift[0]
        wlp = [c - h * (xc - m) * (xc - m) for c, m, h in zip(constants, means, half_precisions)]
        return wlp.index(max(wlp))

    def learn_predict(self, row, predict: bool = True) -> int:
        """The label under the reported parameters (0 unless `predict`), then one update;
        -1 - label if a component collapsed (the model then repairs it)."""
        xc = row[0] - self.shift[0]
        constants, means, half_precisions, _ = self.iterate
        wlp = [c - h * (xc - m) * (xc - m) for c, m, h in zip(constants, means, half_precisions)]
        top = max(wlp)
        reported = self.reported
        if not predict:
            label = 0
        elif reported is None:
            label = wlp.index(top)
        else:
            constants, means, half_precisions, _ = reported
            guess = [c - h * (xc - m) * (xc - m) for c, m, h in zip(constants, means, half_precisions)]
            label = guess.index(max(guess))
        exp, log = math.exp, math.log
        weights = [exp(v - top) for v in wlp]
        t = self.t = self.t + 1
        step = t**-self.alpha
        keep = 1.0 - step
        scale = step / sum(weights)
        s0, s1, s2 = self.s0, self.s1, self.s2
        sq = xc * xc
        reg = self.reg_covar
        # The update and the parameters it gives, in one loop over the components: the body of
        # _parameters is inlined here, the hot loop of one-point learning (tests hold them equal).
        constants, means, half_precisions = [], [], []
        total = 0.0
        lightest = math.inf
        for k, weight in enumerate(weights):
            take = scale * weight
            a = s0[k] = s0[k] * keep + take
            b = s1[k] = s1[k] * keep + take * xc
            c = s2[k] = s2[k] * keep + take * sq
            if a < lightest:
                lightest = a
            mass = a + _TINY_MASS
            total += mass
            mean = b / mass
            var = c / mass - mean * mean
            var = (var if var > 0.0 else 0.0) + reg
            if var < _TINY:
                var = _TINY
            constants.append(log(mass) - 0.5 * log(var) - _HALF_LOG_2PI)
            means.append(mean)
            half_precisions.append(0.5 / var)
        self.iterate = (constants, means, half_precisions, total)
        if self.average_after is not None and t >= self.average_after:
            if self.avg is not None and self.pending < AVERAGE_EVERY - 1:
                self.pending += 1  # what _average would do, without the call
            else:
                self._average()
        return label if lightest >= COLLAPSE_WEIGHT * total else -1 - label

    def _blend_average(self, share):
        a0, a1, a2 = self.avg
        for k in range(len(a0)):
            a0[k] += share * (self.s0[k] - a0[k])
            a1[k] += share * (self.s1[k] - a1[k])
            a2[k] += share * (self.s2[k] - a2[k])


class PairEngine(ScalarEngine):
    """One feature and two components, the commonest labeler: `ScalarEngine.learn_predict` with
    its loops over the components unrolled (the tests hold the two equal)."""

    __slots__ = ()

    def predict(self, row) -> int:
        xc = row[0] - self.shift[0]
        (c0, c1), (m0, m1), (h0, h1), _ = self.reported or self.iterate
        return 0 if c0 - h0 * (xc - m0) * (xc - m0) >= c1 - h1 * (xc - m1) * (xc - m1) else 1

    def learn_predict(self, row, predict: bool = True) -> int:
        xc = row[0] - self.shift[0]
        (c0, c1), (m0, m1), (h0, h1), _ = self.iterate
        w0 = c0 - h0 * (xc - m0) * (xc - m0)
        w1 = c1 - h1 * (xc - m1) * (xc - m1)
        reported = self.reported
        if not predict:
            label = 0
        elif reported is None:
            label = 0 if w0 >= w1 else 1
        else:
            (c0, c1), (m0, m1), (h0, h1), _ = reported
            label = 0 if c0 - h0 * (xc - m0) * (xc - m0) >= c1 - h1 * (xc - m1) * (xc - m1) else 1
        exp, log = math.exp, math.log
        # Responsibilities by log-sum-exp: the larger weight is exp(0) = 1.
        if w0 >= w1:
            e0, e1 = 1.0, exp(w1 - w0)
        else:
            e0, e1 = exp(w0 - w1), 1.0
        t = self.t = self.t + 1
        step = t**-self.alpha
        keep = 1.0 - step
        scale = step / (e0 + e1)
        s0, s1, s2 = self.s0, self.s1, self.s2
        sq = xc * xc
        reg = self.reg_covar
        take = scale * e0
        a0 = s0[0] = s0[0] * keep + take
        b = s1[0] = s1[0] * keep + take * xc
        c = s2[0] = s2[0] * keep + take * sq
        mass0 = a0 + _TINY_MASS
        mean0 = b / mass0
        var = c / mass0 - mean0 * mean0
        var0 = (var if var > 0.0 else 0.0) + reg
        if var0 < _TINY:
            var0 = _TINY
        take = scale * e1
        a1 = s0[1] = s0[1] * keep + take
        b = s1[1] = s1[1] * keep + take * xc
        c = s2[1] = s2[1] * keep + take * sq
        mass1 = a1 + _TINY_MASS
        mean1 = b / mass1
        var = c / mass1 - mean1 * mean1
        var1 = (var if var > 0.0 else 0.0) + reg
        if var1 < _TINY:
            var1 = _TINY
        total = mass0 + mass1
        self.iterate = (
            [log(mass0) - 0.5 * log(var0) - _HALF_LOG_2PI, log(mass1) - 0.5 * log(var1) - _HALF_LOG_2PI],
            [mean0, mean1],
            [0.5 / var0, 0.5 / var1],
            total,
        )
        if self.average_after is not None and t >= self.average_after:
            if self.avg is not None and self.pending < AVERAGE_EVERY - 1:
                self.pending += 1
            else:
                self._average()
        return label if (a0 if a0 < a1 else a1) >= COLLAPSE_WEIGHT * total else -1 - label


# A component whose parameters would move by less than this (relative) in an update keeps its
# cached factors; the neglected changes are summed and the factors refreshed before their total
# reaches REFRESH_AFTER. The statistics themselves are always updated exactly.
NEGLIGIBLE_CHANGE = 1e-14
REFRESH_AFTER = 1e-11


class _MultiEngine(_Engine):
    """Several features: per component, a constant, a mean and what gives the Mahalanobis
    distance, refreshed only for the components an update really moves."""

    __slots__ = ("neglected",)

    def _component(self, m0, first, second):
        """(constant less log mass, centred mean, what `_mahalanobis` needs)."""
        raise NotImplementedError

    @staticmethod
    def _mahalanobis(component, xc) -> float:
        raise NotImplementedError

    @staticmethod
    def _products(xc) -> list[float]:
        """The per-point second-moment statistic, as a list."""
        raise NotImplementedError

    def _parameters(self, s0, s1, s2):
        """(components, log masses, log total mass)."""
        components = [self._component(m0, first, second) for m0, first, second in zip(s0, s1, s2)]
        log_masses = [math.log(m + _TINY_MASS) for m in s0]
        self.neglected = [0.0] * len(s0)
        return components, log_masses, math.log(sum(m + _TINY_MASS for m in s0))

    def _unnormalised(self, params, xc):
        components, log_masses, _ = params
        mahalanobis = self._mahalanobis
        return [lm + c[0] - 0.5 * mahalanobis(c, xc) for c, lm in zip(components, log_masses)]

    def weighted_log_probs(self, row):
        params = self.reported or self.iterate
        xc = list(map(sub, row, self.shift))
        return [v - params[2] for v in self._unnormalised(params, xc)]

    def predict(self, row) -> int:
        wlp = self._unnormalised(self.reported or self.iterate, list(map(sub, row, self.shift)))
        return wlp.index(max(wlp))

    def learn_predict(self, row, predict: bool = True) -> int:
        """The label under the reported parameters (0 unless `predict`), then one update;
        -1 - label if a component collapsed (the model then repairs it)."""
        xc = list(map(sub, row, self.shift))
        components = self.iterate[0]
        s0, s1, s2 = self.s0, self.s1, self.s2
        log = math.log
        mahalanobis = [self._mahalanobis(c, xc) for c in components]
        wlp = [log(m + _TINY_MASS) + c[0] - 0.5 * d for m, c, d in zip(s0, components, mahalanobis)]
        top = max(wlp)
        if not predict:
            label = 0
        elif self.reported is None:
            label = wlp.index(top)
        else:
            guess = self._unnormalised(self.reported, xc)
            label = guess.index(max(guess))
        exp = math.exp
        weights = [exp(v - top) for v in wlp]
        t = self.t = self.t + 1
        step = t**-self.alpha
        keep = 1.0 - step
        scale = step / sum(weights)
        products = self._products(xc)
        neglected = self.neglected
        for k, weight in enumerate(weights):
            take = scale * weight
            s0[k] = mass = s0[k] * keep + take
            s1[k] = [a * keep + take * b for a, b in zip(s1[k], xc)]
            s2[k] = [a * keep + take * b for a, b in zip(s2[k], products)]
            # Relative move of the mean and covariance: b (1 + Mahalanobis), b = take / mass.
            change = take / (mass + _TINY_MASS) * (1.0 + mahalanobis[k])
            if change > NEGLIGIBLE_CHANGE or neglected[k] + change > REFRESH_AFTER:
                components[k] = self._component(mass, s1[k], s2[k])
                neglected[k] = 0.0
            else:
                neglected[k] += change
        self.iterate = (
            components,
            [log(m + _TINY_MASS) for m in s0],
            log(sum(m + _TINY_MASS for m in s0)),
        )
        if self.average_after is not None and t >= self.average_after:
            if self.avg is not None and self.pending < AVERAGE_EVERY - 1:
                self.pending += 1  # what _average would do, without the call
            else:
                self._average()
        return label if min(s0) >= COLLAPSE_WEIGHT * sum(s0) else -1 - label

    def _average(self) -> None:
        neglected = self.neglected
        super()._average()
        self.neglected = neglected  # refreshing the average's parameters leaves the iterate's alone

    def _blend_average(self, share):
        a0, a1, a2 = self.avg
        for k in range(len(a0)):
            a0[k] += share * (self.s0[k] - a0[k])
            a1[k] = [a + share * (s - a) for a, s in zip(a1[k], self.s1[k])]
            a2[k] = [a + share * (s - a) for a, s in zip(a2[k], self.s2[k])]


class DiagonalEngine(_MultiEngine):
    """Diagonal or spherical covariances: D variances (or one) per component, in plain Python.
    A spherical component's second moment is kept as a one-element list."""

    __slots__ = ()

    def _lists(self, stats):
        s2 = stats.s2[:, None] if stats.covariance_type == "spherical" else stats.s2
        return stats.s0.tolist(), stats.s1.tolist(), s2.tolist()

    def _arrays(self, s0, s1, s2):
        s2 = np.array(s2, dtype=np.float64)
        if self.covariance_type == "spherical":
            s2 = s2[:, 0]
        return SufficientStatistics(
            self.covariance_type, np.array(self.shift), np.array(s0), np.array(s1), s2, 1.0
        )

    def _products(self, xc):
        if self.covariance_type == "spherical":
            return [sum(map(mul, xc, xc))]
        return list(map(mul, xc, xc))

    def _component(self, m0, first, second):
        """(constant less log mass, centred mean, precisions)."""
        D = len(first)
        reg = self.reg_covar
        log = math.log
        mass = m0 + _TINY_MASS
        mean = [v / mass for v in first]
        if self.covariance_type == "spherical":
            var = (second[0] / mass - sum(map(mul, mean, mean))) / D
            var = (var if var > 0.0 else 0.0) + reg
            if var < _TINY:
                var = _TINY
            return (-0.5 * D * log(var) - D * _HALF_LOG_2PI, mean, [1.0 / var] * D)
        variances = [sq / mass - m * m for sq, m in zip(second, mean)]
        variances = [(v if v > 0.0 else 0.0) + reg for v in variances]
        variances = [v if v >= _TINY else _TINY for v in variances]
        log_det = sum(map(log, variances))
        return (-0.5 * log_det - D * _HALF_LOG_2PI, mean, [1.0 / v for v in variances])

    @staticmethod
    def _mahalanobis(component, xc):
        d = list(map(sub, xc, component[1]))
        return sum(map(mul, map(mul, d, d), component[2]))


class FullEngine(_MultiEngine):
    """Full covariances in a few dimensions: lower triangles as flat lists, Cholesky factors and
    their inverses in plain Python."""

    __slots__ = ()

    def _lists(self, stats):
        rows, cols = np.tril_indices(stats.n_features)
        return stats.s0.tolist(), stats.s1.tolist(), stats.s2[:, rows, cols].tolist()

    def _arrays(self, s0, s1, s2):
        D = len(self.shift)
        rows, cols = np.tril_indices(D)
        lower = np.array(s2, dtype=np.float64)
        full = np.zeros((len(s0), D, D))
        full[:, rows, cols] = lower
        full[:, cols, rows] = lower
        return SufficientStatistics(
            self.covariance_type, np.array(self.shift), np.array(s0), np.array(s1), full, 1.0
        )

    @staticmethod
    def _products(xc):
        D = len(xc)
        return [xc[i] * xc[j] for i in range(D) for j in range(i + 1)]

    def _component(self, m0, first, second):
        """(constant less log mass, centred mean, rows of W = L^-1 for the Cholesky factor L)."""
        D = len(first)
        mass = m0 + _TINY_MASS
        mean = [v / mass for v in first]
        reg = self.reg_covar
        cov = []
        p = 0
        top = 0.0
        for i in range(D):
            mi = mean[i]
            for j in range(i + 1):
                c = second[p] / mass - mi * mean[j]
                if i == j:
                    c += reg
                    if c > top:
                        top = c
                cov.append(c)
                p += 1
        floor = RELATIVE_COVARIANCE_FLOOR * top
        rows, inverse_diagonal = [], []
        log_det = 0.0
        sqrt = math.sqrt
        p = 0
        for i in range(D):
            row = []
            for j in range(i):  # row has j entries so far: map stops there
                row.append((cov[p] - sum(map(mul, row, rows[j]))) * inverse_diagonal[j])
                p += 1
            s = cov[p] - sum(map(mul, row, row)) + floor
            p += 1
            if not s > 0.0:
                return self._repaired_component(mean, cov, floor)
            root = sqrt(s)
            row.append(root)
            inverse_diagonal.append(1.0 / root)
            log_det += math.log(root)
            rows.append(row)
        # W = L^-1 (lower triangular), so that the Mahalanobis distance is |W (x - mean)|^2;
        # columns[j] holds W[j:, j] as it is built.
        inverse = []
        columns = []
        for i in range(D):
            row = rows[i]
            scale = -inverse_diagonal[i]
            w = [sum(map(mul, row[j:i], columns[j])) * scale for j in range(i)]
            w.append(inverse_diagonal[i])
            for j in range(i):
                columns[j].append(w[j])
            columns.append([inverse_diagonal[i]])
            inverse.append(w)
        return (-log_det - D * _HALF_LOG_2PI, mean, inverse)

    def _repaired_component(self, mean, cov, floor):
        """A factor through the vectorised path's repair (eigenvalues clipped), as it would do."""
        D = len(mean)
        rows, cols = np.tril_indices(D)
        matrix = np.zeros((D, D))
        matrix[rows, cols] = cov
        matrix[cols, rows] = cov
        matrix[np.arange(D), np.arange(D)] += floor
        chol = _cholesky_full(matrix[None], self.reg_covar)[0]
        inverse = np.linalg.inv(chol)
        log_det = float(np.log(np.diag(chol)).sum())
        return (-log_det - D * _HALF_LOG_2PI, mean, [inverse[i, : i + 1].tolist() for i in range(D)])

    @staticmethod
    def _mahalanobis(component, xc):
        """|W (x - mean)|^2, a dot product per row of W (map and sum run in C)."""
        d = list(map(sub, xc, component[1]))
        z = [sum(map(mul, row, d)) for row in component[2]]
        return sum(map(mul, z, z))
