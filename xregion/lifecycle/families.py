"""The transition tables of the four families (ARCHITECTURE §3), as data.

Receipts (``received``) are sent by the addressee's adapter automatically once the event
is durably stored. When an origin's and an addressee's events cross on the bus (a lead
withdrawn while it is being accepted), the stream's order decides: the event that arrives
second is illegal in the state the first one created, and is refused.
"""

from __future__ import annotations

from xregion.lifecycle.machine import Lifecycle, ReferralState, Role, Step, t

ORIG, ADDR = Role.ORIGIN, Role.ADDRESSEE


def _third_region(state: ReferralState, step: Step) -> str | None:
    target = step.data.get("to_region")
    if target in (state.origin, state.addressee):
        return f"a lead is forwarded to a third region, not back to {target}"
    return None


LEAD_OPEN = {"submitted", "received", "info_requested", "info_supplied"}

LEAD = Lifecycle(
    family="lead",
    openings={"submitted": "submitted"},
    transitions=(
        t("received", ADDR, "submitted", "received"),
        t("accepted", ADDR, {"received", "info_supplied"}, "accepted"),
        t("rejected", ADDR, {"received", "info_supplied"}, "rejected"),
        t("info_requested", ADDR, {"received", "info_supplied"}, "info_requested"),
        t("info_supplied", ORIG, "info_requested", "info_supplied"),
        t("forwarded", ADDR, {"received", "info_supplied"}, "forwarded", guard=_third_region),
        t("progress", ADDR, {"accepted", "in_progress"}, "in_progress"),
        t("concluded", ADDR, {"accepted", "in_progress"}, "concluded"),
        t("withdrawn", ORIG, LEAD_OPEN, "withdrawn"),
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
