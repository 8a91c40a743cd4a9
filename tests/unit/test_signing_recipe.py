"""The worked examples of docs/signing-recipe.md are checked against the code.

Each value of the example sits in a fenced block preceded by a ``<!-- recipe:NAME -->``
marker. If the code or the document drift apart, these tests fail.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from jsonschema import Draft202012Validator
from nacl.signing import SigningKey, VerifyKey
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.support import RECIPE, recipe_blocks
from xregion.codec import decode, encode
from xregion.config import load_config
from xregion.envelope import GENESIS_HASH
from xregion.errors import BadSignature, ConfigError, KeyRevoked
from xregion.gateway import webhooks
from xregion.keys import load_signer_file
from xregion.runtime.alerts import SecurityAlert, alert_record
from xregion.signing import (
    KeyRoster,
    RosterKey,
    Signer,
    canonical,
    event_hash,
    key_id_for,
    signing_input,
)

EXPECTED_BLOCKS = {
    "seed",
    "public-key",
    "key-id",
    "unsigned",
    "canonical",
    "canonical-sha256",
    "signature",
    "event",
    "event-hash",
    "key-file",
    "roster",
    "alert",
    "alert-body",
    "webhook-body",
    "webhook-timestamp",
    "webhook-signature",
}


def blocks() -> dict[str, str]:
    return recipe_blocks()


def block(name: str) -> str:
    return recipe_blocks()[name]


def documented_event() -> dict[str, Any]:
    event: dict[str, Any] = json.loads(block("event"))
    return event


def documented_signer() -> Signer:
    return Signer.from_seed("BJ", bytes.fromhex(block("seed")))


def test_every_block_is_present() -> None:
    assert set(blocks()) == EXPECTED_BLOCKS


def test_seed_is_the_published_throw_away_seed() -> None:
    seed = hashlib.sha256(b"xregion-signing-recipe-example").digest()
    assert bytes.fromhex(block("seed")) == seed
    assert "TEST-ONLY" in RECIPE.read_text(encoding="utf-8")


def test_public_key_and_key_id_match_the_seed() -> None:
    signer = documented_signer()
    assert block("public-key") == base64.b64encode(bytes(signer.verify_key)).decode("ascii")
    assert block("key-id") == signer.key_id
    public = base64.b64decode(block("public-key"), validate=True)
    assert block("key-id") == "BJ:" + hashlib.sha256(public).hexdigest()[:16]
    assert documented_event()["keyid"] == signer.key_id


def test_unsigned_event_is_the_signed_event_without_its_signature() -> None:
    unsigned = json.loads(block("unsigned"))
    event = documented_event()
    assert "signature" not in unsigned
    assert "keyid" in unsigned  # the key id is signed
    assert unsigned == {k: v for k, v in event.items() if k != "signature"}


def test_canonical_bytes_are_the_documented_ones() -> None:
    documented = block("canonical").encode("utf-8")
    event = documented_event()
    assert signing_input(event) == documented
    assert canonical(json.loads(block("unsigned"))) == documented
    assert rfc8785.dumps(json.loads(block("unsigned"))) == documented
    assert hashlib.sha256(documented).hexdigest() == block("canonical-sha256")
    # UTF-8, not \u escapes, and nothing but the canonical line
    assert "北京市场巡查".encode() in documented
    assert b"\\u" not in documented
    assert not documented.endswith(b"\n")


def test_signature_from_the_documented_seed_is_the_documented_one() -> None:
    signer = documented_signer()
    unsigned = json.loads(block("unsigned"))
    signed = signer.sign(unsigned)
    assert signed["signature"] == block("signature")
    assert signed == documented_event()
    assert len(block("signature")) == 88 and block("signature").endswith("==")
    raw = SigningKey(bytes.fromhex(block("seed"))).sign(block("canonical").encode()).signature
    assert base64.b64encode(raw).decode("ascii") == block("signature")


def test_event_hash_is_the_documented_one() -> None:
    event = documented_event()
    assert event_hash(event) == block("event-hash")
    assert block("event-hash") == "sha256:" + hashlib.sha256(rfc8785.dumps(event)).hexdigest()


def test_documented_event_verifies_with_the_roster() -> None:
    public = base64.b64decode(block("public-key"), validate=True)
    roster = KeyRoster([RosterKey(block("key-id"), "BJ", public, datetime(2026, 1, 1, tzinfo=UTC))])
    event = documented_event()
    decoded = decode(json.dumps(event, ensure_ascii=False).encode("utf-8"))
    key = roster.verify(decoded.wire, decoded.envelope.sender, decoded.envelope.time)
    assert key.key_id == key_id_for("BJ", documented_signer().verify_key)


def test_documented_event_decodes() -> None:
    event = documented_event()
    decoded = decode(encode(event), registry=load_config().regions)
    env = decoded.envelope
    assert (env.sender, env.agency, env.addressee) == ("BJ", "amr", "TJ")
    assert env.event_type == "lead.submitted"
    assert env.originseq == 1 and env.prevhash == GENESIS_HASH
    assert "causationid" not in event and "handlingnote" not in event
    assert None not in event.values()
    assert decoded.subject == "xregion.v1.lead.submitted.BJ.TJ"


def test_reformatting_the_documented_event_breaks_its_signature() -> None:
    """Verifiers canonicalise the event as received; re-rendering it changes the bytes."""
    public = base64.b64decode(block("public-key"), validate=True)
    roster = KeyRoster([RosterKey(block("key-id"), "BJ", public, datetime(2026, 1, 1, tzinfo=UTC))])
    at = datetime(2026, 11, 25, 6, 30, tzinfo=UTC)
    same_instant = documented_event()
    same_instant["time"] = "2026-11-25T06:30:00Z"
    escaped = json.loads(json.dumps(documented_event()))  # \u escapes parse back: unchanged
    roster.verify(escaped, "BJ", at)
    with pytest.raises(BadSignature, match=block("key-id")):
        roster.verify(same_instant, "BJ", at)


# --- §5: key ids, key files and the roster ------------------------------------------------------


def test_key_id_is_derived_from_the_seed_exactly_as_documented() -> None:
    """§5's three steps with nothing but hashlib and an Ed25519 library."""
    public = bytes(SigningKey(bytes.fromhex(block("seed"))).verify_key)  # the key the seed derives
    digest = hashlib.sha256(public).hexdigest()  # SHA-256 of the 32 raw bytes, lower-case hex
    assert len(public) == 32 and digest == digest.lower()
    assert "BJ" + ":" + digest[:16] == block("key-id")
    section = RECIPE.read_text(encoding="utf-8").split("## 5.", 1)[1].split("## 6.", 1)[0]
    assert f"`{block('public-key')}`" in section and f"`{digest[:20]}…`" in section
    assert f"`{block('key-id')}`" in section
    assert key_id_for("BJ", documented_signer().verify_key) == block("key-id")


def test_documented_key_file_is_the_seed_and_the_adapter_loads_it(tmp_path: Path) -> None:
    raw = json.loads(block("key-file"))
    assert set(raw) == {"party", "key_id", "seed", "note"}
    assert len(raw["seed"]) == 44 and raw["seed"].endswith("=")
    assert base64.b64decode(raw["seed"], validate=True) == bytes.fromhex(block("seed"))
    assert (raw["party"], raw["key_id"]) == ("BJ", block("key-id"))
    path = tmp_path / "BJ.key"
    path.write_text(block("key-file"), encoding="utf-8")
    assert load_signer_file(path, "BJ").key_id == block("key-id")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"party": "TJ"}, "holds a private key of 'TJ', not of BJ"),
        ({"key_id": "BJ:0000000000000000"}, "its seed is the key BJ:9fe888a4c9e95064"),
        ({"seed": base64.b64encode(b"x" * 31).decode()}, "31 bytes, not 32"),
        ({"seed": "not base64!"}, "cannot load the private key"),
    ],
)
def test_a_key_file_that_disagrees_with_its_seed_is_refused(
    tmp_path: Path, change: dict[str, str], message: str
) -> None:
    path = tmp_path / "BJ.key"
    path.write_text(json.dumps({**json.loads(block("key-file")), **change}), encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_signer_file(path, "BJ")


def test_documented_roster_file_loads_and_verifies_the_example(tmp_path: Path) -> None:
    path = tmp_path / "roster.json"
    path.write_text(block("roster"), encoding="utf-8")
    roster = KeyRoster.load(path)
    [key] = list(roster)
    assert key.key_id == "BJ:" + hashlib.sha256(key.public_key).hexdigest()[:16] == block("key-id")
    assert base64.b64encode(key.public_key).decode() == block("public-key")
    assert json.loads(block("roster")) == roster.to_json()  # every member as documented, no other
    event = documented_event()
    at = datetime(2026, 11, 25, 6, 30, tzinfo=UTC)
    assert roster.verify(event, "BJ", at).key_id == block("key-id")
    with pytest.raises(KeyRevoked):  # the documented revocation
        roster.verify(event, "BJ", datetime(2026, 11, 28, tzinfo=UTC))
    path.write_text(block("roster").replace("+00:00", ""), encoding="utf-8")
    with pytest.raises(ConfigError, match="UTC offset"):
        KeyRoster.load(path)


# --- §12: security alerts -------------------------------------------------------------------------


def documented_alert() -> dict[str, Any]:
    alert: dict[str, Any] = json.loads(block("alert"))
    return alert


def test_documented_alert_is_what_an_adapter_signs() -> None:
    alert = documented_alert()
    claimed = json.dumps({"source": f"urn:xregion:{alert['claimed_sender']}:amr", "keyid": alert["claimed_keyid"]})
    record = alert_record(
        region=alert["detected_by"],
        reason=alert["reason"],
        body=claimed.encode(),
        original_subject=alert["original_subject"],
        stream_seq=alert["stream_seq"],
        event_id=alert["event_id"],
        detected_at=datetime.fromisoformat(alert["detected_at"].replace("Z", "+00:00")),
    )
    assert documented_signer().sign(record) == alert
    assert alert["id"] == f"alert-{alert['detected_by']}-{alert['stream_seq']}-{alert['code']}"
    assert block("alert-body").encode() == canonical(alert)  # the message body


def test_documented_alert_verifies_with_nothing_but_the_recipe() -> None:
    """§12's steps with a JSON parser, an RFC 8785 canonicaliser and Ed25519 only."""
    body = block("alert-body").encode("utf-8")
    alert = json.loads(body)
    roster = json.loads(block("roster"))["keys"]
    [key] = [k for k in roster if k["key_id"] == alert["keyid"]]
    assert key["party"] == alert["detected_by"]
    unsigned = {k: v for k, v in alert.items() if k != "signature"}
    assert "keyid" in unsigned
    public = VerifyKey(base64.b64decode(key["public_key"], validate=True))
    public.verify(rfc8785.dumps(unsigned), base64.b64decode(alert["signature"], validate=True))
    assert rfc8785.dumps(alert) == body
    # and the reference check agrees; a changed member breaks it
    path_roster = KeyRoster([RosterKey.from_json(k) for k in roster])
    assert SecurityAlert("xregion.alert.BJ.bad_signature", alert).verify(path_roster).key_id == alert["keyid"]
    with pytest.raises(BadSignature):
        SecurityAlert("", {**alert, "stream_seq": 43}).verify(path_roster)


# --- §13: webhooks --------------------------------------------------------------------------------

WEBHOOK_SECRET = "xregion-webhook-example-secret"


def test_documented_webhook_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body, stamp = block("webhook-body").encode("utf-8"), block("webhook-timestamp")
    assert stamp.isdigit() and datetime.fromtimestamp(int(stamp), UTC) == datetime(2026, 11, 25, 6, 30, tzinfo=UTC)
    mac = hmac.new(WEBHOOK_SECRET.encode("utf-8"), stamp.encode("ascii") + b"." + body, hashlib.sha256)
    assert block("webhook-signature") == "sha256=" + mac.hexdigest()
    assert webhooks.sign(WEBHOOK_SECRET, stamp, body) == block("webhook-signature")
    # the body is what the dispatcher sends: json.dumps of the webhook's fields, UTF-8
    fields = json.loads(body)
    assert json.dumps(fields, ensure_ascii=False).encode() == body
    assert list(fields) == [
        "event_id", "referral_id", "event_type", "sender", "to", "source",
        "time", "handling", "answer_by", "state_after", "data",
    ]  # fmt: skip


def test_documented_webhook_body_is_valid_against_the_openapi_webhooks_section() -> None:
    document = json.loads((RECIPE.parents[1] / "schemas" / "openapi.json").read_text(encoding="utf-8"))
    registry = Registry().with_resource(
        "urn:openapi", Resource.from_contents(document, default_specification=DRAFT202012)
    )
    body_schema = {"$ref": "urn:openapi#/webhooks/inboundEvent/post/requestBody/content/application~1json/schema"}
    validator = Draft202012Validator(body_schema, registry=registry)
    body = json.loads(block("webhook-body"))
    assert [e.message for e in validator.iter_errors(body)] == []
    assert list(validator.iter_errors({**body, "data": {"unknown": 1}}))
    headers = {p["name"] for p in document["webhooks"]["inboundEvent"]["post"]["parameters"] if p["in"] == "header"}
    assert {"X-Xregion-Event-Id", "X-Xregion-Timestamp", "X-Xregion-Signature"} <= headers


def test_webhook_receiver_enforces_the_documented_window(monkeypatch: pytest.MonkeyPatch) -> None:
    body, stamp, signature = block("webhook-body").encode(), block("webhook-timestamp"), block("webhook-signature")
    for skew, fresh in ((0, True), (300, True), (-300, True), (301, False), (-301, False)):
        monkeypatch.setattr(webhooks.time, "time", lambda skew=skew: int(stamp) + skew)
        assert webhooks.verify(WEBHOOK_SECRET, stamp, body, signature) is fresh, skew
    monkeypatch.setattr(webhooks.time, "time", lambda: int(stamp))
    assert not webhooks.verify(WEBHOOK_SECRET, stamp, body + b" ", signature)
    assert not webhooks.verify(WEBHOOK_SECRET.upper(), stamp, body, signature)
    section = RECIPE.read_text(encoding="utf-8").split("## 13.", 1)[1].split("## 14.", 1)[0]
    assert "**300\n  seconds**" in section or "**300 seconds**" in section
