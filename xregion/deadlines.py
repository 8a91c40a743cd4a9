"""Deadlines: the answer-by date a sender signs, and the calendar it is counted on.

One deadline per request. The sender's adapter computes the ``answerby`` extension attribute
once, when it composes the event, and signs it; every other party (gateway answer,
webhooks, SQL bridge, coordinator, escalation, dashboard, ``status``, auditor) uses that
date as it is and never counts it again. An event without ``answerby`` sets no deadline.

* **Period.** ``[deadlines]`` of the bus configuration gives, per event type, the days the
  addressee has to answer; they are counted on ``[deadlines] calendar`` from the event's
  date in Beijing time (UTC+8): ``"working"`` (default) — working days of the Chinese
  official calendar, public holidays skipped and adjusted working days (调休) counted —
  or ``"calendar"`` — every day. A sender may sign another date of its own choosing.
* **Tolling.** A lead's addressee that asks the origin for information
  (``lead.info_requested``) stops its clock; the request day still counts against it. The
  origin's ``lead.info_supplied`` restarts it and carries the addressee's new date,
  computed by the origin's adapter with :func:`tolled`: the days the addressee had left
  after the request day, counted again from the supply day.

:class:`WorkingCalendar` reads the State Council's table from the ``chinese-calendar``
package; a year the package does not know yet falls back to Monday-Friday
(``known(day)`` says which rule applied). All functions are pure; "today" is injected.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Protocol
from zoneinfo import ZoneInfo

import chinese_calendar

from xregion.errors import ConfigError

BEIJING = ZoneInfo("Asia/Shanghai")
"""The contract reads dates in Beijing time: ``answerby`` ends at midnight UTC+8."""

PAUSES = frozenset({"lead.info_requested"})
"""Events that stop the clock of their sender (the party that owed an answer)."""
RESUMES = {"lead.info_supplied": "lead.info_requested"}
"""Events that restart the clock the given event stopped; they carry the tolled date."""


def beijing_today() -> date:
    """Today in Beijing time (the default clock)."""
    return datetime.now(BEIJING).date()


def beijing_date(moment: datetime) -> date:
    """The date of ``moment`` in Beijing time (an event's day for every deadline)."""
    return moment.astimezone(BEIJING).date()


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
        return _official_working_day(day)

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


@lru_cache(maxsize=8192)
def _official_working_day(day: date) -> bool:
    """Whether ``day`` is a working day in the official table (weekdays beyond it), once per
    day: the table is fixed in the installed package, and ``chinese_calendar.is_workday``
    scans it for its bounds on every call (~30 µs; a 10-working-day deadline asks ~14 days)."""
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        return day.weekday() < 5


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


def tolled(calendar: DayCalendar, due: date, paused_on: date, resumed_on: date) -> date:
    """The new answer-by date of a clock that ran to ``due``, stopped on ``paused_on`` (a day
    that still counted) and restarts on ``resumed_on``: the days of ``calendar`` it had left in
    ``(paused_on, due]`` counted again from ``resumed_on`` (none left: ``resumed_on``)."""
    return calendar.add(resumed_on, calendar.between(paused_on, due))


@dataclass(frozen=True)
class DeadlinePolicy:
    """Answer-by periods in days, keyed by ``<family>.<event>``, and the calendar they count."""

    days: Mapping[str, int] = field(default_factory=dict)
    calendar: DayCalendar = field(default_factory=WorkingCalendar)

    def __post_init__(self) -> None:
        for key, value in self.days.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"deadline {key!r} must be a whole number of days >= 1")
        object.__setattr__(self, "days", MappingProxyType(dict(self.days)))

    def period(self, event_type: str) -> int | None:
        """Days allowed to answer an event of ``event_type`` (``lead.submitted``), if any."""
        return self.days.get(event_type)

    def default_answer_by(self, event_type: str, sent_on: date) -> date | None:
        """The answer-by date of an event sent on ``sent_on`` (its Beijing date): the period
        counted on the policy's calendar; None if the event awaits no answer."""
        period = self.period(event_type)
        return None if period is None else self.calendar.add(sent_on, period)

    def tolled(self, due: date, paused_on: date, resumed_on: date) -> date:
        """:func:`tolled` on the policy's calendar."""
        return tolled(self.calendar, due, paused_on, resumed_on)
