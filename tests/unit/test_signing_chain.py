"""Authenticity and integrity: any change to a signed event is detected, keys are checked
against the roster, and every origin's hash chain, and every link chain (one sender's
events to one addressee), exposes dropped, swapped, altered, injected and replayed events,
naming the chain, the origin and the event.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import itertools
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from tests.support import (
    OriginChain,
    dev_roster,
    dev_signers,
    example_event,
    example_payload,
    roster_key,
)
from xregion.chain import GENESIS, LINK, ChainHead, ChainTracker, link_key
from xregion.codec import DecodedEvent, decode, decode_dict, encode
from xregion.envelope import GENESIS_HASH
from xregion.errors import (
    BadSignature,
    ChainError,
    ChainFork,
    ChainGap,
    ChainReplay,
    KeyNotValid,
    KeyRevoked,
    SchemaInvalid,
    UnknownKey,
    VerificationError,
)
from xregion.ids import new_event_id, new_referral_id
from xregion.signing import KeyRoster, Signer, event_hash, signing_input

SIGNERS = dev_signers()
T0 = datetime(2026, 11, 25, 6, 30, tzinfo=UTC)
NOTE = "仅限本案使用，未经移送方同意不得转送第三方"


def roster() -> KeyRoster:
    return dev_roster(SIGNERS)


def verify(wire: dict[str, Any], r: KeyRoster | None = None) -> None:
    """Verify ``wire`` as a receiver does: sender and time from the event itself."""
    decoded = decode_dict(wire)
    (r or roster()).verify(wire, decoded.envelope.sender, decoded.envelope.time)


def target_event() -> DecodedEvent:
    """BJ's third event and second to TJ (originseq 3, linkseq 2: no genesis hash in either
    chain), carrying every optional attribute, for tampering."""
    chain = OriginChain(SIGNERS["BJ"])
    chain.seal(example_event("share.alert", time=T0 - timedelta(hours=2)))
    chain.seal(example_event("lead.submitted", time=T0 - timedelta(hours=1)))
    return chain.seal(
        example_event(
            "lead.submitted",
            time=T0,
            causation_id=new_event_id(),
            handling="H1,H3",
            handling_note=NOTE,
            answer_by=date(2026, 12, 5),
        )
    )


def _other_referral(value: str) -> str:
    return new_referral_id(value.split("-", 1)[0])


# One realistic forgery per top-level attribute; each result still decodes (except where
# no valid alternative exists), so only the signature can tell.
TOP_LEVEL: dict[str, Callable[[Any], Any]] = {
    "specversion": lambda v: "1.1",
    "id": lambda v: new_event_id(),
    "source": lambda v: v.replace(":amr", ":ipo"),
    "type": lambda v: v.replace("lead.submitted", "lead.withdrawn"),
    "time": lambda v: v.replace(".000000Z", ".000001Z"),
    "subject": _other_referral,
    "dataschema": lambda v: v.replace("lead.submitted", "lead.withdrawn"),
    "datacontenttype": lambda v: "application/json;charset=utf-8",
    "data": lambda v: {**v, "title": v["title"] + "（补充）"},
    "addressee": lambda v: "HE",
    "correlationid": _other_referral,
    "causationid": lambda v: new_event_id(),
    "originseq": lambda v: v + 1,
    "prevhash": lambda v: "sha256:" + hashlib.sha256(v.encode()).hexdigest(),
    "linkseq": lambda v: v + 1,
    "linkprev": lambda v: "sha256:" + hashlib.sha256(v.encode()).hexdigest(),
    "handling": lambda v: "H0,H3",
    "handlingnote": lambda v: v.replace("不得", "可以"),
    "answerby": lambda v: "2026-12-31",
}
STILL_DECODES = set(TOP_LEVEL) - {"specversion", "type", "dataschema", "datacontenttype"}


def test_every_top_level_attribute_is_covered() -> None:
    wire = target_event().wire
    assert set(TOP_LEVEL) | {"keyid", "signature"} == set(wire)
    assert (wire["originseq"], wire["linkseq"]) == (3, 2)
    assert GENESIS_HASH not in (wire["prevhash"], wire["linkprev"])


def test_untampered_event_verifies() -> None:
    event = target_event()
    key = roster().get(SIGNERS["BJ"].key_id)
    assert roster().verify(event.wire, "BJ", event.envelope.time) == key
    verify(decode(encode(event.wire)).wire)


@pytest.mark.parametrize("attribute", sorted(TOP_LEVEL))
def test_tampering_with_any_attribute_is_detected(attribute: str) -> None:
    event = target_event()
    forged = copy.deepcopy(event.wire)
    forged[attribute] = TOP_LEVEL[attribute](forged[attribute])
    assert forged[attribute] != event.wire[attribute]
    if attribute in STILL_DECODES:
        decode_dict(forged)  # structurally fine: only the signature can tell
    key_id = SIGNERS["BJ"].key_id
    with pytest.raises(BadSignature) as info:
        roster().verify(forged, "BJ", event.envelope.time)
    assert info.value.code == "bad_signature"
    assert key_id in info.value.message
    assert info.value.details == {"keyid": key_id}


def _set(path: tuple[str | int, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        node: Any = data
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = value

    return change


NESTED: dict[str, Callable[[dict[str, Any]], None]] = {
    "title: one Chinese character": _set(("title",), "“某某”牌运动鞋假冒注册商标线素"),
    "summary: full-width comma to ASCII": lambda d: d.update(summary=d["summary"].replace("，", ",", 1)),
    "address: half-width digit to full-width": _set(("suspects", 0, "address"), "天津市西青区某物流园３号库"),
    "suspect name": _set(("suspects", 1, "name"), "李某"),
    "suspect uscc (still valid)": _set(("suspects", 0, "uscc"), "91350100M000100Y43"),
    "nested list element": _set(("evidence", 0, "chain_of_custody", 1, "action"), "销毁"),
    "list order": lambda d: d["suspects"].reverse(),
    "list element removed": lambda d: d["evidence"][0]["chain_of_custody"].pop(),
    "optional field removed": lambda d: d.pop("right_holder"),
    "field added": _set(
        ("attachments",),
        [
            {
                "object_name": "x",
                "filename": "补充材料.pdf",
                "media_type": "application/pdf",
                "size": 1,
                "sha256": "0" * 64,
            }
        ],
    ),
    "trailing space": lambda d: d.update(location=d["location"] + " "),
    "enum value": _set(("ip_right",), "patent"),
}


@pytest.mark.parametrize("change", list(NESTED))
def test_tampering_with_nested_data_is_detected(change: str) -> None:
    event = target_event()
    forged = copy.deepcopy(event.wire)
    NESTED[change](forged["data"])
    assert forged["data"] != event.wire["data"]
    decode_dict(forged)
    with pytest.raises(BadSignature, match=SIGNERS["BJ"].key_id):
        roster().verify(forged, "BJ", event.envelope.time)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("data", "version"), 2),
        (("data", "entry", "restrictions", 1), "限制参加招投标"),
        (("data", "entry", "decision_refs", 0, "document_number"), "京市监处罚〔2026〕119号"),
        (("data", "entry", "valid_until"), "2029-11-25"),
    ],
)
def test_tampering_with_numbers_and_nested_lists_is_detected(path: tuple[str | int, ...], value: Any) -> None:
    event = OriginChain(SIGNERS["HE"]).seal(example_event("share.blacklist_upserted", sender="HE"))
    forged = copy.deepcopy(event.wire)
    _set(path, value)(forged)
    decode_dict(forged)
    with pytest.raises(BadSignature, match=SIGNERS["HE"].key_id):
        roster().verify(forged, "HE", event.envelope.time)


def test_tampering_with_a_boolean_is_detected() -> None:
    event = OriginChain(SIGNERS["TJ"]).seal(example_event("share.acknowledged", sender="TJ", to="HE"))
    forged = copy.deepcopy(event.wire)
    forged["data"]["applied"] = False
    with pytest.raises(BadSignature):
        roster().verify(forged, "TJ", event.envelope.time)


def test_adding_an_attribute_is_detected() -> None:
    event = target_event()
    forged = {**event.wire, "traceparent": "00-0af7651916cd43dd-b7ad6b7169203331-01"}
    with pytest.raises(BadSignature):
        roster().verify(forged, "BJ", event.envelope.time)


def test_keyid_changed_to_another_key_of_the_sender() -> None:
    rotated = Signer.from_seed("BJ", hashlib.sha256(b"xregion-test-key-BJ-rotated").digest())
    r = roster()
    r.add(roster_key(rotated))
    event = target_event()
    forged = {**event.wire, "keyid": rotated.key_id}
    with pytest.raises(BadSignature) as info:
        r.verify(forged, "BJ", event.envelope.time)
    assert rotated.key_id in info.value.message
    assert info.value.details == {"keyid": rotated.key_id}
    # re-signed by the other key it verifies: rotation works
    r.verify(rotated.sign(event.wire), "BJ", event.envelope.time)


def test_keyid_changed_to_an_unknown_key() -> None:
    event = target_event()
    forged = {**event.wire, "keyid": "BJ:0000000000000000"}
    with pytest.raises(UnknownKey) as info:
        roster().verify(forged, "BJ", event.envelope.time)
    assert info.value.code == "unknown_key"
    assert "BJ:0000000000000000" in info.value.message
    del forged["keyid"]
    with pytest.raises(UnknownKey):
        roster().verify(forged, "BJ", event.envelope.time)


def test_keyid_changed_to_a_key_of_another_party() -> None:
    event = target_event()
    for party in ("TJ", "HE", "COORD"):
        forged = {**event.wire, "keyid": SIGNERS[party].key_id}
        with pytest.raises(KeyNotValid) as info:
            roster().verify(forged, "BJ", event.envelope.time)
        assert info.value.code == "key_not_valid"
        assert SIGNERS[party].key_id in info.value.message
        assert "BJ" in info.value.message


def test_signed_by_another_party_for_the_sender() -> None:
    """TJ signs an event claiming to come from BJ: its key does not belong to BJ."""
    event = target_event()
    forged = SIGNERS["TJ"].sign(event.wire)
    with pytest.raises(KeyNotValid):
        verify(forged)


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "not base64!",
        "AAAA",
        base64.b64encode(b"\0" * 64).decode(),
        "==",
        base64.urlsafe_b64encode(b"\xfb" * 64).decode(),
    ],
)
def test_missing_or_bad_signature(signature: str | None) -> None:
    event = target_event()
    forged = {k: v for k, v in event.wire.items() if k != "signature"}
    if signature is not None:
        forged["signature"] = signature
    with pytest.raises(BadSignature) as info:
        roster().verify(forged, "BJ", event.envelope.time)
    assert info.value.code == "bad_signature"
    assert SIGNERS["BJ"].key_id in info.value.message


def test_signature_of_another_event() -> None:
    first, second = target_event(), target_event()
    forged = {**second.wire, "signature": first.wire["signature"]}
    with pytest.raises(BadSignature):
        roster().verify(forged, "BJ", second.envelope.time)


def test_unpadded_signature_is_refused() -> None:
    event = target_event()
    forged = {**event.wire, "signature": event.wire["signature"].rstrip("=")}
    with pytest.raises(BadSignature):
        roster().verify(forged, "BJ", event.envelope.time)


def test_signing_input_excludes_only_the_signature() -> None:
    event = target_event()
    assert b'"signature"' not in signing_input(event.wire)
    assert f'"keyid":"{SIGNERS["BJ"].key_id}"'.encode() in signing_input(event.wire)
    unsigned_hash = "sha256:" + hashlib.sha256(signing_input(event.wire)).hexdigest()
    assert event_hash(event.wire) != unsigned_hash  # the chain hash covers the signature


# --- key validity --------------------------------------------------------------------------


def test_revoked_key() -> None:
    event = target_event()
    key_id = SIGNERS["BJ"].key_id
    at = event.envelope.time
    for revoked_at in (at, at - timedelta(microseconds=1), at - timedelta(days=30)):
        r = roster()
        r.revoke(key_id, revoked_at)
        with pytest.raises(KeyRevoked) as info:
            r.verify(event.wire, "BJ", at)
        assert info.value.code == "key_revoked"
        assert key_id in info.value.message
        assert info.value.details == {"keyid": key_id, "revoked_at": revoked_at.isoformat()}
    r = roster()
    r.revoke(key_id, at + timedelta(microseconds=1))  # not retroactive
    r.verify(event.wire, "BJ", at)


def test_event_before_valid_from() -> None:
    event = target_event()
    at = event.envelope.time
    late = dev_roster(SIGNERS, valid_from=at + timedelta(seconds=1))
    with pytest.raises(KeyNotValid) as info:
        late.verify(event.wire, "BJ", at)
    assert info.value.code == "key_not_valid"
    assert SIGNERS["BJ"].key_id in info.value.message
    dev_roster(SIGNERS, valid_from=at).verify(event.wire, "BJ", at)  # from the instant on


def test_event_at_or_after_valid_until() -> None:
    event = target_event()
    at = event.envelope.time
    for until in (at, at - timedelta(days=1)):
        r = KeyRoster([roster_key(SIGNERS["BJ"], valid_until=until)])
        with pytest.raises(KeyNotValid):
            r.verify(event.wire, "BJ", at)
    KeyRoster([roster_key(SIGNERS["BJ"], valid_until=at + timedelta(seconds=1))]).verify(event.wire, "BJ", at)


def test_verification_errors_are_verification_errors() -> None:
    for cls in (BadSignature, UnknownKey, KeyNotValid, KeyRevoked, ChainGap, ChainFork, ChainReplay):
        assert issubclass(cls, VerificationError)
    for cls in (ChainGap, ChainFork, ChainReplay):
        assert issubclass(cls, ChainError)


def test_roster_survives_a_file_round_trip(tmp_path: Any) -> None:
    r = roster()
    r.revoke(SIGNERS["HE"].key_id, T0)
    r.save(tmp_path / "roster.json")
    loaded = KeyRoster.load(tmp_path / "roster.json")
    assert loaded.to_json() == r.to_json()
    verify(target_event().wire, loaded)


# --- chains --------------------------------------------------------------------------------

CYCLE = [
    ("lead.submitted", "TJ"),
    ("assist.requested", "HE"),
    ("share.alert", None),
    ("recognition.published", "ALL"),
    ("lead.info_supplied", "HE"),
    ("share.acknowledged", "TJ"),
    ("lead.withdrawn", "TJ"),
]


def build_chain(origin: str = "BJ", length: int = 20) -> list[DecodedEvent]:
    """``length`` events of ``origin``, across families and addressees, one per minute."""
    chain = OriginChain(SIGNERS[origin])
    events = []
    for n in range(length):
        name, to = CYCLE[n % len(CYCLE)]
        if to == origin:
            to = "BJ" if origin != "BJ" else "HE"
        events.append(chain.seal(example_event(name, sender=origin, to=to, time=T0 + timedelta(minutes=n))))
    return events


def follow(
    events: list[DecodedEvent], tracker: ChainTracker | None = None, *, resync: bool = False
) -> list[tuple[str, str | None]]:
    """Check ``events`` in order as a receiver does (signature, then chain).

    Returns ``(event id, error code or None)`` per event. A strict receiver refuses a bad
    event and keeps its head; with ``resync`` (an auditor), an event ahead of the head
    (a gap) is recorded and then taken as the new head.
    """
    tracker = tracker or ChainTracker()
    r = roster()
    outcome: list[tuple[str, str | None]] = []
    for event in events:
        raw = encode(event.wire)
        decoded = decode(raw)
        env = decoded.envelope
        try:
            r.verify(decoded.wire, env.sender, env.time)
            tracker.accept(decoded.wire, env.sender)
            outcome.append((env.id, None))
        except ChainGap as exc:
            outcome.append((env.id, exc.code))
            if resync:
                tracker.heads[env.sender] = ChainHead(env.originseq, event_hash(decoded.wire))
        except VerificationError as exc:
            outcome.append((env.id, exc.code))
    return outcome


def codes(outcome: list[tuple[str, str | None]]) -> list[str | None]:
    return [code for _, code in outcome]


def test_chain_of_twenty_is_accepted() -> None:
    events = build_chain()
    assert [e.envelope.originseq for e in events] == list(range(1, 21))
    assert events[0].envelope.prevhash == GENESIS_HASH
    for before, after in itertools.pairwise(events):
        assert after.envelope.prevhash == event_hash(before.wire)
    tracker = ChainTracker()
    assert codes(follow(events, tracker)) == [None] * 20
    assert tracker.head("BJ") == ChainHead(20, event_hash(events[-1].wire))
    assert tracker.head("TJ") == GENESIS
    assert len({e.envelope.event_type for e in events}) == len(CYCLE)
    assert {e.envelope.addressee for e in events} == {"TJ", "HE", "ALL"}


def test_chains_of_origins_are_independent() -> None:
    bj, tj, he = build_chain("BJ", 6), build_chain("TJ", 6), build_chain("HE", 6)
    interleaved = [e for trio in zip(bj, tj, he, strict=True) for e in trio]
    tracker = ChainTracker()
    assert codes(follow(interleaved, tracker)) == [None] * 18
    assert {o: h.seq for o, h in tracker.heads.items()} == {"BJ": 6, "TJ": 6, "HE": 6}
    # a gap in TJ's chain does not disturb BJ's
    tracker = ChainTracker()
    outcome = follow([bj[0], tj[0], tj[2], bj[1]], tracker)
    assert codes(outcome) == [None, None, "chain_gap", None]


def test_tracker_resumes_from_a_checkpoint() -> None:
    events = build_chain(length=8)
    checkpoint = ChainHead(5, event_hash(events[4].wire))
    tracker = ChainTracker({"BJ": checkpoint})
    assert codes(follow(events[5:], tracker)) == [None] * 3
    assert codes(follow([events[3]], ChainTracker({"BJ": checkpoint}))) == ["chain_replay"]


@pytest.mark.parametrize("dropped", [0, 1, 9, 18])
def test_dropped_event_is_a_gap(dropped: int) -> None:
    events = build_chain()
    kept = events[:dropped] + events[dropped + 1 :]
    tracker = ChainTracker()
    outcome = follow(kept, tracker)
    assert codes(outcome)[:dropped] == [None] * dropped
    assert outcome[dropped] == (events[dropped + 1].envelope.id, "chain_gap")

    tracker = ChainTracker()
    for event in events[:dropped]:
        tracker.accept(event.wire, "BJ")
    arriving = events[dropped + 1]
    with pytest.raises(ChainGap) as info:
        tracker.accept(arriving.wire, "BJ")
    exc = info.value
    assert exc.code == "chain_gap"
    assert exc.details["chain"] == exc.details["origin"] == "BJ"
    assert exc.details["expected"] == dropped + 1
    assert exc.details["seq"] == dropped + 2
    assert exc.details["event_id"] == arriving.envelope.id
    assert "BJ" in exc.message and arriving.envelope.id in exc.message
    assert f"expected {dropped + 1}" in exc.message


def test_swapped_events_strict_receiver() -> None:
    """A strict receiver refuses the early one (gap) and keeps waiting for the missing one."""
    events = build_chain()
    swapped = [*events[:9], events[10], events[9], *events[11:]]
    outcome = follow(swapped)
    assert outcome[9] == (events[10].envelope.id, "chain_gap")
    assert outcome[10] == (events[9].envelope.id, None)
    assert outcome[11] == (events[11].envelope.id, "chain_gap")  # event 11 was refused


def test_swapped_events_auditor_sees_gap_then_replay() -> None:
    events = build_chain()
    swapped = [*events[:9], events[10], events[9], *events[11:]]
    tracker = ChainTracker()
    outcome = follow(swapped, tracker, resync=True)
    assert outcome[9] == (events[10].envelope.id, "chain_gap")
    assert outcome[10] == (events[9].envelope.id, "chain_replay")
    assert codes(outcome[11:]) == [None] * 9
    with pytest.raises(ChainReplay) as info:
        ChainTracker({"BJ": ChainHead(11, event_hash(events[10].wire))}).accept(events[9].wire, "BJ")
    exc = info.value
    assert exc.code == "chain_replay"
    assert exc.details == {
        "chain": "BJ",
        "origin": "BJ",
        "seq": 10,
        "expected": 12,
        "event_id": events[9].envelope.id,
    }
    assert "BJ" in exc.message and events[9].envelope.id in exc.message


def test_altered_and_resigned_event_breaks_the_next_link() -> None:
    """An attacker holding BJ's key alters event 8 and re-signs it with the same seq and
    prevhash: it verifies and fits the chain, but genuine event 9 no longer links to it."""
    events = build_chain()
    genuine = events[7]
    altered_wire = copy.deepcopy(genuine.wire)
    altered_wire["data"] = example_payload("lead.submitted") | {"location": "河北省廊坊市某仓库"}
    altered = decode_dict(SIGNERS["BJ"].sign(altered_wire))
    assert altered.envelope.originseq == genuine.envelope.originseq
    assert altered.envelope.prevhash == genuine.envelope.prevhash
    stream = [*events[:7], altered, *events[8:]]
    outcome = follow(stream)
    assert codes(outcome)[:8] == [None] * 8  # the forgery itself passes every check
    assert outcome[8] == (events[8].envelope.id, "chain_fork")

    tracker = ChainTracker()
    for event in stream[:8]:
        tracker.accept(event.wire, "BJ")
    with pytest.raises(ChainFork) as info:
        tracker.accept(events[8].wire, "BJ")
    exc = info.value
    assert exc.code == "chain_fork"
    assert exc.details["chain"] == exc.details["origin"] == "BJ"
    assert exc.details["event_id"] == events[8].envelope.id
    assert exc.details["seq"] == 9
    assert exc.details["prevhash"] == event_hash(genuine.wire)
    assert exc.details["expected_prevhash"] == event_hash(altered.wire)
    assert "BJ" in exc.message and events[8].envelope.id in exc.message


def test_altered_event_without_the_key_is_refused_outright() -> None:
    events = build_chain(length=5)
    forged = copy.deepcopy(events[2].wire)
    forged["data"]["title"] = "伪造的风险提示"
    outcome = follow([*events[:2], decode_dict(forged), *events[3:]])
    assert codes(outcome) == [None, None, "bad_signature", "chain_gap", "chain_gap"]


def test_injected_event_is_detected() -> None:
    """An extra event signed with BJ's key, slotted in after event 5 with seq 6 and the
    right prevhash, is taken; the genuine event 6 then arrives as a replay."""
    events = build_chain(length=10)
    injected = OriginChain(SIGNERS["BJ"], seq=5, prevhash=event_hash(events[4].wire)).seal(
        example_event("lead.withdrawn", to="TJ", time=T0 + timedelta(minutes=5))
    )
    outcome = follow([*events[:5], injected, *events[5:]])
    assert codes(outcome)[:6] == [None] * 6
    assert outcome[6] == (events[5].envelope.id, "chain_replay")


def test_injected_event_with_a_stale_link_is_a_fork() -> None:
    events = build_chain(length=10)
    injected = OriginChain(
        SIGNERS["BJ"],
        seq=5,
        prevhash=event_hash(events[3].wire),  # links to event 4
    ).seal(example_event("lead.withdrawn", to="TJ", time=T0 + timedelta(minutes=5)))
    outcome = follow([*events[:5], injected, *events[5:]])
    assert outcome[5] == (injected.envelope.id, "chain_fork")
    assert codes(outcome[6:]) == [None] * 5  # the fork was refused; the chain goes on


def test_replay_of_an_old_event() -> None:
    events = build_chain()
    tracker = ChainTracker()
    follow(events, tracker)
    for old in (events[0], events[4], events[19]):
        with pytest.raises(ChainReplay) as info:
            tracker.accept(old.wire, "BJ")
        exc = info.value
        assert exc.code == "chain_replay"
        assert exc.details["origin"] == "BJ"
        assert exc.details["event_id"] == old.envelope.id
        assert exc.details["seq"] == old.envelope.originseq
        assert exc.details["expected"] == 21
        assert "BJ" in exc.message and old.envelope.id in exc.message
    assert tracker.head("BJ").seq == 20


def test_event_without_chain_position() -> None:
    event = build_chain(length=1)[0]
    for missing in ("originseq", "prevhash"):
        wire = {k: v for k, v in event.wire.items() if k != missing}
        with pytest.raises(ChainGap, match="BJ") as info:
            ChainTracker().accept(wire, "BJ")
        assert info.value.details == {"chain": "BJ", "origin": "BJ"}
        ChainTracker().accept_link(wire)  # the link chain does not need them
    for missing in ("linkseq", "linkprev"):
        wire = {k: v for k, v in event.wire.items() if k != missing}
        with pytest.raises(ChainGap, match="BJ>TJ") as info:
            ChainTracker().accept_link(wire)
        assert info.value.details == {"chain": "BJ>TJ", "origin": "BJ"}
        ChainTracker().accept(wire, "BJ")


def test_first_event_must_link_to_genesis() -> None:
    event = build_chain(length=1)[0]
    wire = {**event.wire, "prevhash": "sha256:" + "1" * 64}
    with pytest.raises(ChainFork, match=event.envelope.id):
        ChainTracker().accept(wire, "BJ")


# --- link chains ---------------------------------------------------------------------------
#
# build_chain("BJ") interleaves BJ's events to TJ, HE and ALL. A region sees only the events
# addressed to it or to ALL, so it follows BJ's links (BJ>TJ, BJ>ALL), not BJ's origin chain.

TJ_SEES = ("TJ", "ALL")


def view_of(region: str, events: list[DecodedEvent]) -> list[DecodedEvent]:
    """What ``region``'s adapter receives of ``events``: those addressed to it or to ALL."""
    return [e for e in events if e.envelope.addressee in (region, "ALL")]


def follow_links(events: list[DecodedEvent], tracker: ChainTracker | None = None) -> list[tuple[str, str | None]]:
    """Check ``events`` as an adapter does (signature, then the event's link chain)."""
    tracker = tracker or ChainTracker()
    r = roster()
    outcome: list[tuple[str, str | None]] = []
    for event in events:
        decoded = decode(encode(event.wire))
        env = decoded.envelope
        try:
            r.verify(decoded.wire, env.sender, env.time)
            tracker.accept_link(decoded.wire)
            outcome.append((env.id, None))
        except VerificationError as exc:
            outcome.append((env.id, exc.code))
    return outcome


def test_link_chains_are_numbered_per_addressee() -> None:
    events = build_chain()
    for addressee in ("TJ", "HE", "ALL"):
        link = [e for e in events if e.envelope.addressee == addressee]
        assert [e.envelope.linkseq for e in link] == list(range(1, len(link) + 1))
        assert link[0].envelope.linkprev == GENESIS_HASH
        for before, after in itertools.pairwise(link):
            assert after.envelope.linkprev == event_hash(before.wire)
            assert after.envelope.originseq > before.envelope.originseq
    assert all(e.envelope.linkseq <= e.envelope.originseq for e in events)
    assert link_key("BJ", "TJ") == "BJ>TJ" and link_key("BJ", "ALL") == "BJ>ALL"


def test_receiver_view_verifies_by_links_although_originseq_jumps() -> None:
    events = build_chain()
    view = view_of("TJ", events)
    originseqs = [e.envelope.originseq for e in view]
    assert any(b - a > 1 for a, b in itertools.pairwise(originseqs))  # BJ→HE events unseen
    tracker = ChainTracker()
    assert codes(follow_links(view, tracker)) == [None] * len(view)
    to_tj = [e for e in view if e.envelope.addressee == "TJ"]
    to_all = [e for e in view if e.envelope.addressee == "ALL"]
    assert tracker.heads == {
        "BJ>TJ": ChainHead(len(to_tj), event_hash(to_tj[-1].wire)),
        "BJ>ALL": ChainHead(len(to_all), event_hash(to_all[-1].wire)),
    }
    chain, head = ChainTracker().accept_link(view[0].wire)
    assert (chain, head) == ("BJ>TJ", ChainHead(1, event_hash(view[0].wire)))
    # the origin chain cannot be followed from this view: the first hidden event is a gap
    assert "chain_gap" in codes(follow(view))


def test_dropped_event_on_a_link_is_a_gap() -> None:
    events = build_chain()
    view = view_of("TJ", events)
    to_tj = [e for e in view if e.envelope.addressee == "TJ"]
    dropped, arriving = to_tj[2], to_tj[3]  # linkseq 3 is lost, 4 arrives
    kept = [e for e in view if e is not dropped]
    outcome = dict(follow_links(kept))
    assert outcome[arriving.envelope.id] == "chain_gap"
    broadcasts = [e.envelope.id for e in kept if e.envelope.addressee == "ALL"]
    assert all(outcome[i] is None for i in broadcasts)  # BJ>ALL is undisturbed

    tracker = ChainTracker()
    for event in to_tj[:2]:
        tracker.accept_link(event.wire)
    with pytest.raises(ChainGap) as info:
        tracker.accept_link(arriving.wire)
    exc = info.value
    assert exc.code == "chain_gap"
    assert exc.details == {
        "chain": "BJ>TJ",
        "origin": "BJ",
        "seq": 4,
        "expected": 3,
        "event_id": arriving.envelope.id,
    }
    assert "BJ>TJ" in exc.message and "expected 3" in exc.message
    assert arriving.envelope.id in exc.message


def test_altered_and_resigned_event_forks_the_next_link() -> None:
    """An attacker with BJ's key alters a BJ→TJ event and re-signs it with the same
    positions: TJ takes it, but BJ's next event to TJ no longer links to it."""
    events = build_chain()
    to_tj = [e for e in events if e.envelope.addressee == "TJ"]
    genuine, following = to_tj[3], to_tj[4]
    between = events[events.index(genuine) + 1 : events.index(following)]
    assert {e.envelope.addressee for e in between} >= {"ALL"}  # broadcasts in between
    altered_wire = copy.deepcopy(genuine.wire)
    altered_wire["data"] = {**altered_wire["data"], "reason": "伪造的撤回理由"}
    altered = decode_dict(SIGNERS["BJ"].sign(altered_wire))
    assert altered.envelope.linkseq == genuine.envelope.linkseq
    assert altered.envelope.linkprev == genuine.envelope.linkprev

    view = [altered if e is genuine else e for e in view_of("TJ", events)]
    outcome = dict(follow_links(view))
    assert outcome[altered.envelope.id] is None  # the forgery itself passes every check
    assert outcome[following.envelope.id] == "chain_fork"
    assert [outcome[e.envelope.id] for e in between if e.envelope.addressee == "ALL"] == [None, None]

    tracker = ChainTracker()
    for event in [*to_tj[:3], altered]:
        tracker.accept_link(event.wire)
    with pytest.raises(ChainFork) as info:
        tracker.accept_link(following.wire)
    exc = info.value
    assert exc.details["chain"] == "BJ>TJ"
    assert exc.details["origin"] == "BJ"
    assert exc.details["seq"] == following.envelope.linkseq == 5
    assert exc.details["prevhash"] == event_hash(genuine.wire)
    assert exc.details["expected_prevhash"] == event_hash(altered.wire)
    assert exc.details["event_id"] == following.envelope.id
    assert "BJ>TJ" in exc.message


def test_replayed_event_on_a_link() -> None:
    view = view_of("TJ", build_chain())
    tracker = ChainTracker()
    assert codes(follow_links(view, tracker)) == [None] * len(view)
    old = view[0]
    with pytest.raises(ChainReplay) as info:
        tracker.accept_link(old.wire)
    assert info.value.details["chain"] == "BJ>TJ"
    assert info.value.details["seq"] == 1
    assert info.value.details["event_id"] == old.envelope.id


def test_auditor_origin_chain_catches_a_drop_the_receiver_cannot_see() -> None:
    """A dropped BJ→HE event is invisible to TJ; the auditor, who follows BJ's origin
    chain over all events (and every link), detects it."""
    events = build_chain()
    to_he = [e for e in events if e.envelope.addressee == "HE"]
    dropped = to_he[2]
    kept = [e for e in events if e is not dropped]
    after = events[events.index(dropped) + 1]
    next_to_he = to_he[3]

    assert view_of("TJ", kept) == view_of("TJ", events)
    assert codes(follow_links(view_of("TJ", kept))) == [None] * len(view_of("TJ", kept))

    outcome = dict(follow(kept))
    assert outcome[after.envelope.id] == "chain_gap"
    tracker = ChainTracker()
    for event in events[: events.index(dropped)]:
        tracker.accept(event.wire, "BJ")
    with pytest.raises(ChainGap) as info:
        tracker.accept(after.wire, "BJ")
    assert info.value.details["chain"] == "BJ"
    assert info.value.details["expected"] == dropped.envelope.originseq

    # following the links too, the auditor places the loss on BJ>HE
    links = dict(follow_links(kept))
    assert links[next_to_he.envelope.id] == "chain_gap"
    refused = [i for i, code in links.items() if code]
    assert refused[0] == next_to_he.envelope.id  # then, strictly, the rest of BJ>HE too
    assert refused == [e.envelope.id for e in to_he[3:]]

    # one tracker holds both kinds of chain side by side
    both = ChainTracker()
    for event in events:
        both.accept(event.wire, "BJ")
        both.accept_link(event.wire)
    assert set(both.heads) == {"BJ", "BJ>TJ", "BJ>HE", "BJ>ALL"}
    assert both.head("BJ").seq == len(events)
    assert both.head("BJ>HE").seq == len(to_he)


def test_accept_with_link_fields() -> None:
    event = build_chain(length=1)[0]
    assert ChainTracker().accept(event.wire, "BJ>TJ", LINK) == ChainHead(1, event_hash(event.wire))


# --- envelope rules of linkseq / linkprev --------------------------------------------------


def _positions(wire: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**wire, **changes}


def test_link_positions_that_decode() -> None:
    events = build_chain()
    first, later = events[0].wire, events[5].wire  # BJ>TJ linkseq 1, then 2 (originseq 6)
    assert (first["originseq"], first["linkseq"]) == (1, 1)
    assert (later["originseq"], later["linkseq"]) == (6, 2)
    decode_dict(_positions(later, linkseq=6))  # linkseq == originseq is allowed
    # a genesis linkprev past linkseq 1 is structurally fine; only the chain can tell
    wire = _positions(later, linkprev=GENESIS_HASH)
    decode_dict(wire)
    tracker = ChainTracker()
    tracker.accept_link(first)
    with pytest.raises(ChainFork):
        tracker.accept_link(wire)


@pytest.mark.parametrize(
    ("index", "changes", "words"),
    [
        (0, {"linkprev": "sha256:" + "1" * 64}, "genesis linkprev"),
        (5, {"linkseq": 1}, "genesis linkprev"),  # first on the link, but links to an event
        (0, {"linkseq": 2, "linkprev": "sha256:" + "1" * 64}, "cannot exceed originseq"),
        (5, {"linkseq": 7}, "cannot exceed originseq"),
        (0, {"prevhash": "sha256:" + "1" * 64}, "genesis prevhash"),
    ],
    ids=[
        "link-start-not-genesis",
        "linkseq-1-not-genesis",
        "first-event-linkseq-2",
        "linkseq-above-originseq",
        "origin-start-not-genesis",
    ],
)
def test_inconsistent_link_positions_are_refused(index: int, changes: dict[str, Any], words: str) -> None:
    wire = _positions(build_chain()[index].wire, **changes)
    with pytest.raises(SchemaInvalid) as info:
        decode_dict(wire)
    assert info.value.code == "schema_invalid"
    assert words in info.value.message
