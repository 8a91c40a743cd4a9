"""``xregion status --json`` is a documented interface (README): its keys are pinned here."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from typer.testing import CliRunner

from xregion.cli import app
from xregion.cli.status import status_document
from xregion.coordinator.projection import Projection, ReferralView, TimelineEntry, Wait

REFERRAL_KEYS = {
    "referral_id",
    "family",
    "origin",
    "addressee",
    "state",
    "tracks",
    "opened_at",
    "updated_at",
    "events",
    "answer_by",
    "overdue",
    "late_parties",
    "waits",
    "outstanding_receipts",
    "outstanding_acknowledgements",
    "escalations",
}
WAIT_KEYS = {"party", "awaiting", "since", "due", "paused", "tolled_days", "overdue"}
TIMELINE_KEYS = {
    "stream_seq",
    "event_id",
    "event_type",
    "sender",
    "addressee",
    "time",
    "stored_at",
    "state_after",
    "anomaly",
}
SUMMARY_KEYS = {"at", "last_seq", "total", "overdue", "anomalies", "by_family_state", "by_pair", "overdue_by_party"}


def test_referral_json_keys() -> None:
    at = date(2026, 10, 9)
    wait = Wait("TJ", "answer to lead.submitted", date(2026, 9, 29), date(2026, 10, 8), False, 0, "e")
    entry = TimelineEntry(1, "e", "lead.submitted", "BJ", "TJ", "t", "s", "submitted")
    view = ReferralView(
        "BJ-0190c7a0-0000-7000-8000-000000000000",
        "lead",
        "BJ",
        "TJ",
        "received",
        {},
        "s",
        "s",
        2,
        wait.due,
        (wait,),
        (),
        (),
        ("TJ:overdue",),
        True,
        ("TJ",),
        at,
        (entry,),
    )
    doc = view.to_json()
    assert set(doc) == REFERRAL_KEYS | {"timeline"}
    assert set(doc["waits"][0]) == WAIT_KEYS
    assert doc["waits"][0]["overdue"] is True
    assert set(doc["timeline"][0]) == TIMELINE_KEYS
    assert set(ReferralView(**{**view.__dict__, "timeline": ()}).to_json()) == REFERRAL_KEYS


def test_status_document_and_cli_json(tmp_path: Path) -> None:
    store = tmp_path / "coord.db"
    with Projection(store) as projection:
        doc = status_document(projection, None, at=date(2026, 10, 9))
        assert doc is not None
        assert set(doc) == {"version", "summary", "referrals"}
        assert doc["version"] == 1
        assert set(doc["summary"]) == SUMMARY_KEYS
        assert status_document(projection, "BJ-nope") is None
    result = CliRunner().invoke(app, ["status", "--store", str(store), "--json", "--at", "2026-10-09"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert set(printed) == {"version", "summary", "referrals"}
    assert printed["referrals"] == []
