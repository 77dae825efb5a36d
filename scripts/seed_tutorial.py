#!/usr/bin/env python
"""Reproduce the tutorial end to end: two Gaussian processes, streamed through online EM.

    python scripts/seed_tutorial.py                    # writes tutorial.png
    python scripts/seed_tutorial.py --png out.png --seed 1 --no-shuffle

1. Generate 4,000 points from N(20, 5^2) and 8,000 from N(40, 5^2) (shuffled, unless --no-shuffle).
2. Stream them through `OnlineGaussianMixture` one point at a time, labelling each point before
   learning it, and print the first and last 80 labels.
3. Fit scikit-learn's batch `GaussianMixture` to the same points and compare weights, means,
   standard deviations, mean log-likelihood and labels (up to a permutation).
4. Save a PNG of the histogram with the fitted mixture density and its two components drawn over
   it (needs matplotlib: ``pip install -e ".[plot]"``; scikit-learn: ``".[test]"``).
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from online_em import OnlineGaussianMixture
from online_em.cli import demo_stream


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of equal labels, up to swapping the two labels."""
    same = float(np.mean(a == b))
    return max(same, 1.0 - same)


def normal_pdf(x: np.ndarray, mean: float, std: float) -> np.ndarray:
    return np.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=42, help="seed of the data (the model uses 42)")
    parser.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=True,
                        help="interleave the two processes (default) or stream the first one first")
    parser.add_argument("--png", default="tutorial.png", help="where to save the figure")
    args = parser.parse_args()

    # 1. the two processes, as `online-em demo` writes them
    x, truth = demo_stream(12_000, shuffle=args.shuffle, seed=args.seed)

    # 2. one pass, one point at a time: predict, then learn
    model = OnlineGaussianMixture(n_components=2, seed=42)
    labels = np.array([model.learn_predict_one({"value": v}) for v in x.tolist()])
    print("first 80 labels:", "".join(map(str, labels[:80])))
    print("last 80 labels: ", "".join(map(str, labels[-80:])))
    print("true processes, last 80:", "".join(map(str, truth[-80:])))
    order = np.argsort(model.means_[:, 0])
    weights, means = model.weights_[order], model.means_[order, 0]
    stds = np.sqrt(model.covariances_[order, 0, 0])
    print(f"online EM   weights {np.round(weights, 3)}  means {np.round(means, 2)}  std {np.round(stds, 2)}")
    after_warm_up = slice(model.warm_up_size, None)
    print(f"online labels right (after the warm-up): {agreement(labels[after_warm_up], truth[after_warm_up]):.1%}; "
          f"all points: {agreement(labels, truth):.1%}")
    online_ll = float(np.mean(model.score_many(x[:, None])))

    # 3. scikit-learn's batch fit of the same points
    try:
        from sklearn.mixture import GaussianMixture
    except ImportError:
        print("scikit-learn is not installed: no batch comparison (pip install scikit-learn)")
    else:
        batch = GaussianMixture(n_components=2, random_state=0).fit(x[:, None])
        b_order = np.argsort(batch.means_[:, 0])
        print(f"batch EM    weights {np.round(batch.weights_[b_order], 3)}  means "
              f"{np.round(batch.means_[b_order, 0], 2)}  std {np.round(np.sqrt(batch.covariances_[b_order, 0, 0]), 2)}")
        print(f"mean log-likelihood: online {online_ll:.4f}, batch {batch.score(x[:, None]):.4f}")
        final = model.predict_many(x[:, None])
        print(f"final online model vs batch labels agree on {agreement(final, batch.predict(x[:, None])):.2%} of points")

    # 4. the figure
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print('matplotlib is not installed: no figure (pip install -e ".[plot]")')
        return
    grid = np.linspace(x.min() - 5, x.max() + 5, 600)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.hist(x, bins=80, density=True, color="0.8", label="stream (12,000 points)")
    components = [w * normal_pdf(grid, m, s) for w, m, s in zip(weights, means, stds)]
    for k, curve in enumerate(components):
        ax.plot(grid, curve, "--", label=f"component {k}: w={weights[k]:.2f}, mean={means[k]:.1f}, sd={stds[k]:.1f}")
    ax.plot(grid, sum(components), "k", lw=2, label="fitted mixture density")
    ax.set_xlabel("value")
    ax.set_ylabel("density")
    ax.set_title("Online EM on N(20, 5²) × 4,000 and N(40, 5²) × 8,000")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.png, dpi=120)
    print(f"saved {args.png}")


if __name__ == "__main__":
    main()
