"""After a restore every origin re-publishes what the backup lacked on its own: an answer must
still never reach the stream before the event it answers.

TJ's lead to BJ and BJ's receipt for it were both acknowledged after the backup. BJ's adapter
comes back first: it holds its receipt (and what follows it in its outbox) until TJ has
re-published the lead and the copy has come back through BJ's consumer — found by
``tests/site/test_site.py``, where BJ re-published the receipt 2.5 s before TJ re-published
the lead and the auditor reported ``illegal_transition`` ("lead referral TJ-... is unknown; it
can only be opened by submitted, not 'received'"). If the lead's origin never re-publishes it
(its store lost too), the hold ends after ``restore_hold_s`` (XREGION_RESTORE_HOLD_S) with an error.

A copy can also come back at the very stream sequence the event had (its origin re-published
it first thing after the restore): an adapter that has not applied the restore yet must not
take it for a plain redelivery, or its answer would wait for a copy that has already passed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from tests.bus import Bus, eventually
from xregion.auditor.replay import Replayer
from xregion.auditor.source import read_stream
from xregion.config import load_config
from xregion.examples import PAYLOADS
from xregion.ops.backup import backup_stream, restore_stream
from xregion.ops.server import EmbeddedServer, ServerConfig
from xregion.runtime import relay
from xregion.signing import KeyRoster

pytestmark = pytest.mark.anyio


@pytest.fixture
async def nc(bus: Bus) -> AsyncIterator[Client]:
    client = await bus.raw()
    try:
        yield client
    finally:
        await client.close()


async def stored_ids(js: JetStreamContext, stream: str) -> list[str]:
    """The event ids of ``stream`` in stream order (direct gets)."""
    info = await js.stream_info(stream)
    if info.state.messages == 0:
        return []
    return [
        json.loads((await js.get_msg(stream, seq)).data or b"{}")["id"]
        for seq in range(info.state.first_seq, info.state.last_seq + 1)
    ]


async def lost_lead_and_receipt(bus: Bus, nc: Client, tmp_path: Path) -> tuple[str, str, int]:
    """A lead BJ→TJ before the backup; TJ's lead to BJ and BJ's receipt after it; the stream
    then deleted and restored. Returns (TJ's lead id, BJ's receipt id, events before the disaster)."""
    js = nc.jetstream()
    stream = bus.settings.stream
    bj, tj = await bus.start("BJ", "TJ")
    first = await bj.client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    await bus.state("BJ", first.envelope.subject, "received")
    await backup_stream(nc, stream, tmp_path / "backup")
    lead = await tj.client.open("lead.submitted", to="BJ", data=PAYLOADS["lead.submitted"])
    await bus.state("TJ", lead.envelope.subject, "received")
    await bj.wait_published(timeout=20.0)
    await tj.wait_published(timeout=20.0)
    before = await stored_ids(js, stream)
    [receipt] = [d.event.envelope.id for d in bus.received["TJ"] if d.event.envelope.causationid == lead.envelope.id]
    assert before[-2:] == [lead.envelope.id, receipt]
    await bus.stop()
    await js.delete_stream(stream)
    await restore_stream(nc, tmp_path / "backup")
    assert lead.envelope.id not in await stored_ids(js, stream)
    return lead.envelope.id, receipt, len(before)


async def test_an_answer_waits_for_the_event_it_answers_to_be_republished(
    bus: Bus, nc: Client, tmp_path: Path, roster: KeyRoster, logs: list[dict[str, Any]]
) -> None:
    js = nc.jetstream()
    stream = bus.settings.stream
    lead, receipt, before = await lost_lead_and_receipt(bus, nc, tmp_path)
    handled_before = [d.event.envelope.id for d in bus.received["BJ"]]

    await bus.start("BJ")  # BJ first: its receipt would go out before TJ's lead

    def holding() -> bool | None:
        return True if any(e["event"].startswith("holding an answer back") for e in logs) else None

    await eventually(lambda: _sync(holding), 20.0, "BJ to hold its receipt back")
    [held] = [e for e in logs if e["event"].startswith("holding an answer back")]
    assert (held["event_id"], held["cause"], held["log_level"]) == (receipt, lead, "warning")
    assert receipt not in await stored_ids(js, stream)

    await bus.start("TJ")  # TJ re-publishes its lead; BJ's consumer sees the copy; the receipt follows

    async def whole() -> list[str] | None:
        ids = await stored_ids(js, stream)
        return ids if len(ids) >= before else None

    ids = await eventually(whole, 20.0, "every lost event re-published")
    assert len(ids) == len(set(ids)) == before
    assert ids.index(lead) < ids.index(receipt)
    result = await Replayer(roster, load_config().regions).run_async(read_stream(js, stream))
    assert (result.events, result.anomalies) == (before, [])
    assert [d.event.envelope.id for d in bus.received["BJ"]] == handled_before  # nothing handled twice
    assert not [e for e in logs if e["event"].startswith("publishing an answer before")]
    assert await bus.dead_letters() == []


async def test_the_hold_ends_when_the_cause_never_comes_back(
    bus: Bus, nc: Client, tmp_path: Path, logs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """TJ lost its store too: BJ's receipt cannot wait for ever; it goes out after the hold,
    with an error naming it and the missing lead (the auditor then reports the gap)."""
    js = nc.jetstream()
    lead, receipt, _ = await lost_lead_and_receipt(bus, nc, tmp_path)
    bus.settings = bus.settings.model_copy(update={"restore_hold_s": 1.0})
    await bus.start("BJ")

    async def published() -> bool | None:
        return True if receipt in await stored_ids(js, bus.settings.stream) else None

    await eventually(published, 20.0, "BJ to publish its receipt after the hold")
    [error] = [e for e in logs if e["event"].startswith("publishing an answer before")]
    assert (error["event_id"], error["cause"], error["log_level"]) == (receipt, lead, "error")


async def test_a_copy_back_at_its_old_position_releases_the_answer_too(
    bus: Bus, nats_server: EmbeddedServer, tmp_path: Path, roster: KeyRoster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker is replaced by one restored from the backup while both adapters run. BJ
    re-publishes its lost lead first, at the sequence it had; TJ's consumer gets the copy
    before TJ's relay has looked at the stream. TJ's lost receipt for that lead must still go
    out (after the lead), long before the hold would end."""
    monkeypatch.setattr(relay, "IDLE_RECHECK_S", 120.0)  # an idle relay looks at the stream late
    bus.settings = bus.settings.model_copy(update={"restore_hold_s": 120.0})
    stream = bus.settings.stream
    bj, tj = await bus.start("BJ", "TJ")
    first = await bj.client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    await bus.state("BJ", first.envelope.subject, "received")
    nc = await bus.raw()
    try:
        backup = await backup_stream(nc, stream, tmp_path / "backup")
    finally:
        await nc.close()
    lost = await bj.client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    await bus.state("BJ", lost.envelope.subject, "received")
    await bj.wait_published(timeout=20.0)
    await tj.wait_published(timeout=20.0)
    [receipt] = [d.event.envelope.id for d in bus.received["BJ"] if d.event.envelope.causationid == lost.envelope.id]

    nats_server.kill()  # the disaster; a new server on the same port, restored from the backup
    restored = EmbeddedServer(ServerConfig(store_dir=tmp_path / "nats-restored", port=nats_server.config.port))
    restored.start()
    try:
        nc = await bus.raw()
        try:
            js = nc.jetstream()
            await restore_stream(nc, tmp_path / "backup")
            assert len(await stored_ids(js, stream)) == backup.messages
            # BJ's case system submits: its relay wakes, reads the mark, re-publishes its lost
            # lead first — at the sequence it had — then the new one
            fresh = await bj.client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])

            async def answered() -> list[str] | None:
                ids = await stored_ids(js, stream)
                return ids if receipt in ids and len(ids) >= backup.messages + 4 else None

            ids = await eventually(answered, 30.0, "TJ's lost receipt to be re-published")
            assert ids[backup.messages] == lost.envelope.id  # back at its old position
            assert ids.index(lost.envelope.id) < ids.index(receipt)
            assert fresh.envelope.id in ids and len(ids) == len(set(ids))
            result = await Replayer(roster, load_config().regions).run_async(read_stream(js, stream))
            assert result.anomalies == []
            assert [d.event.envelope.id for d in bus.received["TJ"]].count(lost.envelope.id) == 1
        finally:
            await nc.close()
    finally:
        await bus.stop()
        restored.kill()


async def _sync(check: Any) -> Any:
    return check()
