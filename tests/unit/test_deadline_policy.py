"""The deadline policy a sender signs ``answerby`` with (:mod:`xregion.deadlines`): the
configured calendar, the Beijing date an event counts from, and tolling. Fixed 2026 dates
(chinese-calendar 1.11 knows 2026: 1-7 October is the National Day holiday, Saturday
10 October an adjusted working day); expected dates are worked out by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from xregion.config import load_config, parse_config
from xregion.deadlines import CalendarDays, DeadlinePolicy, WorkingCalendar, beijing_date
from xregion.errors import ConfigError
from xregion.profiles import load_profile


def _config(calendar: str | None) -> dict[str, object]:
    deadlines: dict[str, object] = {"lead.submitted": 10}
    if calendar is not None:
        deadlines["calendar"] = calendar
    regions = {
        code: {"name_zh": code, "name_en": code, "iso": f"CN-{code}", "agencies": {"amr": "x"}} for code in ("BJ", "TJ")
    }
    return {"regions": regions, "deadlines": deadlines}


def test_the_configured_calendar_counts_working_days_by_default() -> None:
    assert isinstance(parse_config(_config(None)).deadlines.calendar, WorkingCalendar)
    assert isinstance(parse_config(_config("working")).deadlines.calendar, WorkingCalendar)
    assert isinstance(parse_config(_config("calendar")).deadlines.calendar, CalendarDays)
    assert isinstance(load_config().deadlines.calendar, WorkingCalendar)  # the packaged bus.toml
    with pytest.raises(ConfigError, match="unknown deadline calendar 'lunar'"):
        parse_config(_config("lunar"))


def test_a_region_profile_keeps_the_bus_calendar() -> None:
    config = load_config()
    profile = load_profile("BJ", config)
    assert profile is not None
    applied = profile.apply(config)
    assert applied.deadlines.calendar is config.deadlines.calendar


def test_the_answer_by_date_crosses_the_holiday_and_counts_the_adjusted_saturday() -> None:
    working = DeadlinePolicy({"lead.submitted": 10})
    # Mon 28 Sep: 29, 30 Sep, 8, 9, 10 (Saturday, worked), 12, 13, 14, 15, 16 Oct.
    assert working.default_answer_by("lead.submitted", date(2026, 9, 28)) == date(2026, 10, 16)
    assert working.default_answer_by("lead.progress", date(2026, 9, 28)) is None  # awaits no answer
    days = DeadlinePolicy({"lead.submitted": 10}, CalendarDays())
    assert days.default_answer_by("lead.submitted", date(2026, 9, 28)) == date(2026, 10, 8)


def test_an_event_counts_from_its_beijing_date() -> None:
    # 20:30 UTC on 27 September is 04:30 on 28 September in Beijing.
    assert beijing_date(datetime(2026, 9, 27, 20, 30, tzinfo=UTC)) == date(2026, 9, 28)


def test_tolling_gives_back_the_days_left_after_the_request_day() -> None:
    policy = DeadlinePolicy({"lead.submitted": 10})
    due = date(2026, 10, 16)
    # Asked Tue 29 Sep (counts), 9 working days left (30 Sep, 8, 9, 10, 12-16 Oct); supplied
    # Mon 12 Oct: 13, 14, 15, 16, 19, 20, 21, 22, 23 Oct.
    assert policy.tolled(due, date(2026, 9, 29), date(2026, 10, 12)) == date(2026, 10, 23)
    # Asked on the due date itself: nothing left, the answer is due on the supply day.
    assert policy.tolled(due, due, date(2026, 10, 20)) == date(2026, 10, 20)
    # Asked after it (already late): still the supply day, never a date before the event.
    assert policy.tolled(due, date(2026, 10, 19), date(2026, 10, 21)) == date(2026, 10, 21)
    # Supplied during the holiday: the days left count from the first working day after it.
    assert policy.tolled(due, date(2026, 9, 29), date(2026, 10, 3)) == date(2026, 10, 19)
