"""Each region's adapter is a witness of the verifiable log (C2SP ``tlog-cosignature``).

A witness cosigns the log's newest checkpoint only after checking, with the consistency
proof the log published beside it, that it extends the last checkpoint this witness
cosigned: append-only, never rewritten, never forked, never rolled back. It needs nothing of
the stream but that one message — the log's latest checkpoint, which it reads by a direct
get of the last message on ``xregion.checkpoint.AUDIT`` in the dead-letter stream (a region
reads no other message there) — and it publishes its cosignature on its own checkpoint
subject ``xregion.checkpoint.<REGION>``. Its state, the last cosigned checkpoint, is a row
in the adapter's store, written before the cosignature is published.

A checkpoint whose log signature fails, or that is not consistent with what the witness
cosigned before, is refused and raised as a security alert (``note_invalid``,
``tlog_inconsistent``): someone rewrote the log's history, or shows the regions different
ones. A checkpoint for which the log published no proof from the witness's size waits for
the next one (the log learns each witness's size from its cosignatures).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from xregion.checkpoint import checkpoint_subject
from xregion.errors import XRegionError
from xregion.merkle import LogInconsistent, verify_consistency
from xregion.note import (
    Checkpoint,
    NoteSignature,
    cosign,
    cosignature_message,
    parse_checkpoint_message,
    verify_log_signature,
)
from xregion.regions import AUDITOR
from xregion.runtime.alerts import SecurityAlerts
from xregion.runtime.store import Store
from xregion.signing import KeyRoster, Signer

log = structlog.get_logger("xregion.witness")

TABLE = """
CREATE TABLE IF NOT EXISTS witness (
    origin      TEXT PRIMARY KEY,
    size        INTEGER NOT NULL,
    root        BLOB NOT NULL,
    note        TEXT NOT NULL,
    cosignature TEXT NOT NULL
)
"""


@dataclass(frozen=True)
class Witnessed:
    """The last checkpoint this witness cosigned."""

    size: int
    root: bytes
    text: str
    cosignature: str


class Witness:
    """One region's witness of the log ``origin``: :meth:`step` checks the log's latest
    checkpoint and cosigns it if it is consistent with the last one cosigned."""

    def __init__(
        self,
        region: str,
        store: Store,
        js: JetStreamContext,
        signer: Callable[[], Signer],
        roster: Callable[[], KeyRoster],
        *,
        origin: str,
        dead_letter_stream: str,
        alerts: SecurityAlerts | None = None,
    ) -> None:
        self.region = region
        self.store = store
        self.js = js
        self.signer = signer
        self.roster = roster
        self.origin = origin
        self.dead_letter_stream = dead_letter_stream
        self.alerts = alerts
        self._ready = False
        self._refused: tuple[int, bytes] | None = None
        self.refusals: list[XRegionError] = []
        """Every checkpoint refused (once each), newest last."""

    async def _table(self) -> None:
        if not self._ready:
            async with self.store.transaction() as tx:
                await tx.execute(TABLE)
            self._ready = True

    async def state(self) -> Witnessed | None:
        await self._table()
        row = await self.store.read(
            lambda db: db.execute(
                "SELECT size, root, note, cosignature FROM witness WHERE origin = ?", (self.origin,)
            ).fetchone()
        )
        return None if row is None else Witnessed(int(row[0]), bytes(row[1]), str(row[2]), str(row[3]))

    async def step(self) -> NoteSignature | None:
        """Cosign the log's latest checkpoint if it is new and consistent; None otherwise."""
        try:
            message = await self.js.get_last_msg(self.dead_letter_stream, checkpoint_subject(AUDITOR), direct=True)
        except NotFoundError:
            return None  # the log has published nothing yet
        raw = message.data or b""
        try:
            note, proofs = parse_checkpoint_message(raw)
            checkpoint = note.checkpoint()
            verify_log_signature(note, self.roster(), self.origin)
        except XRegionError as exc:
            self._refuse(exc, raw, message.seq, None)
            return None
        witnessed = await self.state()
        if witnessed is not None:
            if (checkpoint.size, checkpoint.root) == (witnessed.size, witnessed.root):
                return None  # cosigned already
            try:
                if checkpoint.size <= witnessed.size:
                    verify_consistency(witnessed.size, checkpoint.size, witnessed.root, checkpoint.root, [])
                    return None  # an older head, consistent with ours: nothing to add
                proof = proofs.get(witnessed.size)
                if proof is None:
                    log.info(
                        "log checkpoint without a proof from this witness's size; waiting for the next",
                        region=self.region,
                        size=checkpoint.size,
                        witnessed=witnessed.size,
                    )
                    return None
                verify_consistency(witnessed.size, checkpoint.size, witnessed.root, checkpoint.root, proof)
            except LogInconsistent as exc:
                self._refuse(exc, raw, message.seq, checkpoint)
                return None
        return await self._cosign(note.text, checkpoint)

    async def _cosign(self, text: str, checkpoint: Checkpoint) -> NoteSignature:
        signature = cosign(text, self.signer())
        line = signature.line()

        def save(db: Any) -> None:
            db.execute(
                "INSERT OR REPLACE INTO witness VALUES (?, ?, ?, ?, ?)",
                (self.origin, checkpoint.size, checkpoint.root, text, line),
            )

        async with self.store.transaction() as tx:
            await tx.run(save)
        await self.js.publish(
            checkpoint_subject(self.region), cosignature_message(self.region, text, signature), timeout=5.0
        )
        log.info("log checkpoint cosigned", region=self.region, size=checkpoint.size)
        return signature

    def _refuse(self, exc: XRegionError, raw: bytes, seq: int | None, checkpoint: Checkpoint | None) -> None:
        seen = (checkpoint.size, checkpoint.root) if checkpoint else (-1, raw[:64])
        if seen == self._refused:
            return  # reported already
        self._refused = seen
        self.refusals.append(exc)
        log.error("log checkpoint refused", region=self.region, code=exc.code, detail=exc.message)
        if self.alerts is not None:
            self.alerts.raise_alert(
                json.loads(json.dumps(exc.to_reason(), default=str)),
                body=raw,
                original_subject=checkpoint_subject(AUDITOR),
                stream_seq=seq,
                event_id=None,
            )
