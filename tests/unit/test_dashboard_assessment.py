"""The dashboard's assessment, anomaly and report endpoints over the fixed scenario's projection
(the ASGI application itself, through httpx; the browser test drives the page)."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.assessment_scenario import PERIOD, Scenario, build
from tests.unit.test_assessment import TODAY, comparable, external_references, projection
from xregion.config import load_config
from xregion.coordinator.assessment import Period, assess
from xregion.dashboard.app import Dashboard

pytestmark = pytest.mark.anyio
QUERY = {"from": PERIOD[0].isoformat(), "to": PERIOD[1].isoformat()}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Any, Scenario]]:
    scenario = build()
    with projection(tmp_path / "coord.db") as p:
        p.apply_many(scenario.messages)
        dashboard = Dashboard(p, load_config().regions, today=lambda: TODAY)
        transport = httpx.ASGITransport(app=dashboard.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dashboard") as c:
            yield c, p, scenario


async def test_the_assessment_is_the_projections(client: Any) -> None:
    c, p, _ = client
    response = await c.get("/api/assessment", params=QUERY)
    assert response.status_code == 200
    assert comparable(response.json()) == comparable(assess(p, Period(*PERIOD), today=TODAY).to_json())
    one = (await c.get("/api/assessment", params={**QUERY, "region": "TJ", "by": "month"})).json()
    assert list(one["per_region"]) == ["TJ"] and one["period"]["bucket"] == "month"
    default = (await c.get("/api/assessment")).json()  # the last 12 weeks up to today
    assert default["period"] == {"from": "2026-09-13", "to": TODAY.isoformat(), "bucket": "week"}
    assert (await c.get("/api/today")).json() == {"today": TODAY.isoformat()}


@pytest.mark.parametrize("query", [{"from": "2026-10-31", "to": "2026-09-01"}, {"to": "31.10.2026"}, {"region": "XX"}])
async def test_a_bad_query_is_a_400(client: Any, query: dict[str, str]) -> None:
    c, _, _ = client
    response = await c.get("/api/assessment", params=query)
    assert response.status_code == 400 and response.json()["error"] == "bad_request"


@pytest.mark.parametrize("name", ["volume", "on_time", "response", "overdue"])
async def test_charts_are_svg(client: Any, name: str) -> None:
    c, _, _ = client
    response = await c.get(f"/api/assessment/charts/{name}.svg", params=QUERY)
    assert response.status_code == 200 and response.headers["content-type"].startswith("image/svg+xml")
    assert response.text.startswith("<svg") and "<title" in response.text
    assert external_references(response.text) == []
    assert (await c.get("/api/assessment/charts/pie.svg")).status_code == 404


async def test_the_on_time_chart_names_each_regions_rate(client: Any) -> None:
    c, _, _ = client
    svg = (await c.get("/api/assessment/charts/on_time.svg", params=QUERY)).text
    assert "天津市 TJ: 75% 3/4" in svg and "河北省 HE: 67% 2/3" in svg


async def test_anomalies_are_explained_with_their_event(client: Any) -> None:
    c, _, scenario = client
    [anomaly] = (await c.get("/api/anomalies")).json()
    assert anomaly["code"] == "illegal_transition" and anomaly["event_id"] == scenario.anomaly_event
    assert anomaly["referral_id"] == scenario.ids["R1"] and anomaly["referral_known"] is True
    assert anomaly["explanation"]["title"] == "不合流程的办理事件" and anomaly["explanation"]["kind"] == "process"
    assert anomaly["event"]["event_type"] == "lead.accepted" and anomaly["event"]["sender"] == "TJ"
    explanations = (await c.get("/api/explanations")).json()
    assert explanations["chain_fork"]["kind_zh"] == "安全"


async def test_incidents_without_a_bus_say_so(client: Any) -> None:
    c, _, _ = client
    doc = (await c.get("/api/incidents")).json()
    assert doc["available"] is False and doc["error"] == "not_configured"


async def test_the_report_and_the_csv(client: Any) -> None:
    c, _, _ = client
    html = await c.get("/api/assessment/report.html", params=QUERY)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "考核评估报告" in html.text and external_references(html.text) == []
    response = await c.get("/api/assessment/report.csv", params=QUERY)
    assert response.content.startswith(b"\xef\xbb\xbf")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"), newline="")))
    assert any(r[2] == "河北省 HE" and r[3] == "全部业务 all" and r[7] == "1" for r in rows)  # HE's late answer


async def test_the_page_links_the_anomalies_and_has_no_cut_off_tables(client: Any) -> None:
    c, _, _ = client
    page = (await c.get("/")).text
    assert 'href="#anomalies-section"' in page and 'id="anomaly-count"' in page
    assert page.count('<div class="scroll"') >= page.count("<table") - 1  # every table scrolls in its own box
    style = (await c.get("/static/style.css")).text
    assert "min-width: 0" in style and "overflow-x: auto" in style
