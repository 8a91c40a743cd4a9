"""The conformance kit (schemas/conformance/) and the answer table stay what the code makes them.

* the committed kit is byte for byte what ``xregion conformance generate`` writes (it is
  deterministic: derived keys and ids, deterministic sealed boxes, Ed25519);
* the answer table is one thing in three places: the code the adapters run
  (``xregion.lifecycle.RECEIPTS``), ``schemas/conformance/answers.json`` and the table of
  docs/signing-recipe.md §10;
* the kit's keys are throw-away (public seeds) and say so; its sealed fields open with the
  receiver's key as any libsodium sealed box (v1) or, for the sealing v2 cases, as the recipe
  §8 says — computed here from the recipe, and by the JavaScript of
  adapters/examples/js/seal-v2.mjs when Node.js is there; its valid events verify; its
  expected codes are stable reason codes; each bad v2 case fails for the one reason it names.

Running the kit against a real adapter is tests/integration/test_conformance_run.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from nacl.bindings import crypto_aead_chacha20poly1305_ietf_decrypt, crypto_scalarmult
from nacl.exceptions import CryptoError
from nacl.public import SealedBox
from nacl.signing import SigningKey
from typer.testing import CliRunner

from tests.support import RECIPE
from xregion.cli import app
from xregion.conformance import kit as kit_files
from xregion.conformance.answers import answer_table, markdown
from xregion.conformance.runner import KIT_ROOT, Kit
from xregion.contracts.catalog import CATALOG
from xregion.errors import UnsealFailed
from xregion.examples import PAYLOADS
from xregion.lifecycle import RECEIPTS
from xregion.reasons import REASON_CODES
from xregion.runtime.alerts import SECURITY_CODES
from xregion.sealing import SEALED, OpeningKey, open_value, sensitive_values
from xregion.signing import Signer, canonical

ANSWERS = KIT_ROOT / "answers.json"
SEAL_V2_JS = Path(__file__).resolve().parents[2] / "adapters" / "examples" / "js" / "seal-v2.mjs"
TABLE = re.compile(r"<!-- answers:begin -->\n(.*?)\n<!-- answers:end -->", re.S)


def test_the_committed_kit_is_what_the_generator_writes() -> None:
    assert kit_files.diff(KIT_ROOT) == [], "run `xregion conformance generate` and commit schemas/conformance"
    assert kit_files.generate() == kit_files.generate()  # deterministic


def test_the_check_command_names_a_drifted_file(tmp_path: Path) -> None:
    copy = tmp_path / "kit"
    shutil.copytree(KIT_ROOT, copy)
    assert CliRunner().invoke(app, ["conformance", "check", "--kit", str(copy)]).exit_code == 0
    (copy / "messages" / "01-valid-lead-submitted.json").write_bytes(b"{}")
    (copy / "messages" / "99-hand-made.json").write_bytes(b"{}")
    result = CliRunner().invoke(app, ["conformance", "check", "--kit", str(copy)])
    assert result.exit_code == 1
    assert "different messages/01-valid-lead-submitted.json" in result.output
    assert "extra messages/99-hand-made.json" in result.output
    assert CliRunner().invoke(app, ["conformance", "generate", "--kit", str(copy)]).exit_code == 0
    assert kit_files.diff(copy) == []


# --- the answer table -----------------------------------------------------------------------


def test_answers_json_is_the_table_the_adapters_answer_by() -> None:
    document = json.loads(ANSWERS.read_text(encoding="utf-8"))
    assert document == answer_table()
    rows = {row["event"]: row for row in document["events"]}
    assert list(rows) == [kind.name for kind in CATALOG.versions(1)]
    assert {name: (row["answer"], row["data"]) for name, row in rows.items() if row["answer"]} == {
        name: (answer, dict(data)) for name, (answer, data) in RECEIPTS.items()
    }
    assert rows["lead.accepted"]["answer"] is None  # issue 15: answered by nothing
    assert document["ids"] == {
        "subject": "the answered event's subject (the referral id)",
        "correlationid": "the answered event's correlationid",
        "causationid": "the answered event's id",
        "addressee": "the answered event's sender",
    }


def test_the_recipe_shows_the_table_of_answers_json() -> None:
    [shown] = TABLE.findall(RECIPE.read_text(encoding="utf-8"))
    assert shown.strip() == markdown(json.loads(ANSWERS.read_text(encoding="utf-8")))


# --- the kit's keys and messages ----------------------------------------------------------------


def test_the_keys_are_throw_away_derived_from_public_seeds_and_say_so() -> None:
    key_file = json.loads((KIT_ROOT / "keys" / "private" / "TJ.key").read_text(encoding="utf-8"))
    seed = hashlib.sha256(b"xregion-conformance-kit-v1:TJ").digest()
    assert base64.b64decode(key_file["seed"]) == seed
    public = bytes(SigningKey(seed).verify_key)
    assert key_file["key_id"] == "TJ:" + hashlib.sha256(public).hexdigest()[:16]
    assert "THROW-AWAY" in key_file["note"]
    assert "THROW-AWAY" in (KIT_ROOT / "README.md").read_text(encoding="utf-8")
    assert "THROW-AWAY" in json.loads((KIT_ROOT / "cases.json").read_text(encoding="utf-8"))["about"]
    roster = json.loads((KIT_ROOT / "keys" / "roster.json").read_text(encoding="utf-8"))["keys"]
    for key in roster:
        label = key["party"] if "revoked_at" not in key else "BJ-revoked"
        derived = bytes(SigningKey(hashlib.sha256(b"xregion-conformance-kit-v1:" + label.encode()).digest()).verify_key)
        assert base64.b64decode(key["public_key"]) == derived
    assert {k["party"] for k in roster} == {"BJ", "TJ", "HE", "COORD"}


def cases() -> list[dict[str, Any]]:
    return Kit.load(KIT_ROOT).cases


def test_bodies_digests_subjects_and_ids() -> None:
    kit = Kit.load(KIT_ROOT)
    ids = [case["headers"]["Nats-Msg-Id"] for case in kit.cases]
    assert len(set(ids)) == len(ids), "a repeated Nats-Msg-Id would be dropped by the server"
    for case in kit.cases:
        body = kit.body(case)
        assert hashlib.sha256(body).hexdigest() == case["body_sha256"], case["name"]
        assert case["subject"].startswith("xregion.v1.") and case["subject"].split(".")[-1] in ("TJ", "ALL")
        if case["expect"]["outcome"] == "delivered":
            wire = json.loads(body)
            assert body == canonical(wire), case["name"]
            assert wire["id"] == case["expect"]["event_id"] == case["headers"]["Nats-Msg-Id"]


def tj_key() -> tuple[str, bytes]:
    """The receiver's key id and Ed25519 seed, from the kit's key file."""
    key_file = json.loads((KIT_ROOT / "keys/private/TJ.key").read_text(encoding="utf-8"))
    return key_file["key_id"], base64.b64decode(key_file["seed"])


def open_v2(value: dict[str, Any], event_id: str, where: str, key_id: str, seed: bytes) -> Any:
    """A v2 sealed value opened as docs/signing-recipe.md §8 says, with nothing of
    xregion.sealing: ``prk = HMAC-SHA256(epk ‖ R, X25519(r, epk))``, the field's key
    ``HMAC-SHA256(prk, info ‖ 0x01)``, ChaCha20-Poly1305 with a zero nonce and ``info`` as
    associated data. Raises CryptoError when the box does not open."""
    secret = SigningKey(seed).to_curve25519_private_key()
    epk = base64.b64decode(value["epk"])
    shared = crypto_scalarmult(bytes(secret), epk)
    prk = hmac.new(epk + bytes(secret.public_key), shared, hashlib.sha256).digest()
    info = b"\x00".join((b"xregion-seal-v2", event_id.encode(), where.encode(), key_id.encode()))
    key = hmac.new(prk, info + b"\x01", hashlib.sha256).digest()
    box = base64.b64decode(value[SEALED][key_id])
    return json.loads(crypto_aead_chacha20poly1305_ietf_decrypt(box, info, bytes(12), key))


def test_valid_events_verify_and_their_personal_data_opens_with_the_receivers_key() -> None:
    kit = Kit.load(KIT_ROOT)
    tj_key_id, seed = tj_key()
    opener = SealedBox(SigningKey(seed).to_curve25519_private_key())
    opened = {1: 0, 2: 0}
    for case in kit.cases:
        if case["expect"]["outcome"] != "delivered":
            continue
        wire = json.loads(kit.body(case))
        sender = wire["source"].split(":")[2]
        kit.roster.verify(wire, sender, _time(wire))
        kind = CATALOG.by_ce_type(wire["type"])
        plain = dict(sensitive_values(kind.model, PAYLOADS[kind.name]))
        values = sensitive_values(kind.model, wire["data"])
        v2 = "sealed-v2" in case["name"]
        if v2:  # one ephemeral key for the event, the same in every field
            assert len({v["epk"] for _, v in values}) == 1, case["name"]
        for where, value in values:
            assert tj_key_id in value[SEALED], (case["name"], where)
            if v2:
                assert set(value) == {"v", "epk", SEALED} and value["v"] == 2, (case["name"], where)
                assert open_v2(value, wire["id"], where, tj_key_id, seed) == plain[where]
            else:
                assert set(value) == {SEALED}, (case["name"], where)
                assert json.loads(opener.decrypt(base64.b64decode(value[SEALED][tj_key_id]))) == plain[where]
            opened[2 if v2 else 1] += 1
    assert opened[1] >= 8 and opened[2] >= 6  # a lead: four fields, a decision: two


def v2_case(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The case whose name ends with ``name`` and its event."""
    kit = Kit.load(KIT_ROOT)
    [case] = [c for c in kit.cases if c["name"].endswith("-" + name)]
    return case, json.loads(kit.body(case))


def test_each_bad_v2_case_is_authentic_and_fails_for_the_one_reason_it_names() -> None:
    """Every bad v2 case verifies and is in chain (it advances BJ's link); what a receiver must
    refuse is the one thing the case changed: undone, the box opens (so the case tests the
    binding, not a box broken some other way)."""
    kit = Kit.load(KIT_ROOT)
    tj_key_id, seed = tj_key()
    names = [c["name"].split("-", 1)[1] for c in kit.cases]
    assert names.index("valid-lead-sealed-v2") < names.index("unseal-failed-v2-other-event")
    assert names[-1] == "valid-lead-after-refusals"  # chained after the v2 refusals too
    suspect = PAYLOADS["lead.submitted"]["suspects"][1]["name"]
    for name in ("not-to-tj", "altered", "moved-field", "other-event", "low-order-epk"):
        case, wire = v2_case(f"unseal-failed-v2-{name}")
        assert case["expect"] == {
            "outcome": "dead_letter",
            "code": "unseal_failed",
            "event_id": wire["id"],
            "alert": False,
        }, name
        assert case["advances_link"], name
        kit.roster.verify(wire, "BJ", _time(wire))
    # sealed to HE only: no box for TJ
    _, wire = v2_case("unseal-failed-v2-not-to-tj")
    for _, value in sensitive_values(CATALOG.get("lead", "submitted").model, wire["data"]):
        assert value["v"] == 2 and tj_key_id not in value[SEALED]
    # one bit flipped: does not open; flipped back, it does
    _, wire = v2_case("unseal-failed-v2-altered")
    value = wire["data"]["suspects"][1]["name"]
    with pytest.raises(CryptoError):
        open_v2(value, wire["id"], "data.suspects.1.name", tj_key_id, seed)
    box = bytearray(base64.b64decode(value[SEALED][tj_key_id]))
    box[0] ^= 0x01
    restored = {**value, SEALED: {tj_key_id: base64.b64encode(bytes(box)).decode()}}
    assert open_v2(restored, wire["id"], "data.suspects.1.name", tj_key_id, seed) == suspect
    # moved to another field: opens only at the path it was sealed for
    _, wire = v2_case("unseal-failed-v2-moved-field")
    value = wire["data"]["suspects"][0]["name"]
    with pytest.raises(CryptoError):
        open_v2(value, wire["id"], "data.suspects.0.name", tj_key_id, seed)
    assert open_v2(value, wire["id"], "data.suspects.1.name", tj_key_id, seed) == suspect
    # sealed for another event: opens only with that event's id
    _, first = v2_case("valid-lead-sealed-v2")
    case, wire = v2_case("unseal-failed-v2-other-event")
    assert first["id"] in case["description"]
    value = wire["data"]["suspects"][1]["name"]
    assert value["epk"] == wire["data"]["suspects"][0]["name"]["epk"]  # the event's own epk
    with pytest.raises(CryptoError):
        open_v2(value, wire["id"], "data.suspects.1.name", tj_key_id, seed)
    assert open_v2(value, first["id"], "data.suspects.1.name", tj_key_id, seed) == suspect
    # a low-order epk: the all-zero point
    _, wire = v2_case("unseal-failed-v2-low-order-epk")
    assert base64.b64decode(wire["data"]["suspects"][0]["name"]["epk"]) == bytes(32)
    # an unknown version marker: refused by the schema (Sealed admits v 2 or none)
    case, wire = v2_case("unknown-seal-version")
    assert case["expect"]["code"] == "schema_invalid" and case["advances_link"]
    assert {v["v"] for _, v in sensitive_values(CATALOG.get("lead", "submitted").model, wire["data"])} == {3}


def test_the_receivers_sealing_opens_the_valid_v2_cases_and_refuses_the_bad_ones() -> None:
    """xregion.sealing, the receiver's code, agrees with the recipe on every v2 case."""
    tj_key_id, seed = tj_key()
    key = OpeningKey.of(Signer.from_seed("TJ", seed))
    assert key.key_id == tj_key_id
    model = CATALOG.get("lead", "submitted").model
    _, wire = v2_case("valid-lead-sealed-v2")
    for where, value in sensitive_values(model, wire["data"]):
        opened = open_value(value, [key], where, event_id=wire["id"])
        assert opened == open_v2(value, wire["id"], where, tj_key_id, seed)
    for name in ("not-to-tj", "altered", "moved-field", "other-event", "low-order-epk"):
        _, wire = v2_case(f"unseal-failed-v2-{name}")
        with pytest.raises(UnsealFailed):
            for where, value in sensitive_values(model, wire["data"]):
                open_value(value, [key], where, event_id=wire["id"])


def test_javascript_opens_the_kits_v2_fields_and_refuses_the_moved_ones() -> None:
    """adapters/examples/js/seal-v2.mjs (Node's crypto only) opens every v2 field sealed to TJ
    in the valid cases, and refuses the moved and altered boxes, as the Python receiver does."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node (Node.js >= 18) is not on PATH")
    kit = Kit.load(KIT_ROOT)
    tj_key_id, seed = tj_key()
    jobs: list[dict[str, Any]] = []
    for case in kit.cases:
        if "v2" not in case["name"]:
            continue
        wire = json.loads(kit.body(case))
        kind = CATALOG.by_ce_type(wire["type"])
        for where, value in sensitive_values(kind.model, wire["data"]):
            if isinstance(value, dict) and value.get("v") == 2 and tj_key_id in value[SEALED]:
                jobs.append(
                    {"case": case["name"], "kind": kind.name, "event": wire["id"], "where": where, "value": value}
                )
    script = (
        "import { openValue } from " + json.dumps(SEAL_V2_JS.as_uri()) + ";\n"
        "import fs from 'node:fs';\n"
        "const { jobs, keyId, seed } = JSON.parse(fs.readFileSync(0, 'utf8'));\n"
        "const out = jobs.map((j) => { try { return { ok: true, value: openValue(j.value, j.event, j.where, keyId, "
        "Buffer.from(seed, 'hex')) }; } catch (e) { return { ok: false }; } });\n"
        "process.stdout.write(JSON.stringify(out));\n"
    )
    done = subprocess.run(
        [node, "--input-type=module", "-e", script],
        input=json.dumps({"jobs": jobs, "keyId": tj_key_id, "seed": seed.hex()}).encode(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    results = json.loads(done.stdout)
    refused = set()
    for job, result in zip(jobs, results, strict=True):
        if "valid-" in job["case"]:
            plain = dict(sensitive_values(CATALOG.get(*job["kind"].split(".", 1)).model, PAYLOADS[job["kind"]]))
            assert result["ok"] and result["value"] == plain[job["where"]], job
        elif not result["ok"]:
            refused.add((job["case"].split("-", 1)[1], job["where"]))
    assert {
        ("unseal-failed-v2-altered", "data.suspects.1.name"),
        ("unseal-failed-v2-moved-field", "data.suspects.0.name"),
        ("unseal-failed-v2-other-event", "data.suspects.1.name"),
        ("unseal-failed-v2-low-order-epk", "data.suspects.0.name"),
    } <= refused
    assert sum(1 for job in jobs if "valid-" in job["case"]) >= 6


def test_expected_outcomes_use_stable_codes_and_cover_the_refusals() -> None:
    expected = [c["expect"] for c in cases()]
    codes = {e["code"] for e in expected if e["outcome"] == "dead_letter"}
    assert codes <= REASON_CODES
    assert kit_files.SECURITY_CODES == SECURITY_CODES
    assert all(e["alert"] == (e["code"] in SECURITY_CODES) for e in expected if e["outcome"] == "dead_letter")
    assert {
        "malformed_json",
        "duplicate_member",
        "not_canonical",
        "schema_invalid",
        "bad_signature",
        "unknown_key",
        "key_not_valid",
        "key_revoked",
        "chain_gap",
        "chain_fork",
        "chain_replay",
        "subject_mismatch",
        "personal_data_unsealed",
        "unseal_failed",
        "illegal_transition",
        "duplicate_referral",
        "role_violation",
        "misaddressed",
    } <= codes
    v2 = [c for c in cases() if "v2" in c["name"] or "seal-version" in c["name"]]
    assert {c["name"].split("-", 1)[1]: c["expect"]["outcome"] for c in v2} == {
        "valid-lead-sealed-v2": "delivered",
        "valid-broadcast-sealed-v2": "delivered",
        "unseal-failed-v2-not-to-tj": "dead_letter",
        "unseal-failed-v2-altered": "dead_letter",
        "unseal-failed-v2-moved-field": "dead_letter",
        "unseal-failed-v2-other-event": "dead_letter",
        "unseal-failed-v2-low-order-epk": "dead_letter",
        "unknown-seal-version": "dead_letter",
    }
    delivered = [e for e in expected if e["outcome"] == "delivered"]
    assert {a["type"] for e in delivered for a in e["answers"]} == {
        "lead.received",
        "assist.received",
        "recognition.received",
        "share.acknowledged",
    }
    assert any(not e["answers"] for e in delivered)  # and events answered by nothing


def _time(wire: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(wire["time"].replace("Z", "+00:00"))
