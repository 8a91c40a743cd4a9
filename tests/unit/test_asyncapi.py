"""The committed AsyncAPI document (``schemas/asyncapi.json``) describes the whole v1 bus.

Expectations are derived from the event catalog (``xregion.contracts.catalog.CATALOG``) and
the committed JSON Schemas (``schemas/v1/``), never from a hand-written list:

* the document is AsyncAPI 3 (version field, info, servers, channels, operations, components);
* one channel per event type, whose address is that event's subject pattern
  ``xregion.v<N>.<family>.<event>.{sender}.{addressee}`` (a concrete instance of which the
  subject grammar accepts), with one message and one ``send`` operation;
* each message's payload is the CloudEvents envelope of ``schemas/v1/envelope.json`` whose
  ``data`` is, once references are resolved, the schema of ``schemas/v1/data/<event>.json``;
  the catalog's example payload validates against it;
* every channel declares its ``{sender}`` and ``{addressee}`` parameters, with exactly the
  values the lifecycles allow (``COORD`` for escalations, ``ALL`` only for broadcasts); every
  message declares the NATS headers the relay sends, its content type, and a correlation id
  that points into the payload, where the id is (issue 15 item 4; the wire itself is checked
  in ``tests/integration/test_asyncapi_wire.py``, the document against the AsyncAPI
  specification schema in ``test_contract_ajv.py``);
* the committed document is what the FastStream application generates today (no drift).
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from xregion.adapter import asyncapi
from xregion.contracts.catalog import CATALOG, EventType
from xregion.examples import PAYLOADS
from xregion.ids import new_event_id
from xregion.lifecycle import LIFECYCLES
from xregion.regions import BROADCAST, COORDINATOR, PARTY_CODE
from xregion.runtime.relay import Relay
from xregion.subjects import parse as parse_subject

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
V1 = SCHEMAS / "v1"
EVENT_TYPES = sorted(CATALOG.versions(1), key=lambda t: t.name)
DOC_ONLY = {"title", "description", "examples", "$schema", "$id"}
"""Top-level annotations in which the two documents may differ (names, prose, examples)."""


@cache
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / asyncapi.ASYNCAPI_FILE).read_text(encoding="utf-8"))
    return loaded


def resolve(node: Any, root: dict[str, Any], depth: int = 0) -> Any:
    """``node`` with every local ``$ref`` (``#/...``) inlined from ``root``; ``$defs`` dropped."""
    assert depth < 64, "reference cycle"
    if isinstance(node, list):
        return [resolve(item, root, depth + 1) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        ref = node["$ref"]
        assert isinstance(ref, str) and ref.startswith("#/"), f"not a local reference: {ref!r}"
        target: Any = root
        for part in ref[2:].split("/"):
            assert part in target, f"dangling reference {ref}"
            target = target[part]
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        return resolve({**target, **siblings}, root, depth + 1)
    return {k: resolve(v, root, depth + 1) for k, v in node.items() if k != "$defs"}


def without_annotations(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k not in DOC_ONLY}


def pattern_of(event_type: EventType) -> str:
    return f"xregion.{event_type.subject_version}.{event_type.family}.{event_type.event}.{{sender}}.{{addressee}}"


def channel_of(event_type: EventType) -> tuple[str, dict[str, Any]]:
    found = [(k, c) for k, c in document()["channels"].items() if c.get("address") == pattern_of(event_type)]
    assert len(found) == 1, f"{len(found)} channels with address {pattern_of(event_type)}"
    return found[0]


def message_of(event_type: EventType) -> dict[str, Any]:
    _, channel = channel_of(event_type)
    messages = list(channel["messages"].values())
    assert len(messages) == 1, f"{event_type.name}: {len(messages)} messages"
    message: dict[str, Any] = resolve(messages[0], document())
    return message


def committed(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


# --- the document as a whole --------------------------------------------------------------------


def test_is_an_asyncapi_3_document() -> None:
    doc = document()
    assert re.fullmatch(r"3\.\d+\.\d+", doc["asyncapi"])
    assert doc["info"]["title"] == "xregion"
    assert doc["info"]["version"] and doc["info"]["description"]
    assert doc["defaultContentType"]
    assert doc["servers"] and all(s.get("protocol") == "nats" and s.get("host") for s in doc["servers"].values())
    for section in ("channels", "operations"):
        assert isinstance(doc[section], dict) and doc[section], section
    assert set(doc["components"]) >= {"messages", "schemas"}
    resolve(doc, doc)  # every reference in the document resolves


def test_one_channel_per_event_type_and_nothing_else() -> None:
    addresses = sorted(c["address"] for c in document()["channels"].values())
    assert addresses == sorted(pattern_of(t) for t in CATALOG)
    messages = document()["components"]["messages"]
    assert len(messages) == len(list(CATALOG))


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.name)
def test_channel_is_the_event_subject_pattern(event_type: EventType) -> None:
    key, channel = channel_of(event_type)
    assert channel["bindings"]["nats"]["subject"] == channel["address"]
    assert event_type.ce_type in channel["description"]
    assert event_type.dataschema in channel["description"]
    # the pattern, filled in, is a subject the bus accepts and means this event
    subject = parse_subject(channel["address"].format(sender="BJ", addressee="TJ"))
    assert (subject.version, subject.event_type, subject.sender, subject.to) == ("v1", event_type.name, "BJ", "TJ")
    # and the application sends on it
    operations = [op for op in document()["operations"].values() if op["channel"] == {"$ref": f"#/channels/{key}"}]
    assert [op["action"] for op in operations] == ["send"]


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.name)
def test_message_payload_is_the_committed_json_schema(event_type: EventType) -> None:
    payload = message_of(event_type)["payload"]
    data_file = V1 / "data" / f"{event_type.name}.json"
    data_schema = committed(data_file)
    assert data_schema["$id"] == event_type.dataschema
    # data: the committed schema of this event, references resolved on both sides
    assert without_annotations(payload["properties"]["data"]) == without_annotations(resolve(data_schema, data_schema))
    # the rest: the committed envelope schema
    envelope = resolve(committed(V1 / "envelope.json"), committed(V1 / "envelope.json"))
    assert set(payload["properties"]) == set(envelope["properties"])
    assert payload["required"] == envelope["required"]
    for name, schema in envelope["properties"].items():
        if name != "data":
            assert payload["properties"][name] == schema, name
    # the catalog's example validates against what AsyncAPI documents
    validator = Draft202012Validator(payload["properties"]["data"])
    assert list(validator.iter_errors(PAYLOADS[event_type.name])) == []
    required = payload["properties"]["data"].get("required", [])
    if required:  # and an example missing a required field does not
        broken = {k: v for k, v in PAYLOADS[event_type.name].items() if k != required[0]}
        assert not validator.is_valid(broken)


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.name)
def test_channel_declares_its_parameters_with_the_values_the_lifecycle_allows(event_type: EventType) -> None:
    _, channel = channel_of(event_type)
    parameters = channel["parameters"]
    assert set(re.findall(r"\{([a-z]+)\}", channel["address"])) == set(parameters) == {"sender", "addressee"}
    senders, addressees = parameters["sender"]["enum"], parameters["addressee"]["enum"]
    assert all(PARTY_CODE.fullmatch(code) for code in [*senders, *addressees])
    assert all(p["description"] for p in parameters.values())
    lifecycle = LIFECYCLES[event_type.family]
    regions = asyncapi.packaged_regions()
    assert senders == ([COORDINATOR] if lifecycle.senders == "coordinator" else list(regions))
    assert set(addressees) <= {*regions, BROADCAST}
    assert (BROADCAST in addressees) == (
        lifecycle.broadcast != "never" and lifecycle.role_of(event_type.event).value == "origin"
    )
    if lifecycle.broadcast == "required" and event_type.event in lifecycle.openings:
        assert addressees == [BROADCAST]
    for sender in senders:  # every pair the document allows is one the adapters accept
        for to in addressees:
            if to != sender:
                LIFECYCLES.check_role(event_type.name, sender, to)
                parse_subject(channel["address"].format(sender=sender, addressee=to))
    # the addressee is the envelope's addressee member
    assert parameters["addressee"]["location"] == "$message.payload#/addressee"
    assert "addressee" in message_of(event_type)["payload"]["properties"]


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.name)
def test_message_declares_headers_content_type_and_where_the_correlation_id_is(event_type: EventType) -> None:
    message = message_of(event_type)
    assert message["contentType"] == "application/cloudevents+json"
    assert message["correlationId"]["location"] == "$message.payload#/correlationid"
    assert "correlationid" in message["payload"]["required"]
    headers = message["headers"]
    assert headers["type"] == "object" and headers["required"] == ["Nats-Msg-Id"]
    validator = Draft202012Validator(headers)
    assert validator.is_valid({"Nats-Msg-Id": new_event_id()})
    assert not validator.is_valid({"Nats-Msg-Id": "not-an-event-id"})
    assert not validator.is_valid({})


def test_every_header_the_relay_sends_is_declared() -> None:
    """The relay's own header builder (atomic batches) and its single publishes."""

    class Row:
        event_id = new_event_id()

    class RelayLike:
        stream = "XREGION"

    batch = Relay._headers(RelayLike(), Row(), "b" * 32, 1)  # type: ignore[arg-type]
    sent = {**batch, "Nats-Batch-Commit": "1"}  # added to the batch's last event
    single = {"Nats-Msg-Id": Row.event_id, "Nats-Expected-Stream": "XREGION"}  # js.publish(stream=...)
    headers = message_of(EVENT_TYPES[0])["headers"]
    for found in (sent, single):
        assert set(found) <= set(headers["properties"])
        assert list(Draft202012Validator(headers).iter_errors(found)) == []


def test_no_reference_to_a_header_the_bus_never_sends() -> None:
    assert "$message.header" not in json.dumps(document())


def test_index_of_the_committed_schemas_lists_the_same_event_types() -> None:
    index = committed(V1 / "index.json")
    assert sorted(e["name"] for e in index["events"]) == [t.name for t in EVENT_TYPES]
    assert all((V1 / e["file"]).is_file() for e in index["events"])


def test_committed_document_has_not_drifted_from_the_application() -> None:
    generated = asyncapi.render(asyncapi.document(CATALOG))
    text = (SCHEMAS / asyncapi.ASYNCAPI_FILE).read_text(encoding="utf-8")
    assert text == generated, "schemas/asyncapi.json is stale: run `xregion schemas export`"
