"""``xregion audit log verify``: does the stream still hold what the log's checkpoints say?

Inputs: the stream's messages in order (NATS or an archive), the checkpoints the log
published and the witnesses cosigned (from the dead-letter stream), and the log's store
(optional: without it the checks run on what the bus holds alone). The auditor

* verifies every checkpoint found: the log's signature (``note_invalid``), every cosignature
  (``cosignature_invalid``; a line by a key that is no witness's: ``cosignature_not_witness``),
  and every time-stamp token in the store (``timestamp_invalid``, ``timestamp_mismatch``);
* refuses two checkpoints of the same size with different roots (``tlog_inconsistent``: the
  log showed two histories);
* recomputes the tree from the stream in constant memory (:class:`~xregion.merkle.CompactRange`)
  and compares its root at every checkpointed size (``tlog_root_mismatch``: history changed
  after that checkpoint, or the log signed a tree the stream never held);
* names what changed: a logged message the stream no longer holds (``tlog_event_removed``,
  with its event id, referral and stream sequence, from the store; without the store, a
  stream sequence missing inside a checkpointed range), or holds with other bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from dataclasses import dataclass, field
from typing import Any

from xregion.auditor.replay import Anomaly, Record
from xregion.auditor.tlog import Leaf, TransparencyLog
from xregion.errors import VerificationError, XRegionError
from xregion.merkle import CompactRange, leaf_hash
from xregion.note import (
    CHECKPOINT_KIND,
    COSIGNATURE_KIND,
    SignedNote,
    check_cosignatures,
    parse_checkpoint_message,
    parse_cosignature_message,
    verify_log_signature,
)
from xregion.signing import KeyRoster
from xregion.timestamps import TimestampVerifier

TLOG_INCONSISTENT = "tlog_inconsistent"


class LogRootMismatch(VerificationError):
    """The stream no longer yields the root a checkpoint signed at its size."""

    code = "tlog_root_mismatch"


class LogEventRemoved(VerificationError):
    """A message the log included (and a checkpoint covers) is gone from the stream."""

    code = "tlog_event_removed"


@dataclass
class Head:
    """One checkpoint as found: its root, who signed it, where it was found."""

    size: int
    root: bytes
    sources: list[str] = field(default_factory=list)
    cosigners: set[str] = field(default_factory=set)


@dataclass
class LogReport:
    events: int = 0
    checkpoints: dict[int, Head] = field(default_factory=dict)
    tokens: int = 0
    anomalies: list[Anomaly] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.anomalies

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "messages": self.events,
            "checkpoints": [
                {"size": h.size, "root": h.root.hex(), "sources": h.sources, "cosigners": sorted(h.cosigners)}
                for h in sorted(self.checkpoints.values(), key=lambda h: h.size)
            ],
            "tokens": self.tokens,
            "anomalies": [a.to_json() for a in self.anomalies],
        }


class LogChecker:
    def __init__(
        self,
        roster: KeyRoster,
        witnesses: Iterable[str],
        origin: str,
        *,
        tlog: TransparencyLog | None = None,
        tsa: TimestampVerifier | None = None,
    ) -> None:
        self.roster = roster
        self.witnesses = list(witnesses)
        self.origin = origin
        self.tlog = tlog
        self.tsa = tsa
        self.report = LogReport()

    def _problem(self, exc: XRegionError, where: str, **extra: Any) -> None:
        self.report.anomalies.append(Anomaly(exc.code, exc.message, where=where, evidence={**exc.details, **extra}))

    def _head(self, note: SignedNote, where: str) -> None:
        try:
            checkpoint = note.checkpoint()
            verify_log_signature(note, self.roster, self.origin)
        except XRegionError as exc:
            self._problem(exc, where)
            return
        found = check_cosignatures(note, self.roster, self.witnesses, self.origin)
        for problem in found.problems:
            self._problem(problem, where, size=checkpoint.size)
        head = self.report.checkpoints.setdefault(checkpoint.size, Head(checkpoint.size, checkpoint.root))
        if head.root != checkpoint.root:
            self.report.anomalies.append(
                Anomaly(
                    TLOG_INCONSISTENT,
                    f"two checkpoints of size {checkpoint.size} with different roots ({head.root.hex()[:16]}… in "
                    f"{', '.join(head.sources)}; {checkpoint.root.hex()[:16]}… in {where}): "
                    "the log showed two histories",
                    where=where,
                    evidence={"size": checkpoint.size, "roots": [head.root.hex(), checkpoint.root.hex()]},
                )
            )
            return
        head.sources.append(where)
        head.cosigners.update(found.regions)

    def published(self, records: Iterable[Record]) -> None:
        """The log's announcements and the witnesses' cosignatures in the dead-letter stream."""
        for record in records:
            where = f"dead-letter stream seq {record.seq} ({record.subject})"
            if CHECKPOINT_KIND.encode() in record.raw[:40]:
                try:
                    note, _ = parse_checkpoint_message(record.raw)
                except XRegionError as exc:
                    self._problem(exc, where)
                    continue
                self._head(note, where)
            elif COSIGNATURE_KIND.encode() in record.raw[:40]:
                try:
                    _, text, line = parse_cosignature_message(record.raw)
                    note = SignedNote(text, (line,))
                    checkpoint = note.checkpoint()
                except XRegionError as exc:
                    self._problem(exc, where)
                    continue
                found = check_cosignatures(note, self.roster, self.witnesses, self.origin)
                for problem in found.problems:
                    self._problem(problem, where, size=checkpoint.size)
                if found.cosigned:
                    head = self.report.checkpoints.setdefault(checkpoint.size, Head(checkpoint.size, checkpoint.root))
                    if head.root == checkpoint.root:
                        head.cosigners.update(found.regions)
                    else:
                        self.report.anomalies.append(
                            Anomaly(
                                TLOG_INCONSISTENT,
                                f"{', '.join(found.regions)} cosigned a checkpoint of size {checkpoint.size} with "
                                f"root {checkpoint.root.hex()[:16]}…, not {head.root.hex()[:16]}…: two histories",
                                where=where,
                                evidence={"size": checkpoint.size, "roots": [head.root.hex(), checkpoint.root.hex()]},
                            )
                        )

    def stored(self) -> None:
        """The store's checkpoints with their cosignatures, and its time-stamp tokens."""
        if self.tlog is None:
            return
        for checkpoint in self.tlog.checkpoints():
            self._head(self.tlog.cosigned_note(checkpoint.size), f"log store checkpoint {checkpoint.size}")
        for token in self.tlog.timestamps():
            self.report.tokens += 1
            if self.tsa is None:
                continue
            stored = self.tlog.checkpoint(token.size)
            where = f"log store time-stamp of checkpoint {token.size}"
            if stored is None:
                self._problem(VerificationError(f"a token for checkpoint {token.size}, which the log lacks"), where)
                continue
            try:
                self.tsa.verify(token.response, stored.note.text.encode())
            except XRegionError as exc:
                self._problem(exc, where, size=token.size)

    def stream(self, records: Iterable[Record]) -> None:
        """Recompute the tree from the stream and hold it against every checkpoint found."""
        self.begin()
        for record in records:
            self.feed(record)
        self.end()

    async def stream_async(self, records: AsyncIterable[Record]) -> None:
        """:meth:`stream` of an asynchronous source (:func:`~xregion.auditor.source.read_stream`)."""
        self.begin()
        async for record in records:
            self.feed(record)
        self.end()

    def begin(self) -> None:
        self._sizes = sorted(self.report.checkpoints)
        self._pending = iter(self._sizes)
        self._next_size = next(self._pending, None)
        self._compact = CompactRange()
        self._leaves = self.tlog.leaves() if self.tlog is not None else iter(())
        self._expected = next(self._leaves, None)
        self._previous_seq = 0  # stream sequences start at 1
        self._named_seqs: set[int] = set()
        self._mismatched: list[int] = []
        self._named = False

    def feed(self, record: Record) -> None:
        self.report.events += 1
        digest = leaf_hash(record.raw)
        while self._expected is not None and self._expected.stream_seq < record.seq:
            self._removed(self._expected)
            self._expected = next(self._leaves, None)
        expected = self._expected
        if expected is not None and expected.stream_seq == record.seq:
            if expected.hash != digest:
                self._named = True
                self.report.anomalies.append(
                    Anomaly(
                        LogRootMismatch.code,
                        f"stream seq {record.seq} holds other bytes than the log included at leaf "
                        f"{expected.index} (event {expected.event_id or '?'}): altered after it was logged",
                        event_id=expected.event_id,
                        stream_seq=record.seq,
                        referral_id=expected.referral_id,
                        evidence={"leaf": expected.index},
                    )
                )
            self._expected = next(self._leaves, None)
        previous = self._previous_seq
        missing = [s for s in range(previous + 1, record.seq) if s not in self._named_seqs]
        if missing and self._sizes and self._compact.size < self._sizes[-1]:
            # Stream sequences never come back: a hole inside what a checkpoint covers is a removal
            # (named by event when the store holds it, above; by sequence here otherwise).
            self._named = True
            self.report.anomalies.append(
                Anomaly(
                    LogEventRemoved.code,
                    f"stream seq {missing[0]}"
                    + (f"–{missing[-1]}" if len(missing) > 1 else "")
                    + f" missing inside the range checkpoint {self._sizes[-1]} covers: removed",
                    stream_seq=missing[0],
                    evidence={"missing": [missing[0], missing[-1]]},
                )
            )
        self._previous_seq = record.seq
        self._compact.append(digest)
        while self._next_size is not None and self._compact.size >= self._next_size:
            size = self._next_size
            if self._compact.size == size and self._compact.root() != self.report.checkpoints[size].root:
                self._mismatched.append(size)
            self._next_size = next(self._pending, None)

    def end(self) -> None:
        while self._expected is not None:  # logged, and gone from the end of the stream
            self._removed(self._expected)
            self._expected = next(self._leaves, None)
        size_now = self._compact.size
        unreached = [s for s in self._sizes if s > size_now]
        for size in [*self._mismatched, *unreached]:
            head = self.report.checkpoints[size]
            why = (
                f"the stream holds only {size_now} messages"
                if size > size_now
                else "the stream's messages no longer yield its root"
            )
            self.report.anomalies.append(
                Anomaly(
                    LogRootMismatch.code,
                    f"checkpoint {size} (found in {', '.join(head.sources) or 'cosignatures'}; cosigned by "
                    f"{', '.join(sorted(head.cosigners)) or 'no witness'}): {why}: history was rewritten after it"
                    + ("" if self._named else " (the changed message is not named: no log store to compare with)"),
                    evidence={"size": size, "root": head.root.hex()},
                )
            )

    def _removed(self, leaf: Leaf) -> None:
        self._named = True
        self._named_seqs.add(leaf.stream_seq)
        covering = [s for s in self.report.checkpoints if s > leaf.index]
        self.report.anomalies.append(
            Anomaly(
                LogEventRemoved.code,
                f"the log included stream seq {leaf.stream_seq} at leaf {leaf.index} (event {leaf.event_id or '?'}, "
                f"referral {leaf.referral_id or '?'}); the stream no longer holds it"
                + (f"; checkpoints {', '.join(map(str, sorted(covering)[:5]))} cover it" if covering else ""),
                event_id=leaf.event_id,
                stream_seq=leaf.stream_seq,
                referral_id=leaf.referral_id,
                evidence={"leaf": leaf.index, "hash": leaf.hash.hex(), "checkpoints": sorted(covering)[:20]},
            )
        )


def check_log(
    stream: Iterable[Record],
    published: Iterable[Record],
    roster: KeyRoster,
    witnesses: Iterable[str],
    origin: str,
    *,
    tlog: TransparencyLog | None = None,
    tsa: TimestampVerifier | None = None,
) -> LogReport:
    """Run every check of the module doc; the report names each problem."""
    checker = LogChecker(roster, witnesses, origin, tlog=tlog, tsa=tsa)
    checker.published(published)
    checker.stored()
    checker.stream(stream)
    return checker.report
