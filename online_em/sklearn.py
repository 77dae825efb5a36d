"""`MiniBatchGaussianMixture`: the online Gaussian mixture as a scikit-learn estimator with `partial_fit`.

The only module of the package that imports scikit-learn (``pip install -e ".[sklearn]"``). The
estimator delegates all of the statistics to `online_em.OnlineGaussianMixture`, through its public
API only; this module validates input the scikit-learn way and keeps scikit-learn's names.
"""

from __future__ import annotations

import inspect
import math
import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, DensityMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from .model import OnlineGaussianMixture

__all__ = ["MiniBatchGaussianMixture"]

# The model's own defaults, read from its public signature, so that the two stay in step.
_MODEL_DEFAULTS = {
    name: parameter.default
    for name, parameter in inspect.signature(OnlineGaussianMixture).parameters.items()
}
_FLOATS = [np.float64, np.float32]


class MiniBatchGaussianMixture(ClusterMixin, DensityMixin, BaseEstimator):
    """Gaussian mixture learned by online (stepwise) EM in mini-batches, with `partial_fit`.

    A scikit-learn face of `online_em.OnlineGaussianMixture`: `partial_fit` learns one
    mini-batch and continues from where the last call left off, so data that does not fit in
    memory, or arrives over time, is learned in one pass with no refit; `fit` starts afresh and
    makes up to `max_iter` passes over its data in shuffled mini-batches of `batch_size`. The
    fitted attributes and methods are those of `sklearn.mixture.GaussianMixture`.

    Parameters
    ----------
    n_components : int, default=2
        Number of mixture components.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
        As in `GaussianMixture`.
    reg_covar : float, default=1e-6
        Added to the diagonal of every covariance.
    batch_size : int, default=1024
        Size of the mini-batches `fit` learns (`partial_fit` learns the batch it is given).
    max_iter : int, default=10
        Maximum number of passes `fit` makes over its data.
    tol : float, default=1e-3
        `fit` stops when a pass changes `lower_bound_` by less than this.
    compute_labels : bool, default=True
        Whether `fit` sets `labels_` for its data, and `partial_fit` for its batch (one more
        E-step each).
    random_state : int, RandomState instance or None, default=None
        Seeds the model (initialisation and re-seeding), the order of `fit`'s passes and `sample`.
    alpha, warm_up, average_after, n_init, init_max_iter
        The model's own parameters, with its defaults (see `OnlineGaussianMixture`): the step-size
        decay, the points buffered for the initial batch fit, the points after which the
        reported parameters are averaged (Polyak), the k-means++ starts and the EM iterations of
        that fit. `fit` uses a `warm_up` of at most its number of samples, so a small data set is
        fitted in batch and then refined by the passes.
    halflife : float or None, default=None
        For `partial_fit` on a drifting stream: the model forgets with this half-life, in
        samples (see `OnlineGaussianMixture`); ``None``, a stationary stream.

    Attributes
    ----------
    weights_, means_, covariances_, precisions_, precisions_cholesky_ : ndarray
        The fitted mixture, in `GaussianMixture`'s shapes; float32 for float32 input.
    model_ : OnlineGaussianMixture
        The wrapped model; `partial_fit` continues it.
    labels_ : ndarray of shape (n_samples,)
        Labels of the data of the last `fit` or `partial_fit` (with `compute_labels`).
    lower_bound_ : float
        Mean log-likelihood of that data under the fitted mixture.
    lower_bounds_ : list of float
        `lower_bound_` after each pass of the last `fit` (a stream of `partial_fit` calls keeps
        no history).
    n_iter_ : int
        Passes made by `fit`, plus one for each `partial_fit` since.
    n_steps_ : int
        Mini-batches learned since the last reset.
    converged_ : bool
        Whether `fit`'s last pass changed `lower_bound_` by less than `tol` (False after
        `partial_fit`: a stream has no end to converge at).
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only for input with string column names, such as a DataFrame.

    Examples
    --------

    Two clusters, learned from a stream of chunks:

    >>> import numpy as np
    >>> from online_em.sklearn import MiniBatchGaussianMixture
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-5, 1, (3000, 2)), rng.normal(5, 1, (3000, 2))])
    >>> X = rng.permutation(X)
    >>> gmm = MiniBatchGaussianMixture(n_components=2, random_state=0)
    >>> for chunk in np.array_split(X, 6):
    ...     gmm = gmm.partial_fit(chunk)
    >>> gmm.means_[gmm.means_[:, 0].argsort()].round(0).tolist()
    [[-5.0, -5.0], [5.0, 5.0]]
    >>> gmm.weights_.round(1).tolist()
    [0.5, 0.5]
    >>> bool(gmm.predict([[-5.0, -5.0]])[0] != gmm.predict([[5.0, 5.0]])[0])
    True

    """

    def __init__(
        self,
        n_components=_MODEL_DEFAULTS["n_components"],
        *,
        covariance_type=_MODEL_DEFAULTS["covariance_type"],
        reg_covar=_MODEL_DEFAULTS["reg_covar"],
        batch_size=1024,
        max_iter=10,
        tol=1e-3,
        compute_labels=True,
        random_state=None,
        alpha=_MODEL_DEFAULTS["alpha"],
        warm_up=_MODEL_DEFAULTS["warm_up"],
        average_after=_MODEL_DEFAULTS["average_after"],
        n_init=_MODEL_DEFAULTS["n_init"],
        init_max_iter=_MODEL_DEFAULTS["init_max_iter"],
        halflife=_MODEL_DEFAULTS["halflife"],
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.tol = tol
        self.compute_labels = compute_labels
        self.random_state = random_state
        self.alpha = alpha
        self.warm_up = warm_up
        self.average_after = average_after
        self.n_init = n_init
        self.init_max_iter = init_max_iter
        self.halflife = halflife

    # ------------------------------------------------------------------ learning

    def _new_model(self, seed, warm_up):
        """A fresh model with this estimator's parameters (it validates them)."""
        return OnlineGaussianMixture(
            n_components=self.n_components,
            covariance_type=self.covariance_type,
            alpha=self.alpha,
            warm_up=warm_up,
            reg_covar=self.reg_covar,
            average_after=self.average_after,
            n_init=self.n_init,
            init_max_iter=self.init_max_iter,
            halflife=self.halflife,
            adaptive=False,  # exactly n_components, as GaussianMixture (and its bic/aic) count them
            seed=seed,
        )

    def _check_own_parameters(self):
        for name in ("batch_size", "max_iter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (isinstance(self.tol, numbers.Real) and self.tol >= 0):
            raise ValueError(f"tol must be a non-negative number, got {self.tol!r}")

    def _seed(self, rng):
        """The model's seed: random_state itself when it is an int, else drawn from it."""
        if self.random_state is None or isinstance(self.random_state, numbers.Integral):
            return self.random_state
        return int(rng.randint(np.iinfo(np.int32).max))

    def fit(self, X, y=None):
        """Learn a new mixture from X: up to `max_iter` shuffled passes in mini-batches.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : Ignored

        Returns
        -------
        self
        """
        X = validate_data(self, X, dtype=_FLOATS)
        self._check_own_parameters()
        n = X.shape[0]
        if isinstance(self.n_components, numbers.Integral) and n < self.n_components:
            raise ValueError(
                f"Expected n_samples >= n_components but got n_components = {self.n_components}, "
                f"n_samples = {n}"
            )
        rng = check_random_state(self.random_state)
        warm_up = min(self.warm_up, n) if isinstance(self.warm_up, numbers.Integral) else self.warm_up
        self.model_ = self._new_model(self._seed(rng), warm_up)
        self.n_steps_ = 0
        self.lower_bounds_ = []
        self.converged_ = False
        for self.n_iter_ in range(1, self.max_iter + 1):
            order = rng.permutation(n)
            for start in range(0, n, self.batch_size):
                self.model_.learn_many(X[order[start : start + self.batch_size]])
                self.n_steps_ += 1
            self.lower_bounds_.append(float(np.mean(self.model_.score_many(X))))
            if self.n_iter_ > 1 and abs(self.lower_bounds_[-1] - self.lower_bounds_[-2]) < self.tol:
                self.converged_ = True
                break
        if self.max_iter > 1 and not self.converged_:
            warnings.warn(
                f"{self.max_iter} passes did not change the lower bound by less than tol={self.tol}; "
                "try a larger max_iter or tol",
                ConvergenceWarning,
            )
        self.lower_bound_ = self.lower_bounds_[-1]
        self._publish(X)
        return self

    def partial_fit(self, X, y=None):
        """Learn one mini-batch X (array-like of shape (n_samples, n_features)) in one stepwise-EM
        update, continuing the current mixture (a new one on the first call, with `warm_up` as
        given: the model buffers that many points for its initial fit). y is ignored; returns self.
        """
        first = not hasattr(self, "model_")
        X = validate_data(self, X, dtype=_FLOATS, reset=first)
        if first:
            self._check_own_parameters()
            self.model_ = self._new_model(self._seed(check_random_state(self.random_state)), self.warm_up)
            self.n_iter_ = self.n_steps_ = 0
        self.model_.learn_many(X)
        self.n_iter_ += 1
        self.n_steps_ += 1
        self.converged_ = False
        self.lower_bound_ = float(np.mean(self.model_.score_many(X)))
        self._publish(X)
        return self

    def _publish(self, X):
        """Copy the model's fitted arrays into attributes, in X's float type."""
        model, dtype = self.model_, X.dtype
        self.weights_ = model.weights_.astype(dtype)
        self.means_ = model.means_.astype(dtype)
        self.covariances_ = model.covariances_.astype(dtype)
        self.precisions_cholesky_ = model.precisions_cholesky_.astype(dtype)
        chol = self.precisions_cholesky_
        if self.covariance_type == "full":
            self.precisions_ = chol @ np.swapaxes(chol, 1, 2)
        elif self.covariance_type == "tied":
            self.precisions_ = chol @ chol.T
        else:
            self.precisions_ = chol**2
        self.n_samples_seen_ = model.n_samples_seen
        if self.compute_labels:
            self.labels_ = self._predict(X)

    def fit_predict(self, X, y=None):
        """`fit(X)`, then the labels of X."""
        self.fit(X)
        return self.labels_ if self.compute_labels else self.predict(X)

    # ------------------------------------------------------------------ inference

    def _checked(self, X):
        check_is_fitted(self)
        return validate_data(self, X, dtype=_FLOATS, reset=False)

    def _predict(self, X):
        return np.asarray(self.model_.predict_many(X), dtype=np.int64)

    def predict(self, X):
        """The most probable component of each row of X."""
        return self._predict(self._checked(X))

    def predict_proba(self, X):
        """The posterior probability of each component for each row of X."""
        X = self._checked(X)
        return np.asarray(self.model_.predict_proba_many(X), dtype=X.dtype)

    def score_samples(self, X):
        """The log-likelihood of each row of X."""
        X = self._checked(X)
        return np.asarray(self.model_.score_many(X), dtype=X.dtype)

    def score(self, X, y=None):
        """The mean log-likelihood of the rows of X."""
        return float(np.mean(self.score_samples(X)))

    def _n_parameters(self):
        """The number of free parameters of the mixture, as `GaussianMixture` counts them."""
        k, d = self.means_.shape
        covariance = {
            "full": k * d * (d + 1) / 2.0,
            "diag": k * d,
            "tied": d * (d + 1) / 2.0,
            "spherical": k,
        }[self.covariance_type]
        return int(covariance + d * k + k - 1)

    def bic(self, X):
        """Bayesian information criterion of the fitted mixture on X (lower is better)."""
        n = _num_samples(X)
        return -2 * self.score(X) * n + self._n_parameters() * math.log(n)

    def aic(self, X):
        """Akaike information criterion of the fitted mixture on X (lower is better)."""
        return -2 * self.score(X) * _num_samples(X) + 2 * self._n_parameters()

    def sample(self, n_samples=1):
        """Draw n_samples points from the fitted mixture.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,), the component of each point
        """
        check_is_fitted(self)
        if n_samples < 1:
            raise ValueError(f"Invalid value for 'n_samples': {n_samples}. The sampling requires at least one sample.")
        rng = check_random_state(self.random_state)
        weights = self.weights_.astype(np.float64)
        counts = rng.multinomial(n_samples, weights / weights.sum())
        means, covariances = self.means_.astype(np.float64), self.covariances_.astype(np.float64)
        d = means.shape[1]
        parts = []
        for k, count in enumerate(counts):
            if self.covariance_type in ("full", "tied"):
                cov = covariances if self.covariance_type == "tied" else covariances[k]
                parts.append(rng.multivariate_normal(means[k], cov, int(count)))
            else:
                parts.append(means[k] + rng.standard_normal((count, d)) * np.sqrt(covariances[k]))
        labels = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
        return np.vstack(parts), labels


def _num_samples(X):
    return len(X) if hasattr(X, "__len__") else np.asarray(X).shape[0]
