"""Feeding a projection from the event stream, from the projection's own position.

The position is the last stream sequence the projection folded (``Projection.last_seq()``,
stored in the projection's own SQLite file). :class:`ProjectionFeed` asks the stream for
the messages after it (:class:`~xregion.runtime.stream_reader.StreamReader`, batched direct
get) and folds each batch in one transaction together with the new position — like the
tracking record of an event-sourced read model:

* a crash before the commit folds nothing and moves nothing: the batch is read again;
* a crash after it has both: the next read starts after it;
* a message at or below the position is skipped inside the transaction, so two processes
  folding into the same store cannot fold a message twice either;
* two stores fed from the same stream are equal; no reader takes a message from another.

The lag is the stream's last sequence minus the position (the event stream denies deletes,
so every sequence up to the last exists).

A stream restored from a backup may end before the position: before it folds anything on a
new connection, after a failed read and after reaching the end, the feed reads the stream's
restore mark, and a
projection that had folded beyond the backup is folded again from the start
(:meth:`Projection.follow_restore`, :mod:`xregion.runtime.restores`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from xregion.coordinator.projection import Projection, Verify
from xregion.envelope import Envelope
from xregion.keys import ROSTER_FILE
from xregion.runtime.keyfiles import LiveRoster
from xregion.runtime.stream_reader import StoredMessage, StreamReader

log = structlog.get_logger("xregion.coordinator")


def roster_verifier(keys_dir: Path, revocation_grace_s: float) -> Verify:
    """The coordinator's signature check against ``keys_dir/roster.json`` (reloaded when it changes)."""
    return live_roster_verifier(LiveRoster.load(keys_dir / ROSTER_FILE), revocation_grace_s)


def live_roster_verifier(rosters: LiveRoster, revocation_grace_s: float) -> Verify:
    """The coordinator's signature check against ``rosters`` (refreshed before each check)."""
    grace = timedelta(seconds=revocation_grace_s)

    def verify(wire: dict[str, Any], envelope: Envelope, stored_at: datetime) -> None:
        rosters.refresh()
        rosters.roster.verify(wire, envelope.sender, envelope.time, received_at=stored_at, grace=grace)

    return verify


@dataclass(frozen=True)
class Lag:
    """Where a projection stands against the stream."""

    position: int
    stream_last_seq: int

    @property
    def lag(self) -> int:
        return max(0, self.stream_last_seq - self.position)

    def to_json(self) -> dict[str, int]:
        return {"last_seq": self.position, "stream_last_seq": self.stream_last_seq, "lag": self.lag}


class ProjectionFeed:
    """Folds ``reader``'s stream into ``projection`` from the projection's position.

    ``on_folded`` is called with each folded batch (after its commit), e.g. to count events.
    """

    def __init__(
        self,
        projection: Projection,
        reader: StreamReader,
        *,
        on_folded: Callable[[list[StoredMessage]], None] | None = None,
    ) -> None:
        self.projection = projection
        self.reader = reader
        self.on_folded = on_folded
        self.lock = asyncio.Lock()
        self.pending = 0
        """Messages after the last batch read, when it was read (0: at the end of the stream)."""
        self._checked_at: int | None = None
        """The reader's reconnect count when the restore mark was last read (None: never, or a read failed)."""
        self.refolds = 0
        """Times the projection was emptied to be folded again after a restore."""

    async def _follow_restores(self) -> None:
        if self._checked_at == self.reader.reconnects:
            return
        seen = self.reader.reconnects
        mark = await self.reader.restore_mark()
        if mark is not None and self.projection.follow_restore(mark):
            self.refolds += 1
            log.warning(
                "the stream was restored from a backup: folding the projection again from the start",
                restored_at=mark.restored_at,
                restored_last_seq=mark.last_seq,
            )
        self._checked_at = seen

    async def fold_once(self) -> int:
        """Read one batch after the position and fold it; the number of messages read (0: at the end)."""
        async with self.lock:
            try:
                await self._follow_restores()
                batch = await self.reader.fetch(self.projection.last_seq() + 1)
            except BaseException:
                self._checked_at = None  # the stream may be another now: read its mark again first
                raise
            self.pending = batch.pending
            if not batch.messages:
                # At the end, or past the end of a stream restored meanwhile without a reconnect
                # (the operator deleted and restored it): read the mark again before folding on.
                self._checked_at = None
                return 0
            self.projection.apply_many([(m.data, m.seq, m.stored_at) for m in batch.messages])
            if self.on_folded is not None:
                self.on_folded(batch.messages)
            return len(batch.messages)

    async def lag(self) -> Lag:
        last = await self.reader.last_seq()
        return Lag(self.projection.last_seq(), last)

    async def catch_up(self, timeout: float = 30.0) -> int:
        """Fold everything the stream holds now; the number of messages folded."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with self.lock:
            self._checked_at = None  # asked to catch up: always with the stream as it is now
            await self._follow_restores()
        target = await self.reader.last_seq()
        total = 0
        while self.projection.last_seq() < target:
            if loop.time() > deadline:
                raise TimeoutError(
                    f"the projection did not catch up with the stream within {timeout}s "
                    f"(at {self.projection.last_seq()} of {target})"
                )
            folded = await self.fold_once()
            if folded == 0:
                break  # nothing after the position (the tail was deleted): caught up
            total += folded
        return total


__all__ = ["Lag", "ProjectionFeed", "live_roster_verifier", "roster_verifier"]
