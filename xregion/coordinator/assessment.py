"""Performance assessment: how each region answers, from the coordinator's projection.

The policy puts IP-protection performance into each region's assessment (绩效考核); this is
the figure sheet for it. ``assess(projection, period)`` reads the projection's tables —
referrals, timeline, the wait log (:mod:`xregion.coordinator.waitlog`), escalations — and
returns an :class:`Assessment` (``to_json()`` is the ``--json`` document).

Definitions (docs/assessment.md has the full text)
--------------------------------------------------
* **Cohort.** The referrals *opened* in the period (the Beijing date of the opening event's
  ``time``, ``from`` ≤ day ≤ ``to``), as they stood at the end of ``to``: events after it are
  ignored, so the figures of a past period do not change when later events arrive, and a
  projection rebuilt from the stream up to the period's end gives the same numbers.
* **Track.** One addressee's part of a referral (a broadcast has one per other region):
  the unit of every answer figure. "Received" counts tracks addressed to a region, "sent"
  counts referrals a region opened.
* **Deadline outcome** of a track — the addressee's wait started by the opening event, as the
  projection kept it (its due date is the ``answerby`` the sender signed, moved by the
  sender's tolled date after an information request; no date is recomputed here):
  ``on_time`` — the addressee ended the wait (accepted, rejected, forwarded a lead; completed
  or declined an assistance; recognised or contested a result; acknowledged a share) on or
  before the due date; ``late`` — after it; ``overdue`` — not ended at the period's end and
  the due date has passed (a paused clock is never overdue); ``open`` — not ended, not yet
  due; ``withdrawn`` — ended by the origin (withdrawn, cancelled, revoked); ``no_deadline`` —
  the opening event set no date. **On-time rate** = on_time / (on_time + late + overdue).
* **Response times** in working days of the projection's calendar (the configured deadline
  calendar: holidays skipped, adjusted working days counted) from the opening event's day to
  the addressee's first receipt (``received``; a share's ``acknowledged``), acceptance
  (``accepted``; a recognition's ``recognized``/``contested``) and conclusion
  (``concluded``/``completed``): ``calendar.between(open day, event day)``, 0 the same day.
  Median (the mean of the two middle values for an even count) and 90th percentile
  (nearest rank).
* **Excluded**: a referral with an event whose signature, key or chain position failed the
  coordinator's check (an anomaly of a security code) is left out and named in the source.
* **Escalations**: the coordinator's reminders and overdue notices about a track, addressed
  to its addressee, issued by the period's end.
* **Trend**: per ISO week (Monday-Sunday) or calendar month of the period: tracks opened per
  region pair, their outcomes, and the waits overdue at the end of the bucket (every wait of
  the projection, whenever opened, as it stood that day).
"""

from __future__ import annotations

import hashlib
import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from xregion.coordinator import waitlog
from xregion.coordinator.calendar import BEIJING, DayCalendar
from xregion.coordinator.projection import Projection
from xregion.explanations import explain
from xregion.regions import BROADCAST

REPORT = "xregion-assessment/1"

FAMILIES = ("lead", "assist", "recognition", "share")
ALL = "all"
OUTCOMES = ("on_time", "late", "overdue", "open", "withdrawn", "no_deadline")
MILESTONES: Mapping[str, Mapping[str, frozenset[str]]] = {
    "lead": {
        "receipt": frozenset({"lead.received"}),
        "acceptance": frozenset({"lead.accepted"}),
        "conclusion": frozenset({"lead.concluded"}),
    },
    "assist": {
        "receipt": frozenset({"assist.received"}),
        "acceptance": frozenset({"assist.accepted"}),
        "conclusion": frozenset({"assist.completed"}),
    },
    "recognition": {
        "receipt": frozenset({"recognition.received"}),
        "acceptance": frozenset({"recognition.recognized", "recognition.contested"}),
    },
    "share": {"receipt": frozenset({"share.acknowledged"})},
}
MILESTONE_NAMES = ("receipt", "acceptance", "conclusion")
BLACKLIST_TYPES = frozenset({"share.blacklist_upserted", "share.blacklist_removed"})
RECOGNITION_OUTCOMES = ("recognized", "contested", "pending", "revocation_acknowledged")

Bucket = Literal["week", "month"]


def beijing_day(moment: datetime) -> date:
    return moment.astimezone(BEIJING).date()


def median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest rank: the smallest value with at least ``p`` % of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1])


# --- the period -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """``start`` … ``end`` (Beijing dates, both included), trend buckets of ``bucket``."""

    start: date
    end: date
    bucket: Bucket = "week"

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"the period ends ({self.end}) before it starts ({self.start})")
        if self.bucket not in ("week", "month"):
            raise ValueError(f"bucket must be week or month, not {self.bucket!r}")

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.start <= day <= self.end

    def buckets(self) -> list[TrendBucket]:
        """The weeks (ISO, Monday first) or months overlapping the period, clipped to it."""
        out: list[TrendBucket] = []
        day = self.start
        while day <= self.end:
            if self.bucket == "week":
                first = day - timedelta(days=day.weekday())
                last = first + timedelta(days=6)
                year, week, _ = first.isocalendar()
                label = f"{year}-W{week:02d}"
            else:
                first = day.replace(day=1)
                last = (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
                label = f"{first.year}-{first.month:02d}"
            out.append(TrendBucket(label, max(first, self.start), min(last, self.end)))
            day = last + timedelta(days=1)
        return out


@dataclass(frozen=True)
class TrendBucket:
    label: str
    start: date
    end: date


# --- figures --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stat:
    """Working days to a milestone: how many reached it, median, 90th percentile, histogram."""

    values: tuple[int, ...] = ()

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def median(self) -> float | None:
        return median(self.values)

    @property
    def p90(self) -> float | None:
        return percentile(self.values, 90)

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "median": self.median,
            "p90": self.p90,
            "max": max(self.values) if self.values else None,
            "histogram": {str(k): v for k, v in sorted(Counter(self.values).items())},
        }


@dataclass(frozen=True)
class Track:
    """One addressee's part of one referral, as it stood at the period's end."""

    referral_id: str
    family: str
    origin: str
    party: str
    opened: datetime
    opening_type: str
    outcome: str
    due: date | None
    answered: datetime | None
    tolled_days: int
    paused: bool
    milestones: Mapping[str, int]
    """Working days from the opening day to each milestone reached."""
    reached: Mapping[str, datetime]
    reminders: int
    overdue_notices: int
    recognition: str | None = None
    """A recognition track's position: recognized, contested, pending, revocation_acknowledged."""

    @property
    def pair(self) -> str:
        return f"{self.origin}>{self.party}"

    def to_json(self) -> dict[str, Any]:
        return {
            "referral_id": self.referral_id,
            "family": self.family,
            "origin": self.origin,
            "addressee": self.party,
            "opened": self.opened.isoformat(),
            "outcome": self.outcome,
            "due": self.due.isoformat() if self.due else None,
            "answered": self.answered.isoformat() if self.answered else None,
            "tolled_days": self.tolled_days,
            "working_days": dict(self.milestones),
            "reminders": self.reminders,
            "overdue_notices": self.overdue_notices,
        }


@dataclass(frozen=True)
class Figures:
    """The answer figures of a group of tracks."""

    tracks: tuple[Track, ...] = ()

    def count(self, outcome: str) -> int:
        return sum(1 for t in self.tracks if t.outcome == outcome)

    @property
    def referrals(self) -> int:
        return len(self.tracks)

    @property
    def judged(self) -> int:
        """Tracks whose deadline outcome is known: answered, or overdue."""
        return self.count("on_time") + self.count("late") + self.count("overdue")

    @property
    def on_time_rate(self) -> float | None:
        return self.count("on_time") / self.judged if self.judged else None

    def stat(self, milestone: str) -> Stat:
        return Stat(tuple(t.milestones[milestone] for t in self.tracks if milestone in t.milestones))

    def to_json(self) -> dict[str, Any]:
        return {
            "referrals": self.referrals,
            **{o: self.count(o) for o in OUTCOMES},
            "on_time_rate": None if self.on_time_rate is None else round(self.on_time_rate, 4),
            "tolled": sum(1 for t in self.tracks if t.tolled_days or t.paused),
            "tolled_days": sum(t.tolled_days for t in self.tracks),
            "reminders": sum(t.reminders for t in self.tracks),
            "overdue_notices": sum(t.overdue_notices for t in self.tracks),
            "working_days": {m: self.stat(m).to_json() for m in MILESTONE_NAMES},
        }


def by_family(tracks: Iterable[Track]) -> dict[str, Figures]:
    """Figures per family present, and over all of them (``all``)."""
    chosen = list(tracks)
    out = {f: Figures(tuple(t for t in chosen if t.family == f)) for f in FAMILIES}
    out = {f: v for f, v in out.items() if v.tracks}
    out[ALL] = Figures(tuple(chosen))
    return out


@dataclass(frozen=True)
class RegionFigures:
    region: str
    sent: Mapping[str, int]
    received: Mapping[str, Figures]

    def to_json(self) -> dict[str, Any]:
        return {"sent": dict(self.sent), "received": {f: v.to_json() for f, v in self.received.items()}}


@dataclass(frozen=True)
class BlacklistDelays:
    """How fast one region acknowledged the blacklist updates addressed to it."""

    region: str
    hours: tuple[float, ...]
    working_days: tuple[int, ...]
    pending: int

    def to_json(self) -> dict[str, Any]:
        return {
            "acknowledged": len(self.hours),
            "pending": self.pending,
            "median_hours": median(self.hours),
            "p90_hours": percentile(self.hours, 90),
            "max_hours": max(self.hours) if self.hours else None,
            "median_working_days": median(self.working_days),
        }


@dataclass(frozen=True)
class TrendPoint:
    bucket: TrendBucket
    opened: Mapping[str, int]
    """Tracks opened per region pair."""
    outcomes: Mapping[str, int]
    """Outcomes (at the period's end) of the tracks opened in the bucket."""
    overdue: Mapping[str, int]
    """Waits overdue at the bucket's end (or the assessment day), per late region."""

    def to_json(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket.label,
            "start": self.bucket.start.isoformat(),
            "end": self.bucket.end.isoformat(),
            "opened": dict(self.opened),
            "outcomes": dict(self.outcomes),
            "overdue_at_end": dict(self.overdue),
        }


@dataclass(frozen=True)
class Source:
    """Where the figures come from, and how to check them."""

    store: str
    position: int
    first_seq: int | None
    last_seq: int | None
    events: int
    digest: str
    chain_heads: Mapping[str, tuple[int, str]]
    calendar: str
    as_of: date
    generated: datetime
    anomalies: Mapping[str, int]
    excluded: tuple[str, ...] = ()
    """Referrals left out: an event of theirs failed a security check (signature, key, chain)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "position": self.position,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "events": self.events,
            "digest": self.digest,
            "chain_heads": {o: [s, h] for o, (s, h) in sorted(self.chain_heads.items())},
            "calendar": self.calendar,
            "as_of": self.as_of.isoformat(),
            "generated": self.generated.isoformat(timespec="seconds"),
            "anomalies": dict(self.anomalies),
            "excluded_referrals": list(self.excluded),
        }


@dataclass(frozen=True)
class Assessment:
    period: Period
    region: str | None
    regions: tuple[str, ...]
    tracks: tuple[Track, ...]
    per_region: Mapping[str, RegionFigures]
    per_pair: Mapping[str, Mapping[str, Figures]]
    recognition: Mapping[str, Mapping[str, int]]
    revoked: Mapping[str, int]
    blacklist: Mapping[str, BlacklistDelays]
    trend: tuple[TrendPoint, ...]
    source: Source
    totals: Mapping[str, Figures] = field(default_factory=dict)

    def to_json(self, *, tracks: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "report": REPORT,
            "period": {
                "from": self.period.start.isoformat(),
                "to": self.period.end.isoformat(),
                "bucket": self.period.bucket,
            },
            "region": self.region,
            "regions": list(self.regions),
            "source": self.source.to_json(),
            "totals": {f: v.to_json() for f, v in self.totals.items()},
            "per_region": {r: v.to_json() for r, v in self.per_region.items()},
            "per_pair": {p: {f: v.to_json() for f, v in fam.items()} for p, fam in self.per_pair.items()},
            "recognition": {r: dict(v) for r, v in self.recognition.items()},
            "revoked": dict(self.revoked),
            "blacklist": {r: v.to_json() for r, v in self.blacklist.items()},
            "trend": [p.to_json() for p in self.trend],
        }
        if tracks:
            out["tracks"] = [t.to_json() for t in self.tracks]
        return out


# --- computing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Event:
    seq: int
    referral_id: str
    event_id: str
    event_type: str
    sender: str
    time: datetime

    @property
    def day(self) -> date:
        return beijing_day(self.time)


def _events(projection: Projection, end: date) -> list[_Event]:
    rows = projection.db.execute(
        "SELECT stream_seq, referral_id, event_id, event_type, sender, time FROM timeline "
        "WHERE anomaly IS NULL ORDER BY stream_seq"
    ).fetchall()
    events = [_Event(r[0], r[1], r[2], r[3], r[4], datetime.fromisoformat(r[5])) for r in rows]
    return [e for e in events if e.day <= end]


def _escalations(projection: Projection, events: Mapping[int, _Event]) -> Counter[tuple[str, str, str]]:
    """(referral, late party, reminder|overdue) → escalations published by the period's end."""
    out: Counter[tuple[str, str, str]] = Counter()
    for referral_id, party, threshold, seq in projection.db.execute(
        "SELECT referral_id, party, threshold, stream_seq FROM escalations WHERE stream_seq IS NOT NULL"
    ):
        if seq in events:
            out[(referral_id, party, "reminder" if threshold == "reminder" else "overdue")] += 1
    return out


def _first(events: Sequence[_Event], party: str, types: frozenset[str]) -> _Event | None:
    return next((e for e in events if e.sender == party and e.event_type in types), None)


def assess(
    projection: Projection,
    period: Period,
    *,
    region: str | None = None,
    today: date | None = None,
    now: datetime | None = None,
) -> Assessment:
    """The assessment of ``period`` (optionally of one ``region``'s tracks and referrals) from
    ``projection``. Overdue is judged on the period's last day, or ``today`` if earlier
    (default: the projection's today)."""
    calendar: DayCalendar = projection.calendar
    regions = projection.config.regions
    as_of = min(period.end, today or projection.today())
    events = _events(projection, period.end)
    by_seq = {e.seq: e for e in events}
    by_referral: dict[str, list[_Event]] = {}
    for e in events:
        by_referral.setdefault(e.referral_id, []).append(e)
    changes = [c for c in waitlog.changes(projection.db) if beijing_day(c.time) <= period.end]
    waits: dict[tuple[str, str, str], list[waitlog.WaitChange]] = {}
    started: dict[tuple[str, int, str], waitlog.WaitChange] = {}
    """(referral, stream seq, party) → the first wait that event started or changed for the party."""
    for c in changes:
        waits.setdefault((c.referral_id, c.party, c.awaiting), []).append(c)
        started.setdefault((c.referral_id, c.stream_seq, c.party), c)
    escalations = _escalations(projection, by_seq)

    # A referral with an event whose authenticity or place in its sender's chain did not
    # verify is not assessed: the coordinator projects it (it reports, never refuses), but
    # nobody's performance is judged on what may be forged.
    suspect = {
        str(referral_id)
        for referral_id, code in projection.db.execute("SELECT referral_id, code FROM anomalies")
        if referral_id is not None and explain(code).kind == "security"
    }
    excluded: set[str] = set()
    tracks: list[Track] = []
    sent: Counter[tuple[str, str]] = Counter()
    revoked: Counter[str] = Counter()
    used: set[int] = set()
    for referral_id, family, origin, addressee, opened_seq in projection.db.execute(
        "SELECT referral_id, family, origin, addressee, opened_seq FROM referrals ORDER BY opened_seq"
    ).fetchall():
        opening = by_seq.get(opened_seq)
        if opening is None or opening.day not in period or family not in MILESTONES:
            continue
        parties = regions.others(origin) if addressee == BROADCAST else (addressee,)
        if region is not None and region != origin and region not in parties:
            continue
        if referral_id in suspect:
            excluded.add(referral_id)
            continue
        history = by_referral.get(referral_id, [])
        used.update(e.seq for e in history)
        sent[(origin, family)] += 1
        if family == "recognition" and any(e.event_type == "recognition.revoked" for e in history):
            revoked[origin] += 1
        for party in parties:
            if region is not None and region not in (origin, party):
                continue
            tracks.append(
                _track(
                    calendar, as_of, family, origin, party, opening, history, waits, started, escalations, referral_id
                )
            )

    codes = regions.codes if region is None else (region,)
    per_region = {
        r: RegionFigures(
            r,
            {**{f: sent[(r, f)] for f in FAMILIES if sent[(r, f)]}, ALL: sum(sent[(r, f)] for f in FAMILIES)},
            by_family(t for t in tracks if t.party == r),
        )
        for r in codes
    }
    order = {code: i for i, code in enumerate(regions.codes)}
    pairs = sorted({t.pair for t in tracks}, key=lambda p: tuple(order.get(c, 99) for c in p.split(">")))
    per_pair = {p: by_family(t for t in tracks if t.pair == p) for p in pairs}
    recognition = {
        r: {o: sum(1 for t in tracks if t.party == r and t.recognition == o) for o in RECOGNITION_OUTCOMES}
        for r in codes
        if any(t.party == r and t.family == "recognition" for t in tracks)
    }
    blacklist = {}
    for r in codes:
        mine = [t for t in tracks if t.party == r and t.opening_type in BLACKLIST_TYPES]
        if not mine:
            continue
        acked = [t for t in mine if "receipt" in t.reached]
        blacklist[r] = BlacklistDelays(
            r,
            tuple(round(max(0.0, (t.reached["receipt"] - t.opened).total_seconds()) / 3600, 2) for t in acked),
            tuple(t.milestones["receipt"] for t in acked),
            len(mine) - len(acked),
        )
    trend = tuple(_trend(period, tracks, waits, as_of, region))
    used_events = sorted(used)
    digest = hashlib.sha256("".join(f"{s}:{by_seq[s].event_id}\n" for s in used_events).encode()).hexdigest()
    heads = {o: (int(s), str(h)) for o, s, h in projection.db.execute("SELECT chain, seq, hash FROM chains")}
    anomalies: Counter[str] = Counter(
        code
        for code, seq in projection.db.execute("SELECT code, stream_seq FROM anomalies")
        if _anomaly_in(projection, seq, period)
    )
    source = Source(
        store=str(projection.path),
        position=projection.last_seq(),
        first_seq=used_events[0] if used_events else None,
        last_seq=used_events[-1] if used_events else None,
        events=len(used_events),
        digest=f"sha256:{digest}",
        chain_heads=heads,
        calendar=calendar.name,
        as_of=as_of,
        generated=now or datetime.now(UTC),
        anomalies=dict(sorted(anomalies.items())),
        excluded=tuple(sorted(excluded)),
    )
    return Assessment(
        period=period,
        region=region,
        regions=codes,
        tracks=tuple(tracks),
        per_region=per_region,
        per_pair=per_pair,
        recognition=recognition,
        revoked={r: revoked[r] for r in codes if revoked[r]},
        blacklist=blacklist,
        trend=trend,
        source=source,
        totals=by_family(tracks),
    )


def _anomaly_in(projection: Projection, seq: int, period: Period) -> bool:
    row = projection.db.execute("SELECT time FROM timeline WHERE stream_seq = ?", (seq,)).fetchone()
    return row is not None and beijing_day(datetime.fromisoformat(row[0])) in period


def _track(
    calendar: DayCalendar,
    as_of: date,
    family: str,
    origin: str,
    party: str,
    opening: _Event,
    history: list[_Event],
    waits: Mapping[tuple[str, str, str], list[waitlog.WaitChange]],
    started: Mapping[tuple[str, int, str], waitlog.WaitChange],
    escalations: Counter[tuple[str, str, str]],
    referral_id: str,
) -> Track:
    milestones: dict[str, int] = {}
    reached: dict[str, datetime] = {}
    for name, types in MILESTONES[family].items():
        found = _first(history, party, types)
        if found is not None:
            milestones[name] = calendar.between(opening.day, found.day)
            reached[name] = found.time
    # The addressee's wait the opening event started: its key is (party, what it awaits).
    first = started.get((referral_id, opening.seq, party))
    rows = waits.get((referral_id, party, first.awaiting), []) if first is not None else []
    outcome, due, answered, tolled, paused = "no_deadline", None, None, 0, False
    if rows:
        last = rows[-1]
        due, tolled = last.due, last.tolled_days
        if last.settled:
            if last.sender == party:
                answered = last.time
                day = beijing_day(last.time)
                outcome = "no_deadline" if due is None else ("on_time" if day <= due else "late")
            else:
                outcome = "withdrawn"
        else:
            paused = last.paused
            if due is None:
                outcome = "no_deadline"
            elif not paused and as_of > due:
                outcome = "overdue"
            else:
                outcome = "open"
    recognition = None
    if family == "recognition":
        recognition = "pending"
        for e in history:
            if e.sender == party and e.event_type in (
                "recognition.recognized",
                "recognition.contested",
                "recognition.revocation_acknowledged",
            ):
                recognition = e.event_type.split(".", 1)[1]
    return Track(
        referral_id=referral_id,
        family=family,
        origin=origin,
        party=party,
        opened=opening.time,
        opening_type=opening.event_type,
        outcome=outcome,
        due=due,
        answered=answered,
        tolled_days=tolled,
        paused=paused,
        milestones=milestones,
        reached=reached,
        reminders=escalations[(referral_id, party, "reminder")],
        overdue_notices=escalations[(referral_id, party, "overdue")],
        recognition=recognition,
    )


def _trend(
    period: Period,
    tracks: list[Track],
    waits: Mapping[tuple[str, str, str], list[waitlog.WaitChange]],
    as_of: date,
    region: str | None,
) -> list[TrendPoint]:
    points = []
    for bucket in period.buckets():
        cohort = [t for t in tracks if bucket.start <= beijing_day(t.opened) <= bucket.end]
        opened = Counter(t.pair for t in cohort)
        outcomes = Counter(t.outcome for t in cohort)
        day = min(bucket.end, as_of)
        overdue: Counter[str] = Counter()
        for (_referral, party, _awaiting), rows in waits.items():
            if region is not None and party != region:
                continue
            state = None
            for row in rows:
                if beijing_day(row.time) <= day:
                    state = row
            if (
                state is not None
                and not state.settled
                and not state.paused
                and state.due is not None
                and day > state.due
            ):
                overdue[party] += 1
        points.append(
            TrendPoint(
                bucket,
                dict(sorted(opened.items())),
                {o: outcomes[o] for o in OUTCOMES if outcomes[o]},
                dict(sorted(overdue.items())),
            )
        )
    return points


__all__ = [
    "ALL",
    "FAMILIES",
    "MILESTONES",
    "OUTCOMES",
    "REPORT",
    "Assessment",
    "BlacklistDelays",
    "Figures",
    "Period",
    "RegionFigures",
    "Source",
    "Stat",
    "Track",
    "TrendBucket",
    "TrendPoint",
    "assess",
    "median",
    "percentile",
]
