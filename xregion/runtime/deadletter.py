"""Dead letters: what an adapter cannot accept is kept, with a machine-readable reason.

A dead letter is the original message body, byte for byte, published to
``xregion.dlq.<region>.<reason code>`` in the ``XREGION_DLQ`` stream, with headers:

=========================== ==============================================================
``Xregion-Reason-Code``     stable code (``bad_signature``, ``chain_gap``, ...; see errors)
``Xregion-Reason``          JSON (ASCII-escaped): code, message and details
``Xregion-Original-Subject`` subject the message arrived on
``Xregion-Stream-Seq``      its sequence in the event stream
``Xregion-Event-Id``        event id, when the message had a readable one
``Nats-Msg-Id``             ``dlq-<region>-<stream seq>``: a retried dead-lettering is dropped
=========================== ==============================================================
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from xregion.runtime.topology import DLQ_ROOT, dead_letter_subject

REASON_CODE = "Xregion-Reason-Code"
REASON = "Xregion-Reason"
ORIGINAL_SUBJECT = "Xregion-Original-Subject"
STREAM_SEQ = "Xregion-Stream-Seq"
EVENT_ID = "Xregion-Event-Id"


@dataclass(frozen=True)
class DeadLetter:
    """A dead letter as read back from the stream."""

    region: str
    code: str
    reason: dict[str, Any]
    original_subject: str
    stream_seq: int | None
    event_id: str | None
    body: bytes


REASON_LIMIT = 8000
"""Characters of the ``Xregion-Reason`` header at most (a message's headers travel with it)."""


def reason_header(reason: dict[str, Any], limit: int = REASON_LIMIT) -> str:
    """``reason`` as the ``Xregion-Reason`` header: its JSON, or where that is longer than
    ``limit``, still valid JSON of at most ``limit`` characters: the code, the start of the
    message, ``"truncated": true`` and the start of the JSON text of its other members — the
    details, which :meth:`XRegionError.to_reason` puts next to code and message
    (``details_excerpt``)."""
    text = json.dumps(reason, ensure_ascii=True, default=str)
    if len(text) <= limit:
        return text
    short = {"code": reason.get("code"), "message": _fit(str(reason.get("message", "")), limit // 4)}
    short["truncated"] = True
    short["details_excerpt"] = ""
    room = limit - len(json.dumps(short, ensure_ascii=True, default=str))
    details = json.dumps(
        {k: v for k, v in reason.items() if k not in ("code", "message")}, ensure_ascii=True, default=str
    )
    short["details_excerpt"] = _fit(details, room)
    return json.dumps(short, ensure_ascii=True, default=str)


def _fit(text: str, room: int) -> str:
    """The longest start of ``text`` whose JSON string escaping takes at most ``room`` characters."""
    used = 0
    for end, char in enumerate(text):
        used += len(json.dumps(char, ensure_ascii=True)) - 2
        if used > room:
            return text[:end]
    return text


async def publish_dead_letter(
    js: JetStreamContext,
    *,
    region: str,
    reason: dict[str, Any],
    body: bytes,
    original_subject: str,
    stream_seq: int | None,
    event_id: str | None,
    dlq_stream: str,
) -> None:
    headers = {
        REASON_CODE: str(reason["code"]),
        REASON: reason_header(reason),
        ORIGINAL_SUBJECT: original_subject,
        "Nats-Msg-Id": f"dlq-{region}-{stream_seq}" if stream_seq else f"dlq-{region}-{event_id}",
    }
    if stream_seq is not None:
        headers[STREAM_SEQ] = str(stream_seq)
    if event_id:
        headers[EVENT_ID] = event_id
    await js.publish(
        dead_letter_subject(region, str(reason["code"])), body, timeout=5.0, stream=dlq_stream, headers=headers
    )


def parse_dead_letter(subject: str, headers: dict[str, str] | None, body: bytes) -> DeadLetter:
    headers = headers or {}
    region = subject.split(".")[2]
    seq = headers.get(STREAM_SEQ)
    return DeadLetter(
        region=region,
        code=headers.get(REASON_CODE, "unknown"),
        reason=json.loads(headers.get(REASON, "{}")),
        original_subject=headers.get(ORIGINAL_SUBJECT, ""),
        stream_seq=int(seq) if seq else None,
        event_id=headers.get(EVENT_ID),
        body=body,
    )


async def stored_messages(js: JetStreamContext, stream: str, prefix: str) -> AsyncIterator[api.RawStreamMsg]:
    """The messages of ``stream`` whose subject starts with ``prefix``, oldest first."""
    info = await js.stream_info(stream)
    if info.state.messages == 0:
        return
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            msg = await js.get_msg(stream, seq)
        except NotFoundError:
            continue
        if (msg.subject or "").startswith(prefix):
            yield msg


async def read_dead_letters(js: JetStreamContext, dlq_stream: str, region: str | None = None) -> list[DeadLetter]:
    """Every dead letter (of ``region``), oldest first — for operators and tests."""
    out: list[DeadLetter] = []
    async for msg in stored_messages(js, dlq_stream, f"{DLQ_ROOT}."):
        letter = parse_dead_letter(msg.subject or "", msg.headers, msg.data or b"")
        if region is None or letter.region == region:
            out.append(letter)
    return out
