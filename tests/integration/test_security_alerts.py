"""Security alerts: a forged, replayed or misrouted event that got past the server is
dead-lettered *and* reported to the coordinator on ``xregion.alert.<detecting region>.<code>``,
signed by the detecting region, without the event's data.

TJ's adapter runs on a real nats-server; the test plays BJ's thief with plain nats-py.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from nats.js import JetStreamContext
from structlog.testing import capture_logs

from tests.bus import Bus, eventually
from tests.integration.helpers import quiesce
from tests.support import OriginChain, example_event, example_payload
from xregion.codec import DecodedEvent, encode
from xregion.ids import new_event_id
from xregion.runtime.alerts import SECURITY_CODES, SecurityAlert, SecurityAlerts
from xregion.signing import Signer

pytestmark = pytest.mark.anyio

SUBMITTED = "xregion.v1.lead.submitted.BJ.TJ"


async def publish(js: JetStreamContext, bus: Bus, subject: str, wire: dict[str, Any] | bytes) -> int:
    body = wire if isinstance(wire, bytes) else encode(wire)
    ack = await js.publish(
        subject, body, stream=bus.settings.stream, headers={"Nats-Msg-Id": new_event_id()}, timeout=5.0
    )
    return int(ack.seq)


def lead(sender: str = "BJ", to: str = "TJ") -> dict[str, Any]:
    return example_event("lead.submitted", sender=sender, to=to, sealed=True)


def peek(chain: OriginChain, event: dict[str, Any], signer: Signer | None = None) -> DecodedEvent:
    """``event`` sealed at ``chain``'s next position (by ``signer``), leaving ``chain`` as it was."""
    trial = copy.deepcopy(chain)
    if signer is not None:
        trial.signer = signer
    return trial.seal(event)


def flip_signature(wire: dict[str, Any]) -> dict[str, Any]:
    raw = bytearray(base64.b64decode(wire["signature"]))
    raw[5] ^= 0x40
    return {**wire, "signature": base64.b64encode(bytes(raw)).decode("ascii")}


def personal_strings(wire: dict[str, Any]) -> list[str]:
    """The event's texts and its personal data as the sender wrote them (before sealing)."""
    data, plain = wire["data"], example_payload("lead.submitted")
    return [data["title"], data["summary"], *(s["name"] for s in plain["suspects"])]


async def received(bus: Bus, *events: DecodedEvent) -> bool:
    got = {d.event.envelope.id for d in bus.received.get("TJ", [])}
    return all(e.envelope.id in got for e in events)


async def at_least(read: Any, n: int) -> Any:
    items = await read()
    return items if len(items) >= n else None


async def test_forged_event_is_dead_lettered_and_alerted_on_the_alert_subject(
    bus: Bus, js: JetStreamContext, signers: dict[str, Signer], logs: list[dict[str, Any]]
) -> None:
    [tj] = await bus.start("TJ")
    watcher = await js.pull_subscribe("xregion.alert.TJ.>", stream=bus.settings.dead_letter_stream)
    bj = OriginChain(signers["BJ"])
    first = bj.seal(lead())
    await publish(js, bus, SUBMITTED, first.wire)
    await eventually(lambda: received(bus, first), what="the first lead at TJ")

    forged = flip_signature(peek(bj, lead()).wire)  # valid subject, wrong signature
    forged_seq = await publish(js, bus, SUBMITTED, forged)
    after = bj.seal(lead())
    await publish(js, bus, SUBMITTED, after.wire)
    await eventually(lambda: received(bus, after), what="the next valid lead at TJ")

    [msg] = await watcher.fetch(1, timeout=10.0)
    await msg.ack()
    assert msg.subject == "xregion.alert.TJ.bad_signature"
    record = json.loads(msg.data)
    assert record == {
        "kind": "security.alert",
        "id": f"alert-TJ-{forged_seq}-bad_signature",
        "code": "bad_signature",
        "reason": record["reason"],
        "detected_by": "TJ",
        "claimed_sender": "BJ",
        "claimed_keyid": signers["BJ"].key_id,
        "original_subject": SUBMITTED,
        "event_id": forged["id"],
        "stream_seq": forged_seq,
        "detected_at": record["detected_at"],
        "keyid": signers["TJ"].key_id,
        "signature": record["signature"],
    }
    assert record["reason"]["code"] == "bad_signature" and record["reason"]["keyid"] == signers["BJ"].key_id
    for text in personal_strings(forged):
        assert text not in msg.data.decode(), "the alert copies the event's data"
    [alert] = await bus.alerts("TJ")
    assert alert.record == record
    assert alert.verify(bus.roster).party == "TJ", "the alert is not signed by TJ"
    tampered = SecurityAlert(alert.subject, {**record, "code": "chain_gap"})
    with pytest.raises(Exception, match="signature"):
        tampered.verify(bus.roster)

    [letter] = await bus.dead_letters("TJ")
    assert (letter.code, letter.stream_seq, letter.body) == ("bad_signature", forged_seq, encode(forged))
    [line] = [e for e in logs if e.get("event") == "security event"]
    assert line["reason"] == "bad_signature" and line["stream_seq"] == forged_seq and line["log_level"] == "error"
    assert line["claimed_keyid"] == signers["BJ"].key_id
    for text in personal_strings(forged):
        assert text not in repr(logs)
    await quiesce(bus)
    assert tj.alerts is not None and tj.alerts.published == 1 and tj.alerts.pending == 0


async def test_a_real_alert_verifies_with_nothing_but_the_documented_recipe(
    bus: Bus, js: JetStreamContext, signers: dict[str, Signer], tmp_path: Path
) -> None:
    """docs/signing-recipe.md §12, followed by a third party that holds only the roster file
    (§5's format) and the raw alert message: a JSON parser, RFC 8785 and Ed25519, no xregion
    code."""
    await bus.start("TJ")
    roster_file = tmp_path / "roster.json"
    bus.roster.save(roster_file)
    watcher = await js.pull_subscribe("xregion.alert.TJ.>", stream=bus.settings.dead_letter_stream)
    bj = OriginChain(signers["BJ"])
    forged_seq = await publish(js, bus, SUBMITTED, flip_signature(peek(bj, lead()).wire))
    [msg] = await watcher.fetch(1, timeout=10.0)

    # §12: the subject, the message id, the body is the canonical form of the signed record
    alert = json.loads(msg.data)
    assert msg.subject == f"xregion.alert.{alert['detected_by']}.{alert['code']}" == "xregion.alert.TJ.bad_signature"
    assert msg.headers is not None and msg.headers["Nats-Msg-Id"] == alert["id"]
    assert msg.data == rfc8785.dumps(alert)
    assert alert["kind"] == "security.alert" and alert["stream_seq"] == forged_seq and None not in alert.values()
    # look keyid up in the roster; its party must be the detecting region, valid at detected_at
    [key] = [k for k in json.loads(roster_file.read_text())["keys"] if k["key_id"] == alert["keyid"]]
    assert key["party"] == alert["detected_by"]
    detected_at = datetime.fromisoformat(alert["detected_at"].replace("Z", "+00:00"))
    assert datetime.fromisoformat(key["valid_from"]) <= detected_at and "revoked_at" not in key
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", alert["detected_at"])
    # remove signature, canonicalise the rest (keyid included), verify with pure Ed25519
    unsigned = {k: v for k, v in alert.items() if k != "signature"}
    signature = base64.b64decode(alert["signature"], validate=True)
    assert len(alert["signature"]) == 88
    VerifyKey(base64.b64decode(key["public_key"], validate=True)).verify(rfc8785.dumps(unsigned), signature)
    with pytest.raises(BadSignatureError):
        VerifyKey(base64.b64decode(key["public_key"])).verify(
            rfc8785.dumps({**unsigned, "stream_seq": forged_seq + 1}), signature
        )


async def test_every_security_reason_raises_an_alert_and_others_do_not(
    bus: Bus, js: JetStreamContext, signers: dict[str, Signer]
) -> None:
    """Interleaved with valid events: an alert per forged, misrouted or out-of-chain event,
    none for a merely unreadable one, and every valid event delivered."""
    await bus.start("TJ")
    bj = OriginChain(signers["BJ"])
    goods: list[DecodedEvent] = []
    expected: list[tuple[str, int]] = []
    letters: list[tuple[str, int]] = []

    async def good() -> None:
        goods.append(bj.seal(lead()))
        await publish(js, bus, SUBMITTED, goods[-1].wire)

    async def bad(code: str, subject: str, wire: dict[str, Any] | bytes) -> None:
        seq = await publish(js, bus, subject, wire)
        letters.append((code, seq))
        if code in SECURITY_CODES:
            expected.append((code, seq))

    await good()
    await bad("unknown_key", SUBMITTED, peek(bj, lead(), Signer.generate("BJ")).wire)
    await good()
    await bad("key_not_valid", SUBMITTED, peek(bj, lead(), signers["HE"]).wire)
    await bad("chain_fork", SUBMITTED, bj.signer.sign({**peek(bj, lead()).wire, "linkprev": "sha256:" + "ab" * 32}))
    await good()
    # Authentic and in chain, but on a subject that names another event, or broadcast:
    # the signer's own events, so the chain moves on (bj.seal).
    await bad("subject_mismatch", "xregion.v1.lead.withdrawn.BJ.TJ", bj.seal(lead()).wire)
    await bad("misaddressed", "xregion.v1.lead.submitted.BJ.ALL", bj.seal(lead(to="ALL")).wire)
    await bad("malformed_json", SUBMITTED, encode(peek(bj, lead()).wire)[:200])
    await good()

    await eventually(lambda: received(bus, *goods), what="every valid lead at TJ")
    dead = await eventually(lambda: at_least(lambda: bus.dead_letters("TJ"), len(letters)), what="dead letters")
    alerts = await eventually(lambda: at_least(lambda: bus.alerts("TJ"), len(expected)), what="alerts")
    await quiesce(bus)
    assert [(x.code, x.stream_seq) for x in dead] == letters
    assert sorted((a.code, a.record["stream_seq"]) for a in alerts) == sorted(expected)
    assert {a.subject for a in alerts} == {f"xregion.alert.TJ.{code}" for code, _ in expected}
    for alert in alerts:
        alert.verify(bus.roster)
        assert "data" not in alert.record
    assert [d.event.envelope.id for d in bus.received["TJ"]] == [g.envelope.id for g in goods]


async def test_an_alert_that_cannot_be_published_does_not_block(bus: Bus, signers: dict[str, Signer]) -> None:
    """Alerts are published in the background with bounded retries: raising one returns at
    once; when the stream never takes it, the alert is given up and logged, not lost silently."""
    nc = await bus.raw()
    try:
        alerts = SecurityAlerts(
            nc.jetstream(), "TJ", lambda: signers["TJ"], stream="NO_SUCH_STREAM", retry_s=1.0, publish_timeout_s=0.2
        )
        with capture_logs() as entries:
            record = alerts.raise_alert(
                {"code": "bad_signature", "message": "forged"},
                body=b"{}",
                original_subject=SUBMITTED,
                stream_seq=7,
                event_id=None,
            )
            assert alerts.pending == 1 and record["id"] == "alert-TJ-7-bad_signature"
            await eventually(lambda: _done(alerts), timeout=10.0, what="the alert to be given up")
        assert alerts.published == 0
        assert [e["event"] for e in entries] == ["security event", "security alert not published; giving up"]
    finally:
        await nc.close()


async def _done(alerts: SecurityAlerts) -> bool:
    return alerts.pending == 0
