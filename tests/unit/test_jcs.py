"""xregion.jcs.dumps returns exactly rfc8785.dumps's bytes, and raises exactly what it raises.

Property tests compare the two over JSON-like values built to cross every boundary of the
fast path (floats, integers near 2**53, keys above U+FFFF, control characters, U+2028,
surrogates, subclasses, non-``str`` keys); explicit examples pin each boundary; and the
fast path is shown to be the one taken for real events.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from types import MappingProxyType
from typing import Any

import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import dev_signers, sealed_example
from xregion import jcs
from xregion.examples import PAYLOADS

LIMIT = 2**53 - 1

SPECIAL_CHARS = [
    *(chr(i) for i in range(0x20)),
    '"',
    "\\",
    "/",
    "\x7f",
    "\x80",
    "\u00e9",
    "\u2028",
    "\u2029",
    "\ud7ff",
    "\ue000",
    "\ufeff",
    "\uffff",
    "\U00010000",
    "\U0001f600",
    "\U0010ffff",
    "中",
    "a",
    "z",
]
SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
VALID_CHARS = st.one_of(st.sampled_from(SPECIAL_CHARS), st.characters())  # st.characters: no surrogates
ANY_CHARS = st.one_of(VALID_CHARS, SURROGATES)

BOUNDARY_INTS = st.sampled_from([0, 1, -1, LIMIT, LIMIT - 1, LIMIT + 1, -LIMIT, -LIMIT - 1, 2**63, -(2**64)])
INTS = st.one_of(BOUNDARY_INTS, st.integers(), st.integers(min_value=-(2**70), max_value=2**70))
FLOATS = st.one_of(
    st.floats(),  # nan and infinities included: rfc8785 refuses them
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 1e21, 1e20, 1e-6, 1e-7, 0.1, 2.0**53, 5e-324, 1.7976931348623157e308]),
)


class Level(enum.IntEnum):
    LOW = 1


class Colour(enum.StrEnum):
    RED = "red"


class Flag(int):
    pass


class Text(str):
    pass


class Items(list[Any]):
    pass


def json_values(chars: st.SearchStrategy[str], extra: st.SearchStrategy[Any] | None = None) -> st.SearchStrategy[Any]:
    """Recursive JSON-like values: scalars (optionally ``extra`` ones), lists, tuples, dicts."""
    text = st.text(chars, max_size=12)
    keys = st.one_of(st.text(chars, max_size=4), st.sampled_from(SPECIAL_CHARS))
    scalars: st.SearchStrategy[Any] = st.one_of(st.none(), st.booleans(), INTS, FLOATS, text)
    if extra is not None:
        scalars = st.one_of(scalars, extra)

    def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(
            st.lists(children, max_size=6),
            st.lists(children, max_size=4).map(tuple),
            st.dictionaries(keys, children, max_size=6),
        )

    return st.recursive(scalars, containers, max_leaves=40)


def outcome(value: Any) -> tuple[Any, ...]:
    """What ``rfc8785.dumps`` does with ``value``: its bytes, or its exception's type and text."""
    try:
        return ("bytes", rfc8785.dumps(value))
    except Exception as exc:  # the comparison is the point: whatever it raises
        return ("raises", type(exc), str(exc))


def jcs_outcome(value: Any) -> tuple[Any, ...]:
    try:
        return ("bytes", jcs.dumps(value))
    except Exception as exc:
        return ("raises", type(exc), str(exc))


PROPERTY = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- properties ----------------------------------------------------------------------------


@PROPERTY
@given(json_values(VALID_CHARS))
def test_same_outcome_as_rfc8785_without_surrogates(value: Any) -> None:
    assert jcs_outcome(value) == outcome(value)


@PROPERTY
@given(
    json_values(
        VALID_CHARS,
        extra=st.sampled_from([Level.LOW, Colour.RED, Flag(7), Flag(2**60), Text("t\n"), Items([1, "x"])]),
    )
)
def test_same_outcome_as_rfc8785_with_subclasses(value: Any) -> None:
    assert jcs_outcome(value) == outcome(value)


@PROPERTY
@given(json_values(ANY_CHARS))
def test_same_outcome_as_rfc8785_with_surrogates(value: Any) -> None:
    assert jcs_outcome(value) == outcome(value)


@PROPERTY
@given(
    st.recursive(
        st.one_of(st.none(), st.text(VALID_CHARS, max_size=8), st.integers(-LIMIT, LIMIT)),
        lambda children: st.one_of(
            st.lists(children, max_size=5),
            st.dictionaries(
                st.one_of(st.text(VALID_CHARS, max_size=4), st.integers(), st.none()), children, max_size=5
            ),
        ),
        max_leaves=25,
    )
)
def test_same_outcome_as_rfc8785_with_non_str_keys(value: Any) -> None:
    assert jcs_outcome(value) == outcome(value)


@PROPERTY
@given(
    st.dictionaries(
        st.text(st.sampled_from(["a", "\ue000", "\uffff", "\U00010000", "\U0001f600", "\U0010ffff"]), max_size=3),
        st.integers(0, 9),
        max_size=8,
    )
)
def test_key_order_is_utf16_order_around_the_astral_plane(value: dict[str, int]) -> None:
    assert jcs.dumps(value) == rfc8785.dumps(value)


@PROPERTY
@given(json_values(VALID_CHARS))
def test_plain_values_give_the_bytes_of_rfc8785(value: Any) -> None:
    """Values without floats or out-of-range integers canonicalise (no exception at all)."""
    expected = outcome(value)
    if expected[0] == "bytes":
        assert jcs.dumps(value) == expected[1]


# --- the boundaries of the fast path, one by one ---------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (LIMIT, b"9007199254740991"),
        (-LIMIT, b"-9007199254740991"),
        ({"n": [LIMIT, -LIMIT]}, b'{"n":[9007199254740991,-9007199254740991]}'),
        (-0.0, b"0"),
        (0.0, b"0"),
        (1.0, b"1"),
        ({"x": [1.0, -0.0, 1e21, 1e-7, 0.5]}, b'{"x":[1,0,1e+21,1e-7,0.5]}'),
        (1e20, b"100000000000000000000"),
        ("\u007f", b'"\x7f"'),
        ("\u2028\u2029", '"\u2028\u2029"'.encode()),
        ("\x00\x08\t\n\x0b\x0c\r\x1f", b'"\\u0000\\b\\t\\n\\u000b\\f\\r\\u001f"'),
        ('"\\/', b'"\\"\\\\/"'),
        ({"\uffff": 2, "\U0001f600": 1}, '{"\U0001f600":1,"\uffff":2}'.encode()),
        ({"\ue000": 1, "\U00010000": 2, "\ud7ff": 3}, '{"\ud7ff":3,"\U00010000":2,"\ue000":1}'.encode()),
        ({"b": 1, "a": 2, "": 3, "B": 4}, b'{"":3,"B":4,"a":2,"b":1}'),
        ((1, "a", (None,)), b'[1,"a",[null]]'),
        ({"t": True, "f": False, "n": None}, b'{"f":false,"n":null,"t":true}'),
        ({"e": [], "o": {}}, b'{"e":[],"o":{}}'),
        ("中文 😀", '"中文 😀"'.encode()),
        (Level.LOW, b"1"),
        (Flag(5), b"5"),
        (OrderedDict(b=1, a=2), b'{"a":2,"b":1}'),
        (Items([Text("x")]), b'["x"]'),
        (Colour.RED, b'"red"'),
        (True, b"true"),
        (None, b"null"),
    ],
)
def test_boundary_examples(value: Any, expected: bytes) -> None:
    assert rfc8785.dumps(value) == expected  # the reference agrees with the expectation ...
    assert jcs.dumps(value) == expected  # ... and so does the fast implementation


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (LIMIT + 1, rfc8785.IntegerDomainError),
        (-LIMIT - 1, rfc8785.IntegerDomainError),
        ({"a": [2**64]}, rfc8785.IntegerDomainError),
        (float("nan"), rfc8785.FloatDomainError),
        ({"a": float("inf")}, rfc8785.FloatDomainError),
        ("\ud800", rfc8785.CanonicalizationError),
        (["ok", "\udfff"], rfc8785.CanonicalizationError),
        ("\ud83d\ude00", rfc8785.CanonicalizationError),  # a surrogate *pair* is not a character
        ({"\ud800": 1}, UnicodeEncodeError),  # rfc8785 sorts keys by their UTF-16 encoding first
        ({1: "a"}, rfc8785.CanonicalizationError),
        ({None: "a"}, rfc8785.CanonicalizationError),
        (b"bytes", rfc8785.CanonicalizationError),
        ({"a": {1, 2}}, rfc8785.CanonicalizationError),
        (MappingProxyType({"a": 1}), rfc8785.CanonicalizationError),  # a Mapping, not a dict
    ],
)
def test_refused_like_rfc8785(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error) as expected:
        rfc8785.dumps(value)
    with pytest.raises(error) as got:
        jcs.dumps(value)
    assert type(got.value) is type(expected.value)
    assert str(got.value) == str(expected.value)


def test_nesting_beyond_the_fast_depth_gives_the_same_bytes() -> None:
    deep: Any = "leaf"
    for i in range(jcs.MAX_FAST_DEPTH + 10):
        deep = [deep] if i % 2 else {"k": deep}
    assert jcs.dumps(deep) == rfc8785.dumps(deep)


def test_a_cycle_raises_like_rfc8785() -> None:
    loop: list[Any] = []
    loop.append({"self": loop})
    with pytest.raises(RecursionError):
        rfc8785.dumps(loop)
    with pytest.raises(RecursionError):
        jcs.dumps(loop)


# --- the fast path is the one taken ---------------------------------------------------------


class FallbackUsed(Exception):
    pass


def refuse(obj: Any) -> bytes:
    raise FallbackUsed(repr(obj)[:80])


def test_the_patch_below_does_reach_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rfc8785, "dumps", refuse)
    for value in ({"amount": 1.5}, {"n": 2**53}, {"\U0001f600": 1}, {1: "a"}, Level.LOW, "\ud800"):
        with pytest.raises(FallbackUsed):
            jcs.dumps(value)


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_signed_example_events_take_the_fast_path(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    event = sealed_example(name, dev_signers()["BJ"]).wire
    unsigned = {k: v for k, v in event.items() if k != "signature"}
    expected = rfc8785.dumps(event), rfc8785.dumps(unsigned)
    monkeypatch.setattr(rfc8785, "dumps", refuse)
    assert (jcs.dumps(event), jcs.dumps(unsigned)) == expected
