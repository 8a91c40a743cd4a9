"""An adapter's local durable state: outbox, inbox, inbound chain heads, referral views.

One SQLite database per adapter (WAL, ``synchronous=FULL``). Every access goes through
:meth:`Store.transaction` or :meth:`Store.read`, which serialise work on an asyncio lock;
a transaction is re-entrant: a regional handler that sends an answer while it handles an
event joins the handling transaction (as a savepoint), so the inbox record, the handler's
own statements, the answer's outbox row and the receipt commit together or not at all.

Work that may wait on the disk or take long (``BEGIN``/``COMMIT``, which syncs, and
anything given to :meth:`Tx.run` or :meth:`Store.read`) runs in the store's one worker
thread, off the event loop. Savepoints and the short work of :meth:`Store.lookup` (a few
indexed statements, one outbox append) run on the event loop's thread: they never wait for
a disk sync (in WAL mode that happens only at the commit), and under load a thread hop
costs more than they do. The lock guarantees the two threads never use the connection at
once.

Tables
------
``outbox``      this region's chain: one row per event it sent, ``seq`` = ``originseq``;
                ``published_at`` is set when JetStream acknowledged it.
``inbox``       every inbound event handled, keyed by event id (idempotency).
``chain_heads`` the last verified (seq, hash) of every link chain received (``TJ>BJ``).
``referrals``   this region's view of each referral it takes part in (lifecycle state).
``history``     the events of those referrals, in the order this region saw them.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from xregion.chain import GENESIS, ChainHead
from xregion.lifecycle import ReferralState
from xregion.runtime.restores import RestoreMark, RestoreRepair
from xregion.signing import event_hash

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq          INTEGER PRIMARY KEY,
    event_id     TEXT NOT NULL UNIQUE,
    subject      TEXT NOT NULL,
    referral_id  TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    addressee    TEXT NOT NULL,
    link_seq     INTEGER NOT NULL,
    payload      BLOB NOT NULL,
    hash         TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    published_at TEXT,
    stream_seq   INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (seq) WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_link ON outbox (addressee, seq);
CREATE TABLE IF NOT EXISTS inbox (
    event_id    TEXT PRIMARY KEY,
    origin      TEXT NOT NULL,
    originseq   INTEGER NOT NULL,
    subject     TEXT NOT NULL,
    referral_id TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    payload     BLOB NOT NULL,
    stream_seq  INTEGER,
    handled_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS inbox_unpositioned ON inbox (event_id) WHERE stream_seq = 0;
CREATE TABLE IF NOT EXISTS chain_heads (
    origin TEXT PRIMARY KEY,
    seq    INTEGER NOT NULL,
    hash   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS referrals (
    referral_id   TEXT PRIMARY KEY,
    family        TEXT NOT NULL,
    origin        TEXT NOT NULL,
    addressee     TEXT NOT NULL,
    state         TEXT NOT NULL,
    tracks        TEXT NOT NULL,
    events        INTEGER NOT NULL,
    last_event_id TEXT NOT NULL,
    answer_by     TEXT,
    updated_at    TEXT NOT NULL,
    handling      TEXT NOT NULL DEFAULT '',
    permissions   TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS history (
    referral_id TEXT NOT NULL,
    position    INTEGER NOT NULL,
    event_id    TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    sender      TEXT NOT NULL,
    addressee   TEXT NOT NULL,
    time        TEXT NOT NULL,
    state_after TEXT NOT NULL,
    PRIMARY KEY (referral_id, position)
);
CREATE TABLE IF NOT EXISTS restores (
    restored_at  TEXT PRIMARY KEY,
    last_seq     INTEGER NOT NULL,
    applied_at   TEXT NOT NULL,
    republish    INTEGER NOT NULL,
    unpositioned INTEGER NOT NULL
);
"""

MIGRATIONS = {
    # columns added after the first release: (table, column) -> definition
    ("referrals", "handling"): "TEXT NOT NULL DEFAULT ''",
    ("referrals", "permissions"): "TEXT NOT NULL DEFAULT '[]'",
}


def migrate(db: sqlite3.Connection) -> None:
    """Add the columns a store created by an earlier release lacks."""
    for (table, column), definition in MIGRATIONS.items():
        present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True)
class OutboxRow:
    seq: int
    event_id: str
    subject: str
    payload: bytes


@dataclass(frozen=True)
class HistoryEntry:
    event_id: str
    event_type: str
    sender: str
    addressee: str
    time: str
    state_after: str


_in_tx: contextvars.ContextVar[Store | None] = contextvars.ContextVar("xregion_store_tx", default=None)


class Store:
    """The adapter's SQLite database, driven from asyncio through one worker thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"store-{path.stem}")
        self._lock = asyncio.Lock()
        self._savepoints = 0
        self._db: sqlite3.Connection | None = None
        self.requeues = 0
        """Times outbox events were made pending again (a restore, a rewound stream): a relay
        that publishes while its previous acknowledgements are being recorded
        (:meth:`mark_published` with ``unless_requeued``) must read the outbox anew."""

    # --- thread plumbing ----------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def open(self) -> Store:
        """Open the database (a no-op if it is open already)."""
        if self._db is not None:
            return self

        def _open() -> None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            db.executescript(SCHEMA)
            migrate(db)
            self._db = db

        await self._call(_open)
        return self

    async def close(self) -> None:
        async with self._lock:
            if self._db is not None:
                await self._call(self._db.close)
                self._db = None
        self._executor.shutdown(wait=True)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """A write transaction; nested use in the same task becomes a savepoint."""
        if _in_tx.get() is self:
            self._savepoints += 1
            name = f"sp{self._savepoints}"
            self.db.execute(f"SAVEPOINT {name}")
            try:
                yield Tx(self)
            except BaseException:
                # Through the worker: a cancelled caller's statement may still be running there.
                await self._call(self.db.execute, f"ROLLBACK TO {name}")
                await self._call(self.db.execute, f"RELEASE {name}")
                raise
            self.db.execute(f"RELEASE {name}")
            return
        async with self._lock:
            token = _in_tx.set(self)
            await self._call(self.db.execute, "BEGIN IMMEDIATE")
            try:
                yield Tx(self)
            except BaseException:
                await self._call(self.db.execute, "ROLLBACK")
                raise
            else:
                await self._call(self.db.execute, "COMMIT")
            finally:
                _in_tx.reset(token)

    async def write(self, prepare: Callable[[], Callable[[sqlite3.Connection], T] | None]) -> T | None:
        """One write transaction in one hop to the store's thread: ``BEGIN``, the work,
        ``COMMIT`` (``ROLLBACK`` if it raises), where :meth:`transaction` makes three.
        ``prepare`` runs on the event loop once the store is free and returns the work (or
        None: nothing to write), so what queued while the store was busy joins it. The work
        runs alone in the thread: it cannot call the store's async methods. A caller
        cancelled meanwhile waits for the thread to finish before the store is free again."""
        async with self._lock:
            work = prepare()
            if work is None:
                return None
            chosen = work

            def transaction(db: sqlite3.Connection) -> T:
                db.execute("BEGIN IMMEDIATE")
                try:
                    result = chosen(db)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
                return result

            running = asyncio.get_running_loop().run_in_executor(self._executor, transaction, self.db)
            try:
                return await asyncio.shield(running)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await running
                raise

    def in_transaction(self) -> bool:
        """Whether the current task is inside one of this store's transactions."""
        return _in_tx.get() is self

    async def lookup(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the event loop's thread, inside the transaction in
        progress (or under the lock): for short work that never waits for a disk sync (a few
        indexed reads and writes), where a hop to the worker thread costs more than it does."""
        if _in_tx.get() is self:
            return fn(self.db)
        async with self._lock:
            return fn(self.db)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` consistently with (after) any transaction in progress."""
        if _in_tx.get() is self:
            return await self._call(fn, self.db)
        async with self._lock:
            return await self._call(fn, self.db)

    # --- outbox -------------------------------------------------------------------------

    @staticmethod
    def outbox_head(db: sqlite3.Connection) -> ChainHead:
        row = db.execute("SELECT seq, hash FROM outbox ORDER BY seq DESC LIMIT 1").fetchone()
        return GENESIS if row is None else ChainHead(row[0], row[1])

    @staticmethod
    def outbox_record(db: sqlite3.Connection, event_id: str) -> tuple[str, int | None] | None:
        """(hash, stream seq or None if not yet published) of this region's own event
        ``event_id``, or None if its outbox never held it."""
        row = db.execute("SELECT hash, stream_seq FROM outbox WHERE event_id = ?", (event_id,)).fetchone()
        return None if row is None else (str(row[0]), None if row[1] is None else int(row[1]))

    @staticmethod
    def link_head(db: sqlite3.Connection, addressee: str, version: int = 1) -> ChainHead:
        """Head of this region's link to ``addressee`` on contract version ``version``."""
        row = db.execute(
            "SELECT link_seq, hash FROM outbox WHERE addressee = ? AND subject LIKE ? ORDER BY seq DESC LIMIT 1",
            (addressee, f"xregion.v{version}.%"),
        ).fetchone()
        return GENESIS if row is None else ChainHead(row[0], row[1])

    async def pending(self, limit: int = 256, after: int = 0) -> list[OutboxRow]:
        """The first ``limit`` events not yet acknowledged, after outbox sequence ``after``."""

        def q(db: sqlite3.Connection) -> list[OutboxRow]:
            rows = db.execute(
                "SELECT seq, event_id, subject, payload FROM outbox WHERE published_at IS NULL AND seq > ? "
                "ORDER BY seq LIMIT ?",
                (after, limit),
            ).fetchall()
            return [OutboxRow(*r) for r in rows]

        return await self.read(q)

    async def outbox_depth(self) -> int:
        return await self.read(
            lambda db: db.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL").fetchone()[0]
        )

    async def apply_restore(self, mark: RestoreMark) -> RestoreRepair | None:
        """Make this store agree with a stream restored from a backup ending at
        ``mark.last_seq`` (:mod:`xregion.runtime.restores`), once per restore: outbox events
        acknowledged beyond it pending again (the relay re-publishes them, oldest first), handled
        events beyond it without a stream position (their copies are then duplicates).
        ``None`` if this restore was applied already."""
        async with self.transaction() as tx:
            repair = await tx.run(lambda db: self._apply_restore(db, mark))
            if repair is not None:
                self.requeues += 1
            return repair

    @staticmethod
    def _apply_restore(db: sqlite3.Connection, mark: RestoreMark) -> RestoreRepair | None:
        if db.execute("SELECT 1 FROM restores WHERE restored_at = ?", (mark.restored_at,)).fetchone():
            return None
        count, first, last = db.execute(
            "SELECT count(*), min(seq), max(seq) FROM outbox WHERE stream_seq > ?", (mark.last_seq,)
        ).fetchone()
        db.execute("UPDATE outbox SET published_at = NULL, stream_seq = NULL WHERE stream_seq > ?", (mark.last_seq,))
        unpositioned = db.execute("UPDATE inbox SET stream_seq = 0 WHERE stream_seq > ?", (mark.last_seq,)).rowcount
        db.execute(
            "INSERT INTO restores (restored_at, last_seq, applied_at, republish, unpositioned) VALUES (?,?,?,?,?)",
            (mark.restored_at, mark.last_seq, now_iso(), count, unpositioned),
        )
        return RestoreRepair(mark, count, first, last, unpositioned)

    async def waiting_for_cause(self, rows: list[OutboxRow], released: Collection[str] = ()) -> tuple[int, str] | None:
        """The first of ``rows`` (but those ``released``) that answers an event this region
        handled beyond a restored backup whose re-published copy has not come back yet (an
        inbox event whose position the restore made unknown): ``(its index, the cause's id)``.
        Published before the cause, the answer would precede it in the stream
        (:mod:`xregion.runtime.restores`). ``None`` when nothing waits, at once when the
        inbox holds no such event (always, but for a while after a restore)."""

        def q(db: sqlite3.Connection) -> tuple[int, str] | None:
            if db.execute("SELECT 1 FROM inbox WHERE stream_seq = 0 LIMIT 1").fetchone() is None:
                return None
            for index, row in enumerate(rows):
                if row.event_id in released:
                    continue
                cause = json.loads(row.payload).get("causationid")
                if (
                    cause
                    and db.execute("SELECT 1 FROM inbox WHERE event_id = ? AND stream_seq = 0", (cause,)).fetchone()
                ):
                    return index, str(cause)
            return None

        return await self.lookup(q)

    @staticmethod
    def reposition_inbox(db: sqlite3.Connection, event_id: str, stream_seq: int) -> bool:
        """A handled event whose position a restore made unknown came back (re-published by
        its origin) at ``stream_seq``: record it there, so that the answers waiting for it
        may follow it (:meth:`waiting_for_cause`) and a further copy is a replay again."""
        return (
            db.execute(
                "UPDATE inbox SET stream_seq = ? WHERE event_id = ? AND COALESCE(stream_seq, 0) = 0",
                (stream_seq, event_id),
            ).rowcount
            > 0
        )

    async def last_stream_seq(self) -> int:
        """The stream sequence of the last event of this outbox JetStream acknowledged (0: none)."""
        return int(await self.lookup(lambda db: db.execute("SELECT max(stream_seq) FROM outbox").fetchone()[0] or 0))

    async def requeue_beyond(self, stream_seq: int) -> int:
        """Make the events acknowledged beyond ``stream_seq`` pending again (the stream no
        longer holds them); how many."""
        async with self.transaction() as tx:
            count: int = await tx.run(
                lambda db: (
                    db.execute(
                        "UPDATE outbox SET published_at = NULL, stream_seq = NULL WHERE stream_seq > ?", (stream_seq,)
                    ).rowcount
                )
            )
            self.requeues += 1
            return count

    async def mark_published(self, acks: list[tuple[int, int]], *, unless_requeued: int | None = None) -> bool:
        """``acks``: (outbox seq, JetStream stream sequence) pairs. With ``unless_requeued`` (the
        :attr:`requeues` when they were acknowledged), nothing is recorded if events were made
        pending again since: the restore or rewind that did it may concern them (published
        again, they are acknowledged as duplicates). Whether they were recorded."""
        rows = [(now_iso(), stream_seq, seq) for seq, stream_seq in acks]
        recorded = False

        def prepare() -> Callable[[sqlite3.Connection], Any] | None:
            nonlocal recorded
            if unless_requeued is not None and unless_requeued != self.requeues:
                return None
            recorded = True
            return lambda db: db.executemany("UPDATE outbox SET published_at = ?, stream_seq = ? WHERE seq = ?", rows)

        await self.write(prepare)
        return recorded

    # --- referral views -----------------------------------------------------------------

    @staticmethod
    def load_referral(db: sqlite3.Connection, referral_id: str) -> ReferralState | None:
        row = db.execute(
            "SELECT referral_id, family, origin, addressee, state, tracks, events, last_event_id, "
            "handling, permissions FROM referrals WHERE referral_id = ?",
            (referral_id,),
        ).fetchone()
        if row is None:
            return None
        return ReferralState(
            referral_id=row[0],
            family=row[1],
            origin=row[2],
            addressee=row[3],
            state=row[4],
            tracks=MappingProxyType(json.loads(row[5])),
            events=row[6],
            last_event_id=row[7],
            handling=tuple(c for c in row[8].split(",") if c),
            permissions=frozenset(json.loads(row[9])),
        )

    @staticmethod
    def save_referral(db: sqlite3.Connection, state: ReferralState, entry: HistoryEntry, answer_by: str | None) -> None:
        db.execute(
            "INSERT INTO referrals (referral_id, family, origin, addressee, state, tracks, events, "
            "last_event_id, answer_by, updated_at, handling, permissions) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT (referral_id) DO UPDATE SET state=excluded.state, tracks=excluded.tracks, "
            "events=excluded.events, last_event_id=excluded.last_event_id, permissions=excluded.permissions, "
            "answer_by=COALESCE(excluded.answer_by, referrals.answer_by), updated_at=excluded.updated_at",
            (
                state.referral_id,
                state.family,
                state.origin,
                state.addressee,
                state.state,
                json.dumps(dict(state.tracks), sort_keys=True),
                state.events,
                state.last_event_id,
                answer_by,
                now_iso(),
                ",".join(state.handling),
                json.dumps(sorted(state.permissions)),
            ),
        )
        db.execute(
            "INSERT INTO history (referral_id, position, event_id, event_type, sender, addressee, "
            "time, state_after) VALUES (?,?,?,?,?,?,?,?)",
            (
                state.referral_id,
                state.events,
                entry.event_id,
                entry.event_type,
                entry.sender,
                entry.addressee,
                entry.time,
                entry.state_after,
            ),
        )

    async def referral(self, referral_id: str) -> ReferralState | None:
        return await self.lookup(lambda db: self.load_referral(db, referral_id))  # one row by key

    async def referrals(self) -> list[ReferralState]:
        def q(db: sqlite3.Connection) -> list[ReferralState]:
            ids = [r[0] for r in db.execute("SELECT referral_id FROM referrals ORDER BY rowid")]
            return [s for i in ids if (s := self.load_referral(db, i)) is not None]

        return await self.read(q)

    async def history(self, referral_id: str) -> list[HistoryEntry]:
        def q(db: sqlite3.Connection) -> list[HistoryEntry]:
            rows = db.execute(
                "SELECT event_id, event_type, sender, addressee, time, state_after FROM history "
                "WHERE referral_id = ? ORDER BY position",
                (referral_id,),
            ).fetchall()
            return [HistoryEntry(*r) for r in rows]

        return await self.read(q)

    # --- inbound ------------------------------------------------------------------------

    @staticmethod
    def inbox_has(db: sqlite3.Connection, event_id: str) -> bool:
        return db.execute("SELECT 1 FROM inbox WHERE event_id = ?", (event_id,)).fetchone() is not None

    @staticmethod
    def inbox_stream_seq(db: sqlite3.Connection, event_id: str) -> int | None:
        """The stream sequence at which event ``event_id`` was handled (0 if not recorded), or None."""
        row = db.execute("SELECT stream_seq FROM inbox WHERE event_id = ?", (event_id,)).fetchone()
        return None if row is None else int(row[0] or 0)

    @staticmethod
    def origin_heads(db: sqlite3.Connection, own: str) -> dict[str, ChainHead]:
        """The highest (originseq, event hash) of every origin chain this region has seen: the
        events it handled from each origin, and its own published ones (``own``). What its
        checkpoints attest (:mod:`xregion.checkpoint`)."""
        heads: dict[str, ChainHead] = {}
        rows = db.execute(
            "SELECT i.origin, i.originseq, i.payload FROM inbox i JOIN (SELECT origin, MAX(originseq) AS top "
            "FROM inbox GROUP BY origin) m ON i.origin = m.origin AND i.originseq = m.top"
        ).fetchall()
        for origin, seq, payload in rows:
            heads[origin] = ChainHead(seq, event_hash(json.loads(payload)))
        row = db.execute(
            "SELECT seq, hash FROM outbox WHERE published_at IS NOT NULL ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        if row is not None:
            heads[own] = ChainHead(row[0], row[1])
        return heads

    @staticmethod
    def chain_heads(db: sqlite3.Connection) -> dict[str, ChainHead]:
        return {o: ChainHead(s, h) for o, s, h in db.execute("SELECT origin, seq, hash FROM chain_heads")}

    @staticmethod
    def save_chain_head(db: sqlite3.Connection, origin: str, head: ChainHead) -> None:
        db.execute(
            "INSERT INTO chain_heads (origin, seq, hash) VALUES (?,?,?) ON CONFLICT (origin) "
            "DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            (origin, head.seq, head.hash),
        )


class Tx:
    """Handle on the open transaction: run statements in the store's thread."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._store._call(fn, self._store.db)

    async def execute(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[tuple[Any, ...]]:
        """Execute one statement inside the transaction; returns fetched rows."""
        return await self.run(lambda db: db.execute(sql, params).fetchall())

    async def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        await self.run(lambda db: db.executemany(sql, rows))
