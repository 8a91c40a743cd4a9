"""The running coordinator: project every event, escalate deadlines, publish as ``COORD``.

It pulls the ``coordinator`` durable consumer (declared by the operator, ``ADMIN``) with
nats-py in batches, folds each batch into the :class:`~xregion.coordinator.projection.Projection`
in one transaction (with the last stream sequence), then acknowledges it. It verifies
signatures (key roster) and origin chains like an adapter but never refuses: anomalies
are recorded in the projection, nothing is dead-lettered. Periodically it runs the
:class:`~xregion.coordinator.escalation.Escalator`, whose notices leave through the
coordinator's own outbox and relay (``<store>.outbox.db``: the ``COORD`` chain), signed
with the ``COORD`` key from the keys directory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from nats.errors import ConnectionClosedError
from nats.errors import TimeoutError as NatsTimeoutError

from xregion.config import BusConfig, load_config
from xregion.contracts.catalog import CATALOG, Catalog
from xregion.coordinator.calendar import DayCalendar, beijing_today
from xregion.coordinator.escalation import Escalator, Thresholds
from xregion.coordinator.projection import Projection
from xregion.envelope import Envelope
from xregion.keys import ROSTER_FILE, load_signer
from xregion.permissions import COORDINATOR_CONSUMER
from xregion.regions import COORDINATOR
from xregion.runtime.connection import ClientIdentity, connect
from xregion.runtime.keyfiles import LiveRoster
from xregion.runtime.metrics import EVENTS
from xregion.runtime.outbox import Outbox
from xregion.runtime.relay import Relay
from xregion.runtime.settings import RuntimeSettings
from xregion.runtime.store import Store
from xregion.sealing import FieldSealing

log = structlog.get_logger("xregion.coordinator")


def outbox_path(store: Path) -> Path:
    """The coordinator's outbox database next to its projection."""
    return store.with_name(store.name + ".outbox.db")


class Coordinator:
    """``await start()`` … ``await stop()``; :meth:`catch_up` folds everything in the stream."""

    def __init__(
        self,
        *,
        nats_url: str,
        keys_dir: Path,
        store_path: Path,
        config: BusConfig | None = None,
        settings: RuntimeSettings | None = None,
        calendar: DayCalendar | None = None,
        thresholds: Thresholds | None = None,
        today: Callable[[], date] = beijing_today,
        escalate_every_s: float = 60.0,  # <= 0: only explicit escalate() calls
        batch: int = 256,
        catalog: Catalog = CATALOG,
    ) -> None:
        self.config = config or load_config()
        self.settings = settings or RuntimeSettings()
        self.nats_url = nats_url
        self.identity = ClientIdentity.from_settings(self.settings, COORDINATOR)
        self.rosters = LiveRoster.load(keys_dir / ROSTER_FILE)
        self.signer = load_signer(keys_dir, COORDINATOR)
        self.batch = batch
        self.escalate_every_s = escalate_every_s
        self.projection = Projection(
            store_path, config=self.config, calendar=calendar, catalog=catalog, verify=self._verify, today=today
        )
        self.store = Store(outbox_path(store_path))
        self.outbox = Outbox(
            self.store,
            self.signer,
            catalog=catalog,
            registry=self.config.regions,
            sealing=FieldSealing(lambda: self.rosters.roster, lambda: [self.signer]),
            on_commit=self._wake_relay,
        )
        self.escalator = Escalator(self.projection, self.outbox, thresholds=thresholds, today=today, catalog=catalog)
        self.relay: Relay | None = None
        self.nc: Any = None
        self.js: Any = None
        self._sub: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._batch_lock = asyncio.Lock()

    def _verify(self, wire: dict[str, Any], envelope: Envelope, stored_at: datetime) -> None:
        grace = timedelta(seconds=self.settings.revocation_grace_s)
        self.rosters.refresh()
        self.rosters.roster.verify(wire, envelope.sender, envelope.time, received_at=stored_at, grace=grace)

    def _wake_relay(self) -> None:
        if self.relay is not None:
            self.relay.notify()

    async def connect(self) -> None:
        """Connect (COORD identity), open the stores and bind the durable; no background work."""
        if self.nc is not None:
            return
        self.projection.open()
        await self.store.open()
        self.nc = await connect(self.nats_url, "xregion-coordinator", self.identity)
        self.js = self.nc.jetstream()
        self._sub = await self.js.pull_subscribe_bind(durable=COORDINATOR_CONSUMER, stream=self.settings.stream)
        self.relay = Relay(self.store, self.nc, self.js, self.settings.stream)

    async def start(self) -> None:
        """Connect, then consume, relay and escalate in the background."""
        await self.connect()
        assert self.relay is not None
        self._tasks = [
            asyncio.create_task(self._consume(), name="coordinator-consume"),
            asyncio.create_task(self.relay.run(), name="coordinator-relay"),
        ]
        if self.escalate_every_s > 0:
            self._tasks.append(asyncio.create_task(self._escalate(), name="coordinator-escalate"))
        log.info("coordinator started", store=str(self.projection.path), last_seq=self.projection.last_seq())

    async def stop(self) -> None:
        async with self._batch_lock:  # let a fetched batch be folded and acked first
            for task in self._tasks:
                task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self.nc is not None:
            # Flush the acks, then close without draining: a drain waits for a pending pull
            # request to expire for nothing (and times out); what was fetched but not acked
            # is redelivered to the next start after ack_wait and applied idempotently.
            with contextlib.suppress(Exception):
                await self.nc.flush(timeout=2)
            with contextlib.suppress(Exception):
                await self.nc.close()
            self.nc = None
        await self.store.close()
        self.projection.close()

    # --- consuming ----------------------------------------------------------------------

    async def fetch_once(self, timeout: float = 1.0) -> int:
        """Fetch one batch, fold it, acknowledge it; the number of messages (0 on timeout)."""
        async with self._batch_lock:
            try:
                msgs = await self._sub.fetch(batch=self.batch, timeout=timeout)
            except (TimeoutError, NatsTimeoutError):
                return 0
            msgs.sort(key=lambda m: m.metadata.sequence.stream)
            if msgs[0].metadata.sequence.stream > self.projection.last_seq() + 1:
                # An earlier message is still held by another fetch (a coordinator that died
                # or stopped mid-fetch): it comes back after ack_wait. Folding these first
                # would reorder the stream (and the projection skips what is below its mark).
                info = await self.js.consumer_info(self.settings.stream, COORDINATOR_CONSUMER)
                if info.num_ack_pending > len(msgs):
                    for msg in msgs:
                        with contextlib.suppress(Exception):
                            await msg.nak(delay=1.0)
                    return 0
            batch = [(m.data or b"", m.metadata.sequence.stream, m.metadata.timestamp) for m in msgs]
            self.projection.apply_many(batch)
            for msg in msgs:
                EVENTS.labels(subject=msg.subject).inc()
            for msg in msgs:
                with contextlib.suppress(Exception):
                    await msg.ack()
            return len(msgs)

    async def catch_up(self, timeout: float = 30.0) -> int:
        """Fold every message the consumer has pending now; the number folded."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        total = 0
        while loop.time() < deadline:
            info = await self.js.consumer_info(self.settings.stream, COORDINATOR_CONSUMER)
            if not info.num_pending and not info.num_ack_pending:
                return total
            total += await self.fetch_once(timeout=1.0)
        raise TimeoutError(f"coordinator did not catch up with the stream within {timeout}s")

    async def _consume(self) -> None:
        while True:
            try:
                await self.fetch_once(timeout=5.0)
            except ConnectionClosedError:
                await asyncio.sleep(1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the server may be away: never busy-loop
                log.warning("fetch failed", error=type(exc).__name__, detail=str(exc)[:200])
                await asyncio.sleep(1.0)

    async def escalate(self) -> list[str]:
        """Run the escalator once (after folding what is pending); the event ids submitted."""
        sent = await self.escalator.run_once()
        if sent:
            log.info("escalations submitted", count=len(sent))
        return sent

    async def _escalate(self) -> None:
        while True:
            try:
                await self.escalate()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("escalation run failed", error=type(exc).__name__, detail=str(exc)[:300])
            await asyncio.sleep(self.escalate_every_s)

    async def wait_published(self, timeout: float = 30.0) -> None:
        """Until the outbox is empty (every escalation acknowledged by JetStream)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await self.store.outbox_depth():
            if loop.time() > deadline:
                raise TimeoutError("coordinator outbox not drained")
            self._wake_relay()
            await asyncio.sleep(0.05)


async def read_stream(js: Any, stream: str, batch: int = 512) -> list[tuple[bytes, int, datetime]]:
    """Every message of ``stream`` as ``(data, stream sequence, stored at)``, in order.

    Uses an ephemeral pull consumer: an identity that may create one (the operator or the
    auditor, or an unsecured development server). The ``COORD`` identity cannot; its
    rebuild is a fresh store on a re-created ``coordinator`` durable (README).
    """
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    info = await js.stream_info(stream)
    last = int(info.state.last_seq or 0)
    out: list[tuple[bytes, int, datetime]] = []
    if last == 0:
        return out
    config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE, inactive_threshold=30.0)
    sub = await js.pull_subscribe("", stream=stream, config=config)
    try:
        while not out or out[-1][1] < last:
            msgs = await sub.fetch(batch=batch, timeout=5.0)
            out.extend((m.data or b"", m.metadata.sequence.stream, m.metadata.timestamp) for m in msgs)
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return out
