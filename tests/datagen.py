"""Seeded data generators shared by the tests."""

from __future__ import annotations

import numpy as np


def tutorial_stream(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The tutorial's two processes, N(20, 5^2) x 4,000 and N(40, 5^2) x 8,000, shuffled."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(20, 5, 4000), rng.normal(40, 5, 8000)])
    y = np.repeat([0, 1], [4000, 8000])
    order = rng.permutation(len(x))
    return x[order], y[order]


def synthetic_mixture(
    n: int, n_features: int, n_components: int, covariance_type: str, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows from a random Gaussian mixture of the given structure, and their components."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 4, (n_components, n_features))
    weights = rng.dirichlet(np.full(n_components, 5.0))
    z = rng.choice(n_components, n, p=weights)
    X = np.empty((n, n_features))
    for k in range(n_components):
        rows = z == k
        if covariance_type == "full":
            A = rng.normal(0, 1, (n_features, n_features)) / np.sqrt(n_features)
            cov = A @ A.T + 0.3 * np.eye(n_features)
            X[rows] = rng.multivariate_normal(means[k], cov, rows.sum())
        elif covariance_type == "diag":
            X[rows] = means[k] + rng.uniform(0.5, 2, n_features) * rng.normal(size=(rows.sum(), n_features))
        else:
            X[rows] = means[k] + rng.uniform(0.5, 2) * rng.normal(size=(rows.sum(), n_features))
    return X, z


def blob_dicts(n: int, seed: int, n_features: int = 3, n_blobs: int = 3) -> tuple[list[dict], list[int]]:
    """A stream of well-separated blobs as River-style dicts, with their true labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 10, (n_blobs, n_features))
    labels = rng.integers(n_blobs, size=n)
    X = centres[labels] + rng.normal(size=(n, n_features))
    names = [f"f{i}" for i in range(n_features)]
    return [dict(zip(names, row.tolist())) for row in X], labels.tolist()
