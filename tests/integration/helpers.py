"""Shared checks of the integration tests: quiescence, exactly-once delivery, signed receipts.

Everything waits on conditions with deadlines (never sleep-and-hope) and reads the real
JetStream stream the adapters publish to.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from nats.js import JetStreamContext

from tests.bus import Bus, eventually
from xregion.adapter import Delivery
from xregion.regions import BROADCAST
from xregion.runtime.topology import consumer_name


async def stream_events(js: JetStreamContext, stream: str) -> list[tuple[int, str, dict[str, Any]]]:
    """Every message of the event stream: (stream seq, subject, parsed JSON body)."""
    info = await js.stream_info(stream)
    out = []
    if info.state.messages == 0:
        return out
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(stream, seq)
        out.append((seq, msg.subject, json.loads(msg.data or b"{}")))
    return out


async def quiesce(bus: Bus, timeout: float = 15.0) -> None:
    """Wait until the bus is idle: every outbox drained, every region's durable consumer
    has handled and acknowledged everything in the stream, and the stream stopped growing
    while we looked (a receipt is committed to an outbox before its cause is acked)."""
    nc = await bus.raw()
    js = nc.jetstream()
    stream = bus.settings.stream

    async def idle() -> bool:
        before = (await js.stream_info(stream)).state.last_seq
        for region in bus.adapters:
            info = await js.consumer_info(stream, consumer_name(region))
            if info.num_pending or info.num_ack_pending:
                return False
        for adapter in bus.adapters.values():
            if await adapter.store.outbox_depth():
                return False
        after = (await js.stream_info(stream)).state.last_seq
        return before == after

    try:
        await eventually(idle, timeout, "the bus to become idle")
    finally:
        await nc.close()


async def assert_exactly_once(bus: Bus) -> dict[str, list[Delivery]]:
    """Each region's handler got every event of the stream addressed to it (or to ALL,
    from another region) exactly once, and nothing else. Call after :func:`quiesce`."""
    nc = await bus.raw()
    try:
        events = await stream_events(nc.jetstream(), bus.settings.stream)
    finally:
        await nc.close()
    for region in bus.adapters:
        expected = Counter(
            body["id"]
            for _, _, body in events
            if body["addressee"] in (region, BROADCAST) and not body["source"].startswith(f"urn:xregion:{region}:")
        )
        got = Counter(d.event.envelope.id for d in bus.received.get(region, []))
        duplicates = {k: n for k, n in got.items() if n > 1}
        assert not duplicates, f"{region}'s handler got events more than once: {duplicates}"
        assert got == expected, f"{region}: handled {sorted(got)} but the stream holds {sorted(expected)}"
    return bus.received


def deliveries(bus: Bus, region: str, referral_id: str) -> list[Delivery]:
    """What ``region``'s handler received of one referral, in order."""
    return [d for d in bus.received.get(region, []) if d.event.envelope.subject == referral_id]


def types_of(items: list[Delivery]) -> list[str]:
    return [d.event.envelope.event_type for d in items]


def assert_signed_by(bus: Bus, delivery: Delivery, party: str) -> None:
    """The delivered event was sent and signed by ``party`` with its roster key."""
    env = delivery.event.envelope
    assert env.sender == party
    assert env.keyid == bus.signers[party].key_id
    assert env.signature
    key = bus.roster.verify(delivery.event.wire, env.sender, env.time)  # raises if forged
    assert key.party == party


def assert_receipt(bus: Bus, delivery: Delivery, *, by: str, answers: str) -> None:
    """An automatic receipt: signed by the addressee ``by``, caused by event ``answers``."""
    assert_signed_by(bus, delivery, by)
    assert delivery.event.envelope.causationid == answers


async def history_of(bus: Bus, region: str, referral_id: str) -> list[tuple[str, str, str]]:
    """(event type, sender, state after) of a referral, as ``region`` recorded it."""
    return [(h.event_type, h.sender, h.state_after) for h in await bus.adapters[region].client.history(referral_id)]


async def tracks(bus: Bus, region: str, referral_id: str, wanted: dict[str, str], timeout: float = 10.0) -> Any:
    """Wait until ``region``'s view of a tracked referral has the ``wanted`` tracks."""

    async def check() -> Any:
        state = await bus.adapters[region].client.referral(referral_id)
        if state is not None and all(state.tracks.get(k) == v for k, v in wanted.items()):
            return state
        return None

    return await eventually(check, timeout, f"{region} to see {referral_id} with tracks {wanted}")
