"""Security alerts: an adapter tells the coordinator that a forged or replayed event got past
the server.

When the consumer dead-letters a message for a reason in :data:`SECURITY_CODES` — the
signature, key, chain or addressing of an event is wrong, which the NATS permissions should
have made impossible for anyone but a thief of a region's credentials or key — it also
publishes an alert on ``xregion.alert.<detecting region>.<reason code>`` (the
``XREGION_DLQ`` stream holds them next to the dead letters). The alert is a JSON record
signed by the detecting region's key like an event (RFC 8785, Ed25519, ``keyid`` and
``signature`` members)::

    {"kind": "security.alert", "id": "alert-TJ-42-bad_signature", "code": "bad_signature",
     "reason": {"code": ..., "message": ..., "keyid": ...}, "detected_by": "TJ",
     "claimed_sender": "BJ", "claimed_keyid": "BJ:…", "original_subject": "xregion.v1.…",
     "event_id": "…", "stream_seq": 42, "detected_at": "2026-…Z", "keyid": …, "signature": …}

It never carries the event's ``data`` (personal data): the dead letter keeps the original
bytes for whoever is entitled to read them. Absent values are omitted.

Publishing never blocks the consumer: the alert is logged (``security event``) at once and
published by a background task that retries with back-off for ``XREGION_ALERT_RETRY_S``
(``Nats-Msg-Id`` = the alert id, so a retried publish is stored once), then logs that it gave
up. An adapter that stops waits a few seconds for alerts still in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from nats.js import JetStreamContext
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential_jitter

from xregion.envelope import SOURCE
from xregion.runtime.deadletter import stored_messages
from xregion.runtime.nats_compat import printable
from xregion.runtime.topology import ALERT_ROOT, alert_subject
from xregion.signing import KeyRoster, RosterKey, Signer, canonical

log = structlog.get_logger("xregion.security")

KIND = "security.alert"

SECURITY_CODES = frozenset(
    {
        "bad_signature",
        "unknown_key",
        "key_not_valid",
        "key_revoked",
        "chain_break",
        "chain_gap",
        "chain_fork",
        "chain_replay",
        "subject_mismatch",
        "misaddressed",
        "handling_restricted",
        "subject_invalid",
        "own_event_unknown",
        "role_violation",
    }
)
"""Dead-letter reasons that mean a forged, replayed or misrouted event got past the server,
a region shared onward what the originator's handling code forbids, published on a subject
that is not UTF-8, or sent what its role may not (an escalation from a region, a lead from
the coordinator), or an event claims the receiver as its sender that it never sent."""


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def claims_of(body: bytes) -> tuple[str | None, str | None]:
    """The sender and key id a message claims, if it is readable enough to tell."""
    try:
        wire = json.loads(body)
    except (ValueError, RecursionError):
        return None, None
    if not isinstance(wire, dict):
        return None, None
    match = SOURCE.match(str(wire.get("source", "")))
    keyid = wire.get("keyid")
    # A claimed key id is the sender's text: kept only as valid UTF-8 (a lone surrogate would
    # make the alert unsignable) and short.
    return (match[1] if match else None), (printable(keyid)[:128] if isinstance(keyid, str) else None)


def alert_record(
    *,
    region: str,
    reason: dict[str, Any],
    body: bytes,
    original_subject: str,
    stream_seq: int | None,
    event_id: str | None,
    detected_at: datetime,
) -> dict[str, Any]:
    """The unsigned alert about one dead-lettered message (no ``data`` of the event)."""
    code = str(reason["code"])
    sender, keyid = claims_of(body)
    record: dict[str, Any] = {
        "kind": KIND,
        "id": f"alert-{region}-{stream_seq if stream_seq is not None else event_id}-{code}",
        "code": code,
        # JSON round trip: details become plain JSON values, as they are in the dead letter.
        "reason": json.loads(json.dumps(reason, ensure_ascii=False, default=str)),
        "detected_by": region,
        "claimed_sender": sender,
        "claimed_keyid": keyid,
        "original_subject": original_subject,
        "event_id": event_id,
        "stream_seq": stream_seq,
        "detected_at": _rfc3339(detected_at),
    }
    return {k: v for k, v in record.items() if v is not None}


@dataclass(frozen=True)
class SecurityAlert:
    """A security alert as read back from the stream."""

    subject: str
    record: dict[str, Any]

    @property
    def code(self) -> str:
        return str(self.record.get("code", ""))

    @property
    def detected_by(self) -> str:
        return str(self.record.get("detected_by", ""))

    @property
    def detected_at(self) -> datetime:
        return datetime.fromisoformat(str(self.record["detected_at"]))

    def verify(self, roster: KeyRoster) -> RosterKey:
        """Check the detecting region's signature on the alert (raises if forged)."""
        return roster.verify(self.record, self.detected_by, self.detected_at)


async def read_security_alerts(js: JetStreamContext, dlq_stream: str, region: str | None = None) -> list[SecurityAlert]:
    """Every security alert (raised by ``region``), oldest first — for the coordinator and tests."""
    prefix = f"{ALERT_ROOT}.{region}." if region else f"{ALERT_ROOT}."
    out = []
    async for msg in stored_messages(js, dlq_stream, prefix):
        with contextlib.suppress(ValueError):
            record = json.loads(msg.data or b"{}")
            if isinstance(record, dict):
                out.append(SecurityAlert(msg.subject or "", record))
    return out


class SecurityAlerts:
    """Raises one region's security alerts: logs them, signs them, publishes them reliably."""

    def __init__(
        self,
        js: JetStreamContext,
        region: str,
        signer: Callable[[], Signer],
        *,
        stream: str,
        retry_s: float = 600.0,
        publish_timeout_s: float = 5.0,
    ) -> None:
        self.js = js
        self.region = region
        self.signer = signer
        self.stream = stream
        self.retry_s = retry_s
        self.publish_timeout_s = publish_timeout_s
        self.raised = 0
        self.published = 0
        self._pending: set[asyncio.Task[None]] = set()

    def raise_alert(
        self,
        reason: dict[str, Any],
        *,
        body: bytes,
        original_subject: str,
        stream_seq: int | None,
        event_id: str | None,
    ) -> dict[str, Any]:
        """Log the alert now and publish it in the background; returns the signed record."""
        record = self.signer().sign(
            alert_record(
                region=self.region,
                reason=reason,
                body=body,
                original_subject=original_subject,
                stream_seq=stream_seq,
                event_id=event_id,
                detected_at=datetime.now(UTC),
            )
        )
        self.raised += 1
        log.error(
            "security event",
            region=self.region,
            reason=record["code"],
            detail=str(reason.get("message", ""))[:300],
            subject=original_subject,
            stream_seq=stream_seq,
            event_id=event_id,
            claimed_sender=record.get("claimed_sender"),
            claimed_keyid=record.get("claimed_keyid"),
            alert_id=record["id"],
        )
        task = asyncio.get_running_loop().create_task(self._publish(record))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return record

    async def _publish(self, record: dict[str, Any]) -> None:
        subject = alert_subject(self.region, str(record["code"]))
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(Exception),
            wait=wait_exponential_jitter(multiplier=0.1, max=10.0, jitter=0.5),
            stop=stop_after_delay(self.retry_s),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self.js.publish(
                        subject,
                        canonical(record),
                        timeout=self.publish_timeout_s,
                        stream=self.stream,
                        headers={"Nats-Msg-Id": str(record["id"])},  # fresh dict: publish mutates it
                    )
        except Exception as exc:
            log.error(
                "security alert not published; giving up",
                region=self.region,
                alert_id=record["id"],
                reason=record["code"],
                error=type(exc).__name__,
                detail=str(exc)[:200],
            )
            return
        self.published += 1

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def close(self, timeout: float = 5.0) -> None:
        """Give alerts still in flight ``timeout`` seconds, then cancel (and log) the rest."""
        if not self._pending:
            return
        _, late = await asyncio.wait(set(self._pending), timeout=timeout)
        for task in late:
            task.cancel()
        if late:
            log.error("security alerts not published before the adapter stopped", region=self.region, count=len(late))
        await asyncio.gather(*late, return_exceptions=True)
