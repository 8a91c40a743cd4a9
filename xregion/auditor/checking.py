"""The auditor's per-message checks that need nothing but the message, and where they run.

What can be verified of one stored message alone — that its bytes are a valid event
(:func:`xregion.codec.decode`), that the subject it was stored under says what its envelope
says, its signature against the roster (with the revocation grace measured against the time
it reached the stream) and its hash — does not depend on the messages before it. That is
most of a replay's work (reading and validating every event, Ed25519 where it is checked), so
:class:`CheckPool` can run it in worker processes, chunk by chunk, while the
:class:`~xregion.auditor.replay.Replayer` applies the results in stream order: the order-
dependent checks (chains, lifecycle, receipts, deadlines, checkpoints) and every anomaly's
reporting stay in the replaying process, so the anomalies, their order and their evidence
are the same whether the checks ran there or in a worker.

Each event's bytes are read once (:func:`xregion.codec.decode_stored`); where they are their
own canonical form, as senders publish them, they are hashed and their signing input cut as
they are, with no canonical JSON written again. A worker sends back a :class:`CheckedEvent`,
a tuple of the envelope's attributes: receiving it costs the replaying process about 1.5 µs
per event, where an :class:`~xregion.envelope.Envelope` cost it about 40.

Memory stays bounded: at most ``2 × workers + 1`` chunks of records (and their results) are
in flight, besides the one being applied.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

from xregion.codec import DecodedEvent, check_subject, decode_stored
from xregion.envelope import Envelope, handling_codes, type_parts
from xregion.errors import VerificationError, XRegionError
from xregion.lifecycle import Step
from xregion.regions import Region, RegionRegistry
from xregion.signing import KeyRoster, event_hash, hash_of_canonical, signing_input_of_wire
from xregion.subjects import build as build_subject
from xregion.subjects import parse as parse_subject

if TYPE_CHECKING:
    from xregion.auditor.replay import Record

CHUNK = 256
"""Records per chunk sent to a worker: large enough that the inter-process overhead per
chunk is small against the work, small enough to keep little in flight."""


def default_workers() -> int:
    """Worker processes for a replay: 2 where there are at least 2 CPUs, else 0 (in process).

    Measured on 2 CPUs (``python -m xregion.auditor.bench 100000 <workers>``, 100,000 events
    from NATS): 2 workers replay about 1.4× as fast as in process, 1 worker about 1.2×, 3 no
    faster than 2. The replaying process (reading, applying in order) is then about as busy
    as each worker, so more workers pay only with more CPUs, and little even then."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return 2 if cpus >= 2 else 0


@dataclass(frozen=True, slots=True)
class NotAnEvent:
    """Stored bytes that are not a valid event, and why (:func:`xregion.codec.decode`'s fault)."""

    fault: XRegionError


class CheckedEvent(NamedTuple):
    """A valid event: what the in-order checks need of it, with the verdicts on it that
    depend on nothing before it (see the module).

    Its envelope's attributes as validated (``answerby`` as its ISO date, ``handling`` as
    sent) rather than the envelope itself: this is what a worker sends back, a tuple of
    strings and numbers, which costs the replaying process little to receive (an
    :class:`~xregion.envelope.Envelope` costs it more than the checks it applies). The
    derived views (:attr:`family`, :attr:`event_type`, :attr:`version`, :attr:`answer_by`)
    read as :class:`~xregion.envelope.Envelope`'s do, and :meth:`step` is the lifecycle's view.

    ``misfiled`` says it was stored under a subject its envelope contradicts; ``forged`` that
    its signature (or key) does not verify, else ``digest`` is its hash
    (:func:`xregion.signing.event_hash`). ``verified``: its Ed25519 signature was checked;
    else (the default mode) only its key was, and the replayer checks the signature where the
    argument of :mod:`xregion.auditor.replay` needs it.
    """

    id: str
    sender: str
    addressee: str
    subject: str
    type: str
    keyid: str
    originseq: int
    prevhash: str
    linkseq: int
    linkprev: str
    answerby: str | None
    handling: str
    misfiled: XRegionError | None = None
    forged: VerificationError | None = None
    digest: str = ""
    verified: bool = True

    @property
    def family(self) -> str:
        return type_parts(self.type)[0]

    @property
    def event(self) -> str:
        return type_parts(self.type)[1]

    @property
    def event_type(self) -> str:
        """``<family>.<event>``."""
        return type_parts(self.type)[2]

    @property
    def version(self) -> int:
        return type_parts(self.type)[3]

    @property
    def answer_by(self) -> date | None:
        """``answerby`` as the envelope's date."""
        return None if self.answerby is None else _date(self.answerby)

    def step(self, raw: bytes) -> Step:
        """The lifecycle's view of it (:func:`xregion.codec.step_of`); ``raw``: its stored bytes,
        whose ``data`` is read only if the lifecycle looks at it."""
        return Step(
            self.event_type,
            self.sender,
            self.addressee,
            self.subject,
            self.id,
            _Data(raw),
            handling_codes(self.handling),
        )


@lru_cache(maxsize=1024)
def _date(iso: str) -> date:
    return date.fromisoformat(iso)


class _Data(Mapping[str, Any]):
    """An event's ``data``, read from its stored bytes when first looked at. The bytes were
    found to be a valid event already (the strict reading), so reading them again gives the
    envelope's ``data``."""

    __slots__ = ("_data", "_raw")

    def __init__(self, raw: bytes) -> None:
        self._raw = raw
        self._data: dict[str, Any] | None = None

    def _read(self) -> dict[str, Any]:
        if self._data is None:
            self._data = json.loads(self._raw)["data"]
        return self._data

    def __getitem__(self, key: str) -> Any:
        return self._read()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._read())

    def __len__(self) -> int:
        return len(self._read())


Checked = NotAnEvent | CheckedEvent
"""What :meth:`RecordChecker.inspect` finds out about one stored message."""


class RecordChecker:
    """Runs the checks of :class:`Checked` with one roster, registry and revocation grace.

    Picklable, so that a worker process gets its own copy (:class:`CheckPool`)."""

    def __init__(
        self, roster: KeyRoster, registry: RegionRegistry, grace: timedelta, *, every_signature: bool = True
    ) -> None:
        self.roster = roster
        self.registry = registry
        self.grace = grace
        self.every_signature = every_signature
        """Check every event's Ed25519 signature; else only those signed with a key that has
        a revocation (the rest of the signatures the replayer checks where it must)."""
        self._subjects: dict[tuple[str, str, str], str | None] = {}

    def __reduce__(self) -> tuple[Any, ...]:
        # A Region's agencies are a read-only mapping proxy, which cannot be pickled.
        regions = [
            {**{f.name: getattr(r, f.name) for f in fields(r)}, "agencies": dict(r.agencies)} for r in self.registry
        ]
        return (_restore_checker, (self.roster, regions, self.grace, self.every_signature))

    def needs_stored_at(self) -> bool:
        """Whether :meth:`inspect` looks at when a message was stored: only to measure the
        revocation grace of a key that has a revocation (when no key has one, it is not sent
        to the workers)."""
        return any(key.revoked_at is not None for key in self.roster)

    def must_verify(self, key_id: str | None) -> bool:
        """Whether the default mode checks this key's signatures on every event: those of a
        key that has a revocation (an event near it may be a thief's), and unknown ones (the
        verification names the fault)."""
        if self.every_signature or not isinstance(key_id, str) or key_id not in self.roster:
            return True
        return self.roster.get(key_id).revoked_at is not None

    def signature_fault(self, raw: bytes, stored_at: datetime) -> tuple[Envelope, VerificationError] | None:
        """Check the Ed25519 signature of stored bytes that :meth:`inspect` found to be an
        event (the default mode's deferred check): its fault, if any, with its envelope."""
        event, canonical_bytes = decode_stored(raw, registry=self.registry)
        env = event.envelope
        signed = signing_input_of_wire(raw, event.wire) if canonical_bytes else None
        try:
            self.roster.verify(
                event.wire, env.sender, env.time, received_at=stored_at, grace=self.grace, signed_bytes=signed
            )
        except VerificationError as exc:
            return env, exc
        return None

    def inspect(self, raw: bytes, subject: str, stored_at: datetime | None) -> tuple[DecodedEvent | None, Checked]:
        """Check one stored message (``subject``: where it was stored, empty if unknown;
        ``stored_at``: when, which may be None if :meth:`needs_stored_at` says it is not looked
        at); return the decoded event too (None if the bytes are not an event).

        The bytes are read once (:func:`~xregion.codec.decode_stored`): where they are their
        own canonical form, as senders publish them, they are hashed as they are and their
        signing input is cut from them, instead of writing the event's canonical form again."""
        try:
            event, canonical_bytes = decode_stored(raw, registry=self.registry)
        except XRegionError as exc:
            return None, NotAnEvent(exc)
        env = event.envelope
        sender = env.sender
        misfiled = None
        if subject and subject != self._subject_of(env.type, sender, env.addressee):
            try:
                check_subject(parse_subject(subject), event)
            except XRegionError as exc:
                misfiled = exc
        answerby = None if env.answerby is None else env.answerby.isoformat()
        facts = (
            env.id, sender, env.addressee, env.subject, env.type, env.keyid, env.originseq, env.prevhash,
            env.linkseq, env.linkprev, answerby, env.handling, misfiled,
        )  # fmt: skip
        verified = self.must_verify(env.keyid)
        wire = event.wire
        try:
            if verified:
                signed = signing_input_of_wire(raw, wire) if canonical_bytes else None
                self.roster.verify(wire, sender, env.time, received_at=stored_at, grace=self.grace, signed_bytes=signed)
            else:
                self.roster.check_key(wire, sender, env.time, received_at=stored_at, grace=self.grace)
        except VerificationError as exc:
            return event, CheckedEvent(*facts, forged=exc)
        digest = hash_of_canonical(raw) if canonical_bytes else event_hash(wire)
        return event, CheckedEvent(*facts, digest=digest, verified=verified)

    def _subject_of(self, ce_type: str, sender: str, addressee: str) -> str | None:
        """The subject an event of ``ce_type`` from ``sender`` to ``addressee`` belongs on
        (:attr:`DecodedEvent.subject <xregion.codec.DecodedEvent.subject>`), remembered; None
        if it cannot be built (then :func:`~xregion.codec.check_subject` says why)."""
        key = (ce_type, sender, addressee)
        found = self._subjects.get(key, _UNSEEN)
        if found is _UNSEEN:
            try:
                views = type_parts(ce_type)
                found = build_subject(views[0], views[1], sender, addressee, f"v{views[3]}")
            except (XRegionError, IndexError, ValueError):
                found = None
            if len(self._subjects) < 4096:
                self._subjects[key] = found
        return found  # type: ignore[return-value]

    def check(self, record: Record) -> Checked:
        """:meth:`inspect` of ``record``, without the decoded event."""
        return self.inspect(record.raw, record.subject, record.stored_at)[1]

    def check_all(self, jobs: list[tuple[bytes, str, datetime | None]]) -> list[Checked]:
        """:meth:`inspect` of each ``(raw, subject, stored_at)``, without the decoded events."""
        return [self.inspect(*job)[1] for job in jobs]


def _restore_checker(
    roster: KeyRoster, regions: list[dict[str, Any]], grace: timedelta, every_signature: bool = True
) -> RecordChecker:
    return RecordChecker(roster, RegionRegistry([Region(**r) for r in regions]), grace, every_signature=every_signature)


_UNSEEN = object()

_worker_checker: RecordChecker | None = None
"""The checker of this worker process (set by :func:`_start_worker`)."""


def _start_worker(checker: RecordChecker) -> None:
    global _worker_checker
    _worker_checker = checker


def _check_in_worker(jobs: list[tuple[bytes, str, datetime | None]]) -> list[Checked]:
    assert _worker_checker is not None, "a worker is started with its checker"
    return _worker_checker.check_all(jobs)


class CheckPool:
    """Runs :class:`RecordChecker` over records in ``workers`` processes, yielding each record
    with its :class:`Checked` in input order; ``workers=0`` checks in this process.

    Records are sent in chunks of ``chunk``; at most ``2 × workers + 1`` chunks are in flight.
    Each worker gets a copy of the checker (roster, registry, grace) as it is when the workers
    start. The processes start with the first full chunk (a shorter input is checked here: starting
    them costs more than it saves) and stop when the iteration ends. They are started with
    ``forkserver`` (``spawn`` where there is none): forking the replaying process itself, which
    may run threads (a progress display), is unsafe. As with any such start method, a script
    that replays with workers guards its entry point (``if __name__ == "__main__":``), because
    each worker imports the main module.
    """

    def __init__(self, checker: RecordChecker, workers: int, chunk: int = CHUNK) -> None:
        if workers < 0 or chunk < 1:
            raise ValueError("workers must be >= 0 and chunk >= 1")
        self.checker = checker
        self.workers = workers
        self.chunk = chunk

    def checked(self, records: Iterable[Record]) -> Iterator[tuple[Record, Checked]]:
        """Each of ``records`` with its verdicts, in order."""
        if not self.workers:
            for record in records:
                yield record, self.checker.check(record)
            return
        with _Flight(self) as flight:
            for chunk in _chunks(records, self.chunk):
                flight.submit(chunk)
                while flight.full():
                    yield from flight.take(flight.oldest().result())
            while flight:
                yield from flight.take(flight.oldest().result())

    async def checked_async(self, records: AsyncIterable[Record]) -> AsyncGenerator[tuple[Record, Checked]]:
        """:meth:`checked` of an asynchronous source; the event loop runs while workers check."""
        if not self.workers:
            async for record in records:
                yield record, self.checker.check(record)
            return
        with _Flight(self) as flight:
            chunk: list[Record] = []
            async for record in records:
                chunk.append(record)
                if len(chunk) < self.chunk:
                    continue
                flight.submit(chunk)
                chunk = []
                while flight.full():
                    for pair in flight.take(await asyncio.wrap_future(flight.oldest())):
                        yield pair
            if chunk:
                flight.submit(chunk)
            while flight:
                for pair in flight.take(await asyncio.wrap_future(flight.oldest())):
                    yield pair


class _Flight:
    """The chunks in flight of one iteration of a :class:`CheckPool`, and its processes."""

    def __init__(self, pool: CheckPool) -> None:
        self.pool = pool
        self.limit = 2 * pool.workers
        self.executor: ProcessPoolExecutor | None = None
        self.pending: deque[tuple[list[Record], Future[list[Checked]]]] = deque()

    def __enter__(self) -> _Flight:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)

    def __bool__(self) -> bool:
        return bool(self.pending)

    def full(self) -> bool:
        return len(self.pending) > self.limit

    def oldest(self) -> Future[list[Checked]]:
        return self.pending[0][1]

    def submit(self, records: list[Record]) -> None:
        """Check ``records``: in a worker if it is a full chunk (or the workers run), else here."""
        if self.pool.checker.needs_stored_at():
            jobs: list[tuple[bytes, str, datetime | None]] = [(r.raw, r.subject, r.stored_at) for r in records]
        else:  # pickling a datetime costs more than the rest of a job
            jobs = [(r.raw, r.subject, None) for r in records]
        if self.executor is None and len(records) < self.pool.chunk:
            done: Future[list[Checked]] = Future()
            done.set_result(self.pool.checker.check_all(jobs))
            self.pending.append((records, done))
            return
        if self.executor is None:
            method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
            self.executor = ProcessPoolExecutor(
                self.pool.workers,
                mp_context=multiprocessing.get_context(method),
                initializer=_start_worker,
                initargs=(self.pool.checker,),
            )
        self.pending.append((records, self.executor.submit(_check_in_worker, jobs)))

    def take(self, results: list[Checked]) -> Iterator[tuple[Record, Checked]]:
        """The oldest chunk's records with ``results`` (its future's), removing it."""
        records, _ = self.pending.popleft()
        return zip(records, results, strict=True)


def _chunks(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    chunk: list[Record] = []
    for record in records:
        chunk.append(record)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
