"""The SQL bridge runs the DDL of ``adapters/sql`` byte for byte, and there is no second copy of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import xregion
from xregion.bridge import connect
from xregion.bridge.dialect import Database

ROOT = Path(__file__).resolve().parents[2]
SQL = ROOT / "adapters" / "sql"
PACKAGE = Path(xregion.__file__).parent


class RecordingConnection:
    """Stands in for the driver's connection and keeps every script it is given."""

    def __init__(self) -> None:
        self.scripts: list[str] = []

    def executescript(self, sql: str) -> None:  # sqlite3
        self.scripts.append(sql)

    def execute(self, sql: str, *params: Any) -> None:  # psycopg
        self.scripts.append(sql)

    def close(self) -> None:
        pass


def database(dialect: str, tmp_path: Path) -> Database:
    if dialect == "postgresql":
        pytest.importorskip("psycopg")
        return connect("postgresql://xregion@127.0.0.1:1/never-connected")
    return connect(str(tmp_path / "case.db"))


@pytest.mark.anyio
@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
async def test_the_bridge_executes_the_committed_ddl(dialect: str, tmp_path: Path) -> None:
    db = database(dialect, tmp_path)
    conn = RecordingConnection()
    db._opener = lambda: conn
    await db.open()
    await db.close()
    assert db.dialect == dialect
    assert [s.encode("utf-8") for s in conn.scripts] == [(SQL / f"{dialect}.sql").read_bytes()]


@pytest.mark.anyio
async def test_the_committed_sqlite_ddl_creates_the_tables(tmp_path: Path) -> None:
    db = await connect(str(tmp_path / "case.db")).open()
    try:
        rows = await db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'xregion_%'")
    finally:
        await db.close()
    assert sorted(r[0] for r in rows) == ["xregion_inbox", "xregion_outbox"]


def test_the_package_links_to_adapters_sql_instead_of_copying_it() -> None:
    """In the checkout ``xregion/bridge/sql`` is a link; a wheel gets the files as package data."""
    link = PACKAGE / "bridge" / "sql"
    assert link.is_symlink() and link.resolve() == SQL.resolve()
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for table in ("xregion_outbox", "xregion_inbox"):
            assert f"CREATE TABLE IF NOT EXISTS {table}" not in text, f"{path} holds a copy of the DDL"
