"""Idempotent submission for the integration points (HTTP gateway, SQL bridge).

A regional system names each submission with its own key. The key, a digest of the
request and the response are stored in the adapter's SQLite store **in the same
transaction** as the event's outbox row, so a submission retried after a timeout, a crash
or a kill between "submitted" and "marked" returns the first answer instead of sending the
event twice. The same key with a different request is refused (``idempotency_conflict``).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from datetime import date
from typing import Any

from xregion.adapter.client import RegionClient
from xregion.codec import DecodedEvent
from xregion.errors import ContractError, UnknownParty, XRegionError
from xregion.lifecycle import LIFECYCLES
from xregion.regions import BROADCAST
from xregion.runtime.store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS idempotency (
    key          TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    response     TEXT NOT NULL,
    created_at   TEXT NOT NULL DEFAULT (datetime('now'))
);
"""


class IdempotencyConflict(XRegionError):
    """The idempotency key was used before for a different request."""

    code = "idempotency_conflict"


@dataclass(frozen=True)
class Submission:
    """One event a regional system asks its adapter to send.

    ``referral_id`` None with ``to`` set opens a referral; otherwise it is the next event of
    ``referral_id`` (the addressee is derived from the referral)."""

    event_type: str
    data: dict[str, Any]
    referral_id: str | None = None
    to: str | None = None
    handling: str = "H0"
    handling_note: str | None = None
    answer_by: date | None = None

    def digest(self) -> str:
        body = {
            "event_type": self.event_type,
            "data": self.data,
            "referral_id": self.referral_id,
            "to": self.to,
            "handling": self.handling,
            "handling_note": self.handling_note,
            "answer_by": self.answer_by.isoformat() if self.answer_by else None,
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def describe(event: DecodedEvent) -> dict[str, Any]:
    """What a submitter gets back: the event's identity on the bus."""
    env = event.envelope
    return {
        "event_id": env.id,
        "referral_id": env.subject,
        "event_type": env.event_type,
        "sender": env.sender,
        "to": env.addressee,
        "time": event.wire["time"],
        "answer_by": env.answerby.isoformat() if env.answerby else None,
        "handling": env.handling,
    }


def create_tables(db: sqlite3.Connection, schema: str) -> None:
    """Run ``schema``'s statements one by one: unlike ``executescript``, this never commits
    a transaction in progress (e.g. the adapter's handling transaction)."""
    for statement in schema.split(";"):
        if statement.strip():
            db.execute(statement)


async def ensure_schema(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.run(lambda db: create_tables(db, SCHEMA))


async def submit_once(
    client: RegionClient, store: Store, key: str | None, sub: Submission, *, parties: tuple[str, ...] = ()
) -> tuple[dict[str, Any], bool]:
    """Send ``sub`` once per ``key``; returns (response, replayed).

    Without a key the submission is simply sent. With one, the outbox row and the key's
    record commit together, so a retry can never produce a second event.
    """
    if parties and sub.to is not None and sub.to not in (*parties, BROADCAST):
        raise UnknownParty(f"unknown addressee {sub.to!r}: not one of {', '.join(parties)} or ALL", field="to")
    if key is None:
        return describe(await _send(client, sub)), False
    digest = sub.digest()
    async with store.transaction() as tx:
        row = await tx.run(
            lambda db: db.execute("SELECT request_hash, response FROM idempotency WHERE key = ?", (key,)).fetchone()
        )
        if row is not None:
            if row[0] != digest:
                raise IdempotencyConflict(
                    f"idempotency key {key!r} was used for a different request", idempotency_key=key
                )
            return json.loads(row[1]), True
        response = describe(await _send(client, sub))
        await tx.execute(
            "INSERT INTO idempotency (key, request_hash, event_id, response) VALUES (?,?,?,?)",
            (key, digest, response["event_id"], json.dumps(response, ensure_ascii=False)),
        )
    return response, False


async def _send(client: RegionClient, sub: Submission) -> DecodedEvent:
    if sub.referral_id is None or (sub.to is not None and _opens(sub.event_type)):
        if sub.to is None:
            raise ContractError(f"{sub.event_type} needs an addressee (to)", field="to")
        return await client.open(
            sub.event_type,
            to=sub.to,
            data=sub.data,
            referral_id=sub.referral_id,
            handling=sub.handling,
            handling_note=sub.handling_note,
            answer_by=sub.answer_by,
        )
    return await client.send(
        sub.referral_id,
        sub.event_type,
        sub.data,
        handling=sub.handling,
        handling_note=sub.handling_note,
        answer_by=sub.answer_by,
    )


def _opens(event_type: str) -> bool:
    family, _, event = event_type.partition(".")
    return family in {lc.family for lc in LIFECYCLES} and event in LIFECYCLES[family].openings


def published(db: sqlite3.Connection, event_ids: list[str]) -> set[str]:
    """Which of ``event_ids`` JetStream has acknowledged (the adapter outbox's ``published_at``)."""
    if not event_ids:
        return set()
    marks = ",".join("?" * len(event_ids))
    rows = db.execute(
        f"SELECT event_id FROM outbox WHERE published_at IS NOT NULL AND event_id IN ({marks})", event_ids
    ).fetchall()
    return {r[0] for r in rows}


def answered_state(db: sqlite3.Connection, region: str, referral_id: str, event_id: str) -> str | None:
    """The state after the latest answer another party sent in ``referral_id`` after event
    ``event_id`` (in this adapter's history), or None if nobody has answered it yet."""
    row = db.execute(
        "SELECT state_after FROM history WHERE referral_id = ? AND sender != ? AND position > "
        "(SELECT position FROM history WHERE referral_id = ? AND event_id = ?) ORDER BY position DESC LIMIT 1",
        (referral_id, region, referral_id, event_id),
    ).fetchone()
    return None if row is None else str(row[0])
