"""Inbound events: verify, deliver exactly once in effect, answer receipts, dead-letter the rest.

The consumer pulls its region's durable consumer in batches and handles each batch in one
store transaction, message by message, in stream order (one savepoint each):

1. parse and validate the envelope           → dead letter on failure (``malformed_json``, ...)
2. skip this region's own broadcasts and redeliveries of messages already handled
3. verify the signature against the key roster → dead letter (``bad_signature``, ``unknown_key``, ...);
   (it covers the personal data as sent: sealed);
   a key the roster does not know makes it reload the roster file once and retry (a key
   rotated a moment ago); a key revoked before the event's time, or before it reached the
   stream minus ``XREGION_REVOCATION_GRACE_S``, is ``key_revoked``. An event already handled
   that comes back as another stream message (re-published with a new ``Nats-Msg-Id``, or
   after the duplicate window) is a replay → dead letter ``chain_replay``
4. follow the sender's link chain to us (``TJ>BJ``, ``TJ>ALL``) → a gap waits while earlier messages are still
   outstanding (redelivery after a crash can reorder), else dead letter; a fork or replay
   is dead-lettered at once. An authentic event advances its link's chain even when it
   is refused below, so one refused event does not block the sender's later ones.
5. decode the payload, check parties and subject, open the fields sealed to this region
   (``unseal_failed``), check attachments and lifecycle → dead letter
6. hand it to the regional system's handler; record it in the inbox; send the automatic
   receipt (``received`` / ``acknowledged``) — all in the same transaction
7. commit, then acknowledge the messages to JetStream.

Every dead letter for a forged, replayed or misrouted event (``alerts.SECURITY_CODES``) also
raises a signed security alert for the coordinator (:mod:`xregion.runtime.alerts`).

What a message's bytes say on their own — its envelope, whether its signature verifies,
its sealed fields opened — is worked out for the whole batch in a thread of the consumer's
own before the batch transaction (:meth:`Consumer._inspect`): libsodium runs without
Python's global lock, so the signature checks and unsealing of one batch overlap with the
event loop's other work. The steps above take what it found good (an envelope, a signature
that verifies, fields that open); everything else is checked again, in order, on the event
loop, which reports it: the outcome is the same either way.

A handler that raises rolls back its message's savepoint; that message and the rest of the
batch are redelivered after a back-off, and dead-lettered (``handler_failed``) when the
redelivery budget is spent. The adapter never stops on bad input.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError, ObjectNotFoundError
from pydantic import BaseModel, ValidationError

from xregion.chain import ChainTracker
from xregion.codec import (
    DecodedEvent,
    check_parties,
    check_subject,
    claimed_event_id,
    decode_data,
    field_errors,
    parse_json,
    step_of,
)
from xregion.contracts.catalog import Catalog
from xregion.contracts.common import AttachmentRef
from xregion.envelope import Envelope
from xregion.errors import (
    ChainGap,
    ChainReplay,
    ContractError,
    SchemaInvalid,
    UnknownKey,
    UnsupportedVersion,
    VerificationError,
    XRegionError,
)
from xregion.lifecycle import LIFECYCLES, RECEIPTS, ReferralState
from xregion.regions import RegionRegistry
from xregion.runtime.alerts import SECURITY_CODES, SecurityAlerts
from xregion.runtime.deadletter import publish_dead_letter
from xregion.runtime.keyfiles import LiveRoster
from xregion.runtime.metrics import HANDLER_LATENCY
from xregion.runtime.settings import RuntimeSettings
from xregion.runtime.store import HistoryEntry, Store, Tx
from xregion.runtime.topology import BACKOFF_S, consumer_name
from xregion.sealing import FieldSealing, plain_fields
from xregion.signing import KeyRoster
from xregion.subjects import parse as parse_subject

log = structlog.get_logger("xregion.consumer")


class AttachmentInvalid(ContractError):
    code = "attachment_invalid"


class HandlerFailed(XRegionError):
    code = "handler_failed"


@dataclass(frozen=True)
class Delivery:
    """One inbound event handed to the regional system.

    ``tx`` runs SQL inside the adapter's handling transaction: statements made through it
    commit atomically with the inbox record (exactly-once effects in the adapter's own
    database). Otherwise, use ``event.envelope.id`` as the idempotency key of your effects.
    """

    event: DecodedEvent
    stream_seq: int
    delivery_count: int
    tx: Tx
    catalog: Catalog

    @property
    def payload(self) -> BaseModel:
        return self.event.payload

    def payload_as(self, version: int) -> BaseModel:
        """The payload as version ``version`` of its event type, upcast from an older one.

        A handler written against v2 calls ``delivery.payload_as(2)`` and gets a v2 model
        whether the sender still speaks v1 or already v2 (see the README's migration path).
        """
        kind = self.event.event_type
        if kind.version == version:
            return self.event.payload
        if kind.version > version:
            raise UnsupportedVersion(f"{kind.ce_type} cannot be read as v{version}: no downcasting", type=kind.ce_type)
        target = self.catalog.get(kind.family, kind.event, version)
        data = self.catalog.upcast(kind, dict(self.event.envelope.data), version)
        return decode_data(target, data)


Handler = Callable[[Delivery], Awaitable[None]]
Submit = Callable[[str, str, dict[str, Any], str], Awaitable[Any]]
"""``submit(referral_id, event_type, data, causation_id)``: send an answer through the outbox."""


class _Wait(Exception):
    """Internal: stop the batch here and let JetStream redeliver after ``delay``."""

    def __init__(self, delay: float) -> None:
        self.delay = delay


def attachments_of(value: Any) -> Iterator[AttachmentRef]:
    """Every :class:`AttachmentRef` inside a payload model."""
    if isinstance(value, AttachmentRef):
        yield value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from attachments_of(getattr(value, name))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from attachments_of(item)


@dataclass(frozen=True)
class Inspection:
    """What one message's bytes say on their own (:meth:`Consumer._inspect`).

    ``fault``: they are not an event envelope. Otherwise ``wire`` and ``envelope``;
    ``verified``: its signature verifies with the roster as it was; ``opened``: its data
    with the fields sealed to this region opened (None when that was not tried or failed).
    Only these positive findings are taken as they are: whatever the thread found wrong is
    checked again on the event loop, which then reports it (or, with a roster or keys
    changed meanwhile, does not).
    """

    wire: dict[str, Any] | None = None
    envelope: Envelope | None = None
    fault: ContractError | None = None
    verified: bool = False
    opened: dict[str, Any] | None = None


class Consumer:
    """Pulls and processes one region's inbound events."""

    def __init__(
        self,
        *,
        region: str,
        js: JetStreamContext,
        store: Store,
        roster: KeyRoster | LiveRoster,
        registry: RegionRegistry,
        catalog: Catalog,
        settings: RuntimeSettings,
        handler: Handler,
        submit: Submit,
        batch: int = 64,
        alerts: SecurityAlerts | None = None,
        sealing: FieldSealing | None = None,
    ) -> None:
        self.region = region
        self.js = js
        self.store = store
        self.rosters = roster if isinstance(roster, LiveRoster) else LiveRoster(roster)
        self.alerts = alerts
        # Without this region's keys nothing sealed opens: such events are dead-lettered.
        self.sealing = sealing or FieldSealing(lambda: self.roster, tuple)
        self.registry = registry
        self.catalog = catalog
        self.settings = settings
        self.handler = handler
        self.submit = submit
        self.batch = batch
        self.handled = 0
        self.dead_lettered = 0
        self._obj: Any = None
        self._held = 0
        self._inspector = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"inspect-{region}")

    def close(self) -> None:
        """Let the inspecting thread go (after :meth:`run` has ended)."""
        self._inspector.shutdown(wait=False, cancel_futures=True)

    @property
    def roster(self) -> KeyRoster:
        """The key roster in force (reloaded from its file when that changes)."""
        return self.rosters.roster

    async def run(self) -> None:
        """Fetch and process until cancelled. Never busy-loops: every wait is bounded below."""
        sub = await self.js.pull_subscribe_bind(durable=consumer_name(self.region), stream=self.settings.stream)
        while True:
            try:
                msgs = await sub.fetch(batch=self.batch, timeout=5.0)
            except (TimeoutError, NatsTimeoutError):
                continue
            except ConnectionClosedError:
                await asyncio.sleep(1.0)
                continue
            except Exception as exc:  # a fetch can fail in many ways while the server is away
                log.warning("fetch failed", region=self.region, error=type(exc).__name__, detail=str(exc)[:200])
                await asyncio.sleep(1.0)
                continue
            await self.process(msgs)

    async def process(self, msgs: list[Msg]) -> None:
        """Process one batch: commit, then ack; stop at the first message that must wait."""
        # A fetch returns new messages before redeliveries whose ack wait expired later (after
        # a crash: [64, 65, 2, 3, ...]). Handle in stream order, or an event arriving ahead of
        # its predecessors in the same batch looks like a real chain gap (nothing else is
        # outstanding) and is dead-lettered.
        msgs = sorted(msgs, key=lambda m: m.metadata.sequence.stream)
        outcomes: list[str] = []
        wait: float | None = None
        self._held = len(msgs)
        inspections = await asyncio.get_running_loop().run_in_executor(
            self._inspector, lambda: [self._inspect(msg) for msg in msgs]
        )
        try:
            async with self.store.transaction():
                for msg, seen in zip(msgs, inspections, strict=True):
                    try:
                        async with self.store.transaction():
                            outcomes.append(await self._one(msg, seen))
                    except _Wait as stop:
                        wait = stop.delay
                        break
        except Exception as exc:
            # The transaction was rolled back: nothing of this batch took effect.
            log.error(
                "batch failed, will be redelivered", region=self.region, error=type(exc).__name__, detail=str(exc)[:300]
            )
            for msg in msgs:
                with contextlib.suppress(Exception):
                    await msg.nak(delay=1.0)
            return
        for msg, outcome in zip(msgs, outcomes, strict=False):
            with contextlib.suppress(Exception):
                await (msg.term() if outcome == "term" else msg.ack())
        for msg in msgs[len(outcomes) :]:
            with contextlib.suppress(Exception):
                await msg.nak(delay=wait if wait is not None else 1.0)

    # --- one message --------------------------------------------------------------------

    def _inspect(self, msg: Msg) -> Inspection:
        """What ``msg``'s bytes say on their own; runs in the inspecting thread (no store,
        no event loop). Never raises: a finding it cannot make is left to :meth:`_one`."""
        try:
            wire, envelope = self._envelope(msg.data or b"")
        except ContractError as exc:
            return Inspection(fault=exc)
        except Exception:
            return Inspection()
        if envelope.sender == self.region:
            return Inspection(wire, envelope)
        try:
            self._check_signature(wire, envelope, msg.metadata)
        except Exception:
            return Inspection(wire, envelope)
        try:
            model = self.catalog.by_ce_type(envelope.type).model
            return Inspection(wire, envelope, verified=True, opened=self.sealing.open(model, envelope.data))
        except Exception:  # unknown type, data its model refuses, a field that does not open
            return Inspection(wire, envelope, verified=True)

    async def _one(self, msg: Msg, seen: Inspection) -> str:
        meta = msg.metadata
        stream_seq, delivered = meta.sequence.stream, meta.num_delivered
        base = {"region": self.region, "subject": msg.subject, "stream_seq": stream_seq}
        try:
            if seen.fault is not None:
                raise seen.fault
            if seen.wire is None or seen.envelope is None:
                wire, envelope = self._envelope(msg.data or b"")
            else:
                wire, envelope = seen.wire, seen.envelope
        except ContractError as exc:  # not an event: its dead letter names the id it claims, if any
            await self._dead_letter(exc, msg, claimed_event_id(msg.data or b""), base)
            return "term"
        bound = {**base, "event_id": envelope.id, "referral_id": envelope.subject}
        if envelope.sender == self.region:
            return "ack"  # our own broadcast, echoed back by the ALL filter
        seen_at = await self.store.lookup(lambda db: Store.inbox_stream_seq(db, envelope.id))
        if seen_at in (stream_seq, 0):
            log.info("duplicate delivery ignored", **bound)
            return "ack"
        try:
            self._verify(wire, envelope, meta, seen)
            if seen_at is not None:
                raise ChainReplay(
                    f"event {envelope.id} was already delivered as stream message {seen_at}; stream message "
                    f"{stream_seq} is a copy of it (re-published, or after the duplicate window): a replay",
                    event_id=envelope.id,
                    first_stream_seq=seen_at,
                    stream_seq=stream_seq,
                    origin=envelope.sender,
                )
        except VerificationError as exc:
            await self._dead_letter(exc, msg, envelope.id, bound, security=True)
            return "term"
        heads = await self.store.lookup(Store.chain_heads)
        tracker = ChainTracker(heads)
        try:
            chain, head = tracker.accept_link(wire)
        except ChainGap as exc:
            # Wait for the missing event only while redeliveries remain: when JetStream's
            # budget runs out the message would be dropped without a dead letter.
            # The missing event, if another consumer instance holds it (e.g. one that died),
            # comes back within ack_wait: waiting longer than that only delays the link.
            if delivered < self.settings.max_deliver - 1 and await self._earlier_outstanding():
                raise _Wait(min(BACKOFF_S[min(delivered - 1, len(BACKOFF_S) - 1)], self.settings.ack_wait_s)) from None
            await self._dead_letter(exc, msg, envelope.id, bound, security=True)
            return "term"
        except VerificationError as exc:
            await self._dead_letter(exc, msg, envelope.id, bound, security=True)
            return "term"
        await self.store.lookup(lambda db: Store.save_chain_head(db, chain, head))
        try:
            event, state, previous = await self._admit(msg, wire, envelope, seen)
        except XRegionError as exc:
            await self._dead_letter(exc, msg, envelope.id, bound)
            return "term"
        try:
            async with self.store.transaction() as tx:
                with HANDLER_LATENCY.labels(region=self.region).time():
                    await self.handler(Delivery(event, stream_seq, delivered, tx, self.catalog))
                await self.store.lookup(lambda db: self._record(db, event, stream_seq, state))
                await self._receipt(event)
        except Exception as exc:
            if delivered >= self.settings.max_deliver - 1:
                failure = HandlerFailed(f"handler failed {delivered} times: {type(exc).__name__}: {exc}")
                await self._dead_letter(failure, msg, envelope.id, bound)
                return "term"
            log.warning(
                "handler failed, will retry",
                **bound,
                delivery=delivered,
                error=type(exc).__name__,
                detail=str(exc)[:300],
            )
            raise _Wait(BACKOFF_S[min(delivered - 1, len(BACKOFF_S) - 1)]) from None
        self.handled += 1
        log.info(
            "event delivered",
            **bound,
            type=envelope.event_type,
            state=state.state,
            previous=previous.state if previous else None,
        )
        return "ack"

    def _verify(self, wire: dict[str, Any], envelope: Envelope, meta: Msg.Metadata, seen: Inspection) -> None:
        """Verify the signature (unless the inspecting thread found that it verifies); on a
        key the roster lacks, reload the roster once and retry."""
        if seen.verified:
            return
        try:
            self._check_signature(wire, envelope, meta)
        except UnknownKey:
            if not self.rosters.refresh(force=True):
                raise
            self._check_signature(wire, envelope, meta)

    def _check_signature(self, wire: dict[str, Any], envelope: Envelope, meta: Msg.Metadata) -> None:
        """The roster in force verifies ``wire``'s signature, the revocation grace measured
        against when the message reached the stream."""
        grace = timedelta(seconds=self.settings.revocation_grace_s)
        self.roster.verify(wire, envelope.sender, envelope.time, received_at=meta.timestamp, grace=grace)

    def _envelope(self, body: bytes) -> tuple[dict[str, Any], Envelope]:
        wire = parse_json(body)
        if not isinstance(wire, dict):
            raise SchemaInvalid(f"an event is a JSON object, got {type(wire).__name__}", errors=[])
        try:
            return wire, Envelope.model_validate(wire)
        except ValidationError as exc:
            errors = field_errors(exc)
            raise SchemaInvalid(
                f"envelope is invalid at {', '.join(e['field'] for e in errors[:5])}: {errors[0]['error']}",
                errors=errors,
            ) from None

    async def _earlier_outstanding(self) -> bool:
        """Are messages other than the ones this batch holds still unacknowledged?

        An origin's events enter the stream in chain order (its relay publishes one at a
        time), so a gap is only transient while an earlier message is out for redelivery
        (e.g. it was held by an adapter that crashed). If nothing but this batch is
        outstanding, the missing event is not in the stream: the gap is real.
        """
        try:
            info = await self.js.consumer_info(self.settings.stream, consumer_name(self.region))
        except Exception:
            return True  # cannot tell: wait rather than condemn
        return int(info.num_ack_pending or 0) > self._held

    async def _admit(
        self, msg: Msg, wire: dict[str, Any], envelope: Envelope, seen: Inspection
    ) -> tuple[DecodedEvent, ReferralState, ReferralState | None]:
        """Contract checks after authentication: type, payload, parties, subject, lifecycle."""
        event_type = self.catalog.by_ce_type(envelope.type)
        if envelope.dataschema != event_type.dataschema:
            raise SchemaInvalid(f"dataschema {envelope.dataschema!r} does not match {envelope.type}", errors=[])
        payload = decode_data(event_type, envelope.data, self.registry)
        check_parties(envelope, self.registry)
        event = DecodedEvent(wire, envelope, event_type, payload)
        check_subject(parse_subject(msg.subject), event)
        event = self._open(event, seen)
        await self._check_attachments(event.payload)
        previous = await self.store.lookup(lambda db: Store.load_referral(db, envelope.subject))
        state = LIFECYCLES.apply(previous, step_of(event))
        return event, state, previous

    def _open(self, event: DecodedEvent, seen: Inspection) -> DecodedEvent:
        """The event with the personal data sealed to this region opened (``unseal_failed``
        if it cannot be; the inspecting thread may have opened it already); the handler sees
        plain data, ``event.wire`` stays as signed."""
        model, data = event.event_type.model, event.envelope.data
        clear = plain_fields(model, data)
        if clear:  # accepted (v1 allows plain values), but worth an operator's look
            log.warning(
                "personal data received unsealed",
                region=self.region,
                event_id=event.envelope.id,
                sender=event.envelope.sender,
                fields=clear,
            )
        opened = seen.opened if seen.opened is not None else self.sealing.open(model, data)
        return event.opened(opened, self.registry)

    async def _check_attachments(self, payload: BaseModel) -> None:
        refs = list(attachments_of(payload))
        if not refs:
            return
        if self._obj is None:
            self._obj = await self.js.object_store(self.settings.object_store)
        for ref in refs:
            try:
                info = await self._obj.get_info(ref.object_name)
            except (ObjectNotFoundError, NotFoundError):
                raise AttachmentInvalid(
                    f"attachment {ref.object_name} is not in the object store", object_name=ref.object_name
                ) from None
            digest = digest_of_info(info)
            if info.size != ref.size or digest != ref.sha256:
                raise AttachmentInvalid(
                    f"attachment {ref.object_name}: store has {info.size} bytes sha256 {digest}, "
                    f"event says {ref.size} bytes sha256 {ref.sha256}",
                    object_name=ref.object_name,
                )

    def _record(self, db: sqlite3.Connection, event: DecodedEvent, stream_seq: int, state: ReferralState) -> None:
        env = event.envelope
        db.execute(
            "INSERT INTO inbox (event_id, origin, originseq, subject, referral_id, event_type, payload, "
            "stream_seq, handled_at) VALUES (?,?,?,?,?,?,?,?,datetime('now'))",
            (
                env.id,
                env.sender,
                env.originseq,
                event.subject,
                env.subject,
                env.event_type,
                json.dumps(event.wire, ensure_ascii=False).encode(),
                stream_seq,
            ),
        )
        Store.save_referral(
            db,
            state,
            HistoryEntry(
                env.id,
                env.event_type,
                env.sender,
                env.addressee,
                env.to_dict()["time"],
                state.tracks.get(env.sender, state.state) if state.tracks else state.state,
            ),
            env.answerby.isoformat() if env.answerby else None,
        )

    async def _receipt(self, event: DecodedEvent) -> None:
        receipt = RECEIPTS.get(event.envelope.event_type)
        if receipt is None:
            return
        event_type, data = receipt
        await self.submit(event.envelope.subject, event_type, dict(data), event.envelope.id)

    async def _dead_letter(
        self, exc: XRegionError, msg: Msg, event_id: str | None, bound: dict[str, Any], *, security: bool = False
    ) -> None:
        reason = exc.to_reason()
        security = security or reason["code"] in SECURITY_CODES
        await publish_dead_letter(
            self.js,
            region=self.region,
            reason=reason,
            body=msg.data or b"",
            original_subject=msg.subject,
            stream_seq=msg.metadata.sequence.stream,
            event_id=event_id,
            dlq_stream=self.settings.dead_letter_stream,
        )
        self.dead_lettered += 1
        (log.error if security else log.warning)(
            "event dead-lettered",
            **bound,
            reason=reason["code"],
            detail=exc.message[:300],
            security_event=security,
        )
        if security and self.alerts is not None:
            self.alerts.raise_alert(
                reason,
                body=msg.data or b"",
                original_subject=msg.subject,
                stream_seq=msg.metadata.sequence.stream,
                event_id=event_id,
            )


def digest_of_info(info: Any) -> str | None:
    """The hex SHA-256 of an object from its NATS object-store info (``SHA-256=<base64url>``)."""
    import base64

    raw = getattr(info, "digest", None) or ""
    if not raw.upper().startswith("SHA-256="):
        return None
    b64 = raw.split("=", 1)[1]
    return base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).hex()
