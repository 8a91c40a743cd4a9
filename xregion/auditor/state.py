"""Point-in-time reconstruction: the state of every referral at a past moment.

Deterministic replay of the stored messages that had reached the stream at ``at``, in
stream order, through the same :data:`xregion.lifecycle.LIFECYCLES` the adapters and the
coordinator's projection fold: an authentic event the lifecycle refuses leaves the referral
as it was (the projection records it as an anomaly), a forged or replayed one is ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from xregion.auditor.replay import Record, Replayer
from xregion.lifecycle import ReferralState
from xregion.regions import RegionRegistry
from xregion.signing import KeyRoster


def state_at(
    records: Iterable[Record],
    at: datetime,
    roster: KeyRoster,
    registry: RegionRegistry,
    *,
    referral: str | None = None,
) -> dict[str, ReferralState]:
    """Every referral's (or ``referral``'s) state after the messages stored at or before ``at``."""
    replayer = Replayer(roster, registry, keep_closed=True)
    replayer.run(records, until=at)
    states = replayer.states
    if referral is not None:
        return {referral: states[referral]} if referral in states else {}
    return dict(states)


def state_json(state: ReferralState) -> dict[str, Any]:
    """The stable JSON form of a referral state (``xregion audit state --json``)."""
    return {
        "referral_id": state.referral_id,
        "family": state.family,
        "origin": state.origin,
        "addressee": state.addressee,
        "state": state.state,
        "tracks": dict(sorted(state.tracks.items())),
        "events": state.events,
        "last_event_id": state.last_event_id,
        "handling": list(state.handling),
        "permissions": sorted(state.permissions),
    }
