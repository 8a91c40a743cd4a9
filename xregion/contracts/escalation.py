"""Escalation (督办): the coordinator's notices about a referral's deadline.

The coordinator (``COORD``) watches every referral's answer-by date and tells the party
it waits on: ``reminder`` a few working days before the date, ``overdue`` once it has
passed (and again at further thresholds, e.g. five working days later). Each notice is
its own small referral opened by ``COORD`` (``COORD-<uuid>``) and addressed to the late
region; ``referral_id`` names the referral concerned. Nothing answers a notice: the late
party answers by acting on the referral itself.
"""

from __future__ import annotations

from datetime import date

from pydantic import Field

from xregion.contracts.common import Contract, ReferralIdStr, RegionCode, ShortText


class EscalationNotice(Contract):
    referral_id: ReferralIdStr = Field(description="The referral whose deadline this is about.")
    family: ShortText = Field(description="Family of that referral (lead, assist, ...).")
    threshold: ShortText = Field(description="reminder | overdue | overdue+<N> (working days past the date).")
    late_party: RegionCode = Field(description="The region the referral waits on.")
    awaiting: ShortText = Field(description="What it waits for, e.g. 'answer to lead.submitted'.")
    answer_by: date = Field(description="The answer-by date (after tolling).")
    days_past_due: int = Field(ge=0, description="Days (of the deadline calendar) past answer_by; 0 for a reminder.")
    calendar: ShortText = Field(description="working (Chinese official calendar) | calendar.")


Reminder = EscalationNotice
Overdue = EscalationNotice

EVENTS: dict[str, type[Contract]] = {
    "reminder": Reminder,
    "overdue": Overdue,
}
