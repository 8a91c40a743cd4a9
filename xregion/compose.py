"""Composing new events: from a typed payload to a validated, unsigned envelope dict.

The runtime then assigns the origin's chain position and signs (:func:`seal`), in the
same transaction that stores the event in the outbox.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from pydantic import ValidationError

from xregion.codec import DecodedEvent, decode_dict, schema_invalid
from xregion.contracts.catalog import CATALOG, Catalog, EventType
from xregion.contracts.common import Contract
from xregion.envelope import format_time, source_uri
from xregion.errors import SchemaInvalid
from xregion.ids import new_event_id
from xregion.regions import RegionRegistry
from xregion.signing import Signer


def compose(
    event_type: EventType,
    payload: Contract | dict[str, Any],
    *,
    sender: str,
    agency: str,
    to: str,
    referral_id: str,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    handling: str = "H0",
    handling_note: str | None = None,
    answer_by: date | None = None,
    time: datetime | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """An unsigned event dict (without ``originseq``, ``prevhash``, ``keyid``, ``signature``)."""
    if isinstance(payload, dict):
        try:
            payload = event_type.model.model_validate(payload, context={"strict": True})
        except ValidationError as exc:
            raise schema_invalid(f"data of {event_type.ce_type}", exc, "data") from None
    elif not isinstance(payload, event_type.model):
        raise SchemaInvalid(
            f"{event_type.ce_type} carries {event_type.model.__name__}, not {type(payload).__name__}",
            errors=[{"field": "data", "error": "wrong payload model"}],
        )
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id or new_event_id(),
        "source": source_uri(sender, agency),
        "type": event_type.ce_type,
        "time": format_time(time or datetime.now(UTC)),
        "subject": referral_id,
        "dataschema": event_type.dataschema,
        "datacontenttype": "application/json",
        "data": payload.model_dump(mode="json", exclude_none=True),
        "addressee": to,
        "correlationid": correlation_id or referral_id,
        "handling": handling,
    }
    if causation_id:
        event["causationid"] = causation_id
    if handling_note:
        event["handlingnote"] = handling_note
    if answer_by:
        event["answerby"] = answer_by.isoformat()
    return event


def null_members(value: Any, path: str = "") -> list[str]:
    """Paths of the members of ``value`` that are ``null`` (a producer leaves them out)."""
    if isinstance(value, dict):
        found = []
        for name, item in value.items():
            where = f"{path}.{name}" if path else str(name)
            found += [where] if item is None else null_members(item, where)
        return found
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in null_members(item, f"{path}.{i}")]
    return []


def seal(
    event: dict[str, Any],
    *,
    seq: int,
    prevhash: str,
    linkseq: int,
    linkprev: str,
    signer: Signer,
    catalog: Catalog = CATALOG,
    registry: RegionRegistry | None = None,
) -> DecodedEvent:
    """Place ``event`` in its origin's chain and its link's chain, sign it, validate it.

    A member that is ``null`` is refused (``schema_invalid``): the producer's rule is to
    leave it out (docs/signing-recipe.md §1). Receivers read ``null`` as absent, so v1 events
    that carry it stay valid, but no xregion producer ever signs one.
    """
    nulls = null_members(event)
    if nulls:
        raise SchemaInvalid(
            f"{', '.join(nulls)}: null; leave a member without a value out of the event",
            errors=[{"field": where, "error": "null: leave the member out"} for where in nulls],
        )
    chained = {**event, "originseq": seq, "prevhash": prevhash, "linkseq": linkseq, "linkprev": linkprev}
    signed = signer.sign(chained)
    return decode_dict(signed, catalog=catalog, registry=registry)
