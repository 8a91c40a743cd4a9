"""Escalation: reminders before a deadline and overdue notices after it, exactly once.

For every running wait of the projection (:class:`~xregion.coordinator.projection.Wait`)
with a deadline — the ``answerby`` its sender signed, as it is — :func:`planned` names the
thresholds reached on day ``at``:

* ``reminder`` — ``reminder_days`` days (of the coordinator's calendar) before the
  answer-by date, until the date itself (skipped once the wait is overdue);
* ``overdue``  — the day after the answer-by date;
* ``overdue+N`` — N days past it, for every N in ``further`` (e.g. 5).

Exactly once per (referral, party, wait, threshold), across crashes and restarts:

1. the event id is derived from that key (:func:`escalation_id`, UUIDv7-shaped), and so is
   the notice's referral id (``COORD-<event id>``);
2. the escalation is recorded in the projection database before it is submitted;
3. it is submitted to the coordinator's outbox only if the outbox lacks that event id, and
   the relay publishes with ``Nats-Msg-Id`` = event id, so a publish retried after a crash
   is dropped by JetStream's duplicate window.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time

from xregion.compose import compose
from xregion.contracts.catalog import CATALOG, Catalog
from xregion.coordinator.calendar import DayCalendar
from xregion.coordinator.projection import ESCALATION_FAMILY, Projection, ReferralView, Wait
from xregion.regions import COORDINATOR
from xregion.runtime.outbox import Outbox

COORDINATOR_AGENCY = "coordinator"
"""The agency token of the coordinator's events (``urn:xregion:COORD:coordinator``)."""


@dataclass(frozen=True)
class Thresholds:
    reminder_days: int = 2
    further: tuple[int, ...] = (5,)


@dataclass(frozen=True)
class Planned:
    """One escalation to send."""

    referral: ReferralView
    wait: Wait
    threshold: str
    days_past_due: int

    @property
    def due(self) -> date:
        """The signed answer-by date (:func:`planned` skips waits without one)."""
        assert self.wait.due is not None
        return self.wait.due

    @property
    def event(self) -> str:
        return "reminder" if self.threshold == "reminder" else "overdue"

    @property
    def event_id(self) -> str:
        return escalation_id(self.referral.referral_id, self.wait.party, self.wait.clock, self.threshold, self.due)


def escalation_id(referral_id: str, party: str, clock: str, threshold: str, due: date) -> str:
    """A UUIDv7-shaped id determined by the escalation's key (time part: the due date)."""
    digest = hashlib.sha256(f"{referral_id}|{party}|{clock}|{threshold}".encode()).digest()
    millis = int(datetime.combine(due, time(), tzinfo=UTC).timestamp() * 1000) & ((1 << 48) - 1)
    rand_a = int.from_bytes(digest[:2], "big") & 0x0FFF
    rand_b = int.from_bytes(digest[2:10], "big") & ((1 << 62) - 1)
    value = (millis << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    hexed = f"{value:032x}"
    return f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:]}"


def planned(views: list[ReferralView], at: date, calendar: DayCalendar, thresholds: Thresholds) -> list[Planned]:
    """The escalations reached on day ``at`` (sent or not)."""
    out = []
    for view in views:
        for wait in view.waits:
            if wait.paused or wait.due is None:
                continue  # a stopped clock, or no signed deadline: nothing to escalate
            if at > wait.due:
                past = calendar.between(wait.due, at)
                out.append(Planned(view, wait, "overdue", past))
                out.extend(Planned(view, wait, f"overdue+{n}", past) for n in thresholds.further if past >= n)
            elif at >= calendar.add(wait.due, -thresholds.reminder_days):
                out.append(Planned(view, wait, "reminder", 0))
    return out


def outbox_has(db: sqlite3.Connection, event_id: str) -> bool:
    return db.execute("SELECT 1 FROM outbox WHERE event_id = ?", (event_id,)).fetchone() is not None


class Escalator:
    """Plans escalations from the projection and submits each one exactly once."""

    def __init__(
        self,
        projection: Projection,
        outbox: Outbox,
        *,
        thresholds: Thresholds | None = None,
        today: Callable[[], date] | None = None,
        catalog: Catalog = CATALOG,
    ) -> None:
        self.projection = projection
        self.outbox = outbox
        self.thresholds = thresholds or Thresholds()
        self.today = today or projection.today
        self.catalog = catalog

    async def run_once(self) -> list[str]:
        """Submit every escalation due today that was not submitted before; their event ids."""
        at = self.today()
        calendar = self.projection.calendar
        sent = []
        for plan in planned(self.projection.referrals(at=at), at, calendar, self.thresholds):
            event_id = plan.event_id
            self.projection.record_escalation(
                event_id, plan.referral.referral_id, plan.wait.party, plan.threshold, plan.due
            )
            if await self.outbox.store.read(lambda db, e=event_id: outbox_has(db, e)):  # type: ignore[misc]
                continue
            view = plan.referral
            unsigned = compose(
                self.catalog.get(ESCALATION_FAMILY, plan.event),
                {
                    "referral_id": view.referral_id,
                    "family": view.family,
                    "threshold": plan.threshold,
                    "late_party": plan.wait.party,
                    "awaiting": plan.wait.awaiting,
                    "answer_by": plan.due.isoformat(),
                    "days_past_due": plan.days_past_due,
                    "calendar": calendar.name,
                },
                sender=COORDINATOR,
                agency=COORDINATOR_AGENCY,
                to=plan.wait.party,
                referral_id=f"{COORDINATOR}-{event_id}",
                correlation_id=view.referral_id,
                event_id=event_id,
            )
            await self.outbox.submit(unsigned)
            sent.append(event_id)
        return sent
