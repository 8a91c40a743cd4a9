"""Request and response models of the HTTP gateway, built from the v1 contract models.

The bodies of ``POST /v1/referrals`` and ``POST /v1/referrals/{id}/events`` are unions
discriminated by ``event_type``: one member per event type, whose ``data`` is that event's
contract model — so the OpenAPI document carries the same schemas as ``schemas/v1/``. So is
the body of the webhook the adapter POSTs to the regional system (:data:`WebhookEvent`, the
``webhooks`` section of the OpenAPI document), with every v1 event type it may receive.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from xregion.contracts.catalog import CATALOG, Catalog, EventType
from xregion.envelope import HANDLING
from xregion.ids import EVENT_ID
from xregion.lifecycle import LIFECYCLES
from xregion.regions import PARTY_CODE

COORDINATOR_FAMILIES = frozenset({"escalation"})
"""Families only the coordinator (``COORD``) publishes (:mod:`xregion.permissions`): not
submittable by a regional system, so not part of the gateway's API."""


def _opens(kind: EventType) -> bool:
    return kind.event in LIFECYCLES[kind.family].openings


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace(".", "_").split("_"))


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _union(catalog: Catalog, opening: bool) -> Any:
    members: list[Any] = []
    for kind in catalog.versions(1):
        if _opens(kind) != opening or kind.family in COORDINATOR_FAMILIES:
            continue
        fields: dict[str, Any] = {
            "event_type": (Literal[kind.name], Field(description="The event's `<family>.<event>`.")),
            "data": (kind.model, ...),
            "handling": (str, Field("H0", pattern=r"^H[0-3](,H[0-3])*$", description="Handling codes.")),
            "handling_note": (str | None, None),
            "answer_by": (
                date | None,
                Field(
                    None,
                    description="The date to answer by; by default the adapter computes it from the event type's "
                    "period on the configured calendar (working days of the official calendar) and signs it.",
                ),
            ),
        }
        if opening:
            fields["to"] = (str, Field(pattern=r"^[A-Z]{2,8}$", description="Addressee region, or ALL."))
            fields["referral_id"] = (str | None, Field(None, description="Chosen by the adapter when absent."))
        prefix = "Open" if opening else "Send"
        members.append(create_model(f"{prefix}{_camel(kind.name)}", __base__=_Base, **fields))
    return Annotated[_reduce_union(members), Field(discriminator="event_type")]


def _reduce_union(members: list[Any]) -> Any:
    union = members[0]
    for member in members[1:]:
        union = union | member
    return union


OpenRequest = _union(CATALOG, opening=True)
SendRequest = _union(CATALOG, opening=False)


class WebhookEventBase(BaseModel):
    """An inbound event, as the adapter POSTs it to the regional system's webhook: verified,
    its personal data opened, with the referral's state once it is applied.

    The adapter sends each inbound event (receipts and escalations included) once it has
    stored it, in order, until the system answers 2xx; ``event_id`` is the idempotency key.
    """

    event_id: str = Field(
        pattern=EVENT_ID.pattern,
        description="The event's id (UUIDv7), also in the X-Xregion-Event-Id header: the receiver's "
        "idempotency key (a retried webhook carries the same id).",
    )
    referral_id: str = Field(
        pattern=r"^[A-Z]{2,8}-[0-9a-f-]{36}$", description="The referral (the envelope's subject)."
    )
    sender: str = Field(pattern=PARTY_CODE.pattern, description="The sending region, or COORD for escalations.")
    to: str = Field(pattern=PARTY_CODE.pattern, description="The addressee: this region, or ALL for a broadcast.")
    source: str = Field(description="The envelope's source, urn:xregion:<sender>:<agency>.")
    time: str = Field(
        json_schema_extra={"format": "date-time"}, description="The event's time as the sender signed it (RFC 3339)."
    )
    handling: str = Field(pattern=HANDLING.pattern, description="Handling codes H0-H3, comma-separated.")
    answer_by: date | None = Field(
        description="The deadline the sender signed (the envelope's answerby: answer by the end of that day, "
        "UTC+8), or null when the event sets none."
    )
    state_after: str = Field(
        description="The referral's lifecycle state once this event is applied (for a broadcast, the "
        "sender's own track)."
    )


def _webhook_union(catalog: Catalog) -> Any:
    members: list[Any] = []
    for kind in catalog.versions(1):
        fields: dict[str, Any] = {
            "event_type": (Literal[kind.name], Field(description="The event's `<family>.<event>`.")),
            "data": (
                kind.model,
                Field(description=f"The event's data ({kind.dataschema}), personal data opened (plain)."),
            ),
        }
        members.append(create_model(f"Webhook{_camel(kind.name)}", __base__=WebhookEventBase, **fields))
    return Annotated[_reduce_union(members), Field(discriminator="event_type")]


WebhookEvent = _webhook_union(CATALOG)
"""The webhook's JSON body: one member per v1 event type, discriminated by ``event_type``."""


class Submitted(BaseModel):
    """The event as the adapter stored it (signed, in its outbox; published by the relay)."""

    event_id: str
    referral_id: str
    event_type: str
    sender: str
    to: str
    time: str
    answer_by: str | None = None
    handling: str


class FieldError(BaseModel):
    field: str = Field(description="Path of the failing field, e.g. `data.suspects.0.uscc`.")
    error: str


class Problem(BaseModel):
    """RFC 9457 problem details (``application/problem+json``)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="`urn:xregion:error:<code>`, the stable error code.")
    title: str
    status: int
    detail: str
    instance: str | None = None
    code: str
    errors: list[FieldError] = Field(default_factory=list)


class Referral(BaseModel):
    referral_id: str
    family: str
    origin: str
    addressee: str
    state: str
    tracks: dict[str, str]
    events: int
    last_event_id: str
    handling: list[str]


class HistoryItem(BaseModel):
    event_id: str
    event_type: str
    sender: str
    addressee: str
    time: str
    state_after: str


class DeadLetter(BaseModel):
    event_id: str
    referral_id: str
    event_type: str
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: str
    dead_at: str | None
