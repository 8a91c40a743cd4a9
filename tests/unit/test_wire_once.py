"""The work done once (issue 17): an event's signing input and wire bytes derived from each
other instead of canonicalising twice must be exactly what canonicalising gives, whatever the
event holds — members named ``signature`` nested anywhere, extension attributes after it with
objects inside, non-ASCII text, no members before or after it."""

from __future__ import annotations

import base64
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from xregion.signing import (
    SIGNATURE,
    Signer,
    canonical,
    signing_input,
    signing_input_of_wire,
    wire_of_signing_input,
)

NAMES = st.sampled_from(
    ["addressee", "data", "id", "keyid", "signature", "signaturf", "signatur", "source", "type", "zz", "é", "a"]
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**53) + 1, 2**53 - 1), st.text(max_size=12))
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(NAMES, inner, max_size=4)),
    max_leaves=12,
)
SIGNATURES = st.binary(min_size=64, max_size=64).map(lambda b: base64.b64encode(b).decode("ascii"))


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(NAMES, VALUES, max_size=8), SIGNATURES)
def test_signing_input_from_the_wire_bytes(event: dict[str, Any], signature: str) -> None:
    signed = {**event, SIGNATURE: signature}
    assert signing_input_of_wire(canonical(signed), signed) == signing_input(signed)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(NAMES, VALUES, max_size=8), SIGNATURES)
def test_wire_bytes_from_the_signing_input(event: dict[str, Any], signature: str) -> None:
    unsigned = {k: v for k, v in event.items() if k != SIGNATURE}
    wire = wire_of_signing_input(canonical(unsigned), unsigned, signature)
    assert wire == canonical({**unsigned, SIGNATURE: signature})


def test_a_signature_that_is_not_a_string_falls_back() -> None:
    signed = {"a": 1, SIGNATURE: {"signature": "x"}, "z": [1]}
    assert signing_input_of_wire(canonical(signed), signed) == signing_input(signed)


def test_sign_encoded_is_sign_and_its_canonical_form() -> None:
    signer = Signer.generate("BJ")
    event = {"id": "x", "data": {"signature": "nested", "名": "张"}, "zext": {"signature": "y"}, "time": "t"}
    signed, wire = signer.sign_encoded(event)
    assert signed == signer.sign(event)  # Ed25519 is deterministic
    assert wire == canonical(signed)
