"""The committed AsyncAPI document against what the bus really carries (issue 15 item 4).

Real adapters on a real nats-server exchange a lead, its receipt and acceptance, a broadcast
with its acknowledgements, and twenty leads at once (the relay publishes those in atomic
batches); then every message of the event stream is read back and checked against
``schemas/asyncapi.json`` alone, as a team implementing from the document would:

* its subject is the address of exactly one channel, with ``{sender}`` and ``{addressee}``
  among the values that channel declares for them, and ``addressee`` where its ``location`` says;
* its NATS headers are declared by the message's ``headers`` schema and valid against it
  (``Nats-Msg-Id`` = the event id);
* its payload is valid against the message's payload schema, and the message's
  ``correlationId`` location resolves, in the payload, to the envelope's ``correlationid``.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.bus import Bus
from tests.integration.helpers import quiesce
from xregion.adapter import asyncapi
from xregion.examples import PAYLOADS

pytestmark = pytest.mark.anyio

DOCUMENT = Path(__file__).resolve().parents[2] / "schemas" / asyncapi.ASYNCAPI_FILE
BASE = "urn:xregion:asyncapi"


def load() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    return doc


def validator(doc: dict[str, Any], ref: str) -> Draft202012Validator:
    """A validator of the schema at local reference ``ref`` of ``doc`` (its refs resolved in it)."""
    registry: Registry[Any] = Registry().with_resource(BASE, Resource.from_contents(doc, DRAFT202012))
    return Draft202012Validator({"$ref": f"{BASE}{ref}"}, registry=registry)


def pointer(doc: Any, ref: str) -> Any:
    node = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def payload_value(expression: str, payload: dict[str, Any]) -> Any:
    """The value a ``$message.payload#/...`` runtime expression names."""
    assert expression.startswith("$message.payload#/"), expression
    node: Any = payload
    for part in expression.removeprefix("$message.payload#/").split("/"):
        node = node[part]
    return node


def channel_for(doc: dict[str, Any], subject: str) -> tuple[str, dict[str, Any], dict[str, str]]:
    """The one channel whose address matches ``subject``, and the parameters' values."""
    found = []
    for key, channel in doc["channels"].items():
        names = re.findall(r"\{([a-z]+)\}", channel["address"])
        pattern = re.escape(channel["address"])
        for name in names:
            pattern = pattern.replace(re.escape(f"{{{name}}}"), f"(?P<{name}>[^.]+)")
        match = re.fullmatch(pattern, subject)
        if match:
            found.append((key, channel, match.groupdict()))
    assert len(found) == 1, f"{subject}: {len(found)} channels"
    return found[0]


async def test_every_message_on_the_stream_is_what_the_document_says(bus: Bus) -> None:
    bj, tj, he = await bus.start("BJ", "TJ", "HE")
    lead = await bj.client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    await quiesce(bus)
    await tj.client.send(lead.envelope.subject, "lead.accepted", PAYLOADS["lead.accepted"])
    await he.client.open("share.bulletin", to="ALL", data=PAYLOADS["share.bulletin"])
    # Twenty at once: the relay publishes most of them in an atomic batch (Nats-Batch-* headers).
    await asyncio.gather(
        *(bj.client.open("lead.submitted", to="HE", data=PAYLOADS["lead.submitted"]) for _ in range(20))
    )
    await quiesce(bus)

    doc = load()
    nc = await bus.raw()
    try:
        js = nc.jetstream()
        info = await js.stream_info(bus.settings.stream)
        messages = [await js.get_msg(bus.settings.stream, seq) for seq in range(1, info.state.last_seq + 1)]
    finally:
        await nc.close()
    seen: set[str] = set()
    for msg in messages:
        event = json.loads(msg.data)
        key, channel, values = channel_for(doc, msg.subject)
        seen.add(key)
        # parameters: declared, every value among the declared ones, addressee where it says
        assert set(values) == set(channel["parameters"]), key
        for name, value in values.items():
            assert value in channel["parameters"][name]["enum"], (key, name, value)
        addressee = channel["parameters"]["addressee"]
        assert payload_value(addressee["location"], event) == values["addressee"]
        assert event["source"].split(":")[2] == values["sender"]

        [ref] = [m["$ref"] for m in channel["messages"].values()]
        message = pointer(doc, pointer(doc, ref)["$ref"]) if "$ref" in pointer(doc, ref) else pointer(doc, ref)
        assert message["contentType"] == "application/cloudevents+json"
        # headers: each one the bus sent is declared, and they are valid
        headers = dict(msg.headers or {})
        declared = pointer(doc, message["headers"]["$ref"])
        assert set(headers) <= set(declared["properties"]), set(headers) - set(declared["properties"])
        errors = list(validator(doc, message["headers"]["$ref"]).iter_errors(headers))
        assert errors == [], (key, headers, errors[:3])
        assert headers["Nats-Msg-Id"] == event["id"]
        # payload and correlation id
        errors = list(validator(doc, message["payload"]["$ref"]).iter_errors(event))
        assert errors == [], (key, [e.message for e in errors[:3]])
        assert payload_value(message["correlationId"]["location"], event) == event["correlationid"]
    assert {"v1.lead.submitted", "v1.lead.received", "v1.lead.accepted", "v1.share.bulletin"} <= seen
    assert "v1.share.acknowledged" in seen or "v1.share.received" in seen
