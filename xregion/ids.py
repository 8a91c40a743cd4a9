"""Identifiers: time-ordered event ids and referral ids.

Event ids are UUIDv7 (RFC 9562): unique, and sorting them sorts events by creation time
(monotonic within one process). They double as JetStream's ``Nats-Msg-Id`` for
de-duplication. A referral id is the origin's code and a UUIDv7, so it names its owner.
"""

from __future__ import annotations

import re

import uuid6

EVENT_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
REFERRAL_ID = re.compile(r"^[A-Z]{2,8}-[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def new_event_id() -> str:
    """A fresh UUIDv7 in canonical lower-case form."""
    return str(uuid6.uuid7())


def new_referral_id(origin: str) -> str:
    """A fresh referral id owned by ``origin`` (``BJ-0193...``)."""
    return f"{origin}-{uuid6.uuid7()}"
