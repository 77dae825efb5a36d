"""One-point online EM for full covariances in many dimensions, with numpy over the components.

Beyond `fastpath.MAX_FULL_FEATURES` features the plain-Python engines' generated code grows as
D^3 (and from `fastpath.ARRAY_ENGINE_MIN_ENTRIES` entries K D^2 on, this engine is the faster:
plain Python's arithmetic grows with them, numpy's calls barely), and learning a point as a batch
of one (`SufficientStatistics.learn`, then every component's Cholesky factor and inverse again)
costs O(K D^3) and some hundred numpy calls. This
engine performs `fastpath.FullEngine`'s update (see the comment above `fastpath.FIRST_ORDER_LIMIT`)
with each step vectorised over the K components: the iterate's precisions follow the point by a
Sherman-Morrison step, O(K D^2) in a few numpy calls, and a component is factored exactly again
only when the tracking's error bounds call for it. Those bounds are FullEngine's (FIRST_ORDER_LIMIT,
DRIFT_LIMIT), with tighter estimates of the largest eigenvalues than traces: for the precision,
the largest absolute row sum of P at the last exact factorisation, times g (a rank-one downdate
never raises it, and g scales it); for the regularised covariance T = S + r I, in the drift's
condition number, its largest absolute row sum at the last factorisation, carried through each
update S' = shrink S + shrink rho d d^T as shrink * bound + rho |d|^2 + r. In D = 64 the traces
overstate them about D-fold: with both, FullEngine's drift estimate would refactor some component
at almost every point; with the covariance's trace alone, 35% of the component updates of a 64-D
stream of 3,000 points (K = 10) were exact refactorisations, and 9% with both bounds. The statistics,
the schedule and the Polyak average are those of the other engines (`online_em.steps`), so it
agrees with learning each point as a batch of one to rounding (tests hold it so).

Each point changes every component's second moments and precision by a rank-one term, and in many
dimensions writing those terms into the (K, D, D) arrays point by point is five passes over them
(330 kB in 64-D with K = 10). From DEFER_MIN_ENTRIES entries on, the engine defers them instead, up
to DEFERRED_RANK points at a time, and adds them with one matrix product:
the second moments as s2 = scale s2_0 + sum_j w_j x_j x_j^T (the diagonal kept up to date, as the
floor of the regulariser reads it), the precisions as P_hat = P_0 - sum_j beta_j v_j v_j^T, which
the E-step applies as P_0 d - sum_j beta_j v_j (v_j . d) in O(n D) a component. Whatever reads s2
adds the deferred terms first: an exact refactorisation those of its components, the Polyak average
all; the export adds them to a copy, so reading the state never changes what the engine does next.

>>> import numpy as np
>>> from online_em.stats import SufficientStatistics
>>> D = 20
>>> s1 = np.stack([np.zeros(D), np.full(D, 5.0)]) * 0.5
>>> s2 = np.stack([np.eye(D) + np.outer(m, m) for m in (np.zeros(D), np.full(D, 5.0))]) * 0.5
>>> stats = SufficientStatistics("full", np.zeros(D), np.array([0.5, 0.5]), s1, s2, 100.0)
>>> engine = FullArrayEngine(stats, stats.s0, None, None, 0, 0, 100, 0.6, 1e-6, None)
>>> engine.learn_predict(np.full(D, 0.1).tolist()), engine.predict(np.full(D, 4.9).tolist())
(0, 1)

"""

from __future__ import annotations

import math

import numpy as np

from .fastpath import DRIFT_BUDGET, FIRST_ORDER_LIMIT, NOVEL, SCALE_LIMIT, Engine, NotLearnable
from .stats import COLLAPSE_WEIGHT, RELATIVE_COVARIANCE_FLOOR, TINY_MASS, SufficientStatistics, factored
from .steps import RECENCY_ALPHA, component_step, point_step, weight_step

__all__ = ["FullArrayEngine"]

# Rank-one terms deferred before they are added by one matrix product (see the module docstring):
# a flush costs about two passes over the (K, D, D) array and a product of rank DEFERRED_RANK, and
# each deferred precision term adds O(D) a component to every E-step until then. Deferring costs
# about a dozen numpy calls a point, which the passes it saves outweigh from DEFER_MIN_ENTRIES
# entries K D^2 on. Measured (learn_one + predict_one, us a point, the least of 7 runs of each
# block of 100 points, three streams): 64-D K=10 286 / 323 / 407 deferred against 302 / 380 / 477
# direct; 32-D K=10 280 against 323; 18-D K=7 alike within the noise, and learn_one alone there
# 200-218 deferred against 173-183 direct.
DEFERRED_RANK = 16
DEFER_MIN_ENTRIES = 8192

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _diagonals(matrices: np.ndarray) -> np.ndarray:
    """A writable view of the diagonals of a C-contiguous (K, D, D) stack."""
    K, D, _ = matrices.shape
    return matrices.reshape(K, D * D)[:, :: D + 1]


class FullArrayEngine(Engine):
    """Full covariances, any number of features: the moments as arrays, s1 (K, D) and s2 (K, D, D);
    what is a number per component (the masses s0, the recency masses, the tracking) as lists of
    floats, whose per-point arithmetic plain Python does in less time than numpy's calls on arrays
    of K values.

    The iterate is (constants, centred means, P_hat, g, eps g^2), each an array over the
    components, with `track` = (log det T, tr P_hat, eps, r, drift) as `fastpath.FullEngine`
    keeps per component, lam, the bound on P_hat's largest eigenvalue, and spread, that on the
    regularised covariance's: the log density is
    constant - (g d'P_hat d - eps g^2 |P_hat d|^2) / 2 for d = x - mean. The reported parameters
    (the Polyak average) are (constants, means, W), W = L^-1 for the Cholesky factors L, exact."""

    __slots__ = ("track", "lam", "spread", "n_features", "scratch", "deferred_x", "deferred_w", "s2_scale",
                 "s2_diagonal", "n_deferred_x", "deferred_v", "deferred_beta", "n_deferred_v", "rank")

    def __init__(self, stats, *args, **kwargs):
        self.n_features = D = stats.n_features
        K = len(stats.s0)
        # One (K, D, D) buffer for the flushes' products: in 64 dimensions a fresh 330 kB
        # temporary costs more than the arithmetic (numpy maps and faults it in each time).
        self.scratch = np.empty_like(np.asarray(stats.s2, dtype=np.float64))
        # The deferred terms of s2 (points x_j, weights w_kj, s2 = s2_scale s2_0 + sum_j w_kj x_j x_j^T)
        # and of the precisions (v_kj, beta_kj): the first n_deferred_x and n_deferred_v columns of
        # `rank` (0: none deferred, each term added as it comes).
        self.rank = rank = DEFERRED_RANK if K * D * D >= DEFER_MIN_ENTRIES else 0
        self.deferred_x, self.deferred_w = np.zeros((rank, D)), np.zeros((K, rank))
        self.s2_scale, self.n_deferred_x = np.ones(K), 0
        self.deferred_v, self.deferred_beta = np.zeros((K, rank, D)), np.zeros((K, rank))
        self.n_deferred_v = 0
        super().__init__(stats, *args, **kwargs)
        # the diagonal of s2 as it stands, kept up to date while terms are deferred (None: s2's own)
        self.s2_diagonal = _diagonals(self.s2).copy() if rank else None
        self.shift = np.array(self.shift, dtype=np.float64)
        self.rho = [float(value) for value in self.rho]  # (plain floats: numpy's scalars are slower)

    # ---------------------------------------------------------------- state

    def _lists(self, stats):
        """The masses as a list; copies of the moments (the engine updates them in place), C-contiguous."""
        return (np.asarray(stats.s0, dtype=np.float64).tolist(), np.array(stats.s1, dtype=np.float64, order="C"),
                np.array(stats.s2, dtype=np.float64, order="C"))

    def _arrays(self, s0, s1, s2) -> SufficientStatistics:
        return SufficientStatistics(self.covariance_type, np.array(self.shift), np.array(s0, dtype=np.float64),
                                    np.array(s1), np.array(s2), self.count)

    @staticmethod
    def _copy(values):
        return np.array(values)

    def _reweighted(self, parameters, weights, masses):
        (constants, *rest), _ = parameters
        # (the shifts in plain floats: K values, read at every prediction before the average begins)
        weights, masses = np.asarray(weights, dtype=np.float64).tolist(), np.asarray(masses, dtype=np.float64).tolist()
        return (constants + np.array(self._shifts(weights, masses)), *rest), sum(weights) + len(weights) * TINY_MASS

    def _statistics(self):
        return self.s0, self.s1, self._current_moments()

    def _average(self) -> None:
        if self.t >= self.due:
            self._flush_moments()  # (the average reads the whole of s2)
        super()._average()

    # ---------------------------------------------------------------- deferred rank-one terms

    def _defer_moments(self, x, keeps, takes) -> None:
        """s2 <- keeps s2 + takes x x^T for each component, deferred: the diagonal now, the rest
        when DEFERRED_RANK points are pending or something reads the whole of s2 (or all now,
        when the engine does not defer)."""
        if not self.rank:
            s2 = self.s2
            s2 *= keeps[:, None, None]
            s2 += np.multiply(takes[:, None, None], x[:, None] * x, out=self.scratch)
            return
        n = self.n_deferred_x
        weights = self.deferred_w
        if n:
            weights[:, :n] *= keeps[:, None]
        weights[:, n] = takes
        self.deferred_x[n] = x
        self.s2_scale *= keeps
        diagonal = self.s2_diagonal
        diagonal *= keeps[:, None]
        diagonal += takes[:, None] * (x * x)
        self.n_deferred_x = n + 1
        if n + 1 == self.rank:
            self._flush_moments()

    def _deferred_moments(self, components: list[int] | None = None, out=None) -> np.ndarray:
        """sum_j w_kj x_j x_j^T over the deferred points, (R, D, D) for the R components (all if
        None), as one product."""
        n = self.n_deferred_x
        points = self.deferred_x[:n]
        weights = self.deferred_w[:, :n] if components is None else self.deferred_w[components, :n]
        R, D = len(weights), points.shape[1]
        weighted = weights[:, None, :] * points.T  # (R, D, n)
        return np.matmul(weighted.reshape(R * D, n), points, out=None if out is None else out.reshape(R * D, D)
                         ).reshape(R, D, D)

    def _current_moments(self, components: list[int] | None = None) -> np.ndarray:
        """s2 with the deferred terms, of these components (all if None): a new array if any term
        is pending; the engine's state unchanged."""
        rows = slice(None) if components is None else components
        if not self.n_deferred_x:
            return self.s2[rows]
        return self.s2[rows] * self.s2_scale[rows, None, None] + self._deferred_moments(components)

    def _flush_moments(self, components: list[int] | None = None) -> None:
        """Add the deferred terms to s2 in place: all, or those of these components only (what
        an exact refactorisation of them reads; the others stay deferred)."""
        n = self.n_deferred_x
        if not n:
            return
        if components is not None:
            settled = self._current_moments(components)
            self.s2[components] = settled
            self.s2_scale[components] = 1.0
            self.deferred_w[components, :n] = 0.0
            self.s2_diagonal[components] = _diagonals(settled)
            return
        s2 = self.s2
        s2 *= self.s2_scale[:, None, None]
        s2 += self._deferred_moments(out=self.scratch)
        self.s2_scale.fill(1.0)
        self.n_deferred_x = 0
        np.copyto(self.s2_diagonal, _diagonals(s2))

    def _flush_precisions(self, precision: np.ndarray) -> None:
        """P_0 <- P_0 - sum_j beta_kj v_kj v_kj^T for each component, in place, as one product."""
        n = self.n_deferred_v
        vectors = self.deferred_v[:, :n]
        precision -= np.matmul(np.swapaxes(vectors * self.deferred_beta[:, :n, None], 1, 2), vectors, out=self.scratch)
        self.n_deferred_v = 0

    def _blend_average(self, shares):
        shares = np.asarray(shares, dtype=np.float64)
        a0, a1, a2 = self.avg
        a0 = np.asarray(a0, dtype=np.float64)
        scratch = np.subtract(self.s2, a2, out=self.scratch)
        scratch *= shares[:, None, None]
        a2 += scratch  # (the average's own array: `_average` copied it from the iterate)
        self.avg = [a0 + shares * (np.asarray(self.s0) - a0), a1 + shares[:, None] * (self.s1 - a1), a2]

    # ---------------------------------------------------------------- exact parameters

    def _factors(self, s0, s1, s2):
        """(centred means, regularised covariances, W = L^-1, log det W, largest variances,
        repaired) of components with these statistics, by Cholesky factorisation of their
        regularised covariances (with the relative floor), repaired as the vectorised path repairs
        one that is not positive definite: what the reported parameters need."""
        mass = np.asarray(s0, dtype=np.float64) + TINY_MASS
        means = s1 / mass[:, None]
        cov = s2 / mass[:, None, None] - means[:, :, None] * means[:, None, :]
        _diagonals(cov)[...] += self.reg_covar
        cov, inverse, log_det_w, largest, repaired = factored(cov, self.reg_covar)
        return means, cov, inverse, log_det_w, largest, repaired

    def _exact(self, s0, s1, s2):
        """(centred means, W, P = W'W, log det, tr P, r, repaired) of components with these
        statistics (`_factors`), and bounds on the largest eigenvalues of each P and each
        regularised covariance (their largest absolute row sums): what the iterate's tracking needs."""
        means, cov, inverse, log_det_w, largest, repaired = self._factors(s0, s1, s2)
        precision = np.matmul(np.swapaxes(inverse, 1, 2), inverse)
        trace = _diagonals(precision).sum(axis=1)
        bound = np.abs(precision).sum(axis=2).max(axis=1)
        spread = np.abs(cov).sum(axis=2).max(axis=1)
        floor = RELATIVE_COVARIANCE_FLOOR * largest[:, 0]
        return means, inverse, precision, -2.0 * log_det_w, trace, self.reg_covar + floor, repaired, bound, spread

    def _constants(self, log_weights, log_det):
        return log_weights - 0.5 * log_det - self.n_features * _HALF_LOG_2PI

    @staticmethod
    def _log_masses(s0):
        with np.errstate(divide="ignore"):
            return np.where(s0 > 0.0, np.log(s0 + TINY_MASS), -math.inf)

    def _parameters(self, s0, s1, s2):
        s0 = np.asarray(s0, dtype=np.float64)
        means, _, precision, log_det, trace, r, repaired, lam, spread = self._exact(s0, s1, s2)
        K = len(s0)
        # A repaired factor is not S + r I: refreshed again at the next update (infinite drift).
        self.track = [log_det.tolist(), trace.tolist(), [0.0] * K, r.tolist(),
                      [math.inf if bad else 0.0 for bad in repaired.tolist()]]
        self.lam, self.spread = lam.tolist(), spread.tolist()
        components = (self._constants(self._log_masses(s0), log_det), means, precision, np.ones(K), np.zeros(K))
        self.n_deferred_v = 0  # (the precisions are exact)
        return components, float(s0.sum()) + K * TINY_MASS

    def _reported_parameters(self, s0, s1, s2):
        s0 = np.asarray(s0, dtype=np.float64)
        means, _, inverse, log_det_w, _, _ = self._factors(s0, s1, s2)  # (no precisions nor bounds)
        return ((self._constants(self._log_masses(s0), -2.0 * log_det_w), means, inverse),
                float(s0.sum()) + len(s0) * TINY_MASS)

    # ---------------------------------------------------------------- inference

    def _centred(self, row) -> np.ndarray:
        return np.array(row, dtype=np.float64) - self.shift

    def _iterate_log_probs(self, parameters, x):
        """(weighted log densities, squared distances, d, P_hat d, d'P_hat d, |P_hat d|^2) under the
        iterate's form, P_hat with its deferred terms."""
        constants, means, precision, g, ge2 = parameters
        d = x - means
        v = np.matmul(precision, d[:, :, None])[:, :, 0]
        n = self.n_deferred_v
        if n:
            vectors = self.deferred_v[:, :n]  # (K, n, D)
            along = np.matmul(vectors, d[:, :, None])[:, :, 0]  # (K, n)
            along *= self.deferred_beta[:, :n]
            v -= np.matmul(along[:, None, :], vectors)[:, 0]
        dv = np.einsum("ki,ki->k", d, v)
        vv = np.einsum("ki,ki->k", v, v)
        distances = g * dv - ge2 * vv
        return constants - 0.5 * distances, distances, d, v, dv, vv

    @staticmethod
    def _reported_log_probs(parameters, x):
        constants, means, inverse = parameters
        z = np.matmul(inverse, (x - means)[:, :, None])[:, :, 0]
        return constants - 0.5 * np.einsum("ki,ki->k", z, z)

    def _labelling_log_probs(self, x):
        reported = self.reported or self._shown_average()
        if reported is None:
            parameters, total = self._iterate_reported()
            return self._iterate_log_probs(parameters, x)[0], total
        return self._reported_log_probs(reported[0], x), reported[1]

    def predict(self, row) -> int:
        return int(np.argmax(self._labelling_log_probs(self._centred(row))[0]))

    def weighted_log_probs(self, row):
        values, total = self._labelling_log_probs(self._centred(row))
        return (values - math.log(total)).tolist()

    # ---------------------------------------------------------------- learning

    def learn_predict(self, row, predict: bool = True, limit: float | None = None) -> int | None:
        """The label under the reported parameters (0 unless `predict`), then one update;
        -1 - label if a component collapsed (the model then repairs it); NOVEL, without an
        update, if the row is farther than `limit` from every active component. What is a number
        per component is plain floats; numpy does what has D or D^2 values a component."""
        x = self._centred(row)
        parameters, _ = self.iterate
        wlp, distances, d, v, dv, vv = self._iterate_log_probs(parameters, x)
        olds = self.s0
        if limit is not None:
            # (novel when every active component is beyond the limit: a NaN distance is not)
            if all(dist > limit for dist, old in zip(distances.tolist(), olds) if old > 0.0):
                return NOVEL
        label = int(np.argmax(self._labelling_log_probs(x)[0])) if predict else 0
        top = float(wlp.max())
        if not -math.inf < top < math.inf:  # (NaN fails too) raised before anything changes
            raise NotLearnable
        exp = math.exp
        r = [exp(value - top) for value in wlp.tolist()]
        norm = sum(r)
        r = [value / norm for value in r]
        self.t += 1
        before = self.count
        self.count = before + 1.0
        halflife, alpha = self.halflife, self.alpha
        gamma = point_step(self.t, RECENCY_ALPHA, halflife)
        share = weight_step(before, 1.0, halflife)
        a, keep, take = [], [], []
        for old, resp in zip(olds, r):
            new = old + share * (resp - old)
            eta = component_step(old * before, resp, alpha, None if halflife is None else halflife * new)
            a.append(new)
            keep.append((1.0 - eta) * new / old if old > 0.0 else 0.0)
            take.append(eta * new)
        keeps, takes = np.array(keep), np.array(take)
        s1 = self.s1
        s1 *= keeps[:, None]
        s1 += takes[:, None] * x
        self._defer_moments(x, keeps, takes)
        self.s0 = a
        self.rho = [p * (1.0 - gamma) + gamma * resp for p, resp in zip(self.rho, r)]
        prior = self._prior_masses()
        total = sum(prior)
        log = math.log
        log_weights = [log(p) if new > 0.0 else -math.inf for p, new in zip(prior, a)]
        self.iterate = (self._updated(parameters, olds, a, keep, take, log_weights, d, v, dv, vv), total)
        if self.t >= self.due:
            self._average()
        lightest = min([new for new in a if new > 0.0], default=math.inf)
        return label if lightest >= COLLAPSE_WEIGHT * total else -1 - label

    def _updated(self, parameters, olds, a, keep, take, log_weights, d, v, dv, vv):
        """The iterate after the update: each component's precision by a Sherman-Morrison
        step, or factored again exactly when the tracking's bounds call for it (as FullEngine)."""
        D = self.n_features
        _, _, precision, g_old, _ = parameters
        log_det, trace, eps, r_old, drift = self.track
        lam, spread_old = self.lam, self.spread
        masses = np.array(a)
        mass = masses + TINY_MASS
        means = self.s1 / mass[:, None]
        diagonal = _diagonals(self.s2) if self.s2_diagonal is None else self.s2_diagonal
        variances = diagonal / mass[:, None] - means * means  # the diagonal of S
        r = (self.reg_covar + RELATIVE_COVARIANCE_FLOOR * (variances.max(axis=1) + self.reg_covar)).tolist()
        log, sqrt = math.log, math.sqrt
        constant = D * _HALF_LOG_2PI
        betas, gs, constants, ge2s = [], [], [], []
        log_dets, traces, epss, drifts, spreads, refresh = [], [], [], [], [], []
        for k, (old, new, kept, taken, g, dv_k, vv_k, dd_k) in enumerate(zip(
                olds, a, keep, take, g_old.tolist(), dv.tolist(), vv.tolist(), np.einsum("ki,ki->k", d, d).tolist())):
            m = new + TINY_MASS
            shrink = kept * (old + TINY_MASS) / m
            rho = taken / m
            cancel = 1.0 + rho * g * dv_k
            e = shrink * (eps[k] - r_old[k]) + r[k]
            # rounding added: 2^-52 times the condition number, at most lambda_max(P) lambda_max(S + r I)
            spread = shrink * spread_old[k] + rho * dd_k + r[k]
            error = drift[k] + g * lam[k] * spread
            # (cancel is 1 or more while P_hat is positive definite: else, exactly again)
            tracked = shrink > 0.5 and 0.0 < cancel < 2.0 and error < DRIFT_BUDGET
            if tracked:
                beta = rho * g / cancel
                g = g / shrink
                determinant = log_det[k] + log(cancel) + D * log(shrink)
            else:
                beta, determinant = 0.0, log_det[k]
            tr = trace[k] - beta * vv_k
            precision_trace = g * tr
            # eps lambda_max(P) and the log det's error, (eps lambda_max(P)) (eps tr P) / 2, within
            # FullEngine's bounds (eps tr P at most FIRST_ORDER_LIMIT)
            if not (tracked and precision_trace > 0.0 and g < SCALE_LIMIT
                    and abs(e) * sqrt(g * lam[k]) * sqrt(abs(precision_trace)) < FIRST_ORDER_LIMIT):
                refresh.append(k)
            betas.append(beta)
            gs.append(g)
            constants.append(log_weights[k] - 0.5 * (determinant + e * precision_trace) - constant)
            ge2s.append(e * g * g)
            spreads.append(spread)
            log_dets.append(determinant)
            traces.append(tr)
            epss.append(e)
            drifts.append(error)
        # the rank-one terms deferred, or added now (in place: the old iterate's precision is this
        # update's to replace; the outer products by einsum, half the time of a broadcast multiply)
        n = self.n_deferred_v
        if self.rank:
            self.deferred_v[:, n] = v
            self.deferred_beta[:, n] = betas
            self.n_deferred_v = n + 1
        else:
            precision -= np.einsum("ki,kj->kij", np.array(betas)[:, None] * v, v, out=self.scratch)
        if refresh:
            lam = list(lam)
            self._flush_moments(refresh)
            exact_means, _, exact_precision, exact_log_det, exact_trace, exact_r, repaired, largest, widest = (
                self._exact(masses[refresh], self.s1[refresh], self.s2[refresh]))
            means[refresh], precision[refresh] = exact_means, exact_precision
            self.deferred_beta[refresh, : self.n_deferred_v] = 0.0  # (exact: no deferred term is theirs)
            for j, k in enumerate(refresh):
                lam[k], spreads[k] = float(largest[j]), float(widest[j])
                log_dets[k], traces[k], epss[k], r[k] = float(exact_log_det[j]), float(exact_trace[j]), 0.0, float(exact_r[j])
                constants[k] = self._constants(log_weights[k], log_dets[k])
                gs[k], ge2s[k] = 1.0, 0.0
                drifts[k] = math.inf if repaired[j] else 0.0
        if self.rank and self.n_deferred_v == self.rank:
            self._flush_precisions(precision)
        self.track = [log_dets, traces, epss, r, drifts]
        self.lam, self.spread = lam, spreads
        return np.array(constants), means, precision, np.array(gs), np.array(ge2s)
