"""Dead letters and security alerts of every region, as the coordinator sees them.

Every region's adapter keeps what it cannot accept as a dead letter on
``xregion.dlq.<region>.<code>`` and, for a forged, replayed or misrouted event, raises a
signed security alert on ``xregion.alert.<region>.<code>``; both live in the dead-letter
stream (``XREGION_DLQ``). The coordinator's identity may read that stream by direct get
(:func:`xregion.permissions.coordinator_permissions`) and creates no consumer for it:
:class:`Incidents` reads it by sequence from its own position, in memory, and keeps counts
per region and code and the most recent records — never a dead letter's body (it is the
original event, personal data included). Each alert's signature is checked against the key
roster (``verified``): an alert a region did not sign is shown as such, not believed.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from xregion.errors import XRegionError
from xregion.explanations import explain
from xregion.runtime.deadletter import parse_dead_letter
from xregion.runtime.stream_reader import StoredMessage, StreamReader
from xregion.signing import KeyRoster
from xregion.subjects import ALERT_ROOT, DLQ_ROOT

Kind = Literal["dead_letter", "security_alert"]


@dataclass(frozen=True)
class Incident:
    """One dead letter or security alert (what the dashboard lists)."""

    kind: Kind
    dlq_seq: int
    stored_at: datetime
    region: str
    """The region that dead-lettered the message or raised the alert."""
    code: str
    message: str
    original_subject: str
    stream_seq: int | None
    event_id: str | None
    claimed_sender: str | None = None
    verified: bool | None = None
    """A security alert: does its signature verify against the roster (None: dead letter)."""

    def to_json(self) -> dict[str, Any]:
        e = explain(self.code)
        return {
            "kind": self.kind,
            "dlq_seq": self.dlq_seq,
            "stored_at": self.stored_at.isoformat(),
            "region": self.region,
            "code": self.code,
            "title": e.title,
            "meaning": e.meaning,
            "action": e.action,
            "message": self.message,
            "original_subject": self.original_subject,
            "stream_seq": self.stream_seq,
            "event_id": self.event_id,
            "claimed_sender": self.claimed_sender,
            "verified": self.verified,
        }


def _region_of(subject: str) -> str:
    parts = subject.split(".")
    return parts[2] if len(parts) > 3 else ""


def read_incident(message: StoredMessage, roster: KeyRoster | None) -> Incident | None:
    """The incident a stored message of the dead-letter stream is (None: something else)."""
    subject = message.subject
    if subject.startswith(f"{DLQ_ROOT}."):
        letter = parse_dead_letter(subject, dict(message.headers), b"")
        return Incident(
            kind="dead_letter",
            dlq_seq=message.seq,
            stored_at=message.stored_at,
            region=letter.region,
            code=letter.code,
            message=str(letter.reason.get("message", ""))[:500],
            original_subject=letter.original_subject,
            stream_seq=letter.stream_seq,
            event_id=letter.event_id,
        )
    if subject.startswith(f"{ALERT_ROOT}."):
        try:
            record = json.loads(message.data)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            return Incident(
                "security_alert", message.seq, message.stored_at, _region_of(subject), "malformed_json",
                "the alert is not a JSON object", "", None, None, None, False,
            )  # fmt: skip
        verified: bool | None = None
        if roster is not None:
            try:
                roster.verify(record, str(record.get("detected_by", "")), datetime.fromisoformat(record["detected_at"]))
                verified = record.get("detected_by") == _region_of(subject)
            except (XRegionError, KeyError, ValueError, TypeError):
                verified = False
        found = record.get("reason")
        reason: dict[str, Any] = found if isinstance(found, dict) else {}
        seq = record.get("stream_seq")
        return Incident(
            kind="security_alert",
            dlq_seq=message.seq,
            stored_at=message.stored_at,
            region=_region_of(subject),
            code=str(record.get("code", subject.rsplit(".", 1)[-1])),
            message=str(reason.get("message", ""))[:500],
            original_subject=str(record.get("original_subject", "")),
            stream_seq=seq if isinstance(seq, int) else None,
            event_id=str(record["event_id"]) if record.get("event_id") else None,
            claimed_sender=str(record["claimed_sender"]) if record.get("claimed_sender") else None,
            verified=verified,
        )
    return None


class Incidents:
    """Reads the dead-letter stream on ``connection()`` (a connected nats-py client, or None
    while there is none) from its own position; :meth:`refresh` reads what is new."""

    def __init__(
        self,
        connection: Callable[[], Any],
        stream: str,
        *,
        roster: Callable[[], KeyRoster] | None = None,
        keep: int = 200,
        timeout_s: float = 3.0,
    ) -> None:
        self.connection = connection
        self.stream = stream
        self.roster = roster
        self.timeout_s = timeout_s
        self.position = 0
        self.counts: Counter[tuple[str, str, str]] = Counter()
        """(kind, region, code) → how many."""
        self.recent: deque[Incident] = deque(maxlen=keep)
        self.error: str | None = None
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        """Read every message after the position (bounded by ``timeout_s``); a failure is kept
        in :attr:`error` (the dashboard says the list may be incomplete) and retried next time."""
        async with self._lock:
            nc = self.connection()
            if nc is None or not getattr(nc, "is_connected", False):
                self.error = "not connected"
                return
            try:
                async with asyncio.timeout(self.timeout_s), StreamReader(nc, self.stream) as reader:
                    while True:
                        batch = await reader.fetch(self.position + 1)
                        if not batch.messages:
                            break
                        roster = self.roster() if self.roster is not None else None
                        for message in batch.messages:
                            incident = read_incident(message, roster)
                            if incident is not None:
                                self.counts[(incident.kind, incident.region, incident.code)] += 1
                                self.recent.append(incident)
                            self.position = message.seq
                        if not batch.pending:
                            break
                self.error = None
            except (XRegionError, TimeoutError) as exc:
                self.error = exc.code if isinstance(exc, XRegionError) else "stream_read_timeout"

    def to_json(self, regions: tuple[str, ...], limit: int = 100) -> dict[str, Any]:
        per_region: dict[str, dict[str, dict[str, int]]] = {
            r: {"dead_letters": {}, "security_alerts": {}} for r in regions
        }
        for (kind, region, code), n in sorted(self.counts.items()):
            bucket = per_region.setdefault(region, {"dead_letters": {}, "security_alerts": {}})
            bucket["dead_letters" if kind == "dead_letter" else "security_alerts"][code] = n
        codes = sorted({code for _, _, code in self.counts})
        return {
            "available": self.error is None,
            "error": self.error,
            "position": self.position,
            "dead_letters": sum(n for (k, _, _), n in self.counts.items() if k == "dead_letter"),
            "security_alerts": sum(n for (k, _, _), n in self.counts.items() if k == "security_alert"),
            "per_region": per_region,
            "explanations": {c: explain(c).to_json() for c in codes},
            "recent": [i.to_json() for i in reversed(list(self.recent)[-limit:])],
        }


__all__ = ["Incident", "Incidents", "read_incident"]
