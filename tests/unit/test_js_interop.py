"""The JavaScript reference implementation (adapters/examples/js) interoperates with Python.

JS-signed events verify with :class:`KeyRoster`, Python-signed events verify in JS, both
produce the same canonical bytes and, Ed25519 being deterministic, the same signatures.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from tests.support import (
    dev_roster,
    dev_seed,
    dev_signers,
    example_event,
    example_payload,
    recipe_blocks,
    roster_key,
)
from xregion.codec import decode, encode
from xregion.envelope import GENESIS_HASH
from xregion.errors import BadSignature
from xregion.signing import KeyRoster, Signer, canonical, signing_input

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node (Node.js >= 18) is not on PATH")

JS = Path(__file__).resolve().parents[2] / "adapters" / "examples" / "js"
SIGN = JS / "sign-event.mjs"
VERIFY = JS / "verify-event.mjs"
RECIPE_SEED = hashlib.sha256(b"xregion-signing-recipe-example").digest()
ESCAPES = '他说："不属本市管辖"\n第二行\t制表符 \\ 反斜杠 \u0001 \u2028 😀 é'


def node(script: Path, *args: str, stdin: str | bytes) -> subprocess.CompletedProcess[bytes]:
    assert NODE is not None
    data = stdin.encode("utf-8") if isinstance(stdin, str) else stdin
    return subprocess.run([NODE, str(script), *args], input=data, capture_output=True, timeout=60, check=False)


def js_sign(event: dict[str, Any], seed: bytes) -> bytes:
    done = node(SIGN, seed.hex(), "-", stdin=json.dumps(event, ensure_ascii=False, indent=1))
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def js_canonical(value: Any) -> bytes:
    done = node(SIGN, "--canonical", stdin=json.dumps(value, ensure_ascii=True))
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def js_verify(event: dict[str, Any], public_key: bytes) -> subprocess.CompletedProcess[bytes]:
    b64 = base64.b64encode(public_key).decode("ascii")
    return node(VERIFY, b64, stdin=json.dumps(event, ensure_ascii=False))


def chained(event: dict[str, Any]) -> dict[str, Any]:
    """An unsigned event as the first of its origin's chain and of its link's chain."""
    return {
        **event,
        "originseq": 1,
        "prevhash": GENESIS_HASH,
        "linkseq": 1,
        "linkprev": GENESIS_HASH,
    }


def recipe_event() -> dict[str, Any]:
    unsigned: dict[str, Any] = json.loads(recipe_blocks()["unsigned"])
    del unsigned["keyid"]  # the JS signer sets it from the key
    return unsigned


def escapes_event() -> dict[str, Any]:
    payload = example_payload("lead.rejected") | {"reason": ESCAPES}
    return chained(
        example_event(
            "lead.rejected", sender="TJ", to="BJ", payload=payload, handling="H0,H3", handling_note='限"本案"\r\n使用'
        )
    )


def chinese_event() -> dict[str, Any]:
    return chained(example_event("lead.submitted", sender="BJ", to="HE", answer_by=None))


def roster_of(signer: Signer) -> KeyRoster:
    return KeyRoster([roster_key(signer)])


CASES = {
    "recipe": (recipe_event, "BJ", RECIPE_SEED),
    "escapes": (escapes_event, "TJ", dev_seed("TJ")),
    "chinese": (chinese_event, "BJ", dev_seed("BJ")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_js_signs_python_verifies(case: str) -> None:
    build, party, seed = CASES[case]
    unsigned = build()
    raw = js_sign(unsigned, seed)
    decoded = decode(raw)
    signer = Signer.from_seed(party, seed)
    r = roster_of(signer) if case == "recipe" else dev_roster(dev_signers())
    key = r.verify(decoded.wire, decoded.envelope.sender, decoded.envelope.time)
    assert key.key_id == signer.key_id == decoded.wire["keyid"]
    # same bytes and same signature as Python (Ed25519 is deterministic)
    python_signed = signer.sign(unsigned)
    assert decoded.wire == python_signed
    assert raw == encode(python_signed) + b"\n"
    if case == "escapes":
        assert decoded.wire["data"]["reason"] == ESCAPES
    if case == "recipe":
        assert decoded.wire["signature"] == recipe_blocks()["signature"]


@pytest.mark.parametrize("case", list(CASES))
def test_python_signs_js_verifies(case: str) -> None:
    build, party, seed = CASES[case]
    signer = Signer.from_seed(party, seed)
    signed = signer.sign(build())
    done = js_verify(signed, bytes(signer.verify_key))
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    assert done.stdout.decode().strip() == f"OK {signer.key_id}"


@pytest.mark.parametrize("case", list(CASES))
def test_js_refuses_tampered_events(case: str) -> None:
    build, party, seed = CASES[case]
    signer = Signer.from_seed(party, seed)
    signed = signer.sign(build())
    public = bytes(signer.verify_key)

    forged = copy.deepcopy(signed)
    forged["data"][next(iter(forged["data"]))] = "篡改"
    done = js_verify(forged, public)
    assert done.returncode == 1
    assert done.stdout.decode().startswith("BAD signature does not verify with key")

    without = {k: v for k, v in signed.items() if k != "signature"}
    assert js_verify(without, public).returncode == 1

    other = Signer.from_seed(party, hashlib.sha256(b"another key").digest())
    done = js_verify(signed, bytes(other.verify_key))
    assert done.returncode == 1
    assert b"does not name this key" in done.stdout

    # and Python refuses what JS refuses
    with pytest.raises(BadSignature):
        roster_of(signer).verify(forged, party, decode(encode(signed)).envelope.time)


@pytest.mark.parametrize("case", list(CASES))
def test_js_canonical_bytes_equal_rfc8785(case: str) -> None:
    build, party, seed = CASES[case]
    signed = Signer.from_seed(party, seed).sign(build())
    assert js_canonical(signed) == canonical(signed) == rfc8785.dumps(signed)
    unsigned = {k: v for k, v in signed.items() if k != "signature"}
    assert js_canonical(unsigned) == signing_input(signed)


def test_js_canonical_sorts_by_utf16_code_units() -> None:
    """RFC 8785 §3.2.3: sorting by UTF-16 code units puts U+1F600 (D83D DE00) before
    U+FB33; sorting by code point would not."""
    value: dict[str, Any] = {
        "\u20ac": "Euro",
        "\r": "CR",
        "\ufb33": "Hebrew",
        "1": "One",
        "\U0001f600": "Emoji",
        "\u0080": "Control",
        "\u00f6": "ö",
        "北京": [1, -0, 9007199254740991, True, None],
        "nested": {"b": {"z": [], "a": {}}, "a": '\u001f\u007f"\\/'},
    }
    js = js_canonical(value)
    assert js == rfc8785.dumps(value)
    order = list(json.loads(js))
    assert order.index("\U0001f600") < order.index("\ufb33")


@pytest.mark.parametrize("bad", ["1e400", "9007199254740993"])
def test_js_canonical_refuses_numbers_it_cannot_keep(bad: str) -> None:
    done = node(SIGN, "--canonical", stdin=f'{{"n": {bad}}}')
    assert done.returncode == 1
    assert b"cannot be canonicalised" in done.stderr


def test_js_sign_refuses_a_bad_seed() -> None:
    done = node(SIGN, "abcd", "-", stdin=json.dumps(chinese_event()))
    assert done.returncode == 1
    assert b"32 bytes" in done.stderr
