"""Read models own their position (ARCHITECTURE §7, issue 14 item 1).

The dashboard's coordinator and ``xregion status --nats-url --store other.db`` each keep
their own projection of the same stream: neither takes events from the other, both list
every referral with no anomaly, and ``/health/ready`` reports the real lag.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.bus import Bus, eventually
from tests.dashboard_stack import dashboard_stack, use_keys_dir
from xregion.examples import PAYLOADS

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
