"""The ``Xregion-Reason`` header stays valid JSON of bounded size, whatever the reason holds."""

from __future__ import annotations

import json

import pytest

from xregion.errors import SchemaInvalid
from xregion.runtime.deadletter import REASON_LIMIT, reason_header


def test_a_short_reason_is_kept_whole() -> None:
    reason = {"code": "bad_signature", "message": "signature does not verify", "details": {"key": "BJ:1"}}
    assert json.loads(reason_header(reason)) == reason


@pytest.mark.parametrize(
    "details",
    [
        {"errors": [{"field": f"data.suspects.{i}.uscc", "error": "bad check digit"} for i in range(2000)]},
        {"text": '"' * 20_000},  # every character escaped: the excerpt grows when encoded
        {"text": "侵权" * 10_000},  # non-ASCII: six characters each once escaped
    ],
)
def test_a_long_reason_is_cut_to_valid_json_within_the_limit(details: dict[str, object]) -> None:
    reason = {"code": "schema_invalid", "message": "商标 " * 5000, "details": details}
    header = reason_header(reason)
    assert len(header) <= REASON_LIMIT
    cut = json.loads(header)
    assert cut["code"] == "schema_invalid" and cut["truncated"] is True
    assert cut["message"] and reason["message"].startswith(cut["message"])
    assert cut["details_excerpt"]
    assert json.dumps({"details": details}, ensure_ascii=True).startswith(cut["details_excerpt"])


def test_a_long_reason_keeps_the_start_of_the_details_an_error_puts_next_to_code_and_message() -> None:
    """``XRegionError.to_reason`` flattens its details into the reason: they are what the
    excerpt keeps (it was cut to ``{}`` when only a ``details`` member counted)."""
    errors = [{"field": f"data.suspects.{i}.uscc", "error": "bad check digit"} for i in range(2000)]
    reason = SchemaInvalid("data of lead.submitted is invalid", errors=errors).to_reason()
    cut = json.loads(reason_header(reason))
    assert cut["truncated"] is True and cut["code"] == "schema_invalid"
    assert cut["details_excerpt"].startswith('{"errors": [{"field": "data.suspects.0.uscc"')
    assert json.dumps({"errors": errors}, ensure_ascii=True).startswith(cut["details_excerpt"])
