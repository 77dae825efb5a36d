"""Saving and loading `OnlineGaussianMixture` models as versioned JSON.

A model file is one JSON object (UTF-8), ``"format": "online-em/model"``, ``"version": 5``
(version 1 files, from before the covariance prior, version 2 files, from before missing
values, exact weights and structural moves, version 3 files, from before forgetting, and
version 4 files, from before splits, still load):

``params``
    The hyper-parameters (``n_components``, ``covariance_type``, ``alpha``, ``warm_up``,
    ``reg_covar``, ``average_after``, ``covariance_prior``, ``n_init``, ``init_max_iter``,
    ``adaptive``, ``prune_weight``, ``novelty_level``, ``halflife``, ``seed``).
``features``
    The feature names in the model's order (JSON strings or integers, kept as they are), or
    ``null`` before the model has seen a point.
``buffer``
    The warm-up points not yet fitted (a list of rows, ``null`` for a missing value; no row is
    all ``null``), empty once the model is initialised.
``stats``, ``average``
    The running sufficient statistics and their Polyak average, ``null`` when absent; each an
    object ``{"covariance_type", "shift", "s0", "s1", "s2", "count"}`` of nested lists
    (see `online_em.stats.SufficientStatistics` for the shapes).
``average_weights``
    The weights reported with the average (the iterate's when the average last took it in),
    ``null`` without an average.
``n_averaged``, ``pending_average``, ``t``, ``n_reseeds``
    How many points the average covers, how many learned points it has yet to take in (optional,
    0 when absent), the step counter (points learned) and the number of re-seeded components.
``average_from``
    Where each component's average began, in points averaged (0: with the average; later for a
    component born since); version 5, ``null`` without an average.
``n_skipped``
    Points skipped because none of their values was observed (optional, 0 when absent).
``rng``
    The state of the model's random generator (numpy's ``PCG64``).
``recency``, ``structure``
    The recency masses (the E-step's prior weights), and the structural moves' state: ``born``
    (when each component became active, -1 while inactive), ``held`` (novel points held back,
    ``[position, row]``), ``window`` (the points learned since the last split test; version 5),
    ``since_check`` and the counts ``births``, ``merges``, ``prunes`` and ``splits`` (version 5).

Floats are written with Python's shortest round-trip representation, so a loaded model is
bit-for-bit the saved one and continues exactly as the model that saved it does. (Saving takes
the state back from the one-point fast path, which for full covariances factors them again
exactly: the run after a save may differ in the last bits, about 1e-13, from one never saved.) NaN and
infinity are refused in both directions (a missing value of the buffer is ``null``). `save` writes a temporary file in the destination folder
and renames it over the destination, so a crash never leaves a half-written model (a symbolic link
is followed: its target is replaced, within the target's folder); `check_writable` says beforehand
whether it could. `load` never unpickles anything, and raises `StateFileError` (a `ValueError`)
naming the problem for a file that is not valid JSON, truncated, of another format or version, or
inconsistent, or whose numbers the model could not have written (`online_em.state_checks`).

>>> import os, tempfile
>>> from online_em import OnlineGaussianMixture
>>> model = OnlineGaussianMixture(n_components=2, warm_up=10, seed=0)
>>> for x in [1.0, 2.0, 1.5, 9.0, 10.0, 9.5, 1.2, 9.8, 2.2, 10.3, 1.1, 9.1]:
...     model.learn_one({"x": x})
>>> path = os.path.join(tempfile.mkdtemp(), "model.json")
>>> save(model, path)
>>> again = load(path)
>>> bool((again.means_ == model.means_).all()), again.n_samples_seen, again.feature_names_in_
(True, 12, ['x'])

"""

from __future__ import annotations

import json
import os
import tempfile
import typing

import numpy as np

from .init import default_warm_up
from .state_checks import check_state_numbers
from .stats import SufficientStatistics, check_covariance_type, second_moment_shape
from .validation import shorten

if typing.TYPE_CHECKING:  # pragma: no cover
    from .model import OnlineGaussianMixture

__all__ = [
    "FORMAT", "VERSION", "StateFileError", "save", "load", "to_dict", "from_dict", "dumps", "loads", "check_writable",
]

FORMAT = "online-em/model"
VERSION = 5
# Version 1 files (before the covariance prior) load as models without a prior; version 1 and 2
# files (before missing values, exact weights and structural moves) hold no null, keep exactly
# their components, take the average's own weights and count their points as the statistics' mass.
# Files before version 4 (before forgetting) load as stationary models; files before version 5
# (before splits) with no split made and an empty split window.
_STATIONARY = {"halflife": None}
_STRUCTURE_FREE = {"adaptive": False, "prune_weight": None, "novelty_level": 0.999, **_STATIONARY}
_READABLE = {1: {"covariance_prior": 0.0, **_STRUCTURE_FREE}, 2: _STRUCTURE_FREE, 3: _STATIONARY, 4: {}, 5: {}}
# The fields of "structure", by the first version that has them.
_STRUCTURE_FIELDS = {3: ("born", "held", "since_check", "births", "merges", "prunes"), 5: ("splits", "window")}

_PARAMS = (
    "n_components", "covariance_type", "alpha", "warm_up", "reg_covar",
    "average_after", "covariance_prior", "n_init", "init_max_iter", "adaptive", "prune_weight",
    "novelty_level", "halflife", "seed",
)


class StateFileError(ValueError):
    """A model file that cannot be loaded: not JSON, truncated, wrong format or version, or
    inconsistent. The message names the problem (and the file, when there is one).

    >>> loads('{"format": "online-em/model", "version": 99}')
    Traceback (most recent call last):
    ...
    online_em.persistence.StateFileError: unsupported version 99 (this library reads versions 1 to 5)

    """


# ---------------------------------------------------------------------- writing


def _stats_dict(stats: SufficientStatistics | None) -> dict | None:
    if stats is None:
        return None
    return {
        "covariance_type": stats.covariance_type,
        "shift": stats.shift.tolist(),
        "s0": stats.s0.tolist(),
        "s1": stats.s1.tolist(),
        "s2": stats.s2.tolist(),
        "count": float(stats.count),
    }


def _check_feature_name(name: typing.Any) -> None:
    if isinstance(name, bool) or not isinstance(name, (str, int)):
        raise ValueError(f"only str and int feature names can be saved, got {shorten(name)}")


def to_dict(model: OnlineGaussianMixture) -> dict:
    """The model's complete state as a JSON-able dict (see the module's docstring).

    >>> from online_em import OnlineGaussianMixture
    >>> state = to_dict(OnlineGaussianMixture(n_components=3, seed=1))
    >>> state["format"], state["version"], state["params"]["n_components"], state["stats"]
    ('online-em/model', 5, 3, None)

    """
    params = model._get_params()  # River's estimator API (base.Estimator), not the model's
    learned = model.get_state()
    for name in learned.features or []:
        _check_feature_name(name)
    return {
        "format": FORMAT,
        "version": VERSION,
        "params": {name: params[name] for name in _PARAMS},
        "features": learned.features,
        "buffer": [[None if v != v else float(v) for v in row] for row in learned.buffer],
        "stats": _stats_dict(learned.stats),
        "average": _stats_dict(learned.average),
        "average_weights": None if learned.average_weights is None else learned.average_weights.tolist(),
        "n_averaged": learned.n_averaged,
        "average_from": None if learned.average is None else [int(v) for v in learned.average_from],
        "pending_average": learned.pending_average,
        "t": learned.t,
        "n_reseeds": learned.n_reseeds,
        "n_skipped": learned.n_skipped,
        "rng": learned.rng_state,
        "recency": None if learned.recency is None else learned.recency.tolist(),
        "structure": {
            "born": learned.born,
            "held": [[t, [float(v) for v in row]] for t, row in learned.held],
            "window": [[float(v) for v in row] for row in learned.window],
            "since_check": learned.since_check,
            **learned.moves,
        },
    }


def dumps(model: OnlineGaussianMixture) -> str:
    """The model as a JSON document (``allow_nan=False``: a non-finite value is an error)."""
    try:
        return json.dumps(to_dict(model), allow_nan=False, indent=1) + "\n"
    except ValueError as error:
        raise ValueError(f"the model cannot be saved: {error}") from None


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _target(path: str | os.PathLike) -> str:
    """The file that `path` names, through symbolic links: what `save` replaces."""
    return os.path.realpath(os.fspath(path))


def check_writable(path: str | os.PathLike) -> None:
    """OSError (naming `path`) unless `save` could write `path` now: its folder exists and takes
    a new file. Nothing is left behind.

    >>> check_writable("/nonexistent-folder/model.json")
    Traceback (most recent call last):
    ...
    FileNotFoundError: [Errno 2] No such file or directory: '/nonexistent-folder/model.json'

    """
    target = _target(path)
    if os.path.isdir(target):
        raise IsADirectoryError(21, os.strerror(21), os.fspath(path))
    try:
        fd, probe = tempfile.mkstemp(prefix="." + os.path.basename(target) + ".", suffix=".tmp",
                                     dir=os.path.dirname(target))
    except OSError as error:
        raise _naming(error, path) from None
    os.close(fd)
    os.unlink(probe)


def save(model: OnlineGaussianMixture, path: str | os.PathLike) -> None:
    """Write the model to `path` atomically: a temporary file in the same folder, flushed to
    disk, then renamed over `path`. An existing file keeps its permissions; a symbolic link is
    followed, and its target replaced (the rename is within the target's folder). An OSError names
    `path`, and leaves it as it was, with no temporary file.
    """
    text = dumps(model).encode("utf-8")
    try:
        _write_atomically(text, _target(path))
    except OSError as error:
        raise _naming(error, path) from None


def _naming(error: OSError, path: str | os.PathLike) -> OSError:
    """The error with `path` as its file name (not a temporary file's), when it has an errno."""
    if error.errno is None:
        return error
    return type(error)(error.errno, error.strerror, os.fspath(path))



def _write_atomically(text: bytes, path: str) -> None:
    folder = os.path.dirname(path)
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_current_umask()
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable (best effort: not every platform opens folders)
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


# ---------------------------------------------------------------------- reading


def _reject_constant(name: str) -> typing.NoReturn:
    raise StateFileError(f"the file contains {name}, but a model file holds finite numbers only")


def _is_number(value: typing.Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _nested_numbers(value: typing.Any, depth: int, where: str, null: bool = False) -> None:
    if depth == 0:
        if not (_is_number(value) or (null and value is None)):
            raise StateFileError(f"{where}: expected a number, got {shorten(value)}")
        return
    if not isinstance(value, list):
        raise StateFileError(f"{where}: expected a list, got {type(value).__name__}")
    for item in value:
        _nested_numbers(item, depth - 1, where, null)


def _array(value: typing.Any, shape: tuple, where: str, null: bool = False) -> np.ndarray:
    """A float array of exactly `shape` from nested lists, or a StateFileError; with `null`,
    null is a missing value (NaN)."""
    _nested_numbers(value, len(shape), where, null)
    try:
        array = np.array(value, dtype=np.float64)  # None becomes NaN
    except (ValueError, OverflowError, TypeError) as error:
        raise StateFileError(f"{where}: not a regular array ({error})") from None
    if array.shape != shape:
        raise StateFileError(f"{where}: expected shape {shape}, got {array.shape}")
    if not (np.isfinite(array) | (null & np.isnan(array))).all():
        raise StateFileError(f"{where}: values must be finite")
    return array


def _integer(state: dict, key: str, minimum: int = 0) -> int:
    value = state.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise StateFileError(f"{shorten(key)}: expected an integer >= {minimum}, got {shorten(value)}")
    return value


def _statistics(value: typing.Any, key: str, covariance_type: str, K: int, D: int) -> SufficientStatistics | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise StateFileError(f"{shorten(key)}: expected an object or null, got {type(value).__name__}")
    expected = {"covariance_type", "shift", "s0", "s1", "s2", "count"}
    if set(value) != expected:
        raise StateFileError(f"{shorten(key)}: expected the fields {sorted(expected)}, got {shorten(sorted(value))}")
    if value["covariance_type"] != covariance_type:
        raise StateFileError(
            f"{shorten(key)}: covariance_type {shorten(value['covariance_type'])} differs from the model's "
            f"{covariance_type!r}"
        )
    s2_shape = second_moment_shape(covariance_type, K, D)
    count = value["count"]
    if not _is_number(count) or not np.isfinite(count) or count < 0:
        raise StateFileError(f"{key}.count: expected a non-negative number, got {shorten(count)}")
    s0 = _array(value["s0"], (K,), f"{key}.s0")
    if (s0 < 0).any():
        raise StateFileError(f"{key}.s0: masses must be non-negative")
    return SufficientStatistics(
        covariance_type,
        _array(value["shift"], (D,), f"{key}.shift"),
        s0,
        _array(value["s1"], (K, D), f"{key}.s1"),
        _array(value["s2"], s2_shape, f"{key}.s2"),
        float(count),
    )


def _structure(state: dict, version: int, stats: SufficientStatistics | None, K: int, D: int, t: int) -> tuple:
    """The recency masses and the structural moves' state (version 3), or what older files imply:
    recency masses equal to the weights, every component with mass as old as the statistics."""
    if version < 3 or state.get("recency") is None and state.get("structure") is None:
        recency = None if stats is None else stats.s0 / stats.s0.sum()
        return recency, {}
    recency = None
    if state.get("recency") is not None:
        if stats is None:
            raise StateFileError("'recency' is set but 'stats' is null")
        recency = _array(state["recency"], (K,), "recency")
        if (recency < 0).any() or not abs(recency.sum() - 1.0) < 1e-9 or ((recency > 0) & (stats.s0 == 0)).any():
            raise StateFileError("'recency': expected non-negative masses summing to 1, none for an inactive component")
    elif stats is not None:
        raise StateFileError("'recency' is null but 'stats' is set")
    structure = state.get("structure")
    fields = {name for first, names in _STRUCTURE_FIELDS.items() if version >= first for name in names}
    if not isinstance(structure, dict) or set(structure) != fields:
        got = sorted(structure) if isinstance(structure, dict) else type(structure).__name__
        raise StateFileError(f"'structure': expected the fields {sorted(fields)}, got {shorten(got)}")
    born = structure["born"]
    if not isinstance(born, list) or len(born) != K or any(type(b) is not int or not -1 <= b <= t for b in born):
        raise StateFileError(f"structure.born: expected {K} integers from -1 to t={t}, got {shorten(born)}")
    held = structure["held"]
    if not isinstance(held, list):
        raise StateFileError("structure.held: expected a list of [position, row] pairs")
    items = []
    for item in held:
        if (not isinstance(item, list) or len(item) != 2 or type(item[0]) is not int or item[0] < 0):
            raise StateFileError(f"structure.held: expected [position, row] pairs, got {shorten(item)}")
        row = _array(item[1], (D,), "structure.held")
        if not (np.abs(row) <= 1e152).all():
            raise StateFileError("structure.held: values out of range")
        items.append((item[0], row.tolist()))
    window = structure.get("window", [])
    if not isinstance(window, list):
        raise StateFileError("structure.window: expected a list of rows")
    window_rows = [_array(row, (D,), "structure.window") for row in window]
    if any(not (np.abs(row) <= 1e152).all() for row in window_rows):
        raise StateFileError("structure.window: values out of range")
    counters = {"splits": 0}
    for key in ("since_check", "births", "merges", "prunes") + (("splits",) if version >= 5 else ()):
        counters[key] = _integer(structure, key)
    return recency, {
        "born": born, "held": items, "window": [row.tolist() for row in window_rows],
        "since_check": counters.pop("since_check"), "moves": counters,
    }


def from_dict(state: typing.Any) -> OnlineGaussianMixture:
    """Rebuild a model from `to_dict`'s output, checking every field; StateFileError otherwise.

    >>> from online_em import OnlineGaussianMixture
    >>> from_dict(to_dict(OnlineGaussianMixture(n_components=3))).n_components
    3
    >>> from_dict({"format": "something/else", "version": 1})
    Traceback (most recent call last):
    ...
    online_em.persistence.StateFileError: not an online-em model file (format 'something/else')

    """
    from .model import ModelState, OnlineGaussianMixture

    if not isinstance(state, dict):
        raise StateFileError(f"expected a JSON object at the top level, got {type(state).__name__}")
    if state.get("format") != FORMAT:
        raise StateFileError(f"not an online-em model file (format {shorten(state.get('format'))})")
    version = state.get("version")
    if type(version) is not int or version not in _READABLE:
        raise StateFileError(f"unsupported version {shorten(version)} (this library reads versions 1 to {VERSION})")
    expected = {"format", "version", "params", "features", "buffer", "stats", "average",
                "n_averaged", "t", "n_reseeds", "rng"}
    missing = sorted(expected - set(state))
    if missing:
        raise StateFileError(f"missing field(s) {', '.join(map(repr, missing))}")
    unknown = sorted(set(state) - expected - {"pending_average", "average_weights", "average_from", "recency", "structure",
                                              "n_skipped"})
    if unknown:
        raise StateFileError(f"unknown field(s) {', '.join(map(repr, unknown))}")

    params = state["params"]
    if isinstance(params, dict):
        params = {**_READABLE[version], **params}
    if not isinstance(params, dict) or set(params) != set(_PARAMS):
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise StateFileError(f"'params': expected the hyper-parameters {sorted(_PARAMS)}, got {got}")
    for name, value in params.items():
        if (isinstance(value, bool) and name != "adaptive") or not (value is None or isinstance(value, (int, float, str))):
            raise StateFileError(f"params.{name}: unexpected value {shorten(value)}")
    try:
        check_covariance_type(params["covariance_type"])
        model = OnlineGaussianMixture(**params)
    except (TypeError, ValueError) as error:
        raise StateFileError(f"'params': {error}") from None
    K, cov_type = model.n_components, model.covariance_type

    features = state["features"]
    if features is not None:
        if not isinstance(features, list) or not features:
            raise StateFileError(f"'features': expected a non-empty list or null, got {shorten(features)}")
        for name in features:
            if isinstance(name, bool) or not isinstance(name, (str, int)):
                raise StateFileError(f"'features': names must be strings or integers, got {shorten(name)}")
        if len(set(features)) != len(features):
            raise StateFileError(f"'features': duplicated names in {shorten(features)}")
    D = len(features) if features is not None else 0

    buffer = state["buffer"]
    if not isinstance(buffer, list):
        raise StateFileError(f"'buffer': expected a list, got {type(buffer).__name__}")
    buffer_array = _array(buffer, (len(buffer), D), "buffer", null=version >= 3) if buffer else None

    stats = _statistics(state["stats"], "stats", cov_type, K, D)
    average = _statistics(state["average"], "average", cov_type, K, D)
    t = _integer(state, "t")
    n_averaged = _integer(state, "n_averaged")
    pending_average = _integer(state, "pending_average") if "pending_average" in state else 0
    n_reseeds = _integer(state, "n_reseeds")
    n_skipped = _integer(state, "n_skipped") if "n_skipped" in state else 0
    if stats is None:
        if features is None and (buffer or t):
            raise StateFileError("'features' is null but the model has learned points")
        if average is not None:
            raise StateFileError("'average' is set but 'stats' is null")
        warm_up = model.warm_up if model.warm_up is not None else default_warm_up(cov_type, K, max(1, D))
        if len(buffer) != t or len(buffer) >= warm_up:
            raise StateFileError(f"'buffer': {len(buffer)} warm-up point(s) for t={t} and warm_up={warm_up}")
    elif buffer:
        raise StateFileError("'buffer' must be empty once the model is initialised ('stats' is set)")
    if stats is not None and features is None:
        raise StateFileError("'stats' is set but 'features' is null")

    average_weights = None
    if version < 3:
        if stats is not None:
            stats.count = float(t)  # the statistics average over the points learned
        if average is not None:
            average_weights = average.s0 / average.s0.sum()
    elif state.get("average_weights") is not None:
        if average is None:
            raise StateFileError("'average_weights' is set but 'average' is null")
        average_weights = _array(state["average_weights"], (K,), "average_weights")
        if (average_weights < 0).any() or not abs(average_weights.sum() - 1.0) < 1e-9:
            raise StateFileError("'average_weights': expected non-negative weights that sum to 1")
    elif average is not None:
        raise StateFileError("'average' is set but 'average_weights' is null")
    average_from = state.get("average_from")
    if average_from is not None:
        if average is None:
            raise StateFileError("'average_from' is set but 'average' is null")
        if (not isinstance(average_from, list) or len(average_from) != K
                or any(type(v) is not int or not 0 <= v <= n_averaged + pending_average for v in average_from)):
            raise StateFileError(f"'average_from': expected {K} integers from 0 to the points averaged, "
                                 f"got {shorten(average_from)}")

    try:
        check_state_numbers(stats=stats, average=average, t=t, buffer=buffer_array)
    except ValueError as error:
        raise StateFileError(f"impossible state: {error}") from None
    recency, structure = _structure(state, version, stats, K, D, t)

    rng_state = state["rng"]
    if not isinstance(rng_state, dict) or rng_state.get("bit_generator") != "PCG64":
        got = rng_state.get("bit_generator") if isinstance(rng_state, dict) else rng_state
        raise StateFileError(f"'rng': expected a PCG64 generator state, got {shorten(got)}")
    rng = np.random.default_rng()
    try:
        rng.bit_generator.state = rng_state
    except (TypeError, ValueError, KeyError, OverflowError) as error:
        raise StateFileError(f"'rng': invalid generator state ({shorten(error)})") from None

    learned = ModelState(
        features=list(features) if features is not None else None,
        buffer=buffer_array.tolist() if buffer_array is not None else [],
        stats=stats, average=average, average_weights=average_weights, n_averaged=n_averaged,
        pending_average=pending_average, average_from=average_from, recency=recency, **structure,
        t=t, n_reseeds=n_reseeds, rng_state=rng.bit_generator.state, n_skipped=n_skipped,
    )
    try:
        model.set_state(learned)
    except (ValueError, ArithmeticError, np.linalg.LinAlgError) as error:
        raise StateFileError(f"the statistics make no valid parameters ({error})") from None
    return model


def loads(text: str | bytes) -> OnlineGaussianMixture:
    """Rebuild a model from the JSON text `dumps` wrote (StateFileError for anything else).

    >>> loads('{"format": "online-em/model", "version": 1, "params": {')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    online_em.persistence.StateFileError: not valid JSON, or truncated: ... line 1 column 56 (char 55)

    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as error:
            raise StateFileError(f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    if not text.strip():
        raise StateFileError("the file is empty")
    try:
        state = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise StateFileError(f"not valid JSON, or truncated: {error}") from None
    except StateFileError:  # NaN or infinity (_reject_constant)
        raise
    except ValueError:  # Python's limit on the digits of an integer

        raise StateFileError("not a model file: a number with too many digits") from None
    except RecursionError:
        raise StateFileError("not a model file: nested too deeply") from None
    return from_dict(state)


def load(path: str | os.PathLike) -> OnlineGaussianMixture:
    """Read a model that `save` wrote. OSError if the file cannot be read; StateFileError, with
    the file's name, if it is not a valid model file. The file is never modified."""
    path = os.fspath(path)
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        return loads(data)
    except StateFileError as error:
        raise StateFileError(f"{path}: {error}") from None
