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
from importlib.resources import files
from typing import Any, TypeVar

from xregion.errors import ConfigError

T = TypeVar("T")

SQL_DIR = "sql"
"""The bridge's tables, one file per dialect: ``adapters/sql/{sqlite,postgresql}.sql``. In a checkout
``xregion/bridge/sql`` is a link to ``adapters/sql``; a built wheel holds the files there (package data)."""


def load_ddl(dialect: str) -> str:
    """The DDL the bridge runs on opening a ``dialect`` database, exactly as in ``adapters/sql/<dialect>.sql``."""
    return files("xregion.bridge").joinpath(SQL_DIR, f"{dialect}.sql").read_bytes().decode("utf-8")


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

        return Database(open_pg, dialect="postgresql", ddl=load_ddl("postgresql"), placeholder="%s")
    path = dsn.removeprefix("sqlite:///") if dsn.startswith("sqlite:///") else dsn.removeprefix("sqlite://")
    if not path:
        raise ConfigError(f"no database file in {dsn!r}")
    return Database(lambda: _sqlite(path), dialect="sqlite", ddl=load_ddl("sqlite"), placeholder="?")
