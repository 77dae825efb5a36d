"""Issue 11: missing values and features that come and go, through the model, the CLI and state files.

The statistical targets run through the benchmark's own functions (benchmarks/missing_values.py):
D=5, K=3 full, 5,000 training rows with 30% of the entries missing completely at random, held-out
log-likelihood on 10,000 complete rows, 3 seeds.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import sys

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from online_em import OnlineGaussianMixture
from online_em.cli import cli
from online_em.persistence import StateFileError, dumps, loads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import missing_values as mv  # noqa: E402

SEEDS = (0, 1, 2)
TYPES = ["full", "diag", "spherical", "tied"]


@functools.lru_cache(maxsize=None)
def case(seed: int) -> mv.Case:
    return mv.make_case(seed, 5_000)


@functools.lru_cache(maxsize=None)
def gap(seed: int, system: str) -> float:
    return mv.gap(case(seed), system)


# ------------------------------------------------------------------ the targets


@pytest.mark.parametrize("seed", SEEDS)
def test_within_003_nats_of_the_truth_and_better_than_dropping_rows(seed):
    """The issue asks for 0.2 nats over dropping rows (mv.OVER_DROPPING, the benchmark's verdict):
    met by the model before exact weights and per-component steps, whose one pass on the 17% of
    complete rows ended 0.26 from the truth. Since, that pass ends 0.05-0.09 away, and learning
    from the incomplete rows gains 0.03-0.07 over it (benchmarks/RESULTS.md, section 8)."""
    ours = gap(seed, "ours")
    assert ours >= -mv.WITHIN_5000, ours
    assert ours - gap(seed, "drop incomplete rows") >= 0.02
    assert gap(seed, "mean imputation") < ours - 0.5  # the trap the benchmark shows


@pytest.mark.parametrize("seed", SEEDS)
def test_the_complete_rows_keep_their_three_clusters_after_a_500_point_warm_up(seed):
    """The benchmark's ceiling, ours on the complete rows: its warm-up's AIC fit takes the merge
    test (`online_em.selection.merged`) at 500 points. Judged on those 500 points' masses, seed 1
    merged two of the three clusters and ended 0.116 nats from the truth; judged with the masses of
    the stream's first check, 500 points later, it keeps them, as the stream does."""
    fitted = mv.streamed(case(seed).complete, seed)
    assert fitted.n_active_components_ == 3
    assert float(fitted.score_many(case(seed).test).mean()) - case(seed).truth >= -mv.WITHIN_5000


def test_learn_one_with_absent_keys_agrees_with_learn_many_with_nan():
    """As the complete-data paths agree: one point at a time against mini-batches of 100."""
    c = case(0)
    one = mv.one_by_one(c.holes, 0).score_many(c.test).mean() - c.truth
    many = gap(0, "ours")
    assert one >= -mv.WITHIN_5000 and abs(one - many) < 0.01
    complete_one = mv.one_by_one(c.complete, 0).score_many(c.test).mean() - c.truth
    complete_many = gap(0, "complete data")
    assert abs(one - many) < abs(complete_one - complete_many) + 0.01


def _label(args: list[str], lines: list[str], tmp_path, name: str) -> OnlineGaussianMixture:
    """`online-em label` on the lines; its lines with no value at all are bad lines, with a warning."""
    state = tmp_path / name
    result = CliRunner().invoke(cli, ["label", "--state", str(state), "-k", "3", "--seed", "0", *args],
                                input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.stderr
    empty = [i + 1 for i, line in enumerate(lines) if not any(c.isdigit() for c in line)]
    assert [int(n) for n in re.findall(r"warning: line (\d+): no value", result.stderr)] == empty
    return OnlineGaussianMixture.load(state)


def test_online_em_label_with_na_fields_learns_what_the_library_learns(tmp_path):
    c = case(0)
    rows = c.holes[:2000]
    text = [",".join("NA" if v != v else repr(v) for v in row) for row in rows.tolist()]
    blocks = _label(["--batch-size", "100", "--warm-up", "500"], text, tmp_path, "blocks.json")
    reference = mv.model(0)
    for start in range(0, len(rows), 100):
        reference.learn_predict_many(rows[start : start + 100])
    np.testing.assert_array_equal(blocks.means_, reference.means_)
    np.testing.assert_array_equal(blocks.covariances_, reference.covariances_)
    # line by line, empty fields and NA alike, is learn_one with absent keys
    text = [",".join(("" if j % 2 else "NA") if v != v else repr(v) for j, v in enumerate(row))
            for row in rows[:800].tolist()]
    lines = _label(["--warm-up", "500"], text, tmp_path, "lines.json")
    one = mv.one_by_one(rows[:800], 0)
    np.testing.assert_allclose(lines.means_, one.means_, rtol=1e-9)
    # JSON lines without the missing keys; --columns names every feature (the first line lacks one)
    jsonl = [json.dumps({f"f{j}": v for j, v in enumerate(row) if v == v}) for row in rows[:800].tolist()]
    by_key = _label(["--format", "jsonl", "--columns", "f0,f1,f2,f3,f4", "--warm-up", "500"], jsonl, tmp_path, "j.json")
    np.testing.assert_allclose(by_key.means_, one.means_, rtol=1e-9)


def test_a_line_with_no_value_is_still_a_bad_line(tmp_path):
    result = CliRunner().invoke(cli, ["label", "--warm-up", "3"], input="1,2\nNA,NA\n,\n3,NA\n")
    assert result.exit_code == 0
    assert result.stdout.split() == ["0", "NA", "NA", "0"]
    assert "line 2: no value: field 1 is NA and field 2 is NA: 'NA,NA'" in result.stderr
    assert "line 3: no value: field 1 is empty and field 2 is empty" in result.stderr
    jsonl = CliRunner().invoke(cli, ["label", "--format", "jsonl", "--warm-up", "3"],
                               input='{"x": 1, "y": 2}\n{"x": null}\n{"y": 3}\n')
    assert jsonl.stdout.split() == ["0", "NA", "0"]
    assert "line 2: no value: 'x' is null and 'y' is absent" in jsonl.stderr


# ------------------------------------------------------------------ every structure


def _holes(X, rate, seed):
    rng = np.random.default_rng(seed)
    out = X.copy()
    out[rng.random(X.shape) < rate] = np.nan
    return out


@pytest.mark.parametrize("covariance_type", TYPES)
def test_every_structure_learns_from_incomplete_rows_nearly_as_from_complete_ones(covariance_type):
    mix = mv.Mixture(4, 3, "full" if covariance_type in ("full", "tied") else "diag", seed=5)
    train, test = mix.sample(4000, 6), mix.sample(5000, 7)
    holes = _holes(train, 0.3, 8)

    def fitted(rows):  # exactly 3 components: on a warm-up of incomplete rows AIC may choose 2
        m = OnlineGaussianMixture(n_components=3, covariance_type=covariance_type, warm_up=500, adaptive=False, seed=0)
        for start in range(0, len(rows), 100):
            m.learn_many(rows[start : start + 100])
        return m

    full, holed = fitted(train), fitted(holes)
    dropped = fitted(holes[~np.isnan(holes).any(axis=1)])
    ll = {name: m.score_many(test).mean() for name, m in (("full", full), ("holes", holed), ("dropped", dropped))}
    assert ll["holes"] > ll["full"] - 0.06, ll
    assert ll["holes"] > ll["dropped"], ll
    _assert_sound(holed, holes)


def _assert_sound(model, X):
    """NaN never leaves the model: finite parameters, and finite outputs for incomplete rows."""
    for value in (model.weights_, model.means_, model.covariances_, model.precisions_cholesky_):
        assert np.isfinite(value).all()
    assert np.isfinite(model.score_many(X)).all()
    proba = model.predict_proba_many(X)
    assert np.isfinite(proba).all() and np.allclose(proba.sum(axis=1), 1.0)
    assert set(np.unique(model.predict_many(X))) <= set(range(model.n_components))


@pytest.mark.parametrize("covariance_type", TYPES)
def test_nan_never_leaves_the_model_during_and_after_the_warm_up(covariance_type):
    X = _holes(np.random.default_rng(0).normal(size=(400, 3)) * [1.0, 10.0, 0.1], 0.5, 1)
    model = OnlineGaussianMixture(n_components=2, covariance_type=covariance_type, warm_up=200, seed=0)
    for row in X[:150]:
        model.learn_one({f"f{j}": v for j, v in enumerate(row)})  # NaN values as values
    assert not model.is_initialised
    _assert_sound(model, X)
    model.learn_many(pd.DataFrame(X[150:], columns=["f0", "f1", "f2"]))
    assert model.is_initialised
    _assert_sound(model, X)
    for j, row in enumerate(X[:50]):
        x = {f"f{i}": (None if v != v else v) for i, v in enumerate(row)}
        assert math.isfinite(model.score_one(x)) and model.predict_one(x) in (0, 1)
        assert model.learn_predict_one(x) in (0, 1)
    _assert_sound(model, X)


def test_rows_with_nothing_observed_are_skipped_and_counted():
    model = OnlineGaussianMixture(n_components=2, warm_up=20, seed=0)
    X = np.random.default_rng(1).normal(size=(60, 2))
    X[[3, 30, 50]] = np.nan
    model.learn_many(X[:40])
    model.learn_one({})
    for row in X[40:]:
        model.learn_one({j: v for j, v in enumerate(row) if v == v})
    assert model.n_samples_seen == 57 and model.n_samples_skipped == 4
    assert model.score_one({}) == pytest.approx(0.0, abs=1e-12)  # the density of nothing observed
    assert model.predict_one({}) == int(np.argmax(model.weights_))
    assert model.score_many(np.full((2, 2), np.nan)).tolist() == [0.0, 0.0]
    again = loads(dumps(model))
    assert again.n_samples_skipped == 4


def test_complete_rows_learn_as_before_in_a_batch_with_incomplete_ones():
    """The same complete rows, with or without an all-missing row among them: the same model."""
    X = np.random.default_rng(2).normal(size=(900, 3))
    a = OnlineGaussianMixture(n_components=2, warm_up=300, seed=0)
    b = OnlineGaussianMixture(n_components=2, warm_up=300, seed=0)
    for start in range(0, 900, 100):
        a.learn_many(X[start : start + 100])
        b.learn_many(np.vstack([X[start : start + 100], np.full((1, 3), np.nan)]))
    np.testing.assert_array_equal(a.means_, b.means_)


# ------------------------------------------------------------------ features that come and go


def test_a_feature_first_seen_after_the_warm_up_is_learned_from_then_on():
    rng = np.random.default_rng(3)
    centres = np.array([[0.0, 0.0, 20.0], [8.0, 8.0, 30.0]])
    labels = rng.integers(2, size=6000)
    X = centres[labels] + rng.normal(size=(6000, 3))
    model = OnlineGaussianMixture(n_components=2, warm_up=500, seed=0)
    for row in X[:2000]:
        model.learn_one({"a": row[0], "b": row[1]})
    assert model.feature_names_in_ == ["a", "b"] and model.is_initialised
    for i, row in enumerate(X[2000:]):
        x = {"a": row[0], "b": row[1], "c": row[2]}
        if i % 3 == 0:
            del x["b"]
        model.learn_one(x)
    assert model.feature_names_in_ == ["a", "b", "c"]
    order = np.argsort(model.means_[:, 0])
    np.testing.assert_allclose(model.means_[order][:, :2], centres[:, :2], atol=0.3)
    # The new feature's moments start at its first value and learn on each component's clock; the
    # Polyak average, restarted when it arrived, still carries that start (the iterate is within 0.1).
    np.testing.assert_allclose(model.means_[order][:, 2], centres[:, 2], atol=2.0)
    assert model.predict_one({"c": 21.0}) == order[0]  # the new feature alone decides
    _assert_sound(model, X)


def test_new_features_keep_the_sorted_order_and_the_buffer_grows_with_them(tmp_path):
    model = OnlineGaussianMixture(n_components=2, warm_up=50, seed=0)
    model.learn_one({"b": 1.0, "d": 2.0})
    model.learn_one({"a": 0.5, "c": 3.0, "d": 1.0})
    assert model.feature_names_in_ == ["a", "b", "c", "d"]
    path = tmp_path / "m.json"
    model.save(path)
    text = path.read_text()
    assert json.loads(text)["buffer"] == [[None, 1.0, None, 2.0], [0.5, None, 3.0, 1.0]]
    again = OnlineGaussianMixture.load(path)
    assert again.get_state().buffer[0][1:4:2] == [1.0, 2.0] and math.isnan(again.get_state().buffer[0][0])
    frame = pd.DataFrame({"a": [1.0, 2.0], "e": [5.0, np.nan]})
    model.learn_many(frame)  # a DataFrame's new column too; its missing ones are missing values
    again.learn_many(frame)
    assert model.feature_names_in_ == again.feature_names_in_ == ["a", "b", "c", "d", "e"]
    np.testing.assert_array_equal(model.means_, again.means_)
    before = model.feature_names_in_
    model.predict_many(pd.DataFrame({"z": [1.0], "a": [2.0]}))  # unknown at inference: ignored
    assert model.feature_names_in_ == before


def test_state_files_refuse_nulls_they_cannot_hold():
    model = OnlineGaussianMixture(n_components=2, warm_up=50, seed=0)
    model.learn_one({"a": 1.0, "b": 2.0})
    model.learn_one({"a": 2.0})
    state = json.loads(dumps(model))
    loads(json.dumps(state))
    with pytest.raises(StateFileError, match="no value"):
        loads(json.dumps({**state, "buffer": [[1.0, 2.0], [None, None]]}))
    with pytest.raises(StateFileError, match="expected a number"):
        loads(json.dumps({**state, "version": 2}))  # version 2 wrote no null
    old = {**state, "version": 2, "buffer": [[1.0, 2.0], [2.0, 1.0]]}
    del old["n_skipped"]
    assert loads(json.dumps(old)).n_samples_seen == 2
