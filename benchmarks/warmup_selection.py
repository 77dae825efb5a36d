"""How many components a long warm-up keeps, in many dimensions: the buffer's AIC fit, and the model.

    python benchmarks/warmup_selection.py                    # D=20, 3 clusters, 19,999 points, 4 seeds (minutes)
    python benchmarks/warmup_selection.py --n 10000 --seeds 2
    python benchmarks/warmup_selection.py --n 19999 --no-merge   # AIC alone (`selection.merged` left out)

For each seed: `cases.Mixture(D, 3, "full", seed)` (means about 1.5 sqrt(2 D) apart, per-axis
standard deviations 0.5 to 2), n points, and `OnlineGaussianMixture(n_components=8, seed=0)` fed in
batches of 256 with its default warm-up (20,000 points here, so n = 19,999 is the last point of the
warm-up: the model reports its buffer's fit). Printed: a markdown table of the active components
and the adjusted Rand index of `predict_many` on every point against the true clusters, per seed.

`--no-merge` replaces `online_em.selection.merged` by the identity, which is what the warm-up did
before the merge test was applied to its fits: on this stream AIC chose 6, 3 and 4 components for
seeds 1 to 3 at 19,999 points (and 5 to 7 in three seeds out of four at 20,000).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cases import Mixture, table  # noqa: E402


def run(n: int, n_features: int, n_clusters: int, seeds: list[int], cap: int = 8) -> list[list[str]]:
    from sklearn.metrics import adjusted_rand_score

    from online_em import OnlineGaussianMixture

    rows = []
    for seed in seeds:
        mixture = Mixture(n_features, n_clusters, "full", seed=seed)
        truth = np.random.default_rng(seed + 100).choice(n_clusters, size=n, p=mixture.weights)
        X = mixture.sample(n, seed + 100)  # (the same generator draws the same labels first)
        start = time.perf_counter()
        model = OnlineGaussianMixture(n_components=cap, seed=0)
        for i in range(0, n, 256):
            model.learn_many(X[i : i + 256])
        labels = np.asarray(model.predict_many(X))
        rows.append([str(seed), str(model.n_active_components_), f"{adjusted_rand_score(truth, labels):.3f}",
                     str(model.warm_up_size), f"{time.perf_counter() - start:.0f} s"])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=19_999)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--clusters", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--no-merge", action="store_true", help="AIC alone, as before the merge test")
    args = parser.parse_args(argv)
    if args.no_merge:
        from online_em import selection

        selection.merged = lambda fit, *_, **__: fit
    rows = run(args.n, args.features, args.clusters, list(range(args.seeds)))
    print(f"D={args.features}, {args.clusters} clusters, {args.n:,} points, n_components=8"
          f"{', AIC alone' if args.no_merge else ''}\n")
    print("\n".join(table(["seed", "active", "ARI", "warm_up", "time"], rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
