"""Working days on the Chinese official calendar, with fixed dates of 2026 (chinese-calendar
1.11 knows 2026: National Day 1-7 October is a holiday, Saturday 10 October and Sunday
20 September are adjusted working days)."""

from __future__ import annotations

from datetime import date

from xregion.coordinator.calendar import CalendarDays, WorkingCalendar, calendar_named
from xregion.coordinator.escalation import Thresholds, escalation_id, planned
from xregion.coordinator.projection import ReferralView, Wait

CAL = WorkingCalendar()


def test_2026_is_known_and_national_day_is_a_holiday() -> None:
    assert CAL.known(date(2026, 10, 1))
    assert not CAL.is_working_day(date(2026, 10, 1))  # Thursday, National Day
    assert not CAL.is_working_day(date(2026, 10, 7))  # Wednesday, still the holiday
    assert CAL.is_working_day(date(2026, 10, 10))  # Saturday, adjusted working day
    assert CAL.is_working_day(date(2026, 9, 20))  # Sunday, adjusted working day
    assert not CAL.is_working_day(date(2026, 10, 11))  # plain Sunday


def test_adding_working_days_skips_the_holiday_and_counts_the_adjusted_saturday() -> None:
    # Wed 30 Sep + 1 working day: 1-7 Oct holiday → Thu 8 Oct.
    assert CAL.add(date(2026, 9, 30), 1) == date(2026, 10, 8)
    # Fri 9 Oct + 1 → Sat 10 Oct (adjusted working day), + 2 → Mon 12 Oct.
    assert CAL.add(date(2026, 10, 9), 1) == date(2026, 10, 10)
    assert CAL.add(date(2026, 10, 9), 2) == date(2026, 10, 12)
    # 10 working days from Fri 25 Sep (Mid-Autumn, a holiday itself):
    # 28, 29, 30 Sep, 8, 9, 10, 12, 13, 14, 15 Oct.
    assert CAL.add(date(2026, 9, 25), 10) == date(2026, 10, 15)
    assert CAL.add(date(2026, 10, 15), -10) == date(2026, 9, 24)  # 25 Sep is a holiday
    assert CAL.between(date(2026, 9, 30), date(2026, 10, 12)) == 4  # 8, 9, 10, 12 Oct


def test_calendar_days_option() -> None:
    assert CalendarDays().add(date(2026, 9, 30), 10) == date(2026, 10, 10)
    assert isinstance(calendar_named("calendar"), CalendarDays)
    assert isinstance(calendar_named("working"), WorkingCalendar)


def _view(due: date, paused: bool = False) -> ReferralView:
    wait = Wait("TJ", "answer to lead.submitted", date(2026, 9, 25), due, paused, 0, "e1")
    return ReferralView(
        "BJ-0190c7a0-0000-7000-8000-000000000000",
        "lead",
        "BJ",
        "TJ",
        "received",
        {},
        "",
        "",
        2,
        due,
        (wait,),
        (),
        (),
        (),
        False,
        (),
        date(2026, 10, 1),
    )


def test_overdue_honours_the_holiday_and_the_adjusted_working_day() -> None:
    due = CAL.add(date(2026, 9, 29), 1)  # Tue 29 Sep + 1 working day = Wed 30 Sep
    view = _view(due)
    wait = view.waits[0]
    assert not wait.overdue_on(date(2026, 9, 30))
    assert wait.overdue_on(date(2026, 10, 1))
    # Through the holiday the overdue wait gains no working days; the adjusted Saturday counts.
    assert CAL.between(due, date(2026, 10, 7)) == 0
    assert CAL.between(due, date(2026, 10, 10)) == 3  # 8, 9, 10 Oct
    th = Thresholds(reminder_days=2, further=(3,))
    assert [p.threshold for p in planned([view], date(2026, 9, 28), CAL, th)] == ["reminder"]
    assert [p.threshold for p in planned([view], date(2026, 10, 7), CAL, th)] == ["overdue"]
    assert [p.threshold for p in planned([view], date(2026, 10, 9), CAL, th)] == ["overdue"]
    assert [p.threshold for p in planned([view], date(2026, 10, 10), CAL, th)] == ["overdue", "overdue+3"]
    assert planned([_view(due, paused=True)], date(2026, 10, 10), CAL, th) == []


def test_escalation_ids_are_deterministic_uuid7() -> None:
    from xregion.ids import EVENT_ID

    a = escalation_id("BJ-x", "TJ", "e1", "overdue", date(2026, 10, 8))
    assert a == escalation_id("BJ-x", "TJ", "e1", "overdue", date(2026, 10, 8))
    assert a != escalation_id("BJ-x", "TJ", "e1", "overdue+5", date(2026, 10, 8))
    assert EVENT_ID.match(a)
