"""One deadline per referral (issue 15, item 9), end to end on a real nats-server.

A lead BJ → TJ: BJ's regional system submits it over BJ's HTTP gateway; TJ's system takes
it by webhook (TJ's gateway) and in its SQL bridge inbox, asks for information over TJ's
gateway, and BJ supplies it over BJ's gateway. The coordinator with its dashboard runs
beside them; ``xregion status --json`` (its own store) and ``xregion audit replay --json``
run as subprocesses. After each step the one answer-by date must be the same in the signed
event on the stream, the sender's gateway answer, the addressee's webhook and bridge row,
``status --json``, the dashboard API and the auditor's deadline check.

The senders' adapters run on a test clock in 2026 (the last year chinese-calendar 1.11
knows), so that the dates cross the National Day holiday (1-7 October) and the adjusted
working day Saturday 10 October. Expected dates are worked out by hand:

* submitted Mon 28 Sep, 10 working days: 29, 30 Sep, 8, 9, 10 (Sat), 12, 13, 14, 15,
  16 Oct → **Fri 16 Oct** (10 calendar days would give 8 Oct; Mon-Fri, 12 Oct);
* TJ asks for information on Tue 29 Sep (a day that still counts against TJ): BJ owes it
  10 working days later: 30 Sep, 8, 9, 10, 12, 13, 14, 15, 16, 19 Oct → **Mon 19 Oct**;
* BJ supplies it on Mon 12 Oct: TJ had 9 working days left after 29 Sep (30 Sep, 8, 9, 10,
  12, 13, 14, 15, 16 Oct), counted again from 12 Oct: 13, 14, 15, 16, 19, 20, 21, 22, 23 Oct
  → **Fri 23 Oct**; the pause covered 5 working days (30 Sep, 8, 9, 10, 12 Oct).

The events reach the stream today (December 2026), after those dates: the auditor judges
every answer late and every open request overdue, and names the date in its evidence.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.bus import Bus, eventually
from tests.dashboard_stack import dashboard_stack, use_keys_dir
from tests.integration.helpers import stream_events
from tests.integration.webhook_receiver import Receiver
from xregion.bridge import SqlBridge
from xregion.deadlines import WorkingCalendar
from xregion.examples import PAYLOADS
from xregion.gateway.server import Gateway
from xregion.keys import ROSTER_FILE

pytestmark = pytest.mark.anyio

XREGION_BIN = Path(sys.executable).parent / "xregion"
SECRET = "webhook-secret"
TOKEN = {"BJ": "bj-token", "TJ": "tj-token"}

SUBMITTED = date(2026, 9, 28)  # Monday
REQUESTED = date(2026, 9, 29)  # Tuesday
SUPPLIED = date(2026, 10, 12)  # Monday, after the holiday and the adjusted Saturday
ANSWER_BY = date(2026, 10, 16)  # TJ's date to answer the lead
INFO_BY = date(2026, 10, 19)  # BJ's date to supply the information
TOLLED_BY = date(2026, 10, 23)  # TJ's date after the information came
PAUSED_DAYS = 5


def beijing(day: date, hour: int = 10) -> datetime:
    """``hour`` o'clock Beijing time (UTC+8) on ``day``, in UTC."""
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC) - timedelta(hours=8)


@dataclass
class Clock:
    """The senders' clock: an adapter stamps every event it sends (receipts too) with it."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Site:
    bus: Bus
    root: Path
    dashboard: httpx.AsyncClient
    http: dict[str, httpx.AsyncClient]
    receivers: dict[str, Receiver]
    case_db: Path
    stopping: list[Any] = field(default_factory=list)

    async def post(self, region: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """Submit over ``region``'s gateway; the gateway's answer."""
        response = await self.http[region].post(path, json=body)
        assert response.status_code == 201, response.text
        answer: dict[str, Any] = response.json()
        return answer

    async def signed(self, event_id: str) -> dict[str, Any]:
        """The event as the stream holds it (signed)."""

        async def stored() -> dict[str, Any] | None:
            nc = await self.bus.raw()
            try:
                events = await stream_events(nc.jetstream(), self.bus.settings.stream)
            finally:
                await nc.close()
            return next((body for _, _, body in events if body["id"] == event_id), None)

        return await eventually(stored, 15, f"event {event_id} on the stream")

    async def webhook(self, region: str, event_id: str) -> dict[str, Any]:
        """The body ``region``'s regional system got by webhook for ``event_id``."""

        async def arrived() -> dict[str, Any] | None:
            return next((e for e in self.receivers[region].events if e["event_id"] == event_id), None)

        return await eventually(arrived, 15, f"{region}'s webhook for {event_id}")

    async def bridge_row(self, event_id: str) -> dict[str, Any]:
        """TJ's ``xregion_inbox`` row of ``event_id`` (TJ's case database, read as its system would)."""

        async def row() -> dict[str, Any] | None:
            with sqlite3.connect(self.case_db) as db:
                db.row_factory = sqlite3.Row
                found = db.execute("SELECT * FROM xregion_inbox WHERE event_id = ?", (event_id,)).fetchone()
            return None if found is None else dict(found)

        return await eventually(row, 15, f"TJ's bridge inbox row for {event_id}")

    async def dashboard_view(self, rid: str, event_id: str) -> dict[str, Any]:
        """``/api/referrals/{rid}`` once the dashboard's coordinator folded ``event_id``."""

        async def folded() -> dict[str, Any] | None:
            response = await self.dashboard.get(f"/api/referrals/{rid}")
            if response.status_code != 200:
                return None
            view: dict[str, Any] = response.json()
            return view if any(e["event_id"] == event_id for e in view.get("timeline", [])) else None

        return await eventually(folded, 15, f"the dashboard to show {event_id}")

    async def cli(self, *args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            str(XREGION_BIN), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        async with asyncio.timeout(120):
            out, err = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def status(self, rid: str) -> dict[str, Any]:
        """``xregion status RID --json``, catching its own store up with the stream first."""
        assert self.bus.keys_dir is not None
        code, out, err = await self.cli(
            "status",
            rid,
            "--json",
            "--nats-url",
            self.bus.server.url,
            "--keys-dir",
            str(self.bus.keys_dir),
            "--store",
            str(self.root / "status.db"),
        )
        assert code == 0, err
        referral: dict[str, Any] = json.loads(out)["referral"]
        return referral

    async def audit(self, rid: str) -> list[dict[str, Any]]:
        """The auditor's deadline findings on ``rid`` (``xregion audit replay --json``)."""
        assert self.bus.keys_dir is not None
        roster = str(self.bus.keys_dir / ROSTER_FILE)
        code, out, err = await self.cli(
            "audit", "replay", "--nats-url", self.bus.server.url, "--roster", roster, "--referral", rid, "--json"
        )
        assert code in (0, 1), err
        found: list[dict[str, Any]] = json.loads(out)["anomalies"]
        assert all(a["code"] in ("answer_late", "answer_overdue") for a in found), found
        return found


@pytest.fixture
async def site(bus: Bus, tmp_path: Path) -> AsyncIterator[tuple[Site, Clock]]:
    use_keys_dir(bus, tmp_path)
    clock = Clock(beijing(SUBMITTED))
    receivers = {r: Receiver(SECRET).start() for r in ("BJ", "TJ")}
    gateways = {
        r: Gateway(token=TOKEN[r], webhook_url=receivers[r].url, webhook_secret=SECRET, backoff_s=0.1)
        for r in ("BJ", "TJ")
    }
    case_db = tmp_path / "TJ-case.db"
    bridge = SqlBridge(str(case_db), poll_s=0.1, inner=gateways["TJ"].handler)
    await bus.start("BJ", handler=gateways["BJ"].handler, clock=clock)
    await bus.start("TJ", handler=bridge.handler, clock=clock)
    for region, gateway in gateways.items():
        await gateway.start(bus.adapters[region], port=0)
    await bridge.start(bus.adapters["TJ"])
    http = {
        r: httpx.AsyncClient(base_url=g.url, headers={"Authorization": f"Bearer {TOKEN[r]}"}, timeout=10.0)
        for r, g in gateways.items()
    }
    try:
        async with dashboard_stack(bus, tmp_path) as stack, httpx.AsyncClient(base_url=stack.url) as dashboard:
            yield Site(bus, tmp_path, dashboard, http, receivers, case_db), clock
    finally:
        for client in http.values():
            await client.aclose()
        await bridge.stop()
        for gateway in gateways.values():
            await gateway.stop()
        for receiver in receivers.values():
            receiver.stop()


def one_date(places: dict[str, Any], expected: date) -> None:
    """Every party shows ``expected``: the message names each place and what it showed."""
    assert set(places.values()) == {expected.isoformat()}, json.dumps(places, indent=2)


def finding(found: list[dict[str, Any]], code: str, pair: str) -> str:
    """The date the auditor judged ``pair``'s answer by (its deadline: the end of that day, UTC+8)."""
    (evidence,) = [a["evidence"] for a in found if a["code"] == code and a["evidence"]["pair"] == pair]
    day = (datetime.fromisoformat(evidence["deadline"]) - timedelta(days=1)).date().isoformat()
    assert evidence.get("answer_by", day) == day, evidence
    return day


def wait_of(referral: dict[str, Any], party: str) -> dict[str, Any]:
    waits: list[dict[str, Any]] = [w for w in referral["waits"] if w["party"] == party]
    assert len(waits) == 1, referral["waits"]
    return waits[0]


async def test_one_answer_by_date_everywhere_across_the_holiday_and_after_tolling(site: tuple[Site, Clock]) -> None:
    s, clock = site
    cal = WorkingCalendar()
    assert not cal.is_working_day(date(2026, 10, 1)) and cal.is_working_day(date(2026, 10, 10))  # the data used

    # 1. BJ submits the lead over its gateway on Monday 28 September.
    answer = await s.post(
        "BJ", "/v1/referrals", {"event_type": "lead.submitted", "to": "TJ", "data": PAYLOADS["lead.submitted"]}
    )
    rid, submitted = answer["referral_id"], answer["event_id"]
    signed = await s.signed(submitted)
    webhook = await s.webhook("TJ", submitted)
    row = await s.bridge_row(submitted)
    dashboard = await s.dashboard_view(rid, submitted)
    status = await s.status(rid)
    audit = await s.audit(rid)
    one_date(
        {
            "signed event answerby": signed["answerby"],
            "BJ gateway answer": answer["answer_by"],
            "TJ webhook": webhook["answer_by"],
            "TJ bridge inbox row": row["answer_by"],
            "status --json answer_by": status["answer_by"],
            "status --json TJ's wait": wait_of(status, "TJ")["due"],
            "dashboard answer_by": dashboard["answer_by"],
            "dashboard TJ's wait": wait_of(dashboard, "TJ")["due"],
            "auditor (TJ's open answer)": finding(audit, "answer_overdue", "BJ>TJ"),
        },
        ANSWER_BY,
    )

    # 2. TJ asks for information over its gateway on Tuesday 29 September: its clock stops,
    #    BJ's starts with the date TJ's adapter signs.
    clock.now = beijing(REQUESTED)
    answer = await s.post(
        "TJ",
        f"/v1/referrals/{rid}/events",
        {"event_type": "lead.info_requested", "data": PAYLOADS["lead.info_requested"]},
    )
    requested = answer["event_id"]
    signed = await s.signed(requested)
    webhook = await s.webhook("BJ", requested)
    dashboard = await s.dashboard_view(rid, requested)
    status = await s.status(rid)
    audit = await s.audit(rid)
    one_date(
        {
            "signed event answerby": signed["answerby"],
            "TJ gateway answer": answer["answer_by"],
            "BJ webhook": webhook["answer_by"],
            "status --json answer_by": status["answer_by"],
            "status --json BJ's wait": wait_of(status, "BJ")["due"],
            "dashboard answer_by": dashboard["answer_by"],
            "dashboard BJ's wait": wait_of(dashboard, "BJ")["due"],
            "auditor (BJ's open answer)": finding(audit, "answer_overdue", "TJ>BJ"),
        },
        INFO_BY,
    )
    for view in (status, dashboard):  # TJ's clock stopped at the date it had
        assert (wait_of(view, "TJ")["due"], wait_of(view, "TJ")["paused"]) == (ANSWER_BY.isoformat(), True)
    assert finding(audit, "answer_late", "BJ>TJ") == ANSWER_BY.isoformat()  # TJ's question answered the lead

    # 3. BJ supplies it over its gateway on Monday 12 October: TJ's clock restarts with the
    #    tolled date BJ's adapter signs.
    clock.now = beijing(SUPPLIED)
    answer = await s.post(
        "BJ",
        f"/v1/referrals/{rid}/events",
        {"event_type": "lead.info_supplied", "data": PAYLOADS["lead.info_supplied"]},
    )
    supplied = answer["event_id"]
    signed = await s.signed(supplied)
    webhook = await s.webhook("TJ", supplied)
    row = await s.bridge_row(supplied)
    dashboard = await s.dashboard_view(rid, supplied)
    status = await s.status(rid)
    audit = await s.audit(rid)
    one_date(
        {
            "signed event answerby": signed["answerby"],
            "BJ gateway answer": answer["answer_by"],
            "TJ webhook": webhook["answer_by"],
            "TJ bridge inbox row": row["answer_by"],
            "status --json answer_by": status["answer_by"],
            "status --json TJ's wait": wait_of(status, "TJ")["due"],
            "dashboard answer_by": dashboard["answer_by"],
            "dashboard TJ's wait": wait_of(dashboard, "TJ")["due"],
            "auditor (TJ's open answer)": finding(audit, "answer_overdue", "BJ>TJ"),
        },
        TOLLED_BY,
    )
    for view in (status, dashboard):
        assert [w["party"] for w in view["waits"]] == ["TJ"]  # BJ's clock ended with the supply
        assert (wait_of(view, "TJ")["paused"], wait_of(view, "TJ")["tolled_days"]) == (False, PAUSED_DAYS)
    assert finding(audit, "answer_late", "TJ>BJ") == INFO_BY.isoformat()
    assert [r["event_id"] for r in s.receivers["TJ"].events if r["referral_id"] == rid][:1] == [submitted]
    assert s.receivers["BJ"].bad_signatures == s.receivers["TJ"].bad_signatures == 0
