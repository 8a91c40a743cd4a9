"""Deadline tolling, on real signed, chained events: the senders compute every date with
the deadline policy (:mod:`xregion.deadlines`), the coordinator's projection shows the
signed dates as they are.

One lead BJ → TJ: submitted, received, info_requested (TJ asks BJ for information: TJ's
clock pauses, BJ's starts), info_supplied (TJ's clock resumes with the new date BJ signs:
the days TJ had left after the request day, counted again from the supply day). Fixed 2026
dates around the National Day holiday (1-7 October; Friday 25 September is Mid-Autumn;
Saturday 10 October is an adjusted working day — chinese-calendar 1.11 knows 2026).
Expected dates are worked out by hand below, not by the calendar code.

Convention: the request day still counts against the addressee; the pause covers the days
after it up to and including the supply day (Beijing dates of the events' ``time``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support import OriginChain, dev_roster, dev_signers, example_event
from xregion.config import load_config
from xregion.coordinator.projection import Projection, ReferralView
from xregion.deadlines import CalendarDays, DayCalendar, DeadlinePolicy, WorkingCalendar
from xregion.envelope import Envelope
from xregion.ids import new_referral_id

SUBMITTED = date(2026, 9, 21)  # Monday
RECEIVED = date(2026, 9, 22)  # Tuesday
REQUESTED = date(2026, 9, 23)  # Wednesday: TJ asks BJ for information
SUPPLIED = date(2026, 10, 13)  # Tuesday: BJ supplies it, after the National Day holiday


@dataclass(frozen=True)
class Expected:
    calendar: DayCalendar
    original_due: date  # TJ's answer to lead.submitted, 10 days after SUBMITTED
    origin_due: date  # BJ's answer to lead.info_requested, 10 days after REQUESTED
    paused_days: tuple[date, ...]  # the counted days in (REQUESTED, SUPPLIED]
    tolled_due: date  # original_due moved by len(paused_days) counted days


WORKING = Expected(
    calendar=WorkingCalendar(),
    # 22, 23, 24 Sep (25 Mid-Autumn, 26-27 weekend), 28, 29, 30 Sep (1-7 Oct holiday),
    # 8, 9, 10 (adjusted Saturday), 12 Oct.
    original_due=date(2026, 10, 12),
    # 24, 28, 29, 30 Sep, 8, 9, 10, 12, 13, 14 Oct.
    origin_due=date(2026, 10, 14),
    paused_days=(
        date(2026, 9, 24),
        date(2026, 9, 28),
        date(2026, 9, 29),
        date(2026, 9, 30),
        date(2026, 10, 8),
        date(2026, 10, 9),
        date(2026, 10, 10),
        date(2026, 10, 12),
        date(2026, 10, 13),
    ),
    # TJ had 8 working days left after the request day (24, 28, 29, 30 Sep, 8, 9, 10,
    # 12 Oct), counted again after the supply day Tue 13 Oct: 14, 15, 16, 19, 20, 21, 22, 23.
    # (The same as the original date moved by the 9 paused working days.)
    tolled_due=date(2026, 10, 23),
)

CALENDAR = Expected(
    calendar=CalendarDays(),
    original_due=date(2026, 10, 1),  # 21 Sep + 10 days
    origin_due=date(2026, 10, 3),  # 23 Sep + 10 days
    # Every day from 24 Sep to 13 Oct, holidays and weekends included: 7 + 13 = 20.
    paused_days=tuple(date(2026, 9, d) for d in range(24, 31)) + tuple(date(2026, 10, d) for d in range(1, 14)),
    tolled_due=date(2026, 10, 21),  # 13 Oct + the 8 days left after 23 Sep (= 1 Oct + 20 days)
)


def beijing(day: date, hour: int = 10) -> datetime:
    """``hour`` o'clock Beijing time (UTC+8) on ``day``, as a UTC datetime."""
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC) - timedelta(hours=8)


class Lead:
    """One lead BJ → TJ: each party seals its events on its own origin chain."""

    def __init__(self) -> None:
        signers = dev_signers()
        self.chains = {party: OriginChain(signers[party]) for party in ("BJ", "TJ")}
        self.roster = dev_roster(signers)
        self.referral_id = new_referral_id("BJ")
        self.stream_seq = 0

    def verify(self, wire: dict[str, Any], envelope: Envelope, stored_at: datetime) -> None:
        self.roster.verify(wire, envelope.sender, envelope.time, received_at=stored_at)

    def send(
        self, projection: Projection, name: str, sender: str, time: datetime, answer_by: date | None = None
    ) -> None:
        """Seal ``name`` from ``sender`` at ``time``, signing ``answer_by``, and fold it."""
        to = "TJ" if sender == "BJ" else "BJ"
        event = example_event(name, sender=sender, to=to, referral_id=self.referral_id, time=time, answer_by=answer_by)
        sealed = self.chains[sender].seal(event)
        self.stream_seq += 1
        assert projection.apply(sealed.wire, self.stream_seq, time + timedelta(seconds=2)) == self.referral_id


@pytest.mark.parametrize("expected", [WORKING, CALENDAR], ids=["working-days", "calendar-days"])
def test_info_request_tolls_the_addressee_clock(tmp_path: Path, expected: Expected) -> None:
    lead = Lead()
    today = [SUBMITTED]
    projection = Projection(
        tmp_path / "coord.db", calendar=expected.calendar, verify=lead.verify, today=lambda: today[0]
    )
    rid = lead.referral_id
    # What each sender's adapter signs (configured periods, counted on the configured calendar).
    policy = DeadlinePolicy(load_config().deadlines.days, expected.calendar)
    submitted_by = policy.default_answer_by("lead.submitted", SUBMITTED)
    requested_by = policy.default_answer_by("lead.info_requested", REQUESTED)
    assert (submitted_by, requested_by) == (expected.original_due, expected.origin_due)
    supplied_by = policy.tolled(expected.original_due, REQUESTED, SUPPLIED)
    assert supplied_by == expected.tolled_due

    def view(at: date) -> ReferralView:
        found = projection.referral(rid, at=at)
        assert found is not None
        return found

    with projection:
        lead.send(projection, "lead.submitted", "BJ", beijing(SUBMITTED), submitted_by)
        lead.send(projection, "lead.received", "TJ", beijing(RECEIVED))

        # Before any request: TJ's clock runs to the original due date, late the day after.
        (wait,) = view(expected.original_due).waits
        assert (wait.party, wait.due, wait.paused, wait.tolled_days) == ("TJ", expected.original_due, False, 0)
        assert not view(expected.original_due).overdue
        assert view(expected.original_due + timedelta(days=1)).late_parties == ("TJ",)

        lead.send(projection, "lead.info_requested", "TJ", beijing(REQUESTED), requested_by)

        # Paused: TJ is never late, even past its original due date; BJ's clock now runs.
        after_original = expected.original_due + timedelta(days=1)
        assert after_original < expected.origin_due
        paused = view(after_original)
        waits = {w.party: w for w in paused.waits}
        assert set(waits) == {"TJ", "BJ"}
        assert (waits["TJ"].paused, waits["TJ"].due, waits["TJ"].tolled_days) == (True, expected.original_due, 0)
        assert (waits["BJ"].paused, waits["BJ"].due) == (False, expected.origin_due)
        assert waits["BJ"].awaiting == "information requested"
        assert not waits["TJ"].overdue_on(after_original)
        assert not paused.overdue and paused.late_parties == ()
        assert paused.answer_by == expected.origin_due  # the paused clock sets no answer-by date
        # Later still, only the origin is late: the paused addressee is not.
        assert view(expected.origin_due + timedelta(days=30)).late_parties == ("BJ",)
        today[0] = after_original  # the injected "today" judges overdue when no ``at`` is given
        judged_today = projection.referral(rid)
        assert judged_today is not None and judged_today.at == after_original and not judged_today.overdue

        # Supplied at 07:30 Beijing time: still the previous day in UTC, the Beijing date counts.
        lead.send(
            projection, "lead.info_supplied", "BJ", beijing(SUPPLIED, hour=7) + timedelta(minutes=30), supplied_by
        )

        tolled = len(expected.paused_days)
        assert all(REQUESTED < d <= SUPPLIED for d in expected.paused_days)
        resumed = view(after_original)
        (wait,) = resumed.waits  # BJ's clock ended with the supply
        assert wait.party == "TJ" and not wait.paused
        assert wait.tolled_days == tolled
        assert wait.due == expected.tolled_due
        assert wait.due != expected.original_due
        assert resumed.answer_by == expected.tolled_due
        assert resumed.state == "info_supplied"

        # Overdue is judged against the moved due date.
        assert not resumed.overdue  # the day after the original due date: no longer late
        assert not view(expected.tolled_due).overdue
        late = view(expected.tolled_due + timedelta(days=1))
        assert late.overdue and late.late_parties == ("TJ",)
        today[0] = expected.tolled_due + timedelta(days=1)
        judged_today = projection.referral(rid)
        assert judged_today is not None and judged_today.overdue
        today[0] = expected.tolled_due
        judged_today = projection.referral(rid)
        assert judged_today is not None and not judged_today.overdue

        # Every event applied cleanly: signed, chained, legal in its lifecycle.
        assert projection.anomalies() == []
        assert [(e.event_type, e.state_after, e.anomaly) for e in view(SUPPLIED).timeline] == [
            ("lead.submitted", "submitted", None),
            ("lead.received", "received", None),
            ("lead.info_requested", "info_requested", None),
            ("lead.info_supplied", "info_supplied", None),
        ]
        assert projection.last_seq() == 4


def test_the_projection_shows_the_signed_dates_whatever_its_own_calendar(tmp_path: Path) -> None:
    """One deadline: a coordinator counting plain calendar days shows the working-day dates
    the senders signed, never a date of its own (not even when a signed date happens to equal
    the calendar-day default); an event that signs no date sets no deadline."""
    lead = Lead()
    rid = lead.referral_id
    with Projection(tmp_path / "coord.db", calendar=CalendarDays(), verify=lead.verify) as projection:
        lead.send(projection, "lead.submitted", "BJ", beijing(SUBMITTED), WORKING.original_due)
        lead.send(projection, "lead.received", "TJ", beijing(RECEIVED))
        lead.send(projection, "lead.info_requested", "TJ", beijing(REQUESTED), CALENDAR.origin_due)
        paused = projection.referral(rid, at=REQUESTED)
        assert paused is not None
        assert {w.party: w.due for w in paused.waits} == {"TJ": WORKING.original_due, "BJ": CALENDAR.origin_due}
        lead.send(projection, "lead.info_supplied", "BJ", beijing(SUPPLIED), WORKING.tolled_due)
        resumed = projection.referral(rid, at=SUPPLIED)
        assert resumed is not None and resumed.answer_by == WORKING.tolled_due
        assert resumed.to_json()["waits"][0]["due"] == "2026-10-23"

        lead.referral_id = new_referral_id("BJ")  # another lead, on the same chains, signing no date
        lead.send(projection, "lead.submitted", "BJ", beijing(SUBMITTED))
        view = projection.referral(lead.referral_id, at=date(2027, 1, 1))
        assert view is not None and view.answer_by is None and not view.overdue
        assert [(w.party, w.due) for w in view.waits] == [("TJ", None)]
        assert view.to_json()["waits"][0]["due"] is None
        assert projection.anomalies() == []
