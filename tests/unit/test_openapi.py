"""The HTTP gateway's OpenAPI document: valid OpenAPI, generated from the contract models,
and committed without drift (``schemas/openapi.json``)."""

from __future__ import annotations

import json
from pathlib import Path

from openapi_spec_validator import validate

from tests.integration.webhook_receiver import webhook_contract
from xregion.contracts.catalog import CATALOG
from xregion.examples import PAYLOADS
from xregion.gateway.app import OPENAPI_FILE, WEBHOOK, openapi_document, render_openapi
from xregion.gateway.models import COORDINATOR_FAMILIES
from xregion.gateway.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from xregion.ids import new_event_id
from xregion.lifecycle import LIFECYCLES

ROOT = Path(__file__).resolve().parents[2]


def test_openapi_document_validates() -> None:
    validate(openapi_document())


def test_committed_openapi_matches_the_gateway() -> None:
    committed = (ROOT / "schemas" / OPENAPI_FILE).read_text(encoding="utf-8")
    assert committed == render_openapi(), "run `xregion schemas export` and commit schemas/openapi.json"


def test_every_event_type_can_be_submitted_with_its_contract_schema() -> None:
    doc = openapi_document()
    paths = doc["paths"]
    assert {
        "/v1/referrals",
        "/v1/referrals/{referral_id}/events",
        "/v1/referrals/{referral_id}",
        "/v1/referrals/{referral_id}/history",
        "/v1/webhooks/dead-letters",
    } <= set(paths)
    text = json.dumps(doc)
    regional = [k for k in CATALOG.versions(1) if k.family not in COORDINATOR_FAMILIES]
    assert {k.family for k in regional} >= {"lead", "assist", "recognition", "share"}
    for kind in regional:
        assert f'"{kind.name}"' in text, kind.name  # a union member per event type, tagged by event_type
    openings = {k.name for k in regional if k.event in LIFECYCLES[k.family].openings}
    body = paths["/v1/referrals"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["discriminator"]["mapping"]) == openings
    problem = doc["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "errors"} <= set(problem["properties"])
    assert "HTTPBearer" in doc["components"]["securitySchemes"]


def test_webhooks_section_describes_the_post_the_adapter_makes() -> None:
    """OpenAPI 3.1 ``webhooks``: one operation, its signed headers and a body with a member per
    v1 event type (every inbound event is delivered, receipts and escalations included).
    The gateway tests validate every real webhook against it (tests/integration/webhook_receiver.py)."""
    doc = json.loads((ROOT / "schemas" / OPENAPI_FILE).read_text(encoding="utf-8"))
    assert doc["openapi"].startswith("3.1") and list(doc["webhooks"]) == [WEBHOOK]
    operation = doc["webhooks"][WEBHOOK]["post"]
    headers = {p["name"]: p for p in operation["parameters"] if p["in"] == "header"}
    assert set(headers) == {EVENT_ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER}
    assert all(p["required"] for p in headers.values())
    for words in ("HMAC-SHA256", "300 seconds", "UTF-8 bytes", "event_id"):
        assert words in operation["description"], words
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["discriminator"]["mapping"]) == {t.name for t in CATALOG.versions(1)}

    contract = webhook_contract()
    stamp = "1795674600"
    event = {
        "event_id": new_event_id(),
        "referral_id": "BJ-01a21164-abe0-7a12-9b34-56789abcdef0",
        "event_type": "lead.submitted",
        "sender": "BJ",
        "to": "TJ",
        "source": "urn:xregion:BJ:amr",
        "time": "2026-11-25T06:30:00.000000Z",
        "handling": "H0",
        "answer_by": "2026-12-05",
        "state_after": "submitted",
        "data": PAYLOADS["lead.submitted"],
    }
    raw = json.dumps(event, ensure_ascii=False).encode()
    good = {EVENT_ID_HEADER: event["event_id"], TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign("s", stamp, raw)}
    assert contract.problems(good, event) == []
    assert contract.problems(good, {**event, "answer_by": None}) == []
    assert contract.problems(good, {k: v for k, v in event.items() if k != "state_after"})
    assert contract.problems(good, {**event, "event_type": "lead.unknown"})
    assert contract.problems(good, {**event, "data": {**event["data"], "title": ""}})
    assert contract.problems({**good, SIGNATURE_HEADER: "md5=00"}, event)
    assert contract.problems({**good, TIMESTAMP_HEADER: "2026-11-25T06:30:00Z"}, event)
    assert contract.problems({k: v for k, v in good.items() if k != EVENT_ID_HEADER}, event)
