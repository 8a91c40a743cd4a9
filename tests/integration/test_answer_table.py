"""The answer table, on a real bus: every event type of every family, sent over a real
nats-server between real adapters, gets exactly the automatic answers the table says.

The table is read from ``schemas/conformance/answers.json`` — the document docs/signing-recipe.md
§10 shows (a unit test keeps the two equal, and the file equal to the code's table) — not from
the code the adapters run. One scenario sends every v1 event type at least once (BJ, TJ and HE
adapters; the coordinator's escalations published with COORD's key); then, from the stream
alone, each event's answers (events whose ``causationid`` is its id and whose type is an
answer type of the table) must be:

* for a row with an answer: exactly one from every region the event was addressed to (every
  region but the sender for ``ALL``), of the row's type and ``data``, signed by that region
  with its roster key, addressed back to the event's sender, with the event's ``subject`` and
  ``correlationid``, and ``causationid`` = the event's ``id`` (the table's ``ids``);
* for a row without one: none.

And every answer in the stream answers an event (nothing is answered twice or out of the blue).
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.bus import Bus, eventually
from tests.integration.helpers import assert_exactly_once, quiesce, stream_events, tracks
from tests.support import OriginChain, example_event
from xregion.codec import encode
from xregion.contracts.catalog import CATALOG
from xregion.envelope import SOURCE
from xregion.examples import PAYLOADS
from xregion.regions import BROADCAST

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "schemas" / "conformance" / "answers.json"
REGIONS = ("BJ", "TJ", "HE")
THIRD = {  # the examples ask about a lead TJ→BJ; these leads are BJ→TJ, so the third region is HE
    "lead.permission_requested": {**PAYLOADS["lead.permission_requested"], "target_region": "HE"},
    "lead.permission_granted": {**PAYLOADS["lead.permission_granted"], "target_region": "HE"},
}


def table() -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {row["event"]: row for row in json.loads(TABLE.read_text("utf-8"))["events"]}
    return rows


def sender_of(wire: dict[str, Any]) -> str:
    match = SOURCE.match(wire["source"])
    assert match is not None
    return match[1]


def event_name(wire: dict[str, Any]) -> str:
    return CATALOG.by_ce_type(wire["type"]).name


async def play_every_event_type(bus: Bus) -> None:
    """Referrals that together send every v1 event type, each step waited for."""
    bj, tj, he = (bus.adapters[r].client for r in REGIONS)

    async def lead(*steps: tuple[Any, str]) -> str:
        opened = await bj.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
        rid = opened.envelope.subject
        await bus.state("BJ", rid, "received")
        for client, name in steps:
            sent = await client.send(rid, name, THIRD.get(name, PAYLOADS[name]))
            other = "TJ" if client is bj else "BJ"
            await _recorded(bus, other, rid, sent.envelope.id)
        return rid

    # lead: permissions asked and answered, information asked and supplied, accepted, progress, concluded
    await lead(
        (tj, "lead.permission_requested"),
        (bj, "lead.permission_granted"),
        (bj, "lead.permission_refused"),
        (tj, "lead.info_requested"),
        (bj, "lead.info_supplied"),
        (tj, "lead.accepted"),
        (tj, "lead.progress"),
        (tj, "lead.concluded"),
    )
    await lead((tj, "lead.rejected"))
    await lead((bj, "lead.withdrawn"))
    # lead forwarded by TJ to HE: a new lead TJ→HE, receipted by HE, linked by its correlationid
    rid = await lead()
    _, opened = await tj.forward_lead(rid, "HE", PAYLOADS["lead.forwarded"]["reason"])
    await bus.state("TJ", opened.envelope.subject, "received")
    await bus.state("BJ", rid, "forwarded")

    async def assist(*steps: tuple[Any, str]) -> None:
        opened = await bj.open("assist.requested", to="TJ", data=PAYLOADS["assist.requested"])
        rid = opened.envelope.subject
        await bus.state("BJ", rid, "received")
        for client, name in steps:
            sent = await client.send(rid, name, PAYLOADS[name])
            await _recorded(bus, "TJ" if client is bj else "BJ", rid, sent.envelope.id)

    await assist((tj, "assist.accepted"), (tj, "assist.evidence_delivered"), (tj, "assist.completed"))
    await assist((tj, "assist.declined"))
    await assist((bj, "assist.cancelled"))

    # recognition to ALL: received by both, recognised by TJ, contested by HE, revoked, acknowledged
    published = await bj.open("recognition.published", to=BROADCAST, data=PAYLOADS["recognition.published"])
    rid = published.envelope.subject
    await tracks(bus, "BJ", rid, {"TJ": "received", "HE": "received"})
    await tj.send(rid, "recognition.recognized", PAYLOADS["recognition.recognized"])
    await he.send(rid, "recognition.contested", PAYLOADS["recognition.contested"])
    await tracks(bus, "BJ", rid, {"TJ": "recognized", "HE": "contested"})
    await bj.send(rid, "recognition.revoked", PAYLOADS["recognition.revoked"])
    await tracks(bus, "BJ", rid, {"TJ": "revocation_acknowledged", "HE": "revocation_acknowledged"})

    # every share broadcast, from HE
    for event in sorted(n for n in PAYLOADS if n.startswith("share.") and n != "share.acknowledged"):
        shared = await he.open(event, to=BROADCAST, data=PAYLOADS[event])
        await tracks(bus, "HE", shared.envelope.subject, {"BJ": "acknowledged", "TJ": "acknowledged"})

    # the coordinator's escalations to TJ, signed with COORD's key as its outbox would
    coord = OriginChain(bus.signers["COORD"])
    nc = await bus.raw()
    try:
        for name in ("escalation.reminder", "escalation.overdue"):
            data = {**PAYLOADS[name], "referral_id": rid, "late_party": "TJ"}
            event = coord.seal(
                example_event(name, sender="COORD", to="TJ", agency="coordinator", payload=data, time=datetime.now(UTC))
            )
            await nc.jetstream().publish(
                event.subject, encode(event.wire), headers={"Nats-Msg-Id": event.envelope.id}, timeout=5.0
            )
            await _recorded(bus, "TJ", event.envelope.subject, event.envelope.id)
    finally:
        await nc.close()


async def _recorded(bus: Bus, region: str, referral_id: str, event_id: str) -> None:
    async def check() -> bool:
        return event_id in {h.event_id for h in await bus.adapters[region].client.history(referral_id)}

    await eventually(check, 10.0, f"{region} to record {event_id} of {referral_id}")


async def test_every_event_type_gets_exactly_the_answers_of_the_table(bus: Bus) -> None:
    rows = table()
    assert set(rows) == {kind.name for kind in CATALOG.versions(1)}, "the table covers every v1 event type"
    answer_types = {row["answer"] for row in rows.values() if row["answer"]}
    await bus.start(*REGIONS)
    await play_every_event_type(bus)
    await quiesce(bus)
    await assert_exactly_once(bus)
    assert await bus.dead_letters() == []

    nc = await bus.raw()
    try:
        stream = [body for _, _, body in await stream_events(nc.jetstream(), bus.settings.stream)]
    finally:
        await nc.close()
    sent_types = {event_name(wire) for wire in stream}
    assert sent_types == set(rows), f"not sent over the bus: {sorted(set(rows) - sent_types)}"

    answers_to: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for wire in stream:
        if event_name(wire) in answer_types:
            assert "causationid" in wire, wire["id"]
            answers_to[wire["causationid"]].append(wire)
    by_id = {wire["id"]: wire for wire in stream}
    assert set(answers_to) <= set(by_id), "an answer names an event that is not in the stream"

    for wire in stream:
        row, sender, answers = rows[event_name(wire)], sender_of(wire), answers_to.pop(wire["id"], [])
        if row["answer"] is None:
            assert answers == [], f"{event_name(wire)} {wire['id']} got answers the table does not list"
            continue
        expected = [r for r in REGIONS if r != sender] if wire["addressee"] == BROADCAST else [wire["addressee"]]
        assert sorted(sender_of(a) for a in answers) == sorted(expected), (event_name(wire), wire["id"])
        for answer in answers:
            answerer = sender_of(answer)
            assert event_name(answer) == row["answer"]
            assert answer["data"] == row["data"]
            assert answer["addressee"] == sender  # the table's ids: back to the event's sender,
            assert answer["subject"] == wire["subject"]  # on its referral,
            assert answer["correlationid"] == wire["correlationid"]  # in its correlation,
            assert answer["causationid"] == wire["id"]  # caused by it
            key = bus.roster.verify(answer, answerer, datetime.fromisoformat(answer["time"].replace("Z", "+00:00")))
            assert key.key_id == bus.signers[answerer].key_id
    assert answers_to == {}, "answers left over"

    # the forwarded lead's receipt carries the correlation of the lead it was forwarded from
    forwarded = [w for w in stream if event_name(w) == "lead.submitted" and sender_of(w) == "TJ"]
    assert len(forwarded) == 1 and forwarded[0]["correlationid"] != forwarded[0]["subject"]
    [receipt] = [w for w in stream if w.get("causationid") == forwarded[0]["id"]]
    assert receipt["correlationid"] == forwarded[0]["correlationid"]
