"""A stream deleted and restored on the same server while the adapters run: no reconnect,
no failed publish tells the relay — but the server does. Every publish states where the
origin's last event in the stream is, so BJ's next lead cannot land after a gap: refused,
the relay has the stream checked, re-publishes what the restore lost, then the new lead.
And with no restore mark at all (the stream put back by other means), the server's answer
alone is enough for the relay to re-publish its lost events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from tests.bus import Bus, eventually
from tests.integration.test_stream_backup import audit, settle
from xregion.examples import PAYLOADS
from xregion.ops.backup import backup_stream, restore_stream
from xregion.runtime.restores import RESTORED_AT, RESTORED_LAST_SEQ
from xregion.signing import KeyRoster

pytestmark = pytest.mark.anyio


@pytest.fixture
async def nc(bus: Bus) -> AsyncIterator[Client]:
    client = await bus.raw()
    try:
        yield client
    finally:
        await client.close()


async def origin_seqs(js: JetStreamContext, stream: str, origin: str) -> list[int]:
    """``originseq`` of ``origin``'s events in stream order."""
    info = await js.stream_info(stream)
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(stream, seq)
        if msg.subject.split(".")[4] == origin:
            found.append(int(json.loads(msg.data or b"{}")["originseq"]))
    return found


async def disaster(bus: Bus, nc: Client, tmp_path: Path, *, mark: bool) -> int:
    """BJ leads to TJ before and after a backup; the stream then deleted and restored on the
    same server (``mark``: as xregion restores; otherwise with the mark removed), the adapters
    running all along. Returns the number of events before the disaster."""
    js = nc.jetstream()
    stream = bus.settings.stream
    bj, _ = await bus.start("BJ", "TJ")
    for _ in range(3):
        await bj.client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    await eventually(lambda: _handled(bus, 3), 20.0, "TJ to handle 3 leads")
    await settle(bus, js)
    await backup_stream(nc, stream, tmp_path / "backup")
    for _ in range(3):
        await bj.client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    await eventually(lambda: _handled(bus, 6), 20.0, "TJ to handle 6 leads")
    await settle(bus, js)
    before = (await js.stream_info(stream)).state.messages
    await js.delete_stream(stream)
    await restore_stream(nc, tmp_path / "backup")
    if not mark:
        info = await js.stream_info(stream)
        config = info.config
        config.metadata = {
            k: v for k, v in (config.metadata or {}).items() if k not in (RESTORED_AT, RESTORED_LAST_SEQ)
        }
        await js.update_stream(config)
    return before


async def _handled(bus: Bus, leads: int) -> bool | None:
    return True if len(bus.received.get("TJ", [])) >= leads else None


@pytest.mark.parametrize("mark", [True, False], ids=["restore-mark", "no-mark"])
async def test_the_next_publish_after_a_silent_restore_never_lands_after_a_gap(
    bus: Bus, nc: Client, tmp_path: Path, roster: KeyRoster, logs: list[dict[str, Any]], mark: bool
) -> None:
    js = nc.jetstream()
    stream = bus.settings.stream
    before = await disaster(bus, nc, tmp_path, mark=mark)
    handled_before = [d.event.envelope.id for d in bus.received["TJ"]]

    await bus.adapters["BJ"].client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])

    async def bj_whole() -> list[int] | None:
        seqs = await origin_seqs(js, stream, "BJ")
        return seqs if len(seqs) >= 7 else None

    seqs = await eventually(bj_whole, 20.0, "BJ's lost leads and the new one in the stream")
    assert seqs == list(range(1, 8))  # in origin order, no gap, nothing twice
    if mark:
        await eventually(lambda: _handled(bus, 7), 20.0, "TJ to handle the new lead")
        await settle(bus, js)
        result = await audit(js, stream, roster)
        assert (result.events, result.anomalies) == (before + 2, [])  # the new lead and its receipt
        handled = [d.event.envelope.id for d in bus.received["TJ"]]
        assert handled[:-1] == handled_before and len(set(handled)) == len(handled)
        assert await bus.dead_letters() == []
    else:
        [line] = [e for e in logs if e["event"].startswith("the stream lacks events this origin published")]
        assert line["log_level"] == "error" and line["republish"] == 3
