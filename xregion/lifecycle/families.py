"""The transition tables of the four families (ARCHITECTURE §3), as data.

Receipts (``received``) are sent by the addressee's adapter automatically once the event
is durably stored. When an origin's and an addressee's events cross on the bus (a lead
withdrawn while it is being accepted), the stream's order decides: the event that arrives
second is illegal in the state the first one created, and is refused.
"""

from __future__ import annotations

from dataclasses import replace

from xregion.envelope import HandlingCode
from xregion.errors import HandlingRestricted
from xregion.lifecycle.machine import Lifecycle, ReferralState, Role, Step, t

ORIG, ADDR = Role.ORIGIN, Role.ADDRESSEE

ONWARD_SHARING = "onward_sharing"


def permission_key(purpose: str, target_region: str | None = None) -> str:
    """How a granted permission is recorded: ``judicial_use``, ``onward_sharing:BJ``."""
    return f"{purpose}:{target_region}" if target_region else purpose


def _permission_of(step: Step) -> str:
    return permission_key(str(step.data.get("purpose", "")), step.data.get("target_region"))


def _third_region(state: ReferralState, step: Step) -> str | None:
    target = step.data.get("to_region")
    if target in (state.origin, state.addressee):
        return f"a lead is forwarded to a third region, not back to {target}"
    return None


def _forwardable(state: ReferralState, step: Step) -> str | None:
    """A third region, and for an H2 lead one the origin granted ``onward_sharing`` to."""
    if (why := _third_region(state, step)) is not None:
        return why
    target = step.data.get("to_region")
    if HandlingCode.H2 in state.handling and permission_key(ONWARD_SHARING, target) not in state.permissions:
        raise HandlingRestricted(
            f"lead {state.referral_id} carries handling code H2 (no onward sharing without the "
            f"originator's permission): {state.origin} has not granted {step.sender} onward_sharing "
            f"to {target}; ask with permission_requested",
            referral_id=state.referral_id,
            state=state.state,
            event=step.event,
            sender=step.sender,
            handling=HandlingCode.H2.value,
            target_region=target,
            origin=state.origin,
        )
    return None


def _permission_target(state: ReferralState, step: Step) -> str | None:
    target = step.data.get("target_region")
    if target is not None and target in (state.origin, state.addressee):
        return f"onward sharing is with a third region, not with {target}, which has the lead already"
    return None


def _grant(state: ReferralState, step: Step) -> ReferralState:
    return replace(state, permissions=state.permissions | {_permission_of(step)})


def _refuse(state: ReferralState, step: Step) -> ReferralState:
    return replace(state, permissions=state.permissions - {_permission_of(step)})


LEAD_OPEN = {"submitted", "received", "info_requested", "info_supplied"}
LEAD_LIVE = LEAD_OPEN | {"accepted", "in_progress"}
"""Every non-terminal state: permissions can be asked for and answered in any of them."""

LEAD = Lifecycle(
    family="lead",
    openings={"submitted": "submitted"},
    transitions=(
        t("received", ADDR, "submitted", "received"),
        t("accepted", ADDR, {"received", "info_supplied"}, "accepted"),
        t("rejected", ADDR, {"received", "info_supplied"}, "rejected"),
        t("info_requested", ADDR, {"received", "info_supplied"}, "info_requested"),
        t("info_supplied", ORIG, "info_requested", "info_supplied"),
        t("forwarded", ADDR, {"received", "info_supplied"}, "forwarded", guard=_forwardable),
        t("progress", ADDR, {"accepted", "in_progress"}, "in_progress"),
        t("concluded", ADDR, {"accepted", "in_progress"}, "concluded"),
        t("withdrawn", ORIG, LEAD_OPEN, "withdrawn"),
        t("permission_requested", ADDR, LEAD_LIVE, "=", guard=_permission_target),
        t("permission_granted", ORIG, LEAD_LIVE, "=", guard=_permission_target, effect=_grant),
        t("permission_refused", ORIG, LEAD_LIVE, "=", guard=_permission_target, effect=_refuse),
    ),
    terminal=frozenset({"rejected", "forwarded", "concluded", "withdrawn"}),
)

ASSIST = Lifecycle(
    family="assist",
    openings={"requested": "requested"},
    transitions=(
        t("received", ADDR, "requested", "received"),
        t("accepted", ADDR, "received", "accepted"),
        t("declined", ADDR, "received", "declined"),
        t("evidence_delivered", ADDR, {"accepted", "evidence_delivered"}, "evidence_delivered"),
        t("completed", ADDR, {"accepted", "evidence_delivered"}, "completed"),
        t("cancelled", ORIG, {"requested", "received", "accepted", "evidence_delivered"}, "cancelled"),
    ),
    terminal=frozenset({"declined", "completed", "cancelled"}),
)

RECOGNITION = Lifecycle(
    family="recognition",
    openings={"published": "published"},
    transitions=(
        t("received", ADDR, "pending", "received", when={"published", "revoked"}),
        t("recognized", ADDR, "received", "recognized", when={"published"}),
        t("contested", ADDR, "received", "contested", when={"published"}),
        t("revoked", ORIG, "published", "revoked"),
        t(
            "revocation_acknowledged",
            ADDR,
            {"pending", "received", "recognized", "contested"},
            "revocation_acknowledged",
            when={"revoked"},
        ),
    ),
    terminal=frozenset(),
    tracked=True,
    track_terminal=frozenset({"revocation_acknowledged"}),
    broadcast="allowed",
)

SHARE = Lifecycle(
    family="share",
    openings={
        "blacklist_upserted": "published",
        "blacklist_removed": "published",
        "alert": "published",
        "bulletin": "published",
    },
    transitions=(t("acknowledged", ADDR, "pending", "acknowledged"),),
    terminal=frozenset(),
    tracked=True,
    track_terminal=frozenset({"acknowledged"}),
    broadcast="required",
)

ESCALATION = Lifecycle(
    family="escalation",
    openings={"reminder": "issued", "overdue": "issued"},
    transitions=(),
    terminal=frozenset({"issued"}),
    senders="coordinator",
)
"""The coordinator's notices: opened by ``COORD``, addressed to one region, answered by
nothing (the late party acts on the referral concerned instead)."""


RECEIPTS: dict[str, tuple[str, dict[str, object]]] = {
    "lead.submitted": ("lead.received", {}),
    "assist.requested": ("assist.received", {}),
    "recognition.published": ("recognition.received", {}),
    "recognition.revoked": ("recognition.revocation_acknowledged", {}),
    "share.blacklist_upserted": ("share.acknowledged", {"applied": True}),
    "share.blacklist_removed": ("share.acknowledged", {"applied": True}),
    "share.alert": ("share.acknowledged", {"applied": True}),
    "share.bulletin": ("share.acknowledged", {"applied": True}),
}
"""The answer an addressee's adapter sends by itself once it has handled an event:
``event type → (receipt event type, receipt data)``."""
