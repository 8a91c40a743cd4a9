"""Issue 18 in a real browser: the dashboard's assessment, anomalies explained, dead letters and
security alerts per region, layout at 1280×800 and on projector-sized screens, and the HTML
reports rendered with the network blocked.

A real nats-server and the coordinator with its dashboard (uvicorn in-process). The fixed
scenario of ``tests/assessment_scenario.py`` (without its two prepared escalations) is
published on the bus as the regions' relays would: a late answer (R2: HE accepted TJ's lead
two working days after its signed date), a tolled lead (R3: TJ's clock stopped while it
waited for BJ's information, restarted with BJ's signed new date), and one anomaly (TJ
accepts R1 again after concluding it). The coordinator then escalates what is overdue today
(its own signed notices), TJ raises a security alert and HE dead-letters a message (the
adapters' own publishing code). The figures the page shows are checked against values
computed here from the scenario's dates with ``chinese_calendar`` alone.

Screenshots and the printed PDF are kept as artifacts in ``tests/artifacts/``:
``assessment-dashboard-1280x800.png``, ``-1920x1080.png``, ``-1024x768.png``,
``assessment-report-offline.png``, ``assessment-report.pdf``, ``audit-report-offline.png``.
Playwright launches Debian's ``/usr/bin/chromium`` (never a downloaded browser); without it
the test is skipped, saying so.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import chinese_calendar
import pytest

from tests.assessment_scenario import PARTIES, build, publish
from tests.bus import Bus, eventually
from tests.dashboard_stack import dashboard_stack
from tests.support import dev_roster, dev_signers, write_keys_dir
from tests.unit.test_audit_report import replayed
from xregion.auditor.report import report_html
from xregion.coordinator.calendar import beijing_today
from xregion.runtime.alerts import SecurityAlerts
from xregion.runtime.deadletter import publish_dead_letter

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
START = date(2026, 9, 14)

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason=f"{CHROMIUM} not found: apt-get install chromium (Debian's package)"
    ),
]
playwright_api = pytest.importorskip("playwright.async_api", reason="playwright not installed: pip install -e '.[dev]'")


# --- the scenario's facts, and the figures worked out from them without xregion ---------------


def d(month: int, day: int) -> date:
    return date(2026, month, day)


@dataclass(frozen=True)
class Fact:
    """One addressee's part of a referral: opened, signed due date, the day it answered
    (ended its wait), the day it accepted (lead, assist) or decided (recognition)."""

    region: str
    opened: date
    due: date
    answered: date | None = None
    accepted: date | None = None
    withdrawn: bool = False
    tolled: bool = False


FACTS = [
    Fact("TJ", d(9, 14), d(9, 28), answered=d(9, 16), accepted=d(9, 16)),  # R1
    Fact("HE", d(9, 22), d(10, 13), answered=d(10, 15), accepted=d(10, 15)),  # R2, late
    Fact("TJ", d(9, 21), d(10, 23), answered=d(10, 22), accepted=d(10, 22), tolled=True),  # R3 (due moved from 12 Oct)
    Fact("BJ", d(9, 28), d(10, 23), answered=d(11, 3), accepted=d(9, 29)),  # R4, completed late
    Fact("BJ", d(10, 8), d(11, 4), answered=d(10, 9), accepted=d(10, 9)),  # R5 recognised
    Fact("HE", d(10, 8), d(11, 4), answered=d(10, 12), accepted=d(10, 12)),  # R5 contested
    Fact("TJ", d(10, 9), d(10, 13), answered=d(10, 9)),  # R6 acknowledged
    Fact("HE", d(10, 9), d(10, 13), answered=d(10, 10)),  # R6 acknowledged on an adjusted Saturday
    Fact("BJ", d(10, 27), d(10, 30), answered=d(10, 27)),  # R7 acknowledged
    Fact("TJ", d(10, 27), d(10, 30)),  # R7 never acknowledged
    Fact("TJ", d(10, 19), d(11, 2), withdrawn=True),  # R8
    Fact("HE", d(11, 2), d(11, 16)),  # R9 received, never answered
]


def working_days_between(start: date, end: date) -> int:
    """Working days in (start, end], straight from the official table."""
    return sum(1 for n in range(1, (end - start).days + 1) if chinese_calendar.is_workday(start + timedelta(days=n)))


def expected(region: str, today: date) -> dict[str, str]:
    """What the dashboard's row of ``region`` must show, computed from the facts."""
    mine = [f for f in FACTS if f.region == region]
    on_time = sum(1 for f in mine if f.answered and f.answered <= f.due)
    late = sum(1 for f in mine if f.answered and f.answered > f.due)
    overdue = [f for f in mine if not f.answered and not f.withdrawn and today > f.due]
    accepted = [working_days_between(f.opened, f.accepted) for f in mine if f.accepted]
    nearest_rank_90 = sorted(accepted)[-(-len(accepted) * 9 // 10) - 1] if accepted else None
    # The coordinator's notices today: "overdue" from the day after the due date, "overdue+5"
    # once 5 working days have passed.
    notices = sum(1 + (working_days_between(f.due, today) >= 5) for f in overdue)
    median = statistics.median(accepted) if accepted else None

    def fmt(x: float | None) -> str:
        return "—" if x is None else f"{x:g}"

    judged = on_time + late + len(overdue)
    return {
        "referrals": str(len(mine)),
        "on_time": str(on_time),
        "late": str(late),
        "overdue": str(len(overdue)),
        "withdrawn": str(sum(f.withdrawn for f in mine)),
        "on_time_rate": f"{on_time / judged * 100:.1f}%",
        "acceptance": f"{fmt(median)} / {fmt(nearest_rank_90)}",
        "escalations": f"0 / {notices}",
        "tolled": str(sum(f.tolled for f in mine)),
    }


# --- the stack ----------------------------------------------------------------------------------


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield launched
        finally:
            await launched.close()


async def no_horizontal_overflow(page: Any) -> None:
    """Nothing sticks out of the window: the page does not scroll sideways, and every table is
    inside a box that scrolls sideways within the window (none is cut off without a scrollbar)."""
    width = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert width <= 0, f"the page is {width}px wider than the window"
    cut = await page.evaluate(
        """() => [...document.querySelectorAll('main table')].filter((t) => {
             const box = t.closest('.scroll');
             if (!box || getComputedStyle(box).overflowX !== 'auto') return true;
             return box.getBoundingClientRect().right > window.innerWidth + 1;
           }).map((t) => t.id)"""
    )
    assert cut == [], f"tables cut off without a scrollbar: {cut}"


async def offline(browser: Any, html: str, path: Path, screenshot: Path, pdf: Path | None = None) -> int:
    """Open ``html`` from a file with the network blocked; the requests it tried besides itself."""
    path.write_text(html, encoding="utf-8")
    context = await browser.new_context(offline=True, viewport={"width": 1280, "height": 800}, locale="zh-CN")
    tried: list[str] = []

    async def block(route: Any) -> None:
        if route.request.url == path.as_uri():
            await route.continue_()
        else:
            tried.append(route.request.url)
            await route.abort()

    await context.route("**/*", block)
    page = await context.new_page()
    await page.goto(path.as_uri())
    charts = page.locator("svg.chart")
    count = await charts.count()
    for i in range(count):
        box = await charts.nth(i).bounding_box()
        assert box is not None and box["width"] > 200 and box["height"] > 100
    await page.screenshot(path=str(screenshot), full_page=True)
    if pdf is not None:
        await page.pdf(path=str(pdf), format="A4", landscape=True, print_background=True)
    await context.close()
    assert tried == [], f"the report tried to load {tried}"
    return count


async def test_assessment_anomalies_and_incidents_in_the_dashboard(bus: Bus, tmp_path: Path, browser: Any) -> None:
    expect = playwright_api.expect
    signers = dev_signers(PARTIES)
    bus.keys_dir = write_keys_dir(tmp_path / "keys", signers, dev_roster(signers))
    scenario = build(escalations=False)
    today = beijing_today()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    async with dashboard_stack(bus, tmp_path, escalate_every_s=0.0) as stack:
        coordinator = stack.coordinator
        nc = await bus.raw()
        try:
            js = nc.jetstream()
            last = await publish(js, bus.settings.stream, scenario)
            await eventually(lambda: _at(coordinator, last), 15.0, "the coordinator to fold the scenario")
            sent = await coordinator.escalate()  # R7 (TJ) and R9 (HE): overdue, overdue+5
            assert len(sent) == 4
            await coordinator.wait_published()
            await eventually(lambda: _escalations_folded(coordinator, 4), 15.0, "the escalations to be folded")
            # HE's adapter dead-letters a message; TJ's raises a (signed) security alert.
            await publish_dead_letter(
                js,
                region="HE",
                reason={"code": "schema_invalid", "message": "data.suspects[0].uscc: check character"},
                body=b'{"not": "shown"}',
                original_subject="xregion.v1.lead.submitted.TJ.HE",
                stream_seq=None,
                event_id="0190c7a0-3c1e-7b2a-9f00-5e4d3c2b1a99",
                dlq_stream=bus.settings.dead_letter_stream,
            )
            alerts = SecurityAlerts(js, "TJ", lambda: signers["TJ"], stream=bus.settings.dead_letter_stream)
            alerts.raise_alert(
                {"code": "bad_signature", "message": "signature does not verify"},
                body=b"{}",
                original_subject="xregion.v1.lead.submitted.BJ.TJ",
                stream_seq=3,
                event_id="0190c7a0-3c1e-7b2a-9f00-5e4d3c2b1a98",
            )
            await alerts.close()
        finally:
            await nc.close()

        page = await browser.new_page(viewport={"width": 1280, "height": 800}, locale="zh-CN")
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(f"{stack.url}/?from={START.isoformat()}&to={today.isoformat()}")
        await expect(page.locator("#live")).to_have_text("实时", timeout=15_000)

        # The header says what the anomaly count is, and leads to the list.
        link = page.locator("#anomalies-link")
        await expect(link).to_contain_text("异常事件 1 项", timeout=15_000)
        assert await link.get_attribute("href") == "#anomalies-section"
        await expect(page.locator("#dead-letter-count")).to_have_text("1", timeout=15_000)
        await expect(page.locator("#alert-count")).to_have_text("1")

        # The assessment figures, against the ones worked out above.
        for region in ("BJ", "TJ", "HE"):
            row = page.locator(f'#as-regions tr[data-region="{region}"]')
            for field, value in expected(region, today).items():
                await expect(row.locator(f'td[data-field="{field}"]')).to_have_text(value, timeout=15_000)
        for name in ("volume", "on_time", "response", "overdue"):
            chart = page.locator(f"#chart-{name}")
            await expect(chart).to_have_attribute("src", re.compile(rf"/api/assessment/charts/{name}\.svg\?"))
            await page.wait_for_function(
                "id => { const i = document.getElementById(id); return i.complete && i.naturalWidth > 0; }",
                arg=f"chart-{name}",
                timeout=15_000,
            )

        # The anomaly, explained, with a link to its referral's timeline.
        anomaly = page.locator('#anomaly-list tr[data-code="illegal_transition"]')
        await expect(anomaly).to_contain_text("不合流程的办理事件")
        await expect(anomaly).to_contain_text("该事件在转办当前状态下不允许")
        await expect(anomaly).to_contain_text("lead.accepted")
        await link.click()
        await anomaly.locator("a.timeline-link").click()
        await expect(page.locator("#timeline-section")).to_be_visible()
        await expect(page.locator("#timeline-id")).to_have_text(scenario.ids["R1"])
        await expect(page.locator("#timeline")).to_contain_text("illegal_transition 不合流程的办理事件")

        # Dead letters and security alerts per region, explained; the alert's signature checked.
        await expect(page.locator('#incidents-summary tr[data-region="HE"]')).to_contain_text("格式不符合规范 × 1")
        await expect(page.locator('#incidents-summary tr[data-region="TJ"]')).to_contain_text("签名无效 × 1")
        await expect(page.locator('#incidents-recent tr[data-kind="security_alert"]')).to_contain_text("✓ 已验证")

        await no_horizontal_overflow(page)
        await page.locator("h1#title").scroll_into_view_if_needed()
        await page.screenshot(path=str(ARTIFACTS / "assessment-dashboard-1280x800.png"), full_page=True)

        for width, height in ((1920, 1080), (1024, 768)):  # a projector, large or old
            await page.set_viewport_size({"width": width, "height": height})
            await no_horizontal_overflow(page)
            await page.screenshot(path=str(ARTIFACTS / f"assessment-dashboard-{width}x{height}.png"), full_page=True)
        assert not errors, errors

        query = f"from={START.isoformat()}&to={today.isoformat()}"
        report = await page.request.get(f"{stack.url}/api/assessment/report.html?{query}")
        html = await report.text()

    assert "考核评估报告" in html
    charts = await offline(
        browser,
        html,
        tmp_path / "assessment.html",
        ARTIFACTS / "assessment-report-offline.png",
        pdf=ARTIFACTS / "assessment-report.pdf",
    )
    assert charts == 6
    assert (ARTIFACTS / "assessment-report.pdf").read_bytes().startswith(b"%PDF")
    audit = report_html(replayed(), "archive-2026")
    assert await offline(browser, audit, tmp_path / "audit.html", ARTIFACTS / "audit-report-offline.png") == 2


async def _at(coordinator: Any, seq: int) -> bool:
    return bool(coordinator.projection.last_seq() >= seq)


async def _escalations_folded(coordinator: Any, n: int) -> bool:
    row = coordinator.projection.db.execute("SELECT count(*) FROM escalations WHERE stream_seq IS NOT NULL").fetchone()
    return bool(row[0] >= n)
