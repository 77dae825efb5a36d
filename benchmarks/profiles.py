"""Where the time goes: cProfile of the per-point path and of learn_many.

    python benchmarks/profiles.py [--n 20000] [--top 15] [--sort tottime]

Profiles 20,000 ``learn_one`` + ``predict_one`` on the 1-D, K=2 stream and on 5-D, K=3 full
covariances, ``learn_predict_one`` on the 1-D stream, and one ``learn_many`` pass (batches of
1,024) over 200,000 points with D=10, K=5, full covariances.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cases import Mixture, as_dicts, batches, tutorial_stream  # noqa: E402

from online_em import OnlineGaussianMixture  # noqa: E402


def _per_point(stream, K, cov, call):
    model = OnlineGaussianMixture(n_components=K, covariance_type=cov, seed=0)
    if call == "learn_predict_one":
        for x in stream:
            model.learn_predict_one(x)
    else:
        for x in stream:
            model.learn_one(x)
            model.predict_one(x)


def _learn_many(chunks, K, cov):
    model = OnlineGaussianMixture(n_components=K, covariance_type=cov, seed=0)
    for chunk in chunks:
        model.learn_many(chunk)


def profile(title, fn, top, sorts):
    profiler = cProfile.Profile()
    profiler.enable()
    fn()
    profiler.disable()
    print(f"\n### {title}\n")
    for sort in sorts:
        buffer = io.StringIO()
        stats = pstats.Stats(profiler, stream=buffer).strip_dirs().sort_stats(sort)
        stats.print_stats(top)
        text = buffer.getvalue()
        body = text[text.find("   ncalls"):] if "   ncalls" in text else text
        head = [line for line in text.splitlines() if "function calls" in line]
        print(f"sorted by {sort}; {head[0].strip() if head else ''}\n```\n{body.rstrip()}\n```")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="points for the per-point profiles")
    parser.add_argument("--many", type=int, default=200_000, help="points for the learn_many profile")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--sort", action="append", choices=("tottime", "cumulative"))
    args = parser.parse_args()
    sorts = args.sort or ["tottime", "cumulative"]
    n = args.n
    one_d = as_dicts(tutorial_stream(n / 12000, seed=1)[:n])
    five_d = as_dicts(Mixture(5, 3, "full", seed=13).sample(n, seed=14))
    chunks = batches(Mixture(10, 5, "full", seed=21).sample(args.many, seed=121), 1024)
    profile(f"learn_one + predict_one, 1-D, K=2, full, {n:,} points",
            lambda: _per_point(one_d, 2, "full", "learn_one"), args.top, sorts)
    profile(f"learn_predict_one, 1-D, K=2, full, {n:,} points",
            lambda: _per_point(one_d, 2, "full", "learn_predict_one"), args.top, sorts)
    profile(f"learn_one + predict_one, 5-D, K=3, full, {n:,} points",
            lambda: _per_point(five_d, 3, "full", "learn_one"), args.top, sorts)
    profile(f"learn_many, D=10, K=5, full, {args.many:,} points in batches of 1,024",
            lambda: _learn_many(chunks, 5, "full"), args.top, sorts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
