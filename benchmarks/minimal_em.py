"""The least a one-point stepwise EM can do per point, in plain Python: a ceiling for the targets
that compare one-point learning with River's KMeans and with a plain read-float-write loop.

`MinimalEM` keeps one feature's K components as floats: per point an E-step (log densities,
log-sum-exp), one step size t^-0.6, the blend of each component's three running averages, and the
parameters the next point needs. No Polyak average, no input checks, no novelty test, no
structural moves, no variance floor beyond 1e-6: what the model does besides is left out, so
its rate bounds what any pure-Python online EM reaches on one feature.

>>> model = MinimalEM(weights=[0.5, 0.5], means=[20.0, 40.0], variances=[25.0, 25.0])
>>> for v in (19.0, 41.0, 22.0):
...     model.learn_one({"x": v})
>>> model.predict_one({"x": 18.0}), model.predict_one({"x": 45.0})
(0, 1)

"""

from __future__ import annotations

import math

__all__ = ["MinimalEM", "MINIMAL_LOOP"]


class MinimalEM:
    """Stepwise EM for one feature (the first value of each dict), K components in floats."""

    def __init__(self, weights: list[float], means: list[float], variances: list[float], t: int = 10):
        self.t = t
        self.averages = [[w, w * m, w * (v + m * m)] for w, m, v in zip(weights, means, variances)]
        self.params = [(math.log(w) - 0.5 * math.log(v), m, 0.5 / v) for w, m, v in zip(weights, means, variances)]

    def _log_densities(self, x: float) -> list[float]:
        return [c - h * (x - m) * (x - m) for c, m, h in self.params]

    def learn_one(self, point: dict) -> None:
        x = next(iter(point.values()))
        log_densities = self._log_densities(x)
        top = max(log_densities)
        e = [math.exp(v - top) for v in log_densities]
        norm = 1.0 / sum(e)
        self.t += 1
        step = self.t ** -0.6
        params = []
        for averages, weight in zip(self.averages, e):
            r = weight * norm
            averages[0] += step * (r - averages[0])
            averages[1] += step * (r * x - averages[1])
            averages[2] += step * (r * x * x - averages[2])
            w = averages[0]
            mean = averages[1] / w
            var = max(averages[2] / w - mean * mean, 1e-6)
            params.append((math.log(w) - 0.5 * math.log(var), mean, 0.5 / var))
        self.params = params

    def predict_one(self, point: dict) -> int:
        log_densities = self._log_densities(next(iter(point.values())))
        return log_densities.index(max(log_densities))


# A labeller of stdin with MinimalEM, one line at a time (the CLI's ceiling): the plain loop's
# read, float and write, with one learn_one and one predict_one per line.
MINIMAL_LOOP = """\
import sys
sys.path.insert(0, {here!r})
from minimal_em import MinimalEM
model = MinimalEM([0.5, 0.5], [20.0, 40.0], [25.0, 25.0])
write = sys.stdout.write
for line in sys.stdin:
    point = {{"x": float(line)}}
    model.learn_one(point)
    write("1\\n" if model.predict_one(point) else "0\\n")
"""
