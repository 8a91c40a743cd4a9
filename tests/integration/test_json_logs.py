"""Under ``--log-format json`` every line an adapter writes is JSON — FastStream's own
application and broker lines included — so log shippers need one parser."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from tests.bus import eventually
from xregion.adapter import Adapter
from xregion.examples import PAYLOADS
from xregion.logs import configure_logging
from xregion.ops.server import EmbeddedServer
from xregion.signing import KeyRoster, Signer

pytestmark = pytest.mark.anyio


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    out = io.StringIO()
    configure_logging("json", stream=out)
    try:
        yield out
    finally:
        structlog.reset_defaults()


async def test_every_line_of_a_running_adapter_is_json(
    nats_server: EmbeddedServer, tmp_path: Path, signers: dict[str, Signer], roster: KeyRoster, json_log: io.StringIO
) -> None:
    store = tmp_path / "bj.db"
    adapter = Adapter("BJ", signer=signers["BJ"], roster=roster, nats_url=nats_server.url, store_path=store)
    app = adapter.app()
    running = asyncio.create_task(app.run())

    async def started() -> bool | None:
        return True if "FastStream app started" in json_log.getvalue() and adapter.relay else None

    await eventually(started, 20.0, "the adapter application to start")
    await adapter.client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    app.exit()
    await asyncio.wait_for(running, timeout=20.0)

    records = [json.loads(line) for line in json_log.getvalue().splitlines()]  # each line parses
    events = [r["event"] for r in records]
    assert any(e.startswith("FastStream app started") for e in events)
    assert any(e.startswith("FastStream app shut down") for e in events)
    assert "event submitted" in events
    faststream = [r for r in records if r.get("logger") == "faststream"]
    assert faststream and all({"level", "timestamp"} <= r.keys() for r in faststream)
