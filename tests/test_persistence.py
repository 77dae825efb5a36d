"""Saving and loading models: exact round trips, exact resumption, atomic writes, clear errors."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest

from online_em import OnlineGaussianMixture
from online_em import persistence
from online_em.persistence import StateFileError

COVARIANCE_TYPES = ["full", "diag", "spherical", "tied"]


def _stream(n=3000, d=2, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0] * d, [6.0] * d, [-5.0] + [3.0] * (d - 1)])
    labels = rng.integers(0, 3, n)
    return centres[labels] + rng.normal(size=(n, d)) * np.array([1.0, 0.5][:d] + [1.0] * (d - 2))


def _model(cov, **kw):
    params = dict(n_components=3, covariance_type=cov, warm_up=100, average_after=600, seed=3)
    params.update(kw)
    return OnlineGaussianMixture(**params)


def _assert_same(a, b):
    a._sync(), b._sync()  # take the live state back from the one-point engines
    assert getattr(a, "_pending_average", 0) == getattr(b, "_pending_average", 0)
    assert np.array_equal(a.weights_, b.weights_)
    assert np.array_equal(a.means_, b.means_)
    assert np.array_equal(a.covariances_, b.covariances_)
    assert a.n_samples_seen == b.n_samples_seen
    assert a._n_reseeds == b._n_reseeds
    assert a._rng.bit_generator.state == b._rng.bit_generator.state


def _learn_one(model, X):
    for row in X:
        model.learn_one({"a": row[0], "b": row[1]})


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
@pytest.mark.parametrize("split", [50, 1000])  # during the warm-up, and after averaging began
def test_two_halves_with_save_and_load_equal_one_run_learn_one(tmp_path, cov, split):
    X = _stream(1400)
    whole = _model(cov)
    _learn_one(whole, X)

    first = _model(cov)
    _learn_one(first, X[:split])
    first.save(tmp_path / "m.json")
    second = OnlineGaussianMixture.load(tmp_path / "m.json")
    _learn_one(second, X[split:])
    _assert_same(whole, second)
    assert second.predict_one({"a": 1.0, "b": 2.0}) == whole.predict_one({"a": 1.0, "b": 2.0})


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_two_halves_with_save_and_load_equal_one_run_learn_many(tmp_path, cov):
    X = _stream(3000, seed=1)
    whole = _model(cov)
    for i in range(0, len(X), 250):
        whole.learn_many(X[i : i + 250])

    first = _model(cov)
    for i in range(0, 1500, 250):
        first.learn_many(X[i : i + 250])
    first.save(tmp_path / "m.json")
    second = OnlineGaussianMixture.load(tmp_path / "m.json")
    for i in range(1500, len(X), 250):
        second.learn_many(X[i : i + 250])
    _assert_same(whole, second)
    assert np.array_equal(whole.predict_proba_many(X[:50]), second.predict_proba_many(X[:50]))


def test_one_dimensional_fast_path_resumes_exactly(tmp_path):
    rng = np.random.default_rng(5)
    xs = np.concatenate([rng.normal(20, 5, 1000), rng.normal(40, 5, 2000)])
    rng.shuffle(xs)
    whole = OnlineGaussianMixture(n_components=2, warm_up=200, average_after=1000, seed=42)
    labels_whole = [whole.learn_predict_one({0: x}) for x in xs]
    first = OnlineGaussianMixture(n_components=2, warm_up=200, average_after=1000, seed=42)
    labels = [first.learn_predict_one({0: x}) for x in xs[:1700]]
    first.save(tmp_path / "m.json")
    second = OnlineGaussianMixture.load(tmp_path / "m.json")
    labels += [second.learn_predict_one({0: x}) for x in xs[1700:]]
    assert labels == labels_whole
    _assert_same(whole, second)
    assert second.feature_names_in_ == [0]  # integer feature names stay integers


def test_saving_does_not_change_the_run(tmp_path):
    """Saving syncs the fast path's state; the saved model must continue exactly as before."""
    rng = np.random.default_rng(2)
    xs = rng.normal(size=800)
    a = OnlineGaussianMixture(n_components=2, covariance_type="diag", warm_up=50, seed=0)
    b = OnlineGaussianMixture(n_components=2, covariance_type="diag", warm_up=50, seed=0)
    for i, x in enumerate(xs):
        a.learn_one({"x": x})
        b.learn_one({"x": x})
        if i % 97 == 0:
            b.save(tmp_path / "b.json")
    _assert_same(a, b)


def test_floats_round_trip_exactly_and_the_file_is_plain_json(tmp_path):
    model = _model("full")
    _learn_one(model, _stream(700) * np.pi * 1e-3)
    path = tmp_path / "m.json"
    model.save(path)
    state = json.loads(path.read_text())
    assert state["format"] == "online-em/model" and state["version"] == 5
    assert state["features"] == ["a", "b"]
    assert state["params"]["covariance_type"] == "full" and state["params"]["seed"] == 3
    assert state["t"] == 700
    assert np.array_equal(np.array(state["stats"]["s2"]), model._stats.s2)
    again = OnlineGaussianMixture.load(path)
    for field in ("shift", "s0", "s1", "s2"):
        assert np.array_equal(getattr(again._stats, field), getattr(model._stats, field))
    assert np.array_equal(again._average.s1, model._average.s1)
    # and saving the loaded model reproduces the file byte for byte
    again.save(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_bytes() == path.read_bytes()


def test_unfitted_and_warm_up_models_round_trip(tmp_path):
    empty = OnlineGaussianMixture(n_components=4, covariance_type="tied", alpha=0.7, seed=None)
    empty.save(tmp_path / "e.json")
    loaded = OnlineGaussianMixture.load(tmp_path / "e.json")
    assert loaded._get_params() == empty._get_params()
    assert loaded.n_samples_seen == 0 and not loaded.is_initialised

    buffering = OnlineGaussianMixture(warm_up=10)
    for x in [1.0, 2.0, 3.0]:
        buffering.learn_one({7: x})
    buffering.save(tmp_path / "b.json")
    loaded = OnlineGaussianMixture.load(tmp_path / "b.json")
    assert loaded._buffer == [[1.0], [2.0], [3.0]] and loaded.n_samples_seen == 3
    assert loaded.feature_names_in_ == [7]


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path, monkeypatch):
    model = _model("diag")
    _learn_one(model, _stream(300))
    path = tmp_path / "m.json"
    model.save(path)
    before = path.read_bytes()
    _learn_one(model, _stream(300, seed=9))

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == before  # the old model is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]  # and the temporary file is gone


def test_save_keeps_the_permissions_of_an_existing_file(tmp_path):
    path = tmp_path / "m.json"
    model = _model("diag")
    model.save(path)
    os.chmod(path, 0o640)
    model.save(path)
    assert os.stat(path).st_mode & 0o777 == 0o640


def test_non_finite_values_are_refused_on_save(tmp_path):
    model = _model("diag")
    _learn_one(model, _stream(200))
    model._sync()  # take the state back from the one-point engine
    model._stats.s1[0, 0] = np.nan
    with pytest.raises(ValueError, match="cannot be saved"):
        model.save(tmp_path / "m.json")
    assert not (tmp_path / "m.json").exists()


def test_unsaveable_feature_names_are_refused(tmp_path):
    model = OnlineGaussianMixture(warm_up=5)
    model.learn_one({(1, 2): 1.0})
    with pytest.raises(ValueError, match="feature names"):
        model.save(tmp_path / "m.json")


@pytest.fixture
def saved(tmp_path):
    model = _model("full")
    _learn_one(model, _stream(700))
    path = tmp_path / "m.json"
    model.save(path)
    return path


def _mutate(path, change):
    state = json.loads(path.read_text())
    change(state)
    path.write_text(json.dumps(state))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.update(version=6), "unsupported version 6"),
        (lambda s: s.update(format="pickle"), "not an online-em model file"),
        (lambda s: s.pop("stats"), "missing field"),
        (lambda s: s.update(extra=1), "unknown field"),
        (lambda s: s["params"].update(n_components=0), "n_components"),
        (lambda s: s["params"].update(covariance_type="round"), "covariance_type"),
        (lambda s: s["params"].pop("alpha"), "hyper-parameters"),
        (lambda s: s["stats"].update(s1=[[0.0, 1.0]]), r"stats.s1: expected shape \(3, 2\)"),
        (lambda s: s["stats"].update(s0=["a", 1, 2]), "stats.s0: expected a number"),
        (lambda s: s["stats"].update(s0=[1.0, -1.0, 1.0]), "non-negative"),
        (lambda s: s["average"].update(covariance_type="diag"), "differs"),
        (lambda s: s.update(features=["a", "a"]), "duplicated"),
        (lambda s: s.update(features=["a", 1.5]), "strings or integers"),
        (lambda s: s.update(t=-3), "'t'"),
        (lambda s: s.update(t=True), "'t'"),
        (lambda s: s.update(pending_average=-1), "'pending_average'"),
        (lambda s: s.update(buffer=[[1.0, 2.0]]), "'buffer' must be empty"),
        (lambda s: s["rng"].update(bit_generator="MT19937"), "PCG64"),
        (lambda s: s["rng"].update(state="nope"), "'rng'"),
        (lambda s: s.update(stats=None, average=None), "'buffer'"),
        (lambda s: s.update(stats=None), "'average' is set"),
    ],
)
def test_inconsistent_files_are_rejected_with_a_named_problem(saved, change, message):
    _mutate(saved, change)
    with pytest.raises(StateFileError, match=message):
        OnlineGaussianMixture.load(saved)


def test_truncated_files_are_rejected_and_left_as_they_are(saved):
    data = saved.read_bytes()
    for cut in (0, 1, len(data) // 3, len(data) - 3):
        saved.write_bytes(data[:cut])
        with pytest.raises(StateFileError, match="empty|truncated") as info:
            OnlineGaussianMixture.load(saved)
        assert str(saved) in str(info.value)
        assert saved.read_bytes() == data[:cut]


def test_nan_infinity_invalid_utf8_and_pickles_are_rejected(saved):
    text = saved.read_text()
    state = json.loads(text)
    value = repr(state["stats"]["s0"][0])
    saved.write_text(text.replace(value, "NaN", 1))
    with pytest.raises(StateFileError, match="NaN"):
        OnlineGaussianMixture.load(saved)
    saved.write_text(text.replace(value, "1e999", 1))
    with pytest.raises(StateFileError, match="finite"):
        OnlineGaussianMixture.load(saved)
    saved.write_bytes(b"\xff\xfe" + text.encode())
    with pytest.raises(StateFileError, match="UTF-8"):
        OnlineGaussianMixture.load(saved)
    saved.write_bytes(pickle.dumps(_model("full")))
    with pytest.raises(StateFileError):
        OnlineGaussianMixture.load(saved)
    saved.write_text("[1, 2, 3]")
    with pytest.raises(StateFileError, match="JSON object"):
        OnlineGaussianMixture.load(saved)


def test_a_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        persistence.load(tmp_path / "nope.json")
