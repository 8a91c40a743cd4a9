"""Reading stored messages from NATS as :class:`~xregion.auditor.replay.Record` s.

The auditor reads by sequence with batched direct gets
(:class:`~xregion.runtime.stream_reader.StreamReader`): it creates no consumer, so it needs
no right that could rewrite anyone's consumer or make the server deliver anywhere, and it
takes nothing from another reader. Messages arrive in stream order in batches (the next
batch is requested while one is checked); nothing is held beyond two batches.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from xregion.auditor.replay import Record
from xregion.runtime.stream_reader import DEFAULT_BATCH, StreamReader


def _client(conn: Any) -> Any:
    """The nats-py client behind ``conn`` (a client, or a JetStream context of one)."""
    return getattr(conn, "_nc", conn)


async def stream_bounds(conn: Any, stream: str) -> tuple[int, int, int]:
    """(first seq, last seq, messages) of ``stream`` now."""
    return await StreamReader(_client(conn), stream).bounds()


async def read_stream(
    conn: Any,
    stream: str,
    *,
    start_seq: int | None = None,
    start_time: datetime | None = None,
    until_seq: int | None = None,
    filter_subject: str | None = None,
    batch: int = DEFAULT_BATCH,
) -> AsyncIterator[Record]:
    """Every message of ``stream`` (only those matching ``filter_subject`` if given) from the
    start (or ``start_seq``, or the first stored at or after ``start_time``) up to what it
    held when the read began (or ``until_seq``), in stream order. ``conn``: a nats-py client
    or a JetStream context."""
    nc = _client(conn)
    async with StreamReader(nc, stream, batch=batch, filter_subject=filter_subject) as reader:
        _, last, messages = await reader.bounds()
        end = min(last, until_seq) if until_seq is not None else last
        if messages == 0 or end == 0 or (start_seq is not None and start_seq > end):
            return
        first = start_seq if start_seq is not None else 1
        async for message in reader.read(first, start_time=start_time if start_seq is None else None, until_seq=end):
            yield Record(message.seq, message.stored_at, message.data, message.subject)
