"""`GaussianMixtureScorer`: a River anomaly detector whose scores are the mixture's own tail
probabilities."""

from __future__ import annotations

import typing

import numpy as np
from river import base

from .calibration import TailTable, draw
from .model import OnlineGaussianMixture
from .prior import DEFAULT_COUNT

__all__ = ["GaussianMixtureScorer", "MODEL_PARAMETERS", "NEUTRAL_SCORE"]

# The hyper-parameters the scorer passes on to its `OnlineGaussianMixture`.
MODEL_PARAMETERS = ("n_components", "covariance_type", "alpha", "warm_up", "reg_covar", "average_after",
                    "covariance_prior", "n_init", "init_max_iter", "adaptive", "prune_weight", "novelty_level",
                    "halflife", "seed")
# The score before the model can tell anything (during the grace period), as River's own detectors
# answer then (GaussianScorer's grace period, HalfSpaceTrees' first window): a threshold never
# flags it, and QuantileFilter reads a zero quantile as no threshold yet, so a protected scorer
# learns every point of its grace period. (A constant 0.5 was measured to lock QuantileFilter:
# 0.5 >= its quantile of 0.5 flags the first point, which is then never learned, and so on.)
NEUTRAL_SCORE = 0.0
# The default grace period is at least this many points. Measured on 2-D blobs and the 1-D
# tutorial (6 seeds each): fits of 4 to 20 points flagged 6-44% of clean points at 0.99, fits
# of 20 to 50 points 0-10%, of 50 to 300 points 0-6%, about 1% from then on.
MIN_GRACE = 20
# A new calibration sample is drawn when the points learned have grown by 1/growth since the last
# one (and at least every `refresh_every` points). During the warm-up every draw costs a batch fit
# of the buffer; in the stream the reported parameters move with every step (a stream resumed at
# 2,400 points from a 1,250-point-old draw was 0.018 off on average with a growth of 1/4).
WARM_UP_GROWTH = 4
STREAM_GROWTH = 32


def _check_count(name: str, value: typing.Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _model_parameters(source) -> dict:
    """The mixture's hyper-parameters, read from a scorer or a model."""
    return {name: getattr(source, name) for name in MODEL_PARAMETERS}


class GaussianMixtureScorer(base.AnomalyDetector):
    """Anomaly scores from an online Gaussian mixture, calibrated as tail probabilities.

    The scorer learns an `OnlineGaussianMixture` (built from the same parameters) and scores a
    point by the share of the mixture's own mass that is denser than the point:

        score(x) = P_{y ~ model}(log p(y) > log p(x)),

    estimated from a sample of `sample_size` points drawn from the current mixture (see
    `online_em.calibration`). Scores lie in [0, 1], high for anomalies, and are calibrated: on a
    stream the mixture describes they are uniform, so a threshold of 0.99 flags 1% of the points
    (River's `anomaly.ThresholdFilter(scorer, threshold=0.99)`), whatever the data's scale and
    dimension. The sample is drawn again (from a generator seeded by `seed` and the number of
    points learned) after every `refresh_every` learned points, and more often while the model
    changes fast: during the warm-up when the points learned have grown by a quarter (each draw
    then costs a batch fit of the buffer, as the model's own refreshed fits do), and in the
    stream when they have grown by 1/32 (the parameters move with every step), and after every
    structural move of the model (`moves_`: a birth or merge changes the mixture at once); each refresh
    costs one `score_many` of the sample, so its cost per point is about `sample_size /
    refresh_every` vectorised log densities.

    During the warm-up the mixture is a batch fit of the points seen so far, which the scorer
    samples in the same way. Fits of a handful of points are over-confident, so during a grace
    period (`grace_period` points learned) every score is `NEUTRAL_SCORE`, 0.0, as River's
    detectors score during theirs: never flagged, by a threshold or by `QuantileFilter`.

    The defaults differ from the clusterer's for robustness: 3 diagonal components, and steps that
    forget faster (alpha 0.6 rather than the clusterer's 0.75; against 0.8, on Shuttle the worst of 3 seeds was 0.976 against
    0.920, the mean 0.980 against 0.955, with births, merges and prunes on). Scores are
    high where the density is low, so a component that grows tight on a group of anomalies
    hides them, and the more freedom the mixture has, the more it does so. Measured on River's
    Shuttle (7.2% anomalies, 3 seeds, test-then-train ROC AUC): 3 diagonal components 0.983 mean,
    0.978 worst; 3 full ones 0.945, 0.900 (a prototype's full K=3 fell to 0.27 in one seed); 4, 5
    or 8 diagonal ones fell to 0.79, 0.84 and 0.78 in one seed of three (River's 10-threshold
    ROCAUC, which reads a little low); HalfSpaceTrees 0.949, 0.923 (see section 9 of
    ``benchmarks/RESULTS.md``).

    Parameters
    ----------
    n_components, covariance_type, alpha, warm_up, reg_covar, average_after, covariance_prior, n_init, init_max_iter, adaptive, prune_weight, novelty_level, halflife, seed
        Those of `OnlineGaussianMixture` (``halflife`` for a drifting stream: what is normal
        then drifts too).
    sample_size
        Points drawn from the mixture for each calibration.
    refresh_every
        At most this many points are learned between two calibrations.
    grace_period
        Points learned before the scores mean anything; ``None``: ``n_components * (D + 1)``
        for D features, and at least 20.

    Attributes
    ----------
    model : OnlineGaussianMixture
        The mixture, which can be saved (`save`) and reused; a scorer built on a loaded model
        (`from_model`) draws its calibration sample again.

    Examples
    --------

    Three blobs, with 1% of the points spread uniformly over a wider square; each point is
    scored before it is learned (test, then train):

    >>> import numpy as np
    >>> from river import metrics
    >>> from online_em import GaussianMixtureScorer

    >>> rng = np.random.default_rng(3)
    >>> centres = np.array([[0.0, 0.0], [8.0, 0.0], [4.0, 7.0]])
    >>> is_outlier = rng.random(6000) < 0.01
    >>> X = np.where(is_outlier[:, None], rng.uniform(-10, 18, (6000, 2)),
    ...              centres[rng.integers(3, size=6000)] + rng.normal(size=(6000, 2)))

    >>> scorer = GaussianMixtureScorer(seed=1)
    >>> auc, flagged = metrics.ROCAUC(n_thresholds=100), []
    >>> for (a, b), y in zip(X, is_outlier):
    ...     x = {"a": a, "b": b}
    ...     score = scorer.score_one(x)
    ...     auc.update(bool(y), score)
    ...     flagged.append(score >= 0.99)
    ...     scorer.learn_one(x)
    >>> round(float(auc.get()), 2)
    0.97
    >>> flagged = np.array(flagged)  # over 0.99: most outliers, under 1% of the inliers
    >>> bool(flagged[is_outlier].mean() > 0.8), bool(flagged[~is_outlier].mean() < 0.01)
    (True, True)
    >>> round(scorer.score_one({"a": 0.0, "b": 0.0}), 2), round(scorer.score_one({"a": 4.0, "b": 3.5}), 2)
    (0.02, 0.98)

    """

    def __init__(
        self,
        n_components: int = 3,
        covariance_type: str = "diag",
        alpha: float = 0.6,
        warm_up: int | None = None,
        reg_covar: float = 1e-6,
        average_after: int | None = 2000,
        covariance_prior: float | str = DEFAULT_COUNT,
        n_init: int = 3,
        init_max_iter: int = 100,
        adaptive: bool = True,
        prune_weight: float | None = None,
        novelty_level: float = 0.999,
        halflife: float | None = None,
        sample_size: int = 4096,
        refresh_every: int = 1000,
        grace_period: int | None = None,
        seed: int | None = None,
    ):
        for name, value in dict(locals()).items():  # River reads each parameter under its own name
            if name != "self":
                setattr(self, name, value)
        _check_count("sample_size", sample_size, 20)
        _check_count("refresh_every", refresh_every, 1)
        if grace_period is not None:
            _check_count("grace_period", grace_period, 0)
        self.model = OnlineGaussianMixture(**_model_parameters(self))
        self._table: TailTable | None = None
        self._calibrated_at = -1  # points learned when the table was drawn
        self._moves_calibrated = 0  # the model's structural moves then

    @classmethod
    def from_model(cls, model: OnlineGaussianMixture, **params: typing.Any) -> GaussianMixtureScorer:
        """A scorer on `model` as it is (a loaded one, say), with the model's hyper-parameters;
        `params` sets the scorer's own (`sample_size`, `refresh_every`, `grace_period`)."""
        scorer = cls(**_model_parameters(model), **params)
        scorer.model = model
        return scorer

    @classmethod
    def _unit_test_params(cls):
        yield {"seed": 42}
        yield {"n_components": 2, "covariance_type": "full", "warm_up": 20, "sample_size": 256, "seed": 1}

    def _unit_test_skips(self):
        """A mixture's features are fixed by its first point: it refuses points with other keys."""
        return {"check_emerging_features", "check_disappearing_features", "check_radically_disappearing_features"}

    # ------------------------------------------------------------------ River's API

    def learn_one(self, x: dict) -> None:
        """Update the mixture with one point."""
        self.model.learn_one(x)

    def score_one(self, x: dict) -> float:
        """The share of the mixture's mass denser than x, in [0, 1]: high for an anomaly."""
        return float(self.from_log_density(self.model.score_one(x)))

    def score_many(self, X: typing.Any) -> np.ndarray:
        """`score_one` of each row of a DataFrame or an (n, d) array, vectorised."""
        return self.from_log_density(np.asarray(self.model.score_many(X)))

    # ------------------------------------------------------------------ calibration

    def from_log_density(self, log_density):
        """The anomaly score of a point whose log density under the current mixture (as
        ``model.score_one`` gives it) is `log_density`, a number or an array of them: the share
        of the mixture's mass denser than that. A new calibration sample is drawn first when the
        last one is stale; during the grace period, every score is `NEUTRAL_SCORE`.

        >>> import numpy as np
        >>> scorer = GaussianMixtureScorer(n_components=1, seed=0)
        >>> float(scorer.from_log_density(-1.0))  # nothing learned yet
        0.0
        >>> for v in range(-50, 51):
        ...     scorer.learn_one({"v": v / 10})
        >>> scorer.from_log_density(scorer.model.score_many(np.array([[0.0], [-5.0], [20.0]]))).round(2).tolist()
        [0.0, 0.91, 1.0]

        """
        if self.model.n_samples_seen < self.grace_period_size:
            return np.full(np.shape(log_density), NEUTRAL_SCORE)
        self._calibrate()
        return self._table.tail(log_density)

    @property
    def grace_period_size(self) -> int:
        """Points learned before the scores are tail probabilities (`grace_period` resolved);
        never fewer than the model's first fit needs."""
        K = self.model.n_components
        if self.grace_period is not None:
            return max(self.grace_period, K + 1)
        return max(MIN_GRACE, K * (self.model.n_features_in_ + 1))

    def _stale(self, n: int) -> bool:
        if self._table is None or self._moves_calibrated != self._moves_made():
            return True  # (a structural move changes the mixture at once)
        done = self._calibrated_at
        growth = WARM_UP_GROWTH if not self.model.is_initialised else STREAM_GROWTH
        return n - done >= min(self.refresh_every, max(1, done // growth))

    def _calibrate(self) -> None:
        model = self.model
        n = model.n_samples_seen
        if not self._stale(n):
            return
        if not model.is_initialised:
            model = self._snapshot()
        rng = np.random.default_rng(None if self.seed is None else [self.seed, n])
        sample = draw(model.weights_, model.means_, model.covariances_, model.covariance_type,
                      self.sample_size, rng)
        self._table = TailTable(np.asarray(model.score_many(sample)))
        self._calibrated_at = n
        self._moves_calibrated = self._moves_made()

    def _moves_made(self) -> int:
        return sum(self.model.moves_.values())

    def _snapshot(self) -> OnlineGaussianMixture:
        """A copy of the model. During the warm-up, reading the model's parameters makes it fit its
        whole buffer, a fit its later one-point predictions would then use: the scorer reads a
        copy, so that scoring never changes what the model predicts."""
        copy = OnlineGaussianMixture(**_model_parameters(self.model))
        copy.set_state(self.model.get_state())
        return copy

    # ------------------------------------------------------------------ persistence

    def save(self, path) -> None:
        """Write the mixture to `path` (`OnlineGaussianMixture.save`); the calibration is drawn
        again from it after `load`."""
        self.model.save(path)

    @classmethod
    def load(cls, path, **params: typing.Any) -> GaussianMixtureScorer:
        """A scorer on the mixture saved in `path` (by `save` or ``online-em label --state``)."""
        return cls.from_model(OnlineGaussianMixture.load(path), **params)
