"""The projection's wait log: every start, pause, restart and end of a deadline clock, kept
after the wait is gone (what the assessment reads), on the fixed scenario's signed events."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime
from pathlib import Path
from typing import Any

from tests.assessment_scenario import build
from tests.support import dev_roster, dev_signers
from xregion.coordinator import waitlog
from xregion.coordinator.projection import Projection
from xregion.envelope import Envelope

ROSTER = dev_roster(dev_signers(("BJ", "TJ", "HE", "COORD")))


def verify(wire: dict[str, Any], envelope: Envelope, stored_at: datetime) -> None:
    ROSTER.verify(wire, envelope.sender, envelope.time, received_at=stored_at)


def test_a_tolled_wait_is_logged_from_start_to_answer(tmp_path: Path) -> None:
    scenario = build()
    r3 = scenario.ids["R3"]
    with Projection(tmp_path / "coord.db", verify=verify) as projection:
        projection.apply_many(scenario.messages)
        log = [c for c in waitlog.changes(projection.db) if c.referral_id == r3]
    tj = [(c.event_type, c.due, c.paused_since, c.tolled_days, c.settled) for c in log if c.party == "TJ"]
    assert tj == [
        ("lead.submitted", date(2026, 10, 12), None, 0, False),
        ("lead.info_requested", date(2026, 10, 12), date(2026, 9, 23), 0, False),
        # Paused (23 Sep, 13 Oct]: 24, 28, 29, 30 Sep, 8, 9, 10 (Saturday, worked), 12, 13 Oct.
        ("lead.info_supplied", date(2026, 10, 23), None, 9, False),
        ("lead.accepted", date(2026, 10, 23), None, 9, True),
    ]
    bj = [(c.event_type, c.awaiting, c.due, c.settled) for c in log if c.party == "BJ"]
    assert bj == [
        ("lead.info_requested", "information requested", date(2026, 10, 14), False),
        ("lead.info_supplied", "information requested", date(2026, 10, 14), True),
    ]


def test_rebuilding_writes_the_same_log(tmp_path: Path) -> None:
    scenario = build()
    with Projection(tmp_path / "live.db", verify=verify) as live, Projection(tmp_path / "re.db", verify=verify) as re:
        for message in scenario.messages:
            live.apply(*message)
        re.rebuild(scenario.messages, batch=7)
        assert live.dump() == re.dump()
        assert live.dump()[waitlog.TABLE]


def test_a_store_folded_before_the_log_existed_is_folded_again(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with Projection(path, verify=verify) as projection:
        projection.apply_many(build().messages)
        assert projection.last_seq() > 0
    with sqlite3.connect(path) as db:
        db.execute(f"DROP TABLE {waitlog.TABLE}")
    with Projection(path, verify=verify) as projection:
        assert projection.last_seq() == 0  # the feed folds it again from the stream's start
        assert projection.referrals() == []
