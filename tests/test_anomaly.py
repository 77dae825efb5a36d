"""`GaussianMixtureScorer`: calibration, River's anomaly API, robustness, AUC, and the CLI's anomaly outputs.

Streams are scored test then train (each point scored before it is learned), with fixed seeds.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
from river import anomaly, checks, metrics
from river.checks import common

from online_em import GaussianMixtureScorer, OnlineGaussianMixture
from online_em.anomaly import NEUTRAL_SCORE
from online_em.cli import demo_stream

from .test_cli import as_text, run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import anomaly_bench  # noqa: E402


def prequential(scorer, points) -> np.ndarray:
    scores = []
    for x in points:
        scores.append(scorer.score_one(x))
        scorer.learn_one(x)
    return np.array(scores)


def blob_points(n, seed, outlier_share=0.0):
    X, outlier = anomaly_bench.blobs(n, seed, outlier_share)
    return [{"a": a, "b": b} for a, b in X.tolist()], outlier


def test_river_checks():
    """River's `check_estimator`, but on a blob stream with outliers: for anomaly detectors it
    would download CreditCard, which fails offline."""
    points, outlier = blob_points(1000, 0, outlier_share=0.05)
    dataset = list(zip(points, outlier.tolist()))
    ran = set()
    for params in GaussianMixtureScorer._unit_test_params():
        model = GaussianMixtureScorer(**params)
        for check in checks.yield_checks(model):
            if check.__name__ in model._unit_test_skips():
                continue
            if "dataset" in getattr(check, "keywords", {}):
                check.func(model.clone(), dataset=dataset)
            else:
                check(model.clone())
            ran.add(check.__name__)
    assert {"check_roc_auc", "check_pickling", "check_bounded_memory_growth"} <= ran
    common.check_seeding_is_idempotent(GaussianMixtureScorer(seed=3), dataset)


# ------------------------------------------------------------------ calibration


@pytest.mark.parametrize("seed", [0, 1])
def test_a_threshold_of_099_flags_one_percent_of_a_clean_stream(seed):
    points, _ = blob_points(16_000, seed)
    scorer = GaussianMixtureScorer(seed=seed)
    scores = prequential(scorer, points)
    after = scores[scorer.model.warm_up_size:]
    assert abs(np.mean(after >= 0.99) - 0.01) <= 0.003
    assert abs(np.mean(after >= 0.95) - 0.05) <= 0.01
    assert abs(np.mean(after) - 0.5) < 0.02  # uniform scores


def test_calibrated_with_full_covariances_in_one_dimension():
    values, _ = demo_stream(12_000, seed=3)
    scorer = GaussianMixtureScorer(n_components=2, covariance_type="full", seed=3)
    scores = prequential(scorer, [{"v": v} for v in values.tolist()])
    assert abs(np.mean(scores[scorer.model.warm_up_size:] >= 0.99) - 0.01) <= 0.003


def test_scores_lie_in_0_1_without_nan_even_for_extreme_points():
    points, _ = blob_points(3000, 0, outlier_share=0.01)
    scorer = GaussianMixtureScorer(seed=0)
    scores = prequential(scorer, points)
    extreme = [scorer.score_one({"a": a, "b": b}) for a, b in ((1e150, -1e150), (1e6, 0.0), (0.0, 0.5))]
    everything = np.concatenate([scores, extreme])
    assert not np.isnan(everything).any() and everything.min() >= 0.0 and everything.max() <= 1.0
    assert extreme[0] == extreme[1] == 1.0 and extreme[2] < 0.5
    assert np.allclose(scorer.score_many(np.array([[1e6, 0.0], [0.0, 0.5]])), extreme[1:], atol=1e-12)


def test_scores_before_and_during_the_warm_up_are_sane():
    scorer = GaussianMixtureScorer(seed=0)
    assert scorer.score_one({"a": 1e9, "b": 0.0}) == NEUTRAL_SCORE  # nothing learned yet
    points, _ = blob_points(1300, 2)
    scores = prequential(scorer, points)
    grace = scorer.grace_period_size
    assert grace == 20 and not scorer.model.is_initialised
    assert (scores[:grace] == NEUTRAL_SCORE).all()
    warm = scores[grace:]
    assert 0.45 < warm.mean() < 0.55 and np.mean(warm >= 0.99) < 0.03
    assert scorer.score_one({"a": 40.0, "b": 40.0}) > 0.9999  # but far points are flagged


def test_score_many_agrees_with_score_one_and_seeds_repeat():
    points, _ = blob_points(2500, 4, outlier_share=0.02)
    a, b = GaussianMixtureScorer(seed=5), GaussianMixtureScorer(seed=5)
    assert np.array_equal(prequential(a, points), prequential(b, points))
    probe = np.array([[0.0, 0.0], [4.0, 3.0], [9.0, 9.0]])
    one = [a.score_one({"a": x, "b": y}) for x, y in probe.tolist()]
    assert np.allclose(a.score_many(probe), one, atol=1e-12)


# ------------------------------------------------------------------ River's anomaly API


def test_river_rocauc_and_filters():
    points, outlier = blob_points(5000, 1, outlier_share=0.02)
    auc = metrics.ROCAUC(n_thresholds=100)
    threshold = anomaly.ThresholdFilter(GaussianMixtureScorer(seed=1), threshold=0.99)
    quantile = anomaly.QuantileFilter(GaussianMixtureScorer(seed=1), q=0.98)
    by_threshold, by_quantile = [], []
    for x, y in zip(points, outlier.tolist()):
        score = threshold.score_one(x)
        auc.update(y, score)
        by_threshold.append(threshold.classify(score))
        by_quantile.append(quantile.classify(quantile.score_one(x)))
        threshold.learn_one(x)  # protects the scorer: flagged points are not learned
        quantile.learn_one(x)
    assert auc.get() > 0.94
    by_threshold, by_quantile = np.array(by_threshold), np.array(by_quantile)
    for flagged in (by_threshold[1000:], by_quantile[1000:]):
        assert np.mean(flagged[outlier[1000:]]) > 0.6  # most outliers caught
        assert np.mean(flagged[~outlier[1000:]]) < 0.03  # few inliers flagged
    assert threshold.anomaly_detector.model.n_samples_seen < len(points)


def test_auc_at_least_half_space_trees_on_blobs():
    points, labels = anomaly_bench.stream("blobs", 0, n=8000)
    ours = anomaly_bench.auc("ours", points, labels, 0)
    hst = anomaly_bench.auc("hst", points, labels, 0)
    assert ours.auc >= max(hst.auc, 0.95)
    assert ours.scores.min() >= 0 and ours.scores.max() <= 1


# ------------------------------------------------------------------ persistence


def test_a_scorer_resumed_from_a_saved_model_scores_as_the_uninterrupted_one(tmp_path):
    points, _ = blob_points(6000, 3, outlier_share=0.01)
    whole = GaussianMixtureScorer(seed=3)
    first = prequential(whole, points[:4000])
    path = tmp_path / "scorer.json"
    whole.save(path)
    resumed = GaussianMixtureScorer.load(path)
    assert resumed._get_params() == whole._get_params()
    ours, theirs = prequential(resumed, points[4000:]), prequential(whole, points[4000:])
    difference = np.abs(ours - theirs)  # the calibration is drawn again: sampling noise
    assert np.mean(difference) < 0.01 and np.max(difference) < 0.06
    assert np.array_equal(resumed.model.means_, whole.model.means_)
    again = GaussianMixtureScorer.load(path)
    assert np.array_equal(prequential(again, points[4000:]), ours)  # deterministic from the seed
    assert len(first) == 4000


def test_from_model_takes_the_models_parameters():
    model = OnlineGaussianMixture(n_components=4, covariance_type="spherical", warm_up=50, seed=9)
    scorer = GaussianMixtureScorer.from_model(model, sample_size=512)
    assert scorer.model is model and scorer.n_components == 4 and scorer.covariance_type == "spherical"
    assert scorer.sample_size == 512 and scorer.warm_up == 50 and scorer.seed == 9
    with pytest.raises(ValueError, match="sample_size"):
        GaussianMixtureScorer(sample_size=3)


# ------------------------------------------------------------------ the command line


FAST = ["--warm-up", "100", "--seed", "2"]


def test_cli_output_anomaly_and_json():
    values, _ = demo_stream(3000, seed=1)
    text = as_text(values[:, None])
    result = run(["label", *FAST, "--output", "anomaly"], text)
    scores = np.array(result.stdout.split(), dtype=float)
    assert result.exit_code == 0 and len(scores) == 3000
    assert scores.min() >= 0 and scores.max() <= 1 and 0.004 < np.mean(scores[200:] >= 0.99) < 0.02
    records = [json.loads(line) for line in run(["label", *FAST, "--output", "json"], text).stdout.splitlines()]
    assert np.allclose([r["anomaly"] for r in records], scores, atol=1e-6)
    assert [r["label"] for r in records] == [int(k) for k in run(["label", *FAST], text).stdout.split()]
    batch = run(["label", *FAST, "--output", "anomaly", "--batch-size", "100"], text)
    block_scores = np.array(batch.stdout.split(), dtype=float)
    assert len(block_scores) == 3000 and np.corrcoef(block_scores[500:], scores[500:])[0, 1] > 0.95
    json_blocks = run(["label", *FAST, "--output", "json", "--batch-size", "100"], text).stdout.splitlines()
    assert np.allclose([json.loads(line)["anomaly"] for line in json_blocks], block_scores, atol=1e-6)


def test_cli_anomaly_bad_lines_and_echo():
    result = run(["label", *FAST, "--output", "anomaly", "--echo"], "1\nx\n3\n")
    assert result.stdout.splitlines() == ["1\t0.000000", "x\tNA", "3\t0.000000"]
    assert "line 2" in result.stderr
    result = run(["label", *FAST, "--output", "json"], "1\nx\n")
    assert result.stdout.splitlines()[1] == "null" and json.loads(result.stdout.splitlines()[0])["anomaly"] == 0.0


def test_cli_anomaly_scores_resume_from_the_state(tmp_path):
    values, _ = demo_stream(3000, seed=4)
    lines = as_text(values[:, None]).splitlines(keepends=True)
    one = run(["label", *FAST, "--output", "anomaly", "--state", str(tmp_path / "one.json")], "".join(lines))
    first = run(["label", *FAST, "--output", "anomaly", "--state", str(tmp_path / "two.json")], "".join(lines[:2400]))
    second = run(["label", "--output", "anomaly", "--state", str(tmp_path / "two.json")], "".join(lines[2400:]))
    whole = np.array(one.stdout.split(), dtype=float)
    resumed = np.array((first.stdout + second.stdout).split(), dtype=float)
    assert len(resumed) == 3000 and np.array_equal(resumed[:2400], whole[:2400])
    difference = np.abs(resumed[2400:] - whole[2400:])  # the calibration is drawn again after loading
    assert np.mean(difference) < 0.01 and np.max(difference) < 0.1
    a, b = (OnlineGaussianMixture.load(tmp_path / n) for n in ("one.json", "two.json"))
    assert np.array_equal(a.means_, b.means_)
