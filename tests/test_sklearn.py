"""`online_em.sklearn.MiniBatchGaussianMixture`: scikit-learn's estimator checks, equality with the
wrapped model, and agreement with `sklearn.mixture.GaussianMixture`.

Nothing here pins numbers of the current statistical core: the wrapper is compared with the model
it wraps (exactly) and with scikit-learn's batch fit (within tolerances).
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn import config_context  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.mixture import GaussianMixture  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from online_em import OnlineGaussianMixture  # noqa: E402
from online_em.sklearn import MiniBatchGaussianMixture  # noqa: E402

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
ARRAYS = ["weights_", "means_", "covariances_", "precisions_cholesky_"]


def two_clusters(n: int, seed: int) -> np.ndarray:
    """A two-cluster 3-D set: 40% from a correlated Gaussian at the origin, 60% from an
    axis-aligned one at (4, -2, 1)."""
    rng = np.random.default_rng(seed)
    first = rng.random(n) < 0.4
    a = rng.multivariate_normal([0, 0, 0], [[1.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 0.5]], n)
    b = rng.multivariate_normal([4, -2, 1], np.diag([2.0, 0.5, 1.0]), n)
    return np.where(first[:, None], a, b)


# ------------------------------------------------------------------ scikit-learn's own checks

CHECKED = [
    MiniBatchGaussianMixture(),
    *(MiniBatchGaussianMixture(n_components=3, covariance_type=c) for c in COVARIANCE_TYPES),
    MiniBatchGaussianMixture(n_components=1),
]


def _expected_failures(estimator):
    # check_clustering asks for an adjusted Rand index above 0.4 against three blobs: no
    # estimator with one cluster can give that (its labels are constant, ARI 0). Every other
    # check passes for K=1, and every check, this one included, passes for the other sets.
    if estimator.n_components == 1:
        return {"check_clustering": "one component cannot separate three blobs (ARI 0)"}
    return {}


@parametrize_with_checks(CHECKED, expected_failed_checks=_expected_failures)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_core_install_does_not_import_scikit_learn():
    code = "import sys, online_em; assert 'sklearn' not in sys.modules, 'online_em imports sklearn'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------ the wrapped model


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_partial_fit_equals_learn_many_over_the_same_chunks(covariance_type):
    X = two_clusters(5000, seed=1)
    chunks = np.array_split(X, [300, 350, 1400, 1401, 3000])  # across the warm-up, and one row
    params = dict(n_components=2, covariance_type=covariance_type, warm_up=400, average_after=1000)
    estimator = MiniBatchGaussianMixture(random_state=3, **params)
    model = OnlineGaussianMixture(seed=3, adaptive=False, **params)  # the estimator keeps exactly n_components
    for chunk in chunks:
        estimator.partial_fit(chunk)
        model.learn_many(chunk)
        for name in ARRAYS:
            np.testing.assert_array_equal(getattr(estimator, name), getattr(model, name), err_msg=name)
    assert estimator.n_samples_seen_ == model.n_samples_seen == len(X)
    assert estimator.n_iter_ == estimator.n_steps_ == len(chunks)
    np.testing.assert_array_equal(estimator.predict(X), model.predict_many(X))
    np.testing.assert_array_equal(estimator.predict_proba(X), model.predict_proba_many(X))
    np.testing.assert_array_equal(estimator.score_samples(X), model.score_many(X))
    np.testing.assert_array_equal(estimator.labels_, model.predict_many(chunks[-1]))
    assert estimator.lower_bound_ == pytest.approx(np.mean(model.score_many(chunks[-1])))


def test_fit_resets_and_partial_fit_continues():
    X = two_clusters(3000, seed=2)
    estimator = MiniBatchGaussianMixture(random_state=0, max_iter=2, tol=0.0)
    with pytest.warns(ConvergenceWarning):
        first = {name: getattr(estimator.fit(X), name) for name in ARRAYS}
    assert estimator.n_iter_ == 2 and estimator.n_steps_ == 2 * 3 and not estimator.converged_
    assert estimator.n_samples_seen_ == 2 * len(X)
    estimator.partial_fit(X[:500])
    assert estimator.n_samples_seen_ == 2 * len(X) + 500 and estimator.n_iter_ == 3
    with pytest.warns(ConvergenceWarning):
        estimator.fit(X)  # starts again: the same fit as the first
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(estimator, name), first[name])


def test_fit_stops_when_a_pass_changes_the_lower_bound_by_less_than_tol():
    X = two_clusters(4000, seed=3)
    estimator = MiniBatchGaussianMixture(random_state=0, max_iter=50, tol=1e-3).fit(X)
    assert estimator.converged_ and 2 <= estimator.n_iter_ < 50
    assert len(estimator.lower_bounds_) == estimator.n_iter_
    assert estimator.lower_bound_ == pytest.approx(estimator.score(X))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one pass is the streaming use: nothing to warn about
        one = MiniBatchGaussianMixture(random_state=0, max_iter=1).fit(X)
    assert one.n_iter_ == 1 and not one.converged_


def test_fit_on_fewer_samples_than_the_warm_up_is_a_batch_fit():
    X = two_clusters(60, seed=4)
    estimator = MiniBatchGaussianMixture(random_state=0, warm_up=10_000, max_iter=1).fit(X)
    # The model initialised on all 60 points, so its fit is a mixture of the data, not a
    # provisional guess: compare with scikit-learn's batch EM.
    batch = GaussianMixture(n_components=2, random_state=0).fit(X)
    assert estimator.score(X) == pytest.approx(batch.score(X), abs=0.05)


def test_random_state_instance_and_int():
    X = two_clusters(2000, seed=5)
    a = MiniBatchGaussianMixture(random_state=7).fit(X)
    b = MiniBatchGaussianMixture(random_state=7).fit(X)
    np.testing.assert_array_equal(a.means_, b.means_)
    c = MiniBatchGaussianMixture(random_state=np.random.RandomState(7)).fit(X)
    assert c.means_.shape == a.means_.shape


# ------------------------------------------------------------------ against GaussianMixture


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_one_pass_of_partial_fit_matches_gaussian_mixture_held_out(covariance_type):
    X = two_clusters(30_000, seed=0)
    train, test = X[:20_000], X[20_000:]
    estimator = MiniBatchGaussianMixture(n_components=2, covariance_type=covariance_type, random_state=0)
    for start in range(0, len(train), 1000):
        estimator.partial_fit(train[start : start + 1000])
    batch = GaussianMixture(n_components=2, covariance_type=covariance_type, random_state=0).fit(train)
    assert abs(estimator.score(test) - batch.score(test)) < 0.01
    assert estimator.bic(test) == pytest.approx(batch.bic(test), rel=0.01)
    assert estimator.aic(test) == pytest.approx(batch.aic(test), rel=0.01)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_bic_aic_and_densities_are_gaussian_mixtures_on_the_same_parameters(covariance_type):
    X = two_clusters(3000, seed=6)
    estimator = MiniBatchGaussianMixture(n_components=2, covariance_type=covariance_type, random_state=0).fit(X)
    same = GaussianMixture(n_components=2, covariance_type=covariance_type)
    for name in ARRAYS + ["precisions_", "n_features_in_"]:
        setattr(same, name, getattr(estimator, name))
    np.testing.assert_allclose(estimator.score_samples(X), same.score_samples(X), rtol=1e-10)
    np.testing.assert_allclose(estimator.predict_proba(X), same.predict_proba(X), atol=1e-10)
    covariances = estimator.covariances_
    inverse = np.linalg.inv(covariances) if covariance_type in ("full", "tied") else 1.0 / covariances
    np.testing.assert_allclose(estimator.precisions_, inverse, rtol=1e-6)
    assert estimator.bic(X) == pytest.approx(same.bic(X), rel=1e-10)
    assert estimator.aic(X) == pytest.approx(same.aic(X), rel=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_sample_draws_from_the_fitted_mixture(covariance_type):
    X = two_clusters(3000, seed=7)
    estimator = MiniBatchGaussianMixture(n_components=2, covariance_type=covariance_type, random_state=0).fit(X)
    points, labels = estimator.sample(20_000)
    assert points.shape == (20_000, 3) and points.dtype == np.float64 and labels.dtype == np.int64
    np.testing.assert_allclose(np.bincount(labels, minlength=2) / 20_000, estimator.weights_, atol=0.02)
    for k in range(2):
        np.testing.assert_allclose(points[labels == k].mean(axis=0), estimator.means_[k], atol=0.1)
    again, _ = estimator.sample(20_000)
    np.testing.assert_array_equal(points, again)  # random_state fixes the draw, as in GaussianMixture
    with pytest.raises(ValueError):
        estimator.sample(0)


def test_float32_input_gives_float32_arrays():
    X = two_clusters(3000, seed=8)
    wide = MiniBatchGaussianMixture(random_state=0, max_iter=1).fit(X)
    narrow = MiniBatchGaussianMixture(random_state=0, max_iter=1).fit(X.astype(np.float32))
    for name in ARRAYS + ["precisions_"]:
        assert getattr(narrow, name).dtype == np.float32, name
        np.testing.assert_allclose(getattr(narrow, name), getattr(wide, name), rtol=1e-4, atol=1e-5)
    assert narrow.predict_proba(X.astype(np.float32)).dtype == np.float32
    assert narrow.score_samples(X.astype(np.float32)).dtype == np.float32


# ------------------------------------------------------------------ composition


def test_pipeline_grid_search_pandas_output_and_feature_names():
    pd = pytest.importorskip("pandas")
    X = pd.DataFrame(two_clusters(6000, seed=9) * [1.0, 10.0, 100.0], columns=["a", "b", "c"])
    pipe = make_pipeline(StandardScaler(), MiniBatchGaussianMixture(random_state=0, max_iter=1))
    with config_context(transform_output="pandas"):
        search = GridSearchCV(pipe, {"minibatchgaussianmixture__n_components": [1, 2, 3]}, cv=3)
        search.fit(X)  # scored by held-out log-likelihood: `score`
        best = search.best_estimator_
        assert isinstance(best[0].transform(X), pd.DataFrame)
        labels = search.predict(X)
    means = search.cv_results_["mean_test_score"]
    assert means[1] > means[0] + 0.1  # two clusters explain the held-out data far better than one
    assert search.best_params_["minibatchgaussianmixture__n_components"] in (2, 3)
    mixture = best[-1]
    assert list(mixture.feature_names_in_) == ["a", "b", "c"] and mixture.n_features_in_ == 3
    assert labels.shape == (len(X),)
    with pytest.raises(ValueError, match="feature names"):
        mixture.predict(X[["c", "b", "a"]])


def test_partial_fit_on_dataframes_keeps_feature_names():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(two_clusters(2000, seed=10), columns=["x", "y", "z"])
    estimator = MiniBatchGaussianMixture(random_state=0)
    for start in range(0, len(frame), 500):
        estimator.partial_fit(frame.iloc[start : start + 500])
    assert list(estimator.feature_names_in_) == ["x", "y", "z"]
    np.testing.assert_array_equal(estimator.predict(frame), estimator.model_.predict_many(frame.to_numpy()))
    with pytest.warns(UserWarning, match="feature names"):  # scikit-learn's warning for an array
        estimator.predict(frame.to_numpy())


def test_partial_fit_forgets_with_a_halflife():
    """A drifting stream through partial_fit: with halflife the moving component follows it."""
    rng = np.random.default_rng(0)
    n = 40_000
    moving = np.linspace(40, 80, n)
    x = (np.where(rng.random(n) < 0.5, 20.0, moving) + 5 * rng.standard_normal(n))[:, None]
    forgetting = MiniBatchGaussianMixture(n_components=2, random_state=0, halflife=1000)
    stationary = MiniBatchGaussianMixture(n_components=2, random_state=0)
    for start in range(0, n, 500):
        forgetting.partial_fit(x[start : start + 500])
        stationary.partial_fit(x[start : start + 500])
    # a mean moving 0.001 a sample, remembered over about 1.44 half-lives: a lag of about 1.5
    assert abs(forgetting.means_.max() - 80) < 2.5
    assert 80 - stationary.means_.max() > 10
