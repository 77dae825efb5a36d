"""Reading records from lines of text: numbers separated by commas or whitespace, or JSON objects.

A parser turns one line (bytes, as read) into a row of floats in the model's feature order, NaN
for a missing value (a field ``NA`` or empty in text; ``null`` or an absent key in JSON lines), or
raises `RecordError` saying what is wrong with it: invalid UTF-8, an empty line, a field that is not
a number, NaN or infinity, a wrong number of fields, invalid JSON, an unexpected key, or no value
at all (every field missing).
Numeric parsers also read whole blocks of lines at once with numpy (`parse_block`), and return
``None`` when a block holds anything unusual, so that the caller falls back to `parse` line by
line and reports each problem exactly.

>>> parser = NumericParser()
>>> parser.parse(b"1.5, 2\\n"), parser.features
([1.5, 2.0], [0, 1])
>>> parser.parse(b"3 4\\n")
[3.0, 4.0]
>>> parser.parse(b"NA,4\\n"), parser.parse(b",5\\n")  # missing values
([nan, 4.0], [nan, 5.0])
>>> parser.parse(b"3 four\\n")
Traceback (most recent call last):
...
online_em.records.RecordError: field 2 is not a number ('four')
>>> parser.parse_block([b"1 2\\n", b"3 4\\n"]).tolist()
[[1.0, 2.0], [3.0, 4.0]]
>>> parser.parse_block([b"1 2\\n", b"nan 4\\n"]) is None  # has a problem: parse line by line
True

Fields are separated by commas if a line has one, else by tabs if it has one (exactly, as
``cut -f`` splits: two tabs make an empty field), else by runs of spaces; ``delimiter`` fixes the
separator instead. Surrounding whitespace is ignored. A first line that looks like a number with
thousands separators (``1,000``) is refused rather than read as several fields (give the delimiter
to mean fields). Quoted text in messages is cut to 80 characters.

A single column of plain decimals, the common case of a stream, has a faster route still:
`parse_decimal_lines` reads every line of a buffer at once with vectorised integer arithmetic.

"""

from __future__ import annotations

import re
import typing

import numpy as np

from .validation import MAX_ABS_VALUE, shorten

__all__ = [
    "DELIMITERS", "JsonParser", "NumericParser", "RecordError", "make_parser", "parse_columns", "parse_decimal_lines",
]

DELIMITERS = {"comma": ",", "tab": "\t", "space": " "}  # --delimiter: the names and their separators
_THOUSANDS = re.compile(r"[+-]?[0-9]{1,3}(,[0-9]{3})+(\.[0-9]*)?")
MISSING_FIELDS = ("NA", "")  # text fields that are missing values
_MISSING = float("nan")


class RecordError(ValueError):
    """One line that is not a valid record; the message says why."""


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RecordError(f"invalid UTF-8 (byte {raw[error.start]:#04x} at position {error.start + 1})") from None


def _in_range(value: float) -> bool:
    """Finite and small enough for the model (whose squares of deviations must not overflow)."""
    return -MAX_ABS_VALUE <= value <= MAX_ABS_VALUE  # False for NaN too


def _range_problem(value: float) -> str:
    return "is not a finite number" if value - value != 0.0 else f"is beyond ±{MAX_ABS_VALUE:g}"


def _check_observed(row: list[float], why: typing.Callable[[], list[str]]) -> None:
    """RecordError unless a value of the row is observed; `why()` says of each why it is missing."""
    for value in row:
        if value == value:
            return
    reasons = why()
    listed = reasons[0] if len(reasons) == 1 else ", ".join(reasons[:-1]) + " and " + reasons[-1]
    raise RecordError(f"no value: {listed}")


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
        raise ValueError(f"empty column name in {shorten(text)}")
    if len(set(names)) != len(names):
        raise ValueError(f"repeated column in {shorten(text)}")
    if fmt == "jsonl":
        return names
    columns = []
    for name in names:
        if not name.isdigit():
            raise ValueError(f"columns are numbers from 1 (as for cut -f), got {shorten(name)}")
        if len(name) > 9:
            raise ValueError(f"column number too large: {shorten(name)}")
        if int(name) < 1:
            raise ValueError(f"column numbers start at 1, got {shorten(name)}")

        columns.append(int(name))
    return columns


class NumericParser:
    """Lines of numbers separated by commas, tabs or spaces (see the module docstring), or by
    `delimiter` (``","``, ``"\\t"`` or ``" "`` for runs of whitespace) when it is given.

    Without `columns`, every line must have the same number of fields as the first valid one (or
    as `n_features`, when the model already has features); the features are named 0..D-1. With
    `columns` (1-based numbers), those fields are picked, in that order, from lines that have at
    least as many fields as the largest column number; the other fields may be anything. A
    first line with more than `max_features` fields is refused before its fields are read.

    >>> parser = NumericParser(columns=[3, 1])
    >>> parser.parse(b"10,20,30,40")
    [30.0, 10.0]
    >>> parser.parse(b"10,20")
    Traceback (most recent call last):
    ...
    online_em.records.RecordError: expected at least 3 fields, got 2

    """

    def __init__(self, columns: list[int] | None = None, n_features: int | None = None,
                 delimiter: str | None = None, max_features: int | None = None):
        if delimiter not in (None, *DELIMITERS.values()):
            raise ValueError(f"the delimiter is one of {sorted(DELIMITERS.values())!r}, got {shorten(delimiter)}")
        self.columns = columns
        self.delimiter = delimiter
        self.max_features = max_features
        if columns is not None:
            if n_features is not None and n_features != len(columns):
                raise ValueError(f"the model has {n_features} feature(s), but --columns picks {len(columns)}")
            n_features = len(columns)
            self._indexes = [c - 1 for c in columns]
            self._min_fields = max(columns)
        self._set_width(n_features)

    def _set_width(self, n_features: int | None) -> None:
        self.n_features = n_features
        # One number a line and no columns to pick: float() reads a whole line (bytes) at once. It
        # takes surrounding ASCII whitespace and rejects what the checks would (commas, several
        # fields, non-ASCII), so a line it reads to a finite value within range is a good record.
        # (Not with an exact tab: float() would take a line "\t5", which has two fields.)
        self.single = n_features == 1 and self.columns is None and self.delimiter != "\t"

    @property
    def features(self) -> list | None:
        """The feature names: 0..D-1, or None until the number of fields is known."""
        return None if self.n_features is None else list(range(self.n_features))

    def _fields(self, raw: bytes) -> list[str]:
        text = _decode(raw)
        if not text.strip():
            raise RecordError("empty line")
        delimiter = self.delimiter
        if delimiter is None:
            text = text.strip()
            delimiter = "," if "," in text else "\t" if "\t" in text else " "
            if delimiter == "," and self.n_features is None and _THOUSANDS.fullmatch(text):
                raise RecordError("looks like a number with thousands separators: remove them, "
                                  "or give --delimiter comma to read the parts as fields")
        else:
            text = text.rstrip("\r\n")
        fields = text.split() if delimiter == " " else [field.strip() for field in text.split(delimiter)]
        if self.n_features is None and self.max_features is not None and len(fields) > self.max_features:
            raise RecordError(f"{len(fields)} fields, more than the {self.max_features} features the model may have "
                              "(--max-size)")
        return fields

    def parse(self, raw: bytes) -> list[float]:
        """One line as a row of floats (RecordError if it is not a valid record)."""
        if self.single:  # see _set_width; what float() rejects goes the long way
            try:
                value = float(raw)
            except ValueError:
                pass
            else:
                if -MAX_ABS_VALUE <= value <= MAX_ABS_VALUE:  # _in_range, inline: it runs a line
                    return [value]
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
                if field in MISSING_FIELDS:
                    row.append(_MISSING)
                    continue
                raise RecordError(f"field {number} is not a number ({shorten(field)})") from None
            if not _in_range(value):
                raise RecordError(f"field {number} {_range_problem(value)} ({shorten(field)})")
            row.append(value)
        _check_observed(row, lambda: [f"field {n} is {'empty' if not f else f}" for n, f in picked])
        if self.n_features is None:
            self._set_width(len(row))
        return row

    def parse_block(self, lines: list[bytes]) -> np.ndarray | None:
        """Many lines at once as an (n, D) array, or None if any line needs a closer look."""
        if not lines or (self.n_features is None and self.columns is None):
            return None  # the first lines, which fix the number of fields, go one by one
        delimiter = None if self.delimiter is None else self.delimiter.encode()
        try:
            if self.single:
                joined = b"\n".join(lines)  # the lines may come with or without their b"\n"
                if b"," in joined:
                    return None
                tokens = joined.split()
                # as many tokens as lines and no blank line: exactly one number a line
                if len(tokens) != len(lines) or not all(map(bytes.strip, lines)):
                    return None
                matrix = np.array(tokens, dtype=np.float64)[:, None]
            else:
                rows = [_split(line, delimiter) for line in lines]
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
        if not (np.abs(matrix) <= MAX_ABS_VALUE).all():  # NaN, infinities, too large
            return None
        return matrix

    def parse_lines(self, data: bytes, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Every line of a buffer at once, when lines hold one number and no columns are picked:
        `parse_decimal_lines` (values as an (n, 1) matrix); otherwise None.

        >>> parser = NumericParser()  # the first line, one number, sets the number of fields
        >>> values, ok = parser.parse_lines(b"1.5\\n2 3\\n", np.array([3, 7]))
        >>> values.tolist(), ok.tolist(), parser.n_features
        ([[1.5], [...]], [True, False], 1)

        """
        if self.n_features is None and self.columns is None and len(ends):
            if parse_decimal_lines(data, ends[:1])[1][0]:
                self._set_width(1)  # as parse() of that first line would
        if not self.single:
            return None
        values, ok = parse_decimal_lines(data, ends)
        return values[:, None], ok


def _split(line: bytes, delimiter: bytes | None) -> list[bytes]:
    """The fields of a line as `NumericParser._fields` splits them (without its checks)."""
    if delimiter is None:
        delimiter = b"," if b"," in line else b"\t" if b"\t" in line.strip() else b" "
    return line.split() if delimiter == b" " else line.split(delimiter)


class JsonParser:
    """JSON objects, one a line, whose values (for the feature keys) are finite numbers, or
    ``null`` for a missing value (so is an absent key).

    Without `columns`, the keys of the first valid object (or the model's features) are the
    features and no object may have other keys; with `columns`, those keys are read and the
    others ignored. The features are ordered as the model orders them (sorted).

    >>> parser = JsonParser()
    >>> parser.parse(b'{"y": 2, "x": 1.5}'), parser.features
    ([1.5, 2.0], ['x', 'y'])
    >>> parser.parse(b'{"x": 1, "y": true}')
    Traceback (most recent call last):
    ...
    online_em.records.RecordError: value of 'y' is not a number (True)
    >>> parser.parse(b'{"y": 3}'), parser.parse(b'{"x": 1, "y": null}')
    ([nan, 3.0], [1.0, nan])

    """

    def __init__(self, columns: list[str] | None = None, features: list | None = None,
                 max_features: int | None = None):
        import json  # here: start-up need not pay for it when no JSON is read

        from .features import sorted_features

        self._loads, self._JSONDecodeError = json.loads, json.JSONDecodeError
        self._sort = sorted_features
        self.columns = columns
        self.max_features = max_features
        if columns is not None and features is not None and set(columns) != set(features):
            raise ValueError(f"the model's features are {shorten(features)}, but --columns picks {shorten(columns)}")
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
            record = self._loads(text)
        except self._JSONDecodeError as error:
            raise RecordError(f"invalid JSON ({error.msg} at column {error.colno})") from None
        except RecursionError:
            raise RecordError("invalid JSON (nested too deeply)") from None
        except ValueError:  # Python's limit on the digits of an integer (4300), or the like
            raise RecordError("invalid JSON (a number with too many digits)") from None
        if not isinstance(record, dict):
            raise RecordError(f"expected a JSON object, got {type(record).__name__}")
        features = self.features
        if features is None:
            if not record:
                raise RecordError("empty JSON object")
            if self.max_features is not None and len(record) > self.max_features:
                raise RecordError(f"{len(record)} keys, more than the {self.max_features} features the model may "
                                  "have (--max-size)")
            features = self._sort(record)
        elif self.columns is None and record.keys() != self._keys:
            extra = [k for k in record if k not in self._keys]
            if extra:
                raise RecordError(f"unexpected key {shorten(extra[0])} (the features are {shorten(features)})")
        row = []
        for key in features:
            value = record.get(key)
            if value is None:  # null or absent: a missing value
                row.append(_MISSING)
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise RecordError(f"value of {shorten(key)} is not a number ({shorten(value)})")
            try:
                value = float(value)
            except OverflowError:
                raise RecordError(f"value of {shorten(key)} is too large") from None
            if not _in_range(value):
                raise RecordError(f"value of {shorten(key)} {_range_problem(value)} ({shorten(value)})")
            row.append(value)
        _check_observed(row, lambda: [f"{shorten(k)} is {'null' if k in record else 'absent'}" for k in features])
        if self.features is None:
            self.features = features
            self._keys = set(features)
        return row

    def parse_block(self, lines: list[bytes]) -> None:
        """JSON lines are always parsed one by one."""
        return None

    def parse_lines(self, data: bytes, ends: np.ndarray) -> None:
        """JSON lines are always parsed one by one."""


def make_parser(fmt: str, columns: list | None, model_features: list | None, delimiter: str | None = None,
                max_features: int | None = None):
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
            raise ValueError(f"the model's features are {shorten(model_features)} (columns): use --format text")
        return JsonParser(columns, model_features, max_features)
    if model_features is not None and model_features != list(range(len(model_features))):
        raise ValueError(f"the model's features are {shorten(model_features)} (JSON keys): use --format jsonl")
    n = len(model_features) if model_features is not None else None
    return NumericParser(columns, n, delimiter, max_features)


# ---------------------------------------------------------------------- vectorised decimals
#
# Each line is seen through the 16 bytes before its b"\n", loaded as two little-endian 64-bit
# words (unaligned loads through a byte-strided view), so a line is a pair of integers and every
# step is one numpy operation over all lines: "SIMD within a register", where eight digits combine
# in three multiplications. The word holding the last 8 characters is "high", the 8 before "low";
# in a word, the byte at the lowest address is the least significant.

_WINDOW = 16  # characters after the sign seen per line; longer lines go the slow way
_ZEROS = np.uint64(0x3030303030303030)  # b"00000000"
_POINTS = np.uint64(0x2E2E2E2E2E2E2E2E)  # b"........"
_LOW7 = np.uint64(0x7F7F7F7F7F7F7F7F)
_HIGH = np.uint64(0x8080808080808080)
_OVER_9 = np.uint64(0x7676767676767676)  # + this sets a byte's high bit when the byte is over 9
_FF = np.uint64(0xFF)
_SEVEN = np.uint64(7)
# _TOP[j]: the j most significant bytes of a word, i.e. its last j characters
_TOP = np.array([0] + [(1 << 64) - (1 << (64 - 8 * j)) for j in range(1, 9)], dtype=np.uint64)
_POW10_INT = 10 ** np.arange(_WINDOW + 1, dtype=np.int64)
_POW10 = 10.0 ** np.arange(_WINDOW + 1)  # exact doubles (all powers up to 1e22 are)
_MAX_EXACT = 2**53  # integers up to this are exact doubles


def _words(padded: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The uint64 (little-endian) made of the 8 bytes of `padded` from each offset on."""
    view = np.ndarray(shape=(len(padded) - 7,), dtype="<u8", buffer=padded, strides=(1,))
    return view.take(offsets)


def _eight_digits(v: np.ndarray) -> np.ndarray:
    """Words of 8 digit values (0..9 a byte, the first digit in the lowest byte) as integers.

    >>> int(_eight_digits(np.frombuffer(bytes(range(1, 9)), "<u8"))[0])
    12345678

    """
    v = v * np.uint64(10) + (v >> np.uint64(8))  # pairs of digits, in 16-bit lanes
    v &= np.uint64(0x00FF00FF00FF00FF)
    v = v * np.uint64(100) + (v >> np.uint64(16))  # fours, in 32-bit lanes
    v &= np.uint64(0x0000FFFF0000FFFF)
    v = v * np.uint64(10000) + (v >> np.uint64(32))
    return v & np.uint64(0xFFFFFFFF)


def _zero_bytes(x: np.ndarray) -> np.ndarray:
    """0x80 in each byte of x that is zero, 0 in the others (exact: no carries between bytes)."""
    return ~(((x & _LOW7) + _LOW7) | x | _LOW7)


def _marked_byte(marks: np.ndarray) -> np.ndarray:
    """The index (0..7) of the byte holding the one 0x80 mark of each word (meaningless without):
    read from the exponent of the word as a double, exact for a power of two."""
    return ((marks.astype(np.float64).view(np.int64) >> 52) - (1023 + 7)) >> 3


def _digits_and_point(word: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For one word of each line and the mask of its bytes that belong to the number: the digit
    values (the point, if any, reads as 0), the marks of points, and whether a byte is neither."""
    word &= keep
    points = _zero_bytes(word ^ _POINTS) & keep
    digits = (word ^ _ZEROS) & keep & ~((points >> _SEVEN) * _FF)
    other = (((digits & _LOW7) + _OVER_9) | digits) & _HIGH
    return digits, points, other != 0


def parse_decimal_lines(data: bytes, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The numbers on lines of `data`, all at once: the lines end at the offsets `ends` (of their
    b"\\n"), the first starts at 0 and each of the others right after the one before.

    Returns the values and which lines were read (`ok`): those holding an optional sign, then
    digits with at most one point among them (and at least one digit), at most 16 characters after
    the sign, and digits that make at most 2**53 as an integer; a b"\\r" may end the line. Their
    value is then exactly float()'s: the digits as an integer and a power of ten up to 1e16 are
    exact doubles, so one division rounds correctly (Clinger's fast path). Anything else (spaces,
    exponents, inf, commas, empty lines, longer numbers) is not ok, with a meaningless value: read
    it with float().

    >>> data = b"37.4402\\n-0.5\\n+7\\r\\n1e3\\n.25\\n\\n1234567.12345678\\n123456789.12345678\\n"
    >>> values, ok = parse_decimal_lines(data, np.flatnonzero(np.frombuffer(data, np.uint8) == 10))
    >>> ok.tolist()
    [True, True, True, False, True, False, True, False]
    >>> values[ok].tolist()
    [37.4402, -0.5, 7.0, 0.25, 1234567.12345678]

    """
    n = len(ends)
    raw = np.frombuffer(data, np.uint8)
    starts = np.empty(n, np.int64)
    starts[:1] = 0
    starts[1:] = ends[:-1] + 1
    first = raw[starts] if n else np.empty(0, np.uint8)  # the b"\n" itself for an empty line
    signed = (first == ord("-")) | (first == ord("+"))
    padded = np.empty(len(raw) + _WINDOW, np.uint8)  # room for the windows of the first lines
    padded[:_WINDOW] = 0
    padded[_WINDOW:] = raw
    stop = ends - (padded[ends + (_WINDOW - 1)] == ord("\r"))  # where the number ends
    length = stop - starts - signed  # characters after the sign
    high, points_high, other = _digits_and_point(_words(padded, stop + 8), _TOP[np.clip(length, 0, 8)])
    value = _eight_digits(high)
    point = np.where(points_high != 0, 7 - _marked_byte(points_high), 0)
    n_points = (points_high != 0).astype(np.int64)
    if n and length.max() > 8:  # the low words matter only for lines of more than 8 characters
        low, points_low, other_low = _digits_and_point(_words(padded, stop), _TOP[np.clip(length - 8, 0, 8)])
        value += _eight_digits(low) * np.uint64(10**8)
        point = np.where(points_low != 0, 15 - _marked_byte(points_low), point)
        n_points += points_low != 0
        other |= other_low
        other |= (points_low & (points_low - np.uint64(1))) != 0  # two points in one word
    other |= (points_high & (points_high - np.uint64(1))) != 0
    ok = ~other & (n_points <= 1) & (length <= _WINDOW) & (length > n_points)
    # With a point, `value` holds the digits before it one place too far left (the point read as a
    # 0 digit): value = head * 10**(point + 1) + tail, and the number's digits are head * 10**point
    # + tail. Without one, point = 0 and the divisor 10**16 makes head 0.
    digits = value.view(np.int64)
    head = digits // _POW10_INT[np.where(n_points == 1, point + 1, _WINDOW)]
    digits -= 9 * head * _POW10_INT[point]
    ok &= digits <= _MAX_EXACT
    values = digits.astype(np.float64)
    values /= _POW10[point]
    np.negative(values, out=values, where=first == ord("-"))
    return values, ok
