"""The auditor's streaming verifier: every stored event, checked once, in stream order.

Input is any iterator of :class:`Record` — ``(stream seq, stored at, raw bytes)`` from the
stream (:mod:`xregion.auditor.source`) or from an archive (:mod:`xregion.auditor.archive`).
For each event the :class:`Replayer` checks, reusing the bus's own code:

* structure, type and parties (:func:`xregion.codec.decode`) and, when known, that the
  subject it was stored under says what its envelope says;
* the signature against the key roster valid at the event's time, and the revocation grace
  measured against the time it reached the stream (:meth:`KeyRoster.verify`);
* the origin's hash chain and the sender's link chain (:class:`ChainTracker`): gaps
  (removed events), forks (altered or injected events), replays and reorders;
* lifecycle legality (:data:`xregion.lifecycle.LIFECYCLES`);
* that every event awaiting an automatic receipt got it (:data:`RECEIPTS`), and that every
  request with an ``answerby`` date was answered by then (per region pair);
* that the events other regions' signed checkpoints attest are in the stream, with the
  attested hash (:mod:`xregion.auditor.checkpoints`).

**Signatures: the default mode and ``every_signature``.** With ``every_signature=True``
(``--every-signature``) every event's Ed25519 signature is checked, in the worker processes.
By default (``every_signature=False``) every event is still decoded and hashed, every key
check but the Ed25519 arithmetic is made (the key is the sender's, valid at the event's time,
not revoked, nor used beyond the revocation grace), every origin and link chain followed —
and the signature is checked only where the others do not already carry it:

1. the last event of each origin's chain (at the end of the replay);
2. every event whose key differs from the next event's of the same origin (a rotation);
3. every event signed with a key that has a revocation, and every event whose key the roster
   does not know;
4. both sides of every break the chains report (a gap, fork or replay), where the hash
   chain carries nothing.

Why that suffices: an event's signature covers its ``prevhash``, the hash of the origin's
previous event, signature included, which covers the one before, and so on. So a valid
signature of an origin's event ``e_n`` under key ``k`` proves — unless SHA-256 collides — that
the holder of ``k`` signed ``e_n`` as the successor of exactly the stored ``e_1 … e_{n-1}``.
That proves the earlier events authentic as well only where their keys were ``k`` too: the
holder of ``k`` cannot have forged a signature of another key into the history it signed, but
it could have signed a history whose other-key signatures are garbage; hence rule 2, which
proves each run of one key by its last event, and rule 1, which proves the final run. A key
with a revocation may have been stolen: its events are checked one by one (rule 3). Where a
chain breaks (rule 4) the later events do not commit to the earlier ones, so the events at
the break are checked on their own. What both modes detect: a removed event (a gap in the
origin and link chains), an inserted one (a fork where the next event does not link to it,
or a bad signature at the end of the chain), an altered one (its hash no longer matches its
successor's ``prevhash``; at the end of a chain, its signature fails), reordered events
(replays and gaps), events re-signed with a revoked key (the key checks and rule 3), a forged
head (rule 1). What only ``every_signature`` adds: it names the forged event itself where the
default mode names the break in the chain after it, and it proves each event's signature on
its own (evidence about one event without its successors). ``tests/integration/
test_audit_modes.py`` tampers with a stream in each of these ways and checks both modes see it.

Memory is bounded by the number of chains and of *open* referrals, not by the number of
events: only chain heads, open referral states, outstanding receipts and answers, and the
per-pair counters are kept; a referral whose lifecycle is finished is forgotten (with
``keep_closed=False``). Problems are :class:`Anomaly` records carrying the stable code of
:mod:`xregion.errors` (or an audit-only code below), the event id, the stream sequence, where
in an archive it is, and the evidence.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from functools import lru_cache
from itertools import takewhile
from typing import Any

from xregion.auditor.checking import Checked, CheckedEvent, CheckPool, NotAnEvent, RecordChecker, default_workers
from xregion.chain import ChainHead, ChainTracker, link_key
from xregion.codec import DecodedEvent
from xregion.envelope import Envelope
from xregion.errors import ChainError, ChainReplay, LifecycleError, XRegionError
from xregion.lifecycle import LIFECYCLES, RECEIPTS, ReferralState, Step
from xregion.regions import BROADCAST, RegionRegistry
from xregion.signing import KeyRoster

RECEIPT_MISSING = "receipt_missing"
ANSWER_LATE = "answer_late"
ANSWER_OVERDUE = "answer_overdue"
EVENT_REMOVED = "event_removed"
"""A checkpoint attests an event the stream does not hold."""
CHECKPOINT_MISMATCH = "checkpoint_mismatch"
"""The stream holds another event than a checkpoint attests at that position."""
CHECKPOINT_FORK = "checkpoint_fork"
"""Two checkpoints attest different events at the same position of an origin chain."""
CHECKPOINT_INVALID = "checkpoint_invalid"
ARCHIVE_INVALID = "archive_invalid"

BEIJING = timezone(timedelta(hours=8))


def answer_deadline(answer_by: date) -> datetime:
    """The end of the ``answerby`` day in UTC+8 (the contract's reading of the date)."""
    return datetime.combine(answer_by + timedelta(days=1), time(0), BEIJING)


@dataclass(frozen=True)
class Record:
    """One stored message: its stream sequence, when it reached the stream, its bytes."""

    seq: int
    stored_at: datetime
    raw: bytes
    subject: str = ""
    where: str = ""
    """Its place in an archive, ``segment-000001.jsonl.gz:12`` (empty when read from NATS)."""


@dataclass(frozen=True)
class Anomaly:
    """One problem found, with its evidence."""

    code: str
    message: str
    event_id: str | None = None
    stream_seq: int | None = None
    where: str | None = None
    origin: str | None = None
    referral_id: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        for key in ("event_id", "stream_seq", "where", "origin", "referral_id"):
            if (value := getattr(self, key)) is not None:
                out[key] = value
        if self.evidence:
            out["evidence"] = _json_safe(self.evidence)
        return out

    def line(self) -> str:
        """One human-readable line: where, code, event, message."""
        place = self.where or (f"stream seq {self.stream_seq}" if self.stream_seq is not None else "")
        event = f" event {self.event_id}" if self.event_id else ""
        return f"{place + ': ' if place else ''}{self.code}{event}: {self.message}"


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str, ensure_ascii=False))


@dataclass
class PairStats:
    """Deadline compliance of one region pair (requester → addressee)."""

    requests: int = 0
    on_time: int = 0
    late: int = 0
    overdue: int = 0
    open: int = 0

    def to_json(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass
class Attestation:
    """What checkpoints say about one position of an origin chain."""

    hash: str
    regions: list[str]
    checkpoint_seqs: list[int]


@dataclass
class _Pending:
    event_id: str
    stream_seq: int
    since: datetime
    pair: str
    deadline: datetime | None = None
    answer_by: date | None = None


@dataclass
class ReplayResult:
    """Counts and anomalies of a replay (the report's input)."""

    events: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    first_stored_at: datetime | None = None
    last_stored_at: datetime | None = None
    by_family: Counter[str] = field(default_factory=Counter)
    by_type: Counter[str] = field(default_factory=Counter)
    by_region: Counter[str] = field(default_factory=Counter)
    pairs: dict[str, PairStats] = field(default_factory=dict)
    anomalies: list[Anomaly] = field(default_factory=list)
    heads: dict[str, ChainHead] = field(default_factory=dict)
    checkpoints: int = 0
    open_referrals: int = 0
    anchored: bool = True

    @property
    def ok(self) -> bool:
        return not self.anomalies

    def by_code(self) -> Counter[str]:
        return Counter(a.code for a in self.anomalies)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events": self.events,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "first_stored_at": self.first_stored_at.isoformat() if self.first_stored_at else None,
            "last_stored_at": self.last_stored_at.isoformat() if self.last_stored_at else None,
            "anchored": self.anchored,
            "by_family": dict(sorted(self.by_family.items())),
            "by_type": dict(sorted(self.by_type.items())),
            "by_region": dict(sorted(self.by_region.items())),
            "deadlines": {k: v.to_json() for k, v in sorted(self.pairs.items())},
            "checkpoints": self.checkpoints,
            "open_referrals": self.open_referrals,
            "heads": {o: [h.seq, h.hash] for o, h in sorted(self.heads.items())},
            "anomalies_by_code": dict(sorted(self.by_code().items())),
            "anomalies": [a.to_json() for a in self.anomalies],
        }


class Replayer:
    """Feed :class:`Record` s in stream order with :meth:`feed`; :meth:`finish` at the end.

    ``anchored=False`` (a replay starting after the stream's first message, ``--since``)
    takes the first event seen of each chain as its head, and skips lifecycle checks of
    referrals opened before the window, instead of reporting them.

    ``region``/``referral`` restrict what is *reported and counted*; every event is still
    verified, because the chains run through all of them. ``keep_closed`` keeps finished
    referrals' states (for :func:`xregion.auditor.state.state_at`).

    :meth:`run` and :meth:`run_async` check each message's decoding, subject, signature and
    hash in ``workers`` processes (default :func:`~xregion.auditor.checking.default_workers`;
    0: in this one) and apply the results in stream order with :meth:`apply`: the anomalies
    are the same either way. :meth:`feed` checks one message in this process.
    """

    def __init__(
        self,
        roster: KeyRoster,
        registry: RegionRegistry,
        *,
        grace: timedelta = timedelta(hours=1),
        anchored: bool = True,
        region: str | None = None,
        referral: str | None = None,
        keep_closed: bool = False,
        receipt_grace: timedelta = timedelta(minutes=5),
        attestations: Mapping[str, Mapping[int, Mapping[str, Attestation]]] | None = None,
        workers: int | None = None,
        every_signature: bool = True,
    ) -> None:
        self.roster = roster
        self.registry = registry
        self.grace = grace
        self.every_signature = every_signature
        self.checker = RecordChecker(roster, registry, grace, every_signature=every_signature)
        self._unproven: dict[str, tuple[Record, str]] = {}
        """Per origin, its last event whose signature was not checked and that no later
        checked signature of the same key carries yet (with that key): the default mode."""
        self.deferred_checks = 0
        """Signatures the default mode checked in this process (heads, rotations, breaks)."""
        self.workers = default_workers() if workers is None else workers
        self.anchored = anchored
        self.region = region
        self.referral = referral
        self._everything = region is None and referral is None
        """Every event is reported and counted (:meth:`_relevant`)."""
        self.keep_closed = keep_closed
        self.receipt_grace = receipt_grace
        self.origins = ChainTracker()
        self.links = ChainTracker()
        self.states: dict[str, ReferralState] = {}
        self._receipts: dict[str, dict[tuple[str, str], _Pending]] = {}  # referral -> (receipt type, region)
        self._answers: dict[str, dict[str, _Pending]] = {}  # referral -> addressee region
        self._attested: dict[str, dict[int, Mapping[str, Attestation]]] = {
            o: dict(a) for o, a in (attestations or {}).items()
        }
        self.result = ReplayResult(anchored=anchored)
        self._last_seq = 0
        self._last_stored: datetime | None = None

    # --- input --------------------------------------------------------------------------

    def run(self, records: Iterable[Record], until: datetime | None = None) -> ReplayResult:
        """Verify ``records`` (those stored up to ``until``) and :meth:`finish`, checking them
        in :attr:`workers` processes (see :class:`~xregion.auditor.checking.CheckPool`)."""
        bounded = takewhile(lambda r: until is None or r.stored_at <= until, records)
        for record, checked in CheckPool(self.checker, self.workers).checked(bounded):
            self.apply(record, checked)
        return self.finish(until)

    async def run_async(self, records: AsyncIterable[Record], until: datetime | None = None) -> ReplayResult:
        """:meth:`run` of an asynchronous source (:func:`~xregion.auditor.source.read_stream`)."""
        await self.apply_async(records, until)
        return self.finish(until)

    async def apply_async(
        self,
        records: AsyncIterable[Record],
        until: datetime | None = None,
        progress: Callable[[int], None] = lambda _: None,
    ) -> None:
        """Verify ``records`` (those stored up to ``until``) as :meth:`run_async` does, without
        :meth:`finish`; ``progress(1)`` after each one applied."""
        pool = CheckPool(self.checker, self.workers)
        bounded = records if until is None else _stored_until(records, until)
        async with aclosing(pool.checked_async(bounded)) as checked:
            async for record, result in checked:
                self.apply(record, result)
                progress(1)

    def feed(self, record: Record) -> DecodedEvent | None:
        """Verify one stored message; return the event if it was applied to the referral states."""
        event, checked = self.checker.inspect(record.raw, record.subject, record.stored_at)
        return event if self.apply(record, checked) else None

    def apply(self, record: Record, checked: Checked) -> bool:
        """Verify one stored message, whose order-independent checks are ``checked``, in
        stream order; True if it was applied to the referral states."""
        self._order(record)
        if isinstance(checked, NotAnEvent):
            self._anomaly(checked.fault, record, None)
            return False
        env = checked
        relevant = self._everything or self._relevant(env.sender, env.addressee, env.subject)
        if relevant:
            self._count(env)
        if checked.misfiled is not None:
            self._anomaly(checked.misfiled, record, env, relevant)
        if checked.forged is not None:
            # Not authentic: it belongs to nobody's chain and changes no referral.
            self._anomaly(checked.forged, record, env)
            return False
        clean = self._chains(env, record, checked.digest)
        if not self.every_signature:
            self._prove(record, env, checked.verified, clean)
        if clean is None:
            return False
        if self._attested:
            self._check_attested(env, record, checked.digest)
        return self._lifecycle(env, env.step(record.raw), record, relevant)

    # --- the default mode's signature checks (see the module) ---------------------------

    def _prove(self, record: Record, env: CheckedEvent, verified: bool, clean: bool | None) -> None:
        """Keep track of what later signatures carry; check what they cannot."""
        held = self._unproven.get(env.sender)
        if held is not None and (held[1] != env.keyid or not clean):
            self._check_signature(held[0])  # a rotation (rule 2) or a break in the chain (rule 4)
            del self._unproven[env.sender]
        if verified:
            self._unproven.pop(env.sender, None)  # this signature carries everything before it
        elif not clean:
            self._check_signature(record)  # nothing before it carries it, nor after a break
        else:
            self._unproven[env.sender] = (record, env.keyid)

    def _check_signature(self, record: Record) -> None:
        self.deferred_checks += 1
        fault = self.checker.signature_fault(record.raw, record.stored_at)
        if fault is not None:
            env, exc = fault
            self._anomaly(exc, record, env)

    def _prove_heads(self) -> None:
        """Rule 1: the last event of each origin (if no checked signature carries it)."""
        for record, _ in sorted(self._unproven.values(), key=lambda held: held[0].seq):
            self._check_signature(record)
        self._unproven.clear()

    def _order(self, record: Record) -> None:
        if record.seq <= self._last_seq:
            self._anomaly_raw(
                ARCHIVE_INVALID,
                f"stream sequence {record.seq} does not follow {self._last_seq}: messages swapped, repeated or moved",
                record,
                evidence={"previous_seq": self._last_seq},
            )
        if self._last_stored is not None and record.stored_at < self._last_stored:
            self._anomaly_raw(
                ARCHIVE_INVALID,
                f"stored at {record.stored_at.isoformat()}, before the previous message "
                f"({self._last_stored.isoformat()}): the stream's clock never goes back",
                record,
            )
        self._last_seq = max(self._last_seq, record.seq)
        self._last_stored = record.stored_at
        res = self.result
        res.first_seq = record.seq if res.first_seq is None else res.first_seq
        res.last_seq = record.seq
        res.first_stored_at = res.first_stored_at or record.stored_at
        res.last_stored_at = record.stored_at

    def _relevant(self, sender: str, addressee: str, referral_id: str) -> bool:
        if self.referral is not None and referral_id != self.referral:
            return False
        return self.region is None or self.region in (sender, addressee) or addressee == BROADCAST

    def _count(self, env: CheckedEvent) -> None:
        self.result.events += 1
        self.result.by_family[env.family] += 1
        self.result.by_type[env.event_type] += 1
        self.result.by_region[env.sender] += 1

    # --- chains -------------------------------------------------------------------------

    def _chains(self, env: CheckedEvent, record: Record, digest: str) -> bool | None:
        """Follow the origin and link chains: True if both link cleanly, False if one broke
        (reported), None if the event is a replay (reported, not applied).

        ``digest`` is the event's hash (:func:`~xregion.signing.event_hash`), for both chains."""
        sender = env.sender
        origin_ok = self._follow(self.origins, sender, env.originseq, env.prevhash, digest, record, env)
        if origin_ok is None:
            return None
        link = link_key(sender, env.addressee, env.version)
        link_ok = self._follow(self.links, link, env.linkseq, env.linkprev, digest, record, env, report=origin_ok)
        return bool(origin_ok and link_ok)

    def _follow(
        self,
        tracker: ChainTracker,
        chain: str,
        seq: int,
        prevhash: str,
        digest: str,
        record: Record,
        env: CheckedEvent,
        *,
        report: bool = True,
    ) -> bool | None:
        """Accept the event at ``seq`` linking to ``prevhash`` (both validated by the envelope)
        into ``chain`` with its hash ``digest``; on a gap or fork report and resynchronise on it.
        Returns True (clean), False (reported, resynchronised) or None (a replay: not applied)."""
        new_head = ChainHead(seq, digest)
        head = tracker.heads.get(chain)
        if head is not None and seq == head.seq + 1 and prevhash == head.hash:
            tracker.heads[chain] = new_head  # the next link: what tracker.check accepts
            return True
        if not self.anchored and chain not in tracker.heads:
            tracker.heads[chain] = new_head
            return True
        try:
            tracker.check(chain, seq, prevhash, env.id)
        except ChainReplay as exc:
            self._anomaly(exc, record, env)
            return None
        except ChainError as exc:
            if report:
                head = tracker.head(chain)
                exc.details.setdefault("head", [head.seq, head.hash])
                self._anomaly(exc, record, env)
            tracker.heads[chain] = new_head
            return False
        tracker.heads[chain] = new_head
        return True

    def _check_attested(self, env: CheckedEvent, record: Record, actual: str) -> None:
        attested = self._attested.get(env.sender)
        if not attested:
            return
        claims = attested.pop(env.originseq, None)
        if not claims:
            return
        for claim in claims.values():
            if claim.hash == actual:
                continue
            self._anomaly_raw(
                CHECKPOINT_MISMATCH,
                f"checkpoints of {', '.join(claim.regions)} attest {env.sender} event {env.originseq} as "
                f"{claim.hash}; the stream holds {actual} there: history was rewritten (or they lie)",
                record,
                env,
                evidence={"attested": claim.hash, "stored": actual, "regions": claim.regions},
            )

    # --- lifecycle, receipts, deadlines -------------------------------------------------

    def _lifecycle(self, env: CheckedEvent, step: Step, record: Record, relevant: bool) -> bool:
        """Apply ``step`` (``env``'s) to its referral's state; True if the lifecycle allowed it."""
        previous = self.states.get(env.subject)
        if previous is None and not self.anchored and env.event not in LIFECYCLES[env.family].openings:
            return False  # opened before the window: nothing to check it against
        try:
            state = LIFECYCLES.apply(previous, step)
        except LifecycleError as exc:
            self._anomaly(exc, record, env, relevant)
            return False
        self.states[env.subject] = state
        self._track_answers(env, record, state)
        if self._finished(state):
            # Withdrawn, cancelled, concluded...: nothing is awaited any more.
            self._receipts.pop(env.subject, None)
            self._answers.pop(env.subject, None)
            if not self.keep_closed:
                del self.states[env.subject]
        return True

    def _addressees(self, state: ReferralState) -> list[str]:
        if state.addressee == BROADCAST:
            return [c for c in self.registry.codes if c != state.origin]
        return [state.addressee]

    def _finished(self, state: ReferralState) -> bool:
        lifecycle = LIFECYCLES[state.family]
        if lifecycle.tracked:
            return bool(lifecycle.track_terminal) and all(
                state.tracks.get(r) in lifecycle.track_terminal for r in self._addressees(state)
            )
        return state.state in lifecycle.terminal

    def _track_answers(self, env: CheckedEvent, record: Record, state: ReferralState) -> None:
        """Receipts owed and answers owed. A deadline is the ``answerby`` the request's sender
        signed, as it is (never counted here): the origin's request binds its addressees; an
        addressee's own request (``lead.info_requested``) binds the origin. Any later event
        of the bound party but a receipt answers it; a request that restarts a clock
        (``lead.info_supplied``) binds anew with its own, tolled, date."""
        rid, sender = env.subject, env.sender
        if sender == state.origin:
            targets = self._addressees(state)
            receipt = RECEIPTS.get(env.event_type)
            if receipt is not None:
                for region in targets:
                    pair = f"{sender}>{region}"
                    self._receipts.setdefault(rid, {})[(receipt[0], region)] = _Pending(
                        env.id, record.seq, record.stored_at, pair
                    )
        else:
            targets = [env.addressee]
            _take(self._receipts, rid, (env.event_type, sender))
            if env.event_type == f"{env.family}.received":
                return  # a receipt is not an answer
        self._answered(env, record, _take(self._answers, rid, sender))
        answer_by = env.answer_by
        if answer_by is not None:
            deadline = _deadline(answer_by)
            for region in targets:
                pair = f"{sender}>{region}"
                if self._relevant(sender, region, rid):
                    self._pair(pair).requests += 1
                self._answers.setdefault(rid, {})[region] = _Pending(
                    env.id, record.seq, record.stored_at, pair, deadline, answer_by
                )

    def _answered(self, env: CheckedEvent, record: Record, pending: _Pending | None) -> None:
        """Judge the answer ``env`` gave to ``pending`` (on time, or late: an anomaly)."""
        if pending is None or pending.deadline is None:
            return
        stats = self._pair(pending.pair)
        answered = record.stored_at
        if answered <= pending.deadline:
            stats.on_time += 1
            return
        stats.late += 1
        requester, bound = pending.pair.split(">")
        if self._relevant(requester, bound, env.subject):
            self._anomaly_raw(
                ANSWER_LATE,
                f"{env.sender} answered {pending.event_id} ({env.event_type}) at {answered.isoformat()}, "
                f"after its deadline {pending.deadline.isoformat()}",
                record,
                env,
                evidence={
                    "request": pending.event_id,
                    "answer_by": _iso(pending.answer_by),
                    "deadline": pending.deadline.isoformat(),
                    "pair": pending.pair,
                },
            )

    def _pair(self, pair: str) -> PairStats:
        return self.result.pairs.setdefault(pair, PairStats())

    # --- the end ------------------------------------------------------------------------

    def finish(self, at: datetime | None = None) -> ReplayResult:
        """Close the replay at ``at`` (default: the last stored message, else now)."""
        self._prove_heads()
        now = at or self._last_stored or datetime.now(UTC)
        receipts = [(rid, k, p) for rid, waits in self._receipts.items() for k, p in waits.items()]
        for rid, (receipt_type, region), pending in sorted(receipts, key=lambda x: x[2].stream_seq):
            if pending.since + self.receipt_grace < now and self._relevant(pending.pair.split(">")[0], region, rid):
                self._anomaly_raw(
                    RECEIPT_MISSING,
                    f"{region} never sent {receipt_type} for {pending.event_id} of referral {rid} "
                    f"(stored {pending.since.isoformat()})",
                    Record(pending.stream_seq, pending.since, b""),
                    event_id=pending.event_id,
                    referral_id=rid,
                    evidence={"expected": receipt_type, "from": region},
                )
        answers = [(rid, region, p) for rid, waits in self._answers.items() for region, p in waits.items()]
        for rid, region, pending in sorted(answers, key=lambda x: x[2].stream_seq):
            if pending.deadline is None:
                continue
            stats = self._pair(pending.pair)
            if pending.deadline < now:
                stats.overdue += 1
                if self._relevant(pending.pair.split(">")[0], region, rid):
                    self._anomaly_raw(
                        ANSWER_OVERDUE,
                        f"{region} has not answered {pending.event_id} of referral {rid}; "
                        f"its deadline {pending.deadline.isoformat()} has passed",
                        Record(pending.stream_seq, pending.since, b""),
                        event_id=pending.event_id,
                        referral_id=rid,
                        evidence={
                            "answer_by": _iso(pending.answer_by),
                            "deadline": pending.deadline.isoformat(),
                            "pair": pending.pair,
                        },
                    )
            else:
                stats.open += 1
        for origin, attested in sorted(self._attested.items()):
            head = self.origins.head(origin)
            for seq, claims in sorted(attested.items()):
                if not self.anchored and seq <= head.seq:
                    continue  # before the window
                where = "is missing from the stream" if seq <= head.seq else f"is beyond its head ({head.seq})"
                for claim in claims.values():
                    self._anomaly_raw(
                        EVENT_REMOVED,
                        f"checkpoints of {', '.join(claim.regions)} attest {origin} event {seq} ({claim.hash}); "
                        f"it {where}: removed",
                        Record(0, now, b""),
                        origin=origin,
                        evidence={"origin": origin, "seq": seq, "hash": claim.hash, "regions": claim.regions},
                    )
        self._attested.clear()
        self.result.heads = dict(self.origins.heads)
        self.result.open_referrals = len(self.states)
        return self.result

    # --- anomalies ----------------------------------------------------------------------

    def _anomaly(
        self, exc: XRegionError, record: Record, env: Envelope | CheckedEvent | None, relevant: bool = True
    ) -> None:
        if not relevant:
            return
        details = {k: v for k, v in exc.details.items() if k not in ("event_id",)}
        self.result.anomalies.append(
            Anomaly(
                code=exc.code,
                message=exc.message,
                event_id=env.id if env else None,
                stream_seq=record.seq or None,
                where=record.where or None,
                origin=env.sender if env else None,
                referral_id=env.subject if env else None,
                evidence=details,
            )
        )

    def _anomaly_raw(
        self,
        code: str,
        message: str,
        record: Record,
        env: Envelope | CheckedEvent | None = None,
        *,
        event_id: str | None = None,
        referral_id: str | None = None,
        origin: str | None = None,
        evidence: Mapping[str, Any] | None = None,
    ) -> None:
        self.result.anomalies.append(
            Anomaly(
                code=code,
                message=message,
                event_id=env.id if env else event_id,
                stream_seq=record.seq or None,
                where=record.where or None,
                origin=env.sender if env else origin,
                referral_id=env.subject if env else referral_id,
                evidence=dict(evidence or {}),
            )
        )


@lru_cache(maxsize=1024)
def _deadline(answer_by: date) -> datetime:
    return answer_deadline(answer_by)


def _iso(day: date | None) -> str | None:
    return None if day is None else day.isoformat()


def _take(table: dict[str, dict[Any, _Pending]], rid: str, key: Any) -> _Pending | None:
    waits = table.get(rid)
    if waits is None:
        return None
    found = waits.pop(key, None)
    if not waits:
        del table[rid]
    return found


async def _stored_until(records: AsyncIterable[Record], until: datetime | None) -> AsyncIterator[Record]:
    async for record in records:
        if until is not None and record.stored_at > until:
            return
        yield record


def replay(
    records: Iterable[Record],
    roster: KeyRoster,
    registry: RegionRegistry,
    *,
    until: datetime | None = None,
    **options: Any,
) -> ReplayResult:
    """Verify ``records`` (see :class:`Replayer` for ``options``)."""
    return Replayer(roster, registry, **options).run(records, until)


def limited(records: Iterable[Record], until_seq: int | None) -> Iterator[Record]:
    """``records`` up to stream sequence ``until_seq`` (inclusive)."""
    for record in records:
        if until_seq is not None and record.seq > until_seq:
            return
        yield record
