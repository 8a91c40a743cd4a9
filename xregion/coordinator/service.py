"""The running coordinator: project every event, escalate deadlines, publish as ``COORD``.

It reads the event stream by sequence from its own position — the last stream sequence its
:class:`~xregion.coordinator.projection.Projection` folded, kept in the projection's store —
with batched direct gets (:class:`~xregion.runtime.stream_reader.StreamReader`): no
consumer, nothing shared with another reader. Each batch is folded in one transaction
together with the new position, so a crash anywhere neither skips nor folds twice, and any
number of projections (the dashboard's, ``xregion status --store other.db``, a rebuild)
read the same stream side by side. It verifies signatures (key roster) and origin chains
like an adapter but never refuses: anomalies are recorded in the projection, nothing is
dead-lettered. Periodically it runs the
:class:`~xregion.coordinator.escalation.Escalator`, whose notices leave through the
coordinator's own outbox and relay (``<store>.outbox.db``: the ``COORD`` chain), signed
with the ``COORD`` key from the keys directory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import structlog

from xregion.config import BusConfig, load_config
from xregion.contracts.catalog import CATALOG, Catalog
from xregion.coordinator.calendar import DayCalendar, beijing_today
from xregion.coordinator.escalation import Escalator, Thresholds
from xregion.coordinator.feed import Lag, ProjectionFeed, live_roster_verifier
from xregion.coordinator.projection import Projection
from xregion.errors import XRegionError
from xregion.keys import ROSTER_FILE, load_signer
from xregion.regions import COORDINATOR
from xregion.runtime.connection import ClientIdentity, connect
from xregion.runtime.keyfiles import LiveRoster
from xregion.runtime.metrics import EVENTS
from xregion.runtime.outbox import Outbox
from xregion.runtime.relay import Relay
from xregion.runtime.settings import RuntimeSettings
from xregion.runtime.store import Store
from xregion.runtime.stream_reader import StoredMessage, StreamReader
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
        poll_s: float = 0.25,
        catalog: Catalog = CATALOG,
    ) -> None:
        self.config = config or load_config()
        self.settings = settings or RuntimeSettings()
        self.nats_url = nats_url
        self.identity = ClientIdentity.from_settings(self.settings, COORDINATOR)
        self.rosters = LiveRoster.load(keys_dir / ROSTER_FILE)
        self.signer = load_signer(keys_dir, COORDINATOR)
        self.batch = batch
        self.poll_s = poll_s
        self.escalate_every_s = escalate_every_s
        self.verify = live_roster_verifier(self.rosters, self.settings.revocation_grace_s)
        """Signature check of every folded event (the roster reloaded when its file changes)."""
        self.projection = Projection(
            store_path,
            config=self.config,
            calendar=calendar,
            catalog=catalog,
            verify=self.verify,
            today=today,
        )
        self.store = Store(outbox_path(store_path))
        self.outbox = Outbox(
            self.store,
            self.signer,
            catalog=catalog,
            registry=self.config.regions,
            sealing=FieldSealing(
                lambda: self.rosters.roster, lambda: [self.signer], version=self.settings.seal_version
            ),
            on_commit=self._wake_relay,
        )
        self.escalator = Escalator(self.projection, self.outbox, thresholds=thresholds, today=today, catalog=catalog)
        self.relay: Relay | None = None
        self.nc: Any = None
        self.js: Any = None
        self.reader: StreamReader | None = None
        self.feed: ProjectionFeed | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def _wake_relay(self) -> None:
        if self.relay is not None:
            self.relay.notify()

    async def connect(self) -> None:
        """Connect (COORD identity), open the stores and the stream reader; no background work."""
        if self.nc is not None:
            return
        self.projection.open()
        await self.store.open()
        self.nc = await connect(self.nats_url, "xregion-coordinator", self.identity)
        self.js = self.nc.jetstream()
        self.reader = await StreamReader(self.nc, self.settings.stream, batch=self.batch).open()
        self.feed = ProjectionFeed(self.projection, self.reader, on_folded=_count_events)
        self.relay = Relay(
            self.store,
            self.nc,
            self.js,
            self.settings.stream,
            check_stream=self._apply_restore,
            origin=COORDINATOR,
            hold_s=self.settings.restore_hold_s,
        )

    async def _apply_restore(self) -> None:
        """Before the relay publishes on a new connection: a stream restored from a backup
        lost the escalations acknowledged after it; they go out again (:mod:`xregion.runtime.restores`)."""
        assert self.reader is not None, "connect() first"
        mark = await self.reader.restore_mark()
        repair = await self.store.apply_restore(mark) if mark is not None else None
        if repair is not None and repair.republish:
            log.warning(
                "the stream was restored from a backup: re-publishing the escalations it lost", **repair.to_log()
            )

    async def start(self) -> None:
        """Connect, then fold, relay and escalate in the background."""
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
        lock = self.feed.lock if self.feed is not None else asyncio.Lock()
        async with lock:  # let a batch being folded be committed first
            for task in self._tasks:
                task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self.reader is not None:
            await self.reader.close()
            self.reader = None
        self.feed = None
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.flush(timeout=2)
            with contextlib.suppress(Exception):
                await self.nc.close()
            self.nc = None
        await self.store.close()
        self.projection.close()

    # --- folding ------------------------------------------------------------------------

    async def fold_once(self) -> int:
        """Read the batch after the projection's position and fold it; the number of
        messages (0: the projection is at the end of the stream)."""
        assert self.feed is not None, "connect() first"
        return await self.feed.fold_once()

    async def lag(self) -> Lag:
        """The projection's position, the stream's last sequence and the difference."""
        assert self.feed is not None, "connect() first"
        return await self.feed.lag()

    async def catch_up(self, timeout: float = 30.0) -> int:
        """Fold every message the stream holds now; the number folded."""
        assert self.feed is not None, "connect() first"
        return await self.feed.catch_up(timeout)

    async def _consume(self) -> None:
        while True:
            try:
                await self.fold_once()
                if self.feed is None or not self.feed.pending:
                    await asyncio.sleep(self.poll_s)  # at the end of the stream: look again soon
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the server may be away: never busy-loop
                if self.nc is not None and self.nc.is_connected:
                    code = exc.code if isinstance(exc, XRegionError) else type(exc).__name__
                    log.warning("stream read failed", error=code, detail=str(exc)[:200])
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


def _count_events(messages: list[StoredMessage]) -> None:
    for message in messages:
        EVENTS.labels(subject=message.subject).inc()
