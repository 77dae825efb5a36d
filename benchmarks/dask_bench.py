"""Online EM on a local Dask cluster against a single process, over the same mini-batches.

    python benchmarks/dask_bench.py                 # 10,000,000 x 10, K=5 full (a few minutes on 2 cores)
    python benchmarks/dask_bench.py --quick         # 200,000 x 10, seconds

The data (a K-component mixture) is generated on the workers with ``dask.array.random`` and
persisted there; it never comes to the driver. The single process learns the same rows (the same
graph computed locally, in memory) with ``learn_many`` over the same mini-batches. Both start
from the same untrained model, so both also initialise on the first ``warm_up`` rows. Printed:
a markdown table, one row per setup, with the largest relative difference between the fitted
statistics of the cluster and of the single process.

Needs the ``dask`` extra (``pip install -e ".[dask]"``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import platform
import statistics
import sys
import time

import numpy as np


def mixture_data(n: int, d: int, k: int, rows_per_block: int, seed: int):
    """A dask array of n x d points from a k-component mixture (means and per-component scales
    fixed by `seed`), generated block by block wherever the graph runs."""
    import dask.array as da

    params = np.random.default_rng(seed)
    means = params.uniform(-10.0, 10.0, size=(k, d))
    stds = params.uniform(0.5, 2.0, size=(k, 1))
    rng = da.random.default_rng(seed + 1)
    labels = rng.integers(0, k, size=n, chunks=rows_per_block)
    onehot = (labels[:, None] == da.arange(k)[None, :]).astype(np.float64)
    noise = rng.standard_normal((n, d), chunks=(rows_per_block, d))
    return onehot @ means + noise * (onehot @ stds)


def state(model) -> dict:
    model._sync()
    return {"s0": model._stats.s0, "s1": model._stats.s1, "s2": model._stats.s2, "means": model.means_}


def max_relative_difference(a: dict, b: dict) -> float:
    return max(float(np.abs(a[k] - b[k]).max() / np.abs(b[k]).max()) for k in b)


def _blas_threads() -> str:
    try:
        import threadpoolctl
    except ImportError:
        return os.environ.get("OMP_NUM_THREADS", "default")
    counts = {info["num_threads"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"}
    return ",".join(map(str, sorted(counts))) or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000_000, help="points")
    parser.add_argument("--d", type=int, default=10, help="features")
    parser.add_argument("--k", type=int, default=5, help="components")
    parser.add_argument("--covariance-type", default="full")
    parser.add_argument("--rows-per-block", type=int, default=125_000)
    parser.add_argument("--blocks-per-batch", type=int, default=4)
    parser.add_argument("--split-every", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clusters", default="processes,threads", help="comma-separated: processes, threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timed passes per setup")
    parser.add_argument("--quick", action="store_true", help="200,000 points, for a smoke test")
    args = parser.parse_args()
    if args.quick:
        args.n, args.rows_per_block, args.repeats = 200_000, 12_500, 1

    import dask
    import dask.array as da
    import distributed
    from distributed import Client, LocalCluster

    import online_em.dask as oed
    from online_em import OnlineGaussianMixture

    def new_model():
        return OnlineGaussianMixture(n_components=args.k, covariance_type=args.covariance_type, seed=args.seed)

    blas_threads = _blas_threads()
    load_before = os.getloadavg()[0]
    rows_per_batch = args.rows_per_block * args.blocks_per_batch
    n_batches = -(-args.n // rows_per_batch)
    kinds = [k for k in args.clusters.split(",") if k]

    # The same graph, computed here for the single process and persisted on each cluster's workers.
    t0 = time.perf_counter()
    X = mixture_data(args.n, args.d, args.k, args.rows_per_block, args.seed).compute(scheduler="threads")
    generated = {"local": time.perf_counter() - t0}
    blocks = da.from_array(X, chunks=(args.rows_per_block, args.d))

    def learn_many():
        model = new_model()
        for start in range(0, len(X), rows_per_batch):
            model.learn_many(X[start : start + rows_per_batch])
        return model

    def blockwise():
        # The same process and mini-batches, with the statistics summed block by block as on the
        # cluster (Dask's synchronous scheduler): separates the effect of smaller blocks from that
        # of the workers.
        with dask.config.set(scheduler="synchronous"):
            return oed.partial_fit(new_model(), blocks, blocks_per_batch=args.blocks_per_batch,
                                   split_every=args.split_every)

    setups = {
        f"single process, `learn_many` (BLAS threads: {blas_threads})": learn_many,
        "single process, blockwise statistics (`partial_fit`, synchronous scheduler)": blockwise,
    }
    with contextlib.ExitStack() as stack:
        for kind in kinds:
            cluster = stack.enter_context(LocalCluster(
                n_workers=args.workers, threads_per_worker=1, processes=(kind == "processes"),
                dashboard_address=":0",
            ))
            client = stack.enter_context(Client(cluster, set_as_default=False))
            # Warm the workers up (imports) on a small array, outside the timing.
            oed.partial_fit(new_model(), mixture_data(20_000, args.d, args.k, 5_000, args.seed), client=client)
            t0 = time.perf_counter()
            data = client.persist(mixture_data(args.n, args.d, args.k, args.rows_per_block, args.seed))
            with client.as_current():
                distributed.wait(distributed.futures_of(data))
            label = f"Dask `LocalCluster`, {args.workers} {kind} x 1 thread"
            generated[label] = time.perf_counter() - t0
            setups[label] = functools.partial(
                lambda data, client: oed.partial_fit(
                    new_model(), data, blocks_per_batch=args.blocks_per_batch,
                    split_every=args.split_every, client=client),
                data, client)

        # Interleaved repeats (A, B, C, A, B, C, ...), medians: drifts in the machine hit all alike.
        times = {label: [] for label in setups}
        states = {}
        for _ in range(args.repeats):
            for label, run in setups.items():
                t0 = time.perf_counter()
                model = run()
                times[label].append(time.perf_counter() - t0)
                states[label] = state(model)
    want = states[next(iter(setups))]
    baseline = statistics.median(times[next(iter(setups))])

    print(
        f"{args.n:,} x {args.d} points, K={args.k} {args.covariance_type}; {n_batches} mini-batches of "
        f"{rows_per_batch:,} rows ({args.blocks_per_batch} blocks of {args.rows_per_block:,}); "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, numpy {np.__version__}, "
        f"dask {dask.__version__}; 1 BLAS thread per worker; {args.repeats} interleaved repeats\n"
    )
    best = min(times[next(iter(setups))])
    print("| setup | one pass (s), median | points/s | speed-up | fastest pass (s) | speed-up, fastest "
          "| max rel. difference | data generation (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, elapsed in times.items():
        median = statistics.median(elapsed)
        generate = generated.get(label, generated["local"] if "learn_many" in label else 0.0)
        print(
            f"| {label} | {median:.2f} | {args.n / median:,.0f} | {baseline / median:.2f}x | "
            f"{min(elapsed):.2f} | {best / min(elapsed):.2f}x | {max_relative_difference(states[label], want):.1e} | {generate:.1f} |"
        )
    print("\nEvery pass (s):")
    for label, elapsed in times.items():
        print(f"- {label}: {', '.join(f'{t:.2f}' for t in elapsed)}")
    print(f"\nLoad average before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
