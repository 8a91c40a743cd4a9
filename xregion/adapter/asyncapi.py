"""The bus's AsyncAPI 3.0 document, generated from the adapter's FastStream broker.

Every adapter's broker declares one channel per event type of the catalog
(``xregion.v1.<family>.<event>.{sender}.{addressee}``), whose message is the CloudEvents
envelope with ``data`` typed by that event's payload model. :func:`document` then states what
FastStream does not know and the bus does (:func:`complete`):

* the channel parameters ``sender`` and ``addressee``, with the values each event type may
  take (the configured regions, ``COORD`` for escalations, ``ALL`` for broadcasts) — from the
  lifecycles, the same rules the adapters enforce;
* the NATS headers the relay sends with every event (``Nats-Msg-Id`` = the event id, always;
  ``Nats-Expected-Stream``; ``Nats-Expected-Last-Subject-Sequence`` over the sender's subjects;
  the ``Nats-Batch-*`` headers of an atomic batch);
* the correlation id where it really is: the envelope's ``correlationid`` member of the
  payload (no header carries it);
* the content type, ``application/cloudevents+json`` (structured mode).

``xregion schemas export`` writes the document to ``schemas/asyncapi.json``; ``xregion
schemas check`` fails on drift.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from typing import Any

from faststream.nats import NatsBroker
from faststream.specification import AsyncAPI
from pydantic import create_model

import xregion
from xregion.config import load_config
from xregion.contracts.catalog import CATALOG, Catalog, EventType
from xregion.envelope import Envelope
from xregion.ids import EVENT_ID
from xregion.lifecycle import LIFECYCLES
from xregion.lifecycle.machine import Role
from xregion.regions import BROADCAST, COORDINATOR, PARTY_CODE
from xregion.runtime.settings import RuntimeSettings

ASYNCAPI_FILE = "asyncapi.json"
CONTENT_TYPE = "application/cloudevents+json"
HEADERS_SCHEMA = "NatsEventHeaders"
"""Name, in ``components/schemas``, of the schema of the NATS headers of every event."""

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


def packaged_regions() -> tuple[str, ...]:
    """The region codes of the packaged configuration (``xregion/config/bus.toml``), never of
    ``$XREGION_CONFIG``: the committed document must not depend on who generates it."""
    with resources.as_file(resources.files("xregion").joinpath("config/bus.toml")) as path:
        return load_config(path).regions.codes


def parties(event_type: EventType, regions: Sequence[str]) -> tuple[list[str], list[str]]:
    """Who may send ``event_type`` and to whom: the ``sender`` and ``addressee`` values.

    From the family's lifecycle, as the adapters check it: escalations come from ``COORD``,
    everything else from a region; the origin of a broadcast family addresses ``ALL`` (only
    ``ALL`` where broadcasting is required), its addressees answer the origin region.
    """
    lifecycle = LIFECYCLES[event_type.family]
    senders = [COORDINATOR] if lifecycle.senders == "coordinator" else list(regions)
    roles = {tr.by for tr in lifecycle.transitions if tr.event == event_type.event}
    if event_type.event in lifecycle.openings:
        roles.add(Role.ORIGIN)
    to: set[str] = set()
    for role in roles:
        if role is Role.ORIGIN and lifecycle.broadcast == "required":
            to.add(BROADCAST)
        elif role is Role.ORIGIN and lifecycle.broadcast == "allowed":
            to |= {*regions, BROADCAST}
        else:
            to |= set(regions)
    addressees = [r for r in (*regions, BROADCAST) if r in to]
    if not addressees:
        raise ValueError(f"{event_type.name}: no lifecycle rule says who sends it to whom")
    return senders, addressees


def _addressed_to(addressees: Sequence[str]) -> str:
    if list(addressees) == [BROADCAST]:
        return f"always {BROADCAST}, a broadcast to every other region"
    if BROADCAST in addressees:
        return f"a configured region, or {BROADCAST} for a broadcast"
    return f"a configured region (never {BROADCAST})"


def headers_schema(stream: str) -> dict[str, Any]:
    """The NATS headers the relay (:mod:`xregion.runtime.relay`) sends with every event."""
    return {
        "title": "NATS headers of an event",
        "description": "Headers of the NATS message carrying an event. Only Nats-Msg-Id is required of "
        "every producer; a receiver relies on nothing else (the event itself is the signed payload).",
        "type": "object",
        "required": ["Nats-Msg-Id"],
        "properties": {
            "Nats-Msg-Id": {
                "type": "string",
                "pattern": EVENT_ID.pattern,
                "description": "The event's id (the envelope's id, a UUIDv7): JetStream stores a message "
                "with an id it has seen within the stream's duplicate window once, so a retried publish is "
                "never a second event.",
            },
            "Nats-Expected-Stream": {
                "type": "string",
                "description": "The stream the publisher expects to store the event (XREGION_STREAM): the "
                "server refuses the message if its subject belongs to another stream. Sent by the xregion "
                "relay with every event.",
                "examples": [stream],
            },
            "Nats-Expected-Last-Subject-Sequence": {
                "type": "string",
                "pattern": "^[0-9]+$",
                "description": "The stream sequence of the sender's previous event in the stream (0: none), "
                "with Nats-Expected-Last-Subject-Sequence-Subject: the server stores nothing of an origin "
                "after a gap. Sent by the xregion relay with a single event and a batch's first.",
            },
            "Nats-Expected-Last-Subject-Sequence-Subject": {
                "type": "string",
                "pattern": "^xregion\\.\\*\\.\\*\\.\\*\\.[A-Z][A-Z0-9_]*\\.\\*$",
                "description": "Every subject of the sender (xregion.*.*.*.<FROM>.*): the subjects "
                "Nats-Expected-Last-Subject-Sequence is about.",
                "examples": ["xregion.*.*.*.BJ.*"],
            },
            "Nats-Batch-Id": {
                "type": "string",
                "description": "Only on events published in a JetStream atomic batch (ADR-50): the batch's "
                "id, the same on each of its events; the server stores the whole batch, in order, or none of it.",
            },
            "Nats-Batch-Sequence": {
                "type": "string",
                "pattern": "^[1-9][0-9]*$",
                "description": "Only in an atomic batch: the event's position in it, from 1.",
            },
            "Nats-Batch-Commit": {
                "type": "string",
                "const": "1",
                "description": "Only on the last event of an atomic batch: commits the batch.",
            },
        },
    }


def complete(
    doc: dict[str, Any], catalog: Catalog, regions: Sequence[str], settings: RuntimeSettings | None = None
) -> dict[str, Any]:
    """``doc`` (FastStream's) with channel parameters, message headers, the correlation id's
    real location and the content type."""
    stream = (settings or RuntimeSettings()).stream
    by_title = {f"{t.subject_version}.{t.name}": t for t in catalog}
    grammar = f"Grammar: {PARTY_CODE.pattern}."
    for key, channel in doc["channels"].items():
        senders, addressees = parties(by_title[key], regions)
        channel["parameters"] = {
            "sender": {
                "description": "Code of the sending party: "
                + (
                    f"the coordinator, {COORDINATOR} (only it sends escalations)"
                    if senders == [COORDINATOR]
                    else "a configured region, one of the packaged configuration (xregion/config/bus.toml); "
                    "a deployment's configuration may name others"
                )
                + ". It is the party named in the envelope's source (urn:xregion:<sender>:<agency>); the NATS "
                f"server lets each party publish only with its own code here. {grammar}",
                "enum": senders,
            },
            "addressee": {
                "description": f"The envelope's addressee: {_addressed_to(addressees)}. Region codes are those "
                f"of the packaged configuration, as for sender. {grammar}",
                "enum": addressees,
                "location": "$message.payload#/addressee",
            },
        }
    doc["components"]["schemas"][HEADERS_SCHEMA] = headers_schema(stream)
    for message in doc["components"]["messages"].values():
        message["contentType"] = CONTENT_TYPE
        message["headers"] = {"$ref": f"#/components/schemas/{HEADERS_SCHEMA}"}
        message["correlationId"] = {
            "description": "The envelope's correlationid: the referral family the event belongs to (the "
            "first referral of a chain of forwarded leads, or the operation of linked assistance requests).",
            "location": "$message.payload#/correlationid",
        }
    return doc


def document(
    catalog: Catalog = CATALOG, server: str = "nats://127.0.0.1:4222", regions: Sequence[str] | None = None
) -> dict[str, Any]:
    """The AsyncAPI document as JSON-able data (deterministic); ``regions`` default to the
    packaged configuration's."""
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
    return complete(doc, catalog, packaged_regions() if regions is None else regions)


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
