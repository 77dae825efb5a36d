"""Online EM on Dask (`online_em.dask`): equal to a single-process run over the same mini-batches,
independent of how a mini-batch is split into partitions, repeatable, and robust to a lost worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
import dask  # noqa: E402
import pandas as pd  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402

import online_em.dask as oed  # noqa: E402
from online_em import OnlineGaussianMixture, SufficientStatistics  # noqa: E402

D = 3
K = 3
ROWS_PER_BATCH = 2400
N_BATCHES = 8
RTOL = 1e-12


# ---------------------------------------------------------------- helpers


def make_data(n_rows=N_BATCHES * ROWS_PER_BATCH, seed=0) -> np.ndarray:
    """Three anisotropic, well separated clusters in 3-D, far from the origin, shuffled."""
    rng = np.random.default_rng(seed)
    means = np.array([[100.0, 0.0, 5.0], [110.0, 8.0, -5.0], [95.0, 12.0, 10.0]])
    labels = rng.integers(K, size=n_rows)
    scales = rng.uniform(0.5, 2.0, size=(K, D, D))
    noise = np.einsum("nd,nde->ne", rng.normal(size=(n_rows, D)), scales[labels])
    return means[labels] + noise


def new_model(covariance_type="full", **kwargs) -> OnlineGaussianMixture:
    options = dict(n_components=K, covariance_type=covariance_type, warm_up=500, average_after=4000, seed=3)
    options.update(kwargs)
    return OnlineGaussianMixture(**options)


def reference(model, X, rows_per_batch=ROWS_PER_BATCH, n_passes=1) -> OnlineGaussianMixture:
    """The single-process run: learn_many over the same mini-batches, in order."""
    for _ in range(n_passes):
        for start in range(0, len(X), rows_per_batch):
            model.learn_many(X[start : start + rows_per_batch])
    return model


def state(model) -> dict:
    model._sync()
    out = {
        "t": np.array(model.n_samples_seen),
        "s0": model._stats.s0, "s1": model._stats.s1, "s2": model._stats.s2,
        "weights": model.weights_, "means": model.means_, "covariances": model.covariances_,
    }
    if model._average is not None:
        out.update(a0=model._average.s0, a1=model._average.s1, a2=model._average.s2)
    return out


def assert_close(got, want, rtol=RTOL):
    assert got.keys() == want.keys()
    for key in want:
        g, w = np.asarray(got[key]), np.asarray(want[key])
        assert g.shape == w.shape, key
        scale = max(float(np.abs(w).max()), np.finfo(float).tiny)
        err = float(np.abs(g - w).max()) / scale
        assert err <= rtol, f"{key}: relative error {err:.3g} > {rtol:g}"


def assert_identical(got, want):
    assert got.keys() == want.keys()
    for key in want:
        assert np.array_equal(got[key], want[key]), key


def chunked(X, parts_per_batch, rows_per_batch=ROWS_PER_BATCH):
    assert rows_per_batch % parts_per_batch == 0
    return da.from_array(X, chunks=(rows_per_batch // parts_per_batch, X.shape[1]))


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread():
    """One BLAS thread here and in the in-process workers (worker processes get it from Dask's
    nanny environment), as on the 2-core CI machine."""
    try:
        import threadpoolctl
    except ImportError:  # scikit-learn's dependency; without it, BLAS keeps its own setting
        yield
        return
    with threadpoolctl.threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def threads_client():
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
    ) as cluster, Client(cluster, set_as_default=False) as client:
        yield client


@pytest.fixture(scope="module")
def processes_client():
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster, Client(cluster, set_as_default=False) as client:
        yield client


@pytest.fixture(scope="module")
def X():
    return make_data()


@pytest.fixture(scope="module")
def want(X):
    return state(reference(new_model(), X))


# ---------------------------------------------------------------- equal to one process


@pytest.mark.parametrize("parts", [1, 3, 8])
def test_equals_single_process_over_the_same_mini_batches(threads_client, X, want, parts):
    model = oed.partial_fit(new_model(), chunked(X, parts), blocks_per_batch=parts, client=threads_client)
    assert model.n_samples_seen == len(X)
    assert_close(state(model), want)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_missing_values_equal_single_process(threads_client, X, covariance_type):
    """Rows with NaN learn on the workers as in learn_many (rows with nothing observed skipped)."""
    holes = X.copy()
    rng = np.random.default_rng(7)
    holes[rng.random(X.shape) < 0.2] = np.nan
    holes[1000] = np.nan
    want_model = reference(new_model(covariance_type), holes)
    model = oed.partial_fit(new_model(covariance_type), chunked(holes, 3), blocks_per_batch=3, client=threads_client)
    learned = int((~np.isnan(holes).all(axis=1)).sum())
    assert model.n_samples_seen == want_model.n_samples_seen == learned < len(X)
    assert want_model.n_samples_skipped == len(X) - learned
    assert_close(state(model), state(want_model), rtol=1e-9)


def test_equals_single_process_with_worker_processes(processes_client, X, want):
    """Statistics and parameters are pickled across processes: equal results, run after run."""
    runs = [
        state(oed.partial_fit(new_model(), chunked(X, 3), blocks_per_batch=3, split_every=2,
                              client=processes_client))
        for _ in range(2)
    ]
    assert_close(runs[0], want)
    assert_identical(runs[1], runs[0])


def test_repeats_exactly_from_run_to_run(threads_client, X):
    data = chunked(X, 8).persist(scheduler="threads")
    runs = [
        state(oed.partial_fit(new_model(), data, blocks_per_batch=8, split_every=3, client=threads_client))
        for _ in range(3)
    ]
    assert_identical(runs[1], runs[0])
    assert_identical(runs[2], runs[0])


@pytest.mark.parametrize("covariance_type", ["diag", "spherical", "tied"])
def test_other_covariance_types(threads_client, X, covariance_type):
    model = oed.partial_fit(new_model(covariance_type), chunked(X, 3), blocks_per_batch=3, client=threads_client)
    assert_close(state(model), state(reference(new_model(covariance_type), X)))


def test_fit_makes_several_passes(threads_client, X):
    model = oed.fit(new_model(), chunked(X, 2), n_passes=2, blocks_per_batch=2, client=threads_client)
    assert model.n_samples_seen == 2 * len(X)
    assert_close(state(model), state(reference(new_model(), X, n_passes=2)))


def test_dask_dataframe_columns_follow_the_model_feature_order(threads_client, X):
    columns = ["z", "a", "m"]  # not sorted: the model orders features by name
    frame = pd.DataFrame(X, columns=columns)
    data = dd.from_pandas(frame, npartitions=N_BATCHES * 3, sort=False)
    assert data.npartitions == N_BATCHES * 3
    model = oed.partial_fit(new_model(), data, blocks_per_batch=3, client=threads_client)
    ref = new_model()
    for start in range(0, len(frame), ROWS_PER_BATCH):
        ref.learn_many(frame.iloc[start : start + ROWS_PER_BATCH])
    assert model.feature_names_in_ == ["a", "m", "z"]
    assert_close(state(model), state(ref))


def test_initialises_from_a_head_that_spans_blocks_and_continues(threads_client, X):
    """Blocks of 300 rows < warm_up = 500; a second call continues the same stream."""
    first, second = X[:4800], X[4800:9600]
    model = new_model()
    oed.partial_fit(model, chunked(first, 8), blocks_per_batch=8, client=threads_client)
    oed.partial_fit(model, chunked(second, 8), blocks_per_batch=8, client=threads_client)
    assert_close(state(model), state(reference(new_model(), X[:9600])))


def test_too_few_rows_stay_in_the_buffer(threads_client, X):
    model = oed.partial_fit(new_model(), da.from_array(X[:300], chunks=(100, D)), client=threads_client)
    assert not model.is_initialised and model.n_samples_seen == 300
    oed.partial_fit(model, da.from_array(X[300:2700], chunks=(400, D)), blocks_per_batch=6, client=threads_client)
    ref = new_model()
    ref.learn_many(X[:300])
    ref.learn_many(X[300:2700])
    assert_close(state(model), state(ref))


def test_continues_a_model_trained_one_point_at_a_time(threads_client, X):
    model, ref = new_model("diag"), new_model("diag")
    for row in X[:1000]:
        model.learn_one(dict(enumerate(row)))
        ref.learn_one(dict(enumerate(row)))
    oed.partial_fit(model, chunked(X[1000:5800], 3), blocks_per_batch=3, client=threads_client)
    reference(ref, X[1000:5800])
    assert_close(state(model), state(ref))


# ---------------------------------------------------------------- clients and data movement


def test_client_none_uses_the_default_client(threads_client, X, want):
    with Client(threads_client.cluster) as default:  # registers itself as the default client
        with distributed.get_task_stream(client=default) as tasks:
            model = oed.partial_fit(new_model(), chunked(X, 3), blocks_per_batch=3)
    assert any(t["key"] and "block_statistics" in str(t["key"]) for t in tasks.data)
    assert_close(state(model), want)


def test_without_a_client_uses_the_dask_scheduler(X, want):
    with pytest.raises(ValueError):
        distributed.default_client()  # no client registered as the default here
    with dask.config.set(scheduler="synchronous"):
        model = oed.partial_fit(new_model(), chunked(X, 3), blocks_per_batch=3)
    assert_close(state(model), want)


def test_only_statistics_and_the_warm_up_sample_reach_the_driver(threads_client, X, monkeypatch):
    gathered = []
    compute = oed._compute

    def spy(client, obj):
        result = compute(client, obj)
        gathered.append(result)
        return result

    monkeypatch.setattr(oed, "_compute", spy)
    model = new_model()
    oed.partial_fit(model, chunked(X, 3), blocks_per_batch=3, client=threads_client)
    head, *batches = gathered
    assert isinstance(head, np.ndarray) and head.shape == (model.warm_up, D)
    assert len(batches) == N_BATCHES
    assert all(isinstance(b, oed.BlockResult) and isinstance(b.statistics, SufficientStatistics) for b in batches)
    assert all(b.statistics.s1.shape == (K, D) for b in batches)
    # Novel rows (held back while the model watches, with or without a free slot) are a few of each block.
    assert sum(len(b.novel_rows) for b in batches) <= 0.01 * (len(X) - model.warm_up)
    assert sum(b.statistics.count + len(b.novel_rows) for b in batches) == len(X) - model.warm_up


@pytest.mark.parametrize("parts", [1, 4])
def test_births_on_the_workers_as_in_learn_many(threads_client, parts):
    """The tutorial in its own order (all of one process, then the other) with room for 5
    components: the workers hold the second process's first points back, the driver gives it a
    component, as learn_many over the same mini-batches does."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(20, 5, 4000), rng.normal(40, 5, 8000)])[:, None]
    options = dict(n_components=5, seed=0)
    want_model = OnlineGaussianMixture(**options)
    for start in range(0, len(x), 500):
        want_model.learn_many(x[start : start + 500])
    model = oed.partial_fit(OnlineGaussianMixture(**options), da.from_array(x, chunks=(500 // parts, 1)),
                            blocks_per_batch=parts, client=threads_client)
    assert model.moves_ == want_model.moves_ and model.moves_["births"] >= 1
    assert model.n_active_components_ == want_model.n_active_components_ == 2
    assert model.n_samples_seen == want_model.n_samples_seen == len(x)
    live = model.weights_ > 0
    np.testing.assert_allclose(np.sort(model.means_[live, 0]), [20, 40], atol=1.0)
    np.testing.assert_allclose(model.means_, want_model.means_, rtol=1e-9)
    np.testing.assert_allclose(model.weights_, want_model.weights_, rtol=1e-9)


def test_splits_from_the_rows_the_workers_send_as_in_learn_many(threads_client):
    """Four clusters sorted by cluster, the fourth inside the first's spread: the blocks send
    their last learned rows with their statistics, and the driver splits the first component as
    learn_many over the same mini-batches does (tests/test_splits.py)."""
    from .test_splits import four_anisotropic

    X, _ = four_anisotropic(0)
    options = dict(n_components=6, warm_up=500, seed=0)
    want_model = OnlineGaussianMixture(**options)
    for start in range(0, len(X), 40):
        want_model.learn_many(X[start : start + 40])
    model = oed.partial_fit(OnlineGaussianMixture(**options), da.from_array(X, chunks=(20, 3)),
                            blocks_per_batch=2, client=threads_client)
    assert want_model.moves_["splits"] == 1
    assert model.moves_ == want_model.moves_
    np.testing.assert_allclose(model.means_, want_model.means_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model.weights_, want_model.weights_, rtol=1e-9)


# ---------------------------------------------------------------- a lost worker


def test_a_worker_lost_mid_pass_gives_the_clean_result(X):
    """Kill (SIGKILL) the worker holding most of the blocks still to come, halfway through a pass:
    Dask recomputes its blocks and the result is that of a clean run."""
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster, Client(cluster, set_as_default=False) as client:
        data = client.persist(chunked(X, 3))
        with client.as_current():
            distributed.wait(distributed.futures_of(data))
        clean = state(oed.partial_fit(new_model(), data, blocks_per_batch=3, client=client))

        later_keys = [row[0] for row in data.__dask_keys__()][3 * (N_BATCHES // 2) :]
        killed = []

        def kill_a_worker(model):
            if model.n_samples_seen < len(X) // 2 or killed:
                return
            holders = client.who_has(data)
            counts = {}
            for key in later_keys:
                for address in holders.get(key, ()):
                    counts[address] = counts.get(address, 0) + 1
            victim = max(counts, key=counts.get)
            pid = client.run(os.getpid, workers=[victim])[victim]
            os.kill(pid, signal.SIGKILL)
            killed.append((victim, counts[victim]))

        lost = state(oed.partial_fit(new_model(), data, blocks_per_batch=3, client=client, callback=kill_a_worker))
        assert killed and killed[0][1] >= 1, "the killed worker held none of the blocks still to come"
        assert killed[0][0] not in client.scheduler_info()["workers"]
    assert_identical(lost, clean)


# ---------------------------------------------------------------- errors and isolation


def test_rejects_bad_input(threads_client, X):
    model = new_model()
    bad = X[:3000].copy()
    bad[2000, 1] = np.inf
    with pytest.raises(ValueError, match="not finite"):
        oed.partial_fit(model, da.from_array(bad, chunks=(1000, D)), client=threads_client)
    with pytest.raises(ValueError, match="features"):
        oed.partial_fit(model, da.from_array(X[:, :2], chunks=(1000, 2)), client=threads_client)
    with pytest.raises(ValueError, match="missing"):
        oed.partial_fit(model, dd.from_pandas(pd.DataFrame(X[:, :2], columns=[0, 1]), npartitions=2))
    with pytest.raises(TypeError, match="dask array"):
        oed.partial_fit(model, X)
    with pytest.raises(ValueError, match="blocks_per_batch"):
        oed.partial_fit(model, chunked(X, 1), blocks_per_batch=0)
    with pytest.raises(ValueError, match="split_every"):
        oed.partial_fit(model, chunked(X, 1), split_every=1)
    with pytest.raises(ValueError, match="n_passes"):
        oed.fit(model, chunked(X, 1), n_passes=0)


def test_the_core_never_imports_dask():
    code = (
        "import sys, online_em, online_em.model, online_em.stats\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed'))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
