"""The audit report's HTML: Chinese, printable, self-contained, every anomaly explained, and an
empty section said once (not a "none" per table)."""

from __future__ import annotations

import json
from datetime import datetime

from tests.assessment_scenario import build
from tests.support import dev_roster, dev_signers
from tests.unit.test_assessment import external_references
from xregion.auditor.replay import Record, Replayer, ReplayResult
from xregion.auditor.report import report_html
from xregion.config import load_config
from xregion.explanations import explain
from xregion.signing import canonical

ROSTER = dev_roster(dev_signers(("BJ", "TJ", "HE", "COORD")))


def replayed(until: datetime | None = None) -> ReplayResult:
    records = [
        Record(seq, stored_at, canonical(wire))
        for wire, seq, stored_at in build().messages
        if until is None or stored_at <= until
    ]
    return Replayer(ROSTER, load_config().regions, workers=0).run(records, until=max(r.stored_at for r in records))


def test_the_report_explains_every_anomaly_in_chinese() -> None:
    result = replayed()
    codes = set(result.by_code())
    assert "illegal_transition" in codes and "answer_late" in codes  # TJ's repeat; HE's late answer to R2
    html = report_html(result, "archive-2026")
    assert '<html lang="zh-CN">' in html and "审计报告" in html and "@media print" in html
    assert external_references(html) == []
    for code in codes:
        explanation = explain(code)
        assert explanation.title in html and explanation.meaning in html
    assert f"发现 {len(result.anomalies)} 项异常" in html
    assert "各地区间答复期限执行情况" in html and "线索移送 lead" in html
    assert html.count("<svg") == 2
    assert "xregion audit replay" in html and "stream seq 1–" in html


def test_an_empty_section_says_so_once() -> None:
    html = report_html(ReplayResult(), "empty")
    assert "未发现异常 No anomalies" in html
    assert html.count("未发现异常 no anomalies") == 1  # the anomalies section: one line, no empty tables
    assert ">none<" not in html and "<p>none</p>" not in html
    assert html.count('class="empty"') == 5  # deadlines, families, regions, types, heads: one line each
    assert "<svg" not in html  # no chart of nothing
    assert json.dumps  # the JSON report is unchanged (report_json)
