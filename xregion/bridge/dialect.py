"""The SQL dialects of the bridge: SQLite (``sqlite3``) and PostgreSQL (``psycopg`` v3).

Statements are written with ``?`` placeholders and the subset of SQL both understand
(``ON CONFLICT ... DO NOTHING``, ``RETURNING``, ``CURRENT_TIMESTAMP``). Each database is
used from one worker thread, in autocommit mode (every statement is its own transaction).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from xregion.errors import ConfigError

T = TypeVar("T")

SQLITE_DDL = """\
-- xregion SQL bridge tables, SQLite. The regional system INSERTs into xregion_outbox and
-- reads xregion_inbox; the bridge writes bus_status/bus_event_id/error and the inbox.
CREATE TABLE IF NOT EXISTS xregion_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,  -- publication order
    idempotency_key TEXT NOT NULL UNIQUE,               -- the regional system's own key
    event_type      TEXT NOT NULL,                      -- <family>.<event>, e.g. lead.submitted
    referral_id     TEXT,                               -- NULL opens a referral; the bridge fills it in
    to_region       TEXT,                               -- addressee of an opening (BJ, TJ, HE, ALL)
    data            TEXT NOT NULL,                      -- the event's data, JSON (schemas/v1/data/)
    handling        TEXT NOT NULL DEFAULT 'H0',
    answer_by       TEXT,                               -- YYYY-MM-DD; default from the bus configuration
    created_at      TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    bus_status      TEXT NOT NULL DEFAULT 'new',        -- new, submitted, sent, failed, then the referral's state
    bus_event_id    TEXT,                               -- the event's id on the bus
    error           TEXT,                               -- why a row failed (code: message)
    updated_at      TEXT
);
CREATE INDEX IF NOT EXISTS xregion_outbox_status ON xregion_outbox (bus_status, id);
CREATE INDEX IF NOT EXISTS xregion_outbox_referral ON xregion_outbox (referral_id);
CREATE TABLE IF NOT EXISTS xregion_inbox (
    event_id     TEXT PRIMARY KEY,                      -- idempotency: each event once
    referral_id  TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    sender       TEXT NOT NULL,
    addressee    TEXT NOT NULL,
    data         TEXT NOT NULL,                         -- JSON, personal data opened
    handling     TEXT NOT NULL,
    answer_by    TEXT,
    event_time   TEXT NOT NULL,
    received_at  TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    state_after  TEXT NOT NULL,                         -- the referral's state after this event
    processed_at TEXT                                   -- for the regional system's own use
);
"""

POSTGRES_DDL = """\
-- xregion SQL bridge tables, PostgreSQL. The regional system INSERTs into xregion_outbox and
-- reads xregion_inbox; the bridge writes bus_status/bus_event_id/error and the inbox.
CREATE TABLE IF NOT EXISTS xregion_outbox (
    id              BIGSERIAL PRIMARY KEY,              -- publication order
    idempotency_key TEXT NOT NULL UNIQUE,               -- the regional system's own key
    event_type      TEXT NOT NULL,                      -- <family>.<event>, e.g. lead.submitted
    referral_id     TEXT,                               -- NULL opens a referral; the bridge fills it in
    to_region       TEXT,                               -- addressee of an opening (BJ, TJ, HE, ALL)
    data            JSONB NOT NULL,                     -- the event's data (schemas/v1/data/)
    handling        TEXT NOT NULL DEFAULT 'H0',
    answer_by       DATE,                               -- default from the bus configuration
    created_at      TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    bus_status      TEXT NOT NULL DEFAULT 'new',        -- new, submitted, sent, failed, then the referral's state
    bus_event_id    TEXT,                               -- the event's id on the bus
    error           TEXT,                               -- why a row failed (code: message)
    updated_at      TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS xregion_outbox_status ON xregion_outbox (bus_status, id);
CREATE INDEX IF NOT EXISTS xregion_outbox_referral ON xregion_outbox (referral_id);
CREATE TABLE IF NOT EXISTS xregion_inbox (
    event_id     TEXT PRIMARY KEY,                      -- idempotency: each event once
    referral_id  TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    sender       TEXT NOT NULL,
    addressee    TEXT NOT NULL,
    data         JSONB NOT NULL,                        -- personal data opened
    handling     TEXT NOT NULL,
    answer_by    DATE,
    event_time   TIMESTAMPTZ NOT NULL,
    received_at  TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    state_after  TEXT NOT NULL,                         -- the referral's state after this event
    processed_at TIMESTAMPTZ                            -- for the regional system's own use
);
"""


class Database:
    """One regional database, used from a single worker thread."""

    def __init__(self, opener: Callable[[], Any], *, dialect: str, ddl: str, placeholder: str) -> None:
        self._opener = opener
        self.dialect = dialect
        self.ddl = ddl
        self._placeholder = placeholder
        self._conn: Any = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"bridge-{dialect}")

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _sync_open(self) -> Any:
        if self._conn is None:
            self._conn = self._opener()
        return self._conn

    async def open(self) -> Database:
        await self._call(self._sync_open)
        await self.script(self.ddl)
        return self

    async def script(self, sql: str) -> None:
        def run() -> None:
            conn = self._sync_open()
            if self.dialect == "sqlite":
                conn.executescript(sql)
            else:
                conn.execute(sql)

        await self._call(run)

    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (autocommit); rows it returns, if any."""
        text = sql.replace("?", self._placeholder) if self._placeholder != "?" else sql

        def run() -> list[tuple[Any, ...]]:
            cur = self._sync_open().execute(text, params)
            rows = cur.fetchall() if cur.description is not None else []
            return [tuple(r) for r in rows]

        return await self._call(run)

    async def close(self) -> None:
        if self._conn is not None:
            await self._call(self._conn.close)
            self._conn = None
        self._executor.shutdown(wait=True)


def _sqlite(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def connect(dsn: str) -> Database:
    """``postgresql://...`` (psycopg), ``sqlite:///path`` or a plain file path (SQLite)."""
    if dsn.startswith(("postgresql://", "postgres://")):
        try:
            import psycopg
        except ImportError:  # pragma: no cover - depends on the installation
            raise ConfigError("PostgreSQL needs psycopg: pip install 'xregion[postgres]'") from None

        def open_pg() -> Any:
            return psycopg.connect(dsn, autocommit=True)

        return Database(open_pg, dialect="postgresql", ddl=POSTGRES_DDL, placeholder="%s")
    path = dsn.removeprefix("sqlite:///") if dsn.startswith("sqlite:///") else dsn.removeprefix("sqlite://")
    if not path:
        raise ConfigError(f"no database file in {dsn!r}")
    return Database(lambda: _sqlite(path), dialect="sqlite", ddl=SQLITE_DDL, placeholder="?")
