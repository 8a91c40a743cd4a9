"""A sender with real keys against the quick reading of canonical bytes
(:func:`xregion.codec.parse_stored`): bytes that ``orjson`` reads and writes back unchanged
but that the strict parser refuses, or reads the same yet RFC 8785 writes otherwise, would
let the receiver, the coordinator and the auditor disagree, or put two byte strings under
one signature or hash. Each case below is one that ``orjson`` alone round-trips (checked:
the test pins the guard in :func:`xregion.codec._canonical_value`, not ``orjson``), so it
fails if that guard (size, commas, brackets, bytes from F0, the float scan, the integer
bound, sorted keys) is weakened. The oracle is the strict parser (:func:`codec._loads`)
and ``rfc8785.dumps``."""

from __future__ import annotations

import base64
import random
from typing import Any

import orjson
import pytest
import rfc8785

from tests.support import dev_signers, sealed_example, stored, strictly
from xregion import codec
from xregion.codec import (
    MAX_DEPTH,
    MAX_EVENT_BYTES,
    MAX_VALUES,
    decode_stored,
    encode,
    parse_json,
    parse_stored,
    parse_strict,
)
from xregion.errors import DuplicateMember, MalformedJson, OversizedMessage
from xregion.examples import PAYLOADS
from xregion.signing import SIGNATURE, event_hash, hash_of_canonical, signing_input, signing_input_of_wire

SIGNERS = dev_signers()


def orjson_round_trips(raw: bytes) -> bool:
    """Whether ``orjson`` alone (no guard) reads ``raw`` and writes it back unchanged."""
    try:
        return orjson.dumps(orjson.loads(raw), option=orjson.OPT_SORT_KEYS) == raw
    except (ValueError, TypeError):
        return False


def assert_as_strict(raw: bytes) -> None:
    """``parse_stored`` gives the strict parser's value or fault, and calls ``raw``
    canonical only if it is ``rfc8785.dumps`` of that value."""
    assert stored(raw) == strictly(raw)
    if stored(raw)[0] == "value":
        value, canonical = parse_stored(raw)
        assert not canonical or rfc8785.dumps(value) == raw
        assert parse_strict(raw) == (value, rfc8785.dumps(value))
        assert parse_json(raw) == value


def event_bytes(name: str = "lead.submitted") -> bytes:
    sender = "COORD" if name.startswith("escalation.") else "BJ"
    return encode(sealed_example(name, SIGNERS[sender]).wire)


def _string_of(size: int) -> bytes:
    """A canonical JSON string of exactly ``size`` bytes."""
    return b'"' + b"a" * (size - 2) + b'"'


# --- size, commas, brackets: canonical to orjson, refused by the strict parser --------------


def test_canonical_bytes_one_byte_over_the_size_limit_are_oversized() -> None:
    raw = _string_of(MAX_EVENT_BYTES + 1)
    assert orjson_round_trips(raw)
    assert_as_strict(raw)
    for parse in (parse_stored, parse_strict, parse_json, decode_stored):
        with pytest.raises(OversizedMessage):
            parse(raw)
    assert parse_stored(_string_of(MAX_EVENT_BYTES)) == ("a" * (MAX_EVENT_BYTES - 2), True)


def test_a_signed_event_padded_beyond_the_size_limit_is_oversized() -> None:
    wire = sealed_example("lead.submitted", SIGNERS["BJ"]).wire
    pad = MAX_EVENT_BYTES + 1 - len(encode({**wire, "zpad": ""}))
    raw = encode(SIGNERS["BJ"].sign({**wire, "zpad": "x" * pad}))
    assert len(raw) == MAX_EVENT_BYTES + 1 and orjson_round_trips(raw)
    with pytest.raises(OversizedMessage):
        parse_stored(raw)
    assert_as_strict(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a":' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1),
        b"[" * MAX_DEPTH + b"{}" + b"]" * MAX_DEPTH,
        b'{"a":[' * ((MAX_DEPTH + 1) // 2) + b"[]" + b"]}" * ((MAX_DEPTH + 1) // 2),
        b"[" + b"[]," * MAX_VALUES + b"[]]",
        b'{"a":[' + b"0," * MAX_VALUES + b'0],"b":1}',
    ],
    ids=["objects-33-deep", "33-deep-mixed", "alternating-deep", "many-containers", "many-values-in-object"],
)
def test_canonical_shapes_beyond_the_limits_are_refused_as_strictly(raw: bytes) -> None:
    assert orjson_round_trips(raw)
    with pytest.raises(MalformedJson):
        parse_stored(raw)
    assert_as_strict(raw)


# --- numbers: orjson writes them back unchanged, RFC 8785 otherwise (or not at all) ---------


@pytest.mark.parametrize(
    "raw",
    [
        b"1.0",
        b"-0.0",
        b"100.0",
        b"1e+20",
        b'{"a":1.0}',
        b'{"a":-0.0}',
        b'{"a":1e+20}',
        b"[[1.0]]",
        b'[0,"1.0",1.0]',
        b'{"a":[{"b":-0.0}]}',
        b'{"a":{"b":[0,{"c":100.0}]}}',
        b'{"a":true,"b":[null,false,[[[2.0]]]]}',
    ],
)
def test_floats_orjson_writes_back_are_not_called_canonical(raw: bytes) -> None:
    assert orjson_round_trips(raw) and rfc8785.dumps(orjson.loads(raw)) != raw
    assert codec._canonical_value(raw) is codec._NOT_CANONICAL
    assert parse_stored(raw)[1] is False
    assert_as_strict(raw)


@pytest.mark.parametrize(
    "number", [2**53, -(2**53), 2**53 + 1, 2**63 - 1, -(2**63), 2**64 - 1, 2**64, 10**20, -(10**19)]
)
def test_integers_beyond_i_json_are_refused_quickly_or_not(number: int) -> None:
    for raw in (str(number).encode(), b'{"a":[' + str(number).encode() + b"]}"):
        with pytest.raises(MalformedJson):
            parse_stored(raw)
        assert_as_strict(raw)


# --- member names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a":{"\xef\xbf\xbf":2,"\xf0\x9f\x98\x80":1}}',  # code point order, nested
        b'[{"\xee\x80\x80":1,"\xf0\x90\x80\x80":2}]',  # U+E000 before U+10000: not UTF-16 order
        b'{"x\xef\xbf\xbd":1,"x\xf4\x8f\xbf\xbf":2}',  # a common prefix, then U+FFFD / U+10FFFF
    ],
)
def test_member_names_above_u_ffff_in_code_point_order_are_not_canonical(raw: bytes) -> None:
    assert orjson_round_trips(raw) and rfc8785.dumps(orjson.loads(raw)) != raw
    assert parse_stored(raw)[1] is False
    assert_as_strict(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a":1,"a":1}',
        b'{"' + b"k" * 100 + b'":1,"' + b"k" * 100 + b'":1}',  # names too long for orjson's key cache
        b'{"\xc3\xa9":1,"\xc3\xa9":1}',
        b'{"\\u0000":1,"\\u0000":1}',
        b'{"":[],"":[]}',
        b'[{"a":{"b":0,"b":0}}]',
        b'{"a":1,"b":{"c":"","c":""},"d":2}',
    ],
)
def test_duplicate_members_are_refused_though_orjson_keeps_one(raw: bytes) -> None:
    with pytest.raises(DuplicateMember):
        parse_stored(raw)
    assert_as_strict(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"":1,"\\u0000":2,"\\u0000\\u0000":3,"a":4,"a\\u0000":5,"a\\u0001":6}',  # NULs order and survive
        b'{"\\"":1,"\\\\":2,"\x7f":3,"\xc2\x80":4,"\xe2\x80\xa8":5,"\xef\xbb\xbf":6,"\xef\xbf\xbe":7}',
        b'["\\u0000\\u001f\\b\\t\\n\\f\\r\\"\\\\/\x7f\xe2\x80\xa8\xe2\x80\xa9\xef\xbf\xbf"]',
    ],
)
def test_canonical_texts_with_unusual_characters_are_read_quickly_as_strictly(raw: bytes) -> None:
    assert rfc8785.dumps(codec._loads(raw)) == raw
    assert parse_stored(raw) == (codec._loads(raw), True)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a":"\\/"}',
        b'{"a":"\\u007f"}',
        b'{"a":"\\u2028"}',
        b'{"a":"\\u001F"}',
        b'{"a":"\\u00e9"}',
        b'{"a":"\\ud83d\\ude00"}',
        b'{"a":"\\ud800"}',
        b'{"a":"\xed\xa0\x80"}',
        b'{"a":"\xc0\xaf"}',
        b'{"a":"\xe0\x80\xaf"}',
        b'{"a":"\xf4\x90\x80\x80"}',
        b'{"a":"\xff"}',
        b'\xef\xbb\xbf{"a":1}',
        b'{"a":1}\x00',
        b'{"a":1}\n',
        b'{"a":"x\x00"}',
        b'{"a":"\x1f"}',
    ],
)
def test_escapes_and_encodings_rfc8785_does_not_write_are_not_canonical(raw: bytes) -> None:
    assert_as_strict(raw)
    if stored(raw)[0] == "value":
        assert parse_stored(raw)[1] is False


def test_a_bytearray_is_read_as_its_bytes() -> None:
    raw = event_bytes()
    assert parse_stored(bytearray(raw)) == parse_stored(raw)  # type: ignore[arg-type]  # not the contract, but safe
    assert stored(bytearray(raw)) == strictly(raw)  # type: ignore[arg-type]


# --- the signing input cut from the bytes ------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        {"data2": ',"signature":"AAAA"}'},  # a value that ends like the signature member
        {"zz": '","signature":"AAAA"}'},  # after "signature" in JCS order, a look-alike tail
        {"a": {"signature": "AAAA"}, "zz": [{"signature": "AAAA"}]},  # nested members of that name
        {"signature\u0000": "x", "signaturf": "y", "signatura": "z"},  # names next to it in order
        {"": "first", "~": "last"},
        {"\u00e9": "a member name that is not ASCII"},
    ],
    ids=["value-like-member", "tail-look-alike", "nested-signature", "neighbour-names", "edge-names", "non-ascii"],
)
def test_the_signing_input_cut_from_the_bytes_is_what_rfc8785_writes(extra: dict[str, Any]) -> None:
    signer = SIGNERS["BJ"]
    wire = sealed_example("lead.submitted", signer).wire
    signed = signer.sign({**{k: v for k, v in wire.items() if k != SIGNATURE}, **extra})
    raw = rfc8785.dumps(signed)
    value, canonical = parse_stored(raw)
    assert canonical and value == signed
    cut = signing_input_of_wire(raw, value)
    unsigned = {k: v for k, v in signed.items() if k != SIGNATURE}
    assert cut == signing_input(value) == rfc8785.dumps(unsigned)
    signer.verify_key.verify(cut, base64.b64decode(value[SIGNATURE]))
    assert hash_of_canonical(raw) == event_hash(value)


def test_the_signature_member_moved_out_of_place_is_not_canonical() -> None:
    raw = event_bytes()
    value = orjson.loads(raw)
    moved = orjson.dumps({SIGNATURE: value[SIGNATURE], **{k: v for k, v in value.items() if k != SIGNATURE}})
    assert moved != raw and stored(moved) == strictly(moved)
    assert parse_stored(moved)[1] is False


# --- mutations of signed events ---------------------------------------------------------------

_INSERTS = [
    b'"', b"\\", b",", b":", b"{", b"}", b"[", b"]", b"\\u0000", b"\\u00", b"\x00", b"\x7f", b"\xed\xa0\x80",
    b"\xc0\xaf", b"\xef\xbb\xbf", b"\xf0\x9f\x98\x80", b"\xe2\x80\xa8", b"-0", b"1.0", b"-0.0", b"1e+20",
    b"9007199254740992", b'"signature":', b',"signature":"x"', b" ", b"\n", b"\\/", b"\\ud800",
    b"\\ud83d\\ude00", b"\xff", b"\xc3", b"true", b"null", b"0", b"00", b'\\"', b'"a":1,"a":1', b"\\n",
    b"\\u001f", b"\\u001F", b"\t",
]  # fmt: skip


@pytest.mark.parametrize("seed", range(4))
def test_mutated_signed_events_are_read_as_strictly(seed: int) -> None:
    """Random edits of real signed events: same value or fault as the strict parser; where the
    bytes are called canonical, they are RFC 8785 of the value, their hash is the event's and
    the signing input cut from them is the one written from the value."""
    events = [event_bytes(name) for name in sorted(PAYLOADS)]
    rnd = random.Random(seed)
    quick = 0
    for _ in range(1500):
        raw = bytearray(rnd.choice(events))
        for _ in range(rnd.randrange(1, 4)):
            op, at = rnd.randrange(4), rnd.randrange(len(raw) + 1)
            if op == 0:
                raw[at:at] = rnd.choice(_INSERTS)
            elif op == 1:
                del raw[at : at + rnd.randrange(1, 8)]
            elif op == 2 and at < len(raw):
                raw[at] = rnd.randrange(256)
            else:
                start, end = sorted((at, rnd.randrange(len(raw) + 1)))
                raw[start:end] = raw[start:end][: rnd.randrange(40)]
        body = bytes(raw)
        assert stored(body) == strictly(body), body
        if stored(body)[0] == "value" and parse_stored(body)[1]:
            quick += 1
            value = parse_stored(body)[0]
            assert rfc8785.dumps(value) == body
            if isinstance(value, dict) and isinstance(value.get(SIGNATURE), str):
                assert signing_input_of_wire(body, value) == signing_input(value)
    assert quick > 100  # the quick reading was exercised
