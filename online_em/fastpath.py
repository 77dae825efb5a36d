"""One-point online EM in plain Python, for diagonal and spherical covariances.

With a handful of floats, numpy's per-call overhead (about a microsecond a call, and a
stepwise-EM update makes dozens) costs far more than the arithmetic. This engine holds the same
running statistics as `SufficientStatistics` in Python lists and performs the same update, in the
same order of operations, so it agrees with the vectorised path to rounding. The model hands its
state to an engine for runs of `learn_one`/`predict_one`, and takes it back before anything that
needs arrays.

>>> import numpy as np
>>> from online_em.stats import SufficientStatistics
>>> stats = SufficientStatistics("diag", np.zeros(1), np.array([0.5, 0.5]),
...     np.array([[0.0], [5.0]]), np.array([[1.0], [51.0]]), 1.0)
>>> engine = DiagonalEngine(stats, None, 0, t=100, alpha=0.6, reg_covar=1e-6, average_after=None)
>>> engine.learn([0.1])
True
>>> engine.predict([9.0])
1

"""

from __future__ import annotations

import math

import numpy as np

from .stats import _TINY_MASS, COLLAPSE_WEIGHT, SufficientStatistics

__all__ = ["DiagonalEngine", "supports"]

_LOG_2PI = math.log(2.0 * math.pi)


def supports(covariance_type: str, n_features: int) -> bool:
    """Whether the plain-Python engine handles this model (diagonal structure)."""
    return covariance_type in ("diag", "spherical") or (covariance_type == "full" and n_features == 1)


class DiagonalEngine:
    """Running statistics and one-point updates for ``diag``, ``spherical`` and 1-D ``full``."""

    __slots__ = (
        "covariance_type", "spherical", "shift", "s0", "s1", "s2", "avg", "n_averaged", "t",
        "alpha", "reg_covar", "average_after", "_iterate", "_reported",
    )

    def __init__(
        self,
        stats: SufficientStatistics,
        average: SufficientStatistics | None,
        n_averaged: int,
        t: int,
        alpha: float,
        reg_covar: float,
        average_after: int | None,
    ):
        self.covariance_type = stats.covariance_type
        self.spherical = stats.covariance_type == "spherical"
        self.shift = stats.shift.tolist()
        K = stats.n_components
        self.s0 = stats.s0.tolist()
        self.s1 = stats.s1.tolist()
        self.s2 = stats.s2.reshape(K, -1).tolist() if not self.spherical else stats.s2.tolist()
        if average is None:
            self.avg = None
        else:
            self.avg = [
                average.s0.tolist(),
                average.s1.tolist(),
                average.s2.reshape(K, -1).tolist() if not self.spherical else average.s2.tolist(),
            ]
        self.n_averaged = n_averaged
        self.t = t
        self.alpha = alpha
        self.reg_covar = reg_covar
        self.average_after = average_after
        self._iterate = self._parameters(self.s0, self.s1, self.s2)
        self._reported = None

    def export(self) -> tuple[SufficientStatistics, SufficientStatistics | None, int, int]:
        """The state as arrays: (iterate, average, number averaged, step counter)."""

        def arrays(s0, s1, s2):
            s2 = np.array(s2, dtype=np.float64)
            if self.covariance_type == "full":
                s2 = s2.reshape(len(s0), 1, 1)
            return SufficientStatistics(
                self.covariance_type,
                np.array(self.shift, dtype=np.float64),
                np.array(s0, dtype=np.float64),
                np.array(s1, dtype=np.float64),
                s2,
                1.0,
            )

        average = None if self.avg is None else arrays(*self.avg)
        return arrays(self.s0, self.s1, self.s2), average, self.n_averaged, self.t

    def _parameters(self, s0, s1, s2):
        """Per component: (constant, centred mean, precisions); the constant is
        log w + log det(precision)/2 - D log(2 pi)/2, so log w N(x) = constant - maha/2."""
        D = len(self.shift)
        reg = self.reg_covar
        masses = [m + _TINY_MASS for m in s0]
        log_total = math.log(sum(masses))
        params = []
        for mass, first, second in zip(masses, s1, s2):
            mean = [v / mass for v in first]
            if self.spherical:
                var = (second / mass - sum(m * m for m in mean)) / D
                var = (var if var > 0.0 else 0.0) + reg
                var = var if var > 2.2250738585072014e-308 else 2.2250738585072014e-308
                half_log_prec = -0.5 * math.log(var) * D
                precs = [1.0 / var] * D
            else:
                precs = []
                half_log_prec = 0.0
                for sq, m in zip(second, mean):
                    var = sq / mass - m * m
                    var = (var if var > 0.0 else 0.0) + reg
                    var = var if var > 2.2250738585072014e-308 else 2.2250738585072014e-308
                    precs.append(1.0 / var)
                    half_log_prec -= 0.5 * math.log(var)
            constant = math.log(mass) - log_total + half_log_prec - 0.5 * D * _LOG_2PI
            params.append((constant, mean, precs))
        return params

    @staticmethod
    def _weighted_log_probs(params, xc):
        out = []
        for constant, mean, precs in params:
            maha = 0.0
            for v, m, p in zip(xc, mean, precs):
                d = v - m
                maha += d * d * p
            out.append(constant - 0.5 * maha)
        return out

    def _centre(self, row):
        return [v - c for v, c in zip(row, self.shift)]

    def _reported_parameters(self):
        if self.avg is None:
            return self._iterate
        if self._reported is None:
            self._reported = self._parameters(*self.avg)
        return self._reported

    def weighted_log_probs(self, row: list[float]) -> list[float]:
        """log w_k + log N(row; mu_k, Sigma_k) under the reported parameters."""
        return self._weighted_log_probs(self._reported_parameters(), self._centre(row))

    def predict(self, row: list[float]) -> int:
        wlp = self.weighted_log_probs(row)
        return wlp.index(max(wlp))

    def learn(self, row: list[float]) -> bool:
        """One stepwise-EM update; False when a component's weight collapsed (the model repairs it)."""
        xc = self._centre(row)
        wlp = self._weighted_log_probs(self._iterate, xc)
        top = max(wlp)
        exps = [math.exp(v - top) for v in wlp]
        norm = sum(exps)
        # r_k = exp(log_resp), with log_resp = wlp - logsumexp(wlp), as in the vectorised path.
        log_norm = math.log(norm) + top
        resp = [math.exp(v - log_norm) for v in wlp]

        self.t += 1
        step = self.t**-self.alpha
        keep = 1.0 - step
        s0, s1, s2 = self.s0, self.s1, self.s2
        spherical = self.spherical
        sq = sum(v * v for v in xc) if spherical else None
        for k, r in enumerate(resp):
            take = step * r
            s0[k] = s0[k] * keep + take
            s1[k] = [a * keep + take * v for a, v in zip(s1[k], xc)]
            if spherical:
                s2[k] = s2[k] * keep + take * sq
            else:
                s2[k] = [a * keep + take * v * v for a, v in zip(s2[k], xc)]
        self._iterate = self._parameters(s0, s1, s2)
        self._average()
        self._reported = None
        total = sum(s0)
        return all(m / total >= COLLAPSE_WEIGHT for m in s0)

    def _average(self) -> None:
        if self.average_after is None or self.t < self.average_after:
            return
        if self.avg is None:
            self.avg = [list(self.s0), [list(v) for v in self.s1],
                        list(self.s2) if self.spherical else [list(v) for v in self.s2]]
            self.n_averaged = 1
            return
        self.n_averaged += 1
        share = 1.0 / self.n_averaged
        a0, a1, a2 = self.avg
        for k in range(len(a0)):
            a0[k] += share * (self.s0[k] - a0[k])
            a1[k] = [a + share * (s - a) for a, s in zip(a1[k], self.s1[k])]
            if self.spherical:
                a2[k] += share * (self.s2[k] - a2[k])
            else:
                a2[k] = [a + share * (s - a) for a, s in zip(a2[k], self.s2[k])]
