"""The outbox relay: publishes this region's committed events to JetStream, in order.

Events are published one after another, each only after JetStream acknowledged the one
before it, with ``Nats-Msg-Id`` = event id: a publish whose acknowledgement was lost is
retried with the same id and the server drops the copy. Every failure is retried (tenacity,
exponential back-off with jitter, no limit): an outage of any length delays events, never
loses, duplicates or reorders them. The relay sleeps when the outbox is empty and wakes
when a submission commits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog
from nats.js import JetStreamContext
from nats.js.api import PubAck
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_never, wait_exponential_jitter

from xregion.runtime.store import OutboxRow, Store

log = structlog.get_logger("xregion.relay")

PUBLISH_TIMEOUT_S = 5.0
IDLE_RECHECK_S = 5.0


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    level = log.warning if state.attempt_number < 5 else log.error
    level(
        "publish failed, retrying",
        attempt=state.attempt_number,
        error=type(exc).__name__ if exc else None,
        detail=str(exc)[:200] if exc else None,
        retry_in_s=round(state.next_action.sleep, 2) if state.next_action else None,
    )


class Relay:
    """Drains a :class:`~xregion.runtime.store.Store`'s outbox into a stream."""

    def __init__(
        self,
        store: Store,
        js: JetStreamContext,
        stream: str,
        *,
        batch: int = 256,
        max_backoff_s: float = 5.0,
        on_published: Callable[[OutboxRow, PubAck], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.js = js
        self.stream = stream
        self.batch = batch
        self.max_backoff_s = max_backoff_s
        self.on_published = on_published
        self.wake = asyncio.Event()
        self.published = 0

    def notify(self) -> None:
        """A submission committed: there is work."""
        self.wake.set()

    async def run(self) -> None:
        while True:
            self.wake.clear()
            rows = await self.store.pending(self.batch)
            if not rows:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation
                # that arrives as the event is set (notify() then stop()), and the relay never stops.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(IDLE_RECHECK_S):
                        await self.wake.wait()
                continue
            acks: list[tuple[int, int]] = []
            try:
                for row in rows:
                    ack = await self.publish(row)
                    acks.append((row.seq, ack.seq))
                    if self.on_published is not None:
                        await self.on_published(row, ack)
            finally:
                if acks:
                    await asyncio.shield(self.store.mark_published(acks))
                    self.published += len(acks)

    async def publish(self, row: OutboxRow) -> PubAck:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(Exception),
            wait=wait_exponential_jitter(multiplier=0.05, max=self.max_backoff_s, jitter=0.2),
            stop=stop_never,
            before_sleep=_log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self.js.publish(
                    row.subject,
                    row.payload,
                    timeout=PUBLISH_TIMEOUT_S,
                    stream=self.stream,
                    headers={"Nats-Msg-Id": row.event_id},  # fresh dict: publish mutates it
                )
        raise AssertionError("unreachable: stop_never")  # pragma: no cover
