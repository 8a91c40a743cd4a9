"""The receiving side of issue 13, one test per reproduced defect (each failed before the fix).

A real TJ adapter on a real nats-server; BJ (and a thief of TJ's or COORD's identity) publish
hand-made bytes with plain nats-py or a plain socket. Every bad message ends as exactly one
dead letter with its stable code; every valid one reaches the handler exactly once.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
from typing import Any

import pytest
from nats.js import JetStreamContext

from tests.bus import Bus, eventually
from tests.hostile.peer import Peer, deliveries, letters, publish, publish_raw_subject, send_good, submitted
from tests.integration.helpers import quiesce
from tests.support import OriginChain, example_event
from xregion.chain import ChainHead
from xregion.codec import encode
from xregion.examples import PAYLOADS
from xregion.runtime.settings import RuntimeSettings
from xregion.runtime.store import Store
from xregion.runtime.topology import consumer_name, ensure_topology
from xregion.signing import Signer, event_hash

pytestmark = pytest.mark.anyio

SUBMITTED = "xregion.v1.lead.submitted.BJ.TJ"


def nested_poison(peer: Peer, depth: int = 985) -> bytes:
    """A well-formed envelope carrying an array nested ``depth`` deep, with a random signature."""
    wire = peer.forge(submitted(), advance=False)
    wire["signature"] = base64.b64encode(os.urandom(64)).decode("ascii")
    body = encode(wire)
    return body[:-1] + b',"x":' + b"[" * depth + b"]" * depth + b"}"


async def test_deep_nesting_in_a_batch_costs_no_valid_event(
    bus: Bus, js: JetStreamContext, signers: dict[str, Signer]
) -> None:
    """Defect 1: published before TJ starts, 40 valid events and the poison share one fetched
    batch. The poison is dead-lettered; each valid event reaches the handler exactly once."""
    await ensure_topology(js, bus.settings, ("TJ",))
    bj = Peer(signers["BJ"])
    goods = []
    for i in range(40):
        if i == 20:
            poison = nested_poison(bj)
            poison_seq = await publish(js, bus, SUBMITTED, poison)
        goods.append(bj.good())
        await send_good(js, bus, goods[-1])
    await bus.start("TJ")

    [letter] = await eventually(lambda: letters(bus, 1), timeout=15.0, what="the poison's dead letter")
    await eventually(lambda: _got(bus, [g.envelope.id for g in goods]), timeout=15.0, what="all 40 valid events")
    await quiesce(bus)
    assert (letter.code, letter.stream_seq, letter.body) == ("malformed_json", poison_seq, poison)
    assert deliveries(bus) == {g.envelope.id: 1 for g in goods}, "a valid event was handled more than once"
    assert len(await bus.dead_letters("TJ")) == 1


async def test_subject_that_is_not_utf8_is_dead_lettered_and_the_adapter_reads_on(
    bus: Bus, js: JetStreamContext, signers: dict[str, Signer]
) -> None:
    """Defect 2: nats-py's read loop used to die on ``subject.decode()``. Now the message is
    dead-lettered ``subject_invalid``; its headers hold the subject escaped (valid UTF-8)."""
    await bus.start("TJ")
    bj = Peer(signers["BJ"])
    first = bj.good()
    await send_good(js, bus, first)
    body = encode(bj.forge(submitted(), advance=False))
    bad_seq = await publish_raw_subject(bus, js, b"xregion.v1.lead.\xff\xfe.BJ.TJ", body)
    after = bj.good()
    await send_good(js, bus, after)

    await eventually(lambda: _got(bus, [first.envelope.id, after.envelope.id]), what="the event sent after it")
    [letter] = await eventually(lambda: letters(bus, 1), what="the subject_invalid dead letter")
    assert (letter.code, letter.stream_seq, letter.body) == ("subject_invalid", bad_seq, body)
    assert letter.original_subject == "xregion.v1.lead.\\xff\\xfe.BJ.TJ"
    [alert] = await eventually(bus.alerts, what="the security alert")
    assert alert.code == "subject_invalid" and alert.record["original_subject"] == letter.original_subject
    await quiesce(bus)
    assert deliveries(bus) == {first.envelope.id: 1, after.envelope.id: 1}


async def test_event_naming_the_receiver_as_sender_is_checked_before_trusted(
    bus: Bus, js: JetStreamContext, signers: dict[str, Signer]
) -> None:
    """Defect 3: only a genuine own broadcast (in TJ's outbox, at that stream position) is
    skipped. One signed with TJ's key that TJ never sent, and one forged with BJ's key, are
    dead-lettered with a security alert."""
    (tj,) = await bus.start("TJ")
    own = await tj.client.open("share.alert", to="ALL", data=PAYLOADS["share.alert"])
    await quiesce(bus)  # TJ's own broadcast came back through the ALL filter and was skipped

    stolen = OriginChain(signers["TJ"]).seal(example_event("share.alert", sender="TJ", to="ALL"))
    stolen_seq = await publish(js, bus, stolen.subject, encode(stolen.wire), stolen.envelope.id)
    replayed_seq = await publish(js, bus, own.subject, encode(own.wire))  # TJ's own event, a second copy
    forged = dict(example_event("share.alert", sender="TJ", to="ALL"), originseq=1, linkseq=1)
    forged = signers["BJ"].sign({**forged, "prevhash": "sha256:" + "0" * 64, "linkprev": "sha256:" + "0" * 64})
    forged_seq = await publish(js, bus, "xregion.v1.share.alert.TJ.ALL", encode(forged))

    found = await eventually(lambda: letters(bus, 3), what="three dead letters")
    assert sorted((x.stream_seq, x.code) for x in found) == [
        (stolen_seq, "own_event_unknown"),
        (replayed_seq, "chain_replay"),
        (forged_seq, "key_not_valid"),
    ]
    alerts = await eventually(lambda: _alerts(bus, 3), what="three security alerts")
    assert sorted(a.code for a in alerts) == ["chain_replay", "key_not_valid", "own_event_unknown"]
    assert bus.received.get("TJ", []) == []


async def test_json_in_utf16_or_utf32_is_malformed(bus: Bus, js: JetStreamContext, signers: dict[str, Signer]) -> None:
    """Defect 4: the signed object is valid; its bytes are UTF-16/UTF-32, not UTF-8."""
    await bus.start("TJ")
    bj = Peer(signers["BJ"])
    text = encode(bj.forge(submitted(), advance=False)).decode("utf-8")
    bodies = [text.encode(enc) for enc in ("utf-16", "utf-16-le", "utf-32", "utf-32-be")]
    seqs = [await publish(js, bus, SUBMITTED, body) for body in bodies]
    after = bj.good()
    await send_good(js, bus, after)
    await eventually(lambda: _got(bus, [after.envelope.id]), what="the valid event after them")
    found = await eventually(lambda: letters(bus, 4), what="four dead letters")
    assert [(x.stream_seq, x.code) for x in found] == [(s, "malformed_json") for s in seqs]
    await quiesce(bus)
    assert deliveries(bus) == {after.envelope.id: 1}


async def test_duplicate_members_and_non_canonical_bytes_are_refused(
    bus: Bus, js: JetStreamContext, signers: dict[str, Signer]
) -> None:
    """Defect 5: a duplicate member (last wins, the signature still verifies) is
    ``duplicate_member``; the same valid object in other bytes than its RFC 8785 form is
    ``not_canonical``: what is signed is exactly what is stored."""
    await bus.start("TJ")
    bj = Peer(signers["BJ"])
    body = encode(bj.forge(submitted(), advance=False))
    duplicate = body.replace(b'"title":', b'"title":"\xe6\x81\xb6\xe6\x84\x8f","title":', 1)
    spaced = json.dumps(json.loads(body), ensure_ascii=False, indent=1).encode()
    escaped = json.dumps(json.loads(body), ensure_ascii=True, sort_keys=True, separators=(",", ":")).encode()
    cases = [
        (duplicate, "duplicate_member"),
        (spaced, "not_canonical"),
        (escaped, "not_canonical"),
        (body + b"\n", "not_canonical"),
        (b"\xef\xbb\xbf" + body, "malformed_json"),
    ]
    seqs = [await publish(js, bus, SUBMITTED, raw) for raw, _ in cases]
    after = bj.good()
    await send_good(js, bus, after)
    await eventually(lambda: _got(bus, [after.envelope.id]), what="the valid event after them")
    found = await eventually(lambda: letters(bus, len(cases)), what="every dead letter")
    assert [(x.stream_seq, x.code) for x in found] == [(s, code) for s, (_, code) in zip(seqs, cases, strict=True)]
    await quiesce(bus)
    assert deliveries(bus) == {after.envelope.id: 1}


async def test_role_rules_are_enforced_at_once_before_the_handler(
    bus: Bus, js: JetStreamContext, signers: dict[str, Signer]
) -> None:
    """Defect 6: only the coordinator escalates, and the coordinator only escalates."""
    await bus.start("TJ")
    bj, coord = Peer(signers["BJ"]), Peer(signers["COORD"])
    escalation = bj.forge(example_event("escalation.overdue", sender="BJ", to="TJ"), advance=True)
    lead = coord.forge(example_event("lead.submitted", sender="COORD", to="TJ"), advance=True)
    seqs = [
        await publish(js, bus, "xregion.v1.escalation.overdue.BJ.TJ", encode(escalation)),
        await publish(js, bus, "xregion.v1.lead.submitted.COORD.TJ", encode(lead)),
    ]
    real = coord.forge(example_event("escalation.overdue", sender="COORD", to="TJ"), advance=True)
    await publish(js, bus, "xregion.v1.escalation.overdue.COORD.TJ", encode(real))
    await eventually(lambda: _got(bus, [real["id"]]), what="the coordinator's escalation")
    found = await eventually(lambda: letters(bus, 2), what="two dead letters")
    assert [(x.stream_seq, x.code) for x in found] == [(s, "role_violation") for s in seqs]
    await quiesce(bus)
    info = await js.consumer_info(bus.settings.stream, consumer_name("TJ"))
    assert info.num_redelivered == 0, "refused by a retry instead of at once"
    assert deliveries(bus) == {real["id"]: 1}


async def test_an_exception_judging_one_message_dead_letters_only_it(
    bus: Bus, js: JetStreamContext, signers: dict[str, Signer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Poison isolation: whatever a check raises (here a TypeError from the payload decoder,
    for one message) dead-letters that message, ``inspection_failed`` naming the type."""
    import xregion.runtime.consumer as consumer_module

    real = consumer_module.decode_data

    def fragile(event_type: Any, data: dict[str, Any], registry: Any = None) -> Any:
        if data.get("title") == "poison":
            raise TypeError("odd shape")
        return real(event_type, data, registry)

    monkeypatch.setattr(consumer_module, "decode_data", fragile)
    await ensure_topology(js, bus.settings, ("TJ",))
    bj = Peer(signers["BJ"])
    goods = [bj.good() for _ in range(2)]
    poison = bj.forge(submitted(payload={**PAYLOADS["lead.submitted"], "title": "poison"}), advance=True)
    goods.append(bj.good())
    for good in goods[:2]:
        await send_good(js, bus, good)
    poison_seq = await publish(js, bus, SUBMITTED, encode(poison))
    await send_good(js, bus, goods[2])
    await bus.start("TJ")
    [letter] = await eventually(lambda: letters(bus, 1), what="the dead letter")
    await eventually(lambda: _got(bus, [g.envelope.id for g in goods]), what="the valid events")
    await quiesce(bus)
    assert (letter.code, letter.stream_seq) == ("inspection_failed", poison_seq)
    assert letter.reason["exception"] == "TypeError" and "odd shape" not in json.dumps(letter.reason)
    assert deliveries(bus) == {g.envelope.id: 1 for g in goods}


async def test_a_batch_failing_on_its_last_delivery_loses_nothing(
    bus: Bus, js: JetStreamContext, signers: dict[str, Signer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """max_deliver: a store failure tied to one message (outside its handler) rolls the whole
    batch back on every delivery. On the last one each message is taken alone: the valid ones
    are handled, the one that still fails is dead-lettered ``delivery_exhausted``; nothing
    leaves through max_deliver silently."""
    bus.settings = RuntimeSettings(ack_wait_s=5.0, max_deliver=3)
    await ensure_topology(js, bus.settings, ("TJ",))
    bj = Peer(signers["BJ"])
    goods = [bj.good() for _ in range(4)]
    cursed = goods[-1]
    cursed_hash = event_hash(cursed.wire)
    real = Store.save_chain_head

    def failing(db: sqlite3.Connection, origin: str, head: ChainHead) -> None:
        if head.hash == cursed_hash:
            raise sqlite3.OperationalError("disk I/O error")
        real(db, origin, head)

    monkeypatch.setattr(Store, "save_chain_head", staticmethod(failing))
    for good in goods:
        await send_good(js, bus, good)
    await bus.start("TJ")
    [letter] = await eventually(lambda: letters(bus, 1), timeout=20.0, what="the dead letter")
    others = [g.envelope.id for g in goods[:-1]]
    await eventually(lambda: _got(bus, others), timeout=20.0, what="the other events")
    await quiesce(bus)
    assert (letter.code, letter.event_id) == ("delivery_exhausted", cursed.envelope.id)
    assert letter.reason["exception"] == "OperationalError"
    # Each rolled-back delivery ran the handler again; what took effect, took effect once.
    inbox = await bus.adapters["TJ"].store.lookup(lambda db: db.execute("SELECT event_id FROM inbox").fetchall())
    assert sorted(row[0] for row in inbox) == sorted(others)


async def _got(bus: Bus, ids: list[str]) -> bool:
    got = deliveries(bus)
    return all(got[i] for i in ids)


async def _alerts(bus: Bus, n: int) -> list[Any] | None:
    found = await bus.alerts("TJ")
    return found if len(found) >= n else None
