"""``null`` attributes on the real receiving path (issue 15 item 5).

The v1 rule: a producer leaves a member without a value out, never ``null``; a receiver reads
``null`` as absent — v1's schemas always accepted it, so events that carry it stay valid — and
verifies and hashes the event exactly as received, ``null`` included. A real TJ adapter on a
real nats-server; BJ publishes hand-signed bytes with plain nats-py.
"""

from __future__ import annotations

from typing import Any

import pytest
from nats.js import JetStreamContext

from tests.bus import Bus, eventually
from tests.hostile.peer import Peer, deliveries, letters, publish, send_good, submitted
from tests.integration.helpers import quiesce, stream_events
from xregion.codec import encode
from xregion.compose import null_members
from xregion.signing import Signer

pytestmark = pytest.mark.anyio

SUBMITTED = "xregion.v1.lead.submitted.BJ.TJ"
NULLS = {"causationid": None, "handlingnote": None, "answerby": None}


async def _got(bus: Bus, ids: list[str]) -> bool:
    got = deliveries(bus)
    return all(got[i] for i in ids)


async def test_signed_null_attributes_are_read_as_absent_and_hashed_as_received(
    bus: Bus, js: JetStreamContext, signers: dict[str, Signer]
) -> None:
    """A signed lead with ``causationid``, ``handlingnote`` and ``answerby`` all ``null`` is
    delivered once, with the attributes absent, and receipted; BJ's next event, chained on the
    hash of the bytes *with* the nulls, is accepted in turn (the chain is over what was signed)."""
    await bus.start("TJ")
    bj = Peer(signers["BJ"])
    wire = bj.forge({**submitted(), **NULLS}, advance=True)
    assert null_members(wire) == list(NULLS)
    seq = await publish(js, bus, SUBMITTED, encode(wire), wire["id"])
    after = bj.good()  # prevhash and linkprev: the hash of the event above, nulls included
    await send_good(js, bus, after)

    await eventually(lambda: _got(bus, [wire["id"], after.envelope.id]), what="both events delivered")
    await quiesce(bus)
    assert deliveries(bus) == {wire["id"]: 1, after.envelope.id: 1}
    assert await bus.dead_letters("TJ") == []
    [delivery] = [d for d in bus.received["TJ"] if d.event.envelope.id == wire["id"]]
    envelope = delivery.event.envelope
    assert (envelope.causationid, envelope.handlingnote, envelope.answerby) == (None, None, None)
    assert delivery.event.wire == wire  # kept exactly as signed and stored (stream seq below)
    stored = await js.get_msg(bus.settings.stream, seq)
    assert stored.data == encode(wire)

    # TJ's receipt answers it, and TJ (a producer) writes no null itself
    events = [e for _, _, e in await stream_events(js, bus.settings.stream)]
    [receipt] = [e for e in events if e["type"].endswith("lead.received.v1") and e["causationid"] == wire["id"]]
    assert receipt["source"].startswith("urn:xregion:TJ:") and null_members(receipt) == []


async def test_null_signature_is_a_missing_signature(
    bus: Bus, js: JetStreamContext, signers: dict[str, Signer]
) -> None:
    """``"signature": null`` and no ``signature`` member are the same: ``bad_signature``."""
    await bus.start("TJ")
    bj = Peer(signers["BJ"])
    first = bj.good()
    await send_good(js, bus, first)
    nulled: dict[str, Any] = {**bj.forge(submitted(), advance=False), "signature": None}
    missing = {k: v for k, v in bj.forge(submitted(), advance=False).items() if k != "signature"}
    seqs = [await publish(js, bus, SUBMITTED, encode(w), w["id"]) for w in (nulled, missing)]
    after = bj.good()
    await send_good(js, bus, after)

    found = await eventually(lambda: letters(bus, 2), what="two dead letters")
    assert sorted((x.stream_seq, x.code) for x in found) == [(s, "bad_signature") for s in seqs]
    await eventually(lambda: _got(bus, [first.envelope.id, after.envelope.id]), what="the valid events")
    await quiesce(bus)
    assert deliveries(bus) == {first.envelope.id: 1, after.envelope.id: 1}
