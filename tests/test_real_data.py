"""Issue 9's targets on real data, through the benchmark's own functions (benchmarks/real_data.py).

For iris, wine and breast_cancer over seeds 0 to 9 (shuffled, and file order for iris and wine,
which are sorted by class), each of our two passes must come close to scikit-learn's
GaussianMixture with n_init=1 on the same splits:

- mean ARI (every point, against the classes) >= sklearn's mean ARI - 0.03;
- mean held-out log-likelihood per sample >= sklearn's - 0.02 D.

The model before the issue-9 work missed every ARI target here (e.g. wine 0.40 against 0.85). The last tests check
the harness itself (split, standardisation, guard, table), which must hold either way.
"""

from __future__ import annotations

import functools
import os
import sys

import numpy as np
import pytest

pytest.importorskip("sklearn")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import real_data  # noqa: E402

# Ten seeds: on iris single-start ARIs are bimodal (about 0.6 or 0.9 by seed, for scikit-learn as
# for ours), so a mean over three splits is decided by luck; over ten it measures the method.
SEEDS = tuple(range(10))
CASES = [(d, o) for d in ("iris", "wine", "breast_cancer") for o in real_data.orders(d)]


@functools.lru_cache(maxsize=None)
def cell(system: str, dataset: str, order: str) -> real_data.Cell:
    return real_data.summarise(system, dataset, order, SEEDS)


def judged(system: str, dataset: str, order: str) -> real_data.Target:
    ours, reference = cell(system, dataset, order), cell(real_data.REFERENCE, dataset, order)
    assert not ours.error, ours.error
    assert not reference.error, reference.error
    return real_data.target(ours, reference)


@pytest.mark.parametrize("dataset, order", CASES)
@pytest.mark.parametrize("system", real_data.OURS)
def test_ari_close_to_sklearn(system, dataset, order):
    t = judged(system, dataset, order)
    assert t.ari_met, t.describe()


@pytest.mark.parametrize("dataset, order", CASES)
@pytest.mark.parametrize("system", real_data.OURS)
def test_heldout_loglik_close_to_sklearn(system, dataset, order):
    t = judged(system, dataset, order)
    assert t.ll_met, t.describe()


def test_iris_with_n_components_an_upper_bound_finds_about_its_classes():
    """K not announced on a short stream: iris with n_components=10. The warm-up's criterion chooses
    the number of components (when its bound was 5 points per parameter of the largest mixture,
    not of one component, the buffer kept all 10: ARI 0.38, held-out ll -3.27), and the fit must beat scikit-learn's
    BayesianGaussianMixture with the same upper bound on the same splits (ARI 0.58, ll -2.91)."""
    from sklearn.metrics import adjusted_rand_score
    from sklearn.mixture import BayesianGaussianMixture

    from online_em import OnlineGaussianMixture

    ours, theirs = [], []
    for seed in range(3):
        s = real_data.split("iris", "shuffled", seed)
        model = OnlineGaussianMixture(n_components=10, seed=seed)
        for x in s.dicts(s.train):
            model.learn_one(x)
        assert 2 <= model.n_active_components_ <= 5
        ours.append((adjusted_rand_score(s.y, model.predict_many(s.X)), np.mean(model.score_many(s.test))))
        bgm = BayesianGaussianMixture(n_components=10, random_state=seed, max_iter=500).fit(s.train)
        theirs.append((adjusted_rand_score(s.y, bgm.predict(s.X)), bgm.score(s.test)))
    (ari, ll), (bgm_ari, bgm_ll) = np.mean(ours, axis=0), np.mean(theirs, axis=0)
    assert ari >= bgm_ari + 0.1 and ll >= bgm_ll, (ari, ll, bgm_ari, bgm_ll)


# ---------------------------------------------------------------------------------- the harness


def test_split_is_stratified_standardised_and_shared():
    data = real_data.load("iris")
    shuffled, file = real_data.split("iris", "shuffled", 0), real_data.split("iris", "file", 0)
    assert len(shuffled.train) == 120 and len(shuffled.test) == 30 and shuffled.K == 3
    np.testing.assert_allclose(shuffled.train.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(shuffled.train.std(axis=0), 1.0)
    # the same rows in both orders, the file order sorted (iris is stored by class)
    np.testing.assert_allclose(np.sort(shuffled.train, axis=0), np.sort(file.train, axis=0))
    index = [int(np.flatnonzero((file.X == row).all(axis=1))[0]) for row in file.train]
    assert index == sorted(index)
    assert np.bincount(data.y[index]).tolist() == [40, 40, 40]


def test_a_failing_system_becomes_an_error_cell():
    broken = real_data.summarise("no-such-system", "iris", "shuffled", seeds=(0,))
    assert broken.error.startswith("ValueError: unknown system")
    lines = real_data.table([broken, cell(real_data.REFERENCE, "iris", "shuffled")])
    assert any("error: ValueError" in line for line in lines)


def test_zero_variance_features_are_kept_unscaled():
    s = real_data.split("digits", "shuffled", 0)  # digits has constant pixels
    assert np.isfinite(s.X).all()
    assert (s.train.std(axis=0) == 0).any()
