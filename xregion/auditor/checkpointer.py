"""The log service (``xregion audit log run``): follows the event stream into the Merkle tree,
signs checkpoints, gathers the witnesses' cosignatures and has checkpoints time-stamped.

It runs with the auditor's identity (``AUDIT``: reads every stream by direct get; publishes
only its checkpoints, on ``xregion.checkpoint.AUDIT``) and key (``private/AUDIT.key``). Each
round (every ``interval_s``):

1. **sync** — read the messages the stream gained since the log's position (by sequence,
   no consumer) and append them to the tree (:class:`~xregion.auditor.tlog.TransparencyLog`);
2. **checkpoint** — if the tree grew, sign a checkpoint (C2SP signed note) after checking it
   is consistent with the previous one, and publish it with the consistency proofs each
   witness needs: from the size it last cosigned, and from the previous checkpoint;
3. **collect** — read the witnesses' cosignatures (``xregion.checkpoint.<REGION>``, kind
   ``tlog-cosignature``) from the dead-letter stream, verify each against the region's
   roster key and the checkpoint the log signed, and keep them.

Time-stamping runs beside it, never in its way: whenever a checkpoint is newer than the last
token, the stamper asks the TSA for a token over it — one token covers every checkpoint and
event before it. When the TSA is away the attempt is recorded (an *outage*: since when, how
many attempts, the last error), retried with back-off (``tsa_retry_s`` doubling up to
``tsa_retry_max_s``), and the log goes on logging and checkpointing; the first token after
the outage closes it and names the checkpoint that covers the gap. When events have waited
longer than ``max_token_age_s`` for a token, the stamper raises the alert
(``timestamp_stale``: an error in the log, and ``xregion audit log status`` exits 1).
Nothing here can slow the bus: adapters neither wait for nor know about the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from xregion.auditor.tlog import StoredCheckpoint, StoredTimestamp, TransparencyLog
from xregion.auditor.tsa import TsaClient
from xregion.checkpoint import checkpoint_subject
from xregion.errors import XRegionError
from xregion.merkle import LogInconsistent
from xregion.note import (
    COSIGNATURE_KIND,
    NoteInvalid,
    SignedNote,
    check_cosignatures,
    checkpoint_message,
    parse_cosignature_message,
)
from xregion.regions import AUDITOR
from xregion.runtime.restores import RestoreMark
from xregion.runtime.stream_reader import StreamReader
from xregion.signing import KeyRoster, Signer
from xregion.subjects import CHECKPOINT_ROOT

log = structlog.get_logger("xregion.tlog")

DLQ_POSITION = "dlq_position"
RESTORE_SEEN = "restore_seen"


@dataclass
class Health:
    """The log's time-stamping health (``xregion audit log status``)."""

    size: int
    checkpoint: int | None
    stamped: int | None
    token_time: datetime | None
    waiting_since: datetime | None
    """When the oldest checkpoint without a covering token was signed (None: all covered)."""
    max_age: timedelta
    outage: dict[str, Any] | None

    def waiting(self, now: datetime | None = None) -> timedelta:
        if self.waiting_since is None:
            return timedelta(0)
        return (now or datetime.now(UTC)) - self.waiting_since

    def stale(self, now: datetime | None = None) -> bool:
        return self.waiting(now) > self.max_age

    def to_json(self, now: datetime | None = None) -> dict[str, Any]:
        return {
            "size": self.size,
            "checkpoint": self.checkpoint,
            "stamped": self.stamped,
            "token_time": self.token_time.isoformat() if self.token_time else None,
            "unstamped_for_s": round(self.waiting(now).total_seconds(), 1),
            "max_token_age_s": self.max_age.total_seconds(),
            "stale": self.stale(now),
            "outage": self.outage,
        }


def health(tlog: TransparencyLog, max_age: timedelta) -> Health:
    latest = tlog.latest_checkpoint()
    token = tlog.latest_timestamp()
    waiting_since = None
    if latest is not None and (token is None or token.size < latest.size):
        first = tlog.checkpoint_after(token.size if token else -1)
        waiting_since = first.made_at if first else latest.made_at
    outage = tlog.open_outage()
    return Health(
        size=tlog.size,
        checkpoint=latest.size if latest else None,
        stamped=token.size if token else None,
        token_time=token.gen_time if token else None,
        waiting_since=waiting_since,
        max_age=max_age,
        outage=None
        if outage is None
        else {
            "since": outage.started_at.isoformat(),
            "attempts": outage.attempts,
            "last_error": outage.last_error,
            "first_unstamped": outage.first_size,
        },
    )


class Checkpointer:
    """One log over one stream; :meth:`run` forever, or call the steps (tests do)."""

    def __init__(
        self,
        tlog: TransparencyLog,
        nc: Any,
        signer: Signer,
        roster: Callable[[], KeyRoster],
        witnesses: list[str],
        *,
        stream: str,
        dead_letter_stream: str,
        tsa: TsaClient | None = None,
        interval_s: float = 60.0,
        max_token_age_s: float = 3600.0,
        tsa_retry_s: float = 5.0,
        tsa_retry_max_s: float = 300.0,
    ) -> None:
        if signer.party != AUDITOR:
            raise XRegionError(f"the log signs with the {AUDITOR} key, not {signer.party}'s")
        self.tlog = tlog
        self.nc = nc
        self.signer = signer
        self.roster = roster
        self.witnesses = list(witnesses)
        self.stream = stream
        self.dead_letter_stream = dead_letter_stream
        self.tsa = tsa
        self.interval_s = interval_s
        self.max_age = timedelta(seconds=max_token_age_s)
        self.tsa_retry_s = tsa_retry_s
        self.tsa_retry_max_s = tsa_retry_max_s
        self._published: int | None = None
        self._new_checkpoint = asyncio.Event()
        self._alerting = False
        self.gaps: list[int] = []

    # --- the steps ----------------------------------------------------------------------

    async def sync(self) -> int:
        """Append what the stream gained; the number of messages logged."""
        before = self.tlog.size
        async with StreamReader(self.nc, self.stream) as reader:
            self._check_restore(await reader.restore_mark())
            batch: list[tuple[int, datetime, str, bytes]] = []
            async for message in reader.read(self.tlog.position + 1):
                batch.append((message.seq, message.stored_at, message.subject, message.data))
                if len(batch) >= 500:
                    self._append(batch)
                    batch = []
            if batch:
                self._append(batch)
        return self.tlog.size - before

    def _check_restore(self, mark: RestoreMark | None) -> None:
        """A stream restored from a backup behind what this log has logged: stop, do not skip.

        Seen first when the log had already logged past the backup's last sequence, the
        restore took away messages this log holds, and the events adapters re-publish land at
        sequences it has passed: it cannot follow. A log that first sees the mark at or
        before that sequence (a new one, or one that was behind) goes on."""
        if mark is None or self.tlog.meta(RESTORE_SEEN) == mark.restored_at:
            return
        position = self.tlog.position
        if position > mark.last_seq:
            raise LogInconsistent(
                f"stream {self.stream} was restored ({mark.restored_at}) from a backup ending at seq "
                f"{mark.last_seq}, and this log has logged up to seq {position}: the messages after the backup "
                "are gone and re-published events would land at sequences it has passed. Keep this store as "
                "the evidence of the history before the restore, and start a new log (a new --store)",
                restored_at=mark.restored_at,
                last_seq=mark.last_seq,
                position=position,
            )
        self.tlog.set_meta(RESTORE_SEEN, mark.restored_at)

    def _append(self, batch: list[tuple[int, datetime, str, bytes]]) -> None:
        gaps = self.tlog.append(batch)
        if gaps:
            self.gaps.extend(gaps)
            log.warning(
                "stream sequences missing when the log read them (deleted before they were logged)",
                stream=self.stream,
                missing=gaps[:20],
                count=len(gaps),
            )

    async def checkpoint(self, *, force: bool = False) -> StoredCheckpoint | None:
        """Sign a checkpoint if the tree grew, and publish it (again, if the last publish failed)."""
        made = self.tlog.make_checkpoint(self.signer, force=force)
        if made is not None:
            log.info("checkpoint signed", size=made.size, root=made.root.hex())
            self._new_checkpoint.set()
        latest = made or self.tlog.latest_checkpoint()
        if latest is not None and self._published != latest.size:
            await self.publish(latest)
        return made

    async def publish(self, checkpoint: StoredCheckpoint) -> None:
        proofs: dict[int, list[bytes]] = {}
        older = [s for s in self.tlog.witness_sizes().values() if s < checkpoint.size]
        # (a witness ahead of this checkpoint refuses it on its own: a rollback)
        before = self.tlog.checkpoint_before(checkpoint.size)
        for size in {*older, *([before.size] if before else [])}:
            proofs[size] = self.tlog.consistency_proof(size, checkpoint.size)
        body = checkpoint_message(checkpoint.note, proofs)
        try:
            await self.nc.jetstream().publish(checkpoint_subject(AUDITOR), body, timeout=5.0)
        except Exception as exc:  # the broker away: the next round publishes again
            log.warning("checkpoint not published", size=checkpoint.size, error=type(exc).__name__)
            return
        self._published = checkpoint.size

    async def collect(self) -> int:
        """Verify and keep the witnesses' new cosignatures; the number kept."""
        position = int(self.tlog.meta(DLQ_POSITION, "0"))
        kept = 0
        async with StreamReader(self.nc, self.dead_letter_stream, filter_subject=f"{CHECKPOINT_ROOT}.*") as reader:
            async for message in reader.read(position + 1):
                position = message.seq
                if message.subject == checkpoint_subject(AUDITOR) or COSIGNATURE_KIND.encode() not in message.data:
                    continue
                kept += self._cosignature(message.subject, message.seq, message.data)
        self.tlog.set_meta(DLQ_POSITION, str(position))
        return kept

    def _cosignature(self, subject: str, seq: int, raw: bytes) -> int:
        try:
            region, text, line = parse_cosignature_message(raw)
            if subject != checkpoint_subject(region):
                raise NoteInvalid(f"a cosignature of {region} stored on {subject}")
            checkpoint = SignedNote(text, (line,)).checkpoint()
            if checkpoint.origin != self.tlog.origin:
                raise NoteInvalid(f"{region} cosigned a checkpoint of log {checkpoint.origin!r}")
            found = check_cosignatures(SignedNote(text, (line,)), self.roster(), self.witnesses, self.tlog.origin)
            if found.problems:
                raise found.problems[0]
            # The witness's size, whatever the store holds: the next checkpoint proves itself from it.
            self.tlog.note_witness(region, checkpoint.size)
            stored = self.tlog.checkpoint(checkpoint.size)
            if stored is None or stored.note.text != text:
                raise NoteInvalid(f"{region} cosigned a checkpoint of size {checkpoint.size} this log never signed")
        except XRegionError as exc:
            log.error("cosignature refused", code=exc.code, detail=exc.message, dlq_seq=seq)
            return 0
        cosigned = found.cosigned[0]
        if self.tlog.add_cosignature(checkpoint.size, cosigned.region, line, cosigned.time):
            log.info("checkpoint cosigned", size=checkpoint.size, witness=cosigned.region)
            return 1
        return 0

    async def stamp(self) -> StoredTimestamp | None:
        """Time-stamp the newest checkpoint if no token covers it yet; None if there was
        nothing to stamp or the TSA failed (recorded as an outage)."""
        if self.tsa is None:
            return None
        checkpoint = self.tlog.unstamped()
        if checkpoint is None:
            return None
        try:
            response, info = await self.tsa.stamp(checkpoint.note.text.encode())
        except XRegionError as exc:
            failing = self.tlog.tsa_failed(exc.message, checkpoint.size)
            log.warning(
                "time-stamping authority unavailable; the log goes on, the next token will cover the gap",
                code=exc.code,
                attempts=failing.attempts,
                since=failing.started_at.isoformat(),
                unstamped_from=failing.first_size,
                error=exc.message,
            )
            return None
        outage = self.tlog.open_outage()
        self.tlog.add_timestamp(checkpoint.size, response, info.gen_time, info.hash_alg, self.tsa.config.url)
        if outage is not None:
            log.warning(
                "time-stamps resumed: this token covers every event logged during the outage",
                outage_since=outage.started_at.isoformat(),
                attempts=outage.attempts,
                covered_by=checkpoint.size,
                token_time=info.gen_time.isoformat(),
            )
        else:
            log.info("checkpoint time-stamped", size=checkpoint.size, token_time=info.gen_time.isoformat())
        self._alerting = False
        stamped = self.tlog.timestamp(checkpoint.size)
        assert stamped is not None
        return stamped

    def health(self) -> Health:
        return health(self.tlog, self.max_age)

    def check_alert(self) -> bool:
        """Raise (log, once per episode) the stale-token alert; True while it holds."""
        state = self.health()
        if not state.stale():
            self._alerting = False
            return False
        if not self._alerting:
            self._alerting = True
            log.error(
                "no fresh time-stamp: events are waiting for a token longer than allowed",
                code="timestamp_stale",
                unstamped_for_s=round(state.waiting().total_seconds()),
                max_token_age_s=self.max_age.total_seconds(),
                outage=json.dumps(state.outage) if state.outage else None,
            )
        return True

    # --- running ------------------------------------------------------------------------

    async def round(self) -> None:
        """One round: sync, checkpoint, collect."""
        await self.sync()
        await self.checkpoint()
        await self.collect()

    async def run(self) -> None:
        stamper = asyncio.create_task(self._stamp_forever(), name="tlog-stamper")
        try:
            while True:
                try:
                    await self.round()
                except XRegionError as exc:
                    log.error("log round failed", code=exc.code, detail=exc.message)
                except Exception as exc:  # the broker away: try again next round
                    log.warning("log round failed", error=type(exc).__name__, detail=str(exc)[:300])
                await asyncio.sleep(self.interval_s)
        finally:
            stamper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stamper

    async def _stamp_forever(self) -> None:
        delay = self.tsa_retry_s
        while True:
            self.check_alert()
            if self.tsa is None or self.tlog.unstamped() is None:
                self._new_checkpoint.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._new_checkpoint.wait(), timeout=max(1.0, self.interval_s))
                delay = self.tsa_retry_s
                continue
            if await self.stamp() is not None:
                delay = self.tsa_retry_s
                continue
            self.check_alert()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.tsa_retry_max_s)
