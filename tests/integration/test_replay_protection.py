"""Replay protection beyond JetStream's duplicate window.

JetStream drops a message whose ``Nats-Msg-Id`` it saw within the stream's duplicate window.
A thief who re-publishes an already-delivered event with another ``Nats-Msg-Id``, or with
the same one once the window has passed, gets a new stream message past that check. The
adapter still refuses it: the event id is in its inbox (handled at another stream sequence)
and its link sequence is behind the link's head. It is dead-lettered ``chain_replay`` with a
security alert, and the regional system's handler is not called again.
"""

from __future__ import annotations

import pytest
from nats.js import JetStreamContext

from tests.bus import Bus, eventually
from tests.integration.helpers import quiesce
from tests.support import OriginChain, example_event
from xregion.codec import DecodedEvent, encode
from xregion.ids import new_event_id
from xregion.runtime.settings import RuntimeSettings
from xregion.runtime.topology import consumer_name
from xregion.signing import Signer

pytestmark = pytest.mark.anyio


async def publish(js: JetStreamContext, bus: Bus, event: DecodedEvent, msg_id: str) -> tuple[int, bool]:
    ack = await js.publish(
        event.subject, encode(event.wire), stream=bus.settings.stream, headers={"Nats-Msg-Id": msg_id}, timeout=5.0
    )
    return int(ack.seq), bool(ack.duplicate)


def handled(bus: Bus) -> list[str]:
    return [d.event.envelope.id for d in bus.received.get("TJ", [])]


async def received(bus: Bus, *events: DecodedEvent) -> bool:
    return all(e.envelope.id in handled(bus) for e in events)


async def replay_refused(
    bus: Bus, js: JetStreamContext, replay_seq: int, *delivered: DecodedEvent, replayed: DecodedEvent
) -> None:
    """The replay is dead-lettered chain_replay with an alert; the handler saw every event once."""

    async def letter() -> object:
        return [x for x in await bus.dead_letters("TJ") if x.stream_seq == replay_seq]

    [dead] = await eventually(letter, what="the replay in the dead-letter stream")
    assert dead.code == "chain_replay" and dead.event_id == replayed.envelope.id
    assert dead.reason["event_id"] == replayed.envelope.id and dead.reason["stream_seq"] == replay_seq
    assert "already delivered" in dead.reason["message"]
    assert dead.body == encode(replayed.wire)

    async def alert() -> object:
        return [a for a in await bus.alerts("TJ") if a.record.get("stream_seq") == replay_seq]

    [raised] = await eventually(alert, what="the security alert about the replay")
    assert raised.subject == "xregion.alert.TJ.chain_replay" and raised.record["event_id"] == replayed.envelope.id
    raised.verify(bus.roster)

    # The adapter goes on: the next event of the link is delivered; nothing twice.
    await eventually(lambda: received(bus, *delivered), what="every valid event at TJ")
    await quiesce(bus)
    assert handled(bus) == [e.envelope.id for e in delivered], "the handler was called for the replay"
    info = await js.consumer_info(bus.settings.stream, consumer_name("TJ"))
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_replay_with_another_msg_id(bus: Bus, js: JetStreamContext, signers: dict[str, Signer]) -> None:
    await bus.start("TJ")
    bj = OriginChain(signers["BJ"])
    first, second = (
        bj.seal(example_event("lead.submitted", sealed=True)),
        bj.seal(example_event("lead.submitted", sealed=True)),
    )
    await publish(js, bus, first, first.envelope.id)
    await publish(js, bus, second, second.envelope.id)
    await eventually(lambda: received(bus, first, second), what="both leads at TJ")

    # The oldest one again, and the latest one again: both are behind the link's head.
    replay_first, duplicate = await publish(js, bus, first, new_event_id())
    assert not duplicate, "JetStream dropped it: this would not test the adapter"
    replay_second, _ = await publish(js, bus, second, f"replay-{second.envelope.id}")
    third = bj.seal(example_event("lead.submitted", sealed=True))
    await publish(js, bus, third, third.envelope.id)

    await replay_refused(bus, js, replay_first, first, second, third, replayed=first)
    await replay_refused(bus, js, replay_second, first, second, third, replayed=second)
    assert [x.code for x in await bus.dead_letters("TJ")] == ["chain_replay", "chain_replay"]


async def test_replay_with_the_same_msg_id_after_the_duplicate_window(
    bus: Bus, js: JetStreamContext, signers: dict[str, Signer]
) -> None:
    bus.settings = RuntimeSettings(ack_wait_s=5.0, max_deliver=5, duplicate_window_s=1.0)
    await bus.start("TJ")
    stream = await js.stream_info(bus.settings.stream)
    assert stream.config.duplicate_window == 1.0
    bj = OriginChain(signers["BJ"])
    first = bj.seal(example_event("lead.submitted", sealed=True))
    seq, _ = await publish(js, bus, first, first.envelope.id)
    await eventually(lambda: received(bus, first), what="the lead at TJ")

    # Within the window JetStream drops the copy (ack.duplicate); keep trying with the same
    # Nats-Msg-Id until the window has passed and the stream stores it again.
    async def stored_again() -> int | None:
        again, duplicate = await publish(js, bus, first, first.envelope.id)
        return None if duplicate else again

    replay_seq = await eventually(stored_again, timeout=15.0, what="the duplicate window to expire")
    assert replay_seq > seq
    second = bj.seal(example_event("lead.submitted", sealed=True))
    await publish(js, bus, second, second.envelope.id)
    await replay_refused(bus, js, replay_seq, first, second, replayed=first)


async def test_replay_reaches_a_restarted_adapter(bus: Bus, js: JetStreamContext, signers: dict[str, Signer]) -> None:
    """What the adapter saw is durable: after a restart the replay is still refused."""
    await bus.start("TJ")
    bj = OriginChain(signers["BJ"])
    first = bj.seal(example_event("lead.submitted", sealed=True))
    await publish(js, bus, first, first.envelope.id)
    await eventually(lambda: received(bus, first), what="the lead at TJ")
    await quiesce(bus)
    await bus.stop()
    await bus.start("TJ")
    replay_seq, _ = await publish(js, bus, first, new_event_id())
    second = bj.seal(example_event("lead.submitted", sealed=True))
    await publish(js, bus, second, second.envelope.id)
    await replay_refused(bus, js, replay_seq, first, second, replayed=first)
