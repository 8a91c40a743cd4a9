"""The outbox's group commit and the relay's atomic batches, on a real nats-server.

What a region relies on: concurrent submissions each get their own place in the origin's
chain (an invalid one refused alone), every committed event reaches the stream once, in
chain order, with the stream sequence recorded in the outbox; an event already stored
(its acknowledgement lost) is never stored twice; a stream without atomic batches still
gets everything, one event at a time.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anyio
import nats
import pytest
from nats.js import JetStreamContext

from tests.bus import Bus
from xregion.adapter import Adapter
from xregion.errors import LifecycleError
from xregion.examples import PAYLOADS
from xregion.runtime.relay import Relay
from xregion.runtime.topology import event_stream_config
from xregion.signing import KeyRoster, Signer

B, T = "BJ", "TJ"

pytestmark = pytest.mark.anyio


async def stream_events(js: JetStreamContext, stream: str) -> list[tuple[int, dict[str, Any], str | None]]:
    """(stream seq, event, Nats-Msg-Id) of every message of ``stream``, in stream order."""
    info = await js.stream_info(stream)
    out = []
    for seq in range(int(info.state.first_seq or 1), int(info.state.last_seq or 0) + 1):
        msg = await js.get_msg(stream, seq)
        out.append((seq, json.loads(msg.data or b""), (msg.headers or {}).get("Nats-Msg-Id")))
    return out


async def outbox_rows(adapter: Adapter) -> list[tuple[int, str, int | None]]:
    """(origin seq, event id, recorded stream seq) of every outbox row."""
    return await adapter.store.read(
        lambda db: db.execute("SELECT seq, event_id, stream_seq FROM outbox ORDER BY seq").fetchall()
    )


async def drain_outbox(adapter: Adapter, stream: str) -> Relay:
    """Run a relay on ``adapter``'s store, over a connection of its own, until its outbox is
    empty; the relay, stopped."""
    nc = await nats.connect(adapter.nats_url)
    relay = Relay(adapter.store, nc, nc.jetstream(), stream)
    task = asyncio.create_task(relay.run())
    try:
        with anyio.fail_after(30):
            while await adapter.store.outbox_depth():
                await asyncio.sleep(0.02)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await nc.close()
    return relay


def offline_adapter(bus: Bus, region: str, signers: dict[str, Signer], roster: KeyRoster) -> Adapter:
    """An adapter whose store and outbox work but which is not connected (no relay runs)."""
    return Adapter(
        region,
        signer=signers[region],
        roster=roster,
        nats_url=bus.server.url,
        store_path=bus.root / f"{region}-offline.db",
        settings=bus.settings,
    )


async def test_concurrent_submissions_share_commits_and_reach_the_stream_in_chain_order(
    bus: Bus, js: JetStreamContext
) -> None:
    (bj,) = await bus.start(B)
    first = await bj.client.open("lead.submitted", to=T, data=PAYLOADS["lead.submitted"])
    groups_before = bj.outbox.groups

    async def valid() -> str:
        sent = await bj.client.open("lead.submitted", to=T, data=PAYLOADS["lead.submitted"])
        return sent.envelope.id

    async def invalid() -> str:  # BJ may not accept its own lead: refused inside the outbox
        await bj.client.send(first.envelope.subject, "lead.accepted", PAYLOADS["lead.accepted"])
        return "stored"

    calls = [invalid() if i % 25 == 7 else valid() for i in range(300)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    refused = [r for r in results if isinstance(r, BaseException)]
    sent_ids = [r for r in results if isinstance(r, str)]
    assert len(refused) == 12 and all(isinstance(r, LifecycleError) for r in refused)
    assert len(sent_ids) == 288 and "stored" not in sent_ids
    # fewer transactions than submissions: they were committed in groups
    assert bj.outbox.groups - groups_before < len(sent_ids) / 4

    with anyio.fail_after(30):
        await bj.wait_published()
    rows = await outbox_rows(bj)
    assert [seq for seq, _, _ in rows] == list(range(1, 290))  # no hole left by a refused submission
    assert {event_id for _, event_id, _ in rows} == {first.envelope.id, *sent_ids}

    stored = await stream_events(js, bus.settings.stream)
    mine = [(seq, event, msg_id) for seq, event, msg_id in stored if event["source"].startswith("urn:xregion:BJ:")]
    assert [event["originseq"] for _, event, _ in mine] == list(range(1, 290))  # chain order, once each
    assert [msg_id for _, event, msg_id in mine] == [event["id"] for _, event, _ in mine]
    recorded = {event_id: stream_seq for _, event_id, stream_seq in rows}
    assert all(recorded[event["id"]] == seq for seq, event, _ in mine)
    assert bj.relay is not None and bj.relay.atomic_batches >= 1


async def test_events_already_in_the_stream_are_not_stored_again(
    bus: Bus, js: JetStreamContext, signers: dict[str, Signer], roster: KeyRoster, logs: list[dict[str, Any]]
) -> None:
    """A relay that died after JetStream stored a batch but before it recorded the acks
    publishes the batch again: the server refuses the batch (its ids are known), the relay
    falls back to single publishes, which are acknowledged as duplicates with the original
    sequences."""
    await js.add_stream(event_stream_config(bus.settings))
    bj = offline_adapter(bus, B, signers, roster)
    await bj.store.open()
    try:
        for _ in range(20):
            await bj.client.open("lead.submitted", to=T, data=PAYLOADS["lead.submitted"])
        pending = await bj.store.pending(100)
        for row in pending[:5]:  # stored by an earlier run whose acks were lost
            await js.publish(row.subject, row.payload, headers={"Nats-Msg-Id": row.event_id})

        relay = await drain_outbox(bj, bus.settings.stream)

        stored = await stream_events(js, bus.settings.stream)
        assert [event["originseq"] for _, event, _ in stored] == list(range(1, 21))
        assert [seq for seq, _, _ in stored] == list(range(1, 21))
        assert [stream_seq for _, _, stream_seq in await outbox_rows(bj)] == list(range(1, 21))
        assert relay.atomic_batches == 0
        assert any(e["event"].startswith("atomic batch refused") for e in logs)
    finally:
        await bj.store.close()


async def test_a_stream_without_atomic_batches_gets_every_event_one_at_a_time(
    bus: Bus, js: JetStreamContext, signers: dict[str, Signer], roster: KeyRoster, logs: list[dict[str, Any]]
) -> None:
    config = event_stream_config(bus.settings)
    config.allow_atomic = False
    await js.add_stream(config)
    bj = offline_adapter(bus, B, signers, roster)
    await bj.store.open()
    try:
        for _ in range(30):
            await bj.client.open("lead.submitted", to=T, data=PAYLOADS["lead.submitted"])
        relay = await drain_outbox(bj, bus.settings.stream)
        stored = await stream_events(js, bus.settings.stream)
        assert [event["originseq"] for _, event, _ in stored] == list(range(1, 31))
        assert relay.atomic is False and relay.atomic_batches == 0
        warnings = [e for e in logs if "does not allow atomic batches" in e["event"]]
        assert len(warnings) == 1 and warnings[0]["log_level"] == "warning"
    finally:
        await bj.store.close()


async def test_topology_allows_atomic_batches_on_an_existing_stream(bus: Bus, js: JetStreamContext) -> None:
    """A stream declared by an earlier release (no ``allow_atomic``) is updated when an
    adapter that may declare starts: allowing batches removes nothing."""
    config = event_stream_config(bus.settings)
    config.allow_atomic = False
    await js.add_stream(config)
    await bus.start(B)
    info = await js.stream_info(bus.settings.stream)
    assert info.config.allow_atomic is True


async def test_a_submission_cancelled_while_it_waits_is_not_stored(
    bus: Bus, signers: dict[str, Signer], roster: KeyRoster
) -> None:
    bj = offline_adapter(bus, B, signers, roster)
    await bj.store.open()
    try:
        busy, release = asyncio.Event(), asyncio.Event()

        async def hold_the_store() -> None:  # e.g. a batch of inbound events being handled
            async with bj.store.transaction():
                busy.set()
                await release.wait()

        holder = asyncio.create_task(hold_the_store())
        await busy.wait()
        waiting = [
            asyncio.create_task(bj.client.open("lead.submitted", to=T, data=PAYLOADS["lead.submitted"]))
            for _ in range(3)
        ]
        try:
            with anyio.fail_after(5):
                while len(bj.outbox._queue) < 3:  # all three wait for the store
                    await asyncio.sleep(0.01)
            waiting[1].cancel()
        finally:
            release.set()
            await holder
        first, second, third = await asyncio.gather(*waiting, return_exceptions=True)
        assert isinstance(second, asyncio.CancelledError)
        assert not isinstance(first, BaseException) and not isinstance(third, BaseException)
        rows = await outbox_rows(bj)
        assert [(seq, event_id) for seq, event_id, _ in rows] == [(1, first.envelope.id), (2, third.envelope.id)]
    finally:
        await bj.store.close()


async def test_batches_do_not_wait_for_the_previous_ones_acknowledgements_to_be_recorded(
    bus: Bus, js: JetStreamContext, signers: dict[str, Signer], roster: KeyRoster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recording a batch's acknowledgements (a disk sync) runs while the next batch is
    published: with recording held back, every batch still reaches the stream; the outbox
    records them all, in the end, with their stream sequences."""
    await js.add_stream(event_stream_config(bus.settings))
    bj = offline_adapter(bus, B, signers, roster)
    await bj.store.open()
    release = asyncio.Event()
    original = bj.store.mark_published

    async def held(acks: list[tuple[int, int]], **kwargs: Any) -> bool:
        await release.wait()
        return await original(acks, **kwargs)

    monkeypatch.setattr(bj.store, "mark_published", held)
    nc = await nats.connect(bj.nats_url)
    relay = Relay(bj.store, nc, nc.jetstream(), bus.settings.stream, batch=10)
    task = asyncio.create_task(relay.run())
    try:
        for _ in range(30):
            await bj.client.open("lead.submitted", to=T, data=PAYLOADS["lead.submitted"])
        with anyio.fail_after(30):  # three batches in the stream, none of them recorded yet
            while int((await js.stream_info(bus.settings.stream)).state.messages or 0) < 30:
                await asyncio.sleep(0.02)
        assert await bj.store.outbox_depth() == 30
        release.set()
        with anyio.fail_after(30):
            while await bj.store.outbox_depth():
                await asyncio.sleep(0.02)
        stored = await stream_events(js, bus.settings.stream)
        assert [event["originseq"] for _, event, _ in stored] == list(range(1, 31))
        assert [(seq, stream_seq) for seq, _, stream_seq in await outbox_rows(bj)] == [(n, n) for n in range(1, 31)]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await nc.close()
        await bj.store.close()


async def test_acknowledgements_are_not_recorded_over_a_requeue(
    bus: Bus, signers: dict[str, Signer], roster: KeyRoster
) -> None:
    """An acknowledgement recorded after a restore or rewind made events pending again could
    mark one the stream lost as published: it is dropped (the event goes out again)."""
    bj = offline_adapter(bus, B, signers, roster)
    await bj.store.open()
    try:
        await bj.client.open("lead.submitted", to=T, data=PAYLOADS["lead.submitted"])
        before = bj.store.requeues
        await bj.store.requeue_beyond(0)
        assert not await bj.store.mark_published([(1, 1)], unless_requeued=before)
        assert await bj.store.outbox_depth() == 1
        assert await bj.store.mark_published([(1, 1)], unless_requeued=bj.store.requeues)
        assert await bj.store.outbox_depth() == 0
    finally:
        await bj.store.close()
