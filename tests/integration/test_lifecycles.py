"""Every family's full lifecycle across real adapters on a real nats-server, receipts included.

Each path of ARCHITECTURE §3 (``xregion/lifecycle/families.py``) is played through the
client API — the origin opens, each side sends its events, automatic receipts come back —
and then checked from both sides:

* each side's referral view (state, tracks) and history (event type, sender, state after);
* every event that calls for an automatic receipt (``families.RECEIPTS``) was answered once,
  by its addressee, signed with the addressee's key, with ``causationid`` = that event;
* what was sent arrived byte for byte (same wire), in order, exactly once; no dead letters.

An illegal transition attempted through the client API is refused before anything is stored
or published, with an error naming state, event and sender.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest

from tests.bus import Bus, eventually
from tests.integration.helpers import (
    assert_exactly_once,
    assert_receipt,
    assert_signed_by,
    deliveries,
    history_of,
    quiesce,
    stream_events,
    tracks,
    types_of,
)
from xregion.adapter import Adapter
from xregion.codec import DecodedEvent
from xregion.errors import LifecycleError
from xregion.examples import PAYLOADS
from xregion.lifecycle import LIFECYCLES, RECEIPTS, ReferralState, Role

pytestmark = pytest.mark.anyio

Entry = tuple[str, str, str]
"""(event type, sender, state after) — one line of a referral's history."""


# --- checks shared by every path ---------------------------------------------------------------


async def settle(bus: Bus) -> None:
    """The bus is idle, every region handled what was addressed to it exactly once, and
    nothing was dead-lettered."""
    await quiesce(bus)
    await assert_exactly_once(bus)
    assert await bus.dead_letters() == []


def assert_receipts(bus: Bus, referral_id: str) -> int:
    """Every delivered event of the referral that calls for an automatic receipt was answered
    exactly once by the region it was delivered to, signed by that region, caused by it and
    addressed back to its sender; every receipt answers such an event. Returns the count."""
    receipt_types = {answer for answer, _ in RECEIPTS.values()}
    matched: set[str] = set()
    for region in bus.adapters:
        for cause in deliveries(bus, region, referral_id):
            env = cause.event.envelope
            if env.event_type not in RECEIPTS:
                continue
            answer_type, answer_data = RECEIPTS[env.event_type]
            answers = [
                d
                for d in deliveries(bus, env.sender, referral_id)
                if d.event.envelope.causationid == env.id
                and d.event.envelope.event_type == answer_type
                and d.event.envelope.sender == region
            ]
            ids = [d.event.envelope.id for d in answers]
            assert len(answers) == 1, f"{env.event_type} {env.id} delivered to {region}: receipts {ids}"
            receipt = answers[0]
            assert_receipt(bus, receipt, by=region, answers=env.id)
            assert receipt.event.envelope.addressee == env.sender
            for key, value in answer_data.items():
                assert receipt.event.envelope.data[key] == value
            matched.add(receipt.event.envelope.id)
    unmatched = [
        d.event.envelope.id
        for region in bus.adapters
        for d in deliveries(bus, region, referral_id)
        if d.event.envelope.event_type in receipt_types and d.event.envelope.id not in matched
    ]
    assert not unmatched, f"receipts that answer no delivered event: {unmatched}"
    return len(matched)


def assert_arrived_intact(bus: Bus, sent: Sequence[DecodedEvent], to: str) -> None:
    """What was sent to ``to`` reached its handler unchanged, in the order sent."""
    referral_id = sent[0].envelope.subject
    got = [d for d in deliveries(bus, to, referral_id) if d.event.envelope.sender == sent[0].envelope.sender]
    explicit = {e.envelope.id for e in sent}
    got = [d for d in got if d.event.envelope.id in explicit]
    assert [d.event.envelope.id for d in got] == [e.envelope.id for e in sent]
    for delivery, event in zip(got, sent, strict=True):
        assert delivery.event.wire == event.wire


async def view(bus: Bus, region: str, referral_id: str) -> ReferralState:
    state = await bus.adapters[region].client.referral(referral_id)
    assert state is not None, f"{region} does not know {referral_id}"
    return state


def by_sender(history: list[Entry]) -> dict[str, list[tuple[str, str]]]:
    """A history split per sender: answers of different addressees interleave freely."""
    out: dict[str, list[tuple[str, str]]] = {}
    for event_type, sender, after in history:
        out.setdefault(sender, []).append((event_type, after))
    return out


async def histories_reach(bus: Bus, referral_id: str, regions: Sequence[str], length: int) -> None:
    async def check() -> bool:
        for region in regions:
            if len(await bus.adapters[region].client.history(referral_id)) < length:
                return False
        return True

    await eventually(check, 10.0, f"{', '.join(regions)} to record {length} events of {referral_id}")


# --- one-addressee paths, played from their expected history -------------------------------------


def is_automatic(history: Sequence[Entry], i: int) -> bool:
    """Entry ``i`` is the automatic receipt of entry ``i - 1`` (sent by the adapter, not us)."""
    if i == 0:
        return False
    previous, (event_type, sender, _) = history[i - 1], history[i]
    return RECEIPTS.get(previous[0], ("",))[0] == event_type and sender != previous[1]


@dataclass
class Played:
    referral_id: str
    sent: dict[str, list[DecodedEvent]] = field(default_factory=dict)


async def play(bus: Bus, history: Sequence[Entry], to: str) -> Played:
    """Open a referral and send every non-automatic event of ``history`` from its sender,
    waiting after each step until both sides recorded it (and its automatic receipt), so
    both histories have one order. Payloads are the catalog examples (or :data:`DATA`)."""
    opening, origin, _ = history[0]
    parties = (origin, to)
    first = await bus.adapters[origin].client.open(opening, to=to, data=PAYLOADS[opening])
    played = Played(first.envelope.subject, {origin: [first]})
    for i in range(len(history)):
        if i > 0 and not is_automatic(history, i):
            event_type, sender, _ = history[i]
            data = DATA.get(event_type, PAYLOADS[event_type])
            sent = await bus.adapters[sender].client.send(played.referral_id, event_type, data)
            played.sent.setdefault(sender, []).append(sent)
        if i + 1 < len(history) and is_automatic(history, i + 1):
            continue  # wait once its automatic receipt is in as well
        await histories_reach(bus, played.referral_id, parties, i + 1)
    return played


B, T = "BJ", "TJ"
DATA: dict[str, dict[str, Any]] = {
    # the examples ask about a lead TJ→HE; these paths play BJ→TJ, so the third region is HE
    "lead.permission_requested": dict(PAYLOADS["lead.permission_requested"], target_region="HE"),
    "lead.permission_granted": dict(PAYLOADS["lead.permission_granted"], target_region="HE"),
}
OPEN_LEAD: list[Entry] = [("lead.submitted", B, "submitted"), ("lead.received", T, "received")]
OPEN_ASSIST: list[Entry] = [("assist.requested", B, "requested"), ("assist.received", T, "received")]
OPEN_RECOGNITION: list[Entry] = [("recognition.published", B, "published"), ("recognition.received", T, "received")]

PATHS: dict[str, tuple[list[Entry], tuple[str, dict[str, str]]]] = {
    # name: (history as both sides must record it, final (state, tracks))
    "lead-accepted-concluded": (
        [
            *OPEN_LEAD,
            ("lead.accepted", T, "accepted"),
            ("lead.progress", T, "in_progress"),
            ("lead.progress", T, "in_progress"),
            ("lead.concluded", T, "concluded"),
        ],
        ("concluded", {}),
    ),
    "lead-info-loop-accepted-concluded": (
        [
            *OPEN_LEAD,
            ("lead.info_requested", T, "info_requested"),
            ("lead.info_supplied", B, "info_supplied"),
            ("lead.info_requested", T, "info_requested"),
            ("lead.info_supplied", B, "info_supplied"),
            ("lead.accepted", T, "accepted"),
            ("lead.concluded", T, "concluded"),
        ],
        ("concluded", {}),
    ),
    "lead-permissions-asked-answered-accepted": (
        [
            *OPEN_LEAD,
            ("lead.permission_requested", T, "received"),
            ("lead.permission_granted", B, "received"),
            ("lead.permission_refused", B, "received"),
            ("lead.accepted", T, "accepted"),
            ("lead.permission_requested", T, "accepted"),
            ("lead.concluded", T, "concluded"),
        ],
        ("concluded", {}),
    ),
    "lead-rejected": ([*OPEN_LEAD, ("lead.rejected", T, "rejected")], ("rejected", {})),
    "lead-rejected-after-info": (
        [
            *OPEN_LEAD,
            ("lead.info_requested", T, "info_requested"),
            ("lead.info_supplied", B, "info_supplied"),
            ("lead.rejected", T, "rejected"),
        ],
        ("rejected", {}),
    ),
    "lead-withdrawn": ([*OPEN_LEAD, ("lead.withdrawn", B, "withdrawn")], ("withdrawn", {})),
    "lead-withdrawn-while-info-requested": (
        [*OPEN_LEAD, ("lead.info_requested", T, "info_requested"), ("lead.withdrawn", B, "withdrawn")],
        ("withdrawn", {}),
    ),
    "assist-evidence-twice-completed": (
        [
            *OPEN_ASSIST,
            ("assist.accepted", T, "accepted"),
            ("assist.evidence_delivered", T, "evidence_delivered"),
            ("assist.evidence_delivered", T, "evidence_delivered"),
            ("assist.completed", T, "completed"),
        ],
        ("completed", {}),
    ),
    "assist-declined": ([*OPEN_ASSIST, ("assist.declined", T, "declined")], ("declined", {})),
    "assist-cancelled-after-evidence": (
        [
            *OPEN_ASSIST,
            ("assist.accepted", T, "accepted"),
            ("assist.evidence_delivered", T, "evidence_delivered"),
            ("assist.cancelled", B, "cancelled"),
        ],
        ("cancelled", {}),
    ),
    "assist-cancelled-before-acceptance": (
        [*OPEN_ASSIST, ("assist.cancelled", B, "cancelled")],
        ("cancelled", {}),
    ),
    "recognition-recognized": (
        [*OPEN_RECOGNITION, ("recognition.recognized", T, "recognized")],
        ("published", {T: "recognized"}),
    ),
    "recognition-contested": (
        [*OPEN_RECOGNITION, ("recognition.contested", T, "contested")],
        ("published", {T: "contested"}),
    ),
    "recognition-recognized-then-revoked": (
        [
            *OPEN_RECOGNITION,
            ("recognition.recognized", T, "recognized"),
            ("recognition.revoked", B, "revoked"),
            ("recognition.revocation_acknowledged", T, "revocation_acknowledged"),
        ],
        ("revoked", {T: "revocation_acknowledged"}),
    ),
    "recognition-revoked-unanswered": (
        [
            *OPEN_RECOGNITION,
            ("recognition.revoked", B, "revoked"),
            ("recognition.revocation_acknowledged", T, "revocation_acknowledged"),
        ],
        ("revoked", {T: "revocation_acknowledged"}),
    ),
}


@pytest.mark.parametrize("name", list(PATHS))
async def test_one_addressee_path(bus: Bus, name: str) -> None:
    history, (final_state, final_tracks) = PATHS[name]
    await bus.start(B, T)
    played = await play(bus, history, to=T)
    rid = played.referral_id
    await settle(bus)

    family = history[0][0].split(".")[0]
    for region in (B, T):
        assert await history_of(bus, region, rid) == history, region
        state = await view(bus, region, rid)
        assert (state.family, state.origin, state.addressee) == (family, B, T)
        assert (state.state, dict(state.tracks)) == (final_state, final_tracks), region
        assert state.events == len(history)
    # each side's handler got the other side's events, in order, as sent
    assert types_of(deliveries(bus, T, rid)) == [e for e, sender, _ in history if sender == B]
    assert types_of(deliveries(bus, B, rid)) == [e for e, sender, _ in history if sender == T]
    for sender, events in played.sent.items():
        assert_arrived_intact(bus, events, to=T if sender == B else B)
    assert assert_receipts(bus, rid) == sum(is_automatic(history, i) for i in range(len(history)))
    lifecycle = LIFECYCLES[family]
    if final_state in lifecycle.terminal:
        final = await view(bus, B, rid)
        assert not lifecycle.allowed(final, Role.ORIGIN) and not lifecycle.allowed(final, Role.ADDRESSEE, T)
    if "lead.permission_granted" in types_of(deliveries(bus, T, rid)):  # recorded on both sides
        for region in (B, T):
            assert (await view(bus, region, rid)).permissions == {"onward_sharing:HE"}
    if final_state == "rejected":  # the reason is required and reaches the origin
        [rejection] = [d for d in deliveries(bus, B, rid) if d.event.envelope.event_type == "lead.rejected"]
        assert rejection.event.envelope.data["reason"] == PAYLOADS["lead.rejected"]["reason"]
        assert_signed_by(bus, rejection, T)


# --- a lead forwarded to a third region -------------------------------------------------------


async def test_lead_forwarded_to_a_third_region(bus: Bus) -> None:
    bj, tj, he = await bus.start("BJ", "TJ", "HE")
    submitted = await bj.client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    rid = submitted.envelope.subject
    await bus.state("BJ", rid, "received")
    reason = PAYLOADS["lead.forwarded"]["reason"]
    forwarded, opened = await tj.client.forward_lead(rid, "HE", reason)
    new_id = opened.envelope.subject
    await bus.state("BJ", rid, "forwarded")
    await bus.state("HE", new_id, "received")
    accepted = await he.client.send(new_id, "lead.accepted", PAYLOADS["lead.accepted"])
    concluded = await he.client.send(new_id, "lead.concluded", PAYLOADS["lead.concluded"])
    await bus.state("TJ", new_id, "concluded")
    await settle(bus)

    # the original referral ends in "forwarded" on both sides, naming the new one
    original: list[Entry] = [*OPEN_LEAD, ("lead.forwarded", "TJ", "forwarded")]
    for region in ("BJ", "TJ"):
        assert await history_of(bus, region, rid) == original
        assert (await view(bus, region, rid)).state == "forwarded"
    assert forwarded.envelope.data == {"to_region": "HE", "new_referral_id": new_id, "reason": reason}
    assert_arrived_intact(bus, [forwarded], to="BJ")
    # the new referral is TJ's, linked to the original by correlation id and forwarded_from
    linked: list[Entry] = [
        ("lead.submitted", "TJ", "submitted"),
        ("lead.received", "HE", "received"),
        ("lead.accepted", "HE", "accepted"),
        ("lead.concluded", "HE", "concluded"),
    ]
    for region in ("TJ", "HE"):
        assert await history_of(bus, region, new_id) == linked
        state = await view(bus, region, new_id)
        assert (state.origin, state.addressee, state.state) == ("TJ", "HE", "concluded")
    assert opened.envelope.correlationid == submitted.envelope.correlationid
    assert opened.envelope.data["forwarded_from"] == {"referral_id": rid, "region": "TJ"}
    assert opened.envelope.data["title"] == submitted.envelope.data["title"]
    assert_arrived_intact(bus, [opened], to="HE")
    assert_arrived_intact(bus, [accepted, concluded], to="TJ")
    # each region sees only the referral it takes part in
    assert await he.client.referral(rid) is None
    assert await bj.client.referral(new_id) is None
    assert not deliveries(bus, "HE", rid) and not deliveries(bus, "BJ", new_id)
    assert assert_receipts(bus, rid) == 1
    assert assert_receipts(bus, new_id) == 1


# --- broadcasts: per-region tracks --------------------------------------------------------------


async def test_recognition_broadcast_recognized_contested_revoked(bus: Bus) -> None:
    bj, tj, he = await bus.start("BJ", "TJ", "HE")
    published = await bj.client.open("recognition.published", to="ALL", data=PAYLOADS["recognition.published"])
    rid = published.envelope.subject
    await tracks(bus, "BJ", rid, {"TJ": "received", "HE": "received"})
    recognized = await tj.client.send(rid, "recognition.recognized", PAYLOADS["recognition.recognized"])
    contested = await he.client.send(rid, "recognition.contested", PAYLOADS["recognition.contested"])
    await tracks(bus, "BJ", rid, {"TJ": "recognized", "HE": "contested"})
    revoked = await bj.client.send(rid, "recognition.revoked", PAYLOADS["recognition.revoked"])
    await tracks(bus, "BJ", rid, {"TJ": "revocation_acknowledged", "HE": "revocation_acknowledged"})
    await settle(bus)

    origin = await view(bus, "BJ", rid)
    assert (origin.addressee, origin.state) == ("ALL", "revoked")
    assert dict(origin.tracks) == {"TJ": "revocation_acknowledged", "HE": "revocation_acknowledged"}
    answer = {"TJ": ("recognition.recognized", "recognized"), "HE": ("recognition.contested", "contested")}
    assert by_sender(await history_of(bus, "BJ", rid)) == {
        "BJ": [("recognition.published", "published"), ("recognition.revoked", "revoked")],
        **{
            region: [
                ("recognition.received", "received"),
                answer[region],
                ("recognition.revocation_acknowledged", "revocation_acknowledged"),
            ]
            for region in ("TJ", "HE")
        },
    }
    for region in ("TJ", "HE"):
        # an addressee sees the origin's events and its own answers, not the other region's
        assert await history_of(bus, region, rid) == [
            ("recognition.published", "BJ", "published"),
            ("recognition.received", region, "received"),
            (answer[region][0], region, answer[region][1]),
            ("recognition.revoked", "BJ", "revoked"),
            ("recognition.revocation_acknowledged", region, "revocation_acknowledged"),
        ]
        state = await view(bus, region, rid)
        assert (state.state, dict(state.tracks)) == ("revoked", {region: "revocation_acknowledged"})
        assert_arrived_intact(bus, [published, revoked], to=region)
    assert_arrived_intact(bus, [recognized], to="BJ")
    assert_arrived_intact(bus, [contested], to="BJ")
    # two receipts of the publication, two acknowledgements of the revocation
    assert assert_receipts(bus, rid) == 4


@pytest.mark.parametrize("event", sorted(LIFECYCLES["share"].openings))
async def test_share_broadcast_acknowledged_by_every_other_region(bus: Bus, event: str) -> None:
    event_type = f"share.{event}"
    adapters: list[Adapter] = await bus.start("BJ", "TJ", "HE")
    he = adapters[2]
    sent = await he.client.open(event_type, to="ALL", data=PAYLOADS[event_type])
    rid = sent.envelope.subject
    others = [a.region for a in adapters if a is not he]
    await tracks(bus, "HE", rid, dict.fromkeys(others, "acknowledged"))
    await settle(bus)

    origin = await view(bus, "HE", rid)
    assert (origin.family, origin.origin, origin.addressee, origin.state) == ("share", "HE", "ALL", "published")
    assert dict(origin.tracks) == dict.fromkeys(others, "acknowledged")
    assert by_sender(await history_of(bus, "HE", rid)) == {
        "HE": [(event_type, "published")],
        **{region: [("share.acknowledged", "acknowledged")] for region in others},
    }
    for region in others:
        assert await history_of(bus, region, rid) == [
            (event_type, "HE", "published"),
            ("share.acknowledged", region, "acknowledged"),
        ]
        state = await view(bus, region, rid)
        assert dict(state.tracks) == {region: "acknowledged"}
        assert_arrived_intact(bus, [sent], to=region)
    assert types_of(deliveries(bus, "HE", rid)) == ["share.acknowledged"] * len(others)
    assert assert_receipts(bus, rid) == len(others)


# --- illegal transitions are refused locally ---------------------------------------------------


@dataclass(frozen=True)
class Illegal:
    before: list[Entry]  # played first (legal)
    sender: str
    event_type: str
    state: str  # the state (or track) the error must name
    reason: str  # a fragment of the error message
    code: str = "illegal_transition"
    to: str = T


ILLEGAL: dict[str, Illegal] = {
    "origin-accepts-its-own-lead": Illegal(OPEN_LEAD, B, "lead.accepted", "received", "allowed for the origin"),
    "conclude-before-acceptance": Illegal(OPEN_LEAD, T, "lead.concluded", "received", "allowed for the addressee"),
    "withdraw-after-acceptance": Illegal(
        [*OPEN_LEAD, ("lead.accepted", T, "accepted")], B, "lead.withdrawn", "accepted", "allowed for the origin"
    ),
    "progress-after-conclusion": Illegal(
        [*OPEN_LEAD, ("lead.accepted", T, "accepted"), ("lead.concluded", T, "concluded")],
        T,
        "lead.progress",
        "concluded",
        "terminal",
    ),
    "supply-info-nobody-asked-for": Illegal(OPEN_LEAD, B, "lead.info_supplied", "received", "allowed for the origin"),
    "evidence-before-acceptance": Illegal(
        OPEN_ASSIST, T, "assist.evidence_delivered", "received", "allowed for the addressee"
    ),
    "complete-after-decline": Illegal(
        [*OPEN_ASSIST, ("assist.declined", T, "declined")], T, "assist.completed", "declined", "terminal"
    ),
    "contest-after-recognising": Illegal(
        [*OPEN_RECOGNITION, ("recognition.recognized", T, "recognized")],
        T,
        "recognition.contested",
        "recognized",
        "track of TJ",
    ),
    "revoke-twice": Illegal(
        [
            *OPEN_RECOGNITION,
            ("recognition.revoked", B, "revoked"),
            ("recognition.revocation_acknowledged", T, "revocation_acknowledged"),
        ],
        B,
        "recognition.revoked",
        "revoked",
        "allowed for the origin",
    ),
}


async def outbox_rows(adapter: Adapter) -> int:
    count: int = await adapter.store.read(lambda db: db.execute("SELECT count(*) FROM outbox").fetchone()[0])
    return count


async def snapshot(bus: Bus, referral_id: str) -> dict[str, Any]:
    """Everything a refused event must leave untouched."""
    nc = await bus.raw()
    try:
        stream = [body["id"] for _, _, body in await stream_events(nc.jetstream(), bus.settings.stream)]
    finally:
        await nc.close()
    out: dict[str, Any] = {"stream": stream}
    for region, adapter in bus.adapters.items():
        out[region] = (
            await outbox_rows(adapter),
            await adapter.client.referral(referral_id),
            await history_of(bus, region, referral_id),
        )
    return out


def assert_names_state_event_sender(exc: LifecycleError, case: Illegal) -> None:
    event = case.event_type.split(".", 1)[1]
    assert exc.code == case.code
    assert (exc.details["state"], exc.details["event"], exc.details["sender"]) == (case.state, event, case.sender)
    for fragment in (repr(case.state), repr(event), case.sender, case.reason):
        assert fragment in exc.message, f"{fragment!r} not in {exc.message!r}"


@pytest.mark.parametrize("name", list(ILLEGAL))
async def test_illegal_transition_is_refused_locally(bus: Bus, name: str) -> None:
    case = ILLEGAL[name]
    await bus.start(B, T)
    played = await play(bus, case.before, to=case.to)
    rid = played.referral_id
    await quiesce(bus)
    before = await snapshot(bus, rid)
    with pytest.raises(LifecycleError) as refused:
        await bus.adapters[case.sender].client.send(rid, case.event_type, PAYLOADS[case.event_type])
    assert_names_state_event_sender(refused.value, case)
    await quiesce(bus)
    assert await snapshot(bus, rid) == before, "a refused event left a trace"
    await assert_exactly_once(bus)
    assert await bus.dead_letters() == []


async def test_forwarding_back_to_the_origin_is_refused_and_opens_nothing(bus: Bus) -> None:
    bj, tj = await bus.start(B, T)
    played = await play(bus, OPEN_LEAD, to=T)
    rid = played.referral_id
    await quiesce(bus)
    before = await snapshot(bus, rid)
    referrals_before = await tj.client.referrals()
    with pytest.raises(LifecycleError) as refused:
        await tj.client.forward_lead(rid, B, PAYLOADS["lead.forwarded"]["reason"])
    case = Illegal(OPEN_LEAD, T, "lead.forwarded", "received", "third region")
    assert_names_state_event_sender(refused.value, case)
    await quiesce(bus)
    assert await snapshot(bus, rid) == before
    assert await tj.client.referrals() == referrals_before  # the linked lead.submitted was rolled back too
    assert len(await bj.client.referrals()) == 1


# --- the tables above cover every event and every terminal state of families.py ------------------


def test_paths_cover_every_transition_and_terminal_state() -> None:
    played = {entry[0] for history, _ in PATHS.values() for entry in history}
    played |= {"lead.forwarded", "recognition.recognized", "recognition.contested", "recognition.revoked"}
    played |= {f"share.{event}" for event in LIFECYCLES["share"].openings} | {"share.acknowledged"}
    # escalation.* are the coordinator's (tests/integration/test_coordinator.py plays them)
    played |= {f"escalation.{event}" for event in LIFECYCLES["escalation"].openings}
    every = {f"{lc.family}.{event}" for lc in LIFECYCLES for event in lc.events}
    assert every - played == set()
    finals = {(history[0][0].split(".")[0], final) for history, (final, _) in PATHS.values()} | {("lead", "forwarded")}
    finals |= {("escalation", "issued")}
    terminal = {(lc.family, state) for lc in LIFECYCLES for state in lc.terminal}
    assert terminal - finals == set()


# --- the adapter's own lifecycle -----------------------------------------------------------------


async def test_adapter_stopped_right_after_a_submission_stops_and_publishes_on_restart(bus: Bus) -> None:
    """Stopping an adapter the instant a submission woke its relay must not hang (Python 3.11's
    ``asyncio.wait_for`` swallows a cancellation that races the awaited event), and the
    committed event goes out when the adapter comes back."""
    bj, _tj = await bus.start(B, T)
    sent = await bj.client.open("lead.submitted", to=T, data=PAYLOADS["lead.submitted"])
    with anyio.fail_after(10):  # no await between the commit (relay woken) and the stop
        await bj.stop()
    del bus.adapters[B]
    await bus.start(B)
    await bus.state(B, sent.envelope.subject, "received")
    await settle(bus)
    assert [d.event.envelope.id for d in bus.received[T]] == [sent.envelope.id]
