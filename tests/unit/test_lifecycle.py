"""The pure referral lifecycles (ARCHITECTURE §3): lead, assist, recognition, share.

The expectations here are written by hand, independently of the transition tables in
:mod:`xregion.lifecycle.families`: explicit paths, an allow-list of every legal
(state, event, role) per family, and a small reference model built on that allow-list.
The machine must agree with them on every reachable state, for every event and sender.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import FrozenInstanceError
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xregion.errors import (
    DuplicateReferral,
    HandlingRestricted,
    LifecycleError,
    Misaddressed,
    UnknownReferral,
)
from xregion.ids import new_referral_id
from xregion.lifecycle import LIFECYCLES, Lifecycle, ReferralState, Role, Step

ORG, ADR = Role.ORIGIN, Role.ADDRESSEE  # who sends an event
REGIONS = ("BJ", "TJ", "HE")
ALL = "ALL"
FAMILIES = ("lead", "assist", "recognition", "share")

# --- the contract, written by hand -----------------------------------------------------------

OPENINGS: dict[str, dict[str, str]] = {
    "lead": {"submitted": "submitted"},
    "assist": {"requested": "requested"},
    "recognition": {"published": "published"},
    "share": {
        "blacklist_upserted": "published",
        "blacklist_removed": "published",
        "alert": "published",
        "bulletin": "published",
    },
}

EVENTS: dict[str, frozenset[str]] = {
    "lead": frozenset(
        {
            "submitted",
            "received",
            "accepted",
            "rejected",
            "info_requested",
            "info_supplied",
            "forwarded",
            "progress",
            "concluded",
            "withdrawn",
            "permission_requested",
            "permission_granted",
            "permission_refused",
        }
    ),
    "assist": frozenset(
        {
            "requested",
            "received",
            "accepted",
            "declined",
            "evidence_delivered",
            "completed",
            "cancelled",
        }
    ),
    "recognition": frozenset(
        {
            "published",
            "received",
            "recognized",
            "contested",
            "revoked",
            "revocation_acknowledged",
        }
    ),
    "share": frozenset({"blacklist_upserted", "blacklist_removed", "alert", "bulletin", "acknowledged"}),
}

# One-addressee families: (state, event, role) -> next state.
LEAD_ALLOWED: dict[tuple[str, str, Role], str] = {
    ("submitted", "received", ADR): "received",
    ("submitted", "withdrawn", ORG): "withdrawn",
    ("received", "accepted", ADR): "accepted",
    ("received", "rejected", ADR): "rejected",
    ("received", "info_requested", ADR): "info_requested",
    ("received", "forwarded", ADR): "forwarded",
    ("received", "withdrawn", ORG): "withdrawn",
    ("info_requested", "info_supplied", ORG): "info_supplied",
    ("info_requested", "withdrawn", ORG): "withdrawn",
    ("info_supplied", "accepted", ADR): "accepted",
    ("info_supplied", "rejected", ADR): "rejected",
    ("info_supplied", "info_requested", ADR): "info_requested",
    ("info_supplied", "forwarded", ADR): "forwarded",
    ("info_supplied", "withdrawn", ORG): "withdrawn",
    ("accepted", "progress", ADR): "in_progress",
    ("accepted", "concluded", ADR): "concluded",
    ("in_progress", "progress", ADR): "in_progress",
    ("in_progress", "concluded", ADR): "concluded",
    # Permissions against the handling codes: asked and answered in every live state,
    # without moving it.
    **{
        (live, event, role): live
        for live in ("submitted", "received", "info_requested", "info_supplied", "accepted", "in_progress")
        for event, role in (("permission_requested", ADR), ("permission_granted", ORG), ("permission_refused", ORG))
    },
}

ASSIST_ALLOWED: dict[tuple[str, str, Role], str] = {
    ("requested", "received", ADR): "received",
    ("requested", "cancelled", ORG): "cancelled",
    ("received", "accepted", ADR): "accepted",
    ("received", "declined", ADR): "declined",
    ("received", "cancelled", ORG): "cancelled",
    ("accepted", "evidence_delivered", ADR): "evidence_delivered",
    ("accepted", "completed", ADR): "completed",
    ("accepted", "cancelled", ORG): "cancelled",
    ("evidence_delivered", "evidence_delivered", ADR): "evidence_delivered",
    ("evidence_delivered", "completed", ADR): "completed",
    ("evidence_delivered", "cancelled", ORG): "cancelled",
}

SINGLE_ALLOWED = {"lead": LEAD_ALLOWED, "assist": ASSIST_ALLOWED}

# Track families. Origin: (overall state, event) -> overall state.
# Addressee: (overall state, own track, event) -> own track. A track not yet written is "pending".
RECOGNITION_ORIGIN: dict[tuple[str, str], str] = {("published", "revoked"): "revoked"}
RECOGNITION_ADDRESSEE: dict[tuple[str, str, str], str] = {
    ("published", "pending", "received"): "received",
    ("revoked", "pending", "received"): "received",
    ("published", "received", "recognized"): "recognized",
    ("published", "received", "contested"): "contested",
    **{
        ("revoked", track, "revocation_acknowledged"): "revocation_acknowledged"
        for track in ("pending", "received", "recognized", "contested")
    },
}
SHARE_ORIGIN: dict[tuple[str, str], str] = {}
SHARE_ADDRESSEE: dict[tuple[str, str, str], str] = {
    ("published", "pending", "acknowledged"): "acknowledged",
}
TRACK_ALLOWED = {
    "recognition": (RECOGNITION_ORIGIN, RECOGNITION_ADDRESSEE),
    "share": (SHARE_ORIGIN, SHARE_ADDRESSEE),
}

STATES: dict[str, frozenset[str]] = {
    "lead": frozenset(
        {
            "submitted",
            "received",
            "accepted",
            "rejected",
            "info_requested",
            "info_supplied",
            "forwarded",
            "in_progress",
            "concluded",
            "withdrawn",
        }
    ),
    "assist": frozenset(
        {"requested", "received", "accepted", "declined", "evidence_delivered", "completed", "cancelled"}
    ),
    "recognition": frozenset({"published", "revoked"}),
    "share": frozenset({"published"}),
}
TRACK_STATES: dict[str, frozenset[str]] = {
    "recognition": frozenset({"received", "recognized", "contested", "revocation_acknowledged"}),
    "share": frozenset({"acknowledged"}),
}
TERMINAL: dict[str, frozenset[str]] = {
    "lead": frozenset({"rejected", "forwarded", "concluded", "withdrawn"}),
    "assist": frozenset({"declined", "completed", "cancelled"}),
}
TRACK_TERMINAL = {"recognition": "revocation_acknowledged", "share": "acknowledged"}

# (origin, addressee) pairs each family may be opened with.
PAIRS = [(o, a) for o in REGIONS for a in REGIONS if o != a]
ADDRESSING: dict[str, list[tuple[str, str]]] = {
    "lead": PAIRS,
    "assist": PAIRS,
    "recognition": PAIRS + [(o, ALL) for o in REGIONS],
    "share": [(o, ALL) for o in REGIONS],
}
ALL_ADDRESSINGS = [(f, o, a) for f in FAMILIES for (o, a) in ADDRESSING[f]]


# --- helpers --------------------------------------------------------------------------------


def third(*regions: str) -> str:
    """The one region among BJ/TJ/HE that is none of ``regions``."""
    (rest,) = [r for r in REGIONS if r not in regions]
    return rest


def role_of(origin: str, addressee: str, sender: str) -> Role | None:
    if sender == origin:
        return ORG
    if addressee in (sender, ALL):
        return ADR
    return None


def addressed(origin: str, addressee: str, sender: str) -> str:
    """Where a correctly addressed event of ``sender`` goes."""
    return addressee if sender == origin else origin


def data_for(event: str, origin: str, addressee: str) -> dict[str, Any]:
    if event == "forwarded":
        return {"to_region": third(origin, addressee)}
    if event in ("permission_requested", "permission_granted"):
        return {"purpose": "onward_sharing", "target_region": third(origin, addressee)}
    if event == "permission_refused":
        return {"purpose": "judicial_use"}
    return {}


class Referral:
    """Drives one referral through the machine, addressing every event correctly."""

    def __init__(
        self, family: str, origin: str, addressee: str, opening: str | None = None, rid: str | None = None
    ) -> None:
        self.family, self.origin, self.addressee = family, origin, addressee
        self.rid = rid or new_referral_id(origin)
        self.steps: list[Step] = []
        self.history: list[ReferralState] = []
        self.state: ReferralState | None = None
        self.send(opening or next(iter(OPENINGS[family])), origin)

    def step(self, event: str, sender: str, *, to: str | None = None, data: Mapping[str, Any] | None = None) -> Step:
        return Step(
            event_type=f"{self.family}.{event}",
            sender=sender,
            to=to if to is not None else addressed(self.origin, self.addressee, sender),
            referral_id=self.rid,
            event_id=f"e{len(self.steps) + 1}",
            data=dict(data if data is not None else data_for(event, self.origin, self.addressee)),
        )

    def send(self, event: str, sender: str, **kw: Any) -> ReferralState:
        step = self.step(event, sender, **kw)
        self.state = LIFECYCLES.apply(self.state, step)
        self.steps.append(step)
        self.history.append(self.state)
        return self.state

    def refuse(
        self, event: str, sender: str, error: type[LifecycleError] = LifecycleError, **kw: Any
    ) -> LifecycleError:
        before = self.state
        snapshot = _snapshot(before)
        with pytest.raises(error) as info:
            LIFECYCLES.apply(before, self.step(event, sender, **kw))
        assert self.state is before and _snapshot(before) == snapshot
        return info.value


def _snapshot(state: ReferralState | None) -> Any:
    if state is None:
        return None
    return (
        state.referral_id,
        state.family,
        state.origin,
        state.addressee,
        state.state,
        dict(state.tracks),
        state.events,
        state.last_event_id,
    )


def key(state: ReferralState) -> tuple[str, tuple[tuple[str, str], ...]]:
    """What a state is, ignoring its event count."""
    return state.state, tuple(sorted(state.tracks.items()))


def assert_names(err: LifecycleError, state: str | None, event: str, sender: str) -> None:
    """The error names the state, the event and the sender, in its details and its message."""
    assert err.details["state"] == state
    assert err.details["event"] == event
    assert err.details["sender"] == sender
    assert f"'{event}'" in err.message or f".{event} " in err.message
    assert sender in err.message
    if state is not None:
        assert f"'{state}'" in err.message
    assert err.to_reason()["code"] == err.code


def model(family: str, state: ReferralState, event: str, sender: str) -> tuple[str, tuple[tuple[str, str], ...]] | None:
    """The hand-written expectation: the next state key, or None when illegal."""
    role = role_of(state.origin, state.addressee, sender)
    if role is None or event in OPENINGS[family]:
        return None
    if family in SINGLE_ALLOWED:
        target = SINGLE_ALLOWED[family].get((state.state, event, role))
        return None if target is None else (target, ())
    on_origin, on_addressee = TRACK_ALLOWED[family]
    if role is ORG:
        target = on_origin.get((state.state, event))
        return None if target is None else (target, key(state)[1])
    track = state.tracks.get(sender, "pending")
    target = on_addressee.get((state.state, track, event))
    if target is None:
        return None
    return state.state, tuple(sorted({**state.tracks, sender: target}.items()))


def expected_current(family: str, state: ReferralState, sender: str) -> str:
    """The state an error must name: the sender's track for an addressee of a track family."""
    if family in TRACK_ALLOWED and role_of(state.origin, state.addressee, sender) is ADR:
        return state.tracks.get(sender, "pending")
    return state.state


def reachable(family: str, origin: str, addressee: str) -> list[ReferralState]:
    """Every distinct state the machine reaches (breadth first over correct addressing)."""
    seen: dict[Any, ReferralState] = {}
    queue: deque[ReferralState] = deque()
    rid = new_referral_id(origin)
    for opening in OPENINGS[family]:
        ref = Referral(family, origin, addressee, opening, rid=rid)
        assert ref.state is not None
        queue.append(ref.state)
    while queue:
        state = queue.popleft()
        if key(state) in seen:
            continue
        seen[key(state)] = state
        for event in sorted(EVENTS[family]):
            for sender in REGIONS:
                if model(family, state, event, sender) is None:
                    continue
                step = Step(
                    f"{family}.{event}",
                    sender,
                    addressed(origin, addressee, sender),
                    rid,
                    "x",
                    data_for(event, origin, addressee),
                )
                queue.append(LIFECYCLES.apply(state, step))
    return list(seen.values())


# --- the tables agree with the hand-written contract ----------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_events_openings_and_roles(family: str) -> None:
    lc = LIFECYCLES[family]
    assert isinstance(lc, Lifecycle)
    assert lc.family == family
    assert lc.events == EVENTS[family]
    assert dict(lc.openings) == OPENINGS[family]
    for event in OPENINGS[family]:
        assert lc.role_of(event) is ORG
    for event in EVENTS[family] - set(OPENINGS[family]):
        roles = {r for k, r in _legal_roles(family) if k == event}
        assert roles == {lc.role_of(event)}
    with pytest.raises(KeyError):
        lc.role_of("no_such_event")


def _legal_roles(family: str) -> set[tuple[str, Role]]:
    if family in SINGLE_ALLOWED:
        return {(event, role) for (_, event, role) in SINGLE_ALLOWED[family]}
    on_origin, on_addressee = TRACK_ALLOWED[family]
    return {(e, ORG) for (_, e) in on_origin} | {(e, ADR) for (_, _, e) in on_addressee}


def test_terminal_sets_match() -> None:
    for family, terminal in TERMINAL.items():
        assert LIFECYCLES[family].terminal == terminal
        assert not LIFECYCLES[family].tracked
    for family, track_terminal in TRACK_TERMINAL.items():
        assert LIFECYCLES[family].tracked
        assert LIFECYCLES[family].track_terminal == {track_terminal}


def _table_transitions(lc: Lifecycle) -> set[tuple[Any, ...]]:
    """Every (state…, event, role) the table of ``lc`` declares legal."""
    out: set[tuple[Any, ...]] = set()
    for tr in lc.transitions:
        for source in tr.source:
            if not lc.tracked:
                out.add((source, tr.event, tr.by))
            elif tr.by is ORG:
                out.add((source, tr.event))
            else:
                for overall in tr.when or STATES[lc.family]:
                    out.add((overall, source, tr.event))
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_table_declares_exactly_the_allow_list(family: str) -> None:
    """So the table-driven test below exercises every transition of the table."""
    declared = _table_transitions(LIFECYCLES[family])
    if family in SINGLE_ALLOWED:
        assert declared == set(SINGLE_ALLOWED[family])
    else:
        on_origin, on_addressee = TRACK_ALLOWED[family]
        assert declared == set(on_origin) | set(on_addressee)


# --- every legal transition, table-driven ---------------------------------------------------

# How to reach each state of a one-addressee family (origin BJ, addressee TJ).
SINGLE_PATHS: dict[str, dict[str, list[tuple[str, str]]]] = {
    "lead": {
        "submitted": [],
        "received": [("received", "TJ")],
        "info_requested": [("received", "TJ"), ("info_requested", "TJ")],
        "info_supplied": [("received", "TJ"), ("info_requested", "TJ"), ("info_supplied", "BJ")],
        "accepted": [("received", "TJ"), ("accepted", "TJ")],
        "in_progress": [("received", "TJ"), ("accepted", "TJ"), ("progress", "TJ")],
    },
    "assist": {
        "requested": [],
        "received": [("received", "TJ")],
        "accepted": [("received", "TJ"), ("accepted", "TJ")],
        "evidence_delivered": [("received", "TJ"), ("accepted", "TJ"), ("evidence_delivered", "TJ")],
    },
}
SENDER_OF = {ORG: "BJ", ADR: "TJ"}


@pytest.mark.parametrize(
    ("family", "source", "event", "role", "target"),
    [(f, s, e, r, t) for f, table in SINGLE_ALLOWED.items() for (s, e, r), t in table.items()],
)
def test_every_legal_single_transition(family: str, source: str, event: str, role: Role, target: str) -> None:
    ref = Referral(family, "BJ", "TJ")
    for ev, sender in SINGLE_PATHS[family][source]:
        ref.send(ev, sender)
    assert ref.state is not None and ref.state.state == source
    before = ref.state
    after = ref.send(event, SENDER_OF[role])
    assert after.state == target
    assert after.events == before.events + 1 == len(ref.steps)
    assert after.last_event_id == ref.steps[-1].event_id
    assert (after.referral_id, after.origin, after.addressee, after.family) == (ref.rid, "BJ", "TJ", family)
    assert dict(after.tracks) == {}
    assert before.state == source  # frozen: the previous state is untouched


# How an addressee's track reaches a state, given the overall state.
TRACK_PATHS: dict[tuple[str, str, str], list[str]] = {
    ("recognition", "published", "pending"): [],
    ("recognition", "published", "received"): ["received"],
    ("recognition", "revoked", "pending"): ["@revoked"],
    ("recognition", "revoked", "received"): ["received", "@revoked"],
    ("recognition", "revoked", "recognized"): ["received", "recognized", "@revoked"],
    ("recognition", "revoked", "contested"): ["received", "contested", "@revoked"],
    ("share", "published", "pending"): [],
}


@pytest.mark.parametrize(
    ("family", "overall", "track", "event", "target", "addressee"),
    [
        (f, s, tr, e, t, to)
        for f, (_, on_a) in TRACK_ALLOWED.items()
        for (s, tr, e), t in on_a.items()
        for to in ("TJ", ALL)
        if f != "share" or to == ALL  # share is always a broadcast
    ],
)
def test_every_legal_addressee_transition(
    family: str, overall: str, track: str, event: str, target: str, addressee: str
) -> None:
    ref = Referral(family, "BJ", addressee)
    for ev in TRACK_PATHS[(family, overall, track)]:
        if ev.startswith("@"):
            ref.send(ev[1:], "BJ")
        else:
            ref.send(ev, "TJ")
    assert ref.state is not None
    assert ref.state.state == overall
    assert ref.state.tracks.get("TJ", "pending") == track
    after = ref.send(event, "TJ")
    assert after.state == overall
    assert dict(after.tracks)["TJ"] == target
    assert "HE" not in after.tracks  # HE's track is its own
    assert after.events == len(ref.steps)


@pytest.mark.parametrize("addressee", ["TJ", ALL])
def test_every_legal_origin_transition_of_recognition(addressee: str) -> None:
    assert set(RECOGNITION_ORIGIN) == {("published", "revoked")}
    ref = Referral("recognition", "BJ", addressee)
    ref.send("received", "TJ")
    after = ref.send("revoked", "BJ")
    assert after.state == "revoked"
    assert dict(after.tracks) == {"TJ": "received"}


@pytest.mark.parametrize("opening", sorted(OPENINGS["share"]))
@pytest.mark.parametrize("origin", REGIONS)
def test_every_share_opening(origin: str, opening: str) -> None:
    ref = Referral("share", origin, ALL, opening)
    assert ref.state is not None
    assert (ref.state.state, ref.state.origin, ref.state.addressee) == ("published", origin, ALL)
    assert ref.state.is_broadcast


# --- explicit paths, written out --------------------------------------------------------------


def _states(ref: Referral) -> list[str]:
    return [s.state for s in ref.history]


def test_lead_happy_path_with_two_progress_reports() -> None:
    ref = Referral("lead", "BJ", "TJ")
    for event in ("received", "accepted", "progress", "progress", "concluded"):
        ref.send(event, "TJ")
    assert _states(ref) == ["submitted", "received", "accepted", "in_progress", "in_progress", "concluded"]
    final = ref.history[-1]
    assert final.events == 6 and final.last_event_id == "e6"
    assert final.origin == "BJ" and final.addressee == "TJ" and not final.is_broadcast
    assert LIFECYCLES.replay(ref.steps) == final
    err = ref.refuse("progress", "TJ")
    assert_names(err, "concluded", "progress", "TJ")
    assert "terminal" in err.message


def test_lead_info_loop() -> None:
    ref = Referral("lead", "HE", "BJ")
    ref.send("received", "BJ")
    for _ in range(3):
        ref.send("info_requested", "BJ")
        ref.refuse("info_requested", "BJ")  # one request at a time
        ref.refuse("accepted", "BJ")  # the receiver waits for the information
        ref.send("info_supplied", "HE")
        ref.refuse("info_supplied", "HE")
    ref.send("accepted", "BJ")
    assert _states(ref) == ["submitted", "received"] + ["info_requested", "info_supplied"] * 3 + ["accepted"]
    ref.refuse("info_requested", "BJ")
    ref.refuse("info_supplied", "HE")


def test_lead_info_supplied_only_by_origin_and_only_when_requested() -> None:
    ref = Referral("lead", "BJ", "TJ")
    ref.send("received", "TJ")
    ref.refuse("info_supplied", "BJ")
    ref.send("info_requested", "TJ")
    err = ref.refuse("info_supplied", "TJ")
    assert_names(err, "info_requested", "info_supplied", "TJ")


def test_lead_forwarded_to_a_third_region() -> None:
    ref = Referral("lead", "BJ", "TJ")
    ref.send("received", "TJ")
    final = ref.send("forwarded", "TJ", data={"to_region": "HE"})
    assert final.state == "forwarded"
    for event in ("accepted", "progress", "concluded", "rejected", "forwarded"):
        ref.refuse(event, "TJ", data={"to_region": "HE"})
    ref.refuse("withdrawn", "BJ")


def test_lead_forwarded_after_info_supplied() -> None:
    ref = Referral("lead", "TJ", "HE")
    for event, sender in [("received", "HE"), ("info_requested", "HE"), ("info_supplied", "TJ")]:
        ref.send(event, sender)
    assert ref.send("forwarded", "HE", data={"to_region": "BJ"}).state == "forwarded"


@pytest.mark.parametrize("back_to", ["origin", "addressee"])
def test_lead_cannot_be_forwarded_back(back_to: str) -> None:
    ref = Referral("lead", "BJ", "TJ")
    ref.send("received", "TJ")
    target = "BJ" if back_to == "origin" else "TJ"
    err = ref.refuse("forwarded", "TJ", data={"to_region": target})
    assert type(err) is LifecycleError
    assert_names(err, "received", "forwarded", "TJ")
    assert "third region" in err.message and target in err.message
    assert ref.send("forwarded", "TJ", data={"to_region": "HE"}).state == "forwarded"


@pytest.mark.parametrize(
    "path",
    [
        [],
        [("received", "TJ")],
        [("received", "TJ"), ("info_requested", "TJ")],
        [("received", "TJ"), ("info_requested", "TJ"), ("info_supplied", "BJ")],
    ],
)
def test_lead_withdrawn_before_acceptance(path: list[tuple[str, str]]) -> None:
    ref = Referral("lead", "BJ", "TJ")
    for event, sender in path:
        ref.send(event, sender)
    assert ref.send("withdrawn", "BJ").state == "withdrawn"
    ref.refuse("withdrawn", "BJ")
    ref.refuse("accepted", "TJ")
    ref.refuse("received", "TJ")


def test_lead_not_withdrawn_after_acceptance_nor_by_the_addressee() -> None:
    ref = Referral("lead", "BJ", "TJ")
    ref.refuse("withdrawn", "TJ")
    ref.send("received", "TJ")
    ref.send("accepted", "TJ")
    err = ref.refuse("withdrawn", "BJ")
    assert_names(err, "accepted", "withdrawn", "BJ")
    ref.send("progress", "TJ")
    ref.refuse("withdrawn", "BJ")


def test_lead_rejected_is_terminal() -> None:
    ref = Referral("lead", "BJ", "TJ")
    ref.refuse("accepted", "TJ")  # not before the receipt
    ref.send("received", "TJ")
    ref.send("rejected", "TJ")
    for event in EVENTS["lead"]:
        for sender in ("BJ", "TJ"):
            ref.refuse(event, sender)


def test_assist_with_two_evidence_deliveries_then_completed() -> None:
    ref = Referral("assist", "TJ", "BJ")
    for event in ("received", "accepted", "evidence_delivered", "evidence_delivered", "completed"):
        ref.send(event, "BJ")
    assert _states(ref) == [
        "requested",
        "received",
        "accepted",
        "evidence_delivered",
        "evidence_delivered",
        "completed",
    ]
    assert ref.history[-1].events == 6
    ref.refuse("evidence_delivered", "BJ")
    ref.refuse("cancelled", "TJ")


def test_assist_declined_and_cancelled() -> None:
    declined = Referral("assist", "BJ", "HE")
    declined.refuse("declined", "HE")  # not before the receipt
    declined.send("received", "HE")
    declined.refuse("evidence_delivered", "HE")  # not before acceptance
    assert declined.send("declined", "HE").state == "declined"
    declined.refuse("cancelled", "BJ")

    cancelled = Referral("assist", "BJ", "HE")
    for event in ("received", "accepted", "evidence_delivered"):
        cancelled.send(event, "HE")
    assert cancelled.send("cancelled", "BJ").state == "cancelled"
    err = cancelled.refuse("completed", "HE")
    assert_names(err, "cancelled", "completed", "HE")
    assert "terminal" in err.message


def test_recognition_to_all_recognized_contested_revoked_and_acknowledged() -> None:
    ref = Referral("recognition", "BJ", ALL)
    ref.send("received", "TJ")
    ref.send("recognized", "TJ")
    ref.send("received", "HE")
    state = ref.send("contested", "HE")
    assert state.state == "published"
    assert dict(state.tracks) == {"TJ": "recognized", "HE": "contested"}
    ref.refuse("contested", "TJ")  # an answer is given once
    ref.refuse("revocation_acknowledged", "TJ")  # nothing to acknowledge yet
    state = ref.send("revoked", "BJ")
    assert state.state == "revoked"
    assert dict(state.tracks) == {"TJ": "recognized", "HE": "contested"}
    ref.refuse("revoked", "BJ")
    ref.refuse("recognized", "HE")  # no answers to a revoked result
    ref.send("revocation_acknowledged", "TJ")
    state = ref.send("revocation_acknowledged", "HE")
    assert dict(state.tracks) == {"TJ": "revocation_acknowledged", "HE": "revocation_acknowledged"}
    assert state.events == 8
    err = ref.refuse("revocation_acknowledged", "HE")
    assert_names(err, "revocation_acknowledged", "revocation_acknowledged", "HE")
    assert "terminal" in err.message
    assert LIFECYCLES.replay(ref.steps) == state


def test_recognition_to_one_region() -> None:
    ref = Referral("recognition", "HE", "BJ")
    ref.send("received", "BJ")
    ref.send("recognized", "BJ")
    err = ref.refuse("received", "TJ")  # TJ is not an addressee
    assert_names(err, "published", "received", "TJ")
    assert ref.send("revoked", "HE").state == "revoked"
    assert dict(ref.send("revocation_acknowledged", "BJ").tracks) == {"BJ": "revocation_acknowledged"}


def test_recognition_revoked_before_any_answer() -> None:
    ref = Referral("recognition", "TJ", ALL)
    ref.send("revoked", "TJ")
    ref.send("received", "BJ")  # a late receipt is still recorded
    ref.refuse("recognized", "BJ")
    ref.send("revocation_acknowledged", "BJ")
    state = ref.send("revocation_acknowledged", "HE")  # straight from pending
    assert dict(state.tracks) == {"BJ": "revocation_acknowledged", "HE": "revocation_acknowledged"}


def test_share_blacklist_upserted_acknowledged_by_both_other_regions() -> None:
    ref = Referral("share", "BJ", ALL, "blacklist_upserted")
    assert ref.state is not None and dict(ref.state.tracks) == {}
    ref.send("acknowledged", "TJ")
    state = ref.send("acknowledged", "HE")
    assert state.state == "published"
    assert dict(state.tracks) == {"TJ": "acknowledged", "HE": "acknowledged"}
    for sender in ("TJ", "HE"):
        err = ref.refuse("acknowledged", sender)
        assert_names(err, "acknowledged", "acknowledged", sender)
    err = ref.refuse("acknowledged", "BJ")  # the origin does not acknowledge its broadcast
    assert_names(err, "published", "acknowledged", "BJ")


def test_share_each_addressee_has_its_own_track() -> None:
    ref = Referral("share", "TJ", ALL, "alert")
    ref.send("acknowledged", "BJ")
    ref.refuse("acknowledged", "BJ")  # BJ acknowledging twice is refused
    state = ref.send("acknowledged", "HE")  # HE's first acknowledgement is fine
    assert dict(state.tracks) == {"BJ": "acknowledged", "HE": "acknowledged"}


# --- systematic: every reachable state × every event × every sender ---------------------------


@pytest.mark.parametrize(("family", "origin", "addressee"), ALL_ADDRESSINGS)
def test_systematic_transitions(family: str, origin: str, addressee: str) -> None:
    states = reachable(family, origin, addressee)
    known = {s.state for s in states}
    assert known <= STATES[family]
    legal = refused = 0
    for state in states:
        snapshot = _snapshot(state)
        for event in sorted(EVENTS[family]):
            for sender in REGIONS:
                expected = model(family, state, event, sender)
                step = Step(
                    f"{family}.{event}",
                    sender,
                    addressed(origin, addressee, sender),
                    state.referral_id,
                    "next",
                    data_for(event, origin, addressee),
                )
                try:
                    after = LIFECYCLES.apply(state, step)
                except LifecycleError as err:
                    assert expected is None, (key(state), event, sender, err)
                    if event in OPENINGS[family]:
                        assert isinstance(err, DuplicateReferral)
                        assert_names(err, state.state, event, sender)
                    else:
                        assert type(err) is LifecycleError
                        assert_names(err, expected_current(family, state, sender), event, sender)
                    refused += 1
                else:
                    assert expected is not None, (key(state), event, sender)
                    assert key(after) == expected
                    assert after.events == state.events + 1
                    assert after.last_event_id == "next"
                    legal += 1
                assert _snapshot(state) == snapshot
    assert legal and refused


@pytest.mark.parametrize("family", ["lead", "assist"])
def test_terminal_states_accept_nothing(family: str) -> None:
    states = [s for s in reachable(family, "BJ", "TJ") if s.state in TERMINAL[family]]
    assert {s.state for s in states} == TERMINAL[family]
    lc = LIFECYCLES[family]
    for state in states:
        assert lc.allowed(state, ORG) == set() and lc.allowed(state, ADR) == set()
        for event in sorted(EVENTS[family] - set(OPENINGS[family])):
            for sender in ("BJ", "TJ"):
                step = Step(
                    f"{family}.{event}",
                    sender,
                    addressed("BJ", "TJ", sender),
                    state.referral_id,
                    "x",
                    data_for(event, "BJ", "TJ"),
                )
                with pytest.raises(LifecycleError) as info:
                    LIFECYCLES.apply(state, step)
                assert_names(info.value, state.state, event, sender)
                assert "terminal" in info.value.message
                assert info.value.details["allowed"] == []


@pytest.mark.parametrize(("family", "origin", "addressee"), [x for x in ALL_ADDRESSINGS if x[0] in TRACK_TERMINAL])
def test_terminal_tracks_accept_nothing(family: str, origin: str, addressee: str) -> None:
    lc = LIFECYCLES[family]
    terminal = TRACK_TERMINAL[family]
    seen = 0
    for state in reachable(family, origin, addressee):
        for sender, track in state.tracks.items():
            if track != terminal:
                continue
            seen += 1
            assert lc.allowed(state, ADR, sender) == set()
            for event in sorted(EVENTS[family] - set(OPENINGS[family])):
                step = Step(f"{family}.{event}", sender, origin, state.referral_id, "x")
                with pytest.raises(LifecycleError) as info:
                    LIFECYCLES.apply(state, step)
                assert_names(info.value, terminal, event, sender)
                assert "terminal" in info.value.message
    assert seen


@pytest.mark.parametrize(("family", "origin", "addressee"), ALL_ADDRESSINGS)
def test_allowed_matches_the_allow_list(family: str, origin: str, addressee: str) -> None:
    lc = LIFECYCLES[family]
    for state in reachable(family, origin, addressee):
        for sender in REGIONS:
            role = role_of(origin, addressee, sender)
            if role is None:
                continue
            expected = {e for e in EVENTS[family] if model(family, state, e, sender) is not None}
            assert lc.allowed(state, role, sender) == expected, (key(state), sender)


# --- sender rules -----------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["lead", "assist", "recognition"])
def test_third_region_is_refused(family: str) -> None:
    for state in reachable(family, "BJ", "TJ"):
        for event in sorted(EVENTS[family] - set(OPENINGS[family])):
            for to in ("BJ", "TJ", ALL):
                step = Step(f"{family}.{event}", "HE", to, state.referral_id, "x", {"to_region": "HE"})
                with pytest.raises(LifecycleError) as info:
                    LIFECYCLES.apply(state, step)
                assert type(info.value) is LifecycleError
                assert_names(info.value, state.state, event, "HE")
                assert "neither origin" in info.value.message


@pytest.mark.parametrize(("family", "origin", "addressee"), ALL_ADDRESSINGS)
def test_misaddressed_events_are_refused(family: str, origin: str, addressee: str) -> None:
    """Origin events go to the addressee, addressee events to the origin; nothing else."""
    checked = 0
    for state in reachable(family, origin, addressee):
        for event in sorted(EVENTS[family] - set(OPENINGS[family])):
            for sender in REGIONS:
                if model(family, state, event, sender) is None:
                    continue
                right = addressed(origin, addressee, sender)
                for to in (*REGIONS, ALL):
                    if to == right:
                        continue
                    step = Step(
                        f"{family}.{event}", sender, to, state.referral_id, "x", data_for(event, origin, addressee)
                    )
                    with pytest.raises(Misaddressed) as info:
                        LIFECYCLES.apply(state, step)
                    assert info.value.code == "misaddressed"
                    assert_names(info.value, state.state, event, sender)
                    assert right in info.value.message and to in info.value.message
                    checked += 1
    assert checked


@pytest.mark.parametrize(("family", "opening"), [("lead", "submitted"), ("assist", "requested")])
def test_lead_and_assist_cannot_be_broadcast(family: str, opening: str) -> None:
    step = Step(f"{family}.{opening}", "BJ", ALL, new_referral_id("BJ"), "e1", {})
    with pytest.raises(Misaddressed) as info:
        LIFECYCLES.apply(None, step)
    assert info.value.details["event"] == opening and info.value.details["sender"] == "BJ"
    assert ALL not in {s.addressee for s in reachable(family, "BJ", "TJ")}


@pytest.mark.parametrize("opening", sorted(OPENINGS["share"]))
@pytest.mark.parametrize("to", ["BJ", "TJ", "HE"])
def test_share_must_be_broadcast(opening: str, to: str) -> None:
    step = Step(f"share.{opening}", "HE", to, new_referral_id("HE"), "e1", {})
    with pytest.raises(Misaddressed) as info:
        LIFECYCLES.apply(None, step)
    assert ALL in info.value.message
    assert info.value.details["event"] == opening and info.value.details["sender"] == "HE"


@pytest.mark.parametrize("family", ["lead", "assist", "recognition"])  # share goes to ALL
def test_referral_cannot_be_addressed_to_its_own_origin(family: str) -> None:
    opening = next(iter(OPENINGS[family]))
    step = Step(f"{family}.{opening}", "TJ", "TJ", new_referral_id("TJ"), "e1", {})
    with pytest.raises(Misaddressed) as info:
        LIFECYCLES.apply(None, step)
    assert info.value.details["sender"] == "TJ"


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("owner", ["TJ", "HE", "B", "bogus"])
def test_referral_id_must_be_prefixed_by_the_sender(family: str, owner: str) -> None:
    to = ALL if family == "share" else "TJ" if owner != "TJ" else "HE"
    rid = new_referral_id(owner) if owner in REGIONS else f"{owner}-{new_referral_id('BJ')[3:]}"
    for opening in OPENINGS[family]:
        step = Step(f"{family}.{opening}", "BJ", to, rid, "e1", {})
        with pytest.raises(LifecycleError) as info:
            LIFECYCLES.apply(None, step)
        assert info.value.details == {"referral_id": rid, "state": None, "event": opening, "sender": "BJ"}
        assert rid in info.value.message and "BJ" in info.value.message


def test_new_referral_ids_are_owned() -> None:
    rid = new_referral_id("BJ")
    assert rid.startswith("BJ-")
    state = LIFECYCLES.apply(None, Step("lead.submitted", "BJ", "TJ", rid, "e1", {}))
    assert (state.referral_id, state.origin, state.addressee, state.state, state.events) == (
        rid,
        "BJ",
        "TJ",
        "submitted",
        1,
    )
    assert state.last_event_id == "e1"


@pytest.mark.parametrize(("family", "origin", "addressee"), ALL_ADDRESSINGS)
def test_opening_again_is_a_duplicate(family: str, origin: str, addressee: str) -> None:
    for state in reachable(family, origin, addressee):
        for opening in OPENINGS[family]:
            for sender in REGIONS:
                step = Step(f"{family}.{opening}", sender, addressee, state.referral_id, "x", {})
                with pytest.raises(DuplicateReferral) as info:
                    LIFECYCLES.apply(state, step)
                assert info.value.code == "duplicate_referral"
                assert_names(info.value, state.state, opening, sender)


@pytest.mark.parametrize("family", FAMILIES)
def test_later_events_cannot_open_a_referral(family: str) -> None:
    for event in sorted(EVENTS[family] - set(OPENINGS[family])):
        step = Step(f"{family}.{event}", "BJ", ALL if family == "share" else "TJ", new_referral_id("BJ"), "e1", {})
        with pytest.raises(LifecycleError) as info:
            LIFECYCLES.apply(None, step)
        assert type(info.value) is LifecycleError
        assert info.value.details == {"referral_id": step.referral_id, "state": None, "event": event, "sender": "BJ"}
        assert f"'{event}'" in info.value.message and "unknown" in info.value.message


def test_family_and_referral_routing() -> None:
    ref = Referral("lead", "BJ", "TJ")
    state = ref.state
    with pytest.raises(LifecycleError) as info:  # an assist event on a lead referral
        LIFECYCLES.apply(state, Step("assist.received", "TJ", "BJ", ref.rid, "x"))
    assert info.value.details["state"] == "submitted"
    assert info.value.details["event"] == "received"
    assert info.value.details["sender"] == "TJ"
    assert "assist.received" in info.value.message
    other = new_referral_id("BJ")
    with pytest.raises(LifecycleError) as info:  # an event of another referral
        LIFECYCLES.apply(state, Step("lead.received", "TJ", "BJ", other, "x"))
    assert info.value.details["state"] == "submitted"
    assert info.value.details["event"] == "received"
    assert info.value.details["sender"] == "TJ"
    with pytest.raises(LifecycleError) as info:
        LIFECYCLES.apply(None, Step("nosuch.thing", "BJ", "TJ", ref.rid))
    assert info.value.details == {"family": "nosuch"}
    with pytest.raises(LifecycleError):  # unknown event of a known family
        LIFECYCLES.apply(state, Step("lead.teleported", "TJ", "BJ", ref.rid))
    with pytest.raises(UnknownReferral):
        LIFECYCLES.replay([])
    assert {lc.family for lc in LIFECYCLES} == {*FAMILIES, "escalation"}  # escalation: the coordinator's


def test_states_are_frozen() -> None:
    ref = Referral("share", "BJ", ALL)
    ref.send("acknowledged", "TJ")
    state = ref.state
    assert state is not None
    with pytest.raises(FrozenInstanceError):
        state.state = "hacked"  # type: ignore[misc]
    with pytest.raises(TypeError):
        state.tracks["TJ"] = "pending"  # type: ignore[index]
    step = ref.steps[0]
    with pytest.raises(FrozenInstanceError):
        step.sender = "HE"  # type: ignore[misc]
    assert step.family == "share" and step.event == "blacklist_upserted"


# --- property-based: random legal walks ----------------------------------------------------------


def addressees_of(origin: str, addressee: str) -> list[str]:
    return [r for r in REGIONS if r != origin] if addressee == ALL else [addressee]


def candidates(state: ReferralState) -> list[tuple[str, str]]:
    """(event, sender) pairs allowed now, from the machine's own ``allowed``."""
    lc = LIFECYCLES[state.family]
    out = [(e, state.origin) for e in lc.allowed(state, ORG)]
    for sender in addressees_of(state.origin, state.addressee):
        out += [(e, sender) for e in lc.allowed(state, ADR, sender)]
    return sorted(out)


@st.composite
def walks(draw: st.DrawFn, max_steps: int = 14) -> list[Step]:
    family = draw(st.sampled_from(FAMILIES))
    origin, addressee = draw(st.sampled_from(ADDRESSING[family]))
    rid = new_referral_id(origin)
    opening = draw(st.sampled_from(sorted(OPENINGS[family])))
    steps = [Step(f"{family}.{opening}", origin, addressee, rid, "e1", {})]
    state = LIFECYCLES.apply(None, steps[0])
    for i in range(draw(st.integers(0, max_steps))):
        options = candidates(state)
        if not options:
            break
        event, sender = draw(st.sampled_from(options))
        step = Step(
            f"{family}.{event}",
            sender,
            addressed(origin, addressee, sender),
            rid,
            f"e{i + 2}",
            data_for(event, origin, addressee),
        )
        steps.append(step)
        state = LIFECYCLES.apply(state, step)
    return steps


def _assert_known(state: ReferralState) -> None:
    assert state.state in STATES[state.family]
    for sender, track in state.tracks.items():
        assert state.family in TRACK_STATES
        assert track in TRACK_STATES[state.family]
        assert sender in REGIONS and sender != state.origin


@settings(max_examples=200, deadline=None)
@given(walks())
def test_replay_of_a_legal_walk_is_deterministic(steps: list[Step]) -> None:
    family = steps[0].family
    first = LIFECYCLES.replay(steps)
    second = LIFECYCLES.replay(steps)
    assert first == second
    assert LIFECYCLES.replay(list(steps)) == first
    assert first.events == len(steps)
    assert first.last_event_id == steps[-1].event_id
    assert first.family == family and first.referral_id == steps[0].referral_id

    # Every prefix is legal, in a known state, and agrees with the hand-written model.
    state: ReferralState | None = None
    for n, step in enumerate(steps, start=1):
        expected = None if state is None else model(family, state, step.event, step.sender)
        assert (state is None) == (expected is None)
        state = LIFECYCLES.apply(state, step)
        if expected is not None:
            assert key(state) == expected
        prefix = LIFECYCLES.replay(steps[:n])
        assert prefix == state
        assert prefix.events == n
        _assert_known(prefix)
    assert state == first


@st.composite
def walks_with_an_illegal_step(draw: st.DrawFn) -> tuple[list[Step], int, Step]:
    steps = draw(walks(max_steps=10))
    at = draw(st.integers(1, len(steps)))
    before = LIFECYCLES.replay(steps[:at])
    family, origin, addressee = before.family, before.origin, before.addressee
    event = draw(st.sampled_from(sorted(EVENTS[family])))
    sender = draw(st.sampled_from(REGIONS))
    right = addressed(origin, addressee, sender)
    to = draw(st.sampled_from([right, right, *REGIONS, ALL]))
    data = data_for(event, origin, addressee)
    if event == "forwarded":
        data = {"to_region": draw(st.sampled_from(REGIONS))}
    legal = (
        to == right
        and model(family, before, event, sender) is not None
        and (event != "forwarded" or data["to_region"] not in (origin, addressee))
    )
    if legal:  # make it illegal: a second opening is never legal
        event = sorted(OPENINGS[family])[0]
    bad = Step(f"{family}.{event}", sender, to, before.referral_id, "bad", data)
    return steps, at, bad


@settings(max_examples=200, deadline=None)
@given(walks_with_an_illegal_step())
def test_an_illegal_step_fails_exactly_where_inserted(case: tuple[list[Step], int, Step]) -> None:
    steps, at, bad = case
    sequence = [*steps[:at], bad, *steps[at:]]
    with pytest.raises(LifecycleError):
        LIFECYCLES.replay(sequence)

    state: ReferralState | None = None
    failed_at = None
    for i, step in enumerate(sequence):
        snapshot = _snapshot(state)
        try:
            state = LIFECYCLES.apply(state, step)
        except LifecycleError as err:
            failed_at = i
            assert _snapshot(state) == snapshot  # the previous state is not mutated
            assert state == LIFECYCLES.replay(steps[:at])
            assert err.details["event"] == bad.event and err.details["sender"] == bad.sender
            break
    assert failed_at == at

    # An adapter refuses the bad step and carries on: the rest still applies cleanly.
    assert state is not None
    for step in steps[at:]:
        state = LIFECYCLES.apply(state, step)
    assert state == LIFECYCLES.replay(steps)


@settings(max_examples=200, deadline=None)
@given(walks(), st.randoms(use_true_random=False))
def test_walks_of_different_referrals_do_not_interfere(steps: list[Step], rnd: Any) -> None:
    """Interleaving two referrals' streams and folding each separately changes nothing."""
    family = steps[0].family
    other_origin, other_to = rnd.choice(ADDRESSING[family])
    other = Referral(family, other_origin, other_to)
    for _ in range(rnd.randint(0, 6)):
        assert other.state is not None
        options = candidates(other.state)
        if not options:
            break
        other.send(*rnd.choice(options))
    states: dict[str, ReferralState | None] = {steps[0].referral_id: None, other.rid: None}
    merged: list[Step] = []
    rest = list(steps)
    others = list(other.steps)
    while rest or others:
        source = rest if rest and (not others or rnd.random() < 0.5) else others
        merged.append(source.pop(0))
    for step in merged:
        states[step.referral_id] = LIFECYCLES.apply(states[step.referral_id], step)
    assert states[steps[0].referral_id] == LIFECYCLES.replay(steps)
    assert states[other.rid] == LIFECYCLES.replay(other.steps)


def _all_steps(steps: Iterable[Step]) -> list[str]:
    return [s.event_type for s in steps]


def test_walk_strategy_reaches_every_family_and_terminal() -> None:
    """Sanity check of the generator: long enough walks end in terminal states."""
    seen: set[tuple[str, str]] = set()

    @settings(max_examples=150, deadline=None, database=None)
    @given(walks(max_steps=30))
    def collect(steps: list[Step]) -> None:
        state = LIFECYCLES.replay(steps)
        seen.add((state.family, state.state))
        assert _all_steps(steps)[0].split(".")[1] in OPENINGS[state.family]

    collect()
    assert {f for f, _ in seen} == set(FAMILIES)
    assert any(s in TERMINAL["lead"] for f, s in seen if f == "lead")


# --- handling codes: permissions and the H2 rule on forwarding ---------------------------------

H2_LEAD = ("TJ", "HE")  # origin, addressee; BJ is the third region


def h2_steps(handling: tuple[str, ...] = ("H2",), origin: str = "TJ", addressee: str = "HE") -> list[Step]:
    rid = new_referral_id(origin)
    return [
        Step("lead.submitted", origin, addressee, rid, "e1", {}, handling),
        Step("lead.received", addressee, origin, rid, "e2", {}),
    ]


def lead_step(state: ReferralState, event: str, sender: str, data: Mapping[str, Any], n: int = 0) -> Step:
    to = state.addressee if sender == state.origin else state.origin
    return Step(f"lead.{event}", sender, to, state.referral_id, f"p{n}", dict(data))


def onward(target: str) -> dict[str, str]:
    return {"purpose": "onward_sharing", "target_region": target}


def test_opening_handling_codes_bind_the_referral() -> None:
    steps = h2_steps(("H1", "H2"))
    state = LIFECYCLES.replay(steps)
    assert state.handling == ("H1", "H2") and state.permissions == frozenset()
    later = LIFECYCLES.apply(state, lead_step(state, "info_requested", "HE", {"questions": ["?"]}))
    assert later.handling == ("H1", "H2")  # later events' own handling does not change it


def test_h2_lead_is_forwarded_only_with_the_origins_permission() -> None:
    state = LIFECYCLES.replay(h2_steps())
    with pytest.raises(HandlingRestricted) as info:
        LIFECYCLES.apply(state, lead_step(state, "forwarded", "HE", {"to_region": "BJ"}))
    err = info.value
    assert err.code == "handling_restricted" and isinstance(err, LifecycleError)
    assert err.details["handling"] == "H2" and err.details["target_region"] == "BJ"
    assert err.details["referral_id"] == state.referral_id and err.details["sender"] == "HE"
    assert "H2" in err.message and state.referral_id in err.message and "BJ" in err.message

    asked = LIFECYCLES.apply(state, lead_step(state, "permission_requested", "HE", {**onward("BJ"), "reason": "r"}, 1))
    assert asked.state == "received" and asked.permissions == frozenset()
    assert asked.events == state.events + 1
    with pytest.raises(HandlingRestricted):  # asking is not enough
        LIFECYCLES.apply(asked, lead_step(asked, "forwarded", "HE", {"to_region": "BJ"}))
    granted = LIFECYCLES.apply(asked, lead_step(asked, "permission_granted", "TJ", onward("BJ"), 2))
    assert granted.state == "received" and granted.permissions == {"onward_sharing:BJ"}
    done = LIFECYCLES.apply(granted, lead_step(granted, "forwarded", "HE", {"to_region": "BJ"}, 3))
    assert done.state == "forwarded" and done.permissions == {"onward_sharing:BJ"}


def test_a_permission_names_its_target_and_a_refusal_withdraws_a_grant() -> None:
    state = LIFECYCLES.replay(h2_steps())
    # A grant for another region (a fourth one, as far as the pure machine cares) does not do.
    other = LIFECYCLES.apply(state, lead_step(state, "permission_granted", "TJ", onward("SD")))
    with pytest.raises(HandlingRestricted):
        LIFECYCLES.apply(other, lead_step(other, "forwarded", "HE", {"to_region": "BJ"}))
    judicial = LIFECYCLES.apply(other, lead_step(other, "permission_granted", "TJ", {"purpose": "judicial_use"}))
    assert judicial.permissions == {"onward_sharing:SD", "judicial_use"}
    granted = LIFECYCLES.apply(judicial, lead_step(judicial, "permission_granted", "TJ", onward("BJ")))
    refused = LIFECYCLES.apply(granted, lead_step(granted, "permission_refused", "TJ", {**onward("BJ"), "reason": "r"}))
    assert refused.permissions == {"onward_sharing:SD", "judicial_use"}
    with pytest.raises(HandlingRestricted):
        LIFECYCLES.apply(refused, lead_step(refused, "forwarded", "HE", {"to_region": "BJ"}))


@pytest.mark.parametrize("handling", [(), ("H0",), ("H1",), ("H3",), ("H0", "H1", "H3")])
def test_without_h2_a_lead_is_forwarded_freely(handling: tuple[str, ...]) -> None:
    state = LIFECYCLES.replay(h2_steps(handling))
    assert LIFECYCLES.apply(state, lead_step(state, "forwarded", "HE", {"to_region": "BJ"})).state == "forwarded"


def test_the_third_region_rule_comes_first_even_with_h2() -> None:
    state = LIFECYCLES.replay(h2_steps())
    with pytest.raises(LifecycleError) as info:
        LIFECYCLES.apply(state, lead_step(state, "forwarded", "HE", {"to_region": "TJ"}))
    assert type(info.value) is LifecycleError and "third region" in info.value.message


def test_permission_roles_targets_and_terminal_states() -> None:
    state = LIFECYCLES.replay(h2_steps())
    for event, wrong in (("permission_requested", "TJ"), ("permission_granted", "HE"), ("permission_refused", "HE")):
        with pytest.raises(LifecycleError) as info:
            LIFECYCLES.apply(state, lead_step(state, event, wrong, onward("BJ")))
        assert_names(info.value, "received", event, wrong)
    for target in H2_LEAD:  # onward sharing is with a third region
        with pytest.raises(LifecycleError) as info:
            LIFECYCLES.apply(state, lead_step(state, "permission_granted", "TJ", onward(target)))
        assert type(info.value) is LifecycleError and "third region" in info.value.message
    rejected = LIFECYCLES.apply(state, lead_step(state, "rejected", "HE", {}))
    for event, sender in (("permission_requested", "HE"), ("permission_granted", "TJ")):
        with pytest.raises(LifecycleError) as info:
            LIFECYCLES.apply(rejected, lead_step(rejected, event, sender, onward("BJ")))
        assert "terminal" in info.value.message


def test_handling_codes_only_restrict_leads() -> None:
    """The H2 rule is on forwarding; other families record the codes and carry on."""
    rid = new_referral_id("BJ")
    state = LIFECYCLES.apply(None, Step("assist.requested", "BJ", "TJ", rid, "e1", {}, ("H2",)))
    assert state.handling == ("H2",)
    assert LIFECYCLES.apply(state, Step("assist.received", "TJ", "BJ", rid, "e2")).state == "received"


ANSWERS = st.lists(
    st.tuples(
        st.sampled_from(
            ["permission_requested", "permission_granted", "permission_refused", "info_requested", "info_supplied"]
        ),
        st.sampled_from(["BJ", "SD", None]),  # onward sharing to BJ, to SD, or judicial use
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([("H2",), ("H0", "H2"), ("H1",), ("H0",)]), ANSWERS, st.sampled_from(["BJ", "SD"]))
def test_forwarding_an_h2_lead_follows_the_last_answer(
    handling: tuple[str, ...], answers: list[tuple[str, str | None]], target: str
) -> None:
    """Random permission traffic on a lead: forwarding to ``target`` is legal exactly when
    the lead is not H2, or the origin's last answer about onward sharing to it was a grant."""
    steps = h2_steps(handling)
    state = LIFECYCLES.replay(steps)
    granted: set[str] = set()  # the hand-written model
    for n, (event, region) in enumerate(answers):
        purpose = {"purpose": "judicial_use"} if region is None else onward(region)
        data: dict[str, Any] = {
            "permission_requested": {**purpose, "reason": "r"},
            "permission_granted": purpose,
            "permission_refused": {**purpose, "reason": "r"},
            "info_requested": {"questions": ["?"]},
            "info_supplied": {"answers": "a"},
        }[event]
        sender = "HE" if event in ("permission_requested", "info_requested") else "TJ"
        step = lead_step(state, event, sender, data, n)
        if model("lead", state, event, sender) is None:
            with pytest.raises(LifecycleError):
                LIFECYCLES.apply(state, step)
            continue
        after = LIFECYCLES.apply(state, step)
        if event.startswith("permission_"):
            assert after.state == state.state  # permissions never move the lead
        key_ = "judicial_use" if region is None else f"onward_sharing:{region}"
        if event == "permission_granted":
            granted.add(key_)
        elif event == "permission_refused":
            granted.discard(key_)
        assert after.permissions == granted and after.handling == handling
        steps.append(step)
        state = after
    assert LIFECYCLES.replay(steps) == state  # permissions are part of the replayed state
    forward = lead_step(state, "forwarded", "HE", {"to_region": target}, 99)
    allowed = "H2" not in handling or f"onward_sharing:{target}" in granted
    if state.state not in ("received", "info_supplied"):
        with pytest.raises(LifecycleError):
            LIFECYCLES.apply(state, forward)
    elif allowed:
        assert LIFECYCLES.apply(state, forward).state == "forwarded"
    else:
        with pytest.raises(HandlingRestricted) as info:
            LIFECYCLES.apply(state, forward)
        assert info.value.details["target_region"] == target
