"""The dashboard in a real browser: Debian's chromium, headless, driven by Playwright.

Real nats-server, adapters BJ and TJ, the coordinator and the dashboard (uvicorn on a free
port, in-process). The page is opened once; a lead BJ→TJ submitted afterwards must appear
in it live (server-sent events), without a reload. A screenshot is kept as a test artifact
in ``tests/artifacts/dashboard.png``.

Playwright never downloads a browser here: it launches ``/usr/bin/chromium``
(``apt-get install chromium``); without it the test is skipped, saying so.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.bus import Bus
from tests.dashboard_stack import dashboard_stack, use_keys_dir
from xregion.examples import PAYLOADS

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
SCREENSHOT = ARTIFACTS / "dashboard.png"
TITLE = "京津冀知识产权执法协作 · 协调看板"

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason=f"{CHROMIUM} not found: apt-get install chromium (Debian's package)"
    ),
]
playwright_api = pytest.importorskip("playwright.async_api", reason="playwright not installed: pip install -e '.[dev]'")


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield launched
        finally:
            await launched.close()


async def test_referral_appears_live_in_the_dashboard(bus: Bus, tmp_path: Path, browser: Any) -> None:
    expect = playwright_api.expect
    use_keys_dir(bus, tmp_path)
    bj, _tj = await bus.start("BJ", "TJ")
    async with dashboard_stack(bus, tmp_path) as stack:
        page = await browser.new_page(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(stack.url + "/")
        await expect(page).to_have_title(TITLE)
        await expect(page.locator("h1#title")).to_have_text(TITLE)
        await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
        await expect(page.locator("#live")).to_have_text("实时", timeout=15_000)  # the SSE stream is open
        await expect(page.locator("#referrals tbody")).to_contain_text("暂无转办")
        # Survives only if the page is never reloaded.
        await page.evaluate("window.__opened_once = true")

        sent = await bj.client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
        rid = sent.envelope.subject

        row = page.locator(f'#referrals tr[data-id="{rid}"]')
        await expect(row).to_be_visible(timeout=15_000)
        await expect(row).to_contain_text("线索移送")
        await expect(row).to_contain_text("BJ → TJ")
        assert await page.evaluate("window.__opened_once === true"), "the page was reloaded"
        await expect(page.locator('#flows td[data-pair="BJ>TJ"]')).to_have_text("1", timeout=15_000)
        await expect(page.locator("#flows")).to_contain_text("北京市 BJ")

        # The automatic receipt arrives live too; the timeline opens on a click.
        await expect(row).to_contain_text("已接收", timeout=15_000)
        await row.click()
        await expect(page.locator("#timeline-section")).to_be_visible()
        await expect(page.locator("#timeline-id")).to_have_text(rid)
        await expect(page.locator("#timeline tbody tr")).to_have_count(2, timeout=15_000)
        await expect(page.locator("#timeline")).to_contain_text("lead.received")

        # Blacklist propagation: TJ acknowledges BJ's update (live), HE (not running) is pending.
        share = await bj.client.open("share.blacklist_upserted", to="ALL", data=PAYLOADS["share.blacklist_upserted"])
        propagation = page.locator(f'#blacklist tr[data-id="{share.envelope.subject}"]')
        await expect(propagation.locator('td[data-region="TJ"]')).to_contain_text("已确认", timeout=15_000)
        await expect(propagation.locator('td[data-region="HE"]')).to_contain_text("待确认")
        await page.locator("h1#title").scroll_into_view_if_needed()

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.unlink(missing_ok=True)
        await page.screenshot(path=str(SCREENSHOT), full_page=True)
        assert not errors, errors
    assert SCREENSHOT.is_file() and SCREENSHOT.stat().st_size > 0
    assert shutil.which("chromium") or CHROMIUM.exists()
