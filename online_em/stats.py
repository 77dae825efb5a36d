"""Sufficient statistics of a Gaussian mixture, and the parameters they determine.

The statistics of component k over a set of points, given responsibilities r, are

* ``s0[k] = sum r_k``                               (mass)
* ``s1[k] = sum r_k (x - c)``                       (first moment)
* ``s2[k] = sum r_k (x - c)(x - c)^T``              (``full``: a D x D matrix)
  ``sum r_k (x - c)^2`` (``diag``: D values), ``sum r_k |x - c|^2`` (``spherical``: one value),
  or ``sum_k`` of the full matrices (``tied``: one D x D matrix shared by every component).

They are taken about a fixed *shift* c (for instance the warm-up mean), so that
``s2/s0 - m m^T`` does not cancel catastrophically for data far from the origin. They are
additive: the statistics of two disjoint sets of points are the sum of theirs, so partitions can
be reduced in any grouping. Online EM keeps a running *average* of them and blends each batch in
with a step size (`SufficientStatistics.blend`).

>>> import numpy as np
>>> X = np.array([[0.0], [1.0], [10.0], [11.0]])
>>> resp = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
>>> stats = SufficientStatistics.from_batch(X, resp, shift=np.zeros(1), covariance_type="diag")
>>> params = stats.to_parameters(reg_covar=0.0)
>>> params.weights.tolist(), params.means.ravel().round(6).tolist(), params.covariances.ravel().round(6).tolist()
([0.5, 0.5], [0.5, 10.5], [0.25, 0.25])

"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from . import steps

__all__ = ["COVARIANCE_TYPES", "TINY_MASS", "SufficientStatistics", "MixtureParameters", "average_every", "factored",
           "lower_inverse"]

COVARIANCE_TYPES = ("full", "diag", "spherical", "tied")

_LOG_2PI = float(np.log(2.0 * np.pi))
# scikit-learn adds 10 * eps to every component's mass so that an empty component never divides by 0.
TINY_MASS = float(10.0 * np.finfo(np.float64).eps)  # a Python float: numpy scalars slow plain arithmetic
# Full and tied covariances also get this fraction of their largest variance on the diagonal, so
# that they stay positive definite in float64 whatever the data's scale (reg_covar is absolute).
RELATIVE_COVARIANCE_FLOOR = 1e-10
# The Polyak average takes in the iterate every this many points (batches count their size), so
# that one-point learning does not pay for averaging and re-deriving parameters at every point;
# in more dimensions every D points (`average_every`).
AVERAGE_EVERY = 16


def average_every(n_features: int) -> int:
    """Points between the Polyak average's blends: AVERAGE_EVERY, or D beyond. Each blend
    refreshes the average's exact factors, O(K D^3) with full covariances: every D points that is
    O(K D^2) a point, the order of a one-point update (in 64 dimensions, K = 10, every 16 points it
    was 50 us of the 380 a point took).

    >>> average_every(1), average_every(16), average_every(64)
    (16, 16, 64)

    """
    return max(AVERAGE_EVERY, n_features)
# Rows per chunk of an E-step (`expected_statistics`, log densities and responsibilities): at
# most E_STEP_CHUNK_ROWS, and few enough that each GEMM of a chunk does at most E_STEP_CHUNK_WORK
# multiply-adds (see `_chunk_rows`). OpenBLAS splits a GEMM of 2^19 or more across its threads,
# and on a busy 2-core machine the wait for the second thread made batches of 8,192 rows 3 to 10
# times slower with 2 threads than with 1 (D=10 K=5, full or diag, in one GEMM); chunks under the
# split run alike on 1 thread or 2 (benchmarks/run.py, "2 BLAS threads vs 1"). 3/4 of the split
# (D=10 K=5 full in chunks of 1,191 rows) keeps a margin; smaller chunks cost more per row on an
# idle machine. E_STEP_MIN_CHUNK_ROWS bounds the per-chunk overhead of large models, whose GEMMs
# then split as before.
E_STEP_CHUNK_ROWS = 16384
E_STEP_CHUNK_WORK = 3 << 17
E_STEP_MIN_CHUNK_ROWS = 256
# Diagonal (or one-feature) models with at most this many means recover their parameters in
# plain Python after each batch (see `_small_diagonal_parameters`).
SMALL_DIAGONAL_SIZE = 12
_FLOAT_TINY = float(np.finfo(np.float64).tiny)
# Variances below this (the largest of a component's) would overflow the precisions' products.
_EXPANSION_MIN_VARIANCE = 1e-280
# The exponential-family E-step holds at most about this many values of features at once.
E_STEP_CHUNK_VALUES = 1 << 22
# The expanded quadratic form of `MixtureParameters.natural_parameters` is used while the terms
# that cancel in it stay below this (so that rounding costs under about 1e-8 nats).
EXPANSION_MAX_SCALE = 1e6
# A component whose weight falls below this is dead: the model re-seeds it on a poorly explained point.
COLLAPSE_WEIGHT = 1e-5


def check_covariance_type(covariance_type: str) -> str:
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(
            f"covariance_type must be one of {', '.join(map(repr, COVARIANCE_TYPES))}, "
            f"got {covariance_type!r}"
        )
    return covariance_type


def _chunk_rows(work_per_row: int, values_per_row: int) -> int:
    """Rows per chunk of an E-step whose GEMMs do `work_per_row` multiply-adds a row and whose
    temporaries hold `values_per_row` values a row: within E_STEP_CHUNK_WORK and
    E_STEP_CHUNK_VALUES, but at least E_STEP_MIN_CHUNK_ROWS, and at most E_STEP_CHUNK_ROWS."""
    rows = min(E_STEP_CHUNK_WORK // max(work_per_row, 1), E_STEP_CHUNK_VALUES // max(values_per_row, 1))
    return min(E_STEP_CHUNK_ROWS, max(E_STEP_MIN_CHUNK_ROWS, rows))


def second_moment_shape(covariance_type: str, n_components: int, n_features: int) -> tuple:
    """The shape of ``s2`` for a covariance type."""
    return {
        "full": (n_components, n_features, n_features),
        "diag": (n_components, n_features),
        "spherical": (n_components,),
        "tied": (n_features, n_features),
    }[check_covariance_type(covariance_type)]


# _SPURIOUS_GEMM_INVALID: an inactive component's natural parameters hold the constant -inf (log of
# a weight of 0), so its log densities are -inf. OpenBLAS's GEMM kernels multiply padding zeros
# into it, which raises the invalid flag although no entry of the product is NaN, and numpy 2.4
# reports that flag: the E-step's GEMMs with natural parameters ignore it.


@functools.lru_cache(maxsize=64)
def _triangle(n_features: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row and column of each entry of the upper triangle of a D x D matrix, row by row, and the
    factor that turns those entries of a precision into natural parameters (-1/2 on the
    diagonal, -1 off it: x'Px counts each off-diagonal pair twice). Cached: `np.triu_indices`
    costs more than a whole small E-step."""
    rows, cols = np.triu_indices(n_features)
    factor = np.where(rows == cols, -0.5, -1.0)
    for array in (rows, cols, factor):
        array.flags.writeable = False
    return rows, cols, factor


def expansion_pays(covariance_type: str, n_components: int, n_features: int) -> bool:
    """Whether E-steps are faster in the expanded form (`moment_features`) than by whitening.

    With full (or tied) covariances the expanded form has D (D + 1) / 2 second-moment features a
    point, against the K D whitened coordinates (D for tied) of the direct form; it makes fewer
    passes over memory, so it wins while D + 1 <= 4 K (the crossover measured with the scaling
    benchmark: K=5 wins up to D of about 20, loses at 50 by 1.8 times). Diagonal and spherical
    forms have at most 2 D + 1 features and always win.
    """
    if covariance_type not in ("full", "tied") or n_features <= 1:
        return True
    return n_features + 1 <= 4 * (1 if covariance_type == "tied" else n_components)


def moment_features(X: np.ndarray, shift: np.ndarray, covariance_type: str) -> np.ndarray:
    """The per-point sufficient statistics T(x) of a Gaussian component, one column a point.

    With c the shift, the rows are 1, the D coordinates of x - c, and the second moments of x - c
    the covariance type needs: the upper triangle of (x - c)(x - c)^T row by row (``full`` and
    ``tied``, and any type when D = 1: then just (x - c)^2), its diagonal (``diag``) or its trace
    (``spherical``). A Gaussian is an exponential family in T: log w_k N(x) = eta_k . T(x) for the
    natural parameters eta_k of `MixtureParameters.natural_parameters`, so that a single GEMM
    gives every component's log density (E-step), and another, responsibilities times T, every
    statistic of a batch (M-step). The array is (rows, N), so that each row is contiguous.

    >>> moment_features(np.array([[1.0, 2.0]]), np.zeros(2), "full").ravel().tolist()
    [1.0, 1.0, 2.0, 1.0, 2.0, 4.0]

    """
    X = np.asarray(X, dtype=np.float64)
    N, D = X.shape
    full = covariance_type in ("full", "tied") and D > 1
    rows = 1 + D + (D * (D + 1) // 2 if full else 1 if covariance_type == "spherical" else D)
    T = np.empty((rows, N))
    T[0] = 1.0
    Xc = np.subtract(X.T, shift[:, None], out=T[1 : 1 + D])
    if full:
        start = 1 + D
        for i in range(D):  # row i of the triangle: x_i times x_i..x_D, contiguous rows
            np.multiply(Xc[i:], Xc[i], out=T[start : start + D - i])
            start += D - i
    elif covariance_type == "spherical" and D > 1:
        np.einsum("dn,dn->n", Xc, Xc, out=T[1 + D])
    else:
        np.multiply(Xc, Xc, out=T[1 + D :])
    return T


@dataclasses.dataclass
class SufficientStatistics:
    """Per-component sufficient statistics (sums or averages) about a fixed shift.

    Parameters
    ----------
    covariance_type
        One of ``full``, ``diag``, ``spherical`` or ``tied``.
    shift
        The point c the moments are taken about, shape (D,).
    s0
        Mass of each component, shape (K,).
    s1
        First moments about the shift, shape (K, D).
    s2
        Second moments about the shift, shape given by `second_moment_shape`.
    count
        How many points the statistics summarise: the total mass of sums; running averages
        (whose masses sum to one) keep it too, as the clock of `learn`.

    """

    covariance_type: str
    shift: np.ndarray
    s0: np.ndarray
    s1: np.ndarray
    s2: np.ndarray
    count: float = 0.0

    @property
    def n_components(self) -> int:
        return self.s0.shape[0]

    @property
    def n_features(self) -> int:
        return self.shift.shape[0]

    @classmethod
    def from_batch(
        cls, X: np.ndarray, resp: np.ndarray, shift: np.ndarray, covariance_type: str
    ) -> SufficientStatistics:
        """The summed statistics of the rows of X with responsibilities resp (N x K)."""
        check_covariance_type(covariance_type)
        Xc = np.asarray(X, dtype=np.float64) - shift
        s0 = resp.sum(axis=0)
        s1 = resp.T @ Xc
        if covariance_type == "full":
            # One GEMM, (K D, N) @ (N, D), for every component's scatter at once.
            K, (N, D) = resp.shape[1], Xc.shape
            weighted = (resp[:, :, None] * Xc[:, None, :]).reshape(N, K * D)
            s2 = (weighted.T @ Xc).reshape(K, D, D)
            s2 = 0.5 * (s2 + s2.transpose(0, 2, 1))  # exactly symmetric, as every s2 is kept
        elif covariance_type == "tied":
            s2 = Xc.T @ Xc
        elif covariance_type == "diag":
            s2 = resp.T @ (Xc * Xc)
        else:
            s2 = resp.T @ np.einsum("nd,nd->n", Xc, Xc)
        return cls(covariance_type, np.array(shift, dtype=np.float64), s0, s1, s2, float(len(Xc)))

    @classmethod
    def from_moments(
        cls, moments: np.ndarray, shift: np.ndarray, covariance_type: str, count: float
    ) -> SufficientStatistics:
        """The statistics from sums of `moment_features` weighted by each component's
        responsibilities, shape (K, rows): unpacks the second moments."""
        D = shift.shape[0]
        s0, s1, second = moments[:, 0], moments[:, 1 : 1 + D], moments[:, 1 + D :]
        if covariance_type == "full" and D == 1:
            s2 = second.reshape(-1, 1, 1)
        elif covariance_type in ("full", "tied"):
            K = moments.shape[0]
            rows, cols, _ = _triangle(D)
            s2 = np.empty((K, D, D))
            s2[:, rows, cols] = second
            s2[:, cols, rows] = second
            if covariance_type == "tied":  # the total scatter: responsibilities sum to one
                s2 = s2.sum(axis=0)
        elif covariance_type == "spherical":
            s2 = second[:, 0]
        else:
            s2 = second
        return cls(covariance_type, shift, s0, s1, s2, float(count))  # shift: shared, never modified

    def copy(self) -> SufficientStatistics:
        return SufficientStatistics(
            self.covariance_type,
            self.shift.copy(),
            self.s0.copy(),
            self.s1.copy(),
            self.s2.copy(),
            self.count,
        )

    def components(self, index) -> SufficientStatistics:
        """The statistics of the components `index` (an index array or list) alone, with the
        same count; not for tied covariances, whose scatter all components share.

        >>> import numpy as np
        >>> stats = SufficientStatistics("diag", np.zeros(1), np.array([0.5, 0.0, 0.5]),
        ...     np.array([[0.0], [0.0], [5.0]]), np.array([[1.0], [0.0], [51.0]]), 10.0)
        >>> part = stats.components([0, 2])
        >>> part.s0.tolist(), stats.with_components([0, 2], part).s1.ravel().tolist()
        ([0.5, 0.5], [0.0, 0.0, 5.0])

        """
        if self.covariance_type == "tied":
            raise ValueError("tied statistics share one scatter: no component stands alone")
        return SufficientStatistics(self.covariance_type, self.shift.copy(), self.s0[index], self.s1[index],
                                    self.s2[index], self.count)

    def with_components(self, index, part: SufficientStatistics) -> SufficientStatistics:
        """A copy with the components `index` replaced by those of `part` (and its count)."""
        out = self.copy()
        out.s0[index], out.s1[index], out.s2[index] = part.s0, part.s1, part.s2
        out.count = part.count
        return out

    def _check_compatible(self, other: SufficientStatistics) -> None:
        if self.covariance_type != other.covariance_type:
            raise ValueError(
                f"cannot combine {self.covariance_type!r} and {other.covariance_type!r} statistics"
            )
        if self.s1.shape != other.s1.shape:
            raise ValueError(f"cannot combine statistics of shapes {self.s1.shape} and {other.s1.shape}")
        if self.shift is not other.shift and not np.array_equal(self.shift, other.shift):
            raise ValueError("cannot combine statistics taken about different shifts")

    def merge(self, other: SufficientStatistics) -> SufficientStatistics:
        """The statistics of the union of two disjoint sets of points (sums add up).

        >>> import numpy as np
        >>> X = np.arange(6.0).reshape(3, 2)
        >>> resp = np.full((3, 2), 0.5)
        >>> shift = np.zeros(2)
        >>> whole = SufficientStatistics.from_batch(X, resp, shift, "full")
        >>> parts = SufficientStatistics.from_batch(X[:1], resp[:1], shift, "full").merge(
        ...     SufficientStatistics.from_batch(X[1:], resp[1:], shift, "full"))
        >>> bool(np.allclose(whole.s2, parts.s2)), parts.count
        (True, 3.0)

        """
        self._check_compatible(other)
        return SufficientStatistics(
            self.covariance_type,
            self.shift.copy(),
            self.s0 + other.s0,
            self.s1 + other.s1,
            self.s2 + other.s2,
            self.count + other.count,
        )

    __add__ = merge

    def average(self) -> SufficientStatistics:
        """Statistics per point (sums divided by the count), which keep their count: the
        running statistics `learn` updates."""
        n = self.count if self.count > 0 else 1.0
        return SufficientStatistics(
            self.covariance_type, self.shift.copy(), self.s0 / n, self.s1 / n, self.s2 / n, self.count
        )

    def learn(self, batch: SufficientStatistics, alpha: float, halflife: float | None = None) -> None:
        """In place: take in the summed statistics `batch` of `batch.count` points, the online-EM
        update of running statistics (averages over their `count` points).

        The masses stay exact running averages, so the weights are each component's share of all
        the points seen. Each component's moments move toward the batch's on its own clock: by
        `steps.component_steps` of its mass and of the mass the batch gives it, so a component
        that takes in nothing keeps its moments however long the stream, and one born late
        learns as fast as one of its mass born early. (Tied covariances: the shared scatter is
        on the clock of all the points.) With a `halflife` (in points), the masses are
        exponentially weighted averages instead (`steps.weight_step`) and each component's
        moments forget with half-life ``halflife * weight`` of its own mass: points weigh half
        after `halflife` more points of the stream.

        >>> import numpy as np
        >>> shift = np.zeros(1)
        >>> running = SufficientStatistics("diag", shift, np.array([0.5, 0.5]),
        ...     np.array([[0.0], [5.0]]), np.array([[1.0], [51.0]]), count=100.0)
        >>> batch = SufficientStatistics.from_batch(np.array([[1.0], [2.0]]), np.array([[1.0, 0.0], [1.0, 0.0]]), shift, "diag")
        >>> running.learn(batch, alpha=1.0)
        >>> running.count, running.s0.round(4).tolist(), (running.s1[:, 0] / running.s0).round(4).tolist()
        (102.0, [0.5098, 0.4902], [0.0577, 10.0])

        """
        self._check_compatible(batch)
        m = batch.count
        if m <= 0:
            return
        total = self.count
        mass, taken = self.s0 * total, batch.s0
        s0 = self.s0 + steps.weight_step(total, m, halflife) * (taken / m - self.s0)
        eta = steps.component_steps(mass, taken, alpha, None if halflife is None else halflife * s0)
        keep = np.divide((1.0 - eta) * s0, self.s0, out=np.zeros_like(s0), where=self.s0 > 0.0)
        take = np.divide(eta * s0, taken, out=np.zeros_like(s0), where=taken > 0.0)
        if self.covariance_type == "tied":
            # The shared within-component scatter: each component's share of it blended with
            # its step (the batch's pooled scatter standing for the component's), plus what the
            # move of each mean adds; exact for alpha = 1, as pooling scatters is.
            kept, learned = (s0 * (1.0 - eta)).sum(), (s0 * eta).sum()
            within = kept * _within_scatter(self.s0, self.s1, self.s2)
            within += (learned / m) * _within_scatter(batch.s0, batch.s1, batch.s2)
            moved = (taken > 0.0) & (self.s0 > 0.0)
            gap = batch.s1[moved] / taken[moved, None] - self.s1[moved] / self.s0[moved, None]
            within += (gap.T * (s0 * eta * (1.0 - eta))[moved]) @ gap
        self.s1 *= keep[:, None]
        self.s1 += take[:, None] * batch.s1
        self.s0 = s0
        self.count = total + m
        if self.covariance_type == "tied":
            self.s2 = _within_scatter(s0, self.s1, within, sign=1.0)
        else:
            shape = (-1,) + (1,) * (self.s2.ndim - 1)
            self.s2 *= keep.reshape(shape)
            self.s2 += take.reshape(shape) * batch.s2

    def to_parameters(self, reg_covar: float) -> MixtureParameters:
        """Recover weights, means and covariances (plus `reg_covar`), and precision factors.

        Run after every batch, on K x D x D arrays: written for few numpy calls, which cost more
        than their arithmetic at these sizes.
        """
        if self.s1.size <= SMALL_DIAGONAL_SIZE and (
            self.covariance_type == "diag" or (self.n_features == 1 and self.covariance_type != "tied")
        ):
            return _small_diagonal_parameters(self, reg_covar)
        s0 = self.s0 + TINY_MASS
        total = s0.sum()
        # An inactive component (no mass) weighs 0, unless none has mass (then all weigh alike).
        weights = np.where(self.s0 > 0.0, s0, 0.0) if (self.s0 > 0.0).any() else s0
        weights = weights / weights.sum()
        inverse_mass = (1.0 / s0)[:, None]
        centred_means = self.s1 * inverse_mass
        D = self.n_features
        if self.covariance_type == "full":
            cov = self.s2 * inverse_mass[:, :, None]
            cov -= centred_means[:, :, None] * centred_means[:, None, :]
            _diagonal(cov)[...] += reg_covar
            if D > 1:
                return _full_parameters(weights, centred_means, cov, self.shift, reg_covar)
        elif self.covariance_type == "tied":
            cov = (self.s2 - (self.s1.T * inverse_mass[:, 0]) @ self.s1) / total
            cov = 0.5 * (cov + cov.T)
            _diagonal(cov)[...] += reg_covar
        elif self.covariance_type == "diag":
            cov = self.s2 * inverse_mass
            cov -= centred_means * centred_means
            np.maximum(cov, 0.0, out=cov)
            cov += reg_covar
            return _diag_parameters(weights, centred_means, cov, self.shift)
        else:
            cov = self.s2 / s0 - np.einsum("kd,kd->k", centred_means, centred_means)
            cov = np.maximum(cov / D, 0.0) + reg_covar
        centred_means += self.shift
        return MixtureParameters.from_covariances(
            self.covariance_type, weights, centred_means, cov, self.shift, reg_covar, _owned=True
        )


def _within_scatter(s0: np.ndarray, s1: np.ndarray, s2: np.ndarray, sign: float = -1.0) -> np.ndarray:
    """Tied statistics: the total second moment s2 (D, D) less (or with `sign` +1, plus) the
    part the component means explain, sum_k s1_k s1_k^T / s0_k over components with mass."""
    live = s0 > 0.0
    means = s1[live] / s0[live, None]
    within = s2 + sign * (means.T * s0[live]) @ means
    return 0.5 * (within + within.T)


def _full_parameters(
    weights: np.ndarray, centred_means: np.ndarray, cov: np.ndarray, shift: np.ndarray, reg_covar: float
) -> MixtureParameters:
    """`MixtureParameters.from_covariances` for full covariances (D > 1) that are the caller's to
    modify, with the natural parameters of the next E-step from the same factors: the same
    results in about half the numpy calls of the two apart (this runs after every batch)."""
    K, D = centred_means.shape
    cov, inverse, log_det, largest, _ = factored(cov, reg_covar)
    params = MixtureParameters(
        "full", weights, centred_means + shift, cov, np.swapaxes(inverse, 1, 2), log_det, shift
    )
    eta = half_quadratic = None
    # Beyond these scales the precisions' squares overflow or the expansion loses precision: the
    # E-steps then whiten directly (see `MixtureParameters.natural_parameters`).
    spread = np.abs(centred_means).sum(axis=1).max()
    if (
        expansion_pays("full", K, D)
        and largest.min() > _EXPANSION_MIN_VARIANCE
        and spread * spread <= EXPANSION_MAX_SCALE * largest.min()
    ):
        eta, largest_precision, half_quadratic = _natural_full(weights, log_det, centred_means, inverse)
        eta = _precise_enough(eta, largest_precision, spread)
    params._set_natural(eta, half_quadratic)
    return params


def factored(cov: np.ndarray, reg_covar: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Full (or tied) covariances, C-contiguous and the caller's to modify: add the floor of
    RELATIVE_COVARIANCE_FLOOR times each one's largest variance, and factor them. Returns the
    covariances (as repaired, if any was not positive definite), W = L^-1 for their Cholesky
    factors L (the precision is W'W), log det W, each one's largest variance before the floor
    (keeping its axis), and which were repaired.

    >>> cov = np.array([[[4.0, 0.0], [0.0, 1.0]], [[1.0, 2.0], [2.0, 1.0]]])  # the second is not
    >>> _, W, log_det, largest, repaired = factored(cov, 1e-6)
    >>> round(float(log_det[0]), 6), largest.ravel().tolist(), repaired.tolist()
    (-0.693147, [4.0, 1.0], [False, True])

    """
    diagonal = _diagonal(cov)
    largest = diagonal.max(axis=-1, keepdims=True)
    diagonal += RELATIVE_COVARIANCE_FLOOR * largest
    try:
        chol = np.linalg.cholesky(cov)
        repaired = np.zeros(cov.shape[:-2], dtype=bool)
    except np.linalg.LinAlgError:
        chol, repaired = _repaired_cholesky(cov, reg_covar)
        cov = np.matmul(chol, np.swapaxes(chol, -1, -2))  # as repaired
    return cov, lower_inverse(chol), -np.log(_diagonal(chol)).sum(axis=-1), largest, repaired


# `lower_inverse` inverts blocks of at most this many rows with LAPACK's general inverse.
LOWER_INVERSE_BLOCK = 32


def lower_inverse(L: np.ndarray) -> np.ndarray:
    """The inverses of lower-triangular matrices L (..., D, D), by halves: [[A, 0], [B, C]]^-1 =
    [[A^-1, 0], [-C^-1 B A^-1, C^-1]]. numpy has no triangular inverse, and its general one
    ignores the zeros: for ten factors in 64 dimensions 789 us, by halves 484 us (the same to
    1e-16 relative). Up to LOWER_INVERSE_BLOCK rows it is `np.linalg.inv`, exactly.

    >>> L = np.array([[2.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.5, -1.0, 4.0]])
    >>> bool(np.allclose(lower_inverse(L) @ L, np.eye(3)))
    True

    """
    D = L.shape[-1]
    if D <= LOWER_INVERSE_BLOCK:
        return np.linalg.inv(L)
    h = D // 2
    upper, lower = lower_inverse(L[..., :h, :h]), lower_inverse(L[..., h:, h:])
    W = np.zeros_like(L)
    W[..., :h, :h] = upper
    W[..., h:, h:] = lower
    W[..., h:, :h] = -(lower @ L[..., h:, :h]) @ upper
    return W


def _responsibilities_in_place(wlp: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Weighted log densities (K, N) to responsibilities in place, by log-sum-exp with one exp;
    `top` (N,) is their maximum over the components (set to 0 where it is not finite). Returns
    the sums (N,) of exp(wlp - top): each row's log density is log(sums) + top."""
    finite = np.isfinite(top)
    if not finite.all():
        top[~finite] = 0.0
    wlp -= top
    np.exp(wlp, out=wlp)
    norm = wlp.sum(axis=0)
    wlp /= norm
    return norm


def _natural_constants(
    weights: np.ndarray, log_det: np.ndarray, n_features: int, half_quadratic: np.ndarray
) -> np.ndarray:
    """The natural parameters' constants log w + log det P^(1/2) - D log(2 pi) / 2 - m'Pm / 2,
    from `half_quadratic` = m'Pm / 2 (the weights come last to a set of parameters)."""
    with np.errstate(divide="ignore"):  # an inactive component (weight 0): -inf
        return np.log(weights) + log_det - 0.5 * n_features * _LOG_2PI - half_quadratic


def _natural_full(
    weights: np.ndarray, log_det: np.ndarray, centred_means: np.ndarray, inverse: np.ndarray
) -> tuple[np.ndarray, float, np.ndarray]:
    """Natural parameters (see `MixtureParameters.natural_parameters`) of full covariances whose
    precisions are W'W for the (K, D, D) factors `inverse` (W = L^-1 for the Cholesky factor L),
    the largest entry of the precisions (max |P_ij| <= max P_ii for a positive definite P), and
    each m'Pm / 2."""
    K, D = centred_means.shape
    precision = np.matmul(np.swapaxes(inverse, 1, 2), inverse)
    whitened = np.matmul(inverse, centred_means[:, :, None])  # W m, so that m'Pm = |W m|^2
    rows, cols, factor = _triangle(D)
    eta = np.empty((K, 1 + D + len(rows)))
    half_quadratic = 0.5 * (whitened * whitened).sum(axis=(1, 2))
    eta[:, 0] = _natural_constants(weights, log_det, D, half_quadratic)
    np.matmul(centred_means[:, None, :], precision, out=eta[:, None, 1 : 1 + D])  # (P m)' = m'P
    np.multiply(precision[:, rows, cols], factor, out=eta[:, 1 + D :])
    return eta, _diagonal(precision).max(), half_quadratic


def _natural_diagonal(
    weights: np.ndarray, log_det: np.ndarray, centred_means: np.ndarray, precisions: np.ndarray, second: int
) -> tuple[np.ndarray, float, np.ndarray]:
    """Natural parameters of diagonal precisions (K, D), or ones that broadcast to that shape, with
    `second` second-moment features (D, or 1 if spherical), the largest precision, and each m'Pm / 2."""
    K, D = centred_means.shape
    eta = np.empty((K, 1 + D + second))
    pm = np.multiply(precisions, centred_means, out=eta[:, 1 : 1 + D])
    np.multiply(precisions[:, :second], -0.5, out=eta[:, 1 + D :])
    half_quadratic = 0.5 * (pm * centred_means).sum(axis=1)
    eta[:, 0] = _natural_constants(weights, log_det, D, half_quadratic)
    return eta, precisions.max(), half_quadratic


def _precise_enough(eta: np.ndarray, largest_precision: float, spread: float) -> np.ndarray | None:
    """eta, or None where the expanded form would lose precision or is not finite: the terms
    that cancel near each mean are at most |m|'|P||m| <= |m|_1^2 max|P| (`spread` is the largest
    |m|_1), and a sum that is not finite flags any entry that is not."""
    if spread * spread * largest_precision <= EXPANSION_MAX_SCALE and math.isfinite(eta[:, 1:].sum()):
        # The constants are -inf for an inactive component (weight 0): its log density is -inf;
        # NaN and +inf (where `< inf` is False) are not usable.
        if (eta[:, 0] < math.inf).all():
            return eta
    return None


def _diag_parameters(
    weights: np.ndarray, centred_means: np.ndarray, variances: np.ndarray, shift: np.ndarray
) -> MixtureParameters:
    """`MixtureParameters.from_covariances` for diagonal covariances that are the caller's to
    modify, with the natural parameters of the next E-step: the same results in fewer numpy
    calls (this runs after every batch)."""
    D = centred_means.shape[1]
    np.maximum(variances, _FLOAT_TINY, out=variances)
    factors = 1.0 / np.sqrt(variances)
    log_det = np.log(factors).sum(axis=1)
    params = MixtureParameters(
        "diag", weights, centred_means + shift, variances, factors, log_det, shift
    )
    eta, largest_precision, half_quadratic = _natural_diagonal(weights, log_det, centred_means, factors * factors, D)
    params._set_natural(_precise_enough(eta, largest_precision, np.abs(centred_means).sum(axis=1).max()), half_quadratic)
    return params


def _small_diagonal_parameters(stats: SufficientStatistics, reg_covar: float) -> MixtureParameters:
    """`to_parameters` for diagonal covariances, or one feature, with few values (at most
    SMALL_DIAGONAL_SIZE means): the same arithmetic on Python floats, with the natural
    parameters of the next E-step, since some thirty numpy calls on arrays of a few values cost
    more than all of it (the 1-D labeler runs this after every block)."""
    K, D = stats.s1.shape
    log, sqrt = math.log, math.sqrt
    half_log_2pi = 0.5 * D * _LOG_2PI
    masses = [m + TINY_MASS for m in stats.s0.tolist()]
    total = sum(masses)
    # full with one feature: no clipping at 0 before reg_covar, a floor on what is not positive
    clip = stats.covariance_type != "full"
    floor = max(reg_covar, _FLOAT_TINY)
    firsts, seconds = stats.s1.ravel().tolist(), stats.s2.ravel().tolist()
    weights, means, variances, factors, log_dets, eta, half_quadratics = [], [], [], [], [], [], []
    largest_precision = spread = 0.0
    lives = stats.s0.tolist()
    if max(lives) > 0.0:  # an inactive component (no mass) weighs 0, unless none has mass
        total = sum(mass for mass, live in zip(masses, lives) if live > 0.0)
    else:
        lives = masses
    for k, (mass, live) in enumerate(zip(masses, lives)):
        inverse = 1.0 / mass
        weight = mass / total if live > 0.0 else 0.0
        log_det = 0.0
        row = [0.0]
        curvature = []
        offset = 0.0
        for d in range(k * D, k * D + D):  # one feature at a time: plain floats
            mean = firsts[d] * inverse
            var = seconds[d] * inverse - mean * mean
            if clip:
                var = max((var if var > 0.0 else 0.0) + reg_covar, _FLOAT_TINY)
                root = sqrt(var)
            else:
                var += reg_covar
                root = sqrt(var if var > 0.0 else floor)
                var = root * root
            factor = 1.0 / root
            precision = 1.0 / var
            log_det += log(factor)
            offset += precision * mean * mean
            row.append(precision * mean)
            curvature.append(-0.5 * precision)
            largest_precision = max(largest_precision, precision)
            means.append(mean)
            variances.append(var)
            factors.append(factor)
        half_quadratics.append(0.5 * offset)
        row[0] = (log(weight) if weight > 0.0 else -math.inf) + log_det - half_log_2pi - half_quadratics[-1]
        eta.append(row + curvature)
        spread = max(spread, sum(map(abs, means[k * D :])))
        weights.append(weight)
        log_dets.append(log_det)
    shape = {"full": (K, 1, 1), "spherical": (K,), "diag": (K, D)}[stats.covariance_type]
    params = MixtureParameters(
        stats.covariance_type,
        np.array(weights),
        np.array(means).reshape(K, D) + stats.shift,
        np.array(variances).reshape(shape),
        np.array(factors).reshape(shape),
        np.array(log_dets),
        stats.shift,
    )
    # As `_precise_enough`, on the floats: finite but for constants of -inf (a weight of 0).
    usable = (
        spread * spread * largest_precision <= EXPANSION_MAX_SCALE
        and math.isfinite(sum(value for row in eta for value in row[1:]))
        and all(row[0] < math.inf for row in eta)
    )
    params._set_natural(np.array(eta) if usable else None, np.array(half_quadratics))
    return params


def _diagonal(matrices: np.ndarray) -> np.ndarray:
    """A writable view of the diagonals of a (..., D, D) C-contiguous stack of matrices."""
    D = matrices.shape[-1]
    return matrices.reshape(matrices.shape[:-2] + (D * D,))[..., :: D + 1]


def _repaired_cholesky(cov: np.ndarray, reg_covar: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower Cholesky factors of a stack of covariances that failed as a whole, matrix by matrix:
    one that fails (rounding, or a component that collapsed) has its eigenvalues clipped at
    `reg_covar` rather than raising, so that the model always has usable parameters. Also which
    were repaired."""
    stack = cov.reshape((-1,) + cov.shape[-2:])
    chol = np.empty_like(stack)
    failed = np.zeros(len(stack), dtype=bool)
    floor = max(reg_covar, np.finfo(np.float64).tiny)
    for k, matrix in enumerate(stack):
        try:
            chol[k] = np.linalg.cholesky(matrix)
        except np.linalg.LinAlgError:
            failed[k] = True
            values, vectors = np.linalg.eigh(matrix)
            scale = max(float(np.abs(values).max()), floor)
            values = np.maximum(values, max(floor, scale * 1e-12))
            repaired = (vectors * values) @ vectors.T
            repaired = 0.5 * (repaired + repaired.T)
            try:
                chol[k] = np.linalg.cholesky(repaired)
            except np.linalg.LinAlgError:
                chol[k] = np.diag(np.sqrt(np.maximum(np.diag(repaired), floor)))
    return chol.reshape(cov.shape), failed.reshape(cov.shape[:-2])


class _WeightFree:
    """What E-steps under a set of parameters reuse that their weights do not enter: the natural
    parameters but their constants, each m'Pm / 2 (to redo the constants), and the whitening.

    `MixtureParameters` carries it through ``dataclasses.replace(params, weights=...)``, which the
    model does after every batch (the E-step's prior weights), so that the copy recomputes only
    its constants; it serves only parameters that hold the very arrays it was computed from.
    """

    __slots__ = ("sources", "has_natural", "natural", "half_quadratic", "whitening")

    def __init__(self, params: MixtureParameters):
        self.sources = (params.covariance_type, params.means, params.covariances, params.precisions_cholesky,
                        params.log_det_precision_cholesky, params.shift)
        self.has_natural = False
        self.natural = self.half_quadratic = self.whitening = None

    def describes(self, params: MixtureParameters) -> bool:
        kind, means, covariances, factors, log_det, shift = self.sources
        return (
            means is params.means and factors is params.precisions_cholesky and shift is params.shift
            and log_det is params.log_det_precision_cholesky and covariances is params.covariances
            and kind == params.covariance_type
        )


@dataclasses.dataclass
class MixtureParameters:
    """Weights, means and covariances of a Gaussian mixture, with the Cholesky factors of the
    precisions that give fast log densities (as scikit-learn keeps them).

    Covariance shapes follow scikit-learn: ``full`` (K, D, D), ``tied`` (D, D), ``diag`` (K, D),
    ``spherical`` (K,). Densities are computed about `shift`, which only affects rounding.
    """

    covariance_type: str
    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray
    log_det_precision_cholesky: np.ndarray
    shift: np.ndarray
    # Derived, not a parameter: see `_WeightFree`.
    _weight_free: _WeightFree | None = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def from_covariances(
        cls,
        covariance_type: str,
        weights: np.ndarray,
        means: np.ndarray,
        covariances: np.ndarray,
        shift: np.ndarray | None = None,
        reg_covar: float = 0.0,
        _owned: bool = False,
    ) -> MixtureParameters:
        """The parameters with these covariances (a floor of RELATIVE_COVARIANCE_FLOOR times the
        largest variance added to full and tied ones) and their precision factors. With
        `_owned`, the covariances array is the caller's to give away and is modified in place."""
        check_covariance_type(covariance_type)
        means = np.asarray(means, dtype=np.float64)
        shift = np.zeros(means.shape[1]) if shift is None else np.asarray(shift, dtype=np.float64)
        covariances = np.asarray(covariances, dtype=np.float64)
        D = means.shape[1]
        if covariance_type in ("full", "tied") and D == 0:  # no features yet: nothing to factor
            prec_chol = covariances.copy()
            log_det = np.zeros(covariances.shape[:-2])
        elif covariance_type in ("full", "tied") and D == 1:
            # One feature: a 1 x 1 matrix is positive definite when its entry is positive.
            floor = max(reg_covar, np.finfo(np.float64).tiny)
            root = np.sqrt(np.where(covariances > 0.0, covariances, floor))
            prec_chol = 1.0 / root
            log_det = np.log(prec_chol[..., 0, 0])
            covariances = root * root
        elif covariance_type in ("full", "tied"):
            if not (_owned and covariances.flags.c_contiguous):
                covariances = np.array(covariances)  # a copy: the floor goes on in place
            covariances, inverse, log_det, _, _ = factored(covariances, reg_covar)
            # precision = (L L^T)^-1 = L^-T L^-1, so its upper factor is L^-T.
            prec_chol = np.swapaxes(inverse, -1, -2)
        else:
            covariances = np.maximum(covariances, np.finfo(np.float64).tiny)
            prec_chol = 1.0 / np.sqrt(covariances)
            log_det = np.log(prec_chol)
            if covariance_type == "diag":
                log_det = log_det.sum(axis=1)
            else:
                log_det = means.shape[1] * log_det
        return cls(
            covariance_type,
            np.asarray(weights, dtype=np.float64),
            means,
            covariances,
            prec_chol,
            log_det,
            shift,
        )

    @property
    def n_components(self) -> int:
        return self.weights.shape[0]

    @property
    def n_features(self) -> int:
        return self.means.shape[1]

    def variances(self) -> np.ndarray:
        """Each component's variance along each feature, shape (K, D)."""
        K, D = self.means.shape
        cov = self.covariances
        if self.covariance_type == "full":
            return np.diagonal(cov, axis1=1, axis2=2).copy()
        if self.covariance_type == "tied":
            return np.tile(np.diag(cov), (K, 1))
        if self.covariance_type == "spherical":
            return np.repeat(cov[:, None], D, axis=1)
        return cov.copy()

    def _weight_free_part(self) -> _WeightFree:
        part = self._weight_free
        if part is None or not part.describes(self):
            part = self._weight_free = _WeightFree(self)
        return part

    def _set_natural(self, eta: np.ndarray | None, half_quadratic: np.ndarray | None) -> None:
        """Record natural parameters computed with these weights (see `natural_parameters`)."""
        self.__dict__["_cached_natural"] = eta
        part = self._weight_free_part()
        part.natural, part.half_quadratic, part.has_natural = eta, half_quadratic, True

    def _kernel(self) -> tuple:
        """What every E-step under these parameters reuses, computed once: the constants
        log w_k + log det(P_k) - D log(2 pi) / 2 and the whitening of the points (for ``full``,
        the K factors side by side, so that one GEMM whitens every component at once)."""
        kernel = self.__dict__.get("_cached_kernel")
        if kernel is None:
            K, D = self.means.shape
            with np.errstate(divide="ignore"):
                const = np.log(self.weights) + self.log_det_precision_cholesky - 0.5 * D * _LOG_2PI
            part = self._weight_free_part()
            if part.whitening is None:
                mc = self.means - self.shift
                P = self.precisions_cholesky
                if D == 1:  # one feature: every structure is a variance per component
                    precisions = np.broadcast_to((P * P).reshape(-1), (K,))
                    part.whitening = (np.ascontiguousarray(mc[:, 0]), np.ascontiguousarray(precisions))
                elif self.covariance_type == "full":
                    W = np.ascontiguousarray(P.transpose(1, 0, 2).reshape(D, K * D))
                    part.whitening = (W, np.einsum("kd,kde->ke", mc, P).reshape(K * D))
                elif self.covariance_type == "tied":
                    part.whitening = (P, mc @ P)
                else:
                    part.whitening = (mc, P * P)
            kernel = (const, *part.whitening)
            self.__dict__["_cached_kernel"] = kernel
        return kernel

    def natural_parameters(self) -> np.ndarray | None:
        """eta (K, rows) with log w_k N(x; mu_k, Sigma_k) = eta_k . T(x) for the rows T(x) of
        `moment_features`; None where that expanded form would lose precision.

        With m = mu - c and P the precision, w N(x) = exp(const - m'Pm / 2 + (Pm)'(x - c)
        - (x - c)'P(x - c) / 2). Expanded, the quadratic form is a sum of terms as large as
        |x - c|'|P||x - c| that cancel near the mean, so its rounding error is about eps times
        that; the form is used only while it stays below EXPANSION_MAX_SCALE for every mean
        (an absolute error below about 1e-8 nats), that is while the means lie within about a
        thousand standard deviations of the shift. Otherwise E-steps whiten directly.
        """
        cache = self.__dict__
        if "_cached_natural" in cache:
            return cache["_cached_natural"]
        part = self._weight_free_part()
        if part.has_natural:  # the same parameters with other weights: redo the constants
            eta = part.natural
            if eta is not None:
                constants = _natural_constants(
                    self.weights, self.log_det_precision_cholesky, self.means.shape[1], part.half_quadratic
                )
                if (constants < math.inf).all():  # not NaN nor +inf (see `_precise_enough`)
                    eta = eta.copy()
                    eta[:, 0] = constants
                else:
                    eta = None
            cache["_cached_natural"] = eta
            return eta
        mc = self.means - self.shift
        if not expansion_pays(self.covariance_type, *mc.shape):
            self._set_natural(None, None)
            return None
        K, D = mc.shape
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):  # checked below
            if self.covariance_type in ("full", "tied") and D > 1:
                inverse = np.broadcast_to(np.swapaxes(self.precisions_cholesky, -1, -2), (K, D, D))
                eta, largest, half_quadratic = _natural_full(self.weights, self.log_det_precision_cholesky, mc, inverse)
            else:  # one precision per feature: (K, D) diag, (K,) spherical, (K, 1, 1) or (1, 1) tied
                precisions = 1.0 / self.covariances.reshape(1 if self.covariance_type == "tied" else K, -1)
                second = 1 if self.covariance_type == "spherical" else D
                eta, largest, half_quadratic = _natural_diagonal(
                    self.weights, self.log_det_precision_cholesky, mc, np.broadcast_to(precisions, (K, D)), second
                )
            eta = _precise_enough(eta, largest, np.abs(mc).sum(axis=1).max())
        self._set_natural(eta, half_quadratic)
        return eta

    def _mahalanobis_t(self, X: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distances of the rows of X to every component, shape (K, N):
        component-major, so that reductions over the components run along contiguous rows."""
        Xc = np.asarray(X, dtype=np.float64) - self.shift
        const, A, B = self._kernel()
        (N, D), K = Xc.shape, len(const)
        if D == 1:
            diff = Xc[:, 0][None, :] - A[:, None]
            diff *= diff
            diff *= B[:, None]
            return diff
        if self.covariance_type == "full":
            Y = Xc @ A
            Y -= B
            Y = Y.reshape(N, K, D)
            return np.einsum("nkd,nkd->kn", Y, Y)
        if self.covariance_type == "tied":
            Y = (Xc @ A)[None, :, :] - B[:, None, :]
            return np.einsum("knd,knd->kn", Y, Y)
        diff = Xc[None, :, :] - A[:, None, :]
        diff *= diff
        if self.covariance_type == "diag":
            return np.einsum("knd,kd->kn", diff, B)
        return diff.sum(axis=2) * B[:, None]

    def mahalanobis(self, X: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distances of the rows of X to every component, shape (N, K)."""
        return self._mahalanobis_t(X).T

    def mean_distances(self, components: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distances between these components, (C, C): row i the mean of
        component i, column j component j. The same as ``mahalanobis(means)`` restricted to them,
        without the whitening a batch needs (a structure check reads only these).

        >>> params = MixtureParameters.from_covariances(
        ...     "diag", np.array([0.5, 0.5]), np.array([[0.0], [3.0]]), np.array([[1.0], [4.0]]))
        >>> params.mean_distances(np.array([0, 1])).tolist()
        [[0.0, 2.25], [9.0, 0.0]]

        """
        means = self.means[components]
        gaps = means[:, None, :] - means[None, :, :]  # (C, C, D): mean i less mean j
        U = self.precisions_cholesky
        if self.covariance_type == "full":
            y = np.einsum("ijd,jde->ije", gaps, U[components])
        elif self.covariance_type == "tied":
            y = gaps @ U
        elif self.covariance_type == "diag":
            y = gaps * U[components][None, :, :]
        else:
            y = gaps * U[components][None, :, None]
        return np.einsum("ije,ije->ij", y, y)

    def _chunk_rows(self, eta: np.ndarray | None) -> int:
        """Rows per chunk of this model's E-steps (see `_chunk_rows`): the expanded form's two
        GEMMs do K x features multiply-adds a row; whitening, K D x D (full), D x D (tied)."""
        K, D = self.means.shape
        if eta is not None:
            return _chunk_rows(eta.size, eta.shape[1])
        if D == 1 or self.covariance_type in ("diag", "spherical"):
            return _chunk_rows(K * D, K * D)
        return _chunk_rows((K if self.covariance_type == "full" else 1) * D * D, K * D)

    def _weighted_log_prob_t(self, X: np.ndarray) -> np.ndarray:
        """log w_k + log N(x_n; mu_k, Sigma_k), shape (K, N), in chunks of rows."""
        eta = self.natural_parameters()
        rows = self._chunk_rows(eta)
        if len(X) <= rows:
            return self._weighted_log_prob_chunk(X, eta)
        X = np.asarray(X, dtype=np.float64)
        wlp = np.empty((self.n_components, len(X)))
        for start in range(0, len(X), rows):
            wlp[:, start : start + rows] = self._weighted_log_prob_chunk(X[start : start + rows], eta)
        return wlp

    def _weighted_log_prob_chunk(self, X: np.ndarray, eta: np.ndarray | None) -> np.ndarray:
        if eta is not None:
            with np.errstate(invalid="ignore"):  # (see _SPURIOUS_GEMM_INVALID)
                return eta @ moment_features(X, self.shift, self.covariance_type)
        wlp = self._mahalanobis_t(X)
        wlp *= -0.5
        wlp += self._kernel()[0][:, None]
        return wlp

    def log_gaussian(self, X: np.ndarray) -> np.ndarray:
        """log N(x_n; mu_k, Sigma_k) for every row and component, shape (N, K)."""
        D = self.means.shape[1]
        log_det = np.reshape(self.log_det_precision_cholesky, (-1, 1))  # (K, 1), or (1, 1) if tied
        return (-0.5 * (D * _LOG_2PI + self._mahalanobis_t(X)) + log_det).T

    def weighted_log_prob(self, X: np.ndarray) -> np.ndarray:
        """log w_k + log N(x_n; mu_k, Sigma_k), shape (N, K)."""
        return self._weighted_log_prob_t(X).T

    def log_responsibilities(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Log responsibilities (N, K) and log densities (N,), by log-sum-exp."""
        wlp = self._weighted_log_prob_t(X)
        top = wlp.max(axis=0)
        top[~np.isfinite(top)] = 0.0
        log_norm = np.log(np.exp(wlp - top).sum(axis=0)) + top
        wlp -= log_norm
        return wlp.T, log_norm

    def responsibilities(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Responsibilities (N, K) and log densities (N,): log-sum-exp with one ``exp``."""
        resp = self._weighted_log_prob_t(X)
        top = resp.max(axis=0)
        norm = _responsibilities_in_place(resp, top)
        return resp.T, np.log(norm) + top

    def expected_statistics(self, X: np.ndarray) -> SufficientStatistics:
        """E-step: the summed sufficient statistics of the rows of X under these parameters,
        about their shift. Every path (one process, Dask tasks) computes them with this method,
        so that they agree to the last bit for the same rows.

        >>> import numpy as np
        >>> params = MixtureParameters.from_covariances(
        ...     "diag", np.array([0.5, 0.5]), np.array([[0.0], [10.0]]), np.ones((2, 1)))
        >>> params.expected_statistics(np.array([[0.0], [10.0], [10.0]])).s0.round(6).tolist()
        [1.0, 2.0]

        """
        return self.held_out_statistics(X, math.inf)[0]

    def held_out_statistics(
        self, X: np.ndarray, threshold: float, limit: int | None = None
    ) -> tuple[SufficientStatistics, np.ndarray]:
        """E-step with the novel rows held out, in one pass: the summed statistics of the rows of
        X (complete) that are not novel, and the offsets (N_held,) of those that are, those whose
        squared Mahalanobis distance to every active component exceeds `threshold` (the first
        `limit` of them; later ones are learned). The distances come from the E-step's own
        weighted log densities, d_k = -2 (log w_k N_k(x) - log w_k - log det P_k^(1/2) + D log(2 pi) / 2),
        so the batch is whitened once, not twice. `online_em.novelty.held_out` is the entry point;
        `expected_statistics` is this with no threshold. Per chunk of rows (`_chunk_rows`): the
        features T and the log densities eta T (one GEMM), responsibilities by log-sum-exp with one
        exp, and the statistics R T' (another GEMM); where the expanded form would lose precision
        (`natural_parameters` None), the rows are whitened directly.

        >>> import numpy as np
        >>> params = MixtureParameters.from_covariances(
        ...     "diag", np.array([0.5, 0.5]), np.array([[0.0], [10.0]]), np.ones((2, 1)))
        >>> stats, held = params.held_out_statistics(np.array([[0.0], [30.0], [10.0]]), 10.83)
        >>> held.tolist(), stats.count, stats.s0.round(6).tolist()
        ([1], 2.0, [1.0, 1.0])

        """
        X = np.asarray(X, dtype=np.float64)
        eta = self.natural_parameters()
        screened = threshold < math.inf
        if screened:
            # A row's nearest component is within the threshold if its best weighted density is
            # above `closest` (with the largest offset), and beyond it if below `farthest`: only
            # rows in between are looked at component by component.
            offsets, largest, smallest = self._log_normalisers()
            bound = -0.5 * threshold
            closest, farthest = bound + largest, bound + smallest
        budget = len(X) if limit is None else limit
        held, total, moments = [], None, None
        rows = self._chunk_rows(eta)
        for start in range(0, len(X), rows):
            chunk = X[start : start + rows]
            T = None if eta is None else moment_features(chunk, self.shift, self.covariance_type)
            if T is not None:
                with np.errstate(invalid="ignore"):  # (see _SPURIOUS_GEMM_INVALID)
                    wlp = eta @ T
            else:
                wlp = self._weighted_log_prob_chunk(chunk, None)
            top = wlp.max(axis=0)
            novel = np.flatnonzero(top < closest).tolist() if screened else []  # (few rows: plain Python)
            if novel:
                unsure = [i for i, best in zip(novel, top[novel].tolist()) if best >= farthest]
                if unsure:  # -d/2 for the nearest component, exactly
                    nearest = (wlp[:, unsure] - offsets[:, None]).max(axis=0).tolist()
                    within = {i for i, d in zip(unsure, nearest) if d >= bound}
                    novel = [i for i in novel if i not in within]
                novel = novel[:budget]
                budget -= len(novel)
                held.extend(start + i for i in novel)
            _responsibilities_in_place(wlp, top)
            if T is not None:
                if novel:
                    wlp[:, novel] = 0.0  # held out of the sums
                part = wlp @ T.T
                moments = part if moments is None else moments + part
            else:
                if novel:
                    keep = np.ones(len(chunk), dtype=bool)
                    keep[novel] = False
                    chunk, wlp = chunk[keep], wlp[:, keep]
                part = SufficientStatistics.from_batch(chunk, wlp.T, self.shift, self.covariance_type)
                total = part if total is None else total.merge(part)
        held = np.array(held, dtype=np.int64)
        if eta is None:
            if total is None:  # no rows
                total = SufficientStatistics.from_batch(X, np.zeros((0, self.n_components)), self.shift,
                                                        self.covariance_type)
            return total, held
        if moments is None:
            moments = np.zeros_like(eta)
        return SufficientStatistics.from_moments(moments, self.shift, self.covariance_type, len(X) - len(held)), held

    def _log_normalisers(self) -> tuple[np.ndarray, float, float]:
        """log w_k + log det P_k^(1/2) - D log(2 pi) / 2 (K,), +inf for an inactive component (weight
        0), and its largest and smallest values over the active ones: a weighted log density less
        this is minus half the squared Mahalanobis distance (-inf for an inactive component)."""
        cached = self.__dict__.get("_cached_log_normalisers")
        if cached is None:  # (a few floats: plain Python is several times faster than numpy here)
            weights = self.weights.tolist()
            log_det = self.log_det_precision_cholesky
            log_dets = log_det.tolist() if np.ndim(log_det) else [float(log_det)] * len(weights)
            constant = 0.5 * self.means.shape[1] * _LOG_2PI
            values = [math.log(w) + d - constant if w > 0.0 else math.inf for w, d in zip(weights, log_dets)]
            active = [v for v in values if v < math.inf]
            cached = (np.array(values), max(active), min(active))
            self.__dict__["_cached_log_normalisers"] = cached
        return cached
