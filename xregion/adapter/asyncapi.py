"""The bus's AsyncAPI 3.0 document, generated from the adapter's FastStream broker.

Every adapter's broker declares one channel per event type of the catalog
(``xregion.v1.<family>.<event>.{sender}.{addressee}``), whose message is the CloudEvents
envelope with ``data`` typed by that event's payload model. ``xregion schemas export``
writes the document to ``schemas/asyncapi.json``; ``xregion schemas check`` fails on drift.
"""

from __future__ import annotations

import json
from typing import Any

from faststream.nats import NatsBroker
from faststream.specification import AsyncAPI
from pydantic import create_model

import xregion
from xregion.contracts.catalog import CATALOG, Catalog, EventType
from xregion.envelope import Envelope
from xregion.runtime.settings import RuntimeSettings

ASYNCAPI_FILE = "asyncapi.json"

DESCRIPTION = (
    "京津冀 cross-region IP-enforcement case-referral bus. Every message is a CloudEvents 1.0 "
    "event in structured JSON mode (application/cloudevents+json), signed with Ed25519 over its "
    "RFC 8785 canonical form (docs/signing-recipe.md), published to JetStream stream XREGION "
    "with header Nats-Msg-Id = event id. Each region's adapter publishes with its own code as "
    "{sender} and reads, through its durable consumer region-<code>, what is addressed to it or "
    "to ALL. Rejected messages go to xregion.dlq.<region>.<reason> in stream XREGION_DLQ."
)


def envelope_model(event_type: EventType) -> type[Envelope]:
    """The envelope of ``event_type`` with ``data`` typed, for documentation."""
    name = "".join(p.title() for p in f"{event_type.family}_{event_type.event}".split("_"))
    summary = (event_type.model.__doc__ or event_type.name).strip().splitlines()[0]
    model: type[Envelope] = create_model(
        f"{name}EventV{event_type.version}",
        __base__=Envelope,
        __doc__=f"{event_type.ce_type}: {summary}",
        data=(event_type.model, ...),
    )
    return model


def declare_channels(broker: NatsBroker, catalog: Catalog = CATALOG, settings: RuntimeSettings | None = None) -> None:
    """Declare a publisher (an AsyncAPI channel) for every event type on ``broker``."""
    stream = (settings or RuntimeSettings()).stream
    for event_type in sorted(catalog, key=lambda t: (t.version, t.name)):
        broker.publisher(
            f"xregion.{event_type.subject_version}.{event_type.family}.{event_type.event}.{{sender}}.{{addressee}}",
            title=f"{event_type.subject_version}.{event_type.name}",
            description=f"CloudEvents type {event_type.ce_type}; data schema {event_type.dataschema} "
            f"(schemas/v{event_type.version}/data/{event_type.name}.json). Stream {stream}.",
            schema=envelope_model(event_type),
            include_in_schema=True,
        )


def document(catalog: Catalog = CATALOG, server: str = "nats://127.0.0.1:4222") -> dict[str, Any]:
    """The AsyncAPI document as JSON-able data (deterministic)."""
    broker = NatsBroker(server)
    declare_channels(broker, catalog)
    spec = AsyncAPI(
        broker,
        title="xregion",
        version=f"v1 (xregion {xregion.__version__})",
        description=DESCRIPTION,
        schema_version="3.0.0",
    )
    doc: dict[str, Any] = json.loads(json.dumps(spec.to_specification().to_jsonable(), sort_keys=True))
    return doc


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
