"""The deadline calendars, as the coordinator has always imported them.

They live in the contract module :mod:`xregion.deadlines`: the sender's adapter counts the
``answerby`` date it signs on them. The coordinator counts only its escalation thresholds
(reminder, overdue+N) and the paused days it shows; it never recomputes a deadline.
"""

from __future__ import annotations

from xregion.deadlines import (
    BEIJING,
    CalendarDays,
    DayCalendar,
    Today,
    WorkingCalendar,
    beijing_today,
    calendar_named,
)

__all__ = ["BEIJING", "CalendarDays", "DayCalendar", "Today", "WorkingCalendar", "beijing_today", "calendar_named"]
