"""Working-day arithmetic on the Chinese official calendar (pure; "today" is injected).

The State Council publishes each year's public holidays and the adjusted working days
(调休: a Saturday or Sunday worked in exchange for a bridge day). The ``chinese-calendar``
package carries that table; :class:`WorkingCalendar` counts on it. A year the package does
not know yet falls back to Monday-Friday (``known(day)`` says which rule applied).

:class:`CalendarDays` is the same interface on plain calendar days (the contract's
``answerby`` default), selected with ``[deadlines] calendar = "calendar"``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

import chinese_calendar

BEIJING = ZoneInfo("Asia/Shanghai")


def beijing_today() -> date:
    """Today in Beijing time (the default clock)."""
    return datetime.now(BEIJING).date()


Today = Callable[[], date]


class DayCalendar(Protocol):
    """What deadlines need of a calendar."""

    name: str

    def is_working_day(self, day: date) -> bool: ...

    def add(self, start: date, days: int) -> date: ...

    def between(self, start: date, end: date) -> int: ...


class WorkingCalendar:
    """Working days of the Chinese official calendar (holidays and adjusted working days)."""

    name = "working"

    def known(self, day: date) -> bool:
        """Does the official table cover ``day``'s year?"""
        try:
            chinese_calendar.is_workday(day)
        except NotImplementedError:
            return False
        return True

    def is_working_day(self, day: date) -> bool:
        try:
            return bool(chinese_calendar.is_workday(day))
        except NotImplementedError:
            return day.weekday() < 5

    def add(self, start: date, days: int) -> date:
        """The ``days``-th working day after ``start`` (``days`` ≥ 0; 0 → ``start``).

        Negative ``days`` counts back: the ``|days|``-th working day before ``start``.
        """
        step = 1 if days >= 0 else -1
        day, left = start, abs(days)
        while left:
            day += timedelta(days=step)
            if self.is_working_day(day):
                left -= 1
        return day

    def between(self, start: date, end: date) -> int:
        """Working days in ``(start, end]`` (0 if ``end`` ≤ ``start``)."""
        count, day = 0, start
        while day < end:
            day += timedelta(days=1)
            count += self.is_working_day(day)
        return count


class CalendarDays:
    """Plain calendar days: every day counts."""

    name = "calendar"

    def is_working_day(self, day: date) -> bool:
        return True

    def add(self, start: date, days: int) -> date:
        return start + timedelta(days=days)

    def between(self, start: date, end: date) -> int:
        return max(0, (end - start).days)


def calendar_named(name: str) -> DayCalendar:
    """``"working"`` → :class:`WorkingCalendar`, ``"calendar"`` → :class:`CalendarDays`."""
    if name == "working":
        return WorkingCalendar()
    if name == "calendar":
        return CalendarDays()
    raise ValueError(f"unknown deadline calendar {name!r}: working | calendar")
