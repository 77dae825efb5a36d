"""Online EM on Dask: stream the blocks of a dask array or dataframe through a model.

The E-step statistics of a Gaussian mixture are additive, so a mini-batch that spans several
partitions is learned in three moves:

1. every partition of the mini-batch computes its summed `SufficientStatistics` under the current
   parameters, on the worker that holds it (only the parameters, a few K x D arrays, travel to
   the tasks; the data never leaves the workers);
2. the partitions' statistics are merged on the workers in a fixed tree (`split_every` at a time,
   always in partition order, so that the result repeats bit for bit from run to run);
3. the driver gathers the single K-sized result and blends it into the model with the combined
   step of that many points (`OnlineGaussianMixture.apply_statistics`). The step counter is the
   driver's, advanced once per merged mini-batch.

Rows may have missing values (NaN), as in `learn_many`; a dataframe must have a column for every
feature of the model (it may be all missing). **Births** happen as in `learn_many`: while the
model holds novel points back (`OnlineGaussianMixture.novelty_threshold`: an adaptive model,
once initialised), each task holds back its block's novel rows (`online_em.novelty`) and sends them to
the driver with its statistics; the driver hands them to `OnlineGaussianMixture.hold`, which makes
a birth when one is due (the tasks then make the batch's E-step again under the newborn's
parameters); merges and prunes are the driver's.

A mini-batch is one block, or `blocks_per_batch` consecutive blocks, and a pass visits them in
order, so ``partial_fit(model, data)`` learns what ``model.learn_many(block)`` for each block in
turn would (to rounding; the only difference is that a collapsed component is re-seeded by
splitting the heaviest one, since the points stay on the workers). A model that is not yet
initialised is initialised on the driver from the first ``warm_up`` rows of the first block (a
small sample fetched from its worker), which the first mini-batch then skips.

This module is the only one that imports Dask: install the extra with
``pip install "online-em[dask]"``. `client=None` computes with Dask's default scheduler, which is
the default `distributed.Client` when one exists, else Dask's local scheduler.

>>> import dask
>>> import dask.array as da
>>> import numpy as np
>>> from online_em import OnlineGaussianMixture
>>> import online_em.dask

Two clusters, 40,000 points in 8 blocks of 5,000, learned in mini-batches of 2 blocks:

>>> rng = np.random.default_rng(0)
>>> X = np.concatenate([rng.normal(-5.0, 1.0, (20_000, 2)), rng.normal(5.0, 1.0, (20_000, 2))])
>>> data = da.from_array(rng.permutation(X), chunks=(5_000, 2))
>>> model = OnlineGaussianMixture(n_components=2, seed=1)
>>> with dask.config.set(scheduler="threads"):  # or a distributed.Client
...     model = online_em.dask.fit(model, data, n_passes=2, blocks_per_batch=2)
>>> model.n_samples_seen
80000
>>> np.sort(model.means_[:, 0]).round(1).tolist()
[-5.0, 5.0]

"""

from __future__ import annotations

import dataclasses
import functools
import numbers
import typing

import dask
import numpy as np

from . import missing, novelty, splits
from .features import sorted_features
from .model import OnlineGaussianMixture
from .stats import SufficientStatistics

__all__ = ["BlockResult", "partial_fit", "fit"]


# ---------------------------------------------------------------- tasks (run on the workers)


def _as_matrix(block: typing.Any, features: list | None) -> np.ndarray:
    """A block as a float64 (n, d) matrix, dataframe columns in the model's feature order."""
    if features is not None:
        return block[features].to_numpy(dtype=np.float64)
    matrix = np.asarray(block, dtype=np.float64)
    return matrix[:, None] if matrix.ndim == 1 else matrix


def _head(block: typing.Any, features: list | None, start: int, n: int):
    """n rows of a block from `start` on: a pandas DataFrame for dataframes, else an array."""
    if features is not None:
        return block[features].iloc[start : start + n]
    return _as_matrix(block, None)[start : start + n].copy()


@dataclasses.dataclass
class BlockResult:
    """What a block's E-step sends back: the summed statistics of the rows it learned, how many
    rows had something observed, its novel rows (held back, not in the statistics) with their
    offsets among those rows, and the last `splits.WINDOW_LIMIT` complete rows it learned (what
    a split is tested on, `OnlineGaussianMixture.apply_statistics`). Results of consecutive
    blocks merge in order."""

    statistics: SufficientStatistics
    n_rows: int
    novel_rows: np.ndarray  # (m, D)
    novel_offsets: np.ndarray  # (m,), increasing
    learned_tail: np.ndarray  # (at most WINDOW_LIMIT, D)

    def merge(self, other: BlockResult) -> BlockResult:
        return BlockResult(
            self.statistics.merge(other.statistics),
            self.n_rows + other.n_rows,
            np.concatenate([self.novel_rows, other.novel_rows]),
            np.concatenate([self.novel_offsets, other.novel_offsets + self.n_rows]),
            np.concatenate([self.learned_tail, other.learned_tail])[-splits.WINDOW_LIMIT:],
        )


def _block_statistics(block: typing.Any, payload: tuple, skip: int, index: int) -> BlockResult:
    """E-step on one block under the parameters in `payload`: the statistics of its rows, the
    novel ones held back if the payload has a novelty threshold (at most MAX_NOVEL_ROWS of a
    block: beyond, they are learned as ordinary rows); novelty is judged under the payload's
    `novelty_params` when given (the parameters before a birth, when the statistics are made
    again under the parameters after it).

    The first `skip` rows (those the model was initialised on) are left out. NaN is a missing
    value (rows with none observed are left out, and out of the count).
    """
    params, features, threshold, novelty_params = payload
    X = _as_matrix(block, features)[skip:]
    if np.isinf(X).any():
        row = int(np.argwhere(np.isinf(X))[0, 0])
        raise ValueError(
            f"block {index}, row {row + skip} has a value that is not finite: {X[row].tolist()}"
        )
    X = missing.observed_rows(X)
    if threshold is None:
        statistics, offsets = missing.expected_statistics(params, X), np.zeros(0, dtype=np.int64)
    elif novelty_params is None:  # the same E-step as learn_many's (online_em.novelty.held_out)
        statistics, offsets = novelty.held_out(params, X, threshold, MAX_NOVEL_ROWS)
    else:  # novelty as judged before a birth (the same test), the statistics under the parameters after it
        offsets, statistics = novelty.held_out(novelty_params, X, threshold, MAX_NOVEL_ROWS)[1], None
    learned = np.delete(X, offsets, axis=0) if len(offsets) else X
    if statistics is None:
        statistics = missing.expected_statistics(params, learned)
    return BlockResult(statistics, len(X), X[offsets], offsets, missing.complete_rows(learned)[-splits.WINDOW_LIMIT:])


# A block sends back at most this many novel rows (a birth needs a few dozen; a block that is all
# of a new cluster would otherwise send itself to the driver).
MAX_NOVEL_ROWS = novelty.HOLD_POINTS


def _merge_all(*parts: BlockResult) -> BlockResult:
    """Merge block results left to right (a fixed order, hence a repeatable sum)."""
    return functools.reduce(BlockResult.merge, parts)


# ---------------------------------------------------------------- graph building (driver)


def _tree_reduce(nodes: list, split_every: int):
    """A fixed-arity tree of merges over `nodes`, in order; returns the root."""
    while len(nodes) > 1:
        nodes = [
            dask.delayed(_merge_all, pure=False)(*nodes[i : i + split_every])
            if len(nodes[i : i + split_every]) > 1
            else nodes[i]
            for i in range(0, len(nodes), split_every)
        ]
    return nodes[0]


def _compute(client, obj):
    """Compute one delayed object: on `client`, or with Dask's default scheduler."""
    if client is not None:
        return client.compute(obj).result()
    return dask.compute(obj)[0]


def _blocks(model: OnlineGaussianMixture, data: typing.Any) -> tuple[list, list | None]:
    """The blocks of `data` as a list of delayed objects, and the feature order for dataframes."""
    import dask.array as da

    if isinstance(data, da.Array):
        if data.ndim == 1:
            data = data[:, None]
        if data.ndim != 2:
            raise ValueError(f"expected a 2-D dask array (rows x features), got {data.ndim} dimensions")
        d = data.shape[1]
        if model.n_features_in_ and d != model.n_features_in_:
            raise ValueError(
                f"expected {model.n_features_in_} features {model.feature_names_in_!r}, got {d}"
            )
        if data.numblocks[1] != 1:  # one block of rows must hold whole rows
            data = data.rechunk({1: -1})
        return list(data.to_delayed().ravel()), None

    try:
        import dask.dataframe as dd
    except ImportError:  # pragma: no cover - dask without the dataframe extra
        dd = None
    if dd is not None and isinstance(data, dd.DataFrame):
        columns = list(data.columns)
        features = model.feature_names_in_ if model.n_features_in_ else sorted_features(columns)
        missing = [f for f in features if f not in set(columns)]
        if missing:
            raise ValueError(f"feature {missing[0]!r} is missing from the columns {columns!r}")
        extra = [c for c in columns if c not in set(features)]
        if extra:
            raise ValueError(f"unknown feature {extra[0]!r}: the model knows {features!r}")
        return list(data[features].to_delayed()), features

    raise TypeError(
        f"data must be a dask array (rows x features) or a dask DataFrame, got {type(data).__name__}"
    )


def _check_options(blocks_per_batch: int, split_every: int) -> None:
    if not isinstance(blocks_per_batch, numbers.Integral) or blocks_per_batch < 1:
        raise ValueError(f"blocks_per_batch must be a positive integer, got {blocks_per_batch!r}")
    if not isinstance(split_every, numbers.Integral) or split_every < 2:
        raise ValueError(f"split_every must be an integer >= 2, got {split_every!r}")


def _initialise(model: OnlineGaussianMixture, blocks: list, features: list | None, client) -> dict:
    """Feed the model the first rows of the data until it is initialised; only those rows come
    to the driver (a few more when some have nothing observed, which the warm-up skips).
    Returns how many leading rows of each block were used."""
    consumed: dict[int, int] = {}
    for i, block in enumerate(blocks):
        consumed[i] = 0
        while not model.is_initialised:
            head = _compute(client, dask.delayed(_head, pure=False)(block, features, consumed[i],
                                                                    model.warm_up_remaining))
            if not len(head):
                break
            consumed[i] += len(head)
            model.learn_many(head)
        if model.is_initialised:
            break
    return consumed


# ---------------------------------------------------------------- API


def partial_fit(
    model: OnlineGaussianMixture,
    data: typing.Any,
    *,
    blocks_per_batch: int = 1,
    split_every: int = 8,
    client: typing.Any = None,
    callback: typing.Callable[[OnlineGaussianMixture], typing.Any] | None = None,
) -> OnlineGaussianMixture:
    """One streaming pass over the blocks of `data`, in order: one mini-batch per group of
    `blocks_per_batch` consecutive blocks.

    Parameters
    ----------
    model
        An `OnlineGaussianMixture`, updated in place (and returned). If it is not initialised,
        it is first initialised from the first ``warm_up`` rows of the data.
    data
        A dask array of shape (rows, features), or a dask DataFrame whose columns are the
        features (matched by name; in the model's feature order, sorted names for a new model).
        Persist it first (``data = data.persist()``) if it is to be read more than once.
    blocks_per_batch
        Number of consecutive blocks (partitions) that make one mini-batch.
    split_every
        Arity of the tree that merges the partitions' statistics on the workers.
    client
        A `distributed.Client`. ``None`` uses Dask's default scheduler: the default client if
        there is one, else Dask's local scheduler.
    callback
        Called as ``callback(model)`` after each mini-batch is blended in (e.g. for progress).

    Returns
    -------
    The model.

    """
    _check_options(blocks_per_batch, split_every)
    blocks, features = _blocks(model, data)
    consumed = {} if model.is_initialised else _initialise(model, blocks, features, client)
    if not model.is_initialised:  # fewer rows than warm_up: all of them are in the buffer
        return model
    for start in range(0, len(blocks), blocks_per_batch):
        group = range(start, min(start + blocks_per_batch, len(blocks)))

        def statistics(payload):
            # One literal per mini-batch: the parameters travel once to the workers, not the data back.
            shared = dask.delayed(payload, traverse=False)
            parts = [
                dask.delayed(_block_statistics, pure=False)(blocks[j], shared, consumed.get(j, 0), j)
                for j in group
            ]
            return _compute(client, _tree_reduce(parts, split_every))

        params, threshold = model.parameters_for_e_step, model.novelty_threshold
        result = statistics((params, features, threshold, None))
        if len(result.novel_rows) and model.hold(
            result.novel_rows, result.novel_offsets, result.n_rows,
            lambda new: statistics((new, features, threshold, params)).statistics,  # a newborn's refinement
        ):
            # A birth before the batch's other rows are learned (as learn_many): their E-step
            # again, under the new parameters, the same rows held out.
            result = statistics((model.parameters_for_e_step, features, threshold, params))
        if result.statistics.count >= 1:
            model.apply_statistics(result.statistics, result.learned_tail)
        if callback is not None:
            callback(model)
    return model


def fit(
    model: OnlineGaussianMixture,
    data: typing.Any,
    *,
    n_passes: int = 1,
    blocks_per_batch: int = 1,
    split_every: int = 8,
    client: typing.Any = None,
    callback: typing.Callable[[OnlineGaussianMixture], typing.Any] | None = None,
) -> OnlineGaussianMixture:
    """`n_passes` streaming passes over `data` (see `partial_fit`); persist `data` first so that
    the passes do not recompute it.

    The step size keeps decaying across the passes: every pass counts its points again.
    """
    if not isinstance(n_passes, numbers.Integral) or n_passes < 1:
        raise ValueError(f"n_passes must be a positive integer, got {n_passes!r}")
    for _ in range(n_passes):
        partial_fit(
            model,
            data,
            blocks_per_batch=blocks_per_batch,
            split_every=split_every,
            client=client,
            callback=callback,
        )
    return model
