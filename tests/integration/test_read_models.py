"""Read models own their position (ARCHITECTURE §7, issue 14 item 1).

The dashboard's coordinator and ``xregion status --nats-url --store other.db`` each keep
their own projection of the same stream: neither takes events from the other, both list
every referral with no anomaly, and ``/health/ready`` reports the real lag.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from structlog.testing import capture_logs

from tests.bus import Bus, eventually
from tests.dashboard_stack import dashboard_stack, use_keys_dir
from xregion.bench.common import bench_roster, synthetic_events
from xregion.coordinator.feed import ProjectionFeed
from xregion.coordinator.projection import Projection
from xregion.examples import PAYLOADS
from xregion.keys import ROSTER_FILE
from xregion.ops.server import EmbeddedServer
from xregion.runtime.settings import RuntimeSettings
from xregion.runtime.stream_reader import StreamReader
from xregion.runtime.topology import ensure_topology
from xregion.signing import Signer

pytestmark = pytest.mark.anyio

XREGION_BIN = Path(sys.executable).parent / "xregion"


async def run_cli(*args: str, timeout: float = 60.0) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(XREGION_BIN), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(timeout):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def status_json(bus: Bus, store: Path) -> dict[str, Any]:
    """``xregion status --nats-url … --store STORE --json`` (catching up first)."""
    assert bus.keys_dir is not None
    code, out, err = await run_cli(
        "status", "--nats-url", bus.server.url, "--store", str(store), "--keys-dir", str(bus.keys_dir), "--json"
    )
    assert code == 0, err
    doc: dict[str, Any] = json.loads(out)  # stdout is only the JSON document
    return doc


async def stream_last_seq(bus: Bus) -> int:
    nc = await bus.raw()
    try:
        info = await nc.jetstream().stream_info(bus.settings.stream)
        return int(info.state.last_seq or 0)
    finally:
        await nc.close()


async def test_status_into_another_store_takes_nothing_from_the_dashboard(bus: Bus, tmp_path: Path) -> None:
    use_keys_dir(bus, tmp_path)
    bj, _tj = await bus.start("BJ", "TJ")
    rids: list[str] = []

    async def lead() -> None:
        sent = await bj.client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
        rids.append(sent.envelope.subject)

    async def ready(client: httpx.AsyncClient) -> dict[str, Any] | None:
        response = await client.get("/health/ready")
        body: dict[str, Any] = response.json()
        return body if response.status_code == 200 else None

    async def listed(client: httpx.AsyncClient) -> list[str] | None:
        ids = [r["referral_id"] for r in (await client.get("/api/referrals")).json()]
        return ids if set(rids) <= set(ids) else None

    async with dashboard_stack(bus, tmp_path) as stack, httpx.AsyncClient(base_url=stack.url) as client:
        await eventually(lambda: ready(client), 15.0, "the dashboard to be ready")
        for _ in range(3):
            await lead()
        await eventually(lambda: listed(client), 15.0, "the dashboard to list the first leads")

    # The dashboard is down; more traffic; `status` catches up into its own store.
    for _ in range(4):
        await lead()
    for rid in rids:
        await bus.state("BJ", rid, "received")
    other = tmp_path / "other.db"
    doc = await status_json(bus, other)
    assert sorted(r["referral_id"] for r in doc["referrals"]) == sorted(rids)
    assert doc["summary"]["anomalies"] == 0

    # The dashboard, restarted, sees every event; `status` runs again while it runs.
    async with dashboard_stack(bus, tmp_path) as stack, httpx.AsyncClient(base_url=stack.url) as client:
        for _ in range(4):
            await lead()
        during = asyncio.create_task(status_json(bus, other))
        for rid in rids:
            await bus.state("BJ", rid, "received")
        await during
        last = await stream_last_seq(bus)

        async def caught_up() -> dict[str, Any] | None:
            body = await ready(client)
            return body if body is not None and body.get("last_seq") == last else None

        body = await eventually(caught_up, 15.0, "the dashboard to fold the whole stream")
        assert body["lag"] == 0 and body["stream_last_seq"] == last, body
        ids = await eventually(lambda: listed(client), 15.0, "the dashboard to list every lead")
        assert sorted(ids) == sorted(rids)
        summary = (await client.get("/api/summary")).json()
        assert summary["anomalies"] == 0 and summary["by_family_state"]["lead"] == {"received": len(rids)}
        doc = await status_json(bus, other)
        assert sorted(r["referral_id"] for r in doc["referrals"]) == sorted(rids)
        assert doc["summary"]["anomalies"] == 0 and doc["summary"]["last_seq"] == last


def position(store: Path) -> int:
    """The last stream sequence folded into ``store`` (read beside the process writing it)."""
    if not store.exists():
        return 0
    with sqlite3.connect(store, timeout=5.0) as db:
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
        except sqlite3.OperationalError:  # the tables are not created yet
            return 0
    return 0 if row is None else int(row[0])


@pytest.mark.slow
async def test_status_killed_mid_catch_up_resumes_without_skip_or_double_fold(
    nats_server: EmbeddedServer, tmp_path: Path
) -> None:
    settings = RuntimeSettings()
    signers = {p: Signer.generate(p) for p in ("BJ", "TJ")}
    keys = tmp_path / "keys"
    keys.mkdir()
    bench_roster(signers).save(keys / ROSTER_FILE)
    nc = await nats.connect(nats_server.url)
    try:
        await ensure_topology(nc.jetstream(), settings)
        js = nc.jetstream()
        pending = []
        for subject, body in synthetic_events(6000, signers):
            pending.append(js.publish(subject, body, stream=settings.stream))
            if len(pending) >= 256:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
        last = int((await js.stream_info(settings.stream)).state.last_seq)
    finally:
        await nc.close()

    status = ["status", "--nats-url", nats_server.url, "--keys-dir", str(keys), "--json", "--store"]
    store = tmp_path / "killed.db"
    kills = []
    for _ in range(3):  # SIGKILL at three different positions of one catch-up
        before = position(store)
        proc = await asyncio.create_subprocess_exec(
            str(XREGION_BIN), *status, str(store), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )

        async def moved(before: int = before) -> int | None:
            now = position(store)
            return now if now > before else None

        await eventually(moved, 60.0, "the catch-up to fold a batch")
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        kills.append(position(store))
    assert kills == sorted(kills) and kills[-1] < last, kills  # killed mid catch-up, each time further

    code, out, err = await run_cli(*status, str(store), timeout=120.0)
    assert code == 0, err
    resumed = json.loads(out)
    assert resumed["summary"]["last_seq"] == last and resumed["summary"]["anomalies"] == 0
    assert resumed["summary"]["total"] == 6000 // 4

    whole = tmp_path / "whole.db"
    assert (await run_cli(*status, str(whole), timeout=120.0))[0] == 0
    rebuilt = tmp_path / "rebuilt.db"
    code, _, err = await run_cli(
        "coordinator",
        "rebuild",
        "--nats-url",
        nats_server.url,
        "--store",
        str(rebuilt),
        "--keys-dir",
        str(keys),
        timeout=120.0,
    )
    assert code == 0, err
    with Projection(store) as a, Projection(whole) as b, Projection(rebuilt) as c:
        assert a.last_seq() == last
        assert a.dump() == b.dump() == c.dump()
        assert len(a.dump()["timeline"]) == last  # every message folded exactly once


class Crash(Exception):
    """Not an XRegionError: the fold stops, as a process dying inside the transaction."""


async def test_a_crash_inside_the_fold_transaction_neither_skips_nor_folds_twice(bus: Bus, tmp_path: Path) -> None:
    bj, _tj = await bus.start("BJ", "TJ")
    rids = [
        (await bj.client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])).envelope.subject
        for _ in range(5)
    ]
    for rid in rids:
        await bus.state("BJ", rid, "received")
    crash_at = [7]

    def verify(wire: dict[str, Any], envelope: Any, stored_at: Any) -> None:
        if crash_at and wire["id"] == seen_ids[crash_at[0] - 1]:
            raise Crash

    nc = await bus.raw()
    try:
        async with StreamReader(nc, bus.settings.stream, batch=4) as reader:
            seen_ids = [json.loads(m.data)["id"] async for m in reader.read(1)]
            with Projection(tmp_path / "crashed.db", verify=verify) as crashed:
                feed = ProjectionFeed(crashed, reader)
                with pytest.raises(Crash):
                    await feed.catch_up()
                assert crashed.last_seq() == 4  # the batch 5..8 was rolled back whole
                crash_at.clear()  # "restarted"
                await ProjectionFeed(crashed, reader).catch_up()
                with Projection(tmp_path / "whole.db") as whole:
                    await ProjectionFeed(whole, reader).catch_up()
                    assert crashed.dump() == whole.dump()
                    assert crashed.last_seq() == len(seen_ids) == len(crashed.dump()["timeline"])
    finally:
        await nc.close()


@pytest.mark.slow
async def test_an_idle_coordinator_logs_nothing(bus: Bus, tmp_path: Path) -> None:
    """Idle, the old coordinator logged ``fetch failed IndexError`` every 30-60 s (issue 14 item 7)."""
    use_keys_dir(bus, tmp_path)
    bj, _tj = await bus.start("BJ", "TJ")
    async with dashboard_stack(bus, tmp_path) as stack:
        with capture_logs() as logs:
            await asyncio.sleep(65.0)  # idle: nothing to wait for but time
            sent = await bj.client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])

            async def folded() -> bool:
                return stack.coordinator.projection.referral(sent.envelope.subject) is not None

            await eventually(folded, 10.0, "the coordinator to fold the lead after idling")
        noisy = [e for e in logs if e.get("log_level") in ("warning", "error", "critical")]
        assert noisy == []
