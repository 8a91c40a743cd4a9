"""Online backup and restore of the event stream (the runbook's procedure), on a real server.

A backup (taken through the server's snapshot API, the server running) comes back exactly:
every message byte for byte at its stream sequence, the regions' durable consumers where they
stood, the same audit, and the regions carry on over it; a damaged backup is refused before
anything reaches the server; a restore never overwrites a stream that exists.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from tests.bus import Bus, eventually
from xregion.auditor.replay import Replayer, ReplayResult
from xregion.auditor.source import read_stream
from xregion.config import load_config
from xregion.coordinator.feed import ProjectionFeed
from xregion.coordinator.projection import Projection
from xregion.errors import BackupError
from xregion.examples import PAYLOADS
from xregion.keys import init_keys
from xregion.ops.backup import DATA_FILE, StreamBackup, backup_stream, bus_streams, restore_stream
from xregion.permissions import consumer_name
from xregion.runtime.stream_reader import StreamReader
from xregion.signing import KeyRoster

pytestmark = pytest.mark.anyio

LEADS = 25


@pytest.fixture
async def nc(bus: Bus) -> AsyncIterator[Client]:
    """A plain connection to the test server (an operator's, as far as this server cares)."""
    client = await bus.raw()
    try:
        yield client
    finally:
        await client.close()


async def messages(js: JetStreamContext, stream: str) -> list[tuple[int, str, bytes, dict[str, str]]]:
    """Every message of ``stream`` by direct get: (sequence, subject, data, headers)."""
    info = await js.stream_info(stream)
    if info.state.messages == 0:
        return []
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(stream, seq)
        found.append((seq, msg.subject, msg.data or b"", dict(msg.headers or {})))
    return found


async def traffic(bus: Bus) -> None:
    """BJ stores an attachment and opens ``LEADS`` referrals to TJ, and someone sends TJ a
    message that is not JSON; TJ handles every lead (BJ sees TJ's receipts) and dead-letters
    the bad message: the event and dead-letter streams and BJ's evidence bucket hold
    something (HE runs too, so that every region's bucket exists)."""
    bj, tj, _he = await bus.start("BJ", "TJ", "HE")
    await bj.client.attach(b"%PDF-1.7 evidence", filename="evidence.pdf", media_type="application/pdf")
    for _ in range(LEADS):
        await bj.client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    raw = await bus.raw()
    try:
        await raw.jetstream().publish("xregion.v1.lead.submitted.BJ.TJ", b"not json")
    finally:
        await raw.close()

    async def settled() -> bool | None:
        handled = len(bus.received.get("TJ", [])) >= LEADS
        return True if handled and await bus.dead_letters("TJ") else None

    await eventually(settled, 20.0, "TJ to handle every lead and dead-letter the bad message")
    await bj.wait_published(timeout=20.0)
    await tj.wait_published(timeout=20.0)
    await bus.stop()


async def test_backup_then_restore_gives_back_the_same_stream_consumers_and_audit(
    bus: Bus, nc: Client, tmp_path: Path, roster: KeyRoster
) -> None:
    js = nc.jetstream()
    await traffic(bus)
    stream = bus.settings.stream
    before = await messages(js, stream)
    tj_before = await js.consumer_info(stream, consumer_name("TJ"))
    audited = await audit(js, stream, roster)
    assert len(before) >= 2 * LEADS  # leads and receipts

    backup = await backup_stream(nc, stream, tmp_path / "backup" / stream)
    assert (backup.messages, backup.first_seq, backup.last_seq) == (len(before), before[0][0], before[-1][0])
    assert backup.consumers >= 2 and backup.size > 0
    assert StreamBackup.read(tmp_path / "backup" / stream) == backup  # what was written checks out

    await js.delete_stream(stream)  # the loss the backup is for
    info = await restore_stream(nc, tmp_path / "backup" / stream)
    assert info["state"]["messages"] == len(before)

    assert await messages(js, stream) == before
    tj_after = await js.consumer_info(stream, consumer_name("TJ"))
    assert tj_after.ack_floor.stream_seq == tj_before.ack_floor.stream_seq
    assert tj_after.delivered.stream_seq == tj_before.delivered.stream_seq

    after = await audit(js, stream, roster)
    assert after.events == len(before) - 1  # every event; the bad message is an anomaly
    assert [(a.code, a.stream_seq) for a in after.anomalies] == [(a.code, a.stream_seq) for a in audited.anomalies]
    assert [a.code for a in after.anomalies] == ["malformed_json"]
    assert after.heads == audited.heads  # every origin's chain ends where it ended

    handled = len(bus.received["TJ"])
    await bus.start("BJ", "TJ")  # the regions carry on over the restored stream
    bj = bus.adapters["BJ"]
    sent = await bj.client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    await bus.state("TJ", sent.envelope.subject, "received")
    assert len(bus.received["TJ"]) == handled + 1  # only the new lead: nothing handled twice


async def test_a_damaged_backup_is_refused_whole(bus: Bus, nc: Client, tmp_path: Path) -> None:
    js = nc.jetstream()
    await traffic(bus)
    stream = bus.settings.stream
    where = tmp_path / "backup"
    backup = await backup_stream(nc, stream, where)
    data = bytearray((where / DATA_FILE).read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, in the middle
    (where / DATA_FILE).write_bytes(bytes(data))

    await js.delete_stream(stream)
    with pytest.raises(BackupError, match="is damaged") as caught:
        await restore_stream(nc, where)
    assert caught.value.details["expected"] == backup.sha256
    names = [name async for name in _stream_names(js)]
    assert stream not in names  # nothing half restored


async def test_restore_never_overwrites_an_existing_stream(bus: Bus, nc: Client, tmp_path: Path) -> None:
    js = nc.jetstream()
    await traffic(bus)
    stream = bus.settings.stream
    await backup_stream(nc, stream, tmp_path / "backup")
    before = await messages(js, stream)
    with pytest.raises(BackupError, match="refused by the server"):
        await restore_stream(nc, tmp_path / "backup")
    assert await messages(js, stream) == before


async def test_a_backup_directory_is_never_reused(bus: Bus, nc: Client, tmp_path: Path) -> None:
    await traffic(bus)
    await backup_stream(nc, bus.settings.stream, tmp_path / "backup")
    first = (tmp_path / "backup" / DATA_FILE).read_bytes()
    with pytest.raises(BackupError, match="already holds a backup"):
        await backup_stream(nc, bus.settings.stream, tmp_path / "backup")
    assert (tmp_path / "backup" / DATA_FILE).read_bytes() == first


async def audit(js: JetStreamContext, stream: str, roster: KeyRoster) -> ReplayResult:
    """The auditor's full replay of ``stream`` (signatures, chains, lifecycles)."""
    return await Replayer(roster, load_config().regions).run_async(read_stream(js, stream))


async def _stream_names(js: JetStreamContext) -> Any:
    for info in await js.streams_info():
        yield info.config.name


async def test_the_operator_commands_back_up_and_restore_the_whole_bus(bus: Bus, nc: Client, tmp_path: Path) -> None:
    """``xregion ops backup`` / ``xregion ops restore``: events, dead letters and evidence."""
    js = nc.jetstream()
    await traffic(bus)
    streams = bus_streams(bus.settings, load_config().regions.codes)
    before = {stream: await messages(js, stream) for stream in streams}
    held = [bus.settings.stream, bus.settings.dead_letter_stream, f"OBJ_{bus.settings.object_store}_BJ"]
    assert all(before[s] for s in held)  # events, a dead letter, an attachment
    url = bus.server.url

    made = await xregion("ops", "backup", "--out", str(tmp_path / "backup"), "--nats-url", url)
    assert made.returncode == 0, made.stderr + made.stdout
    assert sorted(p.name for p in (tmp_path / "backup").iterdir()) == sorted(streams)
    assert f"backed up {bus.settings.stream}: {len(before[bus.settings.stream]):,} messages" in made.stdout

    for stream in streams:
        await js.delete_stream(stream)
    restored = await xregion("ops", "restore", str(tmp_path / "backup"), "--nats-url", url)
    assert restored.returncode == 0, restored.stderr + restored.stdout
    assert {stream: await messages(js, stream) for stream in streams} == before

    await js.delete_stream(bus.settings.dead_letter_stream)  # one of three missing: still nothing restored
    again = await xregion("ops", "restore", str(tmp_path / "backup"), "--nats-url", url)
    assert again.returncode == 1
    assert "error backup_failed:" in again.stderr and "nothing was restored" in again.stderr  # stdout: results
    assert bus.settings.dead_letter_stream not in [name async for name in _stream_names(js)]


async def xregion(*args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI, in a process of its own."""
    command = [sys.executable, "-c", "from xregion.cli import main; main()", *args]
    done = await anyio.run_process(command, check=False)
    return subprocess.CompletedProcess(command, done.returncode, done.stdout.decode(), done.stderr.decode())


async def test_a_backup_taken_under_traffic_restores_a_consistent_prefix_and_the_adapters_republish_the_rest(
    bus: Bus, nc: Client, tmp_path: Path, roster: KeyRoster, logs: list[dict[str, Any]]
) -> None:
    """Online means online: BJ keeps submitting (and TJ answering) through the snapshot; the
    restored stream is exactly the stream's first ``backup.messages`` messages, and every
    origin's chain in it verifies. What the stream acknowledged after the snapshot is gone
    from it, but not lost: each adapter reads the restore mark when it starts, re-publishes
    its own lost events from its outbox (same bytes, origin order), and handles none twice."""
    js = nc.jetstream()
    bj, _ = await bus.start("BJ", "TJ")
    stream = bus.settings.stream
    stop = anyio.Event()

    async def submit() -> None:
        while not stop.is_set():
            await bj.client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(submit)

        async def some() -> bool | None:
            return True if (await js.stream_info(stream)).state.messages >= 40 else None

        await eventually(some, 20.0, "traffic in the stream")
        backup = await backup_stream(nc, stream, tmp_path / "backup")
        after_backup = (await js.stream_info(stream)).state.last_seq
        await eventually(lambda: _grown(js, stream, after_backup + 20), 20.0, "traffic after the snapshot")
        stop.set()
    await settle(bus, js)
    await bus.stop()

    everything = await messages(js, stream)
    assert len(everything) > backup.messages >= 40  # the stream went on growing past the backup
    await js.delete_stream(stream)
    await restore_stream(nc, tmp_path / "backup")
    restored = await messages(js, stream)
    assert restored == everything[: backup.messages]
    result = await audit(js, stream, roster)
    assert result.events == backup.messages
    assert result.anomalies == []

    lost_after_backup = everything[backup.messages :]
    sent_by = {region: [data for _, subject, data, _ in lost_after_backup if subject.split(".")[4] == region]
               for region in ("BJ", "TJ")}  # fmt: skip
    assert sent_by["BJ"] and sent_by["TJ"]
    handled_before = [d.event.envelope.id for d in bus.received["TJ"]]
    await bus.start("BJ", "TJ")
    for region in ("BJ", "TJ"):
        [repair] = bus.adapters[region].restores
        assert (repair.mark.last_seq, repair.republish) == (backup.last_seq, len(sent_by[region])), region
        [line] = [e for e in logs if e["event"].startswith("the stream was restored") and e["region"] == region]
        assert line["log_level"] == "warning" and line["republish"] == len(sent_by[region])

    async def republished() -> bool | None:
        return True if (await js.stream_info(stream)).state.messages >= len(everything) else None

    await eventually(republished, 20.0, "every lost event re-published")
    await settle(bus, js)
    again = await messages(js, stream)
    # Every event of the stream before the disaster is back exactly once, byte for byte;
    # each origin's in the order it had; nothing else was added.
    assert sorted(data for _, _, data, _ in again) == sorted(data for _, _, data, _ in everything)
    for region in ("BJ", "TJ"):
        tail = [data for _, subject, data, _ in again[backup.messages :] if subject.split(".")[4] == region]
        assert tail == sent_by[region], region
    result = await audit(js, stream, roster)
    assert (result.events, result.anomalies) == (len(everything), [])
    # No lead handled twice (the re-published copies were acknowledged as duplicates), none dead-lettered.
    handled = [d.event.envelope.id for d in bus.received["TJ"]]
    assert handled == handled_before and len(set(handled)) == len(handled)
    assert await bus.dead_letters("TJ") == [] and await bus.dead_letters("BJ") == []


async def settle(bus: Bus, js: JetStreamContext) -> None:
    """Until TJ has handled every lead and both relays have every acknowledgement recorded."""
    bj, tj = bus.adapters["BJ"], bus.adapters["TJ"]
    await bj.wait_published(timeout=20.0)

    async def caught_up() -> bool | None:
        info = await js.consumer_info(bus.settings.stream, consumer_name("TJ"))
        return True if info.num_pending == 0 and info.num_ack_pending == 0 else None

    await eventually(caught_up, 20.0, "TJ to handle every lead")
    await tj.wait_published(timeout=20.0)


async def _grown(js: JetStreamContext, stream: str, last_seq: int) -> bool | None:
    return True if (await js.stream_info(stream)).state.last_seq >= last_seq else None


async def test_a_projection_past_the_backup_folds_again_after_a_restore(bus: Bus, nc: Client, tmp_path: Path) -> None:
    """A coordinator's projection that had folded events the restored stream lost must not
    go on from its old position (it would skip the re-published events, which come back at
    sequences it believes folded): it reads the restore mark, folds again from the start, and
    then equals a projection built afresh — every referral, no anomaly."""
    js = nc.jetstream()
    stream = bus.settings.stream
    bj, _ = await bus.start("BJ", "TJ")
    for _ in range(6):
        await bj.client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    await settle_leads(bus, js, 6)
    backup = await backup_stream(nc, stream, tmp_path / "backup")
    for _ in range(6):
        await bj.client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    await settle_leads(bus, js, 12)
    before = (await js.stream_info(stream)).state.messages
    async with StreamReader(nc, stream, batch=4) as reader:
        with Projection(tmp_path / "live.db") as live:
            feed = ProjectionFeed(live, reader)
            await feed.catch_up()
            assert live.last_seq() == before > backup.last_seq

            await bus.stop()
            await js.delete_stream(stream)
            await restore_stream(nc, tmp_path / "backup")
            await bus.start("BJ", "TJ")  # they re-publish what the restored stream lacks

            async def whole_again() -> bool | None:
                return True if (await js.stream_info(stream)).state.messages >= before else None

            await eventually(whole_again, 20.0, "the lost events re-published")
            await settle(bus, js)
            await feed.catch_up()
            assert feed.refolds == 1
            with Projection(tmp_path / "fresh.db") as fresh:
                await ProjectionFeed(fresh, reader).catch_up()
                assert live.dump() == fresh.dump()
                assert len(live.dump()["referrals"]) == 12 and live.dump()["anomalies"] == []


async def settle_leads(bus: Bus, js: JetStreamContext, leads: int) -> None:
    """Until TJ has handled ``leads`` leads and both relays recorded every acknowledgement."""
    await eventually(lambda: _handled(bus, leads), 20.0, f"TJ to handle {leads} leads")
    await settle(bus, js)


async def _handled(bus: Bus, leads: int) -> bool | None:
    return True if len(bus.received.get("TJ", [])) >= leads else None


async def test_an_archive_is_not_continued_over_a_stream_restored_behind_it(
    bus: Bus, nc: Client, tmp_path: Path
) -> None:
    """``xregion audit export`` continues an archive from its last sequence. After a restore
    from a backup that ends before it, those sequences hold other messages (the re-published
    ones, then new ones): continuing would skip them silently. It refuses with
    ``archive_stream_restored`` and the archive is left as it was; a new archive takes the
    restored stream."""
    keys = tmp_path / "keys"
    init_keys(keys, [*load_config().regions.codes, "COORD", "AUDIT"])
    bus.keys_dir = keys
    js = nc.jetstream()
    stream = bus.settings.stream
    bj, _ = await bus.start("BJ", "TJ")
    await bj.client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    await settle_leads(bus, js, 1)
    await backup_stream(nc, stream, tmp_path / "backup")
    await bj.client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    await settle_leads(bus, js, 2)
    connection = ("--nats-url", bus.server.url, "--keys-dir", str(keys))
    first = await xregion("audit", "export", "--out", str(tmp_path / "archive"), *connection)
    assert first.returncode == 0, first.stderr
    manifest = (tmp_path / "archive" / "manifest.json").read_bytes()

    await bus.stop()
    await js.delete_stream(stream)
    await restore_stream(nc, tmp_path / "backup")
    again = await xregion("audit", "export", "--out", str(tmp_path / "archive"), *connection)
    assert again.returncode == 1 and "error archive_stream_restored:" in again.stderr, again.stderr
    assert (tmp_path / "archive" / "manifest.json").read_bytes() == manifest
    fresh = await xregion("audit", "export", "--out", str(tmp_path / "new"), *connection)
    assert fresh.returncode == 0, fresh.stderr
