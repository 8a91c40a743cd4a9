"""The catalog of event types: (family, event, major version) → payload model.

The wire names derived here are the v1 contract:

* CloudEvents ``type``: ``cn.jjj.xregion.<family>.<event>.v<N>``
* ``dataschema``: ``urn:xregion:schema:v<N>:<family>.<event>``, whose JSON Schema is
  committed as ``schemas/v<N>/data/<family>.<event>.json``
* NATS subject family and event tokens (:mod:`xregion.subjects`)

A breaking change to an event registers a ``v2`` type next to the ``v1`` one, with an
upcaster that turns v1 data into v2 data for handlers written against v2.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from xregion.contracts import assist, escalation, lead, recognition, share
from xregion.contracts.common import Contract
from xregion.errors import UnknownEventType, UnsupportedVersion

TYPE_PREFIX = "cn.jjj.xregion."
CE_TYPE = re.compile(r"^cn\.jjj\.xregion\.([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)\.v([1-9][0-9]*)$")

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class EventType:
    family: str
    event: str
    model: type[Contract]
    version: int = 1

    @property
    def name(self) -> str:
        """``<family>.<event>``: the key of lifecycles, deadlines and schema files."""
        return f"{self.family}.{self.event}"

    @property
    def ce_type(self) -> str:
        return f"{TYPE_PREFIX}{self.family}.{self.event}.v{self.version}"

    @property
    def subject_version(self) -> str:
        return f"v{self.version}"

    @property
    def dataschema(self) -> str:
        return f"urn:xregion:schema:v{self.version}:{self.name}"


class Catalog:
    """Event types by CloudEvents type; extensible (tests register v2 fixtures)."""

    def __init__(self) -> None:
        self._types: dict[str, EventType] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(self, event_type: EventType) -> EventType:
        if event_type.ce_type in self._types:
            raise ValueError(f"{event_type.ce_type} is registered already")
        self._types[event_type.ce_type] = event_type
        return event_type

    def register_upcaster(self, name: str, from_version: int, upcast: Upcaster) -> None:
        """``upcast`` turns data of ``name`` version ``from_version`` into the next version."""
        self._upcasters[(name, from_version)] = upcast

    def __iter__(self) -> Iterator[EventType]:
        return iter(self._types.values())

    def versions(self, version: int) -> list[EventType]:
        return [t for t in self._types.values() if t.version == version]

    def get(self, family: str, event: str, version: int = 1) -> EventType:
        return self.by_ce_type(f"{TYPE_PREFIX}{family}.{event}.v{version}")

    def by_ce_type(self, ce_type: str) -> EventType:
        found = self._types.get(ce_type)
        if found is not None:
            return found
        match = CE_TYPE.match(ce_type) if isinstance(ce_type, str) else None
        if match and any(t.name == f"{match[1]}.{match[2]}" for t in self._types.values()):
            raise UnsupportedVersion(
                f"event type {ce_type!r}: version v{match[3]} of {match[1]}.{match[2]} is not "
                "supported by this adapter",
                type=ce_type,
            )
        raise UnknownEventType(f"unknown event type {ce_type!r}", type=ce_type)

    def upcast(self, event_type: EventType, data: dict[str, Any], to_version: int) -> dict[str, Any]:
        """Data of ``event_type`` lifted step by step to ``to_version``."""
        version = event_type.version
        while version < to_version:
            step = self._upcasters.get((event_type.name, version))
            if step is None:
                raise UnsupportedVersion(
                    f"no upcaster for {event_type.name} v{version} → v{version + 1}",
                    type=event_type.ce_type,
                )
            data = step(data)
            version += 1
        return data


FAMILIES: dict[str, dict[str, type[Contract]]] = {
    "lead": lead.EVENTS,
    "assist": assist.EVENTS,
    "recognition": recognition.EVENTS,
    "share": share.EVENTS,
    "escalation": escalation.EVENTS,
}


def v1_catalog() -> Catalog:
    """A fresh catalog holding every v1 event of the four families."""
    catalog = Catalog()
    for family, events in FAMILIES.items():
        for event, model in events.items():
            catalog.register(EventType(family, event, model))
    return catalog


CATALOG = v1_catalog()
"""The catalog of this release."""
