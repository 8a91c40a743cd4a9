"""Referral lifecycles: pure state machines shared by adapters, coordinator and auditor.

>>> from xregion.lifecycle import LIFECYCLES, Step
>>> state = LIFECYCLES.apply(None, Step("lead.submitted", "BJ", "TJ", "BJ-..."))
"""

from xregion.lifecycle.families import ASSIST, ESCALATION, LEAD, RECEIPTS, RECOGNITION, SHARE
from xregion.lifecycle.machine import (
    Lifecycle,
    Lifecycles,
    ReferralState,
    Role,
    Step,
    Transition,
)

LIFECYCLES = Lifecycles([LEAD, ASSIST, RECOGNITION, SHARE, ESCALATION])

__all__ = [
    "LIFECYCLES",
    "RECEIPTS",
    "Lifecycle",
    "Lifecycles",
    "ReferralState",
    "Role",
    "Step",
    "Transition",
]
