"""Reading records from lines of text: numbers separated by commas or whitespace, or JSON objects.

A parser turns one line (bytes, as read) into a row of floats in the model's feature order, or
raises `RecordError` saying what is wrong with it: invalid UTF-8, an empty line, a field that is not
a number, NaN or infinity, a wrong number of fields, invalid JSON, a missing or unexpected key.
Numeric parsers also read whole blocks of lines at once with numpy (`parse_block`), and return
``None`` when a block holds anything unusual, so that the caller falls back to `parse` line by
line and reports each problem exactly.

>>> parser = NumericParser()
>>> parser.parse(b"1.5, 2\\n"), parser.features
([1.5, 2.0], [0, 1])
>>> parser.parse(b"3 4\\n")
[3.0, 4.0]
>>> parser.parse(b"3 four\\n")
Traceback (most recent call last):
...
online_em.records.RecordError: field 2 is not a number ('four')
>>> parser.parse_block([b"1 2\\n", b"3 4\\n"]).tolist()
[[1.0, 2.0], [3.0, 4.0]]
>>> parser.parse_block([b"1 2\\n", b"nan 4\\n"]) is None  # has a problem: parse line by line
True

"""

from __future__ import annotations

import json

import numpy as np

__all__ = ["RecordError", "NumericParser", "JsonParser", "parse_columns", "make_parser"]


class RecordError(ValueError):
    """One line that is not a valid record; the message says why."""


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RecordError(f"invalid UTF-8 (byte {raw[error.start]:#04x} at position {error.start + 1})") from None


def _is_finite(value: float) -> bool:
    return value - value == 0.0  # False for NaN and infinities, and faster than math.isfinite


def parse_columns(text: str | None, fmt: str) -> list | None:
    """The ``--columns`` option: 1-based column numbers for text, key names for JSON lines.

    >>> parse_columns("3,1", "text"), parse_columns("x, y", "jsonl"), parse_columns(None, "text")
    ([3, 1], ['x', 'y'], None)
    >>> parse_columns("0", "text")
    Traceback (most recent call last):
    ...
    ValueError: column numbers start at 1, got '0'

    """
    if text is None:
        return None
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise ValueError(f"empty column name in {text!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"repeated column in {text!r}")
    if fmt == "jsonl":
        return names
    columns = []
    for name in names:
        if not name.isdigit():
            raise ValueError(f"columns are numbers from 1 (as for cut -f), got {name!r}")
        if int(name) < 1:
            raise ValueError(f"column numbers start at 1, got {name!r}")
        columns.append(int(name))
    return columns


class NumericParser:
    """Lines of numbers separated by commas (then spaces around them are allowed) or whitespace.

    Without `columns`, every line must have the same number of fields as the first valid one (or
    as `n_features`, when the model already has features); the features are named 0..D-1. With
    `columns` (1-based numbers), those fields are picked, in that order, from lines that have at
    least as many fields as the largest column number.

    >>> parser = NumericParser(columns=[3, 1])
    >>> parser.parse(b"10,20,30,40")
    [30.0, 10.0]
    >>> parser.parse(b"10,20")
    Traceback (most recent call last):
    ...
    online_em.records.RecordError: expected at least 3 fields, got 2

    """

    def __init__(self, columns: list[int] | None = None, n_features: int | None = None):
        self.columns = columns
        if columns is not None:
            if n_features is not None and n_features != len(columns):
                raise ValueError(f"the model has {n_features} feature(s), but --columns picks {len(columns)}")
            n_features = len(columns)
            self._indexes = [c - 1 for c in columns]
            self._min_fields = max(columns)
        self.n_features = n_features

    @property
    def features(self) -> list | None:
        """The feature names: 0..D-1, or None until the number of fields is known."""
        return None if self.n_features is None else list(range(self.n_features))

    def _fields(self, raw: bytes) -> list[str]:
        text = _decode(raw).strip()
        if not text:
            raise RecordError("empty line")
        if "," in text:
            fields = [field.strip() for field in text.split(",")]
            for i, field in enumerate(fields):
                if not field:
                    raise RecordError(f"field {i + 1} is empty")
            return fields
        return text.split()

    def parse(self, raw: bytes) -> list[float]:
        """One line as a row of floats (RecordError if it is not a valid record)."""
        fields = self._fields(raw)
        if self.columns is not None:
            if len(fields) < self._min_fields:
                raise RecordError(f"expected at least {self._min_fields} fields, got {len(fields)}")
            picked = [(c, fields[i]) for c, i in zip(self.columns, self._indexes)]
        else:
            if self.n_features is not None and len(fields) != self.n_features:
                raise RecordError(f"expected {self.n_features} field(s), got {len(fields)}")
            picked = list(enumerate(fields, 1))
        row = []
        for number, field in picked:
            try:
                value = float(field)
            except ValueError:
                raise RecordError(f"field {number} is not a number ({field!r})") from None
            if not _is_finite(value):
                raise RecordError(f"field {number} is not a finite number ({field!r})")
            row.append(value)
        if self.n_features is None:
            self.n_features = len(row)
        return row

    def parse_block(self, lines: list[bytes]) -> np.ndarray | None:
        """Many lines at once as an (n, D) array, or None if any line needs a closer look."""
        if not lines:
            return None
        try:
            if self.n_features == 1 and self.columns is None:
                joined = b"".join(lines)
                if b"," in joined:
                    return None
                tokens = joined.split()
                # as many tokens as lines and no blank line: exactly one number a line
                if len(tokens) != len(lines) or not all(map(bytes.strip, lines)):
                    return None
                matrix = np.array(tokens, dtype=np.float64)[:, None]
            else:
                rows = [line.split(b",") if b"," in line else line.split() for line in lines]
                matrix = np.array(rows, dtype=np.float64)
                if matrix.ndim != 2:
                    return None
                if self.columns is not None:
                    if matrix.shape[1] < self._min_fields:
                        return None
                    matrix = matrix[:, self._indexes]
                elif matrix.shape[1] != self.n_features:
                    if self.n_features is not None or matrix.shape[1] == 0:
                        return None
        except (ValueError, TypeError, OverflowError):
            return None
        if not np.isfinite(matrix).all():
            return None
        if self.n_features is None:
            self.n_features = matrix.shape[1]
        return matrix


class JsonParser:
    """JSON objects, one a line, whose values (for the feature keys) are finite numbers.

    Without `columns`, the keys of the first valid object (or the model's features) are the
    features and every object must have exactly those keys; with `columns`, those keys are read
    and the others ignored. The features are ordered as the model orders them (sorted).

    >>> parser = JsonParser()
    >>> parser.parse(b'{"y": 2, "x": 1.5}'), parser.features
    ([1.5, 2.0], ['x', 'y'])
    >>> parser.parse(b'{"x": 1, "y": true}')
    Traceback (most recent call last):
    ...
    online_em.records.RecordError: value of 'y' is not a number (True)

    """

    def __init__(self, columns: list[str] | None = None, features: list | None = None):
        from .model import _sorted_features

        self._sort = _sorted_features
        self.columns = columns
        if columns is not None and features is not None and set(columns) != set(features):
            raise ValueError(f"the model's features are {features!r}, but --columns picks {columns!r}")
        if columns is not None:
            features = self._sort(columns)
        self.features = None if features is None else list(features)
        self._keys = None if features is None else set(self.features)

    @property
    def n_features(self) -> int | None:
        return None if self.features is None else len(self.features)

    def parse(self, raw: bytes) -> list[float]:
        """One line as a row of floats in feature order (RecordError if it is not valid)."""
        text = _decode(raw).strip()
        if not text:
            raise RecordError("empty line")
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            raise RecordError(f"invalid JSON ({error.msg} at column {error.colno})") from None
        except RecursionError:
            raise RecordError("invalid JSON (nested too deeply)") from None
        if not isinstance(record, dict):
            raise RecordError(f"expected a JSON object, got {type(record).__name__}")
        features = self.features
        if features is None:
            if not record:
                raise RecordError("empty JSON object")
            features = self._sort(record)
        elif self.columns is None and record.keys() != self._keys:
            extra = [k for k in record if k not in self._keys]
            if extra:
                raise RecordError(f"unexpected key {extra[0]!r} (the features are {features!r})")
        row = []
        for key in features:
            try:
                value = record[key]
            except KeyError:
                raise RecordError(f"missing key {key!r}") from None
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise RecordError(f"value of {key!r} is not a number ({value!r})")
            try:
                value = float(value)
            except OverflowError:
                raise RecordError(f"value of {key!r} is too large") from None
            if not _is_finite(value):
                raise RecordError(f"value of {key!r} is not a finite number ({value!r})")
            row.append(value)
        if self.features is None:
            self.features = features
            self._keys = set(features)
        return row

    def parse_block(self, lines: list[bytes]) -> None:
        """JSON lines are always parsed one by one."""
        return None


def make_parser(fmt: str, columns: list | None, model_features: list | None):
    """The parser for ``--format`` (``text`` or ``jsonl``), consistent with a model's features.

    ValueError when the model's features cannot come from that format or those columns.

    >>> make_parser("text", None, [0, 1]).n_features
    2
    >>> make_parser("text", None, ["x"])
    Traceback (most recent call last):
    ...
    ValueError: the model's features are ['x'] (JSON keys): use --format jsonl

    """
    if fmt == "jsonl":
        if model_features is not None and not all(isinstance(f, str) for f in model_features):
            raise ValueError(f"the model's features are {model_features!r} (columns): use --format text")
        return JsonParser(columns, model_features)
    if model_features is not None and model_features != list(range(len(model_features))):
        raise ValueError(f"the model's features are {model_features!r} (JSON keys): use --format jsonl")
    n = len(model_features) if model_features is not None else None
    return NumericParser(columns, n)
