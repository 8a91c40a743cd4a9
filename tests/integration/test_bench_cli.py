"""``xregion bench --json`` at a tiny size: the report's structure, and every ratio positive.

No timing assertions: the numbers depend on the machine; only their shape is pinned here.
"""

from __future__ import annotations

import json

from typer.testing import CliRunner

from xregion.cli import app

RATES = {"raw_publish_async", "raw_fetch_ack", "raw_pipeline", "outbound", "end_to_end"}
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
    assert set(doc["measurements"]) == RATES
    for name, rate in doc["measurements"].items():
        assert rate["events"] == 200, name
        assert rate["events_per_s"] > 0, name
    latency = doc["latency"]
    assert latency["events"] == 100 and latency["offered_per_s"] == 500
    assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    (replay,) = doc["replay"]
    assert replay["events"] == 500 and replay["anomalies"] == 0
    assert replay["audit_replay"]["events"] == replay["raw_ordered_read"]["events"] == 500
    assert isinstance(replay["memory_flat"], bool)
    rows = doc["comparisons"]
    assert len(rows) == 6
    for row in rows:
        assert row.keys() >= ROW_KEYS, row
        assert isinstance(row["ratio"], int | float) and row["ratio"] > 0, row
        assert row["value"] > 0 and row["baseline_value"] > 0, row
    goals = [row for row in rows if row["goal"]]
    assert len(goals) == 4
    assert all(isinstance(row["met"], bool) for row in goals)
