"""The auditor's replay in worker processes: a tampered stream long enough to be checked chunk
by chunk in workers gives the same result — the same anomalies, in the same order, with the
same evidence, and the same counts, heads and deadlines — as the replay in process."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from datetime import timedelta
from typing import Any

import pytest

from tests.support import EXAMPLE_TIME, OriginChain, dev_roster, dev_signers, example_event
from xregion.auditor import checking
from xregion.auditor.checkpoints import collect
from xregion.auditor.replay import Record, Replayer, ReplayResult
from xregion.chain import ChainHead
from xregion.checkpoint import checkpoint_subject, sign_checkpoint
from xregion.codec import encode
from xregion.config import load_config
from xregion.signing import KeyRoster, Signer

REGISTRY = load_config().regions
LEADS = 160
"""Four events each: 640 records, two full chunks and a partial one (see ``checking.CHUNK``)."""
SPACING = timedelta(seconds=10)
"""Between stored messages: HE's late event reaches the stream after its key's revocation + grace."""
REVOKED_AT = EXAMPLE_TIME + timedelta(minutes=2)


@pytest.fixture(scope="module")
def signers() -> dict[str, Signer]:
    return dev_signers(("BJ", "TJ", "HE"))


@pytest.fixture(scope="module")
def keys(signers: dict[str, Signer]) -> KeyRoster:
    roster = dev_roster(signers)
    roster.revoke(signers["HE"].key_id, REVOKED_AT, "lost")
    return roster


def leads(signers: dict[str, Signer]) -> tuple[list[tuple[bytes, str]], OriginChain]:
    """``LEADS`` leads BJ→TJ (submitted, received, accepted, concluded), as (bytes, subject)."""
    bj, tj = OriginChain(signers["BJ"]), OriginChain(signers["TJ"])
    out: list[tuple[bytes, str]] = []
    for n in range(LEADS):
        rid = f"BJ-01a21164-abe0-7a12-9b34-{n:012x}"
        for chain, name in (
            (bj, "lead.submitted"),
            (tj, "lead.received"),
            (tj, "lead.accepted"),
            (tj, "lead.concluded"),
        ):
            to = "TJ" if chain is bj else "BJ"
            moment = EXAMPLE_TIME + SPACING * (len(out) + 1)
            event = chain.seal(example_event(name, sender=chain.origin, to=to, referral_id=rid, time=moment))
            out.append((encode(event.wire), event.subject))
    return out, bj


def altered(raw: bytes) -> bytes:
    """``raw`` with its correlation id changed (the signature no longer verifies)."""
    wire = json.loads(raw)
    wire["correlationid"] += "-altered"
    return encode(wire)


def tampered(signers: dict[str, Signer]) -> tuple[list[Record], list[Record]]:
    """The stream, with tampering in every chunk, and a TJ checkpoint contradicting it."""
    messages, bj = leads(signers)
    messages[10] = (altered(messages[10][0]), messages[10][1])  # bad_signature
    messages[270] = (b'{"specversion": "1.0", ', messages[270][1])  # malformed_json
    messages[300] = (messages[300][0], messages[301][1])  # subject_mismatch
    thief = Signer.generate("TJ")
    messages[330] = (encode(thief.sign(json.loads(messages[330][0]))), messages[330][1])  # unknown_key
    del messages[400]  # chain_gap
    late = OriginChain(signers["HE"]).seal(example_event("lead.submitted", sender="HE", to="BJ", time=EXAMPLE_TIME))
    messages.insert(560, (encode(late.wire), late.subject))  # key_revoked: stored long after the revocation
    records = [
        Record(n, EXAMPLE_TIME + SPACING * n, raw, subject, f"segment-000001.jsonl.gz:{n}")
        for n, (raw, subject) in enumerate(messages, 1)
    ]
    records[601], records[602] = records[602], records[601]  # archive_invalid, chain_gap, chain_replay (TJ, TJ)
    wrong = ChainHead(5, "sha256:" + "ab" * 32)
    at = EXAMPLE_TIME + SPACING * len(records)
    checkpoints = [
        Record(1, at, sign_checkpoint(signers["TJ"], {"BJ": wrong}, at), checkpoint_subject("TJ")),  # mismatch
        Record(2, at, sign_checkpoint(signers["TJ"], {"BJ": ChainHead(bj.seq + 1, bj.prevhash)}, at)),  # removed
    ]
    return records, checkpoints


@pytest.fixture(scope="module")
def stored(signers: dict[str, Signer]) -> tuple[list[Record], list[Record]]:
    return tampered(signers)


def replayer(keys: KeyRoster, checkpoints: list[Record], workers: int, **options: Any) -> Replayer:
    attestations = collect(checkpoints, keys).attestations
    return Replayer(keys, REGISTRY, workers=workers, attestations=attestations, **options)


def fed(replay: Replayer, records: Iterable[Record]) -> ReplayResult:
    for record in records:
        replay.feed(record)
    return replay.finish()


async def stream(records: list[Record]) -> AsyncIterator[Record]:
    for record in records:
        yield record


def counting_pool(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the chunks sent to worker processes."""
    sent: list[int] = []

    class Counting(checking.ProcessPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            sent.append(len(args[0]))
            return super().submit(fn, *args, **kwargs)

    monkeypatch.setattr(checking, "ProcessPoolExecutor", Counting)
    return sent


@pytest.mark.anyio
async def test_workers_report_what_the_replay_in_process_reports(
    stored: tuple[list[Record], list[Record]], keys: KeyRoster, monkeypatch: pytest.MonkeyPatch
) -> None:
    records, checkpoints = stored
    alone = fed(replayer(keys, checkpoints, 0), records)
    codes = [a.code for a in alone.anomalies]
    for code in (
        "bad_signature",
        "malformed_json",
        "subject_mismatch",
        "unknown_key",
        "chain_gap",
        "key_revoked",
        "archive_invalid",
        "chain_replay",
        "checkpoint_mismatch",
        "event_removed",
    ):
        assert code in codes, codes
    revoked = next(a for a in alone.anomalies if a.code == "key_revoked")
    assert "received_at" in revoked.evidence  # the grace is measured against the stored time
    sent = counting_pool(monkeypatch)

    in_workers = replayer(keys, checkpoints, 2).run(records)
    assert len(sent) == 3 and sum(sent) == len(records)  # every record was checked in a worker
    assert in_workers.to_json() == alone.to_json()
    assert in_workers.anomalies == alone.anomalies

    sent.clear()
    from_stream = await replayer(keys, checkpoints, 2).run_async(stream(records))
    assert sum(sent) == len(records)
    assert from_stream.anomalies == alone.anomalies
    assert from_stream.to_json() == alone.to_json()

    in_process = replayer(keys, checkpoints, 0).run(records)
    assert in_process.to_json() == alone.to_json()


@pytest.mark.parametrize(
    "options",
    [{"anchored": False}, {"region": "TJ"}, {"referral": "BJ-01a21164-abe0-7a12-9b34-000000000096"}],
    ids=["window", "region", "referral"],
)
def test_a_window_or_a_filter_gives_the_same_result(
    stored: tuple[list[Record], list[Record]], keys: KeyRoster, options: dict[str, Any]
) -> None:
    records, checkpoints = stored
    window = records[100:]  # starts inside chains and referrals
    alone = replayer(keys, checkpoints, 0, **options).run(window)
    assert alone.anomalies
    assert replayer(keys, checkpoints, 2, **options).run(window).to_json() == alone.to_json()


def test_a_stream_shorter_than_a_chunk_starts_no_worker(
    stored: tuple[list[Record], list[Record]], keys: KeyRoster, monkeypatch: pytest.MonkeyPatch
) -> None:
    records, checkpoints = stored
    sent = counting_pool(monkeypatch)
    short = records[: checking.CHUNK - 1]
    assert replayer(keys, checkpoints, 2).run(short).to_json() == fed(replayer(keys, checkpoints, 0), short).to_json()
    assert sent == []


def test_until_stops_before_the_first_later_message(stored: tuple[list[Record], list[Record]], keys: KeyRoster) -> None:
    records, checkpoints = stored
    until = records[299].stored_at
    bounded = replayer(keys, checkpoints, 2).run(records, until)
    assert bounded.last_seq == records[299].seq
    assert bounded.to_json() == replayer(keys, checkpoints, 0).run(records[:300], until).to_json()
