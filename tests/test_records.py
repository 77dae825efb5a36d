"""The vectorised decimal reader against float(), bit for bit, and the parsers' range checks."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from online_em.records import NumericParser, RecordError, parse_decimal_lines


def read(lines: list[bytes]) -> tuple[list[float], list[bool]]:
    data = b"".join(line + b"\n" for line in lines)
    ends = np.flatnonzero(np.frombuffer(data, np.uint8) == ord("\n"))
    values, ok = parse_decimal_lines(data, ends)
    return values.tolist(), ok.tolist()


def same(a: float, b: float) -> bool:
    return np.float64(a).tobytes() == np.float64(b).tobytes()  # tells -0.0 from 0.0


def expected_ok(line: bytes) -> bool:
    """What the reader promises to take: sign, digits with at most one point, <= 16 characters
    after the sign, the digits at most 2**53; a b"\\r" may end the line."""
    line = line[:-1] if line.endswith(b"\r") else line
    body = line[1:] if line[:1] in (b"-", b"+") else line
    digits = body.replace(b".", b"", 1)
    return (0 < len(body) <= 16 and len(digits) > 0 and digits.isdigit() and digits.isascii()
            and int(digits) <= 2**53)


decimals = st.builds(
    lambda sign, head, point, tail: sign + head + point + tail,
    st.sampled_from([b"", b"-", b"+"]),
    st.text("0123456789", max_size=17).map(str.encode),
    st.sampled_from([b"", b"."]),
    st.text("0123456789", max_size=17).map(str.encode),
).flatmap(lambda line: st.sampled_from([line, line + b"\r"]))


@settings(max_examples=300, deadline=None)
@given(st.lists(decimals, min_size=1, max_size=30))
@example([b"-0", b"0.", b".5", b"+.5", b"-", b".", b"", b"007", b"-0.0000000000000001"])
@example([b"9007199254740992", b"9007199254740993", b"900719925474099.3", b"1234567.12345678"])
def test_decimal_lines_read_as_float_reads_them(lines):
    values, ok = read(lines)
    assert ok == [expected_ok(line) for line in lines]
    for line, value, taken in zip(lines, values, ok):
        if taken:
            assert same(value, float(line)), line


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=20).map(lambda b: b.replace(b"\n", b"")), min_size=1, max_size=20))
@example([b"1e5", b"inf", b"nan", b" 1", b"1 ", b"1\r", b"\r", b"-\r", b"1\r\r", b"\r1", b"1_0", b"1,5",
          b"1.2.3", b"--1", b"1-", "٣".encode(), b"1\x00", b"\xff"])
def test_anything_else_is_left_to_float(lines):
    values, ok = read(lines)
    for line, value, taken in zip(lines, values, ok):
        assert taken == expected_ok(line), line
        if taken:
            assert same(value, float(line))


def test_lines_longer_than_the_window_and_mixed_lengths_in_one_buffer():
    lines = [b"1", b"12345678.5", b"-3.25", b"12345678901234.5", b"0.00000000000001", b"7" * 17]
    values, ok = read(lines)
    assert ok == [True, True, True, True, True, False]
    assert values[:5] == [1.0, 12345678.5, -3.25, 12345678901234.5, 1e-14]


def test_an_empty_buffer():
    values, ok = parse_decimal_lines(b"", np.empty(0, np.int64))
    assert values.shape == ok.shape == (0,)


@pytest.mark.parametrize("line, message", [
    (b"1e200", "field 1 is beyond ±1e+152 ('1e200')"),
    (b"nan", "field 1 is not a finite number ('nan')"),
    (b"1, -inf", "field 2 is not a finite number ('-inf')"),
])
def test_values_the_model_cannot_take_are_bad_records(line, message):
    parser = NumericParser(n_features=len(line.split(b",")))
    with pytest.raises(RecordError, match=re.escape(message)):
        parser.parse(line)
    assert parser.parse_block([line]) is None
