"""Audit archives: the original signed events, byte for byte, in hash-linked segments.

An archive is a directory::

    manifest.json                 signed by the AUDIT key (Ed25519 over RFC 8785, like events)
    roster.json                   the key roster at export time (its SHA-256 is in the manifest)
    segment-000001.jsonl.gz       gzip'd JSON Lines, one stored message a line
    segment-000002.jsonl.gz       ...
    checkpoints.jsonl.gz          the regions' signed checkpoints (same line format)

Each segment's first line is a header naming its number and the SHA-256 of the previous
segment's uncompressed content (64 zeros for the first); then one line per message,
``{"seq": 12, "stored_at": "...", "subject": "...", "event": "<the message bytes as a JSON
string>"}``; its last line a trailer with the number of events, the first and last stream
sequence and the SHA-256 of everything before it. The manifest lists every segment with the
SHA-256 of its file and of its content. Exports are incremental: a new export continues
after the manifest's last sequence with new segments, and re-signs the manifest.

:func:`verify_archive` checks all of it offline — files, hashes, segment links, line order,
counts, and every event through the :class:`~xregion.auditor.replay.Replayer` (signatures,
chains, lifecycles, receipts, deadlines, checkpoints) — and names every problem by file,
line, event id and what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import json
import os
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from xregion.auditor.checkpoints import collect
from xregion.auditor.replay import ARCHIVE_INVALID, Anomaly, Record, Replayer, ReplayResult
from xregion.envelope import format_time
from xregion.errors import XRegionError
from xregion.regions import AUDITOR, RegionRegistry
from xregion.runtime.restores import RestoreMark
from xregion.signing import KeyRoster, Signer, canonical

FORMAT = "xregion-audit-archive/1"
MANIFEST = "manifest.json"
ROSTER_COPY = "roster.json"
CHECKPOINTS = "checkpoints.jsonl.gz"
GENESIS = "0" * 64
SEGMENT_EVENTS = 100_000


def segment_name(number: int) -> str:
    return f"segment-{number:06d}.jsonl.gz"


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def record_line(record: Record) -> bytes:
    """One message as an archive line; its bytes are kept exactly (as UTF-8 text, or base64)."""
    obj: dict[str, Any] = {"seq": record.seq, "stored_at": format_time(record.stored_at), "subject": record.subject}
    try:
        obj["event"] = record.raw.decode("utf-8")
    except UnicodeDecodeError:
        obj["event_b64"] = base64.b64encode(record.raw).decode("ascii")
    return _line(obj)


def parse_record_line(line: bytes, where: str) -> Record:
    obj = json.loads(line)
    if not isinstance(obj, dict) or not isinstance(obj.get("seq"), int):
        raise ValueError("not a message line")
    if "event" in obj:
        raw = str(obj["event"]).encode("utf-8")
    else:
        raw = base64.b64decode(str(obj["event_b64"]), validate=True)
    stored_at = datetime.fromisoformat(str(obj["stored_at"]).replace("Z", "+00:00"))
    return Record(obj["seq"], stored_at, raw, str(obj.get("subject", "")), where)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# --- writing ---------------------------------------------------------------------------


class _SegmentWriter:
    def __init__(self, directory: Path, number: int, prev: str) -> None:
        self.number = number
        self.path = directory / segment_name(number)
        self.tmp = directory / f".{self.path.name}.tmp"
        self._raw = self.tmp.open("wb")
        self._gz = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0)
        self._body = hashlib.sha256()
        self._content = hashlib.sha256()
        self.events = 0
        self.first_seq: int | None = None
        self.last_seq: int | None = None
        self.first_stored_at: str | None = None
        self.last_stored_at: str | None = None
        self._write(_line({"kind": "header", "format": FORMAT, "segment": number, "prev_sha256": prev}), body=True)

    def _write(self, data: bytes, *, body: bool) -> None:
        self._gz.write(data)
        self._content.update(data)
        if body:
            self._body.update(data)

    def add(self, record: Record) -> None:
        self._write(record_line(record), body=True)
        self.events += 1
        self.first_seq = record.seq if self.first_seq is None else self.first_seq
        self.last_seq = record.seq
        stamp = format_time(record.stored_at)
        self.first_stored_at = self.first_stored_at or stamp
        self.last_stored_at = stamp

    def close(self) -> dict[str, Any]:
        trailer = {
            "kind": "trailer",
            "segment": self.number,
            "events": self.events,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "body_sha256": self._body.hexdigest(),
        }
        self._write(_line(trailer), body=False)
        self._gz.close()
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()
        os.replace(self.tmp, self.path)
        return {
            "file": self.path.name,
            "sha256": _sha256_file(self.path),
            "content_sha256": self._content.hexdigest(),
            "events": self.events,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "first_stored_at": self.first_stored_at,
            "last_stored_at": self.last_stored_at,
        }


@dataclass
class ExportResult:
    directory: Path
    new_segments: list[str] = field(default_factory=list)
    new_events: int = 0
    total_events: int = 0
    last_seq: int = 0


class ArchiveBehindRestore(XRegionError):
    """The stream was restored from a backup that ends before what this archive holds: the
    stream's messages after the backup are no longer the ones archived under those sequences."""

    code = "archive_stream_restored"


class ArchiveWriter:
    """Append stored messages to an archive: ``add()`` each, then ``finish()``.

    Opening an existing archive continues it: :attr:`next_seq` is where the stream read
    should start; new segments link to the last one.
    """

    def __init__(
        self,
        directory: Path,
        signer: Signer,
        roster: KeyRoster,
        *,
        stream: str = "XREGION",
        segment_events: int = SEGMENT_EVENTS,
    ) -> None:
        self.directory = directory
        self.signer = signer
        self.roster = roster
        self.stream = stream
        self.segment_events = segment_events
        directory.mkdir(parents=True, exist_ok=True)
        self.segments: list[dict[str, Any]] = []
        manifest_path = directory / MANIFEST
        if manifest_path.exists():
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            self.segments = list(manifest.get("segments", []))
            last = self.segments[-1] if self.segments else None
            if last is not None and _sha256_file(directory / last["file"]) != last["sha256"]:
                raise XRegionError(
                    f"cannot continue {directory}: {last['file']} does not match the manifest; verify the archive first"
                )
        self._current: _SegmentWriter | None = None
        self.result = ExportResult(directory, total_events=sum(int(s["events"]) for s in self.segments))
        self.result.last_seq = self.last_seq

    @property
    def last_seq(self) -> int:
        for segment in reversed(self.segments):
            if segment.get("last_seq"):
                return int(segment["last_seq"])
        return 0

    @property
    def next_seq(self) -> int:
        return self.last_seq + 1

    def check_stream(self, mark: RestoreMark | None) -> None:
        """Refuse to continue over a stream restored from a backup ending before this archive's
        last message (:mod:`xregion.runtime.restores`): its later sequences now hold other
        messages (the re-published ones, then new ones). The archive stays the record of the
        stream before the restore; the restored stream is exported into a new directory."""
        if mark is not None and mark.last_seq < self.last_seq:
            raise ArchiveBehindRestore(
                f"the stream {self.stream} was restored at {mark.restored_at} from a backup ending at sequence "
                f"{mark.last_seq}; {self.directory} holds messages up to {self.last_seq}, which the restored stream "
                "no longer holds under those sequences. Keep this archive as the record of the stream before the "
                "restore, and export the restored stream into a new directory (xregion audit export --out NEW)",
                restored_at=mark.restored_at,
                restored_last_seq=mark.last_seq,
                archive_last_seq=self.last_seq,
            )

    def add(self, record: Record) -> None:
        if record.seq <= self.result.last_seq:
            return  # already archived
        if self._current is None:
            prev = self.segments[-1]["content_sha256"] if self.segments else GENESIS
            self._current = _SegmentWriter(self.directory, len(self.segments) + 1, prev)
        self._current.add(record)
        self.result.new_events += 1
        self.result.total_events += 1
        self.result.last_seq = record.seq
        if self._current.events >= self.segment_events:
            self._close_segment()

    def _close_segment(self) -> None:
        if self._current is None:
            return
        entry = self._current.close()
        self.segments.append(entry)
        self.result.new_segments.append(entry["file"])
        self._current = None

    def finish(self, checkpoints: Iterable[Record] = ()) -> ExportResult:
        """Close the open segment, write the checkpoints, the roster and the signed manifest."""
        self._close_segment()
        writer = _SegmentWriter(self.directory, 0, GENESIS)
        writer.path = self.directory / CHECKPOINTS
        for record in checkpoints:
            writer.add(record)
        checkpoint_entry = writer.close()
        roster_bytes = (json.dumps(self.roster.to_json(), indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        _atomic_write(self.directory / ROSTER_COPY, roster_bytes)
        manifest = {
            "kind": "manifest",
            "format": FORMAT,
            "stream": self.stream,
            "created": format_time(datetime.now(UTC)),
            "events": self.result.total_events,
            "last_seq": self.result.last_seq,
            "segments": self.segments,
            "checkpoints": checkpoint_entry,
            "roster": {"file": ROSTER_COPY, "sha256": hashlib.sha256(roster_bytes).hexdigest()},
        }
        signed = self.signer.sign(manifest)
        # Canonical (RFC 8785) bytes: any change to the file, whitespace included, is detected.
        _atomic_write(self.directory / MANIFEST, canonical(signed))
        return self.result


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# --- reading and verifying -------------------------------------------------------------


@dataclass
class VerifyResult:
    problems: list[Anomaly] = field(default_factory=list)
    replay: ReplayResult | None = None
    segments: int = 0
    roster_source: str = ""

    @property
    def anomalies(self) -> list[Anomaly]:
        return [*self.problems, *(self.replay.anomalies if self.replay else [])]

    @property
    def ok(self) -> bool:
        return not self.anomalies


def _problem(where: str, message: str, *, code: str = ARCHIVE_INVALID, **evidence: Any) -> Anomaly:
    return Anomaly(code, message, where=where, evidence=evidence)


class _SegmentReader:
    """Reads one segment's lines, hashing as it goes; problems go to ``problems``."""

    def __init__(self, path: Path, problems: list[Anomaly]) -> None:
        self.path = path
        self.problems = problems
        self.content = hashlib.sha256()
        self.body = hashlib.sha256()
        self.header: dict[str, Any] | None = None
        self.trailer: dict[str, Any] | None = None
        self.events = 0
        self.readable = True

    def records(self) -> Iterator[Record]:
        name = self.path.name
        try:
            with gzip.open(self.path, "rb") as fh:
                for number, line in enumerate(fh, 1):
                    self.content.update(line)
                    where = f"{name}:{number}"
                    if self.trailer is not None:
                        self.problems.append(_problem(where, "a line after the trailer"))
                        continue
                    try:
                        obj = json.loads(line)
                    except ValueError as exc:
                        self.body.update(line)
                        self.problems.append(_problem(where, f"not a JSON line: {exc}"))
                        continue
                    kind = obj.get("kind") if isinstance(obj, dict) else None
                    if number == 1:
                        self.body.update(line)
                        if kind != "header":
                            self.problems.append(_problem(where, "the first line is not the segment header"))
                        self.header = obj if isinstance(obj, dict) else {}
                        continue
                    if kind == "trailer":
                        self.trailer = obj
                        continue
                    self.body.update(line)
                    try:
                        record = parse_record_line(line, where)
                    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
                        self.problems.append(_problem(where, f"not a message line: {exc}"))
                        continue
                    self.events += 1
                    yield record
        except (OSError, EOFError, zlib.error) as exc:
            self.readable = False
            self.problems.append(_problem(name, f"not a readable gzip file (truncated or altered): {exc}"))


def _load_manifest(directory: Path, problems: list[Anomaly]) -> dict[str, Any] | None:
    path = directory / MANIFEST
    if not path.exists():
        problems.append(_problem(MANIFEST, "missing: the archive has no manifest"))
        return None
    data = path.read_bytes()
    try:
        manifest = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        problems.append(_problem(MANIFEST, f"not JSON: {exc}"))
        return None
    if isinstance(manifest, dict) and canonical(manifest) != data:
        problems.append(_problem(MANIFEST, "not in its canonical (RFC 8785) form as written: the file was altered"))
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != FORMAT
        or not isinstance(manifest.get("segments"), list)
    ):
        problems.append(_problem(MANIFEST, f"not a {FORMAT} manifest"))
        return None
    return manifest


def _archive_roster(directory: Path, manifest: dict[str, Any], problems: list[Anomaly]) -> KeyRoster | None:
    path = directory / ROSTER_COPY
    if not path.exists():
        problems.append(_problem(ROSTER_COPY, "missing"))
        return None
    data = path.read_bytes()
    want = (manifest.get("roster") or {}).get("sha256")
    if hashlib.sha256(data).hexdigest() != want:
        problems.append(_problem(ROSTER_COPY, "SHA-256 differs from the manifest's: the roster copy was altered"))
    try:
        return KeyRoster.load(path)
    except XRegionError as exc:
        problems.append(_problem(ROSTER_COPY, exc.message))
        return None


def _check_manifest_signature(manifest: dict[str, Any], roster: KeyRoster, problems: list[Anomaly]) -> None:
    try:
        created = datetime.fromisoformat(str(manifest.get("created", "")).replace("Z", "+00:00"))
        roster.verify(manifest, AUDITOR, created)
    except ValueError:
        problems.append(_problem(MANIFEST, "created is not a time"))
    except XRegionError as exc:
        problems.append(_problem(MANIFEST, f"signature: {exc.message}", code=exc.code))


def _checkpoint_records(directory: Path, manifest: dict[str, Any], problems: list[Anomaly]) -> list[Record]:
    entry = manifest.get("checkpoints")
    if not isinstance(entry, dict):
        return []
    path = directory / CHECKPOINTS
    if not path.exists():
        problems.append(_problem(CHECKPOINTS, "missing (listed in the manifest)"))
        return []
    if _sha256_file(path) != entry.get("sha256"):
        problems.append(_problem(CHECKPOINTS, "file SHA-256 differs from the manifest's: altered"))
    reader = _SegmentReader(path, problems)
    records = list(reader.records())
    if reader.readable and reader.content.hexdigest() != entry.get("content_sha256"):
        problems.append(_problem(CHECKPOINTS, "content SHA-256 differs from the manifest's: a line altered"))
    return records


def read_archive(directory: Path) -> Iterator[Record]:
    """Every archived message in order (no checks: use :func:`verify_archive` for those)."""
    manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    for entry in manifest["segments"]:
        yield from _SegmentReader(directory / entry["file"], []).records()


def verify_archive(
    directory: Path,
    registry: RegionRegistry,
    roster: KeyRoster | None = None,
    *,
    progress: Any = None,
) -> VerifyResult:
    """Check an archive offline (see the module doc). ``roster``: the trusted key roster; if
    none is given the archive's own copy is used (and says so in ``roster_source``)."""
    result = VerifyResult()
    problems = result.problems
    manifest = _load_manifest(directory, problems)
    if manifest is None:
        return result
    own = _archive_roster(directory, manifest, problems)
    result.roster_source = "given" if roster is not None else f"{ROSTER_COPY} in the archive"
    roster = roster or own
    if roster is None:
        problems.append(_problem(MANIFEST, "no key roster to verify with (pass --roster)"))
        return result
    _check_manifest_signature(manifest, roster, problems)
    checkpoints = collect(_checkpoint_records(directory, manifest, problems), roster)
    problems.extend(checkpoints.anomalies)
    replayer = Replayer(roster, registry, attestations=checkpoints.attestations)
    replayer.result.checkpoints = checkpoints.count
    listed = [str(s.get("file")) for s in manifest["segments"]]
    for stray in sorted(p.name for p in directory.glob("segment-*.jsonl.gz")):
        if stray not in listed:
            problems.append(_problem(stray, "segment file not listed in the manifest"))
    result.replay = replayer.run(_archived(directory, manifest, result, progress))
    return result


def _archived(directory: Path, manifest: dict[str, Any], result: VerifyResult, progress: Any) -> Iterator[Record]:
    """Every archived message in order, for the replay; each segment's header, link and
    trailer are checked once its messages are read, the manifest's count at the end (problems
    go to ``result``). ``progress`` counts the messages read."""
    problems = result.problems
    prev_content = GENESIS
    total = 0
    for number, entry in enumerate(manifest["segments"], 1):
        name = str(entry.get("file"))
        path = directory / name
        result.segments += 1
        if name != segment_name(number):
            expected = segment_name(number)
            problems.append(_problem(MANIFEST, f"segment {number} is listed as {name}, expected {expected}"))
        if not path.exists():
            problems.append(
                _problem(
                    name,
                    f"missing: segment {number} (stream seq {entry.get('first_seq')}-{entry.get('last_seq')}, "
                    f"{entry.get('events')} events) is listed in the manifest but deleted",
                )
            )
            prev_content = str(entry.get("content_sha256"))
            continue
        if _sha256_file(path) != entry.get("sha256"):
            problems.append(_problem(name, "file SHA-256 differs from the manifest's: the file was altered"))
        reader = _SegmentReader(path, problems)
        for record in reader.records():
            total += 1  # the replayer names a message out of stream order
            yield record
            if progress is not None:
                progress(1)
        if not reader.readable:
            prev_content = str(entry.get("content_sha256"))
            continue
        header = reader.header or {}
        if header.get("segment") != number:
            problems.append(_problem(f"{name}:1", f"header says segment {header.get('segment')}, expected {number}"))
        if header.get("prev_sha256") != prev_content:
            problems.append(
                _problem(
                    f"{name}:1",
                    "header does not link to the previous segment (its prev_sha256 is "
                    f"{header.get('prev_sha256')}, the previous segment's content is {prev_content}): "
                    "a segment was removed, replaced or reordered",
                )
            )
        trailer = reader.trailer
        if trailer is None:
            problems.append(_problem(name, "no trailer: the segment is truncated"))
        else:
            if trailer.get("events") != reader.events:
                problems.append(
                    _problem(
                        name,
                        f"trailer declares {trailer.get('events')} events, {reader.events} found: "
                        "a line was deleted or added",
                    )
                )
            if trailer.get("body_sha256") != reader.body.hexdigest():
                problems.append(_problem(name, "the lines do not hash to the trailer's body_sha256: altered"))
        if reader.content.hexdigest() != entry.get("content_sha256"):
            problems.append(_problem(name, "content SHA-256 differs from the manifest's"))
        prev_content = str(entry.get("content_sha256"))  # the signed value: blame only the altered segment
    if manifest.get("events") != total and not any(p.message.startswith("missing") for p in problems):
        problems.append(_problem(MANIFEST, f"declares {manifest.get('events')} events, {total} found"))
