"""Reading stored messages from NATS as :class:`~xregion.auditor.replay.Record` s.

The auditor (``AUDIT`` identity) may create exactly one consumer per stream, named ``audit``
(see :mod:`xregion.permissions`): a pull consumer without acknowledgements, memory storage,
removed when the read ends (and by the server after a minute of inactivity if the reader
dies). Messages arrive in stream order in batches; nothing is held beyond one batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from xregion.auditor.replay import Record
from xregion.permissions import AUDIT_CONSUMER


async def stream_bounds(js: JetStreamContext, stream: str) -> tuple[int, int, int]:
    """(first seq, last seq, messages) of ``stream`` now."""
    info = await js.stream_info(stream)
    state = info.state
    return int(state.first_seq or 0), int(state.last_seq or 0), int(state.messages or 0)


async def read_stream(
    js: JetStreamContext,
    stream: str,
    *,
    start_seq: int | None = None,
    start_time: datetime | None = None,
    until_seq: int | None = None,
    filter_subject: str | None = None,
    batch: int = 512,
    consumer: str = AUDIT_CONSUMER,
) -> AsyncIterator[Record]:
    """Every message of ``stream`` from the start (or ``start_seq`` / ``start_time``) up to
    what it held when the read began (or ``until_seq``), in stream order."""
    _, last, messages = await stream_bounds(js, stream)
    end = min(last, until_seq) if until_seq is not None else last
    if messages == 0 or end == 0 or (start_seq is not None and start_seq > end):
        return
    with contextlib.suppress(NotFoundError):
        await js.delete_consumer(stream, consumer)
    if start_seq is not None:
        policy: dict[str, object] = {"deliver_policy": api.DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": start_seq}
    elif start_time is not None:
        policy = {"deliver_policy": api.DeliverPolicy.BY_START_TIME, "opt_start_time": start_time.isoformat()}
    else:
        policy = {"deliver_policy": api.DeliverPolicy.ALL}
    config = api.ConsumerConfig(
        name=consumer,
        ack_policy=api.AckPolicy.NONE,
        inactive_threshold=60.0,
        mem_storage=True,
        num_replicas=1,
        filter_subject=filter_subject,
        max_waiting=1,
        **policy,  # type: ignore[arg-type]
    )
    await js.add_consumer(stream, config)
    try:
        sub = await js.pull_subscribe_bind(durable=consumer, stream=stream)
        try:
            while True:
                try:
                    msgs = await sub.fetch(batch=batch, timeout=2.0)
                except (TimeoutError, NatsTimeoutError):
                    return  # nothing more (deleted messages at the end, or a filter)
                for msg in msgs:
                    meta = msg.metadata
                    seq = meta.sequence.stream
                    if seq > end:
                        return
                    yield Record(seq, meta.timestamp, msg.data or b"", msg.subject)
                    if seq >= end or meta.num_pending == 0:
                        return
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
    finally:
        with contextlib.suppress(Exception):
            await js.delete_consumer(stream, consumer)
