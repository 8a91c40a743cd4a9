"""The coordinator's read model of every referral, folded from the event stream.

API (what the status command and the dashboard build on)
--------------------------------------------------------
::

    projection = Projection(Path("coord.sqlite"), config=load_config(), calendar=WorkingCalendar())
    projection.open()                      # create / migrate the tables
    projection.apply(wire, stream_seq, stored_at)   # fold one stream message (idempotent)
    projection.last_seq() -> int           # last stream sequence applied (0: empty)
    projection.rebuild(messages)           # wipe and refold from (wire, seq, stored_at) tuples

    projection.referrals(region=None, family=None, state=None, overdue=None, at=None)
        -> list[ReferralView]              # filtered, ordered by opening stream sequence
    projection.referral(referral_id, at=None) -> ReferralView | None   # with .timeline
    projection.summary(at=None) -> Summary # counts per family/state, per region pair, overdue
    projection.blacklist_propagation() -> list[Propagation]  # who acknowledged which share update
    projection.anomalies() -> list[Anomaly]                  # what was recorded, not refused
    projection.subscribe() -> asyncio.Queue[str]             # changed referral ids (live)
    projection.unsubscribe(queue)

All query methods are synchronous, cheap SQLite reads returning frozen dataclasses whose
``to_json()`` gives the stable JSON form (the keys ``xregion status --json`` prints).
``at`` is the day overdue is judged on (default: today in Beijing time).

The projection is pure with respect to the stream: the same messages in the same order
give the same tables, so :meth:`Projection.rebuild` from an empty store equals the live
one. Lifecycle transitions are :data:`xregion.lifecycle.LIFECYCLES` — the adapters' code;
an event the lifecycle refuses is recorded as an :class:`Anomaly` and the referral stays
as it was (the coordinator never refuses, it reports). Each message is applied in one
transaction together with the last applied stream sequence, so a restart resumes exactly
where it stopped and a redelivered message is skipped.

Sealed personal data stays sealed: the coordinator has no key to open it.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from xregion.chain import ChainHead, ChainTracker
from xregion.codec import DecodedEvent, check_subject, decode_dict, step_of
from xregion.config import BusConfig, load_config
from xregion.contracts.catalog import CATALOG, Catalog
from xregion.coordinator import waitlog
from xregion.deadlines import PAUSES, RESUMES, DayCalendar, beijing_date, beijing_today
from xregion.envelope import Envelope
from xregion.errors import XRegionError
from xregion.lifecycle import LIFECYCLES, ReferralState
from xregion.regions import BROADCAST
from xregion.runtime.restores import RestoreMark
from xregion.runtime.store import Store
from xregion.subjects import parse as parse_subject

ESCALATION_FAMILY = "escalation"

Verify = Callable[[dict[str, Any], Envelope, datetime], None]
"""Authenticity check of one event (signature against the key roster); raises a
:class:`~xregion.errors.VerificationError`. The service passes the roster's; tests may omit it."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS referrals (
    referral_id   TEXT PRIMARY KEY,
    family        TEXT NOT NULL,
    origin        TEXT NOT NULL,
    addressee     TEXT NOT NULL,
    state         TEXT NOT NULL,
    tracks        TEXT NOT NULL,
    events        INTEGER NOT NULL,
    last_event_id TEXT NOT NULL,
    handling      TEXT NOT NULL,
    permissions   TEXT NOT NULL,
    opened_seq    INTEGER NOT NULL,
    opened_at     TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    clocks        TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS timeline (
    stream_seq  INTEGER PRIMARY KEY,
    referral_id TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    sender      TEXT NOT NULL,
    addressee   TEXT NOT NULL,
    time        TEXT NOT NULL,
    stored_at   TEXT NOT NULL,
    state_after TEXT NOT NULL,
    anomaly     TEXT
);
CREATE INDEX IF NOT EXISTS timeline_referral ON timeline (referral_id, stream_seq);
CREATE TABLE IF NOT EXISTS chains (
    chain TEXT PRIMARY KEY,
    seq   INTEGER NOT NULL,
    hash  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS anomalies (
    stream_seq  INTEGER PRIMARY KEY,
    event_id    TEXT,
    referral_id TEXT,
    code        TEXT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS escalations (
    event_id    TEXT PRIMARY KEY,
    referral_id TEXT NOT NULL,
    party       TEXT NOT NULL,
    threshold   TEXT NOT NULL,
    answer_by   TEXT NOT NULL,
    stream_seq  INTEGER
);
CREATE INDEX IF NOT EXISTS escalations_referral ON escalations (referral_id);
"""

PROJECTED_TABLES = ("meta", "referrals", "timeline", "chains", "anomalies", "escalations", waitlog.TABLE)


def _iso(day: date | None) -> str | None:
    return None if day is None else day.isoformat()


def _utc(moment: datetime) -> str:
    return moment.isoformat()


@dataclass(frozen=True)
class TimelineEntry:
    """One event of a referral, as the stream holds it (``anomaly``: why it did not apply)."""

    stream_seq: int
    event_id: str
    event_type: str
    sender: str
    addressee: str
    time: str
    stored_at: str
    state_after: str
    anomaly: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "stream_seq": self.stream_seq,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "sender": self.sender,
            "addressee": self.addressee,
            "time": self.time,
            "stored_at": self.stored_at,
            "state_after": self.state_after,
            "anomaly": self.anomaly,
        }


@dataclass(frozen=True)
class Wait:
    """A party the referral waits on, and until when.

    ``due`` is the ``answerby`` the sender signed, as it is (None: the event set no deadline);
    ``clock`` is the id of the event that signed it; ``paused`` while the clock is tolled (a
    lead's addressee waiting for information it requested from the origin; the origin's
    ``lead.info_supplied`` signs the new date); ``tolled_days`` are the days (of the
    coordinator's calendar) the past pauses lasted.
    """

    party: str
    awaiting: str
    since: date
    due: date | None
    paused: bool
    tolled_days: int
    clock: str

    def overdue_on(self, at: date) -> bool:
        return not self.paused and self.due is not None and at > self.due

    def to_json(self, at: date) -> dict[str, Any]:
        return {
            "party": self.party,
            "awaiting": self.awaiting,
            "since": self.since.isoformat(),
            "due": _iso(self.due),
            "paused": self.paused,
            "tolled_days": self.tolled_days,
            "overdue": self.overdue_on(at),
        }

    def _row(self, paused_since: date | None) -> dict[str, Any]:
        return {
            "party": self.party,
            "awaiting": self.awaiting,
            "since": self.since.isoformat(),
            "due": _iso(self.due),
            "paused_since": _iso(paused_since),
            "tolled_days": self.tolled_days,
            "clock": self.clock,
        }


@dataclass(frozen=True)
class ReferralView:
    """Where one referral stands on day ``at`` (``timeline`` only from :meth:`Projection.referral`)."""

    referral_id: str
    family: str
    origin: str
    addressee: str
    state: str
    tracks: Mapping[str, str]
    opened_at: str
    updated_at: str
    events: int
    answer_by: date | None
    waits: tuple[Wait, ...]
    outstanding_receipts: tuple[str, ...]
    outstanding_acknowledgements: tuple[str, ...]
    escalations: tuple[str, ...]
    overdue: bool
    late_parties: tuple[str, ...]
    at: date
    timeline: tuple[TimelineEntry, ...] = ()

    @property
    def pair(self) -> str:
        return f"{self.origin}>{self.addressee}"

    def to_json(self) -> dict[str, Any]:
        """The stable JSON form (``xregion status --json``; keys pinned by a test)."""
        out: dict[str, Any] = {
            "referral_id": self.referral_id,
            "family": self.family,
            "origin": self.origin,
            "addressee": self.addressee,
            "state": self.state,
            "tracks": dict(self.tracks),
            "opened_at": self.opened_at,
            "updated_at": self.updated_at,
            "events": self.events,
            "answer_by": _iso(self.answer_by),
            "overdue": self.overdue,
            "late_parties": list(self.late_parties),
            "waits": [w.to_json(self.at) for w in self.waits],
            "outstanding_receipts": list(self.outstanding_receipts),
            "outstanding_acknowledgements": list(self.outstanding_acknowledgements),
            "escalations": list(self.escalations),
        }
        if self.timeline:
            out["timeline"] = [e.to_json() for e in self.timeline]
        return out


@dataclass(frozen=True)
class Summary:
    """Counts: per family and state, per region pair (``BJ>TJ``), overdue, anomalies."""

    total: int
    overdue: int
    by_family_state: Mapping[str, Mapping[str, int]]
    by_pair: Mapping[str, int]
    overdue_by_party: Mapping[str, int]
    anomalies: int
    last_seq: int
    at: date

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "last_seq": self.last_seq,
            "total": self.total,
            "overdue": self.overdue,
            "anomalies": self.anomalies,
            "by_family_state": {f: dict(s) for f, s in self.by_family_state.items()},
            "by_pair": dict(self.by_pair),
            "overdue_by_party": dict(self.overdue_by_party),
        }


@dataclass(frozen=True)
class Propagation:
    """One share broadcast and which regions acknowledged it (region → stored_at)."""

    referral_id: str
    event_type: str
    origin: str
    published_at: str
    acknowledged: Mapping[str, str]
    pending: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "referral_id": self.referral_id,
            "event_type": self.event_type,
            "origin": self.origin,
            "published_at": self.published_at,
            "acknowledged": dict(self.acknowledged),
            "pending": list(self.pending),
        }


@dataclass(frozen=True)
class Anomaly:
    """A stream message that was recorded but did not (fully) apply, with its error code."""

    stream_seq: int
    event_id: str | None
    referral_id: str | None
    code: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {
            "stream_seq": self.stream_seq,
            "event_id": self.event_id,
            "referral_id": self.referral_id,
            "code": self.code,
            "detail": self.detail,
        }


# --- who owes what ------------------------------------------------------------------------

LEAD_ADDRESSEE_OWES = frozenset({"submitted", "received", "info_requested", "info_supplied"})
ASSIST_ADDRESSEE_OWES = frozenset({"requested", "received", "accepted", "evidence_delivered"})
TRACK_OWES = {"recognition": frozenset({"pending", "received"}), "share": frozenset({"pending"})}


def owes(state: ReferralState, party: str) -> bool:
    """Does ``party`` still owe the referral an answer (so its clock keeps running)?"""
    if state.family == "lead":
        if party == state.origin:
            return state.state == "info_requested"
        return state.state in LEAD_ADDRESSEE_OWES
    if state.family == "assist":
        return party != state.origin and state.state in ASSIST_ADDRESSEE_OWES
    if state.family == "recognition":
        return state.state == "published" and state.tracks.get(party, "pending") in TRACK_OWES["recognition"]
    if state.family == "share":
        return state.tracks.get(party, "pending") in TRACK_OWES["share"]
    return False


class Projection:
    """The coordinator's read model in one SQLite file (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        *,
        config: BusConfig | None = None,
        calendar: DayCalendar | None = None,
        catalog: Catalog = CATALOG,
        verify: Verify | None = None,
        today: Callable[[], date] = beijing_today,
    ) -> None:
        self.path = path
        self.config = config or load_config()
        self.calendar: DayCalendar = calendar or self.config.deadlines.calendar
        """Counts the paused days shown and the escalation thresholds; never a deadline."""
        self.catalog = catalog
        self.verify = verify
        self.today = today
        self._db: sqlite3.Connection | None = None
        self._subscribers: list[asyncio.Queue[str]] = []

    # --- storage ------------------------------------------------------------------------

    def open(self) -> Projection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            upgrade = not waitlog.table_exists(db)
            db.executescript(SCHEMA + waitlog.SCHEMA)
            if upgrade:  # a store folded before the wait log existed: fold it again from the start
                for table in PROJECTED_TABLES:
                    db.execute(f"DELETE FROM {table}")
            self._db = db
        return self

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> Projection:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self.open()
        assert self._db is not None
        return self._db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE`` … ``COMMIT``; rolled back on error)."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def last_seq(self) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
        return 0 if row is None else int(row[0])

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every projected table, ordered: two projections are equal iff their dumps are."""
        out = {}
        for table in PROJECTED_TABLES:
            out[table] = sorted(self.db.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
        return out

    # --- folding ------------------------------------------------------------------------

    def apply(self, wire: dict[str, Any] | bytes, stream_seq: int, stored_at: datetime) -> str | None:
        """Fold one stream message; returns the changed referral id (None if skipped or
        not attributable). A message at or below :meth:`last_seq` is skipped (idempotent)."""
        changed = self.apply_many([(wire, stream_seq, stored_at)])
        return changed[0] if changed else None

    def apply_many(self, messages: Iterable[tuple[dict[str, Any] | bytes, int, datetime]]) -> list[str]:
        """Fold messages in one transaction (with the last stream sequence); notify after commit."""
        changed: list[str] = []
        with self.transaction() as db:
            last = self.last_seq()
            for wire, seq, stored_at in sorted(messages, key=lambda m: m[1]):
                if seq <= last:
                    continue
                referral = self._fold(db, wire, seq, stored_at)
                if referral is not None:
                    changed.append(referral)
                last = seq
                db.execute(
                    "INSERT INTO meta (key, value) VALUES ('last_seq', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(last),),
                )
        for referral_id in dict.fromkeys(changed):
            for queue in self._subscribers:
                queue.put_nowait(referral_id)
        return changed

    def rebuild(self, messages: Iterable[tuple[dict[str, Any] | bytes, int, datetime]], batch: int = 500) -> int:
        """Forget everything and fold ``messages`` (the whole stream, in order) again."""
        self.reset()
        count, chunk = 0, []
        for message in messages:
            chunk.append(message)
            if len(chunk) >= batch:
                self.apply_many(chunk)
                count += len(chunk)
                chunk = []
        if chunk:
            self.apply_many(chunk)
            count += len(chunk)
        return count

    def follow_restore(self, mark: RestoreMark) -> bool:
        """Take note of the stream's restore from a backup (:mod:`xregion.runtime.restores`),
        once per restore: a projection that had folded beyond the backup's end is emptied, to
        be folded again from the start (what the restored stream holds, then the events the
        adapters re-publish). True if it was emptied."""
        with self.transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'restored_at'").fetchone()
            if row is not None and row[0] == mark.restored_at:
                return False
            emptied = mark.last_seq < self.last_seq()
            if emptied:
                for table in PROJECTED_TABLES:
                    db.execute(f"DELETE FROM {table}")
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('restored_at', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (mark.restored_at,),
            )
        return emptied

    def reset(self) -> None:
        """Empty every projected table (the start of a rebuild)."""
        with self.transaction() as db:
            for table in PROJECTED_TABLES:
                db.execute(f"DELETE FROM {table}")

    def _anomaly(
        self, db: sqlite3.Connection, seq: int, event_id: str | None, referral_id: str | None, exc: XRegionError
    ) -> None:
        db.execute(
            "INSERT OR REPLACE INTO anomalies (stream_seq, event_id, referral_id, code, detail) VALUES (?,?,?,?,?)",
            (seq, event_id, referral_id, exc.code, exc.message[:1000]),
        )

    def _fold(self, db: sqlite3.Connection, raw: dict[str, Any] | bytes, seq: int, stored_at: datetime) -> str | None:
        wire: Any = raw
        if isinstance(raw, bytes | bytearray):
            try:
                wire = json.loads(raw)
            except (UnicodeDecodeError, ValueError) as exc:
                self._anomaly(db, seq, None, None, XRegionError(f"not UTF-8 JSON: {exc}"))
                return None
        try:
            event = decode_dict(wire, catalog=self.catalog, registry=self.config.regions)
        except XRegionError as exc:
            event_id = wire.get("id") if isinstance(wire, dict) else None
            subject = wire.get("subject") if isinstance(wire, dict) else None
            self._anomaly(db, seq, event_id if isinstance(event_id, str) else None, None, exc)
            return subject if isinstance(subject, str) and self._known(db, subject) else None
        env = event.envelope
        try:
            if self.verify is not None:
                self.verify(event.wire, env, stored_at)
            check_subject(parse_subject(event.subject), event)
            self._follow_chain(db, event)
        except XRegionError as exc:
            # Recorded, and the event still projected: the coordinator reports, never refuses.
            self._anomaly(db, seq, env.id, env.subject, exc)
        if env.family == ESCALATION_FAMILY:
            return self._escalation(db, event, seq, stored_at)
        previous = self._load(db, env.subject)
        try:
            state = LIFECYCLES.apply(previous, step_of(event))
        except XRegionError as exc:
            self._anomaly(db, seq, env.id, env.subject, exc)
            if previous is None:
                return None
            self._timeline(db, event, seq, stored_at, self._position(previous, env.sender), exc.code)
            return env.subject
        clocks = self._clocks(db, previous, state, event)
        waitlog.record(db, state.referral_id, self._stored_clocks(db, state.referral_id), clocks, seq)
        self._save(db, state, previous, seq, stored_at, clocks)
        self._timeline(db, event, seq, stored_at, self._position(state, env.sender), None)
        return env.subject

    def _follow_chain(self, db: sqlite3.Connection, event: DecodedEvent) -> None:
        """Follow the sender's origin chain (the coordinator sees every event of it)."""
        sender = event.envelope.sender
        row = db.execute("SELECT seq, hash FROM chains WHERE chain = ?", (sender,)).fetchone()
        tracker = ChainTracker({sender: ChainHead(row[0], row[1])} if row else {})
        head = tracker.accept(event.wire, sender)
        db.execute(
            "INSERT INTO chains (chain, seq, hash) VALUES (?,?,?) "
            "ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            (sender, head.seq, head.hash),
        )

    def _escalation(self, db: sqlite3.Connection, event: DecodedEvent, seq: int, stored_at: datetime) -> str | None:
        env = event.envelope
        try:
            LIFECYCLES.apply(None, step_of(event))
        except XRegionError as exc:
            self._anomaly(db, seq, env.id, env.subject, exc)
            return None
        data = env.data
        target = str(data.get("referral_id", ""))
        db.execute(
            "INSERT INTO escalations (event_id, referral_id, party, threshold, answer_by, stream_seq) "
            "VALUES (?,?,?,?,?,?) ON CONFLICT (event_id) DO UPDATE SET stream_seq = excluded.stream_seq",
            (env.id, target, env.addressee, str(data.get("threshold", "")), str(data.get("answer_by", "")), seq),
        )
        if not self._known(db, target):
            return None
        self._timeline(db, event, seq, stored_at, str(data.get("threshold", env.event)), None, referral_id=target)
        return target

    @staticmethod
    def _position(state: ReferralState, sender: str) -> str:
        return state.tracks.get(sender, state.state) if state.tracks else state.state

    def _timeline(
        self,
        db: sqlite3.Connection,
        event: DecodedEvent,
        seq: int,
        stored_at: datetime,
        state_after: str,
        anomaly: str | None,
        referral_id: str | None = None,
    ) -> None:
        env = event.envelope
        db.execute(
            "INSERT OR REPLACE INTO timeline (stream_seq, referral_id, event_id, event_type, sender, addressee, "
            "time, stored_at, state_after, anomaly) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                seq,
                referral_id or env.subject,
                env.id,
                env.event_type,
                env.sender,
                env.addressee,
                event.wire["time"],
                _utc(stored_at),
                state_after,
                anomaly,
            ),
        )

    # --- deadlines ----------------------------------------------------------------------

    def _day_of(self, env: Envelope) -> date:
        return beijing_date(env.time)

    def _sets_deadline(self, env: Envelope) -> bool:
        """Does ``env`` open a wait: it carries a signed ``answerby``, or its type awaits an
        answer by the configuration (a sender that signed no date set no deadline: the wait
        is shown without one, never overdue)."""
        return env.answerby is not None or self.config.deadlines.period(env.event_type) is not None

    def _addressees(self, state: ReferralState) -> tuple[str, ...]:
        if state.addressee == BROADCAST:
            return self.config.regions.others(state.origin)
        return (state.addressee,)

    def _clocks(
        self, db: sqlite3.Connection, previous: ReferralState | None, state: ReferralState, event: DecodedEvent
    ) -> list[dict[str, Any]]:
        env = event.envelope
        day = self._day_of(env)
        clocks: list[dict[str, Any]] = [] if previous is None else self._stored_clocks(db, state.referral_id)
        # Every date is the sender's signed ``answerby``, as it is: nothing is counted here.
        due = env.answerby
        if previous is None and self._sets_deadline(env):
            for party in self._addressees(state):
                clocks.append(self._clock(party, f"answer to {env.event_type}", day, due, env.id))
        elif env.event_type in PAUSES:
            for clock in clocks:
                if clock["party"] == env.sender and clock["paused_since"] is None:
                    clock["paused_since"] = day.isoformat()
            if self._sets_deadline(env):
                clocks.append(self._clock(env.addressee, "information requested", day, due, env.id))
        elif env.event_type in RESUMES:
            for clock in clocks:
                if clock["party"] == env.addressee and clock["paused_since"] is not None:
                    clock["tolled_days"] += self.calendar.between(date.fromisoformat(clock["paused_since"]), day)
                    clock["paused_since"] = None
                    clock["due"] = _iso(due)  # the origin's signed, tolled date
                    clock["clock"] = env.id
        return [c for c in clocks if owes(state, c["party"])]

    @staticmethod
    def _clock(party: str, awaiting: str, since: date, due: date | None, clock: str) -> dict[str, Any]:
        return Wait(party, awaiting, since, due, False, 0, clock)._row(None)

    @staticmethod
    def _stored_clocks(db: sqlite3.Connection, referral_id: str) -> list[dict[str, Any]]:
        row = db.execute("SELECT clocks FROM referrals WHERE referral_id = ?", (referral_id,)).fetchone()
        return [] if row is None else list(json.loads(row[0]))

    # --- referral rows ------------------------------------------------------------------

    @staticmethod
    def _known(db: sqlite3.Connection, referral_id: str) -> bool:
        return db.execute("SELECT 1 FROM referrals WHERE referral_id = ?", (referral_id,)).fetchone() is not None

    # The referrals table has the adapter store's columns: one reader for both.
    _load = staticmethod(Store.load_referral)

    def _save(
        self,
        db: sqlite3.Connection,
        state: ReferralState,
        previous: ReferralState | None,
        seq: int,
        stored_at: datetime,
        clocks: list[dict[str, Any]],
    ) -> None:
        db.execute(
            "INSERT INTO referrals (referral_id, family, origin, addressee, state, tracks, events, last_event_id, "
            "handling, permissions, opened_seq, opened_at, updated_at, clocks) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT (referral_id) DO UPDATE SET state=excluded.state, tracks=excluded.tracks, "
            "events=excluded.events, last_event_id=excluded.last_event_id, permissions=excluded.permissions, "
            "updated_at=excluded.updated_at, clocks=excluded.clocks",
            (
                state.referral_id,
                state.family,
                state.origin,
                state.addressee,
                state.state,
                json.dumps(dict(state.tracks), sort_keys=True),
                state.events,
                state.last_event_id,
                ",".join(state.handling),
                json.dumps(sorted(state.permissions)),
                seq,
                _utc(stored_at),
                _utc(stored_at),
                json.dumps(clocks, sort_keys=True),
            ),
        )

    # --- queries ------------------------------------------------------------------------

    _COLUMNS = (
        "referral_id, family, origin, addressee, state, tracks, events, opened_at, updated_at, clocks, opened_seq"
    )

    def _view(self, row: tuple[Any, ...], at: date, timeline: tuple[TimelineEntry, ...] = ()) -> ReferralView:
        referral_id, family, origin, addressee, state_name, tracks_raw, events, opened_at, updated_at, clocks_raw = row[
            :10
        ]
        tracks: dict[str, str] = json.loads(tracks_raw)
        waits = tuple(
            Wait(
                party=c["party"],
                awaiting=c["awaiting"],
                since=date.fromisoformat(c["since"]),
                due=None if c["due"] is None else date.fromisoformat(c["due"]),
                paused=c["paused_since"] is not None,
                tolled_days=int(c["tolled_days"]),
                clock=c["clock"],
            )
            for c in json.loads(clocks_raw)
        )
        state = ReferralState(referral_id, family, origin, addressee, state_name, MappingProxyType(tracks))
        receipts, acks = self._outstanding(state)
        escalations = tuple(
            f"{party}:{threshold}"
            for party, threshold in self.db.execute(
                "SELECT party, threshold FROM escalations WHERE referral_id = ? AND stream_seq IS NOT NULL "
                "ORDER BY stream_seq",
                (referral_id,),
            )
        )
        late = tuple(sorted({w.party for w in waits if w.overdue_on(at)}))
        running = [w.due for w in waits if not w.paused and w.due is not None]
        return ReferralView(
            referral_id=referral_id,
            family=family,
            origin=origin,
            addressee=addressee,
            state=state_name,
            tracks=MappingProxyType(tracks),
            opened_at=opened_at,
            updated_at=updated_at,
            events=events,
            answer_by=min(running) if running else None,
            waits=waits,
            outstanding_receipts=receipts,
            outstanding_acknowledgements=acks,
            escalations=escalations,
            overdue=bool(late),
            late_parties=late,
            at=at,
            timeline=timeline,
        )

    def _outstanding(self, state: ReferralState) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(regions whose automatic receipt is outstanding, whose acknowledgement is)."""
        parties = self._addressees(state)
        if state.family == "lead":
            return ((state.addressee,) if state.state == "submitted" else ()), ()
        if state.family == "assist":
            return ((state.addressee,) if state.state == "requested" else ()), ()
        if state.family == "recognition":
            if state.state == "revoked":
                return (), tuple(p for p in parties if state.tracks.get(p) != "revocation_acknowledged")
            return tuple(p for p in parties if state.tracks.get(p, "pending") == "pending"), ()
        if state.family == "share":
            return (), tuple(p for p in parties if state.tracks.get(p) != "acknowledged")
        return (), ()

    def referrals(
        self,
        *,
        region: str | None = None,
        family: str | None = None,
        state: str | None = None,
        overdue: bool | None = None,
        at: date | None = None,
    ) -> list[ReferralView]:
        """Referrals in stream order. ``region`` matches origin, addressee (``ALL`` included
        for every region) or a track; ``overdue`` is judged on day ``at`` (default today)."""
        day = at or self.today()
        sql, params = f"SELECT {self._COLUMNS} FROM referrals WHERE 1=1", []
        if family is not None:
            sql += " AND family = ?"
            params.append(family)
        if state is not None:
            sql += " AND state = ?"
            params.append(state)
        views = []
        for row in self.db.execute(sql + " ORDER BY opened_seq", params).fetchall():
            view = self._view(row, day)
            if (
                region is not None
                and region not in (view.origin, view.addressee, BROADCAST)
                and region not in view.tracks
            ):
                continue
            if overdue is not None and view.overdue != overdue:
                continue
            views.append(view)
        return views

    def referral(self, referral_id: str, *, at: date | None = None) -> ReferralView | None:
        """One referral with its full timeline (escalations about it included)."""
        row = self.db.execute(f"SELECT {self._COLUMNS} FROM referrals WHERE referral_id = ?", (referral_id,)).fetchone()
        if row is None:
            return None
        timeline = tuple(
            TimelineEntry(*r)
            for r in self.db.execute(
                "SELECT stream_seq, event_id, event_type, sender, addressee, time, stored_at, state_after, anomaly "
                "FROM timeline WHERE referral_id = ? ORDER BY stream_seq",
                (referral_id,),
            )
        )
        return self._view(row, at or self.today(), timeline)

    def summary(self, *, at: date | None = None) -> Summary:
        day = at or self.today()
        views = self.referrals(at=day)
        by_state: dict[str, dict[str, int]] = {}
        by_pair: dict[str, int] = {}
        late: dict[str, int] = {}
        for view in views:
            family = by_state.setdefault(view.family, {})
            family[view.state] = family.get(view.state, 0) + 1
            by_pair[view.pair] = by_pair.get(view.pair, 0) + 1
            for party in view.late_parties:
                late[party] = late.get(party, 0) + 1
        anomalies = int(self.db.execute("SELECT count(*) FROM anomalies").fetchone()[0])
        return Summary(
            total=len(views),
            overdue=sum(v.overdue for v in views),
            by_family_state=MappingProxyType(
                {f: MappingProxyType(dict(sorted(s.items()))) for f, s in sorted(by_state.items())}
            ),
            by_pair=MappingProxyType(dict(sorted(by_pair.items()))),
            overdue_by_party=MappingProxyType(dict(sorted(late.items()))),
            anomalies=anomalies,
            last_seq=self.last_seq(),
            at=day,
        )

    def blacklist_propagation(self) -> list[Propagation]:
        """Every share broadcast (blacklist updates first of all): who has acknowledged it."""
        out = []
        rows = self.db.execute(
            "SELECT r.referral_id, r.origin, r.opened_at, t.event_type FROM referrals r "
            "JOIN timeline t ON t.stream_seq = r.opened_seq WHERE r.family = 'share' ORDER BY r.opened_seq"
        ).fetchall()
        for referral_id, origin, opened_at, event_type in rows:
            acked = {
                sender: stored
                for sender, stored in self.db.execute(
                    "SELECT sender, stored_at FROM timeline WHERE referral_id = ? "
                    "AND event_type = 'share.acknowledged' AND anomaly IS NULL ORDER BY stream_seq",
                    (referral_id,),
                )
            }
            parties = self.config.regions.others(origin)
            out.append(
                Propagation(
                    referral_id=referral_id,
                    event_type=event_type,
                    origin=origin,
                    published_at=opened_at,
                    acknowledged=MappingProxyType(acked),
                    pending=tuple(p for p in parties if p not in acked),
                )
            )
        return out

    def anomalies(self) -> list[Anomaly]:
        return [
            Anomaly(*r)
            for r in self.db.execute(
                "SELECT stream_seq, event_id, referral_id, code, detail FROM anomalies ORDER BY stream_seq"
            )
        ]

    # --- escalation records -------------------------------------------------------------

    def escalation_recorded(self, event_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM escalations WHERE event_id = ?", (event_id,)).fetchone() is not None

    def record_escalation(self, event_id: str, referral_id: str, party: str, threshold: str, answer_by: date) -> bool:
        """Record an escalation before it is published; False if it was recorded already."""
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO escalations (event_id, referral_id, party, threshold, answer_by, stream_seq) "
                "VALUES (?,?,?,?,?,NULL)",
                (event_id, referral_id, party, threshold, answer_by.isoformat()),
            )
            return cursor.rowcount == 1

    # --- live changes -------------------------------------------------------------------

    def subscribe(self) -> asyncio.Queue[str]:
        """A queue receiving the id of every referral that changes from now on (call and
        read it on the event loop that applies events)."""
        queue: asyncio.Queue[str] = asyncio.Queue()
        self._subscribers.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[str]) -> None:
        if queue in self._subscribers:
            self._subscribers.remove(queue)


__all__ = [
    "Anomaly",
    "Projection",
    "Propagation",
    "ReferralView",
    "Summary",
    "TimelineEntry",
    "Wait",
    "owes",
]
