"""The audit report: JSON for machines, a self-contained HTML page for people.

Both come from one :class:`~xregion.auditor.replay.ReplayResult`: counts per family, event
type and sending region; deadline compliance per region pair; every anomaly with its
evidence (code, stream sequence or archive line, event id, referral, what is wrong).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html import escape
from string import Template
from typing import Any

from xregion.auditor.replay import ReplayResult

PAGE = Template("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>xregion audit report</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}.ok{color:#176f2c}.bad{color:#b00020}code{font-size:90%}
</style></head><body>
<h1>xregion audit report</h1>
<p>Source: <code>$source</code> · generated $generated · stream seq $first_seq–$last_seq
($first_at – $last_at) · $events events · $checkpoints checkpoints</p>
<p class="$verdict_class"><strong>$verdict</strong></p>
<h2>Events per family</h2>$families
<h2>Events per sending region</h2>$regions
<h2>Events per type</h2>$types
<h2>Deadline compliance per region pair</h2>$deadlines
<h2>Anomalies ($anomaly_count)</h2>$codes$anomalies
<h2>Origin chain heads</h2>$heads
</body></html>
""")


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    if not rows:
        return "<p>none</p>"
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def report_json(result: ReplayResult, source: str) -> dict[str, Any]:
    """The machine-readable report."""
    return {
        "report": "xregion-audit/1",
        "source": source,
        "generated": datetime.now(UTC).isoformat(),
        **result.to_json(),
    }


def report_html(result: ReplayResult, source: str) -> str:
    """The human-readable report (one HTML page, no external resources)."""
    data = result.to_json()
    deadlines = [
        [pair, s["requests"], s["on_time"], s["late"], s["overdue"], s["open"]] for pair, s in data["deadlines"].items()
    ]
    anomalies = [
        [
            a["code"],
            a.get("where") or a.get("stream_seq", ""),
            a.get("event_id", ""),
            a.get("referral_id", ""),
            a["message"],
            json.dumps(a.get("evidence", {}), ensure_ascii=False),
        ]
        for a in data["anomalies"]
    ]
    verdict = (
        "No anomalies: signatures, chains, lifecycles, receipts, deadlines and checkpoints verify."
        if result.ok
        else f"{len(result.anomalies)} anomalies found."
    )
    return PAGE.substitute(
        source=escape(source),
        generated=escape(datetime.now(UTC).isoformat(timespec="seconds")),
        first_seq=data["first_seq"] or "-",
        last_seq=data["last_seq"] or "-",
        first_at=escape(str(data["first_stored_at"] or "-")),
        last_at=escape(str(data["last_stored_at"] or "-")),
        events=data["events"],
        checkpoints=data["checkpoints"],
        verdict=escape(verdict),
        verdict_class="ok" if result.ok else "bad",
        families=_table(["family", "events"], [[k, v] for k, v in data["by_family"].items()]),
        regions=_table(["region", "events sent"], [[k, v] for k, v in data["by_region"].items()]),
        types=_table(["event type", "events"], [[k, v] for k, v in data["by_type"].items()]),
        deadlines=_table(["pair", "requests", "on time", "late", "overdue", "open"], deadlines),
        anomaly_count=len(anomalies),
        codes=_table(["code", "count"], [[k, v] for k, v in data["anomalies_by_code"].items()]),
        anomalies=_table(["code", "where", "event id", "referral", "what", "evidence"], anomalies),
        heads=_table(["origin", "seq", "hash"], [[o, h[0], h[1]] for o, h in data["heads"].items()]),
    )
