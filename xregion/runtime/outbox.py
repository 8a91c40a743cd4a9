"""Submitting events: validate, seal personal data, take the next place in the origin's
chain, sign, store.

Personal-data fields (those whose schema admits a sealed value) are sealed to the addressee
region's keys (every other region's, for a broadcast) before signing, so the outbox, the
stream and everyone but the addressee hold only ciphertext (:mod:`xregion.sealing`); the
caller gets the event back opened, with its plain payload.

:meth:`Outbox.submit` does all of it in a store transaction, so an event is either durably
in the outbox with its sequence number and signature, or nowhere; the caller gets the event
back only after the commit. The relay publishes it afterwards.

*Group commit.* Submissions made while the store is busy wait in a queue; one task takes
all that are waiting (up to :data:`MAX_GROUP`) and appends them, in arrival order, in one
transaction with one disk sync, each inside its own savepoint: a submission that is not
valid is rolled back and its caller gets its error, the others commit. A submission made
inside a transaction in progress (a handler answering, an idempotent submission) joins that
transaction instead. A caller cancelled while its submission waits in the queue removes
it; once its group is being written the submission commits (or fails) with the group.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any

from xregion.codec import DecodedEvent, step_of
from xregion.compose import seal_encoded
from xregion.contracts.catalog import Catalog
from xregion.contracts.common import Contract
from xregion.lifecycle import LIFECYCLES
from xregion.regions import BROADCAST, RegionRegistry
from xregion.runtime.store import HistoryEntry, Store
from xregion.sealing import FieldSealing
from xregion.signing import Signer, hash_of_canonical

Submission = tuple[dict[str, Any], Contract | None]
"""An unsigned event and, if its composer validated it, its payload."""

MAX_GROUP = 64
"""Submissions written by one transaction at most (bounds how long it holds the store)."""


class Outbox:
    def __init__(
        self,
        store: Store,
        signer: Signer,
        *,
        catalog: Catalog,
        registry: RegionRegistry,
        sealing: FieldSealing,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.signer = signer
        self.catalog = catalog
        self.registry = registry
        self.sealing = sealing
        self.on_commit = on_commit
        self._queue: list[tuple[Submission, asyncio.Future[DecodedEvent]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.groups = 0
        """Group transactions written so far."""

    async def submit(self, unsigned: dict[str, Any], payload: Contract | None = None) -> DecodedEvent:
        """Store ``unsigned`` (from :func:`xregion.compose.compose`) as this origin's next event.

        ``payload``: its data validated already with this outbox's registry
        (:func:`xregion.compose.compose_validated`), so it is not validated again.

        Raises a :class:`~xregion.errors.ContractError` or
        :class:`~xregion.errors.LifecycleError` (nothing stored) when it is not valid.
        """
        if self.store.in_transaction():  # join it: commits (or not) with the caller's work
            # One event, on the event loop's thread: a hop to the store's thread costs more
            # than the append while the loop is busy (a handler's answer, in a batch).
            async with self.store.transaction():
                decoded = await self.store.lookup(lambda db: self._append(db, (unsigned, payload)))
            self.on_commit()
            return decoded
        waiting: asyncio.Future[DecodedEvent] = asyncio.get_running_loop().create_future()
        self._queue.append(((unsigned, payload), waiting))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_queued(), name="outbox-group-commit")
        return await waiting

    async def _write_queued(self) -> None:
        """Write the queued submissions, a group per transaction, until the queue is empty.

        The group is taken once the store is free (it may be busy until then): what queued
        in the meantime joins it, what was cancelled is left out. ``BEGIN``, the group and
        ``COMMIT`` go to the store's thread in one hop (:meth:`Store.write`): the only wait
        on the way is the commit's disk sync."""
        while self._queue:
            group: list[tuple[Submission, asyncio.Future[DecodedEvent]]] = []

            def take() -> Callable[[sqlite3.Connection], list[DecodedEvent | Exception]] | None:
                nonlocal group
                taken, self._queue = self._queue[:MAX_GROUP], self._queue[MAX_GROUP:]
                group = [(submission, waiting) for submission, waiting in taken if not waiting.done()]
                return partial(self._append_all, [s for s, _ in group]) if group else None

            try:
                outcomes = await self.store.write(take) or []
            except Exception as exc:  # the transaction itself failed: nothing of the group is stored
                for _, waiting in group:
                    if not waiting.done():
                        waiting.set_exception(exc)
                continue
            except BaseException:
                for _, waiting in group:
                    waiting.cancel()
                raise
            if not group:
                continue
            self.groups += 1
            self.on_commit()
            for (_, waiting), outcome in zip(group, outcomes, strict=True):
                if waiting.done():
                    continue
                if isinstance(outcome, Exception):
                    waiting.set_exception(outcome)
                else:
                    waiting.set_result(outcome)

    def _append_all(self, group: list[Submission], db: sqlite3.Connection) -> list[DecodedEvent | Exception]:
        return [self._append_alone(db, submission) for submission in group]

    def _append_alone(self, db: sqlite3.Connection, submission: Submission) -> DecodedEvent | Exception:
        """:meth:`_append` inside a savepoint: an invalid submission leaves no trace in the group."""
        db.execute("SAVEPOINT submission")
        try:
            decoded = self._append(db, submission)
        except Exception as exc:
            db.execute("ROLLBACK TO submission")
            db.execute("RELEASE submission")
            return exc
        db.execute("RELEASE submission")
        return decoded

    def _append(self, db: sqlite3.Connection, submission: Submission) -> DecodedEvent:
        unsigned, payload = submission
        head = Store.outbox_head(db)
        version = int(unsigned["type"].rsplit(".v", 1)[1])
        link = Store.link_head(db, unsigned["addressee"], version)
        decoded, wire = seal_encoded(
            self._sealed(unsigned),
            seq=head.seq + 1,
            prevhash=head.hash,
            linkseq=link.seq + 1,
            linkprev=link.hash,
            signer=self.signer,
            opened=unsigned["data"],
            payload=payload,
            catalog=self.catalog,
            registry=self.registry,
        )
        env = decoded.envelope
        previous = Store.load_referral(db, env.subject)
        state = LIFECYCLES.apply(previous, step_of(decoded))
        db.execute(
            "INSERT INTO outbox (seq, event_id, subject, referral_id, event_type, addressee, link_seq, "
            "payload, hash, created_at) VALUES (?,?,?,?,?,?,?,?,?,datetime('now'))",
            (
                env.originseq,
                env.id,
                decoded.subject,
                env.subject,
                env.event_type,
                env.addressee,
                env.linkseq,
                wire,
                hash_of_canonical(wire),
            ),
        )
        after = state.tracks.get(env.sender, state.state) if state.tracks else state.state
        Store.save_referral(
            db,
            state,
            HistoryEntry(env.id, env.event_type, env.sender, env.addressee, decoded.wire["time"], after),
            env.answerby.isoformat() if env.answerby else None,
        )
        return decoded

    def _sealed(self, unsigned: dict[str, Any]) -> dict[str, Any]:
        """``unsigned`` with its personal data sealed to the region(s) it is addressed to."""
        model = self.catalog.by_ce_type(unsigned["type"]).model
        to = unsigned["addressee"]
        regions = self.registry.others(self.signer.party) if to == BROADCAST else (to,)
        at = datetime.fromisoformat(unsigned["time"])
        data = self.sealing.seal(model, unsigned["data"], regions, at, event_id=unsigned["id"])
        return {**unsigned, "data": data}
