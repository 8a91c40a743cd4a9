"""The SQL outbox/inbox bridge.

Outbound: the bridge takes the regional system's ``xregion_outbox`` rows whose
``bus_status`` is ``new`` in ``id`` order and submits each through the adapter with the
row's ``idempotency_key`` (:func:`~xregion.adapter.idempotency.submit_once`: the key is
recorded in the adapter's store in the same transaction as the signed event). It then
marks the row ``submitted`` (with ``bus_event_id`` and, for an opening, ``referral_id``),
``sent`` once JetStream has acknowledged it, and afterwards the referral's state as answers
arrive (``received``, ``accepted``, ...). A row the contract or lifecycle refuses is marked
``failed`` with ``error`` and nothing is sent. If the bridge dies between submitting a row
and marking it, the row is submitted again on restart and the adapter answers with the
first event: each row reaches the bus exactly once.

Inbound: the adapter's handler (:meth:`SqlBridge.handle`) inserts every delivered event
into ``xregion_inbox`` (``ON CONFLICT (event_id) DO NOTHING``) before the adapter records
and acknowledges it, so a redelivery after a crash leaves one row.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import date
from functools import partial
from typing import Any

import structlog

from xregion.adapter.idempotency import Submission, answered_state, ensure_schema, published, submit_once
from xregion.bridge.dialect import Database, connect
from xregion.errors import XRegionError
from xregion.gateway.webhooks import state_after
from xregion.runtime.consumer import Delivery, Handler

log = structlog.get_logger("xregion.bridge")

KEY_PREFIX = "sql:"


def _date(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


class SqlBridge:
    def __init__(self, dsn: str | Database, *, poll_s: float = 0.5, inner: Handler | None = None) -> None:
        self.db = connect(dsn) if isinstance(dsn, str) else dsn
        self.poll_s = poll_s
        self.inner = inner
        self.adapter: Any = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._opened = False

    @property
    def handler(self) -> Handler:
        return self.handle

    async def _open(self) -> None:
        if not self._opened:
            await self.db.open()
            self._opened = True

    async def start(self, adapter: Any) -> SqlBridge:
        """Bridge the regional database to a started adapter."""
        self.adapter = adapter
        await self._open()
        await ensure_schema(adapter.store)
        self._task = asyncio.create_task(self._run())
        log.info("SQL bridge running", region=adapter.region, dialect=self.db.dialect)
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=5.0)
            self._task = None
        await self.db.close()

    # --- inbound ------------------------------------------------------------------------

    async def handle(self, delivery: Delivery) -> None:
        if self.inner is not None:
            await self.inner(delivery)
        await self._open()
        env = delivery.event.envelope
        after = await state_after(delivery)
        await self.db.execute(
            "INSERT INTO xregion_inbox (event_id, referral_id, event_type, sender, addressee, data, handling, "
            "answer_by, event_time, state_after) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (event_id) DO NOTHING",
            (
                env.id,
                env.subject,
                env.event_type,
                env.sender,
                env.addressee,
                json.dumps(delivery.payload.model_dump(mode="json", exclude_none=True), ensure_ascii=False),
                env.handling,
                env.answerby.isoformat() if env.answerby else None,
                delivery.event.wire["time"],
                after,
            ),
        )
        await self.db.execute(
            "UPDATE xregion_outbox SET bus_status = ?, updated_at = CURRENT_TIMESTAMP "
            "WHERE referral_id = ? AND bus_status NOT IN ('new', 'failed')",
            (after, env.subject),
        )

    # --- outbound -----------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                await self.pump()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("SQL bridge pass failed; retrying", error=type(exc).__name__, detail=str(exc)[:300])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_s)
            self._wake.clear()

    async def pump(self) -> int:
        """One pass: submit new rows in order, then mark acknowledged ones ``sent``."""
        rows = await self.db.execute(
            "SELECT id, idempotency_key, event_type, referral_id, to_region, data, handling, answer_by "
            "FROM xregion_outbox WHERE bus_status = 'new' ORDER BY id LIMIT 100"
        )
        for row in rows:
            await self._submit(row)
        submitted = await self.db.execute(
            "SELECT id, bus_event_id, referral_id FROM xregion_outbox WHERE bus_status = 'submitted'"
        )
        if submitted:
            ids = [str(r[1]) for r in submitted]
            store, region = self.adapter.store, self.adapter.region
            done = await store.read(lambda db: published(db, ids))
            for row_id, event_id, referral_id in submitted:
                if event_id not in done:
                    continue
                # An answer handled while the row was not yet marked (a crash window) counts too.
                status = await store.read(
                    partial(answered_state, region=region, referral_id=referral_id, event_id=event_id)
                )
                await self.db.execute(
                    "UPDATE xregion_outbox SET bus_status = ?, updated_at = CURRENT_TIMESTAMP "
                    "WHERE id = ? AND bus_status = 'submitted'",
                    (status or "sent", row_id),
                )
        return len(rows)

    async def _submit(self, row: tuple[Any, ...]) -> None:
        row_id, key, event_type, referral_id, to_region, data, handling, answer_by = row
        try:
            sub = Submission(
                event_type=event_type,
                data=data if isinstance(data, dict) else json.loads(data),
                referral_id=referral_id,
                to=to_region,
                handling=handling or "H0",
                answer_by=_date(answer_by),
            )
            response, replayed = await submit_once(
                self.adapter.client,
                self.adapter.store,
                KEY_PREFIX + key,
                sub,
                parties=tuple(self.adapter.config.regions.codes),
            )
        except (XRegionError, ValueError) as exc:
            reason = f"{exc.code}: {exc.message}" if isinstance(exc, XRegionError) else f"malformed_json: {exc}"
            await self.db.execute(
                "UPDATE xregion_outbox SET bus_status = 'failed', error = ?, updated_at = CURRENT_TIMESTAMP "
                "WHERE id = ? AND bus_status = 'new'",
                (reason, row_id),
            )
            log.warning("outbox row refused", row=row_id, reason=reason)
            return
        await self.db.execute(
            "UPDATE xregion_outbox SET bus_status = 'submitted', bus_event_id = ?, referral_id = ?, error = NULL, "
            "updated_at = CURRENT_TIMESTAMP WHERE id = ? AND bus_status = 'new'",
            (response["event_id"], response["referral_id"], row_id),
        )
        log.info("outbox row submitted", row=row_id, event_id=response["event_id"], replayed=replayed)
