"""Data, reference implementations and machine description for `benchmarks/run.py`.

Everything here is independent of the model's internals, so that the numbers it produces stay a
fair yardstick while the model changes: the synthetic mixtures are drawn with numpy from a seed,
and the "numpy limit" is our own bare vectorised E-step (one GEMM for every component at once),
not the model's.
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
import time
from importlib import metadata

import numpy as np

LOG_2PI = math.log(2.0 * math.pi)


# ---------------------------------------------------------------------------------- data


class Mixture:
    """A random Gaussian mixture with fairly well separated (but not trivially so) components.

    Means are drawn from N(0, spread^2 I), so two means lie about spread * sqrt(2 D) apart, against
    per-axis standard deviations between about 0.5 and 2: with the default spread of 1.5 and D=10
    that is some 6.7, enough for batch EM to converge in a few iterations, close enough that the
    log-likelihood is not a formality.
    """

    def __init__(self, n_features: int, n_components: int, covariance_type: str, seed: int,
                 spread: float = 1.5):
        rng = np.random.default_rng(seed)
        D, K = n_features, n_components
        self.covariance_type = covariance_type
        self.weights = rng.uniform(1.0, 2.0, K)
        self.weights /= self.weights.sum()
        self.means = rng.normal(0.0, spread, (K, D))
        if covariance_type == "full":
            A = rng.normal(0.0, 1.0, (K, D, D)) / math.sqrt(D)
            self.covariances = A @ A.transpose(0, 2, 1) + 0.3 * np.eye(D)
            self._factors = np.linalg.cholesky(self.covariances)
        else:
            self.covariances = rng.uniform(0.3, 2.0, (K, D))
            self._factors = None

    def sample(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        labels = rng.choice(len(self.weights), size=n, p=self.weights)
        Z = rng.normal(0.0, 1.0, (n, self.means.shape[1]))
        if self._factors is not None:
            X = np.einsum("nij,nj->ni", self._factors[labels], Z)
        else:
            X = Z * np.sqrt(self.covariances[labels])
        return X + self.means[labels]


def tutorial_stream(scale: float, seed: int) -> np.ndarray:
    """The tutorial's stream times `scale`: N(20, 5^2) x 4,000 s and N(40, 5^2) x 8,000 s, shuffled,
    as an (n, 1) array."""
    rng = np.random.default_rng(seed)
    a, b = int(round(4000 * scale)), int(round(8000 * scale))
    x = np.concatenate([rng.normal(20.0, 5.0, a), rng.normal(40.0, 5.0, b)])
    rng.shuffle(x)
    return x[:, None]


def as_dicts(X: np.ndarray) -> list[dict]:
    names = [f"x{j}" for j in range(X.shape[1])]
    return [dict(zip(names, row)) for row in X.tolist()]


def batches(X: np.ndarray, size: int) -> list[np.ndarray]:
    return [X[i : i + size] for i in range(0, len(X), size)]


# ---------------------------------------------------------------------------------- the limit


def features(X: np.ndarray, shift: np.ndarray, full: bool) -> np.ndarray:
    """Each point's features T(x) = (1, x - c, the upper triangle of (x - c)(x - c)^T row by row
    if `full`, else (x - c)^2), one row a feature: shape (1 + D + second moments, N)."""
    N, D = X.shape
    second = D * (D + 1) // 2 if full else D
    T = np.empty((1 + D + second, N))
    T[0] = 1.0
    Xc = np.subtract(X.T, shift[:, None], out=T[1 : 1 + D])
    if full:
        start = 1 + D
        for i in range(D):
            np.multiply(Xc[i:], Xc[i], out=T[start : start + D - i])
            start += D - i
    else:
        np.multiply(Xc, Xc, out=T[1 + D :])
    return T


class BareEStep:
    """Responsibilities under fixed parameters, as fast as plain numpy gets them.

    Two kernels per covariance type, and `tune` keeps whichever is faster on this machine for
    the batch shape at hand (small GEMMs can fall off a cliff when a multi-threaded BLAS splits
    them on a busy machine):

    * full, ``gemm``: one GEMM ``X @ [P_1 ... P_K]`` (N x K D) whitens the points for every
      component at once, and one einsum takes the squared norms;
      ``stacked``: ``matmul`` of X against the stack of K factors (K small GEMMs), then einsum.
    * diag, ``gemm``: the expansion ``x^2 . p - 2 x . (mu p) + mu^2 . p`` as two GEMMs;
      ``direct``: squared differences (N, K, D) weighted by the precisions in one einsum.
    * both, ``expanded``: the exponential-family form. Each point's features
      T(x) = (1, x, the upper triangle of x x^T, or x^2 for diag) are built as contiguous rows,
      and one GEMM with the natural parameters (constant, P mu, -P/2 with the off-diagonal
      entries doubled) gives every log density at once.

    Then log-sum-exp and ``exp``. Built from the model's `MixtureParameters` (or anything with
    the same fields).
    """

    def __init__(self, params):
        self.kind = params.covariance_type
        shift = np.asarray(params.shift, dtype=np.float64)
        mc = np.asarray(params.means, dtype=np.float64) - shift
        K, D = mc.shape
        self.shift, self.K, self.D, self.mc = shift, K, D, mc
        P = np.asarray(params.precisions_cholesky, dtype=np.float64)
        const = np.log(params.weights) + params.log_det_precision_cholesky - 0.5 * D * LOG_2PI
        if self.kind == "full":
            self.P = P
            self.W = np.ascontiguousarray(P.transpose(1, 0, 2).reshape(D, K * D))  # (D, K D)
            self.mP = np.einsum("kd,kde->ke", mc, P)  # (K, D)
            self.b = self.mP.reshape(K * D)
            self.const = const
            self.kernel = "gemm"
            precision = P @ P.transpose(0, 2, 1)
            rows, cols = np.triu_indices(D)
            self.eta = np.concatenate([
                (const - 0.5 * np.einsum("kd,kd->k", self.mP, self.mP))[:, None],
                np.einsum("kde,ke->kd", precision, mc),
                precision[:, rows, cols] * np.where(rows == cols, -0.5, -1.0),
            ], axis=1)
        elif self.kind == "diag":
            prec = P * P  # (K, D)
            self.prec = prec
            self.A = np.ascontiguousarray(prec.T)  # (D, K)
            self.B = np.ascontiguousarray((-2.0 * mc * prec).T)  # (D, K)
            self.const = const
            self.const_gemm = const - 0.5 * (mc * mc * prec).sum(axis=1)
            self.kernel = "gemm"
            self.eta = np.concatenate([self.const_gemm[:, None], prec * mc, -0.5 * prec], axis=1)
        else:
            raise ValueError(f"no bare E-step for {self.kind!r}")

    def kernels(self) -> tuple[str, ...]:
        return ("gemm", "stacked", "expanded") if self.kind == "full" else ("gemm", "direct", "expanded")

    def tune(self, chunks: list[np.ndarray], tries: int = 5) -> str:
        """Keep the kernel that is fastest on the first few chunks (best of `tries` each,
        interleaved, so that a burst of load elsewhere does not pick the loser)."""
        sample = chunks[:4]
        best = {name: float("inf") for name in self.kernels()}
        for _ in range(tries):
            for name in best:
                self.kernel = name
                start = time.perf_counter()
                for X in sample:
                    self.responsibilities(X)
                best[name] = min(best[name], time.perf_counter() - start)
        self.kernel = min(best, key=best.get)
        return self.kernel

    def features(self, X: np.ndarray) -> np.ndarray:
        """T(x) for the ``expanded`` kernel (see `features`)."""
        return features(X, self.shift, self.kind == "full")

    def weighted_log_prob(self, X: np.ndarray) -> np.ndarray:
        if self.kernel == "expanded":
            return (self.eta @ self.features(X)).T
        Xc = X - self.shift
        if self.kind == "full":
            if self.kernel == "gemm":
                Y = Xc @ self.W
                Y -= self.b
                Y = Y.reshape(len(Xc), self.K, self.D)
                maha = np.einsum("nkd,nkd->nk", Y, Y)
            else:
                Y = np.matmul(Xc[None, :, :], self.P)
                Y -= self.mP[:, None, :]
                maha = np.einsum("knd,knd->nk", Y, Y)
            return self.const - 0.5 * maha
        if self.kernel == "gemm":
            return self.const_gemm - 0.5 * ((Xc * Xc) @ self.A + Xc @ self.B)
        diff = Xc[:, None, :] - self.mc[None, :, :]
        diff *= diff
        return self.const - 0.5 * np.einsum("nkd,kd->nk", diff, self.prec)

    def responsibilities(self, X: np.ndarray) -> np.ndarray:
        wlp = self.weighted_log_prob(X)
        top = wlp.max(axis=1, keepdims=True)
        wlp -= top
        np.exp(wlp, out=wlp)
        wlp /= wlp.sum(axis=1, keepdims=True)
        return wlp


class NumpyFloor:
    """The least a streaming EM pass can do per batch in plain numpy: the floor of `learn_many`.

    Per batch: the features T(x) (`features`), one GEMM for every log density
    (natural parameters times T), a softmax, one GEMM for every statistic (responsibilities
    times T'), one blend of the running averages with the step of a running mean, and the
    parameters the next batch needs: weights, means and covariances, a Cholesky factor, its
    inverse, and the natural parameters. No input checks, no averaging, no structure, no chunking.
    ``full`` with one feature is treated as ``diag`` (one variance a component).
    """

    def __init__(self, covariance_type: str, weights, means, covariances, shift, count: float,
                 reg_covar: float = 1e-6):
        means = np.asarray(means, dtype=np.float64)
        K, D = means.shape
        self.kind = "full" if covariance_type == "full" and D > 1 else "diag"
        self.K, self.D, self.shift, self.count, self.reg_covar = K, D, np.asarray(shift, dtype=np.float64), count, reg_covar
        mc = means - self.shift
        w = np.asarray(weights, dtype=np.float64)[:, None]
        if self.kind == "full":
            self.rows, self.cols = np.triu_indices(D)
            self.factor = np.where(self.rows == self.cols, -0.5, -1.0)
            second = np.asarray(covariances) + mc[:, :, None] * mc[:, None, :]
            self.A = np.concatenate([w, w * mc, w * second[:, self.rows, self.cols]], axis=1)
        else:
            second = np.asarray(covariances, dtype=np.float64).reshape(K, D) + mc * mc
            self.A = np.concatenate([w, w * mc, w * second], axis=1)
        self.eta = self._natural()

    def learn(self, X: np.ndarray) -> None:
        T = features(X, self.shift, self.kind == "full")
        R = self.eta @ T
        R -= R.max(axis=0)
        np.exp(R, out=R)
        R /= R.sum(axis=0)
        S = R @ T.T
        m = len(X)
        self.count += m
        gamma = m / self.count
        self.A *= 1.0 - gamma
        self.A += (gamma / m) * S
        self.eta = self._natural()

    def _natural(self) -> np.ndarray:
        K, D, A = self.K, self.D, self.A
        s0 = A[:, :1]
        mc = A[:, 1 : 1 + D] / s0
        eta = np.empty_like(A)
        if self.kind == "full":
            cov = np.empty((K, D, D))
            second = A[:, 1 + D :] / s0
            cov[:, self.rows, self.cols] = second
            cov[:, self.cols, self.rows] = second
            cov -= mc[:, :, None] * mc[:, None, :]
            cov.reshape(K, D * D)[:, :: D + 1] += self.reg_covar
            L = np.linalg.cholesky(cov)
            W = np.linalg.inv(L)
            P = np.matmul(W.transpose(0, 2, 1), W)
            Pm = np.matmul(P, mc[:, :, None])[:, :, 0]
            log_det = -np.log(L.reshape(K, D * D)[:, :: D + 1]).sum(axis=1)
            eta[:, 1 + D :] = P[:, self.rows, self.cols] * self.factor
        else:
            var = A[:, 1 + D :] / s0 - mc * mc + self.reg_covar
            P = 1.0 / var
            Pm = P * mc
            log_det = -0.5 * np.log(var).sum(axis=1)
            eta[:, 1 + D :] = -0.5 * P
        eta[:, 1 : 1 + D] = Pm
        eta[:, 0] = np.log(s0[:, 0] / s0.sum()) + log_det - 0.5 * D * LOG_2PI - 0.5 * (Pm * mc).sum(axis=1)
        return eta

    def weighted_log_prob(self, X: np.ndarray) -> np.ndarray:
        return (self.eta @ features(X, self.shift, self.kind == "full")).T


# ---------------------------------------------------------------------------------- timing


def interleave(sides: dict, repeats: int, budget: float | None = None, min_repeats: int = 1) -> dict[str, list[float]]:
    """Run each side's timer once per round, in turn (A, B, A, B, ...); each returns seconds.

    With a `budget` (seconds), stop after the first round that ends past it, once `min_repeats`
    rounds are done: slow cases get fewer repeats rather than stretching the run.
    """
    import gc

    times: dict[str, list[float]] = {name: [] for name in sides}
    start = time.perf_counter()
    for done in range(1, repeats + 1):
        for name, run in sides.items():
            gc.collect()
            times[name].append(run())
        if budget is not None and done >= min_repeats and time.perf_counter() - start > budget:
            break
    return times


def median(values) -> float:
    values = sorted(values)
    n = len(values)
    return values[n // 2] if n % 2 else 0.5 * (values[n // 2 - 1] + values[n // 2])


def clock() -> float:
    return time.perf_counter()


# ---------------------------------------------------------------------------------- markdown


def table(header: list[str], rows: list[list]) -> list[str]:
    """A markdown table, one line a row."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        out.append("| " + " | ".join(str(c) for c in row) + " |")
    return out


# ---------------------------------------------------------------------------------- machine


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory() -> str:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _blas() -> list[str]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ["threadpoolctl not installed"]
    out = []
    for pool in threadpool_info():
        bits = [pool.get("internal_api", "?"), pool.get("version") or "?"]
        if pool.get("architecture"):
            bits.append(f"kernel {pool['architecture']}")
        bits.append(f"{pool.get('num_threads')} threads")
        out.append(" ".join(str(b) for b in bits) + f" ({os.path.basename(pool.get('filepath', ''))})")
    return out


def _git_revision() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here,
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + (" (with uncommitted changes)" if dirty else "") if rev else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_description() -> list[str]:
    """Markdown bullet lines describing the machine and the software measured."""
    import numpy  # noqa: F401  (loads BLAS so threadpoolctl sees it)

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    env = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS",
                                      "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ}
    lines = [
        f"- CPU: {_cpu_model()}, {os.cpu_count()} logical cores ({affinity} usable), {_memory()} RAM",
        f"- OS: {platform.system()} {platform.release()}; Python {platform.python_version()} ({sys.executable})",
        "- Packages: " + ", ".join(f"{p} {_version(p)}" for p in
                                   ("online-em", "numpy", "river", "scikit-learn", "matplotlib")),
        "- BLAS: " + "; ".join(_blas()),
        "- BLAS environment: " + (", ".join(f"{k}={v}" for k, v in env.items()) or "none of OPENBLAS_CORETYPE, "
                                  "OPENBLAS_L2_SIZE, *_NUM_THREADS set"),
        f"- online_em revision: {_git_revision()}",
    ]
    return lines
