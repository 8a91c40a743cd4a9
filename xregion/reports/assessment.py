"""The assessment (:mod:`xregion.coordinator.assessment`) as people read it: a printable HTML
page in Chinese with charts, a CSV for spreadsheets, and the four charts the dashboard shows.

The CSV is UTF-8 with a byte-order mark and CRLF line ends, so that spreadsheet programs
(Excel, WPS, LibreOffice) open it with the Chinese text intact; one row per region (what it
received, and sent) or region pair and family, the same figures as the HTML tables.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from html import escape
from pathlib import Path

from xregion.coordinator.assessment import (
    ALL,
    FAMILIES,
    MILESTONE_NAMES,
    OUTCOMES,
    Assessment,
    Figures,
)
from xregion.explanations import explain
from xregion.regions import RegionRegistry
from xregion.reports.charts import Series, bar_chart, color_of, hbar_chart, line_chart
from xregion.reports.labels import FAMILY_ZH, MILESTONE_ZH, OUTCOME_ZH, RECOGNITION_ZH, family_label
from xregion.reports.page import Cell, Raw, page, section, table

BINS: tuple[tuple[str, int, int | None], ...] = (
    ("0", 0, 0),
    ("1", 1, 1),
    ("2", 2, 2),
    ("3–5", 3, 5),
    ("6–10", 6, 10),
    ("11–20", 11, 20),
    (">20", 21, None),
)
"""Working-day bins of the response-time distributions."""

CHARTS = ("volume", "on_time", "response", "overdue")
"""The dashboard's charts: ``/api/assessment/charts/<name>.svg``."""


def _name(regions: RegionRegistry, code: str) -> str:
    try:
        return f"{regions.get(code).name_zh} {code}"
    except Exception:
        return code


def _pair_name(pair: str) -> str:
    origin, addressee = pair.split(">", 1)
    return f"{origin}→{addressee}"


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _days(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.1f}".rstrip("0").rstrip(".")


# --- charts ---------------------------------------------------------------------------------


def volume_chart(a: Assessment) -> str:
    labels = [p.bucket.label for p in a.trend]
    pairs = list(a.per_pair)
    series = [Series(_pair_name(p), tuple(float(pt.opened.get(p, 0)) for pt in a.trend)) for p in pairs]
    title = "各地区间转办量（按接收方计）volume per region pair"
    return bar_chart(title, labels, series, stacked=True, css_class="volume")


def on_time_chart(a: Assessment, regions: RegionRegistry) -> str:
    items = []
    for code, figures in a.per_region.items():
        f = figures.received[ALL]
        note = f"{f.count('on_time')}/{f.judged}" if f.judged else "无可评判 none judged"
        items.append((_name(regions, code), f.on_time_rate, note))
    return hbar_chart("各地区按期答复率 on-time rate per region", items, css_class="on-time")


def response_chart(a: Assessment, regions: RegionRegistry, milestone: str) -> str:
    labels = [b[0] for b in BINS]
    series = []
    for i, (code, figures) in enumerate(a.per_region.items()):
        values = figures.received[ALL].stat(milestone).values
        counts = tuple(float(sum(1 for v in values if lo <= v and (hi is None or v <= hi))) for _, lo, hi in BINS)
        series.append(Series(_name(regions, code), counts, color_of(i)))
    title = f"至{MILESTONE_ZH[milestone]}用时分布（工作日）days to {milestone}"
    return bar_chart(title, labels, series, css_class=f"response response-{milestone}")


def overdue_chart(a: Assessment, regions: RegionRegistry) -> str:
    labels = [p.bucket.label for p in a.trend]
    series = [
        Series(_name(regions, code), tuple(float(pt.overdue.get(code, 0)) for pt in a.trend), color_of(i))
        for i, code in enumerate(a.regions)
    ]
    return line_chart("逾期未办数量趋势 overdue at the end of each period", labels, series, css_class="overdue")


def chart(name: str, a: Assessment, regions: RegionRegistry) -> str:
    """One of :data:`CHARTS` (``response`` is the three distributions side by side in one SVG)."""
    if name == "volume":
        return volume_chart(a)
    if name == "on_time":
        return on_time_chart(a, regions)
    if name == "overdue":
        return overdue_chart(a, regions)
    if name == "response":
        return response_chart(a, regions, "acceptance")
    raise KeyError(name)


# --- tables ---------------------------------------------------------------------------------

FIGURE_HEADERS = [
    "收到 received",
    "按期答复 on time",
    "逾期答复 late",
    "逾期未答复 overdue",
    "未到期 open",
    "撤回/取消 withdrawn",
    "按期率 on-time rate",
    "签收 中位/P90",
    "受理 中位/P90",
    "办结 中位/P90",
    "催办 reminders",
    "逾期通知 notices",
    "暂停计时 tolled",
]


def _figure_cells(f: Figures) -> list[Cell]:
    cells: list[Cell] = [
        f.referrals,
        f.count("on_time"),
        f.count("late"),
        Raw(f'<span class="bad">{f.count("overdue")}</span>') if f.count("overdue") else 0,
        f.count("open"),
        f.count("withdrawn"),
        _rate(f.on_time_rate),
    ]
    for m in MILESTONE_NAMES:
        s = f.stat(m)
        cells.append(f"{_days(s.median)} / {_days(s.p90)}" if s.n else "—")
    data = f.to_json()
    cells += [data["reminders"], data["overdue_notices"], data["tolled"]]
    return cells


def region_rows(a: Assessment, regions: RegionRegistry) -> list[list[Cell]]:
    rows: list[list[Cell]] = []
    for code, rf in a.per_region.items():
        for family in [*FAMILIES, ALL]:
            figures = rf.received.get(family)
            sent = rf.sent.get(family, 0)
            if figures is None and not sent:
                continue
            row: list[Cell] = [_name(regions, code), family_label(family), sent]
            row += _figure_cells(figures) if figures is not None else [0, *(["—"] * (len(FIGURE_HEADERS) - 1))]
            rows.append(row)
    return rows


def pair_rows(a: Assessment) -> list[list[Cell]]:
    rows: list[list[Cell]] = []
    for pair, families in a.per_pair.items():
        for family, figures in families.items():
            if family == ALL and len(families) == 2:
                continue  # one family only: its row is the total
            rows.append([_pair_name(pair), family_label(family), *_figure_cells(figures)])
    return rows


def _source_section(a: Assessment) -> str:
    s = a.source
    heads = table(
        ["发送方 origin", "链序号 seq", "哈希 hash"],
        [[o, seq, Raw(f"<code>{escape(h)}</code>")] for o, (seq, h) in sorted(s.chain_heads.items())],
        empty="无 none",
    )
    anomalies = table(
        ["代码 code", "说明 meaning", "数量 count"],
        [[Raw(f"<code>{escape(c)}</code>"), explain(c).title, n] for c, n in s.anomalies.items()],
        empty="本期间无异常 no anomaly in the period",
        numeric=[2],
    )
    seq_range = "—" if s.first_seq is None else f"{s.first_seq} – {s.last_seq}"
    facts = (
        '<dl class="source">'
        f"<dt>统计期间 period</dt><dd>{a.period.start.isoformat()} 至 {a.period.end.isoformat()}"
        f"（北京时间 Beijing dates，含首尾日）；逾期判定日 judged on {s.as_of.isoformat()}</dd>"
        f"<dt>数据来源 source</dt><dd>协调人投影 coordinator projection <code>{escape(s.store)}</code>，"
        f"已折叠至事件流序号 folded up to stream seq <b>{s.position}</b>（检查点 checkpoint）</dd>"
        f"<dt>所用事件 events</dt><dd>{s.events} 条，事件流序号 stream seq {seq_range}</dd>"
        f"<dt>未计入 excluded</dt><dd>{len(s.excluded)} 件转办（其事件未通过签名或哈希链校验 "
        f"failed a security check）{escape(' '.join(s.excluded))}</dd>"
        f"<dt>摘要 digest</dt><dd><code>{escape(s.digest)}</code>（所用事件“序号:事件编号”逐行的 SHA-256）</dd>"
        f"<dt>日历 calendar</dt><dd>{escape(s.calendar)}（工作日：法定节假日除外，调休上班日计入）</dd>"
        f"<dt>生成时间 generated</dt><dd>{escape(s.generated.isoformat(timespec='seconds'))}</dd>"
        "</dl>"
    )
    verify = (
        "<h3>如何核验 How to verify</h3><ol>"
        "<li>从事件流重建投影并重新计算，应得到相同的数字和相同的摘要 "
        "(rebuild from the stream: same figures, same digest):"
        f"<pre>xregion report assessment --nats-url URL --keys-dir KEYS --store 新库.db "
        f"--from {a.period.start.isoformat()} --to {a.period.end.isoformat()}"
        f"{' --region ' + escape(a.region) if a.region else ''} --json -</pre></li>"
        "<li>审计事件的签名、哈希链与办理流程（与下列各发送方链头一致）"
        "(verify signatures, chains and lifecycles up to the checkpoint):"
        f"<pre>xregion audit replay --nats-url URL --until {s.position}</pre></li></ol>"
    )
    return section(
        "数据来源与核验",
        "data source and verification",
        facts
        + "<h3>各发送方链头 origin chain heads</h3>"
        + heads
        + "<h3>期间内异常 anomalies</h3>"
        + anomalies
        + verify,
        anchor="source",
    )


def _overview(a: Assessment) -> str:
    t = a.totals[ALL]
    facts = [
        ("转办（按接收方计）", "tracks", str(t.referrals)),
        ("按期答复率", "on-time rate", _rate(t.on_time_rate)),
        ("按期答复", "on time", str(t.count("on_time"))),
        ("逾期答复", "late", str(t.count("late"))),
        ("逾期未答复", "overdue", str(t.count("overdue"))),
        ("催办与逾期通知", "escalations", str(t.to_json()["reminders"] + t.to_json()["overdue_notices"])),
    ]
    body = "".join(f'<div class="fact">{escape(zh)} <small>{escape(en)}</small><b>{v}</b></div>' for zh, en, v in facts)
    return section("总体情况", "overview", f'<div class="facts">{body}</div>', anchor="overview")


def _charts(a: Assessment, regions: RegionRegistry) -> str:
    boxes = [
        volume_chart(a),
        on_time_chart(a, regions),
        overdue_chart(a, regions),
        *(response_chart(a, regions, m) for m in MILESTONE_NAMES),
    ]
    inner = "".join(f'<div class="chart-box">{svg}</div>' for svg in boxes)
    return section("图表", "charts", f'<div class="charts">{inner}</div>', anchor="charts")


def _trend_table(a: Assessment) -> str:
    pairs = list(a.per_pair)
    headers = ["期间 period", "起止 dates", *(f"{_pair_name(p)} 新增" for p in pairs)]
    headers += [f"{OUTCOME_ZH[o]} {o}" for o in OUTCOMES] + ["期末逾期未办 overdue at end"]
    rows = []
    for p in a.trend:
        row: list[Cell] = [p.bucket.label, f"{p.bucket.start.isoformat()} – {p.bucket.end.isoformat()}"]
        row += [p.opened.get(pair, 0) for pair in pairs]
        row += [p.outcomes.get(o, 0) for o in OUTCOMES]
        row.append(sum(p.overdue.values()))
        rows.append(row)
    return table(headers, rows, numeric=range(2, len(headers)))


def _definitions() -> str:
    items = [
        "统计对象：期间内开启的转办（以开启事件的北京时间日期为准），按其在期间最后一日结束时的状态计算；"
        "期间之后的事件不计入，因此同一期间的数字不随后续事件变化。",
        "“收到”按接收方计：广播（如黑名单、结果互认）对每个接收地区各计一件；“发出”按转办计。",
        "答复期限：发送方签名的 answerby 日期（北京时间当日 24 时止）；补充材料期间暂停计时，"
        "发起方补充材料时签名新的期限。本报告不重新计算任何期限。",
        "按期答复：接收方在期限内作出答复（线索：受理、退回或转送；协查：完成或拒绝；互认：认可或异议；共享：确认）。"
        "逾期未答复：期末仍未答复且已过期限（暂停计时期间不算逾期）。"
        "按期率 = 按期答复 ÷（按期答复 + 逾期答复 + 逾期未答复）。",
        "用时：自开启之日至签收、受理、办结之日的工作日数（法定节假日不计，调休上班日计入，当日为 0）；"
        "中位数（偶数个取中间两数的平均）与第 90 百分位（最近秩法）。",
        "催办：协调人在期末之前就该转办向接收方发出的提醒与逾期通知。",
    ]
    body = "<ol>" + "".join(f"<li>{escape(i)}</li>" for i in items) + "</ol>"
    return section("统计口径", "definitions", body, anchor="definitions")


def assessment_html(a: Assessment, regions: RegionRegistry) -> str:
    """The whole report: one self-contained page."""
    who = f"{_name(regions, a.region)}" if a.region else "京津冀三地 all regions"
    subtitle = (
        f"统计期间 {escape(a.period.start.isoformat())} 至 {escape(a.period.end.isoformat())} · {escape(who)} · "
        f"按{'周' if a.period.bucket == 'week' else '月'}统计趋势 trend by {escape(a.period.bucket)} · "
        f"事件流序号 stream seq {a.source.first_seq or '—'}–{a.source.last_seq or '—'}"
    )
    recognition_rows: list[list[Cell]] = [
        [_name(regions, r), *(v.get(o, 0) for o in RECOGNITION_ZH)] for r, v in a.recognition.items()
    ]
    blacklist_rows: list[list[Cell]] = []
    for r, b in a.blacklist.items():
        data = b.to_json()
        blacklist_rows.append(
            [
                _name(regions, r),
                data["acknowledged"],
                Raw(f'<span class="bad">{data["pending"]}</span>') if data["pending"] else 0,
                _days(data["median_hours"]),
                _days(data["p90_hours"]),
                _days(data["max_hours"]),
                _days(data["median_working_days"]),
            ]
        )
    body = "".join(
        [
            _overview(a),
            _charts(a, regions),
            section(
                "各地区情况",
                "per region (as addressee; sent = referrals it opened)",
                table(
                    ["地区 region", "业务 family", "发出 sent", *FIGURE_HEADERS],
                    region_rows(a, regions),
                    numeric=range(2, 15),
                ),
                anchor="regions",
            ),
            section(
                "地区之间",
                "per region pair (origin → addressee)",
                table(["发起→接收 pair", "业务 family", *FIGURE_HEADERS], pair_rows(a), numeric=range(2, 14)),
                anchor="pairs",
            ),
            section(
                "结果互认情况",
                "mutual-recognition outcomes (per addressee)",
                table(
                    ["地区 region", *(f"{v} {k}" for k, v in RECOGNITION_ZH.items())],
                    recognition_rows,
                    numeric=range(1, 5),
                )
                + (
                    "<p>撤销 revoked: "
                    + escape("，".join(f"{_name(regions, r)} {n}" for r, n in a.revoked.items()))
                    + "</p>"
                    if a.revoked
                    else ""
                ),
                anchor="recognition",
            ),
            section(
                "黑名单确认用时",
                "blacklist acknowledgement delays (hours from publication)",
                table(
                    [
                        "确认地区 region",
                        "已确认 acknowledged",
                        "未确认 pending",
                        "中位数(小时) median h",
                        "P90(小时) h",
                        "最长(小时) max h",
                        "中位数(工作日) median wd",
                    ],
                    blacklist_rows,
                    numeric=range(1, 7),
                ),
                anchor="blacklist",
            ),
            section("趋势", f"trend by {a.period.bucket}", _trend_table(a), anchor="trend"),
            _source_section(a),
            _definitions(),
        ]
    )
    title = "京津冀知识产权执法协作 · 考核评估报告"
    return page(title, "Performance assessment of cross-region referrals", subtitle, body)


# --- CSV ------------------------------------------------------------------------------------

CSV_HEADERS = [
    "统计期间 period",
    "范围 scope",
    "地区或地区对 region or pair",
    "业务类型 family",
    "发出 sent",
    "收到 received",
    "按期答复 on_time",
    "逾期答复 late",
    "逾期未答复 overdue",
    "未到期未答复 open",
    "撤回或取消 withdrawn",
    "无期限 no_deadline",
    "按期率 on_time_rate",
    "签收中位数(工作日) receipt_median",
    "签收P90 receipt_p90",
    "受理中位数(工作日) acceptance_median",
    "受理P90 acceptance_p90",
    "办结中位数(工作日) conclusion_median",
    "办结P90 conclusion_p90",
    "催办 reminders",
    "逾期通知 overdue_notices",
    "暂停计时 tolled",
]


def _csv_figures(f: Figures | None) -> list[object]:
    if f is None:
        return [0, *([""] * 16)]
    data = f.to_json()
    row: list[object] = [f.referrals, *(f.count(o) for o in OUTCOMES)]
    row.append("" if f.on_time_rate is None else round(f.on_time_rate, 4))
    for m in MILESTONE_NAMES:
        s = f.stat(m)
        row += ["" if s.median is None else s.median, "" if s.p90 is None else s.p90]
    row += [data["reminders"], data["overdue_notices"], data["tolled"]]
    return row


def assessment_csv(a: Assessment, regions: RegionRegistry) -> str:
    """The figures as CSV text (write it with ``encoding="utf-8-sig"``; see the module docstring)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADERS)
    period = f"{a.period.start.isoformat()}~{a.period.end.isoformat()}"

    def family_name(family: str) -> str:
        return f"{FAMILY_ZH[family]} {family}"

    for code, rf in a.per_region.items():
        for family in [*FAMILIES, ALL]:
            figures = rf.received.get(family)
            sent = rf.sent.get(family, 0)
            if figures is None and not sent:
                continue
            name = _name(regions, code)
            writer.writerow([period, "地区 region", name, family_name(family), sent, *_csv_figures(figures)])
    for pair, families in a.per_pair.items():
        for family, figures in families.items():
            name, sent = _pair_name(pair), figures.referrals
            writer.writerow([period, "地区对 pair", name, family_name(family), sent, *_csv_figures(figures)])
    return out.getvalue()


def write_csv(text: str, path: Path) -> None:
    """Write ``text`` as UTF-8 with a byte-order mark (what spreadsheets need to see UTF-8)."""
    path.write_text(text, encoding="utf-8-sig", newline="")


def charts_json(a: Assessment, regions: RegionRegistry) -> Mapping[str, str]:
    """Every dashboard chart by name."""
    return {name: chart(name, a, regions) for name in CHARTS}


__all__ = [
    "BINS",
    "CHARTS",
    "CSV_HEADERS",
    "assessment_csv",
    "assessment_html",
    "chart",
    "charts_json",
    "on_time_chart",
    "overdue_chart",
    "response_chart",
    "volume_chart",
    "write_csv",
]
