"""The audit report: JSON for machines, a self-contained, printable HTML page in Chinese for people.

Both come from one :class:`~xregion.auditor.replay.ReplayResult`: counts per family, event
type and sending region; deadline compliance per region pair; every anomaly with its
evidence (code, stream sequence or archive line, event id, referral, what is wrong) and the
code's Chinese explanation (:mod:`xregion.explanations`). The page states what was audited
(source, stream sequence range, the origin chain heads reached, checkpoints) and how to
verify it again; it loads nothing from anywhere (:mod:`xregion.reports.page`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html import escape
from typing import Any

from xregion.auditor.replay import ReplayResult
from xregion.explanations import KIND_ZH, explain
from xregion.reports.charts import Series, bar_chart
from xregion.reports.labels import FAMILY_ZH, family_label
from xregion.reports.page import Cell, Raw, page, section, table

DEADLINE_COLUMNS = (
    ("on_time", "按期答复", "#1b7f3b"),
    ("late", "逾期答复", "#c77700"),
    ("overdue", "逾期未答复", "#b3261e"),
    ("open", "未到期", "#6b7785"),
)


def report_json(result: ReplayResult, source: str) -> dict[str, Any]:
    """The machine-readable report."""
    return {
        "report": "xregion-audit/1",
        "source": source,
        "generated": datetime.now(UTC).isoformat(),
        **result.to_json(),
    }


def _code(code: str) -> Raw:
    return Raw(f"<code>{escape(code)}</code>")


def _family(name: str) -> str:
    return family_label(name) if name in FAMILY_ZH else name


def _rate(stats: dict[str, int]) -> str:
    judged = stats["on_time"] + stats["late"] + stats["overdue"]
    return f"{stats['on_time'] / judged * 100:.1f}%" if judged else "—"


def _charts(data: dict[str, Any]) -> str:
    families = list(data["by_family"])
    boxes = []
    if families:
        boxes.append(
            bar_chart(
                "各业务类型事件数 events per family",
                [FAMILY_ZH.get(f, f) for f in families],
                [Series("事件 events", tuple(float(data["by_family"][f]) for f in families), "#1f5fa8")],
                css_class="audit-families",
            )
        )
    pairs = list(data["deadlines"])
    if pairs:
        boxes.append(
            bar_chart(
                "各地区间答复期限执行 deadline compliance per pair",
                [p.replace(">", "→") for p in pairs],
                [
                    Series(zh, tuple(float(data["deadlines"][p][key]) for p in pairs), color)
                    for key, zh, color in DEADLINE_COLUMNS
                ],
                stacked=True,
                css_class="audit-deadlines",
            )
        )
    if not boxes:
        return ""
    inner = "".join(f'<div class="chart-box">{svg}</div>' for svg in boxes)
    return section("图表", "charts", f'<div class="charts">{inner}</div>')


def _anomalies(result: ReplayResult, data: dict[str, Any]) -> str:
    if not data["anomalies"]:
        return section("异常", "anomalies (0)", '<p class="ok">未发现异常 no anomalies.</p>', anchor="anomalies")
    codes: list[list[Cell]] = []
    for code, count in data["anomalies_by_code"].items():
        e = explain(code)
        codes.append([_code(code), e.title, KIND_ZH[e.kind], count, e.meaning, e.action])
    details: list[list[Cell]] = []
    for a in data["anomalies"]:
        details.append(
            [
                _code(a["code"]),
                explain(a["code"]).title,
                a.get("where") or a.get("stream_seq"),
                Raw(f"<code>{escape(str(a.get('event_id', '')))}</code>") if a.get("event_id") else None,
                Raw(f"<code>{escape(str(a.get('referral_id', '')))}</code>") if a.get("referral_id") else None,
                a["message"],
                Raw(f"<code>{escape(json.dumps(a['evidence'], ensure_ascii=False))}</code>")
                if a.get("evidence")
                else None,
            ]
        )
    body = (
        "<h3>按代码 by code</h3>"
        + table(
            ["代码 code", "名称 title", "类别 kind", "数量 count", "含义 meaning", "处理建议 what to do"],
            codes,
            numeric=[3],
        )
        + "<h3>明细 every anomaly</h3>"
        + table(
            [
                "代码 code",
                "名称 title",
                "位置 where (stream seq / archive line)",
                "事件 event",
                "转办 referral",
                "说明 message",
                "证据 evidence",
            ],
            details,
        )
    )
    return section("异常", f"anomalies ({len(result.anomalies)})", body, anchor="anomalies")


def report_html(result: ReplayResult, source: str) -> str:
    """The human-readable report (one HTML page, no external resources)."""
    data = result.to_json()
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    seq_range = f"{data['first_seq'] or '—'}–{data['last_seq'] or '—'}"
    verdict = (
        '<p class="ok"><b>未发现异常 No anomalies</b>：签名、哈希链、办理流程、回执、答复期限和检查点均验证通过 '
        "(signatures, chains, lifecycles, receipts, deadlines and checkpoints verify).</p>"
        if result.ok
        else f'<p class="bad"><b>发现 {len(result.anomalies)} 项异常 {len(result.anomalies)} anomalies found</b>'
        '：见<a href="#anomalies">异常明细</a>。</p>'
    )
    heads = table(
        ["发送方 origin", "链序号 seq", "哈希 hash"],
        [[o, h[0], _code(h[1])] for o, h in data["heads"].items()],
        empty="无 none",
    )
    facts = (
        '<dl class="source">'
        f"<dt>数据来源 source</dt><dd><code>{escape(source)}</code></dd>"
        f"<dt>事件流序号 stream seq</dt><dd>{escape(seq_range)}"
        f"{'' if data['anchored'] else '（自中途开始，链头以首个事件为准 window, not from the start）'}</dd>"
        f"<dt>存储时间 stored</dt><dd>{escape(str(data['first_stored_at'] or '—'))} 至 "
        f"{escape(str(data['last_stored_at'] or '—'))}</dd>"
        f"<dt>事件数 events</dt><dd>{data['events']}</dd>"
        f"<dt>检查点 checkpoints</dt><dd>{data['checkpoints']} 个地区签名检查点已核对 "
        "regions' signed checkpoints checked</dd>"
        f"<dt>未办结转办 open referrals</dt><dd>{data['open_referrals']}</dd>"
        f"<dt>生成时间 generated</dt><dd>{escape(generated)}</dd>"
        "</dl>"
    )
    how = (
        "<h3>如何核验 How to verify</h3><ol>"
        "<li>对同一来源重新审计，应得到相同的链头和结论 (replay the same source: same heads, same verdict):"
        f"<pre>xregion audit replay --nats-url URL --roster roster.json --until {data['last_seq'] or 'SEQ'}\n"
        "xregion audit replay --archive 归档目录 --roster roster.json</pre></li>"
        "<li>核验导出的归档（签名清单、逐段摘要）(verify an exported archive):"
        "<pre>xregion audit verify 归档目录 --roster roster.json</pre></li>"
        "<li>上列各发送方链头应与各地区签名的检查点一致 "
        "(the chain heads above must match the regions' signed checkpoints).</li>"
        "</ol>"
    )
    deadlines = [
        [p.replace(">", "→"), s["requests"], s["on_time"], s["late"], s["overdue"], s["open"], _rate(s)]
        for p, s in data["deadlines"].items()
    ]
    body = "".join(
        [
            section("结论", "verdict", verdict),
            _charts(data),
            section(
                "各地区间答复期限执行情况",
                "deadline compliance per region pair (requester → addressee)",
                table(
                    [
                        "发起→接收 pair",
                        "请求 requests",
                        "按期答复 on time",
                        "逾期答复 late",
                        "逾期未答复 overdue",
                        "未到期 open",
                        "按期率 on-time rate",
                    ],
                    deadlines,
                    numeric=range(1, 7),
                ),
            ),
            section(
                "各业务类型事件数",
                "events per family",
                table(
                    ["业务类型 family", "事件数 events"],
                    [[_family(k), v] for k, v in data["by_family"].items()],
                    numeric=[1],
                ),
            ),
            section(
                "各发送地区事件数",
                "events per sending region",
                table(
                    ["发送方 region", "事件数 events sent"], [[k, v] for k, v in data["by_region"].items()], numeric=[1]
                ),
            ),
            section(
                "各事件类型事件数",
                "events per type",
                table(
                    ["事件类型 event type", "事件数 events"], [[k, v] for k, v in data["by_type"].items()], numeric=[1]
                ),
            ),
            _anomalies(result, data),
            section("数据来源与核验", "what was audited and how to verify", facts + heads + how, anchor="source"),
        ]
    )
    subtitle = f"来源 source {escape(source)} · 事件流序号 stream seq {escape(seq_range)} · 生成 {escape(generated)}"
    return page("京津冀知识产权执法协作 · 审计报告", "xregion audit report", subtitle, body)
