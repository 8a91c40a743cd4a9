"""The dashboard over HTTP (httpx against uvicorn in-process): health, JSON, SSE, metrics —
with real adapters and the coordinator on a real nats-server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.bus import Bus, eventually
from tests.dashboard_stack import dashboard_stack, use_keys_dir
from xregion.examples import PAYLOADS

pytestmark = pytest.mark.anyio


async def sse_ids(client: httpx.AsyncClient, url: str, seen: list[str], connected: asyncio.Event) -> None:
    """Collect the referral ids the ``/events`` stream announces."""
    async with client.stream("GET", url, timeout=httpx.Timeout(5.0, read=None)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event = None
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
                if event == "hello":
                    connected.set()
            elif line.startswith("data: ") and event == "referral":
                seen.append(json.loads(line.removeprefix("data: "))["id"])


async def test_dashboard_api_health_sse_and_metrics(bus: Bus, tmp_path: Path) -> None:
    use_keys_dir(bus, tmp_path)
    bj, _tj = await bus.start("BJ", "TJ")
    async with dashboard_stack(bus, tmp_path) as stack, httpx.AsyncClient(base_url=stack.url) as client:
        assert (await client.get("/health/live")).status_code == 200

        async def ready() -> dict[str, Any] | None:
            response = await client.get("/health/ready")
            return response.json() if response.status_code == 200 else None

        body = await eventually(ready, 15.0, "/health/ready to answer 200")
        assert body["status"] == "ready" and body["nats_connected"] is True and body["caught_up"] is True

        page = await client.get("/")
        assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
        assert '<html lang="zh-CN">' in page.text and "京津冀知识产权执法协作" in page.text
        assert (await client.get("/static/app.js")).status_code == 200
        regions = (await client.get("/api/regions")).json()
        assert {r["code"]: r["name_zh"] for r in regions} == {"BJ": "北京市", "TJ": "天津市", "HE": "河北省"}

        seen: list[str] = []
        connected = asyncio.Event()
        listener = asyncio.create_task(sse_ids(client, "/events", seen, connected))
        try:
            async with asyncio.timeout(10):
                await connected.wait()
            lead = await bj.client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
            rid = lead.envelope.subject

            async def announced() -> bool:
                return rid in seen

            await eventually(announced, 15.0, f"/events to announce {rid}")
            share = await bj.client.open(
                "share.blacklist_upserted", to="ALL", data=PAYLOADS["share.blacklist_upserted"]
            )
            sid = share.envelope.subject
            await bus.state("BJ", rid, "received")

            async def timeline() -> dict[str, Any] | None:
                view = (await client.get(f"/api/referrals/{rid}")).json()
                types = [e["event_type"] for e in view.get("timeline", [])]
                return view if types == ["lead.submitted", "lead.received"] else None

            view = await eventually(timeline, 15.0, "the timeline to show the receipt")
            assert view["family"] == "lead" and view["origin"] == "BJ" and view["addressee"] == "TJ"
            assert view["state"] == "received"
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

        referrals = (await client.get("/api/referrals", params={"region": "TJ", "family": "lead"})).json()
        assert [r["referral_id"] for r in referrals] == [rid]
        summary = (await client.get("/api/summary")).json()
        assert {"origin": "BJ", "addressee": "TJ", "family": "lead", "state": "received", "count": 1} in summary[
            "flows"
        ]
        assert summary["by_family_state"]["lead"]["received"] == 1
        assert isinstance((await client.get("/api/overdue")).json(), list)
        missing = await client.get("/api/referrals/BJ-nope")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"

        async def propagated() -> dict[str, Any] | None:
            rows = (await client.get("/api/blacklist")).json()
            row = next((r for r in rows if r["referral_id"] == sid), None)
            return row if row is not None and "TJ" in row["acknowledged"] else None

        row = await eventually(propagated, 15.0, "TJ's acknowledgement of the blacklist update")
        assert row["origin"] == "BJ" and row["pending"] == ["HE"]
        assert (await client.get("/api/summary")).json()["total"] == 2

        # A malformed message addressed to TJ becomes a dead letter the metrics count.
        nc = await bus.raw()
        try:
            await nc.jetstream().publish("xregion.v1.lead.submitted.BJ.TJ", b"{not json", stream=bus.settings.stream)
        finally:
            await nc.close()

        async def scraped() -> str | None:
            response = await client.get("/metrics")
            assert response.status_code == 200
            text = response.text
            return text if 'xregion_dead_letters_total{code="malformed_json",region="TJ"}' in text else None

        text = await eventually(scraped, 15.0, "the dead letter to be counted in /metrics")
        for name in (
            'xregion_events_total{subject="xregion.v1.lead.submitted.BJ.TJ"}',
            'xregion_handler_seconds_count{region="TJ"}',
            'xregion_outbox_depth{region="BJ"}',
            "xregion_projection_lag ",
            'xregion_consumer_lag{consumer="region-TJ"}',
        ):
            assert name in text, name
