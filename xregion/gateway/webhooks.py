"""Webhooks: inbound events delivered to the regional system over HTTP, signed with HMAC.

Exactly-once queueing: the adapter's handler (:meth:`WebhookQueue.handle`) records each
delivery in the ``webhooks`` table through ``delivery.tx``, so the queue row commits with
the adapter's inbox record or not at all. The :class:`Dispatcher` then POSTs the rows in
order (oldest first; a failing row holds back the ones after it, so the regional system
sees a referral's events in order) until the system answers 2xx, with exponential backoff
between attempts (kept in the table, so it survives restarts). After ``max_attempts`` a row
is *dead*: kept with its last HTTP status and error, listed by
``GET /v1/webhooks/dead-letters`` and logged; the rows after it go on.

Each request carries::

    X-Xregion-Event-Id:  <event id>             (the receiver's idempotency key)
    X-Xregion-Timestamp: <unix seconds>
    X-Xregion-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

from xregion.adapter.idempotency import create_tables
from xregion.codec import step_of
from xregion.lifecycle import LIFECYCLES
from xregion.runtime.consumer import Delivery, Handler
from xregion.runtime.store import Store

log = structlog.get_logger("xregion.webhooks")

SCHEMA = """
CREATE TABLE IF NOT EXISTS webhooks (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id     TEXT NOT NULL UNIQUE,
    referral_id  TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    body         TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'pending',   -- pending | delivered | dead
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      REAL NOT NULL DEFAULT 0,
    last_status  INTEGER,
    last_error   TEXT,
    created_at   TEXT NOT NULL DEFAULT (datetime('now')),
    finished_at  TEXT
);
CREATE INDEX IF NOT EXISTS webhooks_pending ON webhooks (seq) WHERE status = 'pending';
"""

SIGNATURE_HEADER = "X-Xregion-Signature"
TIMESTAMP_HEADER = "X-Xregion-Timestamp"
EVENT_ID_HEADER = "X-Xregion-Event-Id"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Xregion-Signature`` value of ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, max_age_s: float = 300.0) -> bool:
    """Receiver side: a valid signature made less than ``max_age_s`` ago."""
    try:
        fresh = abs(time.time() - float(timestamp)) <= max_age_s
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


def event_body(delivery: Delivery, state_after: str) -> dict[str, Any]:
    """The JSON a webhook carries: the event as the regional system needs it (plain data)."""
    env = delivery.event.envelope
    return {
        "event_id": env.id,
        "referral_id": env.subject,
        "event_type": env.event_type,
        "sender": env.sender,
        "to": env.addressee,
        "source": env.source,
        "time": delivery.event.wire["time"],
        "handling": env.handling,
        "answer_by": env.answerby.isoformat() if env.answerby else None,
        "state_after": state_after,
        "data": delivery.payload.model_dump(mode="json", exclude_none=True),
    }


async def state_after(delivery: Delivery) -> str:
    """The referral's state (the sender's track, for broadcasts) once ``delivery`` is applied."""
    env = delivery.event.envelope
    previous = await delivery.tx.run(lambda db: Store.load_referral(db, env.subject))
    state = LIFECYCLES.apply(previous, step_of(delivery.event))
    return state.tracks.get(env.sender, state.state) if state.tracks else state.state


@dataclass(frozen=True)
class DeadWebhook:
    event_id: str
    referral_id: str
    event_type: str
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: str
    dead_at: str | None


class WebhookQueue:
    """The adapter handler of gateway mode: queue every delivery for the webhook."""

    def __init__(self, inner: Handler | None = None) -> None:
        self.inner = inner
        self.wake = asyncio.Event()
        self._ready = False

    async def handle(self, delivery: Delivery) -> None:
        if self.inner is not None:
            await self.inner(delivery)
        if not self._ready:
            await delivery.tx.run(lambda db: create_tables(db, SCHEMA))
            self._ready = True
        body = json.dumps(event_body(delivery, await state_after(delivery)), ensure_ascii=False)
        env = delivery.event.envelope
        await delivery.tx.execute(
            "INSERT INTO webhooks (event_id, referral_id, event_type, body) VALUES (?,?,?,?) "
            "ON CONFLICT (event_id) DO NOTHING",
            (env.id, env.subject, env.event_type, body),
        )
        self.wake.set()


async def ensure_schema(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.run(lambda db: create_tables(db, SCHEMA))


async def dead_letters(store: Store) -> list[DeadWebhook]:
    def q(db: sqlite3.Connection) -> list[DeadWebhook]:
        rows = db.execute(
            "SELECT event_id, referral_id, event_type, attempts, last_status, last_error, created_at, finished_at "
            "FROM webhooks WHERE status = 'dead' ORDER BY seq"
        ).fetchall()
        return [DeadWebhook(*r) for r in rows]

    return await store.read(q)


async def queue_counts(store: Store) -> dict[str, int]:
    rows = await store.read(lambda db: db.execute("SELECT status, count(*) FROM webhooks GROUP BY status").fetchall())
    return {str(s): int(n) for s, n in rows}


class Dispatcher:
    """POST queued events to ``url`` in order, with backoff; dead-letter after ``max_attempts``."""

    def __init__(
        self,
        store: Store,
        queue: WebhookQueue,
        url: str,
        secret: str,
        *,
        max_attempts: int = 8,
        backoff_s: float = 1.0,
        max_backoff_s: float = 300.0,
        timeout_s: float = 10.0,
        region: str = "",
    ) -> None:
        self.store = store
        self.queue = queue
        self.url = url
        self.secret = secret
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self.region = region

    def delay(self, attempts: int) -> float:
        """Exponential backoff before attempt ``attempts + 1``."""
        return float(min(self.max_backoff_s, self.backoff_s * 2 ** max(0, attempts - 1)))

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=self.timeout_s) as http:
            while True:
                try:
                    await self._step(http)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # never stop dispatching on an unexpected error
                    log.error("webhook dispatcher error; retrying", error=type(exc).__name__, detail=str(exc)[:300])
                    await asyncio.sleep(1.0)

    async def _step(self, http: httpx.AsyncClient) -> None:
        self.queue.wake.clear()  # before reading: a row queued after the read wakes the sleep below
        row = await self.store.read(
            lambda db: db.execute(
                "SELECT seq, event_id, body, attempts, next_at FROM webhooks "
                "WHERE status = 'pending' ORDER BY seq LIMIT 1"
            ).fetchone()
        )
        if row is None:
            await self._sleep(30.0)
            return
        seq, event_id, body, attempts, next_at = row
        wait = next_at - time.time()
        if wait > 0:
            await self._sleep(wait)
            return
        await self._attempt(http, seq, event_id, body.encode(), attempts)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.queue.wake.wait(), timeout=seconds)

    async def _attempt(self, http: httpx.AsyncClient, seq: int, event_id: str, body: bytes, attempts: int) -> None:
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            EVENT_ID_HEADER: event_id,
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: sign(self.secret, stamp, body),
        }
        status: int | None = None
        try:
            response = await http.post(self.url, content=body, headers=headers)
            status = response.status_code
            error = None if response.is_success else f"HTTP {status}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:300] or type(exc).__name__
        attempts += 1
        async with self.store.transaction() as tx:
            if error is None:
                await tx.execute(
                    "UPDATE webhooks SET status='delivered', attempts=?, last_status=?, last_error=NULL, "
                    "finished_at=datetime('now') WHERE seq=?",
                    (attempts, status, seq),
                )
            elif attempts >= self.max_attempts:
                await tx.execute(
                    "UPDATE webhooks SET status='dead', attempts=?, last_status=?, last_error=?, "
                    "finished_at=datetime('now') WHERE seq=?",
                    (attempts, status, error, seq),
                )
            else:
                await tx.execute(
                    "UPDATE webhooks SET attempts=?, last_status=?, last_error=?, next_at=? WHERE seq=?",
                    (attempts, status, error, time.time() + self.delay(attempts), seq),
                )
        if error is None:
            log.info("webhook delivered", region=self.region, event_id=event_id, attempts=attempts)
        elif attempts >= self.max_attempts:
            log.error("webhook dead-lettered", region=self.region, event_id=event_id, attempts=attempts, reason=error)
        else:
            log.warning(
                "webhook failed; will retry",
                region=self.region,
                event_id=event_id,
                attempts=attempts,
                reason=error,
                retry_in_s=self.delay(attempts),
            )

    async def retry_dead(self, event_id: str) -> bool:
        """Put a dead webhook back in the queue (after the regional system is fixed)."""
        async with self.store.transaction() as tx:
            rows = await tx.execute(
                "UPDATE webhooks SET status='pending', attempts=0, next_at=0, finished_at=NULL "
                "WHERE event_id=? AND status='dead' RETURNING seq",
                (event_id,),
            )
        self.queue.wake.set()
        return bool(rows)
