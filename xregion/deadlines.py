"""Default answer-by periods per event type, from configuration.

Every request carries the date by which its addressee must answer (the ``answerby``
extension attribute). This module computes the default when the sender names none.
Working-day calendars belong to the coordinator; this is the calendar-day contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from types import MappingProxyType

from xregion.errors import ConfigError


@dataclass(frozen=True)
class DeadlinePolicy:
    """Answer-by periods in days, keyed by ``<family>.<event>``."""

    days: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, value in self.days.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"deadline {key!r} must be a whole number of days >= 1")
        object.__setattr__(self, "days", MappingProxyType(dict(self.days)))

    def period(self, event_type: str) -> int | None:
        """Days allowed to answer an event of ``event_type`` (``lead.submitted``), if any."""
        return self.days.get(event_type)

    def default_answer_by(self, event_type: str, sent_on: date) -> date | None:
        """The answer-by date of an event sent on ``sent_on``, or None if it awaits no answer."""
        period = self.period(event_type)
        return None if period is None else sent_on + timedelta(days=period)
