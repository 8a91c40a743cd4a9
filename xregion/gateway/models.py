"""Request and response models of the HTTP gateway, built from the v1 contract models.

The bodies of ``POST /v1/referrals`` and ``POST /v1/referrals/{id}/events`` are unions
discriminated by ``event_type``: one member per event type, whose ``data`` is that event's
contract model — so the OpenAPI document carries the same schemas as ``schemas/v1/``.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from xregion.contracts.catalog import CATALOG, Catalog, EventType
from xregion.lifecycle import LIFECYCLES

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
            "answer_by": (date | None, Field(None, description="Defaults to the family's deadline.")),
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
