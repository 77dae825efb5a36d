"""One-point online EM in plain Python, for diagonal structures (and anything in one dimension).

With a handful of floats, numpy's per-call overhead (about a microsecond a call, and a
stepwise-EM update makes dozens) costs far more than the arithmetic. These engines hold the same
running statistics as `SufficientStatistics` in Python lists and perform the same update as the
vectorised path, so the two agree to rounding. The model hands its state to an engine for runs of
`learn_one`/`predict_one` and takes it back, as arrays, before anything that needs them.

>>> import numpy as np
>>> from online_em.stats import SufficientStatistics
>>> stats = SufficientStatistics("diag", np.zeros(1), np.array([0.5, 0.5]),
...     np.array([[0.0], [5.0]]), np.array([[1.0], [51.0]]), 1.0)
>>> engine = make_engine(stats, None, 0, 0, t=100, alpha=0.6, reg_covar=1e-6, average_after=None)
>>> type(engine).__name__
'ScalarEngine'
>>> engine.learn_predict([0.1]), engine.predict([9.0])
(0, 1)

"""

from __future__ import annotations

import math

import numpy as np

from .stats import _TINY_MASS, AVERAGE_EVERY, COLLAPSE_WEIGHT, SufficientStatistics

__all__ = ["supports", "make_engine", "ScalarEngine", "DiagonalEngine"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_TINY = 2.2250738585072014e-308  # smallest normal float64: the floor of a variance


def supports(covariance_type: str, n_features: int) -> bool:
    """Whether a plain-Python engine handles this model: diagonal structures, or one feature."""
    return covariance_type in ("diag", "spherical") or (covariance_type == "full" and n_features == 1)


def make_engine(stats, average, n_averaged, pending, t, alpha, reg_covar, average_after):
    """The engine for the model's structure, holding a copy of its state."""
    engine_class = ScalarEngine if stats.n_features == 1 else DiagonalEngine
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

    def _healthy(self) -> bool:
        s0 = self.s0
        return min(s0) >= COLLAPSE_WEIGHT * sum(s0)


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
        """(constants, centred means, half precisions, log total mass), with
        log w_k N(x) = constant_k - half_precision_k * (x - mean_k)^2 - log total mass."""
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
        return constants, means, half_precisions, log(total)

    def weighted_log_probs(self, row):
        constants, means, half_precisions, log_total = self.reported or self.iterate
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
        # The update and the parameters it gives, in one loop over the components.
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
        self.iterate = (constants, means, half_precisions, log(total))
        if self.average_after is not None and t >= self.average_after:
            if self.avg is not None and self.pending < AVERAGE_EVERY - 1:
                self.pending += 1  # what _average would do, without the call
            else:
                self._average()
        return label if lightest >= COLLAPSE_WEIGHT * sum(s0) else -1 - label

    def _blend_average(self, share):
        a0, a1, a2 = self.avg
        for k in range(len(a0)):
            a0[k] += share * (self.s0[k] - a0[k])
            a1[k] += share * (self.s1[k] - a1[k])
            a2[k] += share * (self.s2[k] - a2[k])


class DiagonalEngine(_Engine):
    """Several features with diagonal or spherical covariances: lists of D floats per component."""

    __slots__ = ()

    @property
    def spherical(self) -> bool:
        return self.covariance_type == "spherical"

    def _lists(self, stats):
        return stats.s0.tolist(), stats.s1.tolist(), stats.s2.tolist()

    def _arrays(self, s0, s1, s2):
        return SufficientStatistics(
            self.covariance_type, np.array(self.shift), np.array(s0), np.array(s1), np.array(s2), 1.0
        )

    def _parameters(self, s0, s1, s2):
        """([(constant, centred mean, half precisions) per component], log total mass), with
        log w_k N(x) = constant_k - sum_d half_precision_d (x_d - mean_d)^2 - log total mass."""
        D = len(self.shift)
        reg = self.reg_covar
        log = math.log
        masses = [m + _TINY_MASS for m in s0]
        params = []
        spherical = self.spherical
        for mass, first, second in zip(masses, s1, s2):
            mean = [v / mass for v in first]
            if spherical:
                var = (second / mass - sum([m * m for m in mean])) / D
                var = (var if var > 0.0 else 0.0) + reg
                if var < _TINY:
                    var = _TINY
                half_log_prec = -0.5 * D * log(var)
                half_precs = [0.5 / var] * D
            else:
                half_precs = []
                half_log_prec = 0.0
                for sq, m in zip(second, mean):
                    var = sq / mass - m * m
                    var = (var if var > 0.0 else 0.0) + reg
                    if var < _TINY:
                        var = _TINY
                    half_precs.append(0.5 / var)
                    half_log_prec -= 0.5 * log(var)
            params.append((log(mass) + half_log_prec - D * _HALF_LOG_2PI, mean, half_precs))
        return params, log(sum(masses))

    @staticmethod
    def _weighted_log_probs(params, xc):
        """Unnormalised: the log total mass is left out (it cancels in labels and probabilities)."""
        out = []
        for constant, mean, half_precs in params[0]:
            maha = 0.0
            for v, m, h in zip(xc, mean, half_precs):
                d = v - m
                maha += d * d * h
            out.append(constant - maha)
        return out

    def weighted_log_probs(self, row):
        params = self.reported or self.iterate
        xc = [v - c for v, c in zip(row, self.shift)]
        return [v - params[1] for v in self._weighted_log_probs(params, xc)]

    def predict(self, row) -> int:
        xc = [v - c for v, c in zip(row, self.shift)]
        wlp = self._weighted_log_probs(self.reported or self.iterate, xc)
        return wlp.index(max(wlp))

    def learn_predict(self, row, predict: bool = True) -> int:
        """The label under the reported parameters (0 unless `predict`), then one update;
        -1 - label if a component collapsed (the model then repairs it)."""
        xc = [v - c for v, c in zip(row, self.shift)]
        wlp = self._weighted_log_probs(self.iterate, xc)
        top = max(wlp)
        if not predict:
            label = 0
        elif self.reported is None:
            label = wlp.index(top)
        else:
            reported = self._weighted_log_probs(self.reported, xc)
            label = reported.index(max(reported))
        exp = math.exp
        log_norm = math.log(sum([exp(v - top) for v in wlp])) + top

        t = self.t = self.t + 1
        step = t**-self.alpha
        keep = 1.0 - step
        s0, s1, s2 = self.s0, self.s1, self.s2
        if self.spherical:
            sq = sum([v * v for v in xc])
            for k, v in enumerate(wlp):
                take = step * exp(v - log_norm)
                s0[k] = s0[k] * keep + take
                s1[k] = [a * keep + take * b for a, b in zip(s1[k], xc)]
                s2[k] = s2[k] * keep + take * sq
        else:
            squares = [v * v for v in xc]
            for k, v in enumerate(wlp):
                take = step * exp(v - log_norm)
                s0[k] = s0[k] * keep + take
                s1[k] = [a * keep + take * b for a, b in zip(s1[k], xc)]
                s2[k] = [a * keep + take * b for a, b in zip(s2[k], squares)]
        self.iterate = self._parameters(s0, s1, s2)
        if self.average_after is not None and t >= self.average_after:
            self._average()
        return label if self._healthy() else -1 - label

    def _blend_average(self, share):
        a0, a1, a2 = self.avg
        spherical = self.spherical
        for k in range(len(a0)):
            a0[k] += share * (self.s0[k] - a0[k])
            a1[k] = [a + share * (s - a) for a, s in zip(a1[k], self.s1[k])]
            if spherical:
                a2[k] += share * (self.s2[k] - a2[k])
            else:
                a2[k] = [a + share * (s - a) for a, s in zip(a2[k], self.s2[k])]
