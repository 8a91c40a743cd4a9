"""``xregion bench --json`` at a tiny size: the report's structure, and every ratio positive.

No timing assertions: the numbers depend on the machine; only their shape is pinned here.
"""

from __future__ import annotations

import json

from typer.testing import CliRunner

from xregion.cli import app

RATES = {"raw_publish_async", "raw_atomic_batch", "raw_fetch_ack", "raw_pipeline", "outbound", "end_to_end"}
VERIFY = "ed25519_verify_1core"
ROW_KEYS = {"measurement", "value", "unit", "baseline", "baseline_value", "ratio", "goal", "met"}


def test_bench_json_tiny() -> None:
    result = CliRunner().invoke(
        app, ["bench", "--events", "200", "--replay-events", "500", "--latency-events", "100", "--json"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert {"machine", "server", "measurements", "latency", "replay", "comparisons"} <= doc.keys()
    assert {"cpus", "python", "nats_server", "date"} <= doc["machine"].keys()
    assert "sync_interval: always" in doc["server"]
    assert set(doc["measurements"]) == RATES | {VERIFY}
    for name, rate in doc["measurements"].items():
        assert rate["events"] == 200 or name == VERIFY, name
        assert rate["events_per_s"] > 0, name
    latency = doc["latency"]
    assert latency["events"] == 100 and latency["offered_per_s"] == 500
    assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    (replay,) = doc["replay"]
    assert replay["events"] == 500 and replay["anomalies"] == 0
    assert replay["audit_replay"]["events"] == replay["raw_ordered_read"]["events"] == 500
    assert isinstance(replay["memory_flat"], bool)
    fold = replay["coordinator_fold"]
    assert fold["events"] == 500 and fold["anomalies"] == 0
    every = replay["audit_replay_every_signature"]
    assert every["events"] == 500 and every["anomalies"] == 0
    assert 0 < replay["audit_replay"]["signatures_checked"] < 10  # heads, not every event
    rows = doc["comparisons"]
    assert len(rows) == 12
    for row in rows:
        assert row.keys() >= ROW_KEYS, row
        assert isinstance(row["ratio"], int | float) and row["ratio"] > 0, row
        assert row["value"] > 0 and row["baseline_value"] > 0, row
    goals = [row for row in rows if row["goal"]]
    assert len(goals) == 6
    assert all(isinstance(row["met"], bool) for row in goals)
    assert "profile" not in doc


def test_bench_profile_json_tiny() -> None:
    """``--profile``: each path's CPU per event by stage, per process (no figure pinned)."""
    result = CliRunner().invoke(
        app, ["bench", "--events", "100", "--replay-events", "300", "--latency-events", "20", "--profile", "--json"]
    )
    assert result.exit_code == 0, result.output
    profile = json.loads(result.stdout)["profile"]
    assert set(profile) == {"outbound", "end_to_end", "audit_replay_300"}
    assert set(profile["outbound"]["processes"]) == {"BJ (sender)"}
    assert set(profile["end_to_end"]["processes"]) == {"BJ (sender)", "TJ (addressee)"}
    for path in ("outbound", "end_to_end"):
        for process in profile[path]["processes"].values():
            stages = {s["stage"]: s for s in process["stages"]}
            assert "seal personal data" in stages or "open personal data" in stages, stages
            assert process["cpu_us_per_event"] > 0
            assert abs(sum(s["share"] for s in process["stages"]) - 1.0) < 0.01
    assert "auditor (main process)" in profile["audit_replay_300"]
