"""The outbox relay: publishes this region's committed events to JetStream, in order.

Pending events go out as JetStream *atomic batches* (ADR-50, nats-server 2.12+, stream
``allow_atomic``): up to :data:`MAX_BATCH` events published back to back and committed by
the last one, which the server stores all together, in order and contiguously, or not at
all. One round trip and one disk sync carry a whole batch, and a broken connection in the
middle of one can never store a later event of this origin before an earlier one (a window
of independent publishes could: the messages already in the dead socket are lost while
those written after the reconnect arrive).

Every event carries ``Nats-Msg-Id`` = its event id. When a batch fails in any way (timeout,
outage, a batch the server refuses because it holds an event already stored: its
acknowledgement was lost) the relay falls back, for that batch, to publishing its events one
after another, each only after JetStream acknowledged the one before it: a copy already
stored is acknowledged as a duplicate with its original sequence and not stored again.
Those single publishes are retried (tenacity, exponential back-off with jitter, no limit):
an outage of any length delays events, never loses, duplicates or reorders them. A stream
without ``allow_atomic`` (an older server or an operator's stream) is served one event at a
time, with a warning. The relay sleeps when the outbox is empty and wakes when a submission
commits.

Before its first publish, after every reconnect and after any failed publish the relay has the stream checked
(``check_stream``: the adapter applies a restore mark, :mod:`xregion.runtime.restores`), and
it publishes nothing while disconnected: a broker restored from a backup while the relay
waited gets the events it lost re-published first, then the newer ones, in origin order.

Each publish (a batch's first event, or a single event) also states which stream sequence
this origin's last event in the stream has (``Nats-Expected-Last-Subject-Sequence`` over
``Nats-Expected-Last-Subject-Sequence-Subject: xregion.*.*.*.<ORIGIN>.*``): the server
stores nothing of an origin whose stream lost its last events, so no event can land after
a gap, whatever a client buffered. Told a lower sequence, the relay has the stream checked
and re-publishes what the stream lacks (with or without a restore mark); told a higher one,
its own acknowledgement was lost, and it goes on from there.

Every origin re-publishes on its own, so after a restore an answer could reach the stream
before the event it answers (BJ's receipt for TJ's lead before TJ has re-published the lead):
the relay holds back an event whose cause (``causationid``) is an event this region handled
beyond the backup until the cause's re-published copy has come back through the region's
consumer — and the events after it, to keep origin order — for at most ``hold_s`` seconds
(``XREGION_RESTORE_HOLD_S``, ``RuntimeSettings.restore_hold_s``; the cause's origin may have
lost its store too), then publishes anyway and logs an error. Causes always precede their
answers, so no two regions can hold each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable

import structlog
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import APIError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_never,
    wait_exponential_jitter,
)

from xregion.runtime.store import OutboxRow, Store
from xregion.subjects import ROOT

log = structlog.get_logger("xregion.relay")

PUBLISH_TIMEOUT_S = 5.0
IDLE_RECHECK_S = 5.0
HOLD_RECHECK_S = 0.25
"""How often a relay holding an answer back checks whether its cause has come back."""
RESTORE_HOLD_S = 300.0
"""How long, by default, an answer waits after a restore for the event it answers."""
MAX_BATCH = 256
"""Events per atomic batch (the server accepts up to 1,000)."""
MAX_BATCH_BYTES = 4 * 1024 * 1024
"""Payload bytes per atomic batch: the server holds a batch in memory until its commit."""

ATOMIC_DISABLED = 10174
"""JetStream error code: the stream does not allow atomic batches."""
WRONG_LAST_SEQUENCE = 10071
"""JetStream error code: the expected last (subject) sequence is not the stream's."""
_LAST_SEQ = re.compile(r"wrong last sequence: (\d+)")


def wrong_last_sequence(err_code: int, description: str) -> int | None:
    """The stream's last sequence the server names when refusing an expectation, or None."""
    found = _LAST_SEQ.search(description) if err_code == WRONG_LAST_SEQUENCE else None
    return int(found[1]) if found else None


class _OriginMoved(Exception):
    """The server has another last sequence for this origin than the relay expected."""

    def __init__(self, last: int) -> None:
        super().__init__(f"the stream's last event of this origin is at {last}")
        self.last = last


class Reconnected(Exception):
    """The connection was re-established since the stream was last checked: stop publishing
    this run and have the stream checked first."""


class BatchRefused(Exception):
    """The server answered a batch commit with an error (its JetStream error code kept)."""

    def __init__(self, err_code: int, description: str) -> None:
        super().__init__(f"{description} (JetStream error {err_code})")
        self.err_code = err_code


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


def batches(
    rows: list[OutboxRow], max_rows: int = MAX_BATCH, max_bytes: int = MAX_BATCH_BYTES
) -> list[list[OutboxRow]]:
    """``rows`` cut, in order, into runs of at most ``max_rows`` rows and ``max_bytes``
    payload bytes (a single larger row is a run of its own)."""
    out: list[list[OutboxRow]] = []
    run: list[OutboxRow] = []
    size = 0
    for row in rows:
        if run and (len(run) >= max_rows or size + len(row.payload) > max_bytes):
            out.append(run)
            run, size = [], 0
        run.append(row)
        size += len(row.payload)
    if run:
        out.append(run)
    return out


class Relay:
    """Drains a :class:`~xregion.runtime.store.Store`'s outbox into a stream."""

    def __init__(
        self,
        store: Store,
        nc: NATS,
        js: JetStreamContext,
        stream: str,
        *,
        batch: int = MAX_BATCH,
        atomic: bool = True,
        max_backoff_s: float = 5.0,
        on_published: Callable[[OutboxRow, PubAck], Awaitable[None]] | None = None,
        check_stream: Callable[[], Awaitable[None]] | None = None,
        hold_s: float | None = None,
        origin: str | None = None,
    ) -> None:
        self.store = store
        self.js = js
        self.nc = nc
        """``js``'s connection: atomic batches are plain publishes with batch headers (nats-py has
        no call for them)."""
        self.stream = stream
        self.batch = batch
        self.atomic = atomic
        self.max_backoff_s = max_backoff_s
        self.on_published = on_published
        self.wake = asyncio.Event()
        self.published = 0
        self.atomic_batches = 0
        """Batches stored atomically (the rest went one event at a time)."""
        self.check_stream = check_stream
        """Run before the first publish and after each reconnect (it may make outbox rows
        pending again); an error in it delays publishing, it never skips the check."""
        self._checked_at: int | None = None
        """The connection's reconnect count when the stream was last checked."""
        self.origin_filter = f"{ROOT}.*.*.*.{origin}.*" if origin is not None else None
        """Every subject this origin publishes on (the sender is the fifth token)."""
        self._expected: int | None = None
        """The stream sequence of this origin's last event in the stream (None: read it from the store)."""
        self._marking: asyncio.Task[None] | None = None
        """Recording the last acknowledged batch in the store, while the next one is published."""
        self._sent_upto = 0
        """The last outbox sequence acknowledged, recorded or not yet (0: read the store)."""
        self._requeues = store.requeues
        """The store's :attr:`~xregion.runtime.store.Store.requeues` when last read."""
        self._rewound_to: int | None = None
        """The server said the stream ends this origin's events here, before what the store holds."""
        self.hold_s = RESTORE_HOLD_S if hold_s is None else hold_s
        """How long an answer waits for its cause after a restore."""
        self._holds: dict[str, tuple[float, str]] = {}
        """Event id held back → (since when, the id of the cause it waits for)."""
        self._released: set[str] = set()
        """Events published without their cause, ``hold_s`` having passed."""

    def notify(self) -> None:
        """A submission committed: there is work."""
        self.wake.set()

    def _reconnects(self) -> int:
        return int(self.nc.stats.get("reconnects", 0))

    def _suspect(self) -> None:
        """A publish failed: the stream may have been deleted and restored on the same server
        (no reconnect to tell), so it is checked again before the next publish."""
        if self.check_stream is not None:
            self._checked_at = None

    def _stale(self) -> bool:
        """Has the connection been re-established since the stream was checked?"""
        return self.check_stream is not None and self._checked_at != self._reconnects()

    async def _checked(self) -> None:
        """Until the stream has been checked on the current connection."""
        failures = 0
        if self._stale():
            await self._settle_marks()  # recorded before the check may make events pending again
        while self._stale():
            if not self.nc.is_connected:  # an outage: nats-py reconnects; nothing to say meanwhile
                await asyncio.sleep(0.5)
                continue
            seen = self._reconnects()
            try:
                assert self.check_stream is not None
                await self.check_stream()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # e.g. the stream being restored: publish nothing yet
                failures += 1
                if failures == 1 or failures % 60 == 0:
                    log.warning(
                        "stream check failed; publishing waits for it", error=type(exc).__name__, attempts=failures
                    )
                await asyncio.sleep(1.0)
                continue
            self._checked_at = seen
            await self._repair_rewound()
            self._expected = None

    async def _repair_rewound(self) -> None:
        """The server said the stream's last event of this origin is older than what the store
        says it acknowledged, and the check (a restore mark) did not explain it: the stream lost
        them some other way (an offline copy restored, a stream re-created). Publish them again."""
        rewound, self._rewound_to = self._rewound_to, None
        if rewound is None:
            return
        count = await self.store.requeue_beyond(rewound)
        if count:
            log.error(
                "the stream lacks events this origin published, and no restore mark explains it: publishing them again",
                stream=self.stream,
                origin_last_seq=rewound,
                republish=count,
            )

    async def _expectation(self) -> int:
        if self._expected is None:
            self._expected = await self.store.last_stream_seq()
        return self._expected

    def _expect(self, headers: dict[str, str], expected: int) -> dict[str, str]:
        if self.origin_filter is not None:
            headers["Nats-Expected-Last-Subject-Sequence"] = str(expected)
            headers["Nats-Expected-Last-Subject-Sequence-Subject"] = self.origin_filter
        return headers

    def _moved(self, last: int) -> None:
        """Take the server's word on this origin's last event (see :class:`_OriginMoved`)."""
        expected = self._expected or 0
        if last > expected:  # our own acknowledgement was lost: that event is in the stream
            self._expected = last
            return
        self._rewound_to = last
        self._suspect()
        raise Reconnected

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            if self._marking is not None:  # the last acknowledgements recorded before stopping
                with contextlib.suppress(BaseException):
                    await asyncio.shield(self._marking)

    async def _settle_marks(self) -> None:
        """Until the acknowledgements being recorded are, then read the outbox from the store."""
        if self._marking is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._marking)
        self._sent_upto = 0
        self._requeues = self.store.requeues

    async def _run(self) -> None:
        while True:
            self.wake.clear()
            await self._checked()
            if self._requeues != self.store.requeues:  # a restore or rewind made events pending again
                await self._settle_marks()
            pending = await self.store.pending(self.batch, after=self._sent_upto)
            rows = await self._releasable(pending)
            if not rows:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation
                # that arrives as the event is set (notify() then stop()), and the relay never stops.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(HOLD_RECHECK_S if pending else IDLE_RECHECK_S):
                        await self.wake.wait()
                continue
            try:
                for run in batches(rows, self.batch):
                    await self._drain(run)
            except Reconnected:
                log.info("reconnected: the stream is checked before publishing on")

    async def _releasable(self, rows: list[OutboxRow]) -> list[OutboxRow]:
        """``rows`` up to the first one that must wait for its cause to come back after a
        restore (see the module's docstring), or all of them."""
        if not rows:
            return rows
        ids = {row.event_id for row in rows}
        self._holds = {k: v for k, v in self._holds.items() if k in ids}
        self._released &= ids
        while (waiting := await self.store.waiting_for_cause(rows, self._released)) is not None:
            index, cause = waiting
            row = rows[index]
            if row.event_id not in self._holds:
                self._holds[row.event_id] = (time.monotonic(), cause)
                log.warning(
                    "holding an answer back until the event it answers is re-published after the restore",
                    event_id=row.event_id,
                    subject=row.subject,
                    cause=cause,
                    hold_s=self.hold_s,
                )
            since, _ = self._holds[row.event_id]
            if time.monotonic() - since < self.hold_s:
                return rows[:index]
            log.error(
                "publishing an answer before the event it answers: not re-published within the hold "
                "(its origin lost its store, or is not running); the auditor will report it",
                event_id=row.event_id,
                subject=row.subject,
                cause=cause,
                hold_s=self.hold_s,
            )
            self._released.add(row.event_id)
        return rows

    async def _drain(self, rows: list[OutboxRow]) -> None:
        """Publish ``rows`` (as one atomic batch if it can) and record their acknowledgements."""
        acks: list[tuple[OutboxRow, PubAck]] = []
        if self._stale():
            raise Reconnected
        try:
            if self.atomic and len(rows) > 1 and self.nc.is_connected:
                with contextlib.suppress(_FallBack):
                    acks = await self._publish_atomic(rows)
            for row in rows[len(acks) :]:
                acks.append((row, await self.publish(row)))
        finally:
            if acks:
                self._expected = max(self._expected or 0, *(ack.seq for _, ack in acks))
                self._sent_upto = max(self._sent_upto, *(row.seq for row, _ in acks))
                self.published += len(acks)
                self._record(acks)

    def _record(self, acks: list[tuple[OutboxRow, PubAck]]) -> None:
        """Record ``acks`` in the store in the background, after those before them: the next
        batch is published meanwhile (it never waits for this disk sync). Nothing is recorded
        if a restore or rewind made events pending again since (they go out again, and are
        acknowledged as duplicates); a failure makes the relay read the outbox anew."""
        previous, requeues = self._marking, self._requeues

        async def record() -> None:
            if previous is not None:
                with contextlib.suppress(Exception):
                    await previous
            try:
                recorded = await self.store.mark_published(
                    [(row.seq, ack.seq) for row, ack in acks], unless_requeued=requeues
                )
            except Exception as exc:
                log.error("acknowledgements not recorded; reading the outbox again", error=type(exc).__name__)
                self._sent_upto = 0
                return
            if recorded and self.on_published is not None:
                for row, ack in acks:
                    await self.on_published(row, ack)

        self._marking = asyncio.create_task(record(), name="relay-record-acks")

    async def _publish_atomic(self, rows: list[OutboxRow]) -> list[tuple[OutboxRow, PubAck]]:
        """``rows`` as one atomic batch; raises :class:`_FallBack` when it was not stored."""
        batch_id = uuid.uuid4().hex
        last = len(rows)
        expected = await self._expectation()
        try:
            for n, row in enumerate(rows[:-1], start=1):
                if not self.nc.is_connected:  # never leave a batch in nats-py's reconnect buffer
                    raise ConnectionError("not connected")
                headers = self._headers(row, batch_id, n)
                await self.nc.publish(
                    row.subject, row.payload, headers=self._expect(headers, expected) if n == 1 else headers
                )
            final = rows[-1]
            headers = self._headers(final, batch_id, last)
            headers["Nats-Batch-Commit"] = "1"
            if not self.nc.is_connected:
                raise ConnectionError("not connected")
            reply = await self.nc.request(final.subject, final.payload, timeout=PUBLISH_TIMEOUT_S, headers=headers)
            answer = json.loads(reply.data)
            if "error" in answer:
                err = answer["error"]
                raise BatchRefused(int(err.get("err_code", 0)), str(err.get("description", "refused")))
            ack = PubAck.from_response(answer)
        except asyncio.CancelledError:
            raise
        except BatchRefused as exc:
            moved = wrong_last_sequence(exc.err_code, str(exc))
            if moved is not None:
                self._moved(moved)  # raises Reconnected when the stream lost events of ours
                raise _FallBack from exc
            if exc.err_code == ATOMIC_DISABLED:
                self.atomic = False
                log.warning(
                    "the stream does not allow atomic batches; publishing one event at a time (slower)",
                    stream=self.stream,
                    hint="xregion ops apply-topology --update sets allow_atomic",
                )
            else:
                log.info("atomic batch refused; publishing its events one at a time", reason=str(exc))
            raise _FallBack from exc
        except Exception as exc:  # timeout, no responders, connection lost: retried one by one
            log.info("atomic batch not confirmed; publishing its events one at a time", error=type(exc).__name__)
            self._suspect()
            raise _FallBack from exc
        if ack.batch_size != last:
            log.warning("atomic batch acknowledged with an unexpected size", sent=last, acknowledged=ack.batch_size)
            raise _FallBack
        self.atomic_batches += 1
        first = ack.seq - last + 1  # a batch is stored contiguously, ending at the ack's sequence
        return [(row, PubAck(stream=ack.stream, seq=first + i, domain=ack.domain)) for i, row in enumerate(rows)]

    def _headers(self, row: OutboxRow, batch_id: str, n: int) -> dict[str, str]:
        return {
            "Nats-Msg-Id": row.event_id,
            "Nats-Expected-Stream": self.stream,
            "Nats-Batch-Id": batch_id,
            "Nats-Batch-Sequence": str(n),
        }

    async def publish(self, row: OutboxRow) -> PubAck:
        """Publish one event, retrying until JetStream acknowledged it (or a copy of it)."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(Exception) & retry_if_not_exception_type(Reconnected),
            wait=wait_exponential_jitter(multiplier=0.05, max=self.max_backoff_s, jitter=0.2),
            stop=stop_never,
            before_sleep=_log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                if self._stale():
                    raise Reconnected
                if not self.nc.is_connected:
                    # nats-py would buffer it and send it on reconnecting, before the stream is checked.
                    raise ConnectionError("not connected")
                expected = await self._expectation()
                try:
                    return await self.js.publish(
                        row.subject,
                        row.payload,
                        timeout=PUBLISH_TIMEOUT_S,
                        stream=self.stream,
                        # a fresh dict: publish mutates it
                        headers=self._expect({"Nats-Msg-Id": row.event_id}, expected),
                    )
                except APIError as exc:
                    moved = wrong_last_sequence(exc.err_code or 0, exc.description or "")
                    if moved is None:
                        self._suspect()
                        raise
                    self._moved(moved)  # raises Reconnected when the stream lost events of ours
                    raise _OriginMoved(moved) from None  # retried at once with the server's word
                except Exception:
                    self._suspect()
                    raise
        raise AssertionError("unreachable: stop_never")  # pragma: no cover


class _FallBack(Exception):
    """The atomic batch was not stored as one: publish its events one at a time."""
