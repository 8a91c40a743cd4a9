"""The CloudEvents 1.0 envelope of every xregion event (structured JSON mode).

Standard attributes: ``specversion``, ``id`` (UUIDv7), ``source``
(``urn:xregion:<region>:<agency>``), ``type`` (``cn.jjj.xregion.<family>.<event>.v1``),
``time``, ``subject`` (the referral id), ``dataschema``, ``datacontenttype``, ``data``.

Extension attributes (CloudEvents names: lower-case letters and digits only):

================== ========================================================================
``addressee``      region code, or ``ALL`` for a broadcast
``correlationid``  the referral family this event belongs to: the first referral of a chain
                   of forwarded leads, or the operation of linked assistance requests
``causationid``    id of the event this one answers (absent on opening events)
``originseq``      the sender region's gap-free sequence number, from 1
``prevhash``       ``sha256:<hex>`` of the sender region's previous event (hash chain)
``linkseq``        gap-free sequence of the sender's events to this addressee (a *link*:
                   ``BJ→TJ``, or ``BJ→ALL`` for broadcasts), from 1
``linkprev``       ``sha256:<hex>`` of the sender's previous event on the same link
``handling``       handling codes H0-H3, comma-separated (e.g. ``H0`` or ``H1,H2``)
``handlingnote``   the restriction spelled out, required with H3
``answerby``       ``YYYY-MM-DD``: the addressee must answer by the end of that day (UTC+8);
                   computed once by the sender (:mod:`xregion.deadlines`) and used as is by all
``keyid``          id of the Ed25519 key in the roster that signed the event
``signature``      base64 Ed25519 signature over the RFC 8785 form of all other attributes
================== ========================================================================
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_serializer,
    model_validator,
)

from xregion.contracts.catalog import CE_TYPE
from xregion.contracts.common import null_is_absent
from xregion.ids import EVENT_ID

SOURCE = re.compile(r"^urn:xregion:([A-Z]{2,8}):([a-z][a-z0-9_]{1,31})$")
HASH = re.compile(r"^sha256:[0-9a-f]{64}$")
GENESIS_HASH = "sha256:" + "0" * 64
"""``prevhash`` of an origin's first event (``originseq`` 1)."""


class HandlingCode(StrEnum):
    """Handling codes, after Europol SIENA's H0-H3."""

    H0 = "H0"  # use only for the purpose for which it was provided
    H1 = "H1"  # not to be used in judicial proceedings without the originator's permission
    H2 = "H2"  # not to be passed on (forwarded, re-shared) without the originator's permission
    H3 = "H3"  # other restrictions, stated in ``handlingnote``


HANDLING = re.compile(r"^H[0-3](,H[0-3]){0,3}$")


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds: ``2026-11-25T06:30:00.123456Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Envelope(BaseModel):
    """A v1 event as carried on the bus; ``data`` is validated separately by its type."""

    # Unknown extension attributes are kept (and covered by the signature): a backward-
    # compatible v1 addition must not break older consumers.
    # Absent attributes are left out, never null (docs/signing-recipe.md §1); a null one is
    # read as absent, as v1 always accepted it (null_is_absent documents it in the schema).
    model_config = ConfigDict(extra="allow", frozen=True, json_schema_extra=null_is_absent)

    specversion: Literal["1.0"]
    id: Annotated[str, StringConstraints(pattern=EVENT_ID.pattern)]
    source: Annotated[str, StringConstraints(pattern=SOURCE.pattern)]
    type: Annotated[str, StringConstraints(pattern=CE_TYPE.pattern)]
    time: AwareDatetime
    subject: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2,8}-[0-9a-f-]{36}$")]
    dataschema: Annotated[str, StringConstraints(pattern=r"^urn:xregion:schema:v[1-9][0-9]*:[a-z_]+\.[a-z_]+$")]
    datacontenttype: Literal["application/json"]
    data: dict[str, Any]
    addressee: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2,8}$")]
    correlationid: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    causationid: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    originseq: Annotated[int, Field(ge=1, strict=True)]  # a JSON integer: not "1", 1.0, true
    prevhash: Annotated[str, StringConstraints(pattern=HASH.pattern)]
    linkseq: Annotated[int, Field(ge=1, strict=True)]
    linkprev: Annotated[str, StringConstraints(pattern=HASH.pattern)]
    handling: Annotated[str, StringConstraints(pattern=HANDLING.pattern)]
    handlingnote: Annotated[str, StringConstraints(min_length=1, max_length=2_000)] | None = None
    answerby: date | None = None
    keyid: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    signature: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None

    @field_serializer("time")
    def _rfc3339(self, moment: datetime) -> str:
        return format_time(moment)

    @model_validator(mode="after")
    def _consistent(self) -> Envelope:
        sender = self.sender
        if self.addressee == sender:
            raise ValueError(f"addressee {self.addressee} is the sender itself")
        codes = self.handling_codes
        if len(set(codes)) != len(codes):
            raise ValueError("handling codes repeat")
        if HandlingCode.H3 in codes and not self.handlingnote:
            raise ValueError("handling code H3 needs a handlingnote stating the restriction")
        if self.answerby is not None and self.answerby < self.time.date():
            raise ValueError(f"answerby {self.answerby} is before the event's own date")
        if self.originseq == 1 and self.prevhash != GENESIS_HASH:
            raise ValueError("the first event of an origin (originseq 1) must carry the genesis prevhash")
        if self.linkseq == 1 and self.linkprev != GENESIS_HASH:
            raise ValueError("the first event of a link (linkseq 1) must carry the genesis linkprev")
        if self.linkseq > self.originseq:
            raise ValueError("linkseq cannot exceed originseq: a link is part of its origin's chain")
        return self

    # --- derived views ------------------------------------------------------------------

    @property
    def sender(self) -> str:
        """The sending region (or role) code, from ``source``."""
        match = SOURCE.match(self.source)
        assert match is not None  # guaranteed by the pattern
        return match[1]

    @property
    def agency(self) -> str:
        match = SOURCE.match(self.source)
        assert match is not None
        return match[2]

    @property
    def family(self) -> str:
        return type_parts(self.type)[0]

    @property
    def event(self) -> str:
        return type_parts(self.type)[1]

    @property
    def event_type(self) -> str:
        """``<family>.<event>``."""
        return type_parts(self.type)[2]

    @property
    def version(self) -> int:
        return type_parts(self.type)[3]

    @property
    def handling_codes(self) -> tuple[HandlingCode, ...]:
        return handling_codes(self.handling)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the wire form, absent attributes omitted."""
        return self.model_dump(mode="json", exclude_none=True)


@lru_cache(maxsize=1024)
def type_parts(ce_type: str) -> tuple[str, str, str, int]:
    """(family, event, ``family.event``, version) of a valid envelope's CloudEvents ``type``
    (``cn.jjj.xregion.<family>.<event>.v<n>``); remembered, as a replay asks for every event."""
    parts = ce_type.split(".")
    return parts[3], parts[4], f"{parts[3]}.{parts[4]}", int(ce_type.rsplit(".v", 1)[1])


@lru_cache(maxsize=64)
def handling_codes(handling: str) -> tuple[HandlingCode, ...]:
    """The handling codes of a valid envelope's comma-separated ``handling``."""
    return tuple(HandlingCode(c) for c in handling.split(","))


def source_uri(region: str, agency: str) -> str:
    return f"urn:xregion:{region}:{agency}"
