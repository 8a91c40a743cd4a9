"""The history of the projection's deadline clocks: every change of every wait, by stream sequence.

The projection keeps, per referral, only the waits still running (``referrals.clocks``): once
a party has answered, its clock is gone, and with it the date it had to answer by. The
assessment (:mod:`xregion.coordinator.assessment`) needs that date afterwards — answered on
time or late — and the state of every clock at a past day (overdue at the end of a week).
This log keeps it: each folded event that starts, pauses, resumes, moves or ends a wait adds
one row per changed wait, with the wait as the projection holds it after the event
(``settled`` = 1: the wait ended with this event, the row holding its last due date).

It records the projection's own clocks; it computes no deadline. Rows are written in the
transaction that folds the event, so the log is exactly as reproducible as the projection:
a rebuild from the stream writes the same rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS wait_log (
    stream_seq   INTEGER NOT NULL,
    referral_id  TEXT NOT NULL,
    clock        TEXT NOT NULL,
    party        TEXT NOT NULL,
    awaiting     TEXT NOT NULL,
    since        TEXT NOT NULL,
    due          TEXT,
    paused_since TEXT,
    tolled_days  INTEGER NOT NULL,
    settled      INTEGER NOT NULL,
    PRIMARY KEY (stream_seq, referral_id, party, awaiting)
);
CREATE INDEX IF NOT EXISTS wait_log_referral ON wait_log (referral_id, stream_seq);
"""

TABLE = "wait_log"

_FIELDS = ("clock", "since", "due", "paused_since", "tolled_days")


def _key(clock: Mapping[str, Any]) -> tuple[str, str]:
    """A wait is a party and what it owes: its clock (the event that signed the date it runs
    to) changes when a tolled clock restarts with a new signed date."""
    return str(clock["party"]), str(clock.get("awaiting", ""))


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return all(a.get(f) == b.get(f) for f in _FIELDS)


def record(
    db: sqlite3.Connection,
    referral_id: str,
    before: Iterable[Mapping[str, Any]],
    after: Iterable[Mapping[str, Any]],
    stream_seq: int,
) -> None:
    """Log the waits that event ``stream_seq`` started or changed (as they are ``after`` it)
    and those it ended (as they were ``before`` it, ``settled``)."""
    old = {_key(c): c for c in before}
    new = {_key(c): c for c in after}
    rows = [(c, 0) for k, c in new.items() if k not in old or not _same(old[k], c)]
    rows += [(c, 1) for k, c in old.items() if k not in new]
    for clock, settled in rows:
        db.execute(
            "INSERT OR REPLACE INTO wait_log (stream_seq, referral_id, clock, party, awaiting, since, due, "
            "paused_since, tolled_days, settled) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                stream_seq,
                referral_id,
                str(clock["clock"]),
                str(clock["party"]),
                str(clock.get("awaiting", "")),
                str(clock["since"]),
                clock.get("due"),
                clock.get("paused_since"),
                int(clock.get("tolled_days") or 0),
                settled,
            ),
        )


@dataclass(frozen=True)
class WaitChange:
    """One row of the log, with the event that caused it (from the timeline)."""

    stream_seq: int
    referral_id: str
    clock: str
    party: str
    awaiting: str
    since: date
    due: date | None
    """The date the wait runs to (None: its event set no deadline)."""
    paused_since: date | None
    tolled_days: int
    settled: bool
    time: datetime
    """The causing event's own ``time``."""
    sender: str
    event_type: str

    @property
    def paused(self) -> bool:
        return self.paused_since is not None and not self.settled


def changes(db: sqlite3.Connection) -> list[WaitChange]:
    """Every logged change, in stream order, joined with the event that caused it."""
    rows = db.execute(
        "SELECT w.stream_seq, w.referral_id, w.clock, w.party, w.awaiting, w.since, w.due, w.paused_since, "
        "w.tolled_days, w.settled, t.time, t.sender, t.event_type FROM wait_log w "
        "JOIN timeline t ON t.stream_seq = w.stream_seq ORDER BY w.stream_seq, w.party, w.awaiting"
    ).fetchall()
    return [
        WaitChange(
            stream_seq=r[0],
            referral_id=r[1],
            clock=r[2],
            party=r[3],
            awaiting=r[4],
            since=date.fromisoformat(r[5]),
            due=date.fromisoformat(r[6]) if r[6] else None,
            paused_since=date.fromisoformat(r[7]) if r[7] else None,
            tolled_days=int(r[8]),
            settled=bool(r[9]),
            time=datetime.fromisoformat(r[10]),
            sender=r[11],
            event_type=r[12],
        )
        for r in rows
    ]


def table_exists(db: sqlite3.Connection) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)).fetchone() is not None


__all__ = ["SCHEMA", "TABLE", "WaitChange", "changes", "record", "table_exists"]
