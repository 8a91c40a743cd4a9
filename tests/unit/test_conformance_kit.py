"""The conformance kit (schemas/conformance/) and the answer table stay what the code makes them.

* the committed kit is byte for byte what ``xregion conformance generate`` writes (it is
  deterministic: derived keys and ids, deterministic sealed boxes, Ed25519);
* the answer table is one thing in three places: the code the adapters run
  (``xregion.lifecycle.RECEIPTS``), ``schemas/conformance/answers.json`` and the table of
  docs/signing-recipe.md §10;
* the kit's keys are throw-away (public seeds) and say so; its sealed fields open with the
  receiver's key as any libsodium sealed box; its valid events verify; its expected codes are
  stable reason codes.

Running the kit against a real adapter is tests/integration/test_conformance_run.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from nacl.public import SealedBox
from nacl.signing import SigningKey
from typer.testing import CliRunner

from tests.support import RECIPE
from xregion.cli import app
from xregion.conformance import kit as kit_files
from xregion.conformance.answers import answer_table, markdown
from xregion.conformance.runner import KIT_ROOT, Kit
from xregion.contracts.catalog import CATALOG
from xregion.examples import PAYLOADS
from xregion.lifecycle import RECEIPTS
from xregion.reasons import REASON_CODES
from xregion.runtime.alerts import SECURITY_CODES
from xregion.sealing import SEALED, sensitive_values
from xregion.signing import canonical

ANSWERS = KIT_ROOT / "answers.json"
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


def test_valid_events_verify_and_their_personal_data_opens_with_the_receivers_key() -> None:
    kit = Kit.load(KIT_ROOT)
    seed = base64.b64decode(json.loads((KIT_ROOT / "keys/private/TJ.key").read_text())["seed"])
    tj_key_id = json.loads((KIT_ROOT / "keys/private/TJ.key").read_text())["key_id"]
    opener = SealedBox(SigningKey(seed).to_curve25519_private_key())
    opened = 0
    for case in kit.cases:
        if case["expect"]["outcome"] != "delivered":
            continue
        wire = json.loads(kit.body(case))
        sender = wire["source"].split(":")[2]
        kit.roster.verify(wire, sender, _time(wire))
        kind = CATALOG.by_ce_type(wire["type"])
        plain = dict(sensitive_values(kind.model, PAYLOADS[kind.name]))
        for where, value in sensitive_values(kind.model, wire["data"]):
            assert set(value) == {SEALED} and tj_key_id in value[SEALED], (case["name"], where)
            assert json.loads(opener.decrypt(base64.b64decode(value[SEALED][tj_key_id]))) == plain[where]
            opened += 1
    assert opened >= 8


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
