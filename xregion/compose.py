"""Composing new events: from a typed payload to a validated, unsigned envelope dict.

The runtime then assigns the origin's chain position and signs (:func:`seal`), in the
same transaction that stores the event in the outbox.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from pydantic import ValidationError

from xregion.codec import DecodedEvent, decode_data, decode_dict, schema_invalid
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
    return compose_validated(
        event_type,
        payload,
        sender=sender,
        agency=agency,
        to=to,
        referral_id=referral_id,
        correlation_id=correlation_id,
        causation_id=causation_id,
        handling=handling,
        handling_note=handling_note,
        answer_by=answer_by,
        time=time,
        event_id=event_id,
    )[0]


def compose_validated(
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
    registry: RegionRegistry | None = None,
) -> tuple[dict[str, Any], Contract]:
    """:func:`compose`, and the payload validated as the receivers validate it — with
    ``registry`` (region codes), a dict also strictly (unknown fields refused) — so the
    outbox need not validate it again (:meth:`~xregion.runtime.outbox.Outbox.submit`)."""
    if isinstance(payload, dict):
        try:
            payload = event_type.model.model_validate(payload, context={"strict": True, "regions": registry})
        except ValidationError as exc:
            raise schema_invalid(f"data of {event_type.ce_type}", exc, "data") from None
        data = payload.model_dump(mode="json", exclude_none=True)
    elif not isinstance(payload, event_type.model):
        raise SchemaInvalid(
            f"{event_type.ce_type} carries {event_type.model.__name__}, not {type(payload).__name__}",
            errors=[{"field": "data", "error": "wrong payload model"}],
        )
    else:
        data = payload.model_dump(mode="json", exclude_none=True)
        if registry is not None:  # built without the registry's context: validated once, with it
            payload = decode_data(event_type, data, registry)
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id or new_event_id(),
        "source": source_uri(sender, agency),
        "type": event_type.ce_type,
        "time": format_time(time or datetime.now(UTC)),
        "subject": referral_id,
        "dataschema": event_type.dataschema,
        "datacontenttype": "application/json",
        "data": data,
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
    return event, payload


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
    _refuse_nulls(event)
    chained = {**event, "originseq": seq, "prevhash": prevhash, "linkseq": linkseq, "linkprev": linkprev}
    signed = signer.sign(chained)
    return decode_dict(signed, catalog=catalog, registry=registry)


def seal_encoded(
    event: dict[str, Any],
    *,
    seq: int,
    prevhash: str,
    linkseq: int,
    linkprev: str,
    signer: Signer,
    opened: dict[str, Any],
    payload: Contract | None = None,
    catalog: Catalog = CATALOG,
    registry: RegionRegistry | None = None,
) -> tuple[DecodedEvent, bytes]:
    """:func:`seal` doing each piece of work once: the signed event, read with ``opened``
    (its data before sealing), and its wire bytes (canonical form) written once with the
    signing input (:meth:`Signer.sign_encoded`); the payload is validated once, opened (the
    sealed values are the sealing's own output, ``{"sealed": {key id: box}}`` by construction),
    or not at all when ``payload`` is ``opened`` validated already (:func:`compose_validated`)."""
    _refuse_nulls(event)
    chained = {**event, "originseq": seq, "prevhash": prevhash, "linkseq": linkseq, "linkprev": linkprev}
    signed, wire = signer.sign_encoded(chained)
    return decode_dict(signed, catalog=catalog, registry=registry, opened=opened, payload=payload), wire


def _refuse_nulls(event: dict[str, Any]) -> None:
    nulls = null_members(event)
    if nulls:
        raise SchemaInvalid(
            f"{', '.join(nulls)}: null; leave a member without a value out of the event",
            errors=[{"field": where, "error": "null: leave the member out"} for where in nulls],
        )
