"""The SQL outbox/inbox bridge: SQLite always, PostgreSQL against the real local server.

Rows inserted into BJ's ``xregion_outbox`` reach TJ's ``xregion_inbox`` exactly once, in
order, also when BJ's bridge (a real ``xregion adapter run --sql-bridge`` process) is
SIGKILLed between submitting a row and marking it: the process runs through
:mod:`tests.integration.bridge_launcher`, which stops the bridge in that window and says so
in a marker file.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bus import Bus, eventually
from tests.integration.helpers import stream_events
from xregion.bridge import SqlBridge, connect
from xregion.bridge.dialect import Database
from xregion.examples import PAYLOADS
from xregion.keys import init_keys

pytestmark = pytest.mark.anyio

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
ROOT = Path(__file__).resolve().parents[2]


def _postgres_reason() -> str | None:
    try:
        import psycopg

        psycopg.connect(PG_DSN, connect_timeout=3).close()
    except Exception as exc:
        return f"PostgreSQL not reachable at {PG_DSN}: {type(exc).__name__}: {exc}"
    return None


PG_MISSING = _postgres_reason()
BACKENDS = [
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.skipif(PG_MISSING is not None, reason=PG_MISSING or "")),
]


@pytest.fixture(params=BACKENDS)
def case_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """A factory of DSNs of fresh regional case databases (one per region), removed afterwards."""
    schemas: list[str] = []

    def make(region: str) -> str:
        if request.param == "sqlite":
            return str(tmp_path / f"{region}-case.db")
        import psycopg

        schema = f"xr_{uuid.uuid4().hex[:10]}_{region.lower()}"
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        schemas.append(schema)
        return f"{PG_DSN}?options=-csearch_path%3D{schema}"

    yield make
    if schemas:
        import psycopg

        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            for schema in schemas:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")


async def insert_outbox(
    db: Database,
    key: str,
    event_type: str,
    data: dict[str, Any],
    *,
    to: str | None = None,
    referral_id: str | None = None,
) -> None:
    await db.execute(
        "INSERT INTO xregion_outbox (idempotency_key, event_type, referral_id, to_region, data) VALUES (?,?,?,?,?)",
        (key, event_type, referral_id, to, json.dumps(data, ensure_ascii=False)),
    )


async def regional(dsn: str) -> Database:
    return await connect(dsn).open()


@pytest.fixture
async def cleanup() -> AsyncIterator[list[Any]]:
    items: list[Any] = []
    yield items
    for item in reversed(items):
        await item.stop() if isinstance(item, SqlBridge) else await item.close()


async def submitted_leads(bus: Bus) -> list[dict[str, Any]]:
    nc = await bus.raw()
    try:
        return [e for _, s, e in await stream_events(nc.jetstream(), bus.settings.stream) if ".lead.submitted." in s]
    finally:
        await nc.close()


async def test_outbox_rows_reach_the_other_inbox_and_come_back_with_status(
    bus: Bus, case_db: Callable[[str], str], cleanup: list[Any]
) -> None:
    bridges = {r: SqlBridge(case_db(r), poll_s=0.1) for r in ("BJ", "TJ")}
    for region, bridge in bridges.items():
        await bus.start(region, handler=bridge.handler)
        await bridge.start(bus.adapters[region])
        cleanup.append(bridge)
    bj, tj = bridges["BJ"].db, bridges["TJ"].db
    for n in range(3):
        await insert_outbox(
            bj, f"京市监线索-{n}", "lead.submitted", dict(PAYLOADS["lead.submitted"], title=f"线索{n}"), to="TJ"
        )
    await insert_outbox(bj, "京市监线索-bad", "lead.submitted", dict(PAYLOADS["lead.submitted"], suspects=[]), to="TJ")

    async def inbox() -> list[tuple[Any, ...]] | None:
        rows = await tj.execute(
            "SELECT event_id, referral_id, event_type, data FROM xregion_inbox ORDER BY received_at"
        )
        leads = [r for r in rows if r[2] == "lead.submitted"]
        return leads if len(leads) == 3 else None

    leads = await eventually(inbox, 20, "TJ's inbox to hold the three leads")
    titles = [(json.loads(r[3]) if isinstance(r[3], str) else r[3])["title"] for r in leads]
    assert sorted(titles) == ["线索0", "线索1", "线索2"]

    async def statuses() -> list[tuple[Any, ...]] | None:
        rows = await bj.execute(
            "SELECT idempotency_key, bus_status, error, referral_id FROM xregion_outbox ORDER BY id"
        )
        return rows if [r[1] for r in rows] == ["received", "received", "received", "failed"] else None

    rows = await eventually(statuses, 20, "BJ's outbox rows to be marked received/failed")
    assert "schema_invalid" in rows[3][2] and "suspects" in rows[3][2]
    assert {r[3] for r in rows[:3]} == {r[1] for r in leads}

    # TJ accepts the first lead from its own outbox table; BJ's row follows.
    await insert_outbox(tj, "津市监-受理-1", "lead.accepted", PAYLOADS["lead.accepted"], referral_id=rows[0][3])

    async def accepted() -> bool:
        got = await bj.execute("SELECT bus_status FROM xregion_outbox WHERE referral_id = ?", (rows[0][3],))
        return got == [("accepted",)]

    await eventually(accepted, 20, "BJ's row to show accepted")
    assert len(await submitted_leads(bus)) == 3  # the refused row was never published


def _run_bridge(bus: Bus, keys: Path, dsn: str, log: Path, stop_marker: Path | None) -> subprocess.Popen[bytes]:
    """BJ's adapter with its SQL bridge, a real process; with ``stop_marker``, stopped after its first submit."""
    # A message the killed process took but never acknowledged comes back after the ack wait.
    env = dict(os.environ, XREGION_LOG_FORMAT="json", XREGION_ACK_WAIT_S="3")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    if stop_marker is not None:
        launcher = ["-m", "tests.integration.bridge_launcher", "--stop-after-submit", str(stop_marker), "--"]
    else:
        launcher = ["-c", "from xregion.cli import main; main()"]
    cmd = [
        sys.executable,
        *launcher,
        "adapter",
        "run",
        "--region",
        "BJ",
        "--nats-url",
        bus.server.url,
        "--keys-dir",
        str(keys),
        "--store",
        str(bus.root / "BJ-process.db"),
        "--sql-bridge",
        dsn,
        "--log-format",
        "json",
    ]
    return subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)


async def test_bridge_killed_between_publishing_and_marking_sends_each_row_once(
    bus: Bus, case_db: Callable[[str], str], cleanup: list[Any], tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    init_keys(keys, ["BJ", "TJ", "HE", "COORD"])
    bus.keys_dir = keys
    tj_bridge = SqlBridge(case_db("TJ"), poll_s=0.1)
    await bus.start("TJ", handler=tj_bridge.handler)
    await tj_bridge.start(bus.adapters["TJ"])
    cleanup.append(tj_bridge)
    bj_dsn = case_db("BJ")
    bj = await regional(bj_dsn)
    cleanup.append(bj)
    tj = tj_bridge.db
    for n in range(2):
        await insert_outbox(
            bj, f"京市监线索-{n}", "lead.submitted", dict(PAYLOADS["lead.submitted"], title=f"线索{n}"), to="TJ"
        )
    log = tmp_path / "bridge.log"
    marker = tmp_path / "submitted-not-marked"
    proc = _run_bridge(bus, keys, bj_dsn, log, stop_marker=marker)
    try:

        async def stopped_after_submit() -> bool:
            assert proc.poll() is None, f"BJ's bridge exited early:\n{log.read_text(errors='replace')[-3000:]}"
            return marker.exists()

        await eventually(stopped_after_submit, 30, "BJ's bridge to submit its first row and stop before marking it")
        event_id = marker.read_text(encoding="utf-8")

        async def first_published() -> bool:
            rows = await tj.execute("SELECT event_id FROM xregion_inbox WHERE event_type = 'lead.submitted'")
            return rows == [(event_id,)]

        await eventually(first_published, 30, "the submitted row to reach TJ while BJ's bridge is stopped")
        assert await bj.execute("SELECT bus_status FROM xregion_outbox ORDER BY id") == [("new",), ("new",)]
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL

    proc = _run_bridge(bus, keys, bj_dsn, log, stop_marker=None)
    try:

        async def all_marked() -> bool:
            rows = await bj.execute("SELECT bus_status FROM xregion_outbox ORDER BY id")
            return rows == [("received",), ("received",)]

        await eventually(all_marked, 45, "both rows marked received after the restart")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    inbox = await tj.execute("SELECT event_id, data FROM xregion_inbox WHERE event_type = 'lead.submitted'")
    assert len(inbox) == 2
    titles = sorted((json.loads(d) if isinstance(d, str) else d)["title"] for _, d in inbox)
    assert titles == ["线索0", "线索1"]
    published = await submitted_leads(bus)
    assert len(published) == 2 and len({e["id"] for e in published}) == 2
    marked = await bj.execute("SELECT bus_event_id FROM xregion_outbox ORDER BY id")
    assert sorted(r[0] for r in marked) == sorted(r[0] for r in inbox)
    assert marked[0][0] == event_id  # the resubmitted row got the event sent before the kill
    await asyncio.sleep(0)
