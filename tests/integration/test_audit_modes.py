"""The auditor's default mode (signatures where the hash chains do not carry them) sees every
tampering the exhaustive mode (``every_signature``) sees: a removed, inserted, altered or
reordered event, an event re-signed with a revoked key, a forged head, a forged run of events
before a key rotation. The argument is written down in xregion/auditor/replay.py."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from xregion.auditor.replay import Record, Replayer
from xregion.bench.common import bench_roster, synthetic_events
from xregion.chain import GENESIS
from xregion.codec import encode
from xregion.config import load_config
from xregion.signing import KeyRoster, RosterKey, Signer, event_hash

SIGNERS = {p: Signer.generate(p) for p in ("BJ", "TJ")}
REGIONS = load_config().regions
START = datetime.now(UTC) - timedelta(minutes=10)

Events = list[dict[str, Any]]


def events(count: int = 24) -> Events:
    return [json.loads(raw) for _, raw in synthetic_events(count, SIGNERS)]


def rechain(evts: Events, sign: Callable[[int, dict[str, Any]], Signer | None]) -> Events:
    """``evts`` chained again in their order (each origin's chain is also its one link chain)
    and signed by ``sign(i, event)``; None: a garbage signature under the event's own key id."""
    heads: dict[str, tuple[int, str]] = {}
    out = []
    for i, event in enumerate(evts):
        sender = event["source"].split(":")[2]
        seq, prev = heads.get(sender, (GENESIS.seq, GENESIS.hash))
        unsigned = {k: v for k, v in event.items() if k != "signature"}
        unsigned.update(originseq=seq + 1, prevhash=prev, linkseq=seq + 1, linkprev=prev)
        signer = sign(i, unsigned)
        if signer is None:
            signed = {**unsigned, "signature": base64.b64encode(bytes(64)).decode()}
        else:
            signed = signer.sign(unsigned)
        heads[sender] = (seq + 1, event_hash(signed))
        out.append(signed)
    return out


def records(evts: Events) -> list[Record]:
    return [Record(i + 1, START + timedelta(seconds=i), encode(e)) for i, e in enumerate(evts)]


def replay(stored: list[Record], roster: KeyRoster, every: bool) -> Replayer:
    replayer = Replayer(roster, REGIONS, workers=0, every_signature=every)
    replayer.run(stored)
    return replayer


def anomalies(stored: list[Record], roster: KeyRoster, every: bool) -> set[str]:
    return {a.code for a in replay(stored, roster, every).result.anomalies}


ROSTER = bench_roster(SIGNERS)


def test_an_untouched_stream_is_clean_in_both_modes_and_cheap_in_the_default_one() -> None:
    evts = records(events())
    assert anomalies(evts, ROSTER, every=True) == set()
    default = replay(evts, ROSTER, every=False)
    assert default.result.anomalies == []
    assert default.deferred_checks == 2  # one head per origin: 24 events, 2 signatures checked


def last_of(evts: Events, origin: str) -> int:
    return max(i for i, e in enumerate(evts) if e["source"].split(":")[2] == origin)


def tampered() -> dict[str, tuple[list[Record], KeyRoster]]:
    """Each tampering: the stored records and the roster the auditor holds."""
    evts = events()
    out: dict[str, tuple[list[Record], KeyRoster]] = {}
    out["removed"] = (records(evts[:5] + evts[6:]), ROSTER)
    forged = dict(evts[8], id="01a20000-0000-7000-8000-000000000001", signature=base64.b64encode(bytes(64)).decode())
    out["inserted"] = (records([*evts[:9], forged, *evts[9:]]), ROSTER)
    altered = json.loads(json.dumps(evts[4]))
    altered["data"]["note"] = "changed"  # the signature stays: it no longer matches
    out["altered"] = (records([*evts[:4], altered, *evts[5:]]), ROSTER)
    head = last_of(evts, "BJ")
    late = json.loads(json.dumps(evts[head]))
    late["handling"] = "H1"
    out["altered head"] = (records([*evts[:head], late, *evts[head + 1 :]]), ROSTER)
    out["reordered"] = (records([*evts[:4], evts[8], evts[5], evts[6], evts[7], evts[4], *evts[9:]]), ROSTER)
    stored = records(evts)
    stored[3], stored[7] = Record(4, stored[3].stored_at, stored[7].raw), Record(8, stored[7].stored_at, stored[3].raw)
    out["reordered in the stream"] = (stored, ROSTER)
    # A thief holding BJ's second key, revoked before these events, re-signs BJ's head.
    thief = Signer.generate("BJ")
    revoked = RosterKey(
        thief.key_id, "BJ", bytes(thief.verify_key), valid_from=START - timedelta(days=1), revoked_at=START
    )
    with_thief = KeyRoster([*ROSTER, revoked])
    resigned = json.loads(json.dumps(evts[head]))
    resigned["handling"] = "H1"
    out["re-signed with a revoked key"] = (
        records([*evts[:head], thief.sign(resigned), *evts[head + 1 :]]),
        with_thief,
    )
    garbage = dict(evts[head], signature=base64.b64encode(bytes(64)).decode())
    out["forged head"] = (records([*evts[:head], garbage, *evts[head + 1 :]]), ROSTER)
    # A rotation: BJ's events signed by k0, then k1. The holder of k1 rewrites the k0 run with
    # garbage signatures and re-chains everything, signing its own run properly.
    k1 = Signer.generate("BJ")
    rotated_roster = KeyRoster(
        [*ROSTER, RosterKey(k1.key_id, "BJ", bytes(k1.verify_key), valid_from=START - timedelta(days=1))]
    )
    bj_index = [i for i, e in enumerate(evts) if e["source"].split(":")[2] == "BJ"]
    turn = bj_index[len(bj_index) // 2]

    def forged_before_rotation(i: int, event: dict[str, Any]) -> Signer | None:
        sender = event["source"].split(":")[2]
        if sender != "BJ":
            return SIGNERS[sender]
        return k1 if i >= turn else None  # garbage under k0's key id before the turn

    out["forged run before a rotation"] = (records(rechain(evts, forged_before_rotation)), rotated_roster)
    return out


CASES = tampered()


def test_the_rotation_case_is_a_real_rotation() -> None:
    honest = records(rechain(events(), lambda i, e: SIGNERS[e["source"].split(":")[2]]))
    assert anomalies(honest, ROSTER, every=False) == anomalies(honest, ROSTER, every=True) == set()


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_default_mode_sees_what_the_exhaustive_one_sees(case: str) -> None:
    stored, roster = CASES[case]
    exhaustive = anomalies(stored, roster, every=True)
    default = anomalies(stored, roster, every=False)
    assert exhaustive, f"{case}: the exhaustive mode must see it (the test's premise)"
    assert default, f"{case}: the default mode missed what the exhaustive one found: {sorted(exhaustive)}"


def test_the_default_mode_checks_few_signatures() -> None:
    stored, roster = CASES["forged run before a rotation"]
    default = replay(stored, roster, every=False)
    assert 1 <= default.deferred_checks <= 4
    assert "bad_signature" in {a.code for a in default.result.anomalies}
