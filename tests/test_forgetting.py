"""Forgetting (`halflife`): a drifting stream is tracked, a stationary one barely pays for it,
and without a half-life nothing changes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from online_em import GaussianMixtureScorer, OnlineGaussianMixture, persistence, steps

N = 60_000


def _two_processes(moving_mean: np.ndarray, seed: int) -> np.ndarray:
    """One point a step from N(20, 5^2) or N(moving_mean[t], 5^2), equal weights."""
    rng = np.random.default_rng(seed)
    fixed = rng.random(len(moving_mean)) < 0.5
    return np.where(fixed, 20.0, moving_mean) + 5.0 * rng.standard_normal(len(moving_mean))


WALK = 40.0 + 40.0 * np.arange(N) / (N - 1)  # the moving mean walks from 40 to 80
JUMP = np.where(np.arange(N) < N // 2, 40.0, 70.0)  # ... or jumps from 40 to 70 halfway


def _track(x: np.ndarray, every: int = 100, **options) -> tuple[np.ndarray, OnlineGaussianMixture]:
    """The larger reported mean after every `every` points of one learn_one pass."""
    model = OnlineGaussianMixture(n_components=2, seed=0, **options)
    larger = []
    for i, v in enumerate(x.tolist()):
        model.learn_one({"x": v})
        if i % every == every - 1:
            larger.append(model.means_[:, 0].max())
    return np.array(larger), model


def test_a_walking_mean_is_tracked_with_a_halflife_of_1000():
    larger, model = _track(_two_processes(WALK, seed=0), halflife=1000)
    truth = WALK[99::100]
    assert abs(larger[-1] - 80.0) < 1.4
    assert np.abs(larger - truth)[len(truth) // 2 :].mean() < 1.5
    assert model.means_[:, 0].min() == pytest.approx(20.0, abs=0.5)  # the fixed process stays put
    np.testing.assert_allclose(model.weights_, 0.5, atol=0.03)


def test_a_longer_halflife_lags_more_but_within_its_bound():
    larger, _ = _track(_two_processes(WALK, seed=1), halflife=5000)
    assert 1.4 < 80.0 - larger[-1] < 5.6  # the lag of a longer memory, within the bound


def test_without_a_halflife_the_walk_is_averaged_away():
    """The stationary model's answer to the same stream: what forgetting is for."""
    larger, _ = _track(_two_processes(WALK, seed=0))
    assert 80.0 - larger[-1] > 10.0


def test_a_jump_is_followed_within_three_and_a_half_halflives():
    h = 1000
    larger, _ = _track(_two_processes(JUMP, seed=2), halflife=h)
    after = larger[N // 2 // 100 :]
    settled = int(3.5 * h) // 100
    assert after[0] < 50.0  # the jump is not known in advance
    assert np.all(np.abs(after[settled:] - 70.0) < 5.0)  # within one sd from 3.5 half-lives on


@pytest.mark.parametrize("halflife, budget", [(1000, 0.004), (5000, 0.001)])
def test_a_stationary_stream_costs_little(halflife, budget):
    """Held-out log-likelihood per sample, with and without forgetting, on the tutorial's mixture."""
    rng = np.random.default_rng(5)

    def draw(n):
        return np.where(rng.random(n) < 1 / 3, 20.0, 40.0) + 5.0 * rng.standard_normal(n)

    x, test = draw(N), draw(20_000)[:, None]
    forgetting = OnlineGaussianMixture(n_components=2, seed=0, halflife=halflife)
    stationary = OnlineGaussianMixture(n_components=2, seed=0)
    for model in (forgetting, stationary):
        for chunk in np.array_split(x[:, None], 600):  # batches of 100: the same schedule
            model.learn_many(chunk)
    cost = stationary.score_many(test).mean() - forgetting.score_many(test).mean()
    assert cost < budget


def test_batches_forget_as_points_do():
    """learn_many takes the same floors: batches of 200 track the walk as one point at a time."""
    x = _two_processes(WALK, seed=0)
    model = OnlineGaussianMixture(n_components=2, seed=0, halflife=1000)
    for chunk in np.array_split(x[:, None], N // 200):
        model.learn_many(chunk)
    assert abs(model.means_[:, 0].max() - 80.0) < 1.4


def test_an_astronomical_halflife_is_the_stationary_model():
    """The floors compose with the stationary schedule: far beyond the stream, they never bind.
    (Fixed components: a forgetting model holds novel points back even with no free slot.)"""
    x = _two_processes(WALK[:8000], seed=3)
    forgetting = OnlineGaussianMixture(n_components=2, seed=0, halflife=1e15, adaptive=False)
    stationary = OnlineGaussianMixture(n_components=2, seed=0, adaptive=False)
    for v in x[:5000].tolist():
        forgetting.learn_one({"x": v})
        stationary.learn_one({"x": v})
    forgetting.learn_many(x[5000:, None])
    stationary.learn_many(x[5000:, None])
    np.testing.assert_allclose(forgetting.means_, stationary.means_, rtol=1e-9)
    np.testing.assert_allclose(forgetting.weights_, stationary.weights_, rtol=1e-9)


def test_the_schedule_steps_compose_and_floor():
    assert steps.forgetting_step(1000.0, 1000.0) == pytest.approx(0.5)
    assert steps.weight_step(1e9, 1.0, 1000.0) == pytest.approx(1 - 2 ** (-1 / 1000))
    assert steps.point_step(10**9, 0.6, 1000.0) == pytest.approx(1 - 2 ** (-1 / 1000))
    assert steps.point_step(10, 0.6, 1000.0) == steps.point_step(10, 0.6)  # above the floor
    # a component of weight w forgets with half-life h * w in its own mass
    assert steps.component_step(1e12, 1.0, 0.75, 1000.0 * 0.25) == pytest.approx(1 - 2 ** (-1 / 250))
    assert steps.average_share(1, 1e9, 800.0) == pytest.approx(1 - 2 ** (-1 / (steps.AVERAGE_HALFLIFE * 800)))


@pytest.mark.parametrize("bad", [0, 0.5, -3, float("inf"), float("nan"), "1000", True])
def test_a_bad_halflife_is_refused(bad):
    with pytest.raises(ValueError, match="halflife"):
        OnlineGaussianMixture(halflife=bad)


def test_saved_and_loaded_it_forgets_on_exactly_as_before(tmp_path):
    x = _two_processes(JUMP[25_000:40_000], seed=4)
    whole = OnlineGaussianMixture(n_components=2, seed=0, halflife=2000)
    half = OnlineGaussianMixture(n_components=2, seed=0, halflife=2000)
    for v in x[:7000].tolist():
        whole.learn_one({"x": v})
        half.learn_one({"x": v})
    half.save(tmp_path / "model.json")
    resumed = OnlineGaussianMixture.load(tmp_path / "model.json")
    assert resumed.halflife == 2000
    for v in x[7000:].tolist():
        whole.learn_one({"x": v})
        resumed.learn_one({"x": v})
    np.testing.assert_allclose(resumed.means_, whole.means_, rtol=1e-12)


def test_a_version_3_file_loads_as_a_stationary_model(tmp_path):
    model = OnlineGaussianMixture(n_components=2, seed=0)
    for v in _two_processes(JUMP[:1000], seed=0).tolist():
        model.learn_one({"x": v})
    state = json.loads(persistence.dumps(model))
    del state["params"]["halflife"]
    del state["structure"]["splits"], state["structure"]["window"]  # (version 5)
    state["version"] = 3
    path = tmp_path / "v3.json"
    path.write_text(json.dumps(state))
    loaded = OnlineGaussianMixture.load(path)
    assert loaded.halflife is None
    np.testing.assert_allclose(loaded.means_, model.means_)


def test_the_scorer_passes_its_halflife_on():
    scorer = GaussianMixtureScorer(halflife=500, seed=0)
    assert scorer.model.halflife == 500


def test_the_labeler_forgets_with_halflife(tmp_path):
    """online-em label --halflife: the labels of the jumped process stay with its component, and
    the state saved knows the half-life (resuming with another one is a usage error)."""
    x = _two_processes(JUMP[20_000:36_000], seed=6)
    text = "\n".join(f"{v:.4f}" for v in x) + "\n"
    state = tmp_path / "state.json"
    run = subprocess.run(
        [sys.executable, "-m", "online_em", "label", "--halflife", "1000", "--seed", "0", "--state", str(state)],
        input=text, capture_output=True, text=True, check=True,
    )
    labels = np.array(run.stdout.split(), dtype=int)
    assert len(labels) == len(x)
    saved = json.loads(state.read_text())
    assert saved["params"]["halflife"] == 1000
    means = np.array(saved["stats"]["s1"])[:, 0] / np.array(saved["stats"]["s0"]) + saved["stats"]["shift"][0]
    assert means.max() == pytest.approx(70.0, abs=2.5)
    # the last 4,000 points: the upper process is labelled as one component
    tail, upper = labels[-4000:], x[-4000:] > 45
    assert (tail[upper] == np.bincount(tail[upper]).argmax()).mean() > 0.97
    again = subprocess.run(
        [sys.executable, "-m", "online_em", "label", "--halflife", "50", "--state", str(state)],
        input="1\n", capture_output=True, text=True,
    )
    assert again.returncode == 2 and "--halflife" in again.stderr


@pytest.mark.parametrize("batch", [None, 500])
def test_a_new_cluster_takes_the_slot_of_one_the_stream_has_forgotten(batch):
    """Two clusters (0 and 10); then the one at 0 stops and one at 30 starts. With no free slot,
    a forgetting model lets the stale component go when the new cluster's birth is due
    (`moves.stale_component`); a stationary one, for which the points at 0 still count, merges
    the components at 0 and 10 (the cheapest merge of the three: `moves.best_reduction`) and the
    new cluster takes the slot, as batch EM's two components on all the points do (scikit-learn:
    means 6.7 and 30, sd 4.8 and 1; left as it was, the component at 10 was dragged to 15.7, sd 9.1,
    0.48 nats a point worse)."""
    rng = np.random.default_rng(0)
    n = 20_000
    x = np.concatenate([np.where(rng.random(n) < 0.5, 0.0, 10.0), np.where(rng.random(n) < 0.5, 30.0, 10.0)])
    x = x + rng.standard_normal(2 * n)

    def learn(model):
        if batch is None:
            for v in x.tolist():
                model.learn_one({"x": v})
        else:
            for start in range(0, len(x), batch):
                model.learn_many(x[start : start + batch, None])
        return model

    forgetting = learn(OnlineGaussianMixture(n_components=2, seed=0, halflife=2000))
    assert forgetting.moves_["births"] == 1 and forgetting.moves_["prunes"] == 1
    np.testing.assert_allclose(np.sort(forgetting.means_[:, 0]), [10, 30], atol=0.2)
    stationary = learn(OnlineGaussianMixture(n_components=2, seed=0))
    assert stationary.moves_["births"] == 1 and stationary.moves_["merges"] == 1
    merged, new = np.sort(stationary.means_[:, 0])
    assert 6.0 < merged < 7.5 and abs(new - 30) < 0.2
    assert abs(np.sort(stationary.weights_)[0] - 0.25) < 0.02


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    halflife=st.floats(1.0, 1e6),
    shift=st.floats(-1e3, 1e3),
    n_components=st.integers(1, 4),
    covariance_type=st.sampled_from(["full", "diag", "spherical", "tied"]),
    seed=st.integers(0, 2**16),
)
def test_forgetting_keeps_the_mixture_sound(halflife, shift, n_components, covariance_type, seed):
    """Whatever the half-life (down to one point), one point at a time and in batches: weights that
    sum to 1, positive definite covariances, finite densities."""
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(0, 1, (300, 2)), rng.normal(shift, 2, (300, 2))])
    model = OnlineGaussianMixture(n_components=n_components, covariance_type=covariance_type, warm_up=50,
                                  halflife=halflife, seed=0)
    for row in X[:400].tolist():
        model.learn_one({"a": row[0], "b": row[1]})
    model.learn_many(X[400:])
    assert model.weights_.sum() == pytest.approx(1.0) and (model.weights_ >= 0).all()
    cov = model.covariances_
    if covariance_type in ("full", "tied"):
        assert (np.linalg.eigvalsh(cov) > 0).all()
    else:
        assert (cov > 0).all()
    assert np.isfinite(model.score_many(X)).all() and np.isfinite(model.means_).all()
