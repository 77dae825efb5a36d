"""The model as a River clusterer: River's own checks, pipelines, metrics, and dict handling."""

from __future__ import annotations

import copy
import itertools
import pickle

import numpy as np
import pytest
from river import checks, compose, datasets, evaluate, metrics, preprocessing, stream
from river.checks import common

from online_em import OnlineGaussianMixture

from .datagen import blob_dicts


def trump_stream(n=200):
    return [(x, y) for x, y in datasets.TrumpApproval().take(n)]


def test_river_check_estimator():
    checks.check_estimator(OnlineGaussianMixture(seed=42))


@pytest.mark.parametrize(
    "check",
    [
        common.check_learn_one,
        common.check_pickling,
        common.check_shuffle_features_no_impact,
        common.check_no_state_aliasing_with_input,
        common.check_clone_is_independent,
        common.check_seeding_is_idempotent,
    ],
    ids=lambda check: check.__name__,
)
@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_river_data_checks(check, covariance_type):
    model = OnlineGaussianMixture(n_components=3, covariance_type=covariance_type, warm_up=50, seed=42)
    check(model, trump_stream())


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_no_state_aliasing_once_initialised(covariance_type):
    """River's aliasing check stops after one point; run it on a model past its warm-up too."""
    data = trump_stream()
    model = OnlineGaussianMixture(n_components=3, covariance_type=covariance_type, warm_up=50, seed=42)
    for x, _ in data[:100]:
        model.learn_one(x)
    assert model.is_initialised
    common.check_no_state_aliasing_with_input(model, data[100:])


def test_bounded_memory_growth_over_2000_points():
    xs, _ = blob_dicts(2000, seed=3)
    model = OnlineGaussianMixture(n_components=3, warm_up=200, seed=0)
    common.check_bounded_memory_growth(model, [(x, None) for x in xs])
    assert model.n_samples_seen == 2000


def test_cold_start_gives_valid_predictions():
    model = OnlineGaussianMixture(n_components=3, seed=0)
    x = {"a": 1.0, "b": -2.0}
    assert model.predict_one(x) in range(3)
    proba = model.predict_proba_one(x)
    assert sorted(proba) == [0, 1, 2] and sum(proba.values()) == pytest.approx(1.0)
    assert np.isfinite(model.score_one(x))
    # During the warm-up, too, and predictions do not mutate the input.
    for i in range(10):
        model.learn_one({"a": float(i), "b": float(-i)})
        before = dict(x)
        assert model.predict_one(x) in range(3)
        assert sum(model.predict_proba_one(x).values()) == pytest.approx(1.0)
        assert np.isfinite(model.score_one(x))
        assert x == before
    assert not model.is_initialised


def test_inference_does_not_mutate_input_after_learning():
    xs, _ = blob_dicts(700, seed=1)
    model = OnlineGaussianMixture(n_components=3, seed=0)
    for x in xs:
        model.learn_one(x)
        snapshot = copy.deepcopy(x)
        model.predict_one(x), model.predict_proba_one(x), model.score_one(x)
        assert x == snapshot


def test_pipeline_with_standard_scaler_ari_above_0_9():
    xs, ys = blob_dicts(5000, seed=7)
    model = preprocessing.StandardScaler() | OnlineGaussianMixture(n_components=3, seed=1)
    ari = metrics.AdjustedRand()
    for x, y in zip(xs, ys):
        ari.update(y, model.predict_one(x))  # test, then train
        model.learn_one(x)
    assert ari.get() > 0.9


def test_progressive_val_score_with_silhouette():
    """All of it within the default warm-up (2,900 points): the metric reads `centers` after every
    point, which are the labelling fit's then (a refit of the buffer at each point took 19 s)."""
    xs, ys = blob_dicts(1500, seed=2)
    model = OnlineGaussianMixture(n_components=3, seed=0)
    result = evaluate.progressive_val_score(
        dataset=zip(xs, ys), model=model, metric=metrics.Silhouette()
    )
    assert model.warm_up_size > 1500
    assert 0.0 < result.get() < 0.5  # silhouette here is a ratio of distances: small is good
    assert set(model.centers) == {0, 1, 2}
    assert set(model.centers[0]) == {"f0", "f1", "f2"}


def test_centers_are_those_predict_one_labels_with():
    xs, _ = blob_dicts(1500, seed=2)
    model = OnlineGaussianMixture(n_components=3, warm_up=1000, seed=0)
    for x in xs[:700]:  # in the warm-up: the labelling fit's centres
        model.learn_one(x)
    labelling = model._labelling_parameters().means
    assert [list(model.centers[k].values()) for k in range(3)] == labelling.tolist()
    for x in xs[700:]:  # afterwards: the reported means
        model.learn_one(x)
    np.testing.assert_array_equal([list(model.centers[k].values()) for k in range(3)], model.means_)


def test_key_order_changes_nothing():
    xs, _ = blob_dicts(800, seed=4)
    a, b = OnlineGaussianMixture(n_components=3, seed=5), OnlineGaussianMixture(n_components=3, seed=5)
    for x in xs:
        a.learn_one(x)
        b.learn_one(dict(reversed(list(x.items()))))
    np.testing.assert_array_equal(a.means_, b.means_)
    assert a.feature_names_in_ == ["f0", "f1", "f2"]


@pytest.mark.parametrize(
    "check",
    [common.check_emerging_features, common.check_disappearing_features, common.check_radically_disappearing_features],
    ids=lambda check: check.__name__,
)
@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical", "tied"])
def test_river_feature_churn_checks(check, covariance_type):
    """Features that come and go: River's own checks, through the warm-up and past it."""
    model = OnlineGaussianMixture(n_components=3, covariance_type=covariance_type, warm_up=50, seed=42)
    data = trump_stream()
    check(model, data)
    assert model.n_features_in_ == len(data[0][0])
    params = [model.weights_, model.means_, model.covariances_]
    assert all(np.isfinite(p).all() for p in params)
    assert all(np.isfinite(model.score_one(x)) for x, _ in data[:20])


def test_missing_keys_are_missing_values_and_unknown_keys_at_inference_are_ignored():
    model = OnlineGaussianMixture(warm_up=5, seed=0)
    for i in range(10):
        model.learn_one({"x": float(i), "y": float(i % 3)})
    assert model.predict_one({"x": 1.0}) == model.predict_one({"x": 1.0, "y": None, "z": 3.0})
    assert model.score_one({"x": 1.0, "y": float("nan")}) == model.score_one({"x": 1.0})
    assert model.feature_names_in_ == ["x", "y"]  # inference adds nothing
    with pytest.raises(ValueError, match="finite"):
        model.learn_one({"x": float("inf"), "y": 2.0})
    with pytest.raises(ValueError, match="real numbers"):
        model.learn_one({"x": "1", "y": 2.0})


def test_learn_many_accepts_dataframes_and_arrays():
    pd = pytest.importorskip("pandas")
    xs, _ = blob_dicts(1200, seed=6)
    frame = pd.DataFrame(xs)[["f2", "f0", "f1"]]  # column order does not matter
    model = OnlineGaussianMixture(n_components=3, seed=0)
    model.learn_many(frame)
    labels = model.predict_many(frame)
    assert isinstance(labels, pd.Series) and labels.index.equals(frame.index)
    proba = model.predict_proba_many(frame)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert list(proba.columns) == [0, 1, 2]
    scores = model.score_many(frame)
    assert np.isfinite(scores).all()
    # predict_many agrees with predict_one
    assert [model.predict_one(x) for x in xs[:50]] == labels.iloc[:50].tolist()
    assert model.score_one(xs[0]) == pytest.approx(scores.iloc[0])
    # arrays in the model's feature order
    array = frame[["f0", "f1", "f2"]].to_numpy()
    np.testing.assert_array_equal(model.predict_many(array), labels.to_numpy())
    with pytest.raises(ValueError, match="expected 3 features"):
        model.learn_many(array[:, :2])


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_learn_predict_many_is_predict_many_then_learn_many(covariance_type):
    xs, _ = blob_dicts(3000, seed=8)
    X = np.array([[x[f] for f in sorted(x)] for x in xs])
    both = OnlineGaussianMixture(n_components=3, covariance_type=covariance_type, seed=0)
    apart = OnlineGaussianMixture(n_components=3, covariance_type=covariance_type, seed=0)
    chunks = np.array_split(X, 24)  # 125 rows: through the warm-up, then past average_after
    both.learn_many(chunks[0])
    apart.learn_many(chunks[0])
    for chunk in chunks[1:]:
        labels = both.learn_predict_many(chunk)
        np.testing.assert_array_equal(labels, apart.predict_many(chunk))
        apart.learn_many(chunk)
    np.testing.assert_array_equal(both.score_many(X), apart.score_many(X))
    # labels are the argmax of the posterior probabilities
    np.testing.assert_array_equal(both.predict_many(X), both.predict_proba_many(X).argmax(axis=1))


def test_the_labelers_row_step_equals_learn_predict_one():
    """The CLI's live step takes rows, not dicts: the same labels and state along a stream that
    crosses the warm-up."""
    xs, _ = blob_dicts(1500, seed=9)
    by_dict = OnlineGaussianMixture(n_components=3, seed=0)
    by_row = OnlineGaussianMixture(n_components=3, seed=0)
    by_row.learn_one(xs[0])  # the row step needs the features known
    by_dict.learn_one(xs[0])
    features = by_row.feature_names_in_
    for x in xs[1:]:
        assert by_row.learn_predict_row([x[f] for f in features]) == by_dict.learn_predict_one(x)
    np.testing.assert_array_equal(by_row.means_, by_dict.means_)


def test_labels_are_stable_over_the_stream():
    xs, _ = blob_dicts(6000, seed=8)
    model = OnlineGaussianMixture(n_components=3, seed=0)
    probes = xs[:3]
    seen = []
    for i, x in enumerate(xs):
        model.learn_one(x)
        if i + 1 in (1000, 3000, 6000):
            seen.append([model.predict_one(p) for p in probes])
    assert seen[0] == seen[1] == seen[2]
    assert len(set(seen[0])) == 3 or len(set(map(tuple, [seen[0]]))) == 1


def test_iter_array_stream_integer_keys():
    X = np.random.default_rng(0).normal(size=(600, 2))
    model = OnlineGaussianMixture(seed=0)
    for x, _ in stream.iter_array(X):
        model.learn_one(x)
    assert model.feature_names_in_ == [0, 1]
    np.testing.assert_allclose(model.predict_proba_many(X).sum(1), 1.0)


def test_pickle_roundtrip_keeps_predictions():
    xs, _ = blob_dicts(900, seed=9)
    model = OnlineGaussianMixture(n_components=3, seed=0)
    for x in xs:
        model.learn_one(x)
    clone = pickle.loads(pickle.dumps(model))
    assert [clone.predict_one(x) for x in xs[:100]] == [model.predict_one(x) for x in xs[:100]]
    for x in itertools.islice(xs, 100):
        model.learn_one(x), clone.learn_one(x)
    np.testing.assert_array_equal(model.means_, clone.means_)


def test_invalid_hyper_parameters_are_rejected():
    for kwargs, message in [
        ({"alpha": 0.5}, "alpha"),
        ({"alpha": 1.2}, "alpha"),
        ({"covariance_type": "weird"}, "covariance_type"),
        ({"n_components": 0}, "n_components"),
        ({"warm_up": 0}, "warm_up"),
        ({"reg_covar": -1.0}, "reg_covar"),
    ]:
        with pytest.raises(ValueError, match=message):
            OnlineGaussianMixture(**kwargs)


def test_pipeline_clone_keeps_parameters():
    model = compose.Pipeline(preprocessing.StandardScaler(), OnlineGaussianMixture(n_components=4, alpha=0.7))
    clone = model.clone()
    assert clone["OnlineGaussianMixture"].n_components == 4
    assert clone["OnlineGaussianMixture"].alpha == 0.7
