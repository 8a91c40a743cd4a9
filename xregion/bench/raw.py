"""Raw nats-py, the benchmark's baseline: 1 KB messages published and pulled with nothing of
the bus in between; published one by one (``publish_async``) or in JetStream atomic batches
(the strongest durable raw publish: one round trip and one server sync per batch)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

RAW_STREAM = "BENCH_RAW"
MESSAGE_BYTES = 1024
IN_FLIGHT = 4000
FETCH_BATCH = 100
ATOMIC_BATCH = 100
"""Messages per raw atomic batch (the relay sends up to 256; the server accepts 1,000)."""


async def raw_stream(js: Any, name: str, subject: str) -> None:
    """A fresh file-stored stream ``name`` over ``subject`` (an older one is deleted)."""
    from nats.js import api

    with contextlib.suppress(Exception):
        await js.delete_stream(name)
    config = api.StreamConfig(name=name, subjects=[subject], storage=api.StorageType.FILE, allow_atomic=True)
    await js.add_stream(config)


async def publish_all(js: Any, subject: str, count: int) -> None:
    """``count`` 1 KB messages with ``publish_async``, at most ``IN_FLIGHT`` unacknowledged."""
    body = os.urandom(MESSAGE_BYTES // 2).hex().encode()
    window: list[asyncio.Future[Any]] = []
    for _ in range(count):
        window.append(await js.publish_async(subject, body, wait_stall=5.0))
        if len(window) >= IN_FLIGHT:
            await asyncio.wait_for(asyncio.gather(*window), timeout=30.0)
            window = []
    if window:
        await asyncio.wait_for(asyncio.gather(*window), timeout=30.0)


async def publish_atomic(nc: Any, stream: str, subject: str, count: int, batch: int = ATOMIC_BATCH) -> None:
    """``count`` 1 KB messages in JetStream atomic batches of ``batch`` (ADR-50: plain
    publishes with ``Nats-Batch-*`` headers, the last one a request committing the batch),
    one batch in flight at a time, as the relay publishes."""
    import json
    import uuid

    body = os.urandom(MESSAGE_BYTES // 2).hex().encode()
    sent = 0
    while sent < count:
        size = min(batch, count - sent)
        batch_id = uuid.uuid4().hex
        for n in range(1, size):
            headers = {"Nats-Expected-Stream": stream, "Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(n)}
            await nc.publish(subject, body, headers=headers)
        headers = {
            "Nats-Expected-Stream": stream,
            "Nats-Batch-Id": batch_id,
            "Nats-Batch-Sequence": str(size),
            "Nats-Batch-Commit": "1",
        }
        reply = await nc.request(subject, body, timeout=30.0, headers=headers)
        answer = json.loads(reply.data)
        if "error" in answer or answer.get("count", answer.get("batch_size")) != size:
            raise RuntimeError(f"raw atomic batch not stored: {answer}")
        sent += size


async def pull_subscription(js: Any, stream: str, durable: str, subject: str) -> Any:
    """A pull subscription on a new durable consumer ``durable`` of ``subject``."""
    return await js.pull_subscribe(subject, durable=durable, stream=stream)


async def fetch_all(sub: Any, count: int) -> None:
    """Pull ``count`` messages from ``sub`` in batches of ``FETCH_BATCH``, ack each one, and
    unsubscribe."""
    from nats.errors import TimeoutError as NatsTimeoutError

    got = 0
    try:
        while got < count:
            try:
                msgs = await sub.fetch(batch=FETCH_BATCH, timeout=5.0)
            except (TimeoutError, NatsTimeoutError):
                continue
            for msg in msgs:
                await msg.ack()
            got += len(msgs)
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
