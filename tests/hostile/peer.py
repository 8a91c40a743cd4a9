"""The hostile peer: publishes bytes into the event stream as a region with its own NATS
identity could, bypassing every check of the sending adapter.

It reuses the dead-letter suite's :class:`Peer` (BJ's origin and link chains) and adds what
the adapter's nats-py client cannot send: a subject that is not UTF-8 (:func:`publish_raw_subject`,
over a plain socket speaking the NATS protocol).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from urllib.parse import urlparse

from nats.js import JetStreamContext

from tests.bus import Bus, eventually
from tests.integration.test_dead_letters import Peer, publish, send_good, submitted
from xregion.runtime.deadletter import DeadLetter

__all__ = ["Peer", "deliveries", "letters", "publish", "publish_raw_subject", "send_good", "submitted"]


async def publish_raw_subject(bus: Bus, js: JetStreamContext, subject: bytes, body: bytes) -> int:
    """Publish ``body`` on the raw bytes ``subject`` (any bytes but whitespace) with a plain
    socket, as a non-Python client could; the stream sequence it was stored at (found by its
    body: adapters may publish receipts meanwhile)."""
    before = (await js.stream_info(bus.settings.stream)).state.last_seq
    url = urlparse(bus.server.url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        await reader.readline()  # INFO
        writer.write(b'CONNECT {"verbose":false,"pedantic":false,"headers":true}\r\n')
        writer.write(b"PUB " + subject + b" " + str(len(body)).encode() + b"\r\n" + body + b"\r\nPING\r\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 5.0)
        assert line.startswith(b"PONG"), line
    finally:
        writer.close()
        await writer.wait_closed()

    async def stored() -> int | None:
        last = (await js.stream_info(bus.settings.stream)).state.last_seq
        for seq in range(last, before, -1):
            if (await js.get_msg(bus.settings.stream, seq)).data == body:
                return seq
        return None

    return await eventually(stored, 5.0, "the raw message in the stream")


async def letters(bus: Bus, n: int, region: str = "TJ") -> list[DeadLetter] | None:
    """``region``'s dead letters once there are at least ``n``."""
    found = await bus.dead_letters(region)
    return found if len(found) >= n else None


def deliveries(bus: Bus, region: str = "TJ") -> Counter[str]:
    """How many times ``region``'s handler was called with each event id."""
    return Counter(d.event.envelope.id for d in bus.received.get(region, []))
