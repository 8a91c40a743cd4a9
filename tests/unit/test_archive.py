"""Audit archives: every tampering with an exported archive is detected and named; an
untouched one verifies with exit code 0 (through the CLI)."""

from __future__ import annotations

import gzip
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support import EXAMPLE_TIME, OriginChain, dev_roster, dev_signers, example_event
from xregion.auditor.archive import CHECKPOINTS, MANIFEST, ROSTER_COPY, ArchiveWriter, read_archive, verify_archive
from xregion.auditor.replay import Record
from xregion.chain import ChainHead
from xregion.checkpoint import checkpoint_subject, sign_checkpoint
from xregion.cli import app
from xregion.codec import encode
from xregion.config import load_config
from xregion.signing import KeyRoster, Signer

REGISTRY = load_config().regions


@pytest.fixture(scope="module")
def signers() -> dict[str, Signer]:
    return dev_signers(("BJ", "TJ", "HE", "COORD", "AUDIT"))


@pytest.fixture(scope="module")
def keys(signers: dict[str, Signer]) -> KeyRoster:
    return dev_roster(signers)


def scenario(signers: dict[str, Signer]) -> tuple[list[Record], list[Record]]:
    """Two leads BJ→TJ (submitted, received, accepted, concluded) and a checkpoint of TJ."""
    bj, tj = OriginChain(signers["BJ"]), OriginChain(signers["TJ"])
    records: list[Record] = []

    def store(chain: OriginChain, name: str, rid: str, **kw: object) -> None:
        moment = EXAMPLE_TIME + timedelta(seconds=len(records) + 1)
        sender = chain.origin
        to = "TJ" if sender == "BJ" else "BJ"
        event = chain.seal(example_event(name, sender=sender, to=to, referral_id=rid, time=moment, **kw))
        records.append(Record(len(records) + 1, moment, encode(event.wire), event.subject))

    for n in range(2):
        rid = f"BJ-01a21164-abe0-7a12-9b34-56789abcdef{n}"
        store(bj, "lead.submitted", rid)
        store(tj, "lead.received", rid)
        store(tj, "lead.accepted", rid)
        store(tj, "lead.concluded", rid)
    heads = {"BJ": ChainHead(bj.seq, bj.prevhash), "TJ": ChainHead(tj.seq, tj.prevhash)}
    body = sign_checkpoint(signers["TJ"], heads, EXAMPLE_TIME + timedelta(minutes=5))
    checkpoint = Record(1, EXAMPLE_TIME + timedelta(minutes=5), body, checkpoint_subject("TJ"))
    return records, [checkpoint]


@pytest.fixture
def archive(tmp_path: Path, signers: dict[str, Signer], keys: KeyRoster) -> Path:
    records, checkpoints = scenario(signers)
    writer = ArchiveWriter(tmp_path / "archive", signers["AUDIT"], keys, segment_events=3)
    for record in records:
        writer.add(record)
    writer.finish(checkpoints)
    return tmp_path / "archive"


def problems(archive: Path, keys: KeyRoster) -> list[str]:
    result = verify_archive(archive, REGISTRY, keys)
    return [a.line() for a in result.anomalies]


def segment_lines(path: Path) -> list[bytes]:
    with gzip.open(path, "rb") as fh:
        return fh.read().splitlines(keepends=True)


def write_segment(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(gzip.compress(b"".join(lines), mtime=0))


def flip(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0x01
    path.write_bytes(bytes(data))


def test_an_untouched_archive_verifies_with_exit_code_0(archive: Path, tmp_path: Path, keys: KeyRoster) -> None:
    assert problems(archive, keys) == []
    assert sorted(p.name for p in archive.iterdir()) == [
        CHECKPOINTS,
        MANIFEST,
        ROSTER_COPY,
        "segment-000001.jsonl.gz",
        "segment-000002.jsonl.gz",
        "segment-000003.jsonl.gz",
    ]
    roster_file = tmp_path / "trusted-roster.json"
    keys.save(roster_file)
    runner = CliRunner()
    out = runner.invoke(app, ["audit", "verify", str(archive), "--roster", str(roster_file)])
    assert out.exit_code == 0, out.output
    assert "archive intact" in out.output
    out = runner.invoke(app, ["audit", "verify", str(archive)])  # with the archive's own roster copy
    assert out.exit_code == 0, out.output


def test_the_archive_holds_the_original_bytes(tmp_path: Path, signers: dict[str, Signer], keys: KeyRoster) -> None:
    records, _ = scenario(signers)
    writer = ArchiveWriter(tmp_path / "a", signers["AUDIT"], keys, segment_events=5)
    for record in records:
        writer.add(record)
    writer.finish()
    archived = list(read_archive(tmp_path / "a"))
    assert [r.raw for r in archived] == [r.raw for r in records]
    assert [(r.seq, r.stored_at, r.subject) for r in archived] == [(r.seq, r.stored_at, r.subject) for r in records]


@pytest.mark.parametrize(
    "name", ["segment-000001.jsonl.gz", "segment-000002.jsonl.gz", "segment-000003.jsonl.gz", CHECKPOINTS]
)
def test_flipping_any_byte_of_a_segment_is_named(archive: Path, keys: KeyRoster, name: str) -> None:
    path = archive / name
    original = path.read_bytes()
    size = len(original)
    # Every position class: gzip magic, flags, mtime, OS byte, deflate stream, CRC-32, size.
    positions = sorted({0, 1, 2, 3, 4, 8, 9, *range(10, size - 8, max(1, (size - 18) // 25)), *range(size - 8, size)})
    for position in positions:
        flip(path, position)
        found = problems(archive, keys)
        assert found, f"flipping byte {position} of {name} went unnoticed"
        assert any(name in line for line in found), (position, found)
        path.write_bytes(original)
    assert problems(archive, keys) == []


@pytest.mark.parametrize("name", [MANIFEST, ROSTER_COPY])
def test_flipping_any_byte_of_the_manifest_or_roster_is_named(archive: Path, keys: KeyRoster, name: str) -> None:
    path = archive / name
    original = path.read_bytes()
    for position in range(0, len(original), max(1, len(original) // 60)):
        flip(path, position)
        found = problems(archive, keys)
        assert any(name in line for line in found), (position, found)
        path.write_bytes(original)


def test_an_altered_event_is_named_by_file_line_and_event_id(archive: Path, keys: KeyRoster) -> None:
    import json

    path = archive / "segment-000002.jsonl.gz"
    lines = segment_lines(path)
    line = json.loads(lines[2])
    event = json.loads(line["event"])
    event["data"]["title"] += "（改）"
    line["event"] = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    lines[2] = json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
    write_segment(path, lines)
    found = problems(archive, keys)
    assert any(line.startswith(f"segment-000002.jsonl.gz:3: bad_signature event {event['id']}") for line in found), (
        found
    )
    assert any("segment-000002.jsonl.gz" in line and "body_sha256" in line for line in found), found


def test_deleting_a_line_is_named(archive: Path, keys: KeyRoster) -> None:
    path = archive / "segment-000002.jsonl.gz"
    lines = segment_lines(path)
    del lines[1]  # TJ's lead.concluded of the first lead
    write_segment(path, lines)
    found = "\n".join(problems(archive, keys))
    assert "segment-000002.jsonl.gz: archive_invalid: trailer declares 3 events, 2 found" in found
    assert "segment-000003" not in found
    assert "chain_gap" in found
    assert "segment-000002.jsonl.gz: archive_invalid: file SHA-256 differs" in found


def test_swapping_two_lines_is_named(archive: Path, keys: KeyRoster) -> None:
    path = archive / "segment-000002.jsonl.gz"
    lines = segment_lines(path)
    lines[1], lines[2] = lines[2], lines[1]
    write_segment(path, lines)
    found = "\n".join(problems(archive, keys))
    assert "segment-000002.jsonl.gz:3" in found and "does not follow" in found
    assert "body_sha256" in found


def test_deleting_a_segment_is_named(archive: Path, keys: KeyRoster) -> None:
    (archive / "segment-000002.jsonl.gz").unlink()
    found = "\n".join(problems(archive, keys))
    assert "segment-000002.jsonl.gz: archive_invalid: missing: segment 2" in found
    assert "chain_gap" in found


def test_deleting_the_last_segment_and_its_manifest_entry_breaks_the_signature(archive: Path, keys: KeyRoster) -> None:
    import json

    from xregion.signing import canonical

    manifest = json.loads((archive / MANIFEST).read_bytes())
    manifest["segments"] = manifest["segments"][:-1]
    (archive / MANIFEST).write_bytes(canonical(manifest))
    (archive / "segment-000003.jsonl.gz").unlink()
    found = "\n".join(problems(archive, keys))
    assert "manifest.json: bad_signature" in found


def test_a_manifest_signed_by_someone_else_is_refused(
    archive: Path, signers: dict[str, Signer], keys: KeyRoster
) -> None:
    import json

    from xregion.signing import canonical

    manifest = json.loads((archive / MANIFEST).read_bytes())
    manifest["events"] = 7
    (archive / MANIFEST).write_bytes(canonical(signers["BJ"].sign(manifest)))
    found = "\n".join(problems(archive, keys))
    assert "manifest.json: key_not_valid" in found


def test_an_extra_segment_is_named(archive: Path, keys: KeyRoster) -> None:
    shutil.copy(archive / "segment-000003.jsonl.gz", archive / "segment-000004.jsonl.gz")
    assert any(
        "segment-000004.jsonl.gz: archive_invalid: segment file not listed" in p for p in problems(archive, keys)
    )


def test_exports_are_incremental(tmp_path: Path, signers: dict[str, Signer], keys: KeyRoster) -> None:
    records, checkpoints = scenario(signers)
    out = tmp_path / "inc"
    first = ArchiveWriter(out, signers["AUDIT"], keys, segment_events=3)
    for record in records[:4]:
        first.add(record)
    assert first.finish().new_segments == ["segment-000001.jsonl.gz", "segment-000002.jsonl.gz"]
    second = ArchiveWriter(out, signers["AUDIT"], keys, segment_events=3)
    assert second.next_seq == 5
    for record in records:  # already archived ones are skipped
        second.add(record)
    result = second.finish(checkpoints)
    assert result.new_segments == ["segment-000003.jsonl.gz", "segment-000004.jsonl.gz"]
    assert result.total_events == len(records)
    assert problems(out, keys) == []
    assert [r.raw for r in read_archive(out)] == [r.raw for r in records]


def test_a_checkpoint_attesting_an_event_the_archive_lacks_is_named(
    tmp_path: Path, signers: dict[str, Signer], keys: KeyRoster
) -> None:
    records, checkpoints = scenario(signers)
    out = tmp_path / "truncated"
    writer = ArchiveWriter(out, signers["AUDIT"], keys)
    for record in records[:-1]:  # TJ's last event (attested by TJ's checkpoint) is gone
        writer.add(record)
    writer.finish(checkpoints)
    found = "\n".join(problems(out, keys))
    assert "event_removed" in found and "TJ event 6" in found
