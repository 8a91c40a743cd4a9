"""Strict reading of wire bytes (no server): I-JSON in UTF-8, no duplicate members, limits
checked on the bytes before anything recursive, the canonical form, and the role rules."""

from __future__ import annotations

import time

import pytest

from tests.support import dev_signers, sealed_example
from xregion.codec import MAX_DEPTH, MAX_EVENT_BYTES, MAX_VALUES, check_canonical, encode, parse_strict
from xregion.errors import DuplicateMember, MalformedJson, NotCanonical, OversizedMessage, RoleViolation
from xregion.examples import PAYLOADS
from xregion.lifecycle import LIFECYCLES, Step

SIGNERS = dev_signers()


def event_bytes(name: str = "lead.submitted") -> bytes:
    sender = "COORD" if name.startswith("escalation.") else "BJ"
    return encode(sealed_example(name, SIGNERS[sender]).wire)


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_every_valid_event_is_its_own_canonical_form(name: str) -> None:
    body = event_bytes(name)
    value, canonical_form = parse_strict(body)
    check_canonical(body, canonical_form)
    assert encode(value) == body


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(event_bytes().decode().encode(enc), id=enc)
        for enc in ("utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le")
    ]
    + [
        pytest.param(b"\xef\xbb\xbf" + event_bytes(), id="utf8-bom"),
        pytest.param(b'{"a":"\xed\xa0\x80"}', id="encoded-surrogate"),
        pytest.param(b'{"a":"\xc0\xaf"}', id="overlong"),
        pytest.param(b'{"a":"\\ud800"}', id="lone-high-surrogate-escape"),
        pytest.param(b'{"a":"\\udc00x"}', id="lone-low-surrogate-escape"),
        pytest.param(b'{"a":1e400}', id="1e400"),
        pytest.param(b'{"a":-1e400}', id="minus-1e400"),
        pytest.param(b'{"a":NaN}', id="nan"),
        pytest.param(b'{"a":Infinity}', id="infinity"),
        pytest.param(b'{"a":9007199254740992}', id="int-beyond-2-53"),
        pytest.param(b'{"a":' + b"9" * 5000 + b"}", id="int-5000-digits"),
        pytest.param(b'{"a":1} x', id="trailing-garbage"),
        pytest.param(b'{"a":"x\x00"}', id="raw-nul-in-string"),
        pytest.param(b"\x00" + event_bytes(), id="nul-prefix"),
        pytest.param(b"", id="empty"),
        pytest.param(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), id="too-deep"),
        pytest.param(b"[" * 985 + b"]" * 985, id="985-deep"),
        pytest.param(b"[" + b"0," * MAX_VALUES + b"0]", id="too-many-values"),
        pytest.param(b"[" + b"[]," * MAX_VALUES + b"[]]", id="too-many-containers"),
    ],
)
def test_malformed(body: bytes) -> None:
    with pytest.raises(MalformedJson) as info:
        parse_strict(body)
    assert info.value.code == "malformed_json"


def test_duplicate_member_has_its_own_code() -> None:
    with pytest.raises(DuplicateMember) as info:
        parse_strict(b'{"a":{"b":1,"b":2}}')
    assert info.value.code == "duplicate_member" and info.value.details["member"] == "b"


def test_oversized_before_anything_else() -> None:
    with pytest.raises(OversizedMessage):
        parse_strict(b"[" * (MAX_EVENT_BYTES + 1))


def test_brackets_inside_strings_do_not_count() -> None:
    deep = "[" * 1000
    value, _ = parse_strict(f'{{"a":"{deep}","b":"\\"[[[\\\\"}}'.encode())
    assert value["a"] == deep


@pytest.mark.parametrize(
    "body",
    [b'"' + b'\\"' * 120_000, b'"' + b"\\" * 250_001, b'["' * 80_000, b"[" * 250_000, b"[]," * 80_000],
    ids=["escaped-quotes-unterminated", "backslashes", "open-strings", "open-brackets", "many-arrays"],
)
def test_shape_scan_is_linear_on_hostile_bytes(body: bytes) -> None:
    started = time.perf_counter()
    with pytest.raises(MalformedJson):
        parse_strict(body)
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    "edit",
    [
        lambda b: b + b"\n",
        lambda b: b.replace(b'","', b'", "', 1),
        lambda b: b.replace(b'"specversion":"1.0"', b'"specversion":"\\u0031.0"'),
    ],
    ids=["trailing-newline", "whitespace", "needless-escape"],
)
def test_non_canonical(edit: object) -> None:
    body = edit(event_bytes())  # type: ignore[operator]
    _, canonical_form = parse_strict(body)
    with pytest.raises(NotCanonical) as info:
        check_canonical(body, canonical_form)
    assert info.value.code == "not_canonical"


def test_minus_zero_and_one_point_zero_are_not_canonical() -> None:
    for text, form in ((b'{"a":-0}', b'{"a":0}'), (b'{"a":1.0}', b'{"a":1}'), (b'{"a":1E2}', b'{"a":100}')):
        _, canonical_form = parse_strict(text)
        assert canonical_form == form
        with pytest.raises(NotCanonical):
            check_canonical(text, canonical_form)


@pytest.mark.parametrize(
    ("event_type", "sender", "to"),
    [
        ("escalation.overdue", "BJ", "TJ"),
        ("escalation.reminder", "HE", "TJ"),
        ("lead.submitted", "COORD", "TJ"),
        ("share.alert", "COORD", "ALL"),
        ("lead.accepted", "COORD", "BJ"),
        ("lead.submitted", "AUDIT", "TJ"),
        ("lead.submitted", "BJ", "COORD"),
        ("recognition.published", "BJ", "AUDIT"),
    ],
)
def test_role_rules(event_type: str, sender: str, to: str) -> None:
    with pytest.raises(RoleViolation) as info:
        LIFECYCLES.check_role(event_type, sender, to)
    assert info.value.code == "role_violation"
    with pytest.raises(RoleViolation):
        LIFECYCLES.apply(None, Step(event_type, sender, to, f"{sender}-0190c7a0-3c1e-7b2a-9f00-5e4d3c2b1a00"))


def test_roles_allow_what_the_architecture_allows() -> None:
    LIFECYCLES.check_role("escalation.overdue", "COORD", "TJ")
    LIFECYCLES.check_role("lead.submitted", "BJ", "TJ")
    LIFECYCLES.check_role("share.alert", "HE", "ALL")
