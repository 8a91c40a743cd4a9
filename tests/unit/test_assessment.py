"""The assessment of a fixed scenario with known dates (tests/assessment_scenario.py): exact
figures worked out by hand, around the 2026 Mid-Autumn and National Day holidays and the
adjusted working days Sunday 20 September and Saturday 10 October.

Working days used below (2026): September 14-18, 20 (adjusted), 21-24, 28-30; October 8, 9,
10 (adjusted), 12-16, 19-23, 26-30. Holidays: 25-27 September, 1-7 October.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.assessment_scenario import PERIOD, Scenario, beijing, build
from tests.support import dev_roster, dev_signers
from xregion.cli import app
from xregion.coordinator.assessment import Period, assess, median, percentile
from xregion.coordinator.calendar import WorkingCalendar
from xregion.coordinator.projection import Projection
from xregion.envelope import Envelope
from xregion.reports.assessment import CSV_HEADERS, assessment_csv, assessment_html

ROSTER = dev_roster(dev_signers(("BJ", "TJ", "HE", "COORD")))
TODAY = date(2026, 12, 5)


def verify(wire: dict[str, Any], envelope: Envelope, stored_at: datetime) -> None:
    ROSTER.verify(wire, envelope.sender, envelope.time, received_at=stored_at)


def projection(path: Path) -> Projection:
    return Projection(path, calendar=WorkingCalendar(), verify=verify, today=lambda: TODAY)


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return build()


@pytest.fixture
def folded(tmp_path: Path, scenario: Scenario) -> Any:
    with projection(tmp_path / "coord.db") as p:
        p.apply_many(scenario.messages)
        yield p


def received(doc: dict[str, Any], region: str, family: str = "all") -> dict[str, Any]:
    figures: dict[str, Any] = doc["per_region"][region]["received"][family]
    return figures


def days(figures: dict[str, Any], milestone: str) -> tuple[Any, Any, int]:
    m = figures["working_days"][milestone]
    return m["median"], m["p90"], m["n"]


def test_the_scenario_figures(folded: Projection, scenario: Scenario) -> None:
    doc = assess(folded, Period(*PERIOD)).to_json()

    # What each region received (tracks) and how it answered.
    tj, he, bj = received(doc, "TJ"), received(doc, "HE"), received(doc, "BJ")
    outcome_keys = ("referrals", "on_time", "late", "overdue", "open", "withdrawn", "no_deadline")
    # TJ: R1 lead on time (accepted 16 Sep, due 28 Sep), R3 lead on time only thanks to the
    # tolling (accepted 22 Oct, due moved from 12 to 23 Oct), R6 blacklist acknowledged,
    # R7 blacklist never acknowledged (due 30 Oct: overdue on 31 Oct), R8 withdrawn by HE.
    assert [tj[k] for k in outcome_keys] == [5, 3, 0, 1, 0, 1, 0]
    assert tj["on_time_rate"] == 0.75
    assert (tj["tolled"], tj["tolled_days"]) == (1, 9)
    # HE: R2 late (accepted 15 Oct, due 13 Oct), R5 contested in time, R6 acknowledged.
    assert [he[k] for k in outcome_keys] == [3, 2, 1, 0, 0, 0, 0]
    assert he["on_time_rate"] == round(2 / 3, 4)
    # BJ: R4 assistance accepted but not completed by its due date 23 Oct (overdue on 31 Oct;
    # its completion on 3 Nov is after the period), R5 recognised, R7 acknowledged.
    assert [bj[k] for k in outcome_keys] == [3, 2, 0, 1, 0, 0, 0]

    # Working days from opening to receipt, acceptance, conclusion.
    assert days(tj, "receipt") == (0.0, 0.0, 4)  # R1, R3, R6, R8 the same day; R7 never
    # R1 accepted after 2 (15, 16 Sep); R3 after 18 (22-24, 28-30 Sep, 8-10, 12-16, 19-22 Oct).
    assert days(tj, "acceptance") == (10.0, 18.0, 2)
    assert days(tj, "conclusion") == (14.0, 14.0, 1)  # R1: 15-18, 20 (Sunday, worked), 21-24, 28-30 Sep, 8, 9 Oct
    # HE acknowledged R6 on Saturday 10 October, a working day: 1.
    assert days(he, "receipt") == (0.0, 1.0, 3)
    # R2 accepted after 12 (23, 24, 28-30 Sep, 8, 9, 10, 12-15 Oct); R5 contested after 3 (9, 10, 12 Oct).
    assert days(he, "acceptance") == (7.5, 12.0, 2)
    assert days(bj, "acceptance") == (1.0, 1.0, 2)
    assert days(bj, "conclusion") == (None, None, 0)

    # Escalations: COORD's overdue notices to HE (R2) and BJ (R4).
    assert (he["overdue_notices"], bj["overdue_notices"], tj["overdue_notices"]) == (1, 1, 0)
    assert he["reminders"] == bj["reminders"] == 0

    # Sent: referrals each region opened.
    assert doc["per_region"]["BJ"]["sent"] == {"lead": 2, "share": 1, "all": 3}
    assert doc["per_region"]["TJ"]["sent"] == {"lead": 1, "recognition": 1, "all": 2}
    assert doc["per_region"]["HE"]["sent"] == {"lead": 1, "assist": 1, "share": 1, "all": 3}

    # Per pair and family.
    pairs = doc["per_pair"]
    assert list(pairs) == ["BJ>TJ", "BJ>HE", "TJ>BJ", "TJ>HE", "HE>BJ", "HE>TJ"]
    assert pairs["BJ>TJ"]["lead"]["on_time"] == 2 and pairs["BJ>TJ"]["share"]["on_time"] == 1
    assert pairs["TJ>HE"]["lead"]["late"] == 1 and pairs["TJ>HE"]["recognition"]["on_time"] == 1
    assert pairs["HE>BJ"]["assist"]["overdue"] == 1
    assert (pairs["HE>TJ"]["lead"]["withdrawn"], pairs["HE>TJ"]["share"]["overdue"]) == (1, 1)
    assert "BJ>HE" in pairs and "lead" not in pairs["BJ>HE"]  # R9 (2 Nov) is after the period

    # Mutual recognition and blacklist acknowledgements.
    assert doc["recognition"] == {
        "BJ": {"recognized": 1, "contested": 0, "pending": 0, "revocation_acknowledged": 0},
        "HE": {"recognized": 0, "contested": 1, "pending": 0, "revocation_acknowledged": 0},
    }
    assert doc["blacklist"]["TJ"] == {
        "acknowledged": 1,
        "pending": 1,
        "median_hours": 2.0,
        "p90_hours": 2.0,
        "max_hours": 2.0,
        "median_working_days": 0.0,
    }
    assert (doc["blacklist"]["HE"]["median_hours"], doc["blacklist"]["HE"]["median_working_days"]) == (24.0, 1.0)
    assert (doc["blacklist"]["BJ"]["median_hours"], doc["blacklist"]["BJ"]["pending"]) == (1.0, 0)

    # Weekly trend: tracks opened per pair, and waits overdue at each week's end.
    trend = {p["bucket"]: p for p in doc["trend"]}
    assert list(trend) == [f"2026-W{w}" for w in range(38, 45)]
    assert trend["2026-W41"]["opened"] == {"BJ>HE": 1, "BJ>TJ": 1, "TJ>BJ": 1, "TJ>HE": 1}
    assert trend["2026-W44"]["end"] == "2026-10-31"  # clipped to the period
    assert [sum(p["overdue_at_end"].values()) for p in doc["trend"]] == [0, 0, 0, 0, 0, 1, 2]
    assert trend["2026-W44"]["overdue_at_end"] == {"BJ": 1, "TJ": 1}

    # Where it comes from: events 1-31 of the stream but TJ's refused repeat (the anomaly).
    source = doc["source"]
    assert (source["first_seq"], source["last_seq"], source["events"]) == (1, 31, 30)
    assert source["position"] == len(scenario.messages)
    assert source["anomalies"] == {"illegal_transition": 1}
    assert source["calendar"] == "working" and source["as_of"] == "2026-10-31"
    assert set(source["chain_heads"]) == {"BJ", "TJ", "HE", "COORD"}


def test_a_referral_whose_signature_fails_is_left_out(tmp_path: Path, scenario: Scenario) -> None:
    """A forged lead (its signature broken) is projected and recorded as an anomaly; the
    assessment does not judge TJ on it, and names it."""
    forged = Scenario(chains=scenario.chains)
    event = forged.send("lead.submitted", "HE", "TJ", "F", beijing(date(2026, 10, 20)), answer_by=date(2026, 11, 3))
    wire = dict(event.wire)
    wire["signature"] = ("A" if wire["signature"][0] != "A" else "B") + wire["signature"][1:]
    with projection(tmp_path / "coord.db") as p:
        p.apply_many(scenario.messages)
        p.apply(wire, len(scenario.messages) + 1, beijing(date(2026, 10, 20)))
        doc = assess(p, Period(*PERIOD)).to_json()
    assert doc["source"]["excluded_referrals"] == [forged.ids["F"]]
    assert doc["source"]["anomalies"] == {"bad_signature": 1, "illegal_transition": 1}
    assert received(doc, "TJ")["referrals"] == 5
    assert doc["per_pair"]["HE>TJ"]["lead"]["referrals"] == 1  # R8 only


def test_percentiles() -> None:
    assert median([2, 18]) == 10.0 and percentile([2, 18], 90) == 18.0
    assert percentile(list(range(1, 11)), 90) == 9.0 and percentile([], 90) is None


def comparable(doc: dict[str, Any]) -> dict[str, Any]:
    """The figures, without what names the store itself (its path, position, chain heads)."""
    source = doc["source"]
    for key in ("store", "position", "chain_heads", "generated"):
        source.pop(key)
    return doc


@pytest.mark.parametrize("end", [date(2026, 10, 11), date(2026, 10, 31)])
def test_a_past_period_rebuilt_from_the_stream_has_the_same_figures(
    tmp_path: Path, scenario: Scenario, end: date
) -> None:
    """The live projection has folded everything, later events included; a projection
    rebuilt from the stream's events up to the period's end gives the same figures."""
    period = Period(PERIOD[0], end)
    with projection(tmp_path / "live.db") as live, projection(tmp_path / "rebuilt.db") as rebuilt:
        for message in scenario.messages:
            live.apply(*message)
        rebuilt.rebuild(m for m in scenario.messages if m[2] < beijing(end + timedelta(days=1), 0))
        assert rebuilt.last_seq() < live.last_seq()
        expected = comparable(assess(live, period).to_json(tracks=True))
        assert comparable(assess(rebuilt, period).to_json(tracks=True)) == expected
    if end == date(2026, 10, 11):
        # On 11 October R2 (due 13 October) was still open, R3's clock stopped.
        tracks = {(t["referral_id"], t["addressee"]): t["outcome"] for t in expected["tracks"]}
        assert tracks[(scenario.ids["R2"], "HE")] == "open"
        assert tracks[(scenario.ids["R3"], "TJ")] == "open"


def test_one_region(folded: Projection) -> None:
    doc = assess(folded, Period(*PERIOD), region="HE").to_json(tracks=True)
    assert list(doc["per_region"]) == ["HE"]
    assert all("HE" in (t["origin"], t["addressee"]) for t in doc["tracks"])
    assert received(doc, "HE")["referrals"] == 3 and doc["per_region"]["HE"]["sent"]["all"] == 3
    assert set(doc["per_pair"]) == {"BJ>HE", "TJ>HE", "HE>BJ", "HE>TJ"}


def test_months(folded: Projection) -> None:
    doc = assess(folded, Period(PERIOD[0], PERIOD[1], "month")).to_json()
    assert [(p["bucket"], p["start"], p["end"]) for p in doc["trend"]] == [
        ("2026-09", "2026-09-14", "2026-09-30"),
        ("2026-10", "2026-10-01", "2026-10-31"),
    ]
    assert [sum(p["opened"].values()) for p in doc["trend"]] == [4, 7]


def test_the_csv_opens_in_a_spreadsheet_with_its_chinese_text(folded: Projection, tmp_path: Path) -> None:
    result = runner_invoke(
        "--from", "2026-09-14", "--to", "2026-10-31", "--store", str(folded.path), "--csv", str(tmp_path / "a.csv")
    )
    assert result.exit_code == 0, result.output
    raw = (tmp_path / "a.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), "UTF-8 byte-order mark: spreadsheets then read UTF-8"
    assert b"\r\n" in raw and "北京市 BJ".encode() in raw
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert rows[0] == CSV_HEADERS
    assert all(len(r) == len(CSV_HEADERS) for r in rows)
    by_key = {(r[2], r[3]): dict(zip(CSV_HEADERS, r, strict=True)) for r in rows[1:]}
    tj = by_key[("天津市 TJ", "全部业务 all")]
    assert (tj["收到 received"], tj["按期答复 on_time"], tj["逾期未答复 overdue"]) == ("5", "3", "1")
    assert (tj["按期率 on_time_rate"], tj["受理中位数(工作日) acceptance_median"]) == ("0.75", "10.0")
    assert by_key[("TJ→HE", "线索移送 lead")]["逾期答复 late"] == "1"
    assert assessment_csv(assess(folded, Period(*PERIOD)), folded.config.regions) == raw.decode("utf-8-sig")


def runner_invoke(*args: str) -> Any:
    return CliRunner().invoke(app, ["report", "assessment", *args])


def test_the_cli_prints_the_same_json(folded: Projection) -> None:
    result = runner_invoke("--from", "2026-09-14", "--to", "2026-10-31", "--store", str(folded.path), "--json", "-")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert comparable(doc) == comparable(assess(folded, Period(*PERIOD)).to_json())


def test_no_store_is_an_error(tmp_path: Path) -> None:
    result = runner_invoke(
        "--from", "2026-09-14", "--to", "2026-10-31", "--store", str(tmp_path / "none.db"), "--json", "-"
    )
    assert result.exit_code == 2 and "store_missing" in result.output


EXTERNAL = re.compile(r"""(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}|(?:src|href)\s*=\s*["'](?!#)|@import|url\(""", re.I)


def external_references(html: str) -> list[str]:
    """Anything that would make a browser fetch something: a URL with a host, a src/href that
    is not a fragment, an @import or url() (the SVG namespace URI is a name, never fetched)."""
    text = html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    return EXTERNAL.findall(text)


def test_the_html_report_is_chinese_printable_and_self_contained(folded: Projection) -> None:
    a = assess(folded, Period(*PERIOD))
    html = assessment_html(a, folded.config.regions)
    assert external_references(html) == []
    assert '<html lang="zh-CN">' in html and "考核评估报告" in html
    assert "统计期间 2026-09-14 至 2026-10-31" in html
    assert "@media print" in html and "@page" in html
    assert html.count("<svg") == 6  # volume, on-time rate, overdue trend, three distributions
    assert f"folded up to stream seq <b>{a.source.position}</b>" in html and a.source.digest in html
    assert "xregion audit replay" in html and "xregion report assessment" in html
    assert "不合流程的办理事件" in html  # the period's anomaly, explained
