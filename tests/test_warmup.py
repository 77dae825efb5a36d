"""The warm-up is batch EM on every point seen: short streams, the prior, the start, first blocks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture

from online_em import OnlineGaussianMixture, init, persistence
from online_em.prior import CovariancePrior
from online_em.stats import SufficientStatistics

from .datagen import tutorial_stream


def blobs(n: int, seed: int, D: int = 2):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0] * D, [6.0] * D, [0.0] * (D - 1) + [12.0]])
    y = rng.integers(3, size=n)
    return centres[y] + rng.normal(size=(n, D)), y


def test_a_short_stream_reports_a_fit_of_every_point_not_of_a_prefix():
    X, _ = blobs(300, seed=1)
    model = OnlineGaussianMixture(n_components=3, seed=0)
    for row in X[:299]:
        model.learn_one({"a": row[0], "b": row[1]})
    before = model.means_
    model.learn_one({"a": 40.0, "b": 40.0})  # one far point moves the fit of all points
    assert model.n_samples_seen == 300 and not model.is_initialised
    assert not np.allclose(before, model.means_)
    # ... and the fit is as good as scikit-learn's batch EM on the same points
    ours = model.score_many(np.vstack([X[:299], [[40.0, 40.0]]])).mean()
    sk = GaussianMixture(3, random_state=0).fit(np.vstack([X[:299], [[40.0, 40.0]]]))
    assert ours >= sk.score(np.vstack([X[:299], [[40.0, 40.0]]])) - 0.05


def test_predictions_during_the_warm_up_match_the_reported_fit_after_learning():
    X, _ = blobs(400, seed=2)
    model = OnlineGaussianMixture(n_components=3, seed=0)
    model.learn_many(X)
    labels = model.predict_many(X)
    assert [model.predict_one({0: a, 1: b}) for a, b in X[:50]] == labels[:50].tolist()
    assert model.score_one({0: X[0, 0], 1: X[0, 1]}) == pytest.approx(model.score_many(X[:1])[0])


def test_the_warm_up_scales_with_the_model_and_is_documented():
    assert init.default_warm_up("full", 2, 1) == 500
    assert init.default_warm_up("full", 2, 9) == 100 * init.n_parameters("full", 2, 9)
    assert init.default_warm_up("full", 10, 64) == 20_000  # the cap
    assert init.default_warm_up("diag", 10, 500) == 2_000_000 // 500  # the memory cap
    model = OnlineGaussianMixture(n_components=3, covariance_type="diag")
    model.learn_one({"a": 1.0, "b": 2.0})
    assert model.warm_up_size == 100 * init.n_parameters("diag", 3, 2)
    assert "100 points per free parameter" in " ".join(OnlineGaussianMixture.__doc__.split())


@pytest.mark.parametrize("warm_up", [1, 2, 3])
def test_warm_up_must_exceed_the_components(warm_up):
    with pytest.raises(ValueError, match="warm_up"):
        OnlineGaussianMixture(n_components=3, warm_up=warm_up)


def test_fewer_distinct_points_than_components_never_gives_duplicate_live_components():
    model = OnlineGaussianMixture(n_components=4, warm_up=30, seed=0)
    for i in range(40):
        model.learn_one({"x": float(i % 2)})  # two distinct values
    weights, means = model.weights_, model.means_[:, 0]
    assert np.isfinite(means).all() and abs(weights.sum() - 1) < 1e-12
    live = weights > 0.05
    assert len(set(np.round(means[live], 6))) == live.sum()


def test_nothing_learned_yet_predict_many_answers_like_predict_one():
    model = OnlineGaussianMixture(n_components=3)
    X = np.array([[0.0, 1.0], [5.0, 5.0]])
    assert model.predict_many(X).tolist() == [model.predict_one({0: 0.0, 1: 1.0}), 0]
    assert np.isfinite(model.score_many(X)).all()
    assert np.allclose(model.predict_proba_many(X), 1 / 3)
    assert model.n_features_in_ == 0  # inference fixed no features


def test_a_fresh_labelers_first_block_is_labelled_from_a_fit_of_that_block():
    x, y = tutorial_stream(0)
    block = x[:1024, None]
    model = OnlineGaussianMixture(n_components=2, seed=0)
    labels = model.learn_predict_many(block)
    agreement = max(np.mean(labels == y[:1024]), np.mean(labels != y[:1024]))
    assert agreement >= 0.95, agreement


def test_the_prior_keeps_full_covariances_positive_definite_on_few_points_in_many_dimensions():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(25, 12))
    model = OnlineGaussianMixture(n_components=3, seed=0)
    model.learn_many(X)
    eigenvalues = np.linalg.eigvalsh(model.covariances_)
    assert eigenvalues.min() > 1e-3  # not reg_covar's 1e-6: the prior holds them open
    assert np.isfinite(model.score_many(X)).all()
    bare = OnlineGaussianMixture(n_components=3, covariance_prior=0.0, seed=0)
    bare.learn_many(X)
    assert np.linalg.eigvalsh(bare.covariances_).min() < 1e-3  # without it they collapse


def test_the_auto_prior_leaves_well_determined_covariances_to_the_data():
    # Two components in 3-D, 750 points each; the third feature is 0 in one and 1 in the other,
    # up to a jitter of variance 1e-6: nearly discrete, as two of ImageSegments' features are.
    rng = np.random.default_rng(11)
    y = np.repeat([0, 1], 750)
    X = np.column_stack([rng.normal(size=(1500, 2)) + 6.0 * y[:, None], y + rng.normal(scale=1e-3, size=1500)])
    variances = {}
    for prior in ("auto", 0.1):
        model = OnlineGaussianMixture(n_components=2, covariance_prior=prior, seed=0)
        model.learn_many(X)  # within the warm-up: the reported fit is batch EM on all 1,500
        variances[prior] = model.covariances_[:, 2, 2]
    # 12 covariance parameters for 1,500 points: 'auto' is (12 / 1500)^2 x 0.1, about 6e-6
    # pseudo-points, where 0.1 adds 0.1 x 0.5 x 0.25 / 750, about 1.7e-5, to each variance.
    own = np.array([X[y == k, 2].var() for k in (0, 1)]) + 1e-6  # with reg_covar, as scikit-learn's
    np.testing.assert_allclose(np.sort(variances["auto"]), np.sort(own), rtol=0.01)
    assert (variances[0.1] > 1e-5).all()


def test_the_prior_is_the_map_estimate():
    X = np.random.default_rng(4).normal(size=(50, 3))
    stats = SufficientStatistics.from_batch(X, np.ones((50, 1)), X.mean(axis=0), "full")
    prior = CovariancePrior(scale=np.diag([1.0, 2.0, 3.0]), count=5.0)
    cov = prior.merged_into(stats).to_parameters(0.0).covariances[0]
    scatter = (X - X.mean(axis=0)).T @ (X - X.mean(axis=0))
    # (plus the floor of 1e-10 times the largest variance that every full covariance gets)
    np.testing.assert_allclose(cov, (scatter + 5.0 * prior.scale) / (50 + 5.0), rtol=0, atol=1e-9)
    np.testing.assert_allclose(prior.merged_into(stats).to_parameters(0.0).means[0], X.mean(axis=0))


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical", "tied"])
def test_saving_during_the_warm_up_and_loading_goes_on_exactly(tmp_path, covariance_type):
    X, _ = blobs(1200, seed=5)
    one = OnlineGaussianMixture(n_components=3, covariance_type=covariance_type, warm_up=700, seed=0)
    two = OnlineGaussianMixture(n_components=3, covariance_type=covariance_type, warm_up=700, seed=0)
    one.learn_many(X[:400])
    _ = one.predict_one({0: 1.0, 1: 1.0}), one.means_  # labelling and reported fits made, then dropped
    one.save(tmp_path / "m.json")
    one = OnlineGaussianMixture.load(tmp_path / "m.json")
    one.learn_many(X[400:])
    two.learn_many(X[:400])
    two.learn_many(X[400:])
    np.testing.assert_array_equal(one.means_, two.means_)
    np.testing.assert_array_equal(one.weights_, two.weights_)


def test_version_1_state_files_load_as_models_without_a_prior():
    model = OnlineGaussianMixture(n_components=2, warm_up=10, seed=0)
    model.learn_many(np.arange(30.0)[:, None])
    state = persistence.to_dict(model)
    state["version"] = 1
    del state["params"]["covariance_prior"]
    loaded = persistence.from_dict(json.loads(json.dumps(state)))
    assert loaded.covariance_prior == 0.0
    np.testing.assert_array_equal(loaded.means_, model.means_)


def test_the_tutorial_stream_within_the_warm_up_matches_batch_em():
    x, y = tutorial_stream(1)
    model = OnlineGaussianMixture(n_components=2, warm_up=20_000, seed=0)
    model.learn_many(x[:, None])
    sk = GaussianMixture(2, random_state=0).fit(x[:, None])
    assert model.score_many(x[:, None]).mean() >= sk.score(x[:, None]) - 1e-4
    assert adjusted_rand_score(y, model.predict_many(x[:, None])) >= 0.90
