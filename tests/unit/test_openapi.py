"""The HTTP gateway's OpenAPI document: valid OpenAPI, generated from the contract models,
and committed without drift (``schemas/openapi.json``)."""

from __future__ import annotations

import json
from pathlib import Path

from openapi_spec_validator import validate

from xregion.contracts.catalog import CATALOG
from xregion.gateway.app import OPENAPI_FILE, openapi_document, render_openapi
from xregion.gateway.models import COORDINATOR_FAMILIES
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
