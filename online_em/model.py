"""`OnlineGaussianMixture`: a Gaussian mixture learned by stepwise EM, as a River clusterer."""

from __future__ import annotations

import dataclasses
import math
import typing

import numpy as np
from river import base

from . import fastpath, features, init, missing, moves, novelty, splits, steps, validation, warmup
from .prior import DEFAULT_COUNT
from .stats import COLLAPSE_WEIGHT, MixtureParameters, SufficientStatistics, average_every, check_covariance_type

__all__ = ["ModelState", "OnlineGaussianMixture"]

# `_params` is to be derived again from the statistics when next read (Ellipsis: a copy or a
# pickle of a model keeps it as itself).
_STALE = Ellipsis


# Deviations are squared in float64: beyond this magnitude their squares (and sums of them) overflow.
MAX_ABS_VALUE = 1e152
# average_after="auto": the Polyak average starts at twice the warm-up, and not before this point.
AUTO_AVERAGE_AFTER = 2000


class OnlineGaussianMixture(base.Clusterer):
    """Gaussian mixture model learned online by stepwise expectation-maximisation.

    The model keeps running averages of each component's sufficient statistics (mass, first and
    second moments) and blends every new point's (or mini-batch's) expected statistics into them
    (Cappé & Moulines, 2009; Liang & Klein, 2009), so it never refits from scratch. The masses
    are exact running averages: the weights are each component's share of all the points seen,
    whatever their order. Each component's moments learn on its own clock, its mass: a share r of
    a point moves them by about ``r * n ** -alpha`` for a component of mass n (`online_em.steps`),
    so a component whose points all came early keeps them. The E-step weighs the components by
    their recent share of the points (recency masses on the global clock t ** -0.6, at least 1%
    of their weight), so that a component born late claims its region at once.

    Until `warm_up` points have arrived, the model is batch EM on the points it buffers: what it
    reports (weights, means, covariances, `predict_many`, `score_many`, `save`) is a converged
    fit of every point seen so far, the best of `n_init` k-means and k-means++ starts, run to a
    tolerance as scikit-learn's `GaussianMixture` does. One-point
    predictions during the warm-up use the same kind of fit, refreshed each time the buffer has
    grown by a quarter (see `online_em.warmup`). A stream shorter than the warm-up therefore gets
    what batch EM gets. When the buffer is full, its fit becomes the running statistics and the
    streaming updates begin. From `average_after` points on, the means and covariances that the
    model reports and predicts with are the Polyak average of the statistics' iterates, which
    removes most of the noise of the steps (by default from twice the warm-up on, and at least
    2,000 points: the iterate's first steps after the batch fit are a transient).

    With `adaptive` (the default), `n_components` is the *maximum* number of components, as in
    scikit-learn's BayesianGaussianMixture. The warm-up's fits choose how many the buffer
    supports, by Akaike's criterion (`online_em.selection`), from a buffer of at least
    `selection.POINTS_PER_PARAMETER` points per parameter of one component; a smaller buffer (few
    rows in many dimensions: 142 rows of wine against 104 parameters for one full component in 13
    dimensions) keeps all `n_components`, so choose it yourself there. The other slots are inactive:
    weight 0, never predicted. A point far from every component (beyond the `novelty_level`
    quantile of the chi-square distribution) is held back rather than learned, and when more
    such points arrive than chance explains, they start a new component in the lowest free slot
    (`online_em.novelty`). With every slot in use, the cheapest merge of the components and the
    would-be newborn (counted at the rate its points arrive) decides: a pair merges and the
    newborn takes its slot, or, when merging the newborn would cost the least, its points are
    learned as they are (`online_em.moves.best_reduction`; measured: 20,000 points of clusters
    at 0 and 10, then 20,000 of 30 and 10, `n_components=2`, end at 7.0 and 30 as batch EM's at
    6.7 and 30, 0.48 nats a point above the component at 10 dragged toward 30 before). A cluster that arrives within a component's
    spread is not novel point by point, but the mean of the last 128 points learned shows it: a
    component they moved a standard deviation or more from where it was is split, back to its
    moments before them, and they start a component in the lowest free slot (`online_em.splits`).
    Every 500 points (later, every sixteenth of the stream so far), a component whose weight has
    fallen under `prune_weight` is removed, and a pair of components that one Gaussian explains
    almost as well (by a BIC-sized margin) is merged (`online_em.moves`). Each component's
    Polyak average begins at its birth. **Labels stay stable**: a surviving component keeps its
    index, a merged pair keeps the heavier one's, a split one keeps its index for its older
    points, a newborn takes the lowest free index; the first fit numbers its components
    heaviest first.
    `adaptive=False` keeps exactly `n_components` components (a collapsed one is re-seeded).

    **Missing values.** A feature absent from a point's dict, or whose value is ``None`` or NaN
    (NaN in an array or a DataFrame, which may also lack a column) is missing: the point learns
    and predicts through the marginal density of its observed features, and its statistics are
    the exact EM ones (`online_em.missing`); a point with nothing observed is skipped
    (`n_samples_skipped`). **Features that come and go**: a feature the model does not know is
    ignored at inference; while learning it is added as a new dimension, as if it had been
    missing from every earlier point (`online_em.features`).

    Parameters
    ----------
    n_components
        Number of mixture components.
    covariance_type
        ``'full'`` (one full matrix each), ``'diag'``, ``'spherical'`` (one variance each) or
        ``'tied'`` (one full matrix shared by all components), as in scikit-learn.
    alpha
        Decay of each component's step on its own clock, in (0.5, 1]. 1 is the exact running
        average of its EM statistics; smaller values forget the early, poorly fitted ones faster.
        (Measured: on the tutorial in its own order, 5 seeds, the worst mean ended 1.8 off at
        0.6, 1.2 at 0.7, 0.6 at 0.75, 0.3 at 0.8: smaller values let the first process's
        component be dragged toward the second; with 30% of values missing, 50,000 rows, the
        worst seed ended 0.0019, 0.0028 and 0.0045 nats from the truth at 0.7, 0.75 and 0.8.)
    warm_up
        Number of points buffered (and fitted in batch) before the streaming updates begin.
        ``None`` (the default) scales it with the model: 100 points per free parameter of the
        mixture (weights, means and covariances), at least 500 and at most 20,000 points or
        2,000,000 buffered values (`online_em.init.default_warm_up`); e.g. 500 for two 1-D
        components, 10,900 for 2 full components in 9 dimensions. (Measured on River's Shuttle,
        2 full components in 9 dimensions: a batch start on 1,090 points followed by the stream
        ended at ARI 0.37 and held-out ll 3.8 nats, on 10,000 points at 0.914 and 7.12, batch EM
        on all 39,000 at 0.915 and 7.11.)
    reg_covar
        Added to the diagonal of every covariance, so they stay positive definite.
    average_after
        Number of points after which the reported parameters are the running average of the
        iterates (Polyak averaging). ``'auto'`` (the default): twice the warm-up, and at least
        2,000. ``None`` reports the last iterate. (Measured on River's Shuttle, 9 features, a
        warm-up of 10,900, 3 seeds: averaging from 2,000 points on gave a held-out log-likelihood
        of 6.62 nats, one seed 5.79, as the average took in the iterates' drift from the batch
        fit to the stream's optimum; from twice the warm-up, 7.08; scikit-learn's batch EM 7.11.)
    covariance_prior
        Strength of the covariance prior, in pseudo-points per component: each component's
        covariance is shrunk toward half the data's covariance (measured on the warm-up buffer)
        as if that many points at its mean had that covariance (MAP EM; see `online_em.prior`).
        It keeps full covariances in many dimensions from collapsing onto a few points; ``0``
        turns it off. ``'auto'`` (the default) sets it for each fit of the warm-up buffer from
        the buffer's size: 0.1 while the mixture has at least as many covariance parameters as
        the buffer has points, falling with the square of their ratio beyond (2 full components
        in 1-D on 500 points: 2e-6), so that well-determined covariances, even of nearly
        discrete features, are the data's own (`online_em.prior.auto_count`). The warm-up fits
        carry it in full; the streaming updates then treat it as the earliest data of the stream.
    n_init
        Number of starts (alternately k-means, as scikit-learn's default, and k-means++) of each
        reported batch fit of the warm-up buffer; the best log-likelihood wins. More starts find
        higher likelihoods, which on small data sets can be over-fitted ones (scikit-learn's own
        n_init=5 lowers the ARI on wine from 0.88 to 0.77); with the default prior, 3 starts
        measured best on iris, wine and breast_cancer (10 seeds each).
    init_max_iter
        Maximum number of EM iterations of each start (EM stops earlier once the mean
        log-likelihood per point changes by less than 1e-3, as scikit-learn's default).
    adaptive
        True: `n_components` is the maximum, and components are born, split, merged and pruned as the
        stream calls for; False: exactly `n_components` components.
    prune_weight
        A component whose weight falls under this (and is 1,000 points old) is removed; ``None``
        means ``min(0.01, 0.1 / n_components)``.
    novelty_level
        A point is novel (held back, a candidate for a new component) when its Mahalanobis
        distance to every component exceeds this quantile of the chi-square distribution.
    halflife
        For drifting streams: the model forgets with this half-life, in points (a point weighs
        half after that many more). The weights become exponentially weighted shares, each
        component's moments forget with half-life ``halflife * weight`` of its own points, and
        the Polyak average forgets with an eighth of it (`online_em.steps.forgetting_step`).
        With `adaptive`, a birth due while every slot is in use takes the slot of a stale
        component (one that has had under 1% of the recent points).
        ``None`` (the default): a stationary stream, nothing forgotten. (Measured on a 1-D mean
        walking from 40 to 80 over 60,000 points beside a fixed component: see
        `tests/test_forgetting.py` and benchmarks/RESULTS.md.)
    seed
        Random seed for the initialisation and re-seeding.

    Attributes
    ----------
    weights_ : np.ndarray
        Mixture weights, shape (n_components,).
    means_ : np.ndarray
        Component means, shape (n_components, n_features).
    covariances_ : np.ndarray
        Covariances in scikit-learn's shapes for the covariance type.
    centers : dict
        ``{component: {feature: mean}}``, as River's clusterers report them.
    n_samples_seen : int
        Points seen so far (learned, or held back as novel).
    n_active_components_ : int
        Components with a weight above 0.
    moves_ : dict
        How many births, merges, prunes and splits the model has made.

    Examples
    --------

    Two processes, N(20, 5^2) and N(40, 5^2), in a shuffled stream, one point at a time:

    >>> import random
    >>> from online_em import OnlineGaussianMixture

    >>> rng = random.Random(7)
    >>> xs = [rng.gauss(20, 5) for _ in range(2000)] + [rng.gauss(40, 5) for _ in range(4000)]
    >>> rng.shuffle(xs)

    >>> model = OnlineGaussianMixture(n_components=2, seed=42)
    >>> for x in xs:
    ...     model.learn_one({"value": x})

    >>> order = model.means_[:, 0].argsort()
    >>> model.means_[order, 0].round(0).tolist()
    [20.0, 40.0]
    >>> model.weights_[order].round(1).tolist()
    [0.3, 0.7]
    >>> model.predict_one({"value": 15.0}) == int(order[0])
    True
    >>> proba = model.predict_proba_one({"value": 30.0})
    >>> sorted(proba), round(sum(proba.values()), 6)
    ([0, 1], 1.0)

    A feature that appears later is learned from then on; a point without `value` still learns:

    >>> for x in xs[:3000]:
    ...     model.learn_one({"value": x, "double": 2 * x} if x > 30 else {"double": 2 * x})
    >>> model.feature_names_in_, model.n_samples_skipped
    (['double', 'value'], 0)
    >>> model.predict_one({"double": 80.0}) == model.predict_one({"value": 40.0})
    True

    References
    ----------
    [^1]: Cappé, O. and Moulines, E. (2009). On-line expectation-maximization algorithm for latent
        data models. Journal of the Royal Statistical Society: Series B, 71(3), 593-613.
    [^2]: Liang, P. and Klein, D. (2009). Online EM for unsupervised models. NAACL-HLT.
    [^3]: Polyak, B. T. and Juditsky, A. B. (1992). Acceleration of stochastic approximation by
        averaging. SIAM Journal on Control and Optimization, 30(4), 838-855.

    """

    def __init__(
        self,
        n_components: int = 2,
        covariance_type: str = "full",
        alpha: float = 0.75,
        warm_up: int | None = None,
        reg_covar: float = 1e-6,
        average_after: int | str | None = "auto",
        covariance_prior: float | str = DEFAULT_COUNT,
        n_init: int = 3,
        init_max_iter: int = 100,
        adaptive: bool = True,
        prune_weight: float | None = None,
        novelty_level: float = 0.999,
        halflife: float | None = None,
        seed: int | None = None,
    ):
        validation.check_halflife(halflife)
        validation.check_params(
            n_components, warm_up, reg_covar, average_after, n_init, init_max_iter, alpha, covariance_prior
        )
        validation.check_structure_params(adaptive, prune_weight, novelty_level)
        check_covariance_type(covariance_type)
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.alpha = alpha
        self.warm_up = warm_up
        self.reg_covar = reg_covar
        self.average_after = average_after
        self.covariance_prior = covariance_prior
        self.n_init = n_init
        self.init_max_iter = init_max_iter
        self.adaptive = adaptive
        self.prune_weight = prune_weight
        self.novelty_level = novelty_level
        self.halflife = halflife
        self.seed = seed

        self._rng = np.random.default_rng(seed)
        self._features: list | None = None
        self._buffer: list[list[float]] = []
        self._stats: SufficientStatistics | None = None  # the iterate (running averages)
        self._average: SufficientStatistics | None = None  # Polyak average of the iterates
        self._average_weights: np.ndarray | None = None  # the iterate's weights when it last took them in
        self._n_averaged = 0
        # Where each component's average began, on the average's clock (points averaged): 0 for
        # those there when it began, later for those born since (they average their own iterates).
        self._average_from = np.zeros(n_components, dtype=np.int64)
        self._pending_average = 0  # points learned since the average last took in the iterate
        self._t = 0
        self._n_reseeds = 0
        self._n_skipped = 0  # points with nothing observed: not learned
        self._params = None  # cache: parameters of the iterate, for E-steps (see `_params`)
        # Each component's recent share of the points (blended with the global step): the
        # E-step's prior weights (see `online_em.steps.prior_weights`).
        self._recency: np.ndarray | None = None
        self._reported: MixtureParameters | None = None  # cache: parameters reported
        # While set, the plain-Python engine holds the live state of runs of one-point calls.
        self._engine: fastpath.Engine | None = None
        self._slots: list[int] | None = None  # the model's components the engine holds (None: all)
        # The warm-up's batch fits of the buffer (derivable from it, cached); made once the
        # features are known.
        self._fits: warmup.WarmUpFits | None = None
        # Structural moves (adaptive models): when each component became active (the step
        # counter then; -1 while inactive), the novel points held back, points since the last
        # merge-and-prune check, and how many moves of each kind were made.
        self._born = np.full(n_components, -1, dtype=np.int64)
        self._held = novelty.HeldPoints()
        self._since_check = 0
        self._check_spacing = moves.CHECK_EVERY  # points from the last check to the next
        self._moves = {"births": 0, "merges": 0, "prunes": 0, "splits": 0}
        self._window: list[list[float]] = []  # while a slot is free: the points learned since the split test
        self._watching = False  # adaptive and initialised: test points for novelty
        self._splitting = False  # and a slot is free: points learned go to the split test's window
        self._threshold = math.inf  # while watching: the novelty threshold (`_novelty_threshold`)
        self._refined_newborn: int | None = None  # a newborn refined on the batch being learned

    @classmethod
    def _unit_test_params(cls):
        yield {"n_components": 3, "seed": 42}
        yield {"n_components": 2, "covariance_type": "diag", "warm_up": 20, "seed": 1}

    # ------------------------------------------------------------------ settings resolved by the data

    @property
    def _average_start(self) -> int | None:
        """The point from which the Polyak average takes in the iterates (None: never)."""
        if self.average_after == "auto":
            return max(AUTO_AVERAGE_AFTER, 2 * self.warm_up_size)
        return self.average_after

    @property
    def warm_up_size(self) -> int:
        """The number of points the warm-up buffers: `warm_up`, or the default for the model's
        structure once its features are known."""
        if self.warm_up is not None:
            return self.warm_up
        return init.default_warm_up(self.covariance_type, self.n_components, max(1, self.n_features_in_))

    def _warm_up_fits(self) -> warmup.WarmUpFits:
        if self._fits is None:
            self._fits = warmup.WarmUpFits(
                self.n_components, self.covariance_type, self.reg_covar, self.n_init,
                self.init_max_iter, self.covariance_prior, self.seed, self.adaptive,
            )
        return self._fits

    # ------------------------------------------------------------------ input conversion

    def fix_features(self, keys: typing.Iterable) -> None:
        """Fix the model's features before it learns a point (a labeler that knows its columns
        from its input's first record); they are kept in `features.sorted_features` order."""
        if self._features is not None:
            raise ValueError(f"the features are fixed already: {self._features!r}")
        self._set_features(keys)

    def _set_features(self, keys: typing.Iterable) -> None:
        self._features = features.sorted_features(validation.check_features(keys))

    def _row(self, x: dict) -> list[float]:
        """The values of x in feature order, as floats, NaN where one is missing (absent, None
        or NaN); keys the model does not know are ignored."""
        return validation.row_from_dict(x, self._features)

    def _learning_row(self, x: dict) -> list[float] | None:
        """`_row` for a point to learn: its features the model does not know yet (with a value)
        are added to the model first (`_add_features`); a new model takes its observed ones."""
        if self._features is None:
            observed = [k for k, v in x.items() if not validation.is_missing(v)]
            if not observed:  # nothing to learn, and no features to fix
                self._n_skipped += 1
                return None
            self._set_features(observed)
        unknown: list = []
        row = validation.row_from_dict(x, self._features, unknown)
        if not unknown:
            return row
        self._add_features(unknown, [validation.check_value(x[k]) for k in unknown])
        return self._row(x)

    def _add_features(self, names: list, values: list[float]) -> None:
        """New features, in their place among the known ones (the features stay sorted; see
        `online_em.features`): during the warm-up a missing column of the buffer; then new
        dimensions of the statistics, at `values`. The Polyak average, which would hold the new
        features' first guess for long, starts again. Points held back as novel are learned first,
        in the features they came with, and the split window starts again."""
        self._sync()
        if self._stats is not None:
            self._learn_held(self._held.take_all())
            self._window = []
        grown = self._features + list(names)
        self._features = features.sorted_features(grown)
        position = {name: j for j, name in enumerate(grown)}
        order = [position[name] for name in self._features]
        self._fits = None  # fits of the buffer's old columns
        self._reported = None
        if self._stats is None:
            self._buffer = features.grown_rows(self._buffer, len(names), order)
            return
        self._stats = features.grown_statistics(self._stats, values, order)
        self._average, self._n_averaged, self._pending_average = None, 0, 0
        self._average_from[:] = 0
        self._params = self._stats.to_parameters(self.reg_covar)
        self._refresh_watching()  # (the novelty threshold grows with the features)

    def _add_columns(self, values: np.ndarray, names: list) -> None:
        """Add the columns of a batch that are new features with an observed value (each at the
        mean of its observed values)."""
        self._check_finite(values)
        mean, _, count = missing.column_moments(values)
        new = [j for j in range(len(names)) if count[j]]
        if new:
            self._add_features([names[j] for j in new], [float(mean[j]) for j in new])

    def _matrix(self, X: typing.Any, learning: bool = False) -> tuple[np.ndarray, typing.Any]:
        """A float matrix with columns in feature order (NaN for a missing value), and the index
        of X if it has one. A DataFrame may lack some features (missing in every row); columns
        the model does not know are ignored, or with `learning`, added to the model."""
        index = getattr(X, "index", None)
        if self._features is None:  # see online_em.validation: an empty batch fixes nothing
            first = validation.batch_features(X)
            if first is None:
                return np.empty((0, 0)), index
            self._set_features(first)
        if hasattr(X, "columns"):  # a pandas DataFrame
            columns = validation.check_features(X.columns)
            known = set(self._features)
            extra = [c for c in columns if c not in known]
            if extra and learning:
                self._add_columns(X[extra].to_numpy(dtype=np.float64), extra)
            present = set(columns)
            picked = [f for f in self._features if f in present]
            if len(picked) == len(self._features):
                matrix = X[self._features].to_numpy(dtype=np.float64)
            else:
                matrix = np.full((len(X), len(self._features)), np.nan)
                matrix[:, [self._features.index(f) for f in picked]] = X[picked].to_numpy(dtype=np.float64)
        else:
            matrix = np.asarray(X, dtype=np.float64)
            if matrix.ndim == 1:
                matrix = matrix[:, None]
            if matrix.ndim != 2:
                raise ValueError(f"expected a 2-D array of shape (n_samples, n_features), got {matrix.shape}")
            if matrix.shape[1] != len(self._features):
                raise ValueError(
                    f"expected {len(self._features)} features {validation.shorten(self._features)}, "
                    f"got {matrix.shape[1]}"
                )
        return matrix, index

    @staticmethod
    def _check_finite(matrix: np.ndarray) -> None:
        """ValueError for an infinite value or one beyond ±MAX_ABS_VALUE; NaN is a missing value."""
        if matrix.size == 0 or (matrix.max() <= MAX_ABS_VALUE and matrix.min() >= -MAX_ABS_VALUE):
            return  # two reductions, no copy; NaN fails both comparisons
        bad = np.abs(matrix) > MAX_ABS_VALUE
        if bad.any():
            row = int(np.argwhere(bad)[0, 0])
            raise ValueError(
                f"row {row} has a value that is not finite or beyond ±{MAX_ABS_VALUE:g}: "
                f"{validation.shorten(matrix[row].tolist())}"
            )

    # ------------------------------------------------------------------ learning

    def learn_one(self, x: dict) -> None:
        """Update the model with one point. Features it lacks (absent, None or NaN) are missing
        values; features the model does not know yet are added (see `online_em.features`)."""
        if self._engine is not None:  # the hot path: a plain point
            row = validation.plain_row(x, self._features)
            if row is not None:
                if self._watching:
                    self._learn_or_hold(row, False)
                else:
                    self._learn_complete_row(row, False)
                return
        row = self._learning_row(x)
        if row is not None:
            self._learn_row(row, x, predict=False)

    def learn_predict_one(self, x: dict) -> int:
        """Predict the component of x, then learn x: the labeler's step. With the plain-Python
        engine, one call does both and shares the work between them."""
        if self._engine is None:  # warm-up, or a structure without an engine
            label = self.predict_one(x)
            self.learn_one(x)
            return label
        row = validation.plain_row(x, self._features)  # the hot path: a plain point
        if row is not None:
            return self._learn_or_hold(row, True) if self._watching else self._learn_complete_row(row, True)
        return self._learn_row(self._learning_row(x), x)

    def learn_predict_row(self, row: list[float]) -> int:
        """`learn_predict_one` for the values of a point in feature order (`feature_names_in_`),
        without a dict: the live labeler's step, where building and reading a dict per line costs
        a fifth of the time."""
        if self._engine is None:
            return self.learn_predict_one(dict(zip(self._features, row)))
        return self._learn_row(row, row)

    def _learn_row(self, row: list[float], x: dict, predict: bool = True) -> int | None:
        """Learn one row; with the plain-Python engine and `predict`, return the label it
        predicted first."""
        for v in row:
            if not -MAX_ABS_VALUE <= v <= MAX_ABS_VALUE:
                if v == v:
                    raise ValueError(f"features must be finite and within ±{MAX_ABS_VALUE:g}, got {x!r}")
                return self._learn_incomplete_row(row, predict)
        if self._watching:
            return self._learn_or_hold(row, predict)
        return self._learn_complete_row(row, predict)

    def _learn_complete_row(self, row: list[float], predict: bool, limit: float | None = None) -> int | None:
        """`_learn_row` for a checked, complete row that is to be learned now; with a `limit`,
        through the engine, fastpath.NOVEL (nothing learned) for a row farther than it from every
        component (`_learn_or_hold` then holds it back)."""
        engine = self._engine or self._start_engine()
        if engine is None:
            return self._learn_complete_row_with_arrays(row, None)
        try:
            label = engine.learn_predict(row, predict, limit)
        except fastpath.NotLearnable:  # too extreme for plain floats: learned with arrays
            label = self.predict_one(dict(zip(self._features, row))) if predict else None
            self._sync()
            return self._learn_complete_row_with_arrays(row, label)
        if label is fastpath.NOVEL:
            return label
        if self._slots is not None:  # the engine's component, as the model numbers them
            label = self._slots[label] if label >= 0 else -1 - self._slots[-1 - label]
        since = self._since_check = self._since_check + 1
        if label >= 0 and since < self._check_spacing:  # the usual case
            return label
        if since >= self._check_spacing and self.adaptive:
            self._check_structure()
        if label < 0:  # a component collapsed: repair it with arrays
            self._sync()
            self._repair(np.array([row]))
            label = -1 - label
        return label

    def _engine_label(self, label: int) -> int:
        """The engine's component as the model numbers them."""
        return label if self._slots is None else self._slots[label]

    def _learn_complete_row_with_arrays(self, row: list[float], label: int | None) -> int | None:
        """`_learn_complete_row` without an engine: the row as a batch of one; returns `label`."""
        self._watching = False  # (the row is not novel)
        try:
            self._learn_matrix(np.array([row]))
        finally:
            self._refresh_watching()
        return label

    def _learn_incomplete_row(self, row: list[float], predict: bool) -> int | None:
        """`_learn_row` for a row with a missing value: with arrays (`online_em.missing`), the
        plain-Python engine's state taken back first; the label predicted first, if asked."""
        X = np.array([row])
        self._check_finite(X)
        self._sync()
        label = int(_labels(self._labelling_parameters(), X)[0]) if predict else None
        self._learn_matrix(X)
        return label

    def _start_engine(self):
        """Hand the state to a one-point engine when the model's structure allows one: the active
        components only. Nothing of an inactive slot changes while it is inactive (no mass, no
        recency, zero moments in the iterate and the average), and a birth, split, merge or prune
        takes the state back first, so the engine need not carry the free slots: `_slots` maps
        its components to the model's (None: all of them)."""
        if self._stats is None or not fastpath.supports(self.covariance_type, len(self._features)):
            return None
        stats, recency, average, weights, since = (
            self._stats, self._recency, self._average, self._average_weights, self._average_from)
        live = np.flatnonzero(stats.s0 > 0.0)
        self._slots = None
        if 0 < len(live) < len(stats.s0):
            self._slots = live.tolist()
            stats, recency, since = stats.components(live), recency[live], since[live]
            average = None if average is None else average.components(live)
            weights = None if weights is None else weights[live]
        self._engine = fastpath.make_engine(
            stats, recency, average, weights, self._n_averaged, self._pending_average, self._t,
            self.alpha, self.reg_covar, self._average_start, self.halflife, since.tolist(),
        )
        return self._engine

    def _engine_state(self) -> tuple:
        """The live engine's state as the model keeps it (`fastpath.Engine.export`), with every slot."""
        stats, recency, average, weights, n_averaged, pending, t = self._engine.export()
        slots = self._slots
        if slots is not None:  # the free slots as they were when the engine started
            template = self._stats
            stats = template.with_components(slots, stats)
            recency = _scattered(self._recency, slots, recency)
            if average is not None:
                average = (self._average if self._average is not None else template).with_components(slots, average)
                weights = _scattered(np.zeros(len(template.s0)), slots, weights)
        return stats, recency, average, weights, n_averaged, pending, t

    def _sync(self) -> None:
        """Take the live state back from the one-point engine, as arrays."""
        if self._engine is None:
            return
        (self._stats, self._recency, self._average, self._average_weights, self._n_averaged,
         self._pending_average, self._t) = self._engine_state()
        self._engine = self._slots = None
        self._params = _STALE  # (derived when next read)
        self._reported = None

    def learn_many(self, X: typing.Any) -> None:
        """Update the model with a mini-batch: a pandas DataFrame or an (n, d) array.

        The batch gets the combined step of as many single-point steps, so the result barely
        depends on how a stream is chunked. NaN is a missing value (a row with none observed is
        skipped); a DataFrame may lack features, and its columns the model does not know are added.
        """
        matrix, _ = self._matrix(X, learning=True)
        self._check_finite(matrix)
        self._sync()
        self._learn_matrix(matrix)

    def _learn_matrix(self, X: np.ndarray) -> None:
        incomplete = missing.has_missing(X)
        if incomplete:
            learned = missing.observed_rows(X)
            self._n_skipped += len(X) - len(learned)
            X = learned
        if len(X) == 0:
            return
        if self._stats is None:
            needed = self.warm_up_size - len(self._buffer)
            self._buffer.extend(X[:needed].tolist())
            self._t += min(needed, len(X))
            self._reported = None
            if len(self._buffer) < self.warm_up_size:
                return
            self._initialise()
            X = X[needed:]
            if len(X) == 0:
                return
        self._update(X, incomplete)

    def _initialise(self) -> None:
        """The warm-up ends: the reported fit of the buffer, with its prior's pseudo-points,
        becomes the running statistics (averages over the points and pseudo-points)."""
        buffer = np.array(self._buffer, dtype=np.float64)
        fit = self._warm_up_fits().reported_fit(self._buffer)
        stats, prior = fit.statistics, fit.prior  # warm_up > n_components: there is a fit
        if prior is not None:
            stats = prior.merged_into(stats)
            stats.count = float(stats.s0.sum())  # the average is over points and pseudo-points
        self._stats = stats.average()
        self._recency = self._stats.s0.copy()
        self._buffer = []
        self._fits = None
        self._params = _STALE  # (derived when next read)
        self._reported = None
        self._t = len(buffer)
        self._born = np.where(self._stats.s0 > 0, self._t, -1)
        self._since_check = 0
        self._check_spacing = moves.check_spacing(self._t, self.halflife)
        self._repair(missing.complete_rows(buffer))
        self._refresh_watching()

    def _update(self, X: np.ndarray, incomplete: bool = False) -> None:
        """One stepwise-EM update with the batch X: E-step under the iterate, then blend (a
        collapsed component may be re-seeded on a complete row of X). While watching, novel
        rows are held back, judged on the same E-step (see `online_em.novelty.held_out`)."""
        if self._watching:
            batch, X = self._hold_novel(X)
        else:
            batch = self.expected_statistics(X)
        if batch.count > 0.0:
            self.apply_statistics(batch, missing.complete_rows(X) if incomplete and X is not None else X)
        elif self._watching and self._held:
            self._after_holding()

    # ------------------------------------------------------------------ structural moves

    def _novelty_threshold(self) -> float:
        """The squared Mahalanobis distance beyond which a point is novel (cached by novelty)."""
        return novelty.chi2_quantile(len(self._features), self.novelty_level)

    @property
    def novelty_threshold(self) -> float | None:
        """The squared Mahalanobis distance beyond which a point is held back as novel now (see
        `online_em.novelty.is_novel`), or None when none is (not adaptive, or not initialised):
        what an E-step elsewhere (`online_em.dask`) needs to hold points back."""
        self._sync()
        return self._novelty_threshold() if self._watching else None

    def _learn_or_hold(self, row: list[float], predict: bool) -> int | None:
        """One point while watching: the label, then the point held back if it is novel (and a
        birth if one is due), else learned."""
        engine = self._engine or self._start_engine()
        threshold = self._threshold
        if engine is not None:  # the novelty test on the E-step of the update
            label = self._learn_complete_row(row, predict, threshold)
            novel = label is fastpath.NOVEL
        else:
            novel = float(novelty.nearest_distances(self._params, np.array([row]))[0]) > threshold
            label = None if novel else self._learn_complete_row(row, predict)
        if not novel:
            if self._splitting:
                self._add_to_window([row])
            # No new point is held, so no birth has become due (a birth is due when the held
            # points came too fast for chance, which time only makes less so) unless one was due
            # and waits for a stale component to make room (forgetting): else only an expiry or
            # the end of watching calls for `_after_holding`.
            if self._held.items and (not self._watching or self.halflife is not None
                                     or self._held.expiring(self.n_samples_seen)):
                self._after_holding()
            return label
        label = None
        if predict:
            label = self._engine_label(engine.predict(row)) if engine is not None else int(
                _labels(self._parameters, np.array([row]))[0])
        self._held.add(self.n_samples_seen, list(row))
        self._after_holding()
        return label

    def _hold_novel(self, X: np.ndarray) -> tuple[SufficientStatistics, np.ndarray | None]:
        """Hold back the novel rows of X (in order): the statistics of the rest, and the rest, to
        learn (their E-step made again if holding changed the parameters). The rest is copied out
        of X only when something reads it (a birth, or the split window while a slot is free):
        else None, with every slot in use (`apply_statistics` reads X then for nothing else)."""
        self._sync()
        batch, offsets = novelty.held_out(self._params, X, self._novelty_threshold())
        if not len(offsets):
            return batch, X
        rest: list[np.ndarray] = []

        def others() -> np.ndarray:
            if not rest:  # (a copy of the batch: as costly as its E-step in one feature)
                rest.append(np.delete(X, offsets, axis=0))
            return rest[0]

        if self.hold(X[offsets], offsets, len(X), lambda params: missing.expected_statistics(params, others())):
            if len(X) > len(offsets):
                batch = self.expected_statistics(others())
            return batch, others()
        return batch, others() if self._splitting else None

    def hold(self, rows: np.ndarray, offsets: np.ndarray, n_rows: int,
             batch_statistics: typing.Callable[[MixtureParameters], SufficientStatistics] | None = None) -> bool:
        """Hold back the novel rows of a mini-batch of `n_rows` rows now arriving (rows with
        something observed), at `offsets` among them; then a birth, if one is due by the end of
        the batch, before its other rows are learned. True if the parameters changed (a component
        was born, or with every slot in use the held points were learned as they are): the E-step
        of the batch's other rows is then to be made under the new `parameters_for_e_step`.

        `batch_statistics(params)`, if given, is the E-step of the batch's other rows under
        `params`: a newborn is then refined on them (`online_em.moves.reshaped`) before they are
        learned. `learn_many` holds its novel rows so; an E-step elsewhere (`online_em.dask`)
        that held rows out of its statistics under `novelty_threshold` hands them over with this,
        then its statistics to `apply_statistics`."""
        self._sync()
        if not self._watching:
            raise ValueError("no point is held back now (see novelty_threshold)")
        start = self.n_samples_seen
        for position, row in zip((start + np.asarray(offsets)).tolist(), np.asarray(rows, dtype=np.float64).tolist()):
            self._held.add(position, row)
        return self._birth_if_due(start + n_rows, batch_statistics)

    def _birth_if_due(self, now: int, batch_statistics=None) -> bool:
        """A birth from the most recent held points if one is due by `now` (with every slot in use,
        `_make_room` first); the held points the components then explain (the newborn's other
        neighbours, held from the same batch) are learned, not left to start a second component.
        True if the parameters changed (a birth, or held points learned as they are)."""
        j = self._held.due(now, self.n_features_in_, self.novelty_level)
        if not j:
            return False
        if not self._free_slot():
            held = len(self._held)
            if not self._make_room(j, now):
                return len(self._held) < held  # (learned as they are: the parameters changed)
        rows = np.array(self._held.take_recent(j))
        k = self._birth(rows)
        self._learn_explained_held()
        if batch_statistics is not None:
            self._refine_newborn(k, rows, batch_statistics)
        return True

    def _learn_explained_held(self) -> None:
        """Learn the held points that the components explain now (after a birth or a merge): they
        are not left to start a component of their own."""
        if self._held:
            explained = ~novelty.is_novel(self._params, np.array(self._held.rows()), self._novelty_threshold())
            self._learn_held(self._held.take(explained.tolist()))

    def _make_room(self, j: int, now: int) -> bool:
        """Every slot is in use when a birth from the j most recent held points is due. A
        forgetting model lets go of a component no point has come to for long
        (`moves.stale_component`), and until one is, the held points wait: a jump leaves its old
        component stale. A stationary model makes the cheapest of the merges that take the
        components and the newborn back to as many (`moves.best_reduction`): a pair of components
        merges, freeing a slot for the birth; or, when merging the newborn into a component would
        cost the least (or no component is MERGE_AGE points old yet), no component is worth
        making, and the held points are learned now as ordinary points (in many dimensions, where
        a fit of a short buffer finds every point novel, they would otherwise wait to expire).
        True if a slot was freed."""
        if self.halflife is not None:  # the held points wait for a component to go stale
            state = self._engine_state() if self._engine is not None else None  # read without taking it back
            recency, masses = (state[1], state[0].s0) if state is not None else (self._recency, self._stats.s0)
            stale = moves.stale_component(np.asarray(recency), np.asarray(masses))
            if stale is None:
                return False
            self._sync()
            self._prune(stale)
            return True
        self._sync()
        pair = None
        if moves.reducible(self._born, now):  # (else no component is old enough to merge)
            rows = np.array(self._held.rows()[len(self._held) - j:])
            pair = moves.best_reduction(self._params, self._stats.s0 * self._stats.count, self._born, self._t,
                                        rows, self._held.rate(j, now))
        if pair is not None and pair[1] < self.n_components:
            self._merge(*pair)
            return True
        self._learn_held(self._held.take_recent(j))  # the components explain them best, or must
        return False

    def _refine_newborn(self, k: int, rows: np.ndarray, batch_statistics) -> None:
        """EM steps of newborn k alone over its batch: its rows and the batch's others. Its
        moments then hold the batch's other rows already: the next `apply_statistics` (of those
        rows) leaves them as they are (its statistics for k reshaped to the newborn's)."""
        others = None
        for _ in range(moves.NEWBORN_ITERATIONS):
            params = self._params
            others = batch_statistics(params)
            self._apply(moves.reshaped, k, missing.expected_statistics(params, rows).merge(others))
        # (a batch all of whose rows were held has no others to learn: nothing to leave as it is)
        self._refined_newborn = k if others is not None and others.count >= 1 else None

    def _learn_held(self, rows: list[list[float]]) -> None:
        """Learn held rows as ordinary points (nothing is held meanwhile)."""
        if not rows:
            return
        watching, self._watching = self._watching, False
        try:
            X = np.array(rows)
            self.apply_statistics(self.expected_statistics(X), X)
        finally:
            if watching:
                self._refresh_watching()

    def _after_holding(self) -> None:
        """A birth if one is due; held points that waited too long are learned."""
        self._birth_if_due(self.n_samples_seen)
        expired = self._held.take_expired(self.n_samples_seen)
        if not self._watching:
            expired += self._held.take_all()
        if expired:
            self._sync()
            self._learn_held(expired)
            self._refresh_watching()

    def _free_slot(self) -> bool:
        return self.adaptive and self._stats is not None and bool((self._stats.s0 == 0.0).any())

    def _watches(self) -> bool:
        """Whether novel points are held back: always, once an adaptive model has statistics. A
        birth due with every slot in use takes the slot of a stale component when the model
        forgets (`moves.stale_component`), or else the slot a merge frees, unless learning the held
        points as they are costs less (`moves.best_reduction`). A held point waits at most
        `novelty.HOLD_POINTS` points to be learned: a jump leaves its old component without
        points, which goes stale and is replaced, rather than dragged (measured: learning the
        first few hundred points of a new cluster widened the nearest component over it, and no
        birth came)."""
        return self.adaptive and self._stats is not None

    def _refresh_watching(self) -> None:
        """Whether points are tested for novelty (`_watches`), and whether learned points go to the
        split test's window (while a slot is free), as the structure now is."""
        self._watching = self._watches()
        self._splitting = self._free_slot()
        self._threshold = self._novelty_threshold() if self._watching else math.inf

    def _birth(self, rows: np.ndarray) -> int:
        """A new component from the held rows, in the lowest free slot (which it returns)."""
        self._sync()
        k = int(np.flatnonzero(self._stats.s0 == 0.0)[0])
        pooled = moves.pooled_covariance(self._params)
        share = min(0.5, len(rows) * steps.point_step(self._t + 1, steps.RECENCY_ALPHA, self.halflife))
        self._recency = moves.born_shares(self._recency, k, share)
        self._t += len(rows)
        self._born[k] = self._t
        self._moves["births"] += 1
        self._apply(moves.birth, k, rows, pooled)
        self._average_begins(k)
        return k

    @property
    def _params(self) -> MixtureParameters | None:
        """The iterate's parameters for E-steps (`_e_step_parameters`), derived when first read
        after the statistics changed: a run of one-point calls that the engine takes over next
        (after a row with a missing value, say) never needs them."""
        params = self._iterate_parameters
        if params is _STALE:
            params = self._iterate_parameters = self._e_step_parameters()
        return params

    @_params.setter
    def _params(self, value) -> None:
        self._iterate_parameters = value

    def _e_step_parameters(self, stats: SufficientStatistics | None = None,
                           recency: np.ndarray | None = None) -> MixtureParameters:
        """The iterate's parameters with the E-step's prior weights (of the model's statistics
        and recency masses, or of those given)."""
        stats = self._stats if stats is None else stats
        recency = self._recency if recency is None else recency
        params = stats.to_parameters(self.reg_covar)
        return dataclasses.replace(params, weights=steps.prior_weights(recency, params.weights))

    def _structure_changed(self) -> None:
        self._params = _STALE  # (derived when next read)
        self._reported = None
        self._refresh_watching()

    def _check_structure(self) -> None:
        """Every `moves.check_spacing` points: prune the components whose weight has fallen under the
        floor, then merge the pair that one Gaussian explains best, if it explains it well enough
        (see `online_em.moves`), and again while a pair qualifies (each judged on the parameters
        after the merges before it: a short stream whose warm-up over-split it has few checks)."""
        self._sync()
        self._since_check = 0
        self._check_spacing = moves.check_spacing(self._t, self.halflife)
        stats, t = self._stats, self._t
        weights = stats.s0 / stats.s0.sum()
        live = np.flatnonzero(weights > 0)
        floor = self.prune_weight if self.prune_weight is not None else min(0.01, 0.1 / self.n_components)
        for k in live:
            if len(live) > 1 and weights[k] < floor and t - self._born[k] >= moves.PRUNE_AGE:
                self._prune(int(k))
                live = live[live != k]
        merged = False
        while len(live) > 1:
            pair = moves.best_merge(self._params, stats.s0 * stats.count, self._born, t)
            if pair is None:
                break
            self._merge(*pair)
            stats, merged = self._stats, True
            live = live[live != pair[1]]
        if merged:
            self._learn_explained_held()  # the merged component is wider than either

    def _merge(self, keep: int, drop: int) -> None:
        self._recency = moves.merged_shares(self._recency, keep, drop)
        self._born[drop] = -1
        self._moves["merges"] += 1
        self._apply(moves.merge, keep, drop)

    def _add_to_window(self, rows: list[list[float]]) -> None:
        """Points just learned (complete, in order) join the split window while a slot is free; at
        SPLIT_EVERY, the test."""
        if not self._splitting:
            return
        window = self._window
        window.extend(rows)
        if len(window) > splits.WINDOW_LIMIT:
            del window[: len(window) - splits.WINDOW_LIMIT]
        if len(window) >= splits.SPLIT_EVERY:
            self._split_if_due()

    def _split_if_due(self) -> None:
        """Test the window of learned points for a component that took in a second cluster, and
        split it into the free slot (see `online_em.splits`); the window starts again."""
        rows, self._window = self._window, []
        if not self._free_slot():  # (the model watches without one too)
            return
        rows = np.array(rows)
        if self._engine is not None:  # the live state, read without taking it back (the usual answer is no)
            stats, recency = self._engine_state()[:2]
            params = self._e_step_parameters(stats, recency)
        else:
            stats, params = self._stats, self._params
        new = int(np.flatnonzero(stats.s0 == 0.0)[0])
        eligible = (stats.s0 > 0.0) & (self._t - self._born >= splits.SPLIT_AGE)
        found = splits.find_split(stats, params, rows, eligible, new, self.alpha, self.halflife)
        if found is None:
            return
        self._sync()
        self._recency = splits.split_shares(self._recency, found.k, found.new)
        self._born[found.new] = self._t
        self._moves["splits"] += 1
        self._apply(splits.split, found.k, found.new, found.moved, found.kept, found.born)
        self._average_begins(found.k, found.new)  # both took new moments

    def _prune(self, k: int) -> None:
        self._recency = moves.pruned_shares(self._recency, k)
        self._born[k] = -1
        self._moves["prunes"] += 1
        self._apply(moves.prune, k)

    def _average_begins(self, *components: int) -> None:
        """These components' Polyak averages begin now: each averages its own iterates from its
        birth. One born late in a long average would otherwise keep mostly its first moments
        (measured: 30,000 points of N(20, 5^2), then 5,000 of N(40, 5^2), its sd ended 5.28)."""
        for k in components:
            self._average_from[k] = self._n_averaged + self._pending_average

    def _apply(self, move, *arguments) -> None:
        """A move of `online_em.moves` on the iterate and the Polyak average alike (the average
        counted as the iterate, so that a birth takes the same share of both); the weights
        reported and the parameters follow."""
        if self._average is not None:
            self._average.count = self._stats.count
            self._average = move(self._average, *arguments)
        self._stats = move(self._stats, *arguments)
        if self._average is not None:
            self._average_weights = self._stats.s0 / self._stats.s0.sum()
        self._structure_changed()

    def expected_statistics(self, X: np.ndarray) -> SufficientStatistics:
        """E-step: the summed sufficient statistics of the rows of X under the current iterate.

        They are additive, so the statistics of partitions can be computed anywhere (with
        `parameters_for_e_step`) and merged before `apply_statistics`. NaN is a missing value
        (`online_em.missing.expected_statistics`).
        """
        self._sync()
        if self._stats is None:
            raise ValueError("the model is not initialised yet: learn at least warm_up points first")
        return missing.expected_statistics(self._params, X)

    @property
    def parameters_for_e_step(self) -> MixtureParameters:
        """The current iterate's parameters, which E-steps use (a small picklable object whose
        `expected_statistics(X)` gives what `apply_statistics` takes; for rows with missing
        values, `online_em.missing.expected_statistics(params, X)`)."""
        self._sync()
        if self._params is None:
            raise ValueError("the model is not initialised yet: learn at least warm_up points first")
        return self._params

    def apply_statistics(self, batch: SufficientStatistics, X: np.ndarray | None = None) -> None:
        """M-step: blend the summed statistics of `batch.count` points into the running ones,
        with the combined step of that many points; then refresh the parameters (and, with
        points held back as novel, a birth if one is due, or the learning of those held too long).

        X, when given, holds the batch's complete points learned (or its last ones, in order): a
        collapsed component may be re-seeded on them, and while a slot is free, they are the
        window a split is tested on (`online_em.splits`).
        """
        self._sync()
        # (a move below may change it; a one-point row is in the window already: not watching)
        windowed = self._watching and self._splitting and X is not None and len(X) > 0
        if self._refined_newborn is not None:  # the batch a newborn was just refined on
            batch = moves.reshaped(batch, self._refined_newborn, self._stats)
            self._refined_newborn = None
        end = self.n_samples_seen + int(round(batch.count))
        if self._watching and self._held and self._held.expiring(end):
            # held points whose wait ends within the batch are learned with it (one M-step)
            batch = batch.merge(self.expected_statistics(np.array(self._held.take_expired(end))))
        m = int(round(batch.count))
        if m < 1:
            return
        gamma = steps.batch_step(self._t, m, steps.RECENCY_ALPHA, self.halflife)
        self._recency *= 1.0 - gamma
        self._recency += (gamma / batch.count) * batch.s0
        self._stats.learn(batch, self.alpha, self.halflife)
        self._t += m
        self._since_check += m
        self._params = _STALE  # (derived when next read)
        if self._average is None:
            self._reported = None  # the iterate is what is reported
        self._accumulate_average(m)
        self._repair(X)
        if self.adaptive and self._since_check >= self._check_spacing:
            self._check_structure()
        if windowed and self._splitting:
            self._add_to_window(X.tolist())
        if self._watching and self._held:
            self._after_holding()

    def _accumulate_average(self, m: int) -> None:
        """Polyak averaging: from `average_after` points on, the average takes in the iterate
        (weighted by the points since it last did) every `stats.average_every` points or more."""
        start = self._average_start
        if start is None or self._t < start:
            return
        if self._average is None:
            self._average = self._stats.copy()
            self._n_averaged, self._pending_average = m, 0
            self._average_from[:] = 0
        else:
            self._pending_average += m
            if self._pending_average < average_every(len(self._features)):
                return
            taken, self._pending_average = self._pending_average, 0
            self._n_averaged += taken
            average, stats = self._average, self._stats
            if stats.covariance_type == "tied":  # one second moment for all: on the clock of all the points
                shares = np.full(len(stats.s0), steps.average_share(taken, self._n_averaged, self.halflife))
                second = shares[0]
            else:
                shares = steps.average_shares(taken, self._n_averaged - self._average_from, self.halflife)
                second = shares.reshape((-1,) + (1,) * (stats.s2.ndim - 1))
            average.s0 += shares * (stats.s0 - average.s0)
            average.s1 += shares[:, None] * (stats.s1 - average.s1)
            average.s2 += second * (stats.s2 - average.s2)
        self._average_weights = self._stats.s0 / self._stats.s0.sum()
        self._reported = None

    def _repair(self, X: np.ndarray | None = None) -> None:
        """Re-seed every component whose weight collapsed: on the worst-explained rows of X (one
        E-step for all of them, a different row each while there are enough), or without data,
        one standard deviation away from the heaviest component's mean (a split)."""
        stats = self._stats
        if stats.s0.min() >= COLLAPSE_WEIGHT * stats.s0.sum():  # the usual case, in two calls
            return
        weights = stats.s0 / stats.s0.sum()
        dead = np.flatnonzero(~(weights >= COLLAPSE_WEIGHT))
        if self.adaptive:  # inactive components stay so; collapsed ones are pruned
            collapsed = dead[weights[dead] > 0] if np.count_nonzero(weights) > 1 else dead[:0]
            for k in collapsed:
                self._prune(int(k))
            return
        if len(dead) == 0:
            return
        params = self._params
        if X is not None and len(X):
            worst_first = np.argsort(params.log_responsibilities(X)[1], kind="stable")
            points = [X[worst_first[j % len(X)]] for j in range(len(dead))]
        else:
            heaviest = int(np.argmax(params.weights))
            spread = np.sqrt(params.variances()[heaviest])
            points = [
                params.means[heaviest] + self._rng.choice([-1.0, 1.0], size=self.n_features_in_) * spread
                for _ in dead
            ]
        for k, point in zip(dead, points):
            self._reseed(int(k), point, params)
        if self._average is not None:
            self._average_weights = self._stats.s0 / self._stats.s0.sum()
        self._params = _STALE  # (derived when next read)
        self._reported = None

    def _reseed(self, k: int, point: np.ndarray, params: MixtureParameters) -> None:
        """Give component k a fresh start at `point`, with the average spread of the others
        (under `params`); the caller refreshes the parameters."""
        self._n_reseeds += 1
        share = 1.0 / (10.0 * self.n_components)
        self._recency *= 1.0 - share
        self._recency[k] = share
        alive = np.arange(self.n_components) != k
        cov_type = self.covariance_type
        if cov_type == "tied":
            spread = params.covariances
        else:
            spread = np.average(params.covariances[alive], axis=0, weights=params.weights[alive] + 1e-300)
        for stats in filter(None, (self._stats, self._average)):
            total = stats.s0.sum()
            stats.s0 *= 1.0 - share
            stats.s1 *= 1.0 - share
            d = point - stats.shift
            mass = share * total
            stats.s0[k] = mass
            stats.s1[k] = mass * d
            if cov_type == "tied":  # s2 is the total scatter: add that of the new component's mass
                stats.s2 *= 1.0 - share
                stats.s2 += mass * (spread + np.outer(d, d))
            elif cov_type == "full":
                stats.s2 *= 1.0 - share
                stats.s2[k] = mass * (spread + np.outer(d, d))
            elif cov_type == "diag":
                stats.s2 *= 1.0 - share
                stats.s2[k] = mass * (spread + d * d)
            elif cov_type == "spherical":
                stats.s2 *= 1.0 - share
                stats.s2[k] = mass * (spread * len(d) + d @ d)

    # ------------------------------------------------------------------ persistence

    def get_state(self) -> ModelState:
        """Everything the model has learned (its hyper-parameters apart), as plain values and
        arrays: what `online_em.persistence` writes. A copy: later learning leaves it unchanged."""
        self._sync()
        return ModelState(
            features=None if self._features is None else list(self._features),
            buffer=[list(row) for row in self._buffer],
            stats=None if self._stats is None else self._stats.copy(),
            average=None if self._average is None else self._average.copy(),
            average_weights=None if self._average_weights is None else self._average_weights.copy(),
            n_averaged=int(self._n_averaged),
            average_from=self._average_from.tolist(),
            pending_average=int(self._pending_average),
            t=int(self._t),
            n_reseeds=int(self._n_reseeds),
            rng_state=self._rng.bit_generator.state,
            recency=None if self._recency is None else self._recency.copy(),
            born=self._born.tolist(),
            held=[(t, list(row)) for t, row in self._held.items],
            window=[list(row) for row in self._window],
            since_check=int(self._since_check),
            moves=dict(self._moves),
            n_skipped=int(self._n_skipped),
        )

    def set_state(self, state: ModelState) -> None:
        """Continue from `state` (from `get_state`, or checked by `online_em.persistence`); the
        parameters are recovered from its statistics, and ValueError or LinAlgError say when
        they cannot be."""
        rng = np.random.default_rng()
        rng.bit_generator.state = state.rng_state
        self._features = None if state.features is None else list(state.features)
        self._buffer = [list(row) for row in state.buffer]
        self._stats, self._average, self._average_weights = state.stats, state.average, state.average_weights
        self._n_averaged, self._pending_average = state.n_averaged, state.pending_average
        self._average_from = np.zeros(self.n_components, dtype=np.int64)
        if state.average_from is not None:
            self._average_from[:] = state.average_from
        self._t, self._n_reseeds, self._rng = state.t, state.n_reseeds, rng
        self._n_skipped = state.n_skipped
        if state.stats is not None and state.recency is None:
            raise ValueError("statistics without recency masses")
        self._recency = None if state.recency is None else np.array(state.recency, dtype=np.float64)
        if len(state.born) == self.n_components:
            self._born = np.array(state.born, dtype=np.int64)
        else:  # every active component as old as the statistics
            live = state.stats.s0 > 0 if state.stats is not None else np.zeros(self.n_components, dtype=bool)
            self._born = np.where(live, state.t, -1).astype(np.int64)
        self._held = novelty.HeldPoints(state.held)
        self._window = [list(row) for row in state.window]
        self._since_check = state.since_check
        self._check_spacing = moves.check_spacing(state.t - state.since_check, self.halflife)
        self._moves = {"births": 0, "merges": 0, "prunes": 0, "splits": 0}
        self._moves.update(state.moves)  # (files before splits have none)
        self._engine, self._slots, self._fits = None, None, None
        self._params = _STALE if state.stats is not None else None
        self._reported = None
        self._refresh_watching()

    def save(self, path) -> None:
        """Write the model to `path` as versioned JSON, atomically (see `online_em.persistence`)."""
        from . import persistence

        persistence.save(self, path)

    @classmethod
    def load(cls, path) -> OnlineGaussianMixture:
        """Read a model written by `save`; never unpickles."""
        from . import persistence

        return persistence.load(path)

    # ------------------------------------------------------------------ parameters

    @property
    def _parameters(self) -> MixtureParameters:
        """The parameters reported and predicted with (the Polyak average once it has begun)."""
        self._sync()
        if self._reported is None:
            if self._stats is None:
                self._reported = (
                    self._warm_up_fits().reported(self._buffer) if self._buffer
                    else self._nothing_learned(self.n_features_in_)
                )
            elif self._average is not None:
                # The weights are the iterate's: exact shares of all points, nothing to average.
                self._reported = dataclasses.replace(
                    self._average.to_parameters(self.reg_covar), weights=self._average_weights)
            else:  # the iterate, with its exact weights (its E-step uses the prior ones)
                self._reported = self._stats.to_parameters(self.reg_covar)
        return self._reported

    def _labelling_parameters(self) -> MixtureParameters:
        """The parameters one-point calls label with: during the warm-up the latest labelling
        fit of the buffer (cheaper than refitting every point at each call), else those reported."""
        if self._stats is None and self._buffer:
            return self._warm_up_fits().labelling(self._buffer)
        return self._parameters

    def _nothing_learned(self, n_features: int) -> MixtureParameters:
        """Before any point: every component a standard normal, with equal weights."""
        return warmup.single_gaussian(np.zeros((0, n_features)), self.n_components, self.covariance_type, self.reg_covar)

    @property
    def n_samples_seen(self) -> int:
        """Points seen: learned, or held back as novel (to be learned by a birth or later)."""
        return (self._engine.t if self._engine is not None else self._t) + len(self._held)

    @property
    def n_samples_skipped(self) -> int:
        """Points skipped because none of their features was observed (never learned)."""
        return self._n_skipped

    @property
    def is_initialised(self) -> bool:
        return self._stats is not None

    @property
    def warm_up_remaining(self) -> int:
        """How many more points the model buffers before its initial fit (0 once initialised)."""
        return 0 if self._stats is not None else self.warm_up_size - len(self._buffer)

    @property
    def n_active_components_(self) -> int:
        """How many components are live (weight above 0); the others are free slots."""
        return int(np.count_nonzero(self._parameters.weights))

    @property
    def moves_(self) -> dict[str, int]:
        """How many births, merges and prunes the model has made."""
        return dict(self._moves)

    @property
    def weights_(self) -> np.ndarray:
        return self._parameters.weights.copy()

    @property
    def variances_(self) -> np.ndarray:
        """Each component's variance along each feature, shape (n_components, n_features)."""
        return self._parameters.variances()

    @property
    def means_(self) -> np.ndarray:
        return self._parameters.means.copy()

    @property
    def covariances_(self) -> np.ndarray:
        return self._parameters.covariances.copy()

    @property
    def precisions_cholesky_(self) -> np.ndarray:
        return self._parameters.precisions_cholesky.copy()

    @property
    def n_features_in_(self) -> int:
        """Number of features the model reads (0 before it has seen any)."""
        return len(self._features or [])

    @property
    def n_features_in(self) -> int:
        """Deprecated alias of `n_features_in_` (scikit-learn's spelling)."""
        import warnings

        warnings.warn("n_features_in is deprecated; use n_features_in_", DeprecationWarning, stacklevel=2)
        return self.n_features_in_

    @property
    def feature_names_in_(self) -> list:
        return list(self._features or [])

    @property
    def centers(self) -> dict[int, dict]:
        """``{component: {feature: mean}}`` of the components `predict_one` labels with, as River's
        clusterers report them: during the warm-up, those of its labelling fit (refreshed each time
        the buffer grows by a quarter; `means_` is the fit of every point), so that River's
        clustering metrics, which read `centers` after every point with the label `predict_one`
        gave, pair each label with its own fit's centres and do not refit the whole buffer at each
        point (measured: 1,500 points of 3 blobs in 3-D, `evaluate.progressive_val_score` with
        `metrics.Silhouette`, 18.7 s with the reported fit); afterwards the reported means."""
        means = self._labelling_parameters().means
        features = self._features or []
        return {k: dict(zip(features, map(float, means[k]))) for k in range(self.n_components)}

    # ------------------------------------------------------------------ inference

    def _weighted_log_prob_one(self, x: dict) -> np.ndarray:
        if self._features is None:  # nothing learned yet: a standard normal in x's dimensions
            values = [v for v in map(validation.value_or_missing, x.values()) if v == v]
            return np.full(self.n_components, -0.5 * len(values) * math.log(2 * math.pi) - 0.5 * sum(
                v * v for v in values) - math.log(self.n_components))
        row = self._row(x)
        if self._engine is not None and _complete(row):
            values = self._engine.weighted_log_probs(row)
            if self._slots is None:
                return np.array(values)
            return _scattered(np.full(self.n_components, -math.inf), self._slots, values)
        X = np.array([row])
        self._check_finite(X)
        return missing.weighted_log_prob(self._labelling_parameters(), X)[0]

    def predict_one(self, x: dict) -> int:
        """The most probable component of x (by the marginal density of its observed features,
        if some are missing; by the weights alone if none is observed)."""
        engine = self._engine
        if engine is not None:  # the hot path: a plain point
            row = validation.plain_row(x, self._features)
            if row is not None:
                return engine.predict(row) if self._slots is None else self._slots[engine.predict(row)]
        return int(np.argmax(self._weighted_log_prob_one(x)))

    def predict_proba_one(self, x: dict) -> dict[int, float]:
        """The posterior probability of each component given x."""
        wlp = self._weighted_log_prob_one(x)
        proba = np.exp(wlp - wlp.max()) if np.isfinite(wlp.max()) else np.ones_like(wlp)
        proba /= proba.sum()
        return dict(enumerate(proba.tolist()))

    def score_one(self, x: dict) -> float:
        """The log density of x under the mixture: of its observed features, if some are missing
        (0, the log of probability one, if none is observed)."""
        wlp = self._weighted_log_prob_one(x)
        top = wlp.max()
        if not np.isfinite(top):
            return float(top)
        return float(top + np.log(np.exp(wlp - top).sum()))

    def _inference_matrix(self, X: typing.Any) -> tuple[np.ndarray, typing.Any, MixtureParameters]:
        """X as a checked float matrix in feature order, its index, and the parameters to infer
        with: before anything is learned (no features yet), X is read as it comes and every
        component is a standard normal, as `predict_one` answers then."""
        if self._features is None:
            try:
                matrix, index = self._matrix(X)
            finally:
                self._features = None  # inference never fixes the features
            self._check_finite(matrix)
            return matrix, index, self._nothing_learned(matrix.shape[1])
        matrix, index = self._matrix(X)
        self._check_finite(matrix)
        return matrix, index, self._parameters

    def _many(self, X: typing.Any) -> tuple[np.ndarray, np.ndarray, typing.Any]:
        matrix, index, params = self._inference_matrix(X)
        log_resp, log_norm = missing.log_responsibilities(params, matrix)
        return log_resp, log_norm, index

    def predict_many(self, X: typing.Any):
        """The most probable component of each row: a pandas Series for a DataFrame, else an array."""
        matrix, index, params = self._inference_matrix(X)
        return _like(_labels(params, matrix), index)

    def learn_predict_many(self, X: typing.Any):
        """Predict the component of each row, then learn the rows: `learn_predict_one` for a
        mini-batch (the labeler's step), reading and checking X once.

        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> X = np.concatenate([rng.normal(0, 1, (300, 1)), rng.normal(10, 1, (300, 1))])
        >>> model = OnlineGaussianMixture(n_components=2, warm_up=100, seed=0)
        >>> labels = model.learn_predict_many(rng.permutation(X))
        >>> sorted(np.bincount(model.learn_predict_many(X)).tolist())
        [300, 300]

        """
        matrix, index = self._matrix(X, learning=True)
        self._check_finite(matrix)
        self._sync()
        # During the warm-up a block is learned first, then labelled by the fit that includes it
        # (the labels of a fresh labeler's first block come from that block).
        warming_up = self._stats is None
        if warming_up:
            self._learn_matrix(matrix)
        labels = _labels(self._parameters, matrix) if len(matrix) else np.zeros(0, dtype=np.intp)
        if not warming_up:
            self._learn_matrix(matrix)
        return _like(labels, index)

    def predict_proba_many(self, X: typing.Any):
        """Posterior probabilities, one column per component."""
        log_resp, _, index = self._many(X)
        proba = np.exp(log_resp)
        proba /= proba.sum(axis=1, keepdims=True)  # exact sums where the log densities are huge
        if index is None:
            return proba
        import pandas as pd

        return pd.DataFrame(proba, index=index, columns=range(self.n_components))

    def score_many(self, X: typing.Any):
        """The log density of each row."""
        _, log_norm, index = self._many(X)
        return _like(log_norm, index)


@dataclasses.dataclass
class ModelState:
    """What an `OnlineGaussianMixture` has learned: its features, the warm-up buffer (rows), the
    running statistics and their Polyak average (None before they exist), the averaging
    bookkeeping, the step counter t (points learned), re-seeds, the generator's state, the
    recency masses (the E-step's prior weights), and the structural moves' state: when each
    component became active (-1: inactive), the novel points held back (position, row), points
    since the last check, and the moves made."""

    features: list | None
    buffer: list
    stats: SufficientStatistics | None
    average: SufficientStatistics | None
    average_weights: np.ndarray | None
    n_averaged: int
    pending_average: int
    t: int
    n_reseeds: int
    rng_state: dict
    recency: np.ndarray | None = None
    born: list = dataclasses.field(default_factory=list)
    held: list = dataclasses.field(default_factory=list)
    since_check: int = 0
    moves: dict = dataclasses.field(default_factory=lambda: {"births": 0, "merges": 0, "prunes": 0, "splits": 0})
    window: list = dataclasses.field(default_factory=list)  # the points learned since the split test
    average_from: list | None = None  # where each component's average began (None: with the average)
    n_skipped: int = 0  # points with nothing observed, not learned


def _labels(params: MixtureParameters, matrix: np.ndarray) -> np.ndarray:
    """Argmax of the weighted log densities (of the observed features): no normalisation needed."""
    return missing.weighted_log_prob(params, matrix).argmax(axis=1)


def _scattered(template: np.ndarray, slots: list[int], values) -> np.ndarray:
    """A copy of `template` with `values` at `slots`."""
    out = np.array(template, dtype=np.float64)
    out[slots] = values
    return out


def _complete(row: list[float]) -> bool:
    """Whether a row has no missing value (nor an infinity): one sum, cheap on the hot path."""
    total = sum(row)
    return total - total == 0.0


def _like(values: np.ndarray, index: typing.Any):
    if index is None:
        return values
    import pandas as pd

    return pd.Series(values, index=index)
