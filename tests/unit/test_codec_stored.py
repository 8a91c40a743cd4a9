"""Reading stored bytes once (:func:`xregion.codec.parse_stored`): bytes that are their own
RFC 8785 canonical form are read without the strict parser and hashed as they are; anything
else, hostile or merely unusual, is read by the strict parser from the start. So the value
and every fault are exactly the strict parser's, and "canonical" is said only of bytes
that ARE ``jcs.dumps`` of their value."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support import dev_signers, sealed_example, stored, strictly
from xregion import codec
from xregion.codec import MAX_DEPTH, MAX_VALUES, decode, decode_stored, encode, parse_json, parse_stored, parse_strict
from xregion.examples import PAYLOADS
from xregion.signing import event_hash, hash_of_canonical

SIGNERS = dev_signers()


def canonical_or_none(value: Any) -> bytes | None:
    try:
        return rfc8785.dumps(value)
    except Exception:
        return None


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_a_sent_event_is_read_once_as_its_canonical_form(name: str) -> None:
    sender = "COORD" if name.startswith("escalation.") else "BJ"
    raw = encode(sealed_example(name, SIGNERS[sender]).wire)
    value, canonical = parse_stored(raw)
    assert canonical
    assert value == codec._loads(raw)
    assert parse_strict(raw) == (value, raw)
    event, canonical = decode_stored(raw)
    assert canonical and event == decode(raw)
    assert hash_of_canonical(raw) == event_hash(event.wire)


HOSTILE = [
    b'{"a":1,"a":1}',  # a duplicate that the canonical form would write once
    b'{"a":1,"a":2}',
    b'{"a":{"b":1,"b":1}}',
    b'{"a":1.5}',  # fractions and exponents: rfc8785's number form, never the quick reading
    b'{"a":1.0}',
    b'{"a":1e21}',
    b'{"a":1e+21}',
    b'{"a":-0}',
    b'{"a":0.0}',
    b'{"a":1e400}',
    b'{"a":NaN}',
    b'{"a":9007199254740991}',
    b'{"a":9007199254740992}',
    b'{"a":-9007199254740992}',
    b'{"\xf0\x9f\x98\x80":1,"\xef\xbf\xbf":2}',  # JCS order (UTF-16): the astral key first
    b'{"\xef\xbf\xbf":2,"\xf0\x9f\x98\x80":1}',  # code point order
    b'{"a":"\xf0\x9f\x98\x80"}',
    b'{"a":"\\ud83d\\ude00"}',  # an escaped pair: JCS writes the character
    b'{"a":"\\ud800"}',
    b'{"a":"\\udc00"}',
    b'{"a":"\xed\xa0\x80"}',  # an encoded surrogate
    b'{"a":"\\u0041"}',  # an escape JCS does not write
    b'{"a":"\\u001F"}',  # upper-case hex
    b'{"a":"\\u001f"}',
    b'{"a":"\\/"}',
    b'{"a":"\x7f\xe2\x80\xa8"}',
    b'{"b":1,"a":2}',  # unsorted
    b'{"a":1} ',
    b' {"a":1}',
    b'\xef\xbb\xbf{"a":1}',
    b'{"a":true,"b":false,"c":null}',
    b'{"a":tru}',
    b"[1,2,3]",
    b"null",
    b'"x"',
    b"7",
    b"",
    b"[" * MAX_DEPTH + b"]" * MAX_DEPTH,
    b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1),  # canonical, but too deep
    b'{"a":"' + b"[" * (MAX_DEPTH + 1) + b'"}',  # brackets inside a string
    b"[" + b"0," * (MAX_VALUES - 1) + b"0]",
    b"[" + b"0," * MAX_VALUES + b"0]",  # canonical, but too many values
    b'{"a":"' + b"," * MAX_VALUES + b'"}',  # commas inside a string
]


@pytest.mark.parametrize("raw", HOSTILE)
def test_bytes_read_quickly_or_not_give_what_the_strict_parser_gives(raw: bytes) -> None:
    assert stored(raw) == strictly(raw)
    assert (stored(raw)[0] == "value") == (strictly(raw)[0] == "value")
    if stored(raw)[0] == "value":
        value, canonical = parse_stored(raw)
        assert not canonical or canonical_or_none(value) == raw  # said only of canonical bytes
        assert parse_json(raw) == value
        assert parse_strict(raw)[1] == rfc8785.dumps(value)


def test_the_quick_reading_refuses_what_it_cannot_prove() -> None:
    for raw in (b'{"a":1.5}', b'{"\xf0\x9f\x98\x80":1,"\xef\xbf\xbf":2}', b"[" * 33 + b"]" * 33, b'{"a":1,"a":1}'):
        assert codec._canonical_value(raw) is codec._NOT_CANONICAL


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(JSON, st.sampled_from(["jcs", "sorted", "spaced", "ascii"]))
def test_any_value_in_any_writing(value: Any, writing: str) -> None:
    try:
        if writing == "jcs":
            raw = rfc8785.dumps(value)
        elif writing == "sorted":
            text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            raw = text.encode("utf-8", "replace")
        elif writing == "spaced":
            raw = json.dumps(value, ensure_ascii=False).encode("utf-8", "replace")
        else:
            raw = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    except Exception:
        return
    assert stored(raw) == strictly(raw)
    if stored(raw)[0] == "value":
        canonical = parse_stored(raw)[1]
        assert not canonical or canonical_or_none(parse_stored(raw)[0]) == raw
        if writing == "jcs" and not _has_float(value):
            assert canonical or not raw.isascii() or raw.count(b"[") + raw.count(b"{") > MAX_DEPTH


def _has_float(value: Any) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_has_float(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_float(v) for v in value)
    return False


def test_orjson_writes_what_jcs_writes_for_every_character_below_u10000() -> None:
    """The premise of the quick reading (:func:`xregion.codec._canonical_value`): for plain
    values whose member names hold no character above U+FFFF, ``orjson`` writes RFC 8785."""
    for code in range(0x10000):
        if 0xD800 <= code <= 0xDFFF:
            continue
        c = chr(code)
        value: dict[str, Any] = {c: [c, "a" + c], "a" + c: c + "b", c + "b": {c: 1}}
        assert orjson.dumps(value, option=codec._AS_JCS) == rfc8785.dumps(value), hex(code)


@pytest.mark.parametrize("number", [2**53 - 1, -(2**53 - 1), 2**53, -(2**53), 2**63, 2**64, 0, -1])
def test_orjson_bounds_integers_as_jcs_does(number: int) -> None:
    raw = b'{"a":' + str(number).encode() + b"}"
    assert stored(raw) == strictly(raw)
    if abs(number) < 2**53:
        assert parse_stored(raw) == ({"a": number}, True)
    else:
        assert codec._canonical_value(raw) is codec._NOT_CANONICAL
