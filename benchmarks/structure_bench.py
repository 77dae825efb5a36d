"""Order and size: ours (n_components an upper bound: births, merges, prunes) against
scikit-learn's BayesianGaussianMixture (its n_components also an upper bound) on the same streams.

Streams, each shuffled and sorted by its generating component, 80% to learn and 20% (shuffled,
held out) to score:

- ``tutorial``: the tutorial's 4,000 points of N(20, 5^2) and 8,000 of N(40, 5^2);
- ``blobs``: three well-separated 2-D blobs of 3,000, 2,000 and 1,000 points;
- ``aniso``: four anisotropic 3-D Gaussians (correlated, overlapping a little), 2,000 points each.

Each is learned with n_components = the true K and = 10. Ours: one pass of ``learn_one`` in
the stream's order, the defaults otherwise (warm-up 500 for the sorted streams as well, so that
the stream rather than the warm-up's batch fit has to find the later components). Scikit-learn:
``BayesianGaussianMixture(n_components, max_iter=500)`` fitted in batch on the same rows (the
order does not matter to it). Reported per case (mean over seeds): active components (weight
above 1%), the adjusted Rand index of the learned rows against their components, and the
held-out log-likelihood per point.

Run: ``python benchmarks/structure_bench.py`` (or ``python benchmarks/run.py --only structure``).
"""

from __future__ import annotations

import dataclasses
import sys
import time

import numpy as np

STREAMS = ("tutorial", "blobs", "aniso")
ORDERS = ("shuffled", "sorted")
SYSTEMS = ("ours", "sklearn BGM")


def make(stream: str, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Rows, their components, and the true K."""
    rng = np.random.default_rng(seed)
    if stream == "tutorial":
        X = np.concatenate([rng.normal(20, 5, (4000, 1)), rng.normal(40, 5, (8000, 1))])
        return X, np.repeat([0, 1], [4000, 8000]), 2
    if stream == "blobs":
        centres, sizes = [(0, 0), (8, 0), (0, 8)], (3000, 2000, 1000)
        X = np.concatenate([rng.normal(c, 1, (n, 2)) for c, n in zip(centres, sizes)])
        return X, np.repeat([0, 1, 2], sizes), 3
    if stream == "aniso":
        shape = np.random.default_rng(1234)  # the same four Gaussians for every seed
        parts = []
        for k in range(4):
            A = shape.normal(size=(3, 3))
            parts.append(rng.normal(size=(2000, 3)) @ A * 0.6 + shape.uniform(-6, 6, 3))
        return np.concatenate(parts), np.repeat(np.arange(4), 2000), 4
    raise ValueError(stream)


@dataclasses.dataclass
class Result:
    active: int
    ari: float
    loglik: float
    seconds: float


def evaluate(system: str, stream: str, order: str, K: int, seed: int) -> Result:
    from sklearn.metrics import adjusted_rand_score

    from online_em import OnlineGaussianMixture

    X, z, _ = make(stream, seed)
    rng = np.random.default_rng(seed + 100)
    test = rng.random(len(X)) < 0.2
    train, z_train, held_out = X[~test], z[~test], X[test]
    if order == "shuffled":
        p = rng.permutation(len(train))
        train, z_train = train[p], z_train[p]
    start = time.perf_counter()
    if system == "ours":
        model = OnlineGaussianMixture(n_components=K, warm_up=500, seed=seed)
        names = list(range(train.shape[1]))
        for row in train.tolist():
            model.learn_one(dict(zip(names, row)))
        weights, labels = model.weights_, model.predict_many(train)
        loglik = float(model.score_many(held_out).mean())
    else:
        from sklearn.mixture import BayesianGaussianMixture

        model = BayesianGaussianMixture(n_components=K, max_iter=500, random_state=seed).fit(train)
        weights, labels = model.weights_, model.predict(train)
        loglik = float(model.score(held_out))
    seconds = time.perf_counter() - start
    return Result(int((weights > 0.01).sum()), float(adjusted_rand_score(z_train, labels)), loglik, seconds)


def run(seeds=(0, 1, 2), streams=STREAMS) -> dict:
    cells = {}
    for stream in streams:
        true_K = make(stream, 0)[2]
        for K in sorted({true_K, 10}):
            for order in ORDERS:
                for system in SYSTEMS:
                    cells[(stream, K, order, system)] = [evaluate(system, stream, order, K, s) for s in seeds]
    return cells


def table(cells: dict) -> list[str]:
    lines = [
        "| stream | n_components | order | system | active (per seed) | ARI mean (worst) | held-out ll mean | s per pass |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (stream, K, order, system), results in cells.items():
        active = ", ".join(str(r.active) for r in results)
        aris = [r.ari for r in results]
        lines.append(
            f"| {stream} (K={make(stream, 0)[2]}) | {K} | {order} | {system} | {active} | "
            f"{np.mean(aris):.3f} ({min(aris):.3f}) | {np.mean([r.loglik for r in results]):.4f} | "
            f"{np.mean([r.seconds for r in results]):.1f} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    seeds = tuple(range(int(argv[0]))) if argv else (0, 1, 2)
    print("\n".join(table(run(seeds))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
