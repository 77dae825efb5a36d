"""The rules for what the model accepts, in one place for the library and the command line.

* **Hyper-parameters** (`check_params`): ``n_components``, ``n_init`` and ``init_max_iter`` are
  integers >= 1 (not ``bool``); ``warm_up`` is ``None`` or an integer above ``n_components``;
  ``average_after`` is ``'auto'``, ``None`` or an integer >= 0; ``reg_covar`` is a finite real
  number >= 0 and ``covariance_prior`` ``'auto'`` or one; ``alpha`` a real number in (0.5, 1].
* **Feature values** (`check_value`, `row_from_dict`): a real number, that is an ``int`` or
  ``float`` (or any `numbers.Real`, such as numpy's), finite and within ±`MAX_ABS_VALUE`; not a
  ``bool``, not a string, not a ``Decimal``. JSON lines follow the same rule (JSON numbers only,
  ``true`` and ``"3"`` are refused).
* **Missing values** (`value_or_missing`, `row_from_dict`): a feature absent from a point, or
  whose value is ``None`` or NaN, is missing (NaN in a row or an array); infinities are errors.
* **Points and batches**: a point's observed features fix a new model's; a DataFrame has distinct
  column names; an empty batch learns nothing and does not fix the features.
* **Model size** (`model_size`, `check_model_size`): how many numbers a point updates,
  K·D² for full covariances, K·D + D² for tied, K·D for diagonal and spherical; the command line
  refuses models beyond a limit (``--max-size``, `DEFAULT_MAX_SIZE`) before it allocates them,
  and more components than warm-up points.
* **Messages** quote at most `MAX_SHOWN` characters of any value (`shorten`).

>>> check_value(3), check_value(2.5)
(3.0, 2.5)
>>> check_value("3")
Traceback (most recent call last):
...
ValueError: features must be real numbers (int or float), got '3'
>>> len(shorten("x" * 1_000_000)), shorten("x" * 100)[-5:]
(80, 'xx...')

"""

from __future__ import annotations

import math
import numbers
import typing

__all__ = [
    "MAX_ABS_VALUE", "MAX_SHOWN", "DEFAULT_MAX_SIZE", "check_halflife", "check_model_size", "check_params", "check_value",
    "is_missing", "max_features", "model_size", "plain_row", "row_from_dict", "shorten", "value_or_missing",
]

# Deviations are squared in float64: beyond this magnitude their squares (and sums of them) overflow.
MAX_ABS_VALUE = 1e152
MAX_SHOWN = 80  # characters of a value or line quoted in a message
DEFAULT_MAX_SIZE = 100_000  # numbers a point updates (model_size): milliseconds a point at most


def shorten(value: typing.Any, limit: int = MAX_SHOWN) -> str:
    """``repr(value)``, cut to `limit` characters with ``...``: what a message may quote.

    >>> print(shorten(b"\\xff" * 40, 12))
    b'\\xff\\xf...

    """
    if isinstance(value, (str, bytes)) and len(value) > 4 * limit:
        value = value[: 4 * limit]  # repr of a long text costs its length: cut it first
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_integer(value: typing.Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: typing.Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_halflife(halflife: typing.Any) -> None:
    """ValueError unless `halflife` is None or a finite number of points >= 1.

    >>> check_halflife(1000)
    >>> check_halflife(0.5)
    Traceback (most recent call last):
    ...
    ValueError: halflife must be None or a finite number of points >= 1, got 0.5

    """
    if halflife is not None and (not _is_real(halflife) or not 1.0 <= halflife < math.inf):
        raise ValueError(f"halflife must be None or a finite number of points >= 1, got {shorten(halflife)}")


def _is_auto(value: typing.Any) -> bool:
    """Whether a hyper-parameter is the string ``'auto'`` (an array is not, and is not compared)."""
    return isinstance(value, str) and value == "auto"


def check_params(n_components: typing.Any, warm_up: typing.Any, reg_covar: typing.Any, average_after: typing.Any,
                 n_init: typing.Any, init_max_iter: typing.Any, alpha: typing.Any,
                 covariance_prior: typing.Any = 0.0) -> None:
    """ValueError naming the first hyper-parameter that breaks the rules of the module docstring.

    >>> check_params(2, 500, 1e-6, None, 3, 20, 0.6)
    >>> check_params(2, None, 1e-6, 1.5, 3, 20, 0.6)
    Traceback (most recent call last):
    ...
    ValueError: average_after must be 'auto', None or an integer >= 0, got 1.5
    >>> check_params(3, 3, 1e-6, None, 3, 20, 0.6)
    Traceback (most recent call last):
    ...
    ValueError: warm_up must be None or an integer above n_components (3), got 3

    """
    for name, value in (("n_components", n_components), ("n_init", n_init), ("init_max_iter", init_max_iter)):
        if not _is_integer(value) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {shorten(value)}")
    if warm_up is not None and (not _is_integer(warm_up) or warm_up <= n_components):
        raise ValueError(
            f"warm_up must be None or an integer above n_components ({n_components}), got {shorten(warm_up)}"
        )
    if not _is_auto(covariance_prior) and (not _is_real(covariance_prior) or not (0 <= covariance_prior < math.inf)):
        raise ValueError(f"covariance_prior must be 'auto' or a finite number >= 0, got {shorten(covariance_prior)}")
    if average_after is not None and not _is_auto(average_after) and (not _is_integer(average_after) or average_after < 0):
        raise ValueError(f"average_after must be 'auto', None or an integer >= 0, got {shorten(average_after)}")
    if not _is_real(reg_covar) or not (0 <= reg_covar < math.inf):
        raise ValueError(f"reg_covar must be a finite number >= 0, got {shorten(reg_covar)}")
    if not _is_real(alpha) or not 0.5 < alpha <= 1.0:
        raise ValueError(f"alpha must be a number in (0.5, 1], got {shorten(alpha)}")


def check_structure_params(adaptive: typing.Any, prune_weight: typing.Any, novelty_level: typing.Any) -> None:
    """ValueError naming the first of the structural moves' hyper-parameters that is invalid.

    >>> check_structure_params(True, None, 0.999)
    >>> check_structure_params(True, 0.5, 0.999)
    Traceback (most recent call last):
    ...
    ValueError: prune_weight must be None or a number in [0, 0.5), got 0.5

    """
    if not isinstance(adaptive, bool):
        raise ValueError(f"adaptive must be True or False, got {shorten(adaptive)}")
    if prune_weight is not None and (not _is_real(prune_weight) or not 0 <= prune_weight < 0.5):
        raise ValueError(f"prune_weight must be None or a number in [0, 0.5), got {shorten(prune_weight)}")
    if not _is_real(novelty_level) or not 0.5 < novelty_level < 1:
        raise ValueError(f"novelty_level must be a number in (0.5, 1), got {shorten(novelty_level)}")


def check_value(value: typing.Any) -> float:
    """A feature value as a float, or ValueError (see the module docstring for the rule)."""
    if type(value) is not float and not _is_real(value):
        raise ValueError(f"features must be real numbers (int or float), got {shorten(value)}")
    number = float(value)
    if not -MAX_ABS_VALUE <= number <= MAX_ABS_VALUE:  # False for NaN too
        raise ValueError(f"features must be finite and within ±{MAX_ABS_VALUE:g}, got {shorten(value)}")
    return number


def value_or_missing(value: typing.Any) -> float:
    """A feature value of a point as a float, NaN for a missing one (``None`` or NaN); otherwise
    ValueError as `check_value` says.

    >>> value_or_missing(None), value_or_missing(float("nan")), value_or_missing(2)
    (nan, nan, 2.0)

    """
    if value is None:
        return math.nan
    if _is_real(value) and value != value:
        return math.nan
    return check_value(value)


def is_missing(value: typing.Any) -> bool:
    """Whether a point's value is missing: ``None`` or NaN (an absent key is missing too)."""
    return value is None or (_is_real(value) and value != value)


def plain_row(x: typing.Any, features: list) -> list[float] | None:
    """The values of the point `x` in the order of `features` when each is a plain ``float``
    within ±`MAX_ABS_VALUE` and `x` has no other key; else None, and `row_from_dict` reads it.
    The one-point hot path's check: one pass over a few floats.

    >>> plain_row({"b": 2.0, "a": 1.0}, ["a", "b"])
    [1.0, 2.0]
    >>> [plain_row(x, ["a", "b"]) for x in ({"a": 1.0}, {"a": 1.0, "b": math.nan}, {"a": 1, "b": 2.0})]
    [None, None, None]

    """
    if type(x) is not dict or len(x) != len(features):
        return None
    # One loop, no comprehension or exception frame: about half the time of either on a few
    # features (this runs twice per point for learn_one + predict_one). An absent feature reads
    # as None, which is not a float; with as many keys as features, none is extra.
    row = []
    for f in features:
        value = x.get(f)
        if type(value) is not float or not -MAX_ABS_VALUE <= value <= MAX_ABS_VALUE:
            return None
        row.append(value)
    return row


def row_from_dict(x: typing.Any, features: list, unknown: list | None = None) -> list[float]:
    """The values of the point `x` (a dict) in the order of `features`, as floats, NaN where a
    feature is missing (absent, ``None`` or NaN); ValueError for an unusable value. Keys that
    are not features are ignored; given a list `unknown`, those with a value are appended to it.

    >>> row_from_dict({"a": 1, "c": 3, "d": None}, ["a", "b"], unknown := [])
    [1.0, nan]
    >>> unknown
    ['c']

    """
    if not isinstance(x, dict):
        raise ValueError(f"a point is a dict of feature values, got {type(x).__name__}")
    try:
        values = [x[f] for f in features]
    except KeyError:
        values = [x.get(f) for f in features]
    else:
        if len(x) == len(features):  # every feature present, so no other key: the common case
            unknown = None
    if unknown is not None:
        known = set(features)
        unknown.extend(k for k, v in x.items() if k not in known and not is_missing(v))
    row = []
    for value in values:
        if type(value) is float or type(value) is int:  # the common case, without the checks' cost
            row.append(float(value))
        else:
            row.append(value_or_missing(value))
    return row


def check_features(keys: typing.Iterable) -> list:
    """The feature names of a first point or batch: at least one, all distinct."""
    keys = list(keys)
    if not keys:
        raise ValueError("a point needs at least one feature")
    if len(set(keys)) != len(keys):
        seen: set = set()
        repeated = next(k for k in keys if k in seen or seen.add(k))
        raise ValueError(f"feature {shorten(repeated)} appears more than once")
    return keys


def model_size(n_components: int, n_features: int, covariance_type: str) -> int:
    """How many numbers of the statistics one point updates, which bounds memory and time.

    >>> model_size(2, 3, "full"), model_size(2, 3, "tied"), model_size(2, 3, "diag")
    (18, 15, 6)

    """
    if covariance_type == "full":
        return n_components * n_features * n_features
    if covariance_type == "tied":
        return n_components * n_features + n_features * n_features
    return n_components * n_features


def max_features(n_components: int, covariance_type: str, limit: int) -> int:
    """The most features a model of `n_components` may have within `limit` (0: not even one).

    >>> max_features(2, "full", 1_000_000), max_features(2, "diag", 1_000_000)
    (707, 500000)

    """
    low, high = 0, max(1, limit)
    while low < high:  # the largest D with model_size(K, D) <= limit
        middle = (low + high + 1) // 2
        if model_size(n_components, middle, covariance_type) <= limit:
            low = middle
        else:
            high = middle - 1
    return low


def check_model_size(n_components: int, n_features: int, covariance_type: str, limit: int) -> None:
    """ValueError if the model would be larger than `limit` numbers (`model_size`).

    >>> check_model_size(100_000, 100, "diag", 1_000_000)
    Traceback (most recent call last):
    ...
    ValueError: 100000 components of 100 feature(s) (diag) make a model of 10000000 numbers, more than the limit of 1000000

    """
    size = model_size(n_components, n_features, covariance_type)
    if size > limit:
        raise ValueError(
            f"{n_components} components of {n_features} feature(s) ({covariance_type}) make a model of "
            f"{size} numbers, more than the limit of {limit}"
        )


def batch_features(X: typing.Any) -> list | None:
    """The features a first batch gives a model: a DataFrame's columns (distinct names) or
    0..D-1 for an array; None for a batch without rows, which fixes nothing.

    >>> import numpy as np
    >>> batch_features(np.zeros((3, 2))), batch_features(np.array([])), batch_features([[1.0]])
    ([0, 1], None, [0])

    """
    if hasattr(X, "columns"):  # a pandas DataFrame
        columns = check_features(X.columns)
        return columns if len(X) else None
    import numpy as np

    shape = np.shape(X)
    if not shape or shape[0] == 0:
        return None
    return check_features(range(shape[1] if len(shape) >= 2 else 1))  # (more dimensions: the caller refuses)
