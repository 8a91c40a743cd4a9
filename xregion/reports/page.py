"""The page every HTML report is: one self-contained file, Chinese first, printable.

No external resource of any kind — no stylesheet, script, font or image from elsewhere (a
test checks that no ``http(s)://`` or protocol-relative URL appears outside text): the file
opens the same on a machine with no network, and prints on A4 (landscape) with repeated
table headers, no row split across pages, and charts kept whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape

CSS = """
:root{--fg:#1d2733;--muted:#6b7785;--line:#d9dee4;--accent:#8a1c14;--ok:#1b7f3b;--bad:#b3261e}
*{box-sizing:border-box}
body{margin:0;color:var(--fg);background:#f6f7f9;font:14px/1.5 "Noto Sans CJK SC","Source Han Sans SC",
 "WenQuanYi Zen Hei","PingFang SC","Microsoft YaHei",system-ui,sans-serif}
header.report{background:var(--accent);color:#fff;padding:14px 24px}
header.report h1{margin:0;font-size:22px}
header.report .en{color:#fff;opacity:.85;font-size:13px}
main.report{max-width:1280px;margin:0 auto;padding:12px 24px 40px}
section{background:#fff;border:1px solid var(--line);border-radius:6px;padding:10px 16px;margin:14px 0}
h2{font-size:17px;margin:4px 0 10px;border-left:4px solid var(--accent);padding-left:8px}
h3{font-size:15px;margin:14px 0 6px}
small,.en{color:var(--muted);font-weight:normal}
header.report small{color:#fff}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:4px 0 10px;font-variant-numeric:tabular-nums}
th,td{border:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f4;font-weight:600}
td.n{text-align:right}
.ok{color:var(--ok)}.bad{color:var(--bad);font-weight:600}.muted{color:var(--muted)}
.empty{color:var(--muted);font-style:italic;margin:4px 0 10px}
.facts{display:grid;grid-template-columns:repeat(auto-fit,minmax(160px,1fr));gap:10px;margin:6px 0}
.fact{border:1px solid var(--line);border-radius:6px;padding:8px 10px}
.fact b{display:block;font-size:22px}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:12px}
.chart-box{border:1px solid var(--line);border-radius:6px;padding:6px;break-inside:avoid;page-break-inside:avoid}
code,.mono{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12px;word-break:break-all}
pre{white-space:pre-wrap;background:#f3f5f7;padding:8px;border-radius:4px;font-size:12px}
dl.source{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:4px 0}
dl.source dt{font-weight:600}dl.source dd{margin:0}
@media print{
 @page{size:A4 landscape;margin:12mm}
 body{background:#fff;font-size:11px}
 header.report{background:#fff;color:#000;border-bottom:2px solid #000;padding:0 0 6px}
 header.report small,header.report .en{color:#333}
 main.report{max-width:none;padding:0}
 section{border:none;padding:0;margin:8px 0}
 .scroll{overflow:visible}
 table{width:100%}
 thead{display:table-header-group}
 tr,.chart-box,.fact{break-inside:avoid;page-break-inside:avoid}
 h2,h3{break-after:avoid;page-break-after:avoid}
 .charts{grid-template-columns:1fr 1fr}
 .no-print{display:none}
 *{-webkit-print-color-adjust:exact;print-color-adjust:exact}
}
"""


@dataclass(frozen=True)
class Raw:
    """HTML made by this package (a chart, a link): inserted as it is, never escaped."""

    html: str


Cell = str | int | float | None | Raw


def cell(value: Cell) -> str:
    if isinstance(value, Raw):
        return value.html
    if value is None:
        return "—"
    return escape(str(value))


def heading(zh: str, en: str, level: int = 2, anchor: str | None = None) -> str:
    ident = f' id="{escape(anchor)}"' if anchor else ""
    return f"<h{level}{ident}>{escape(zh)} <small>{escape(en)}</small></h{level}>"


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Cell]],
    *,
    empty: str = "无 none",
    numeric: Sequence[int] = (),
    css_class: str = "",
) -> str:
    """A table, or one line saying ``empty`` when there are no rows (never an empty table)."""
    materialised = list(rows)
    if not materialised:
        return f'<p class="empty">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for row in materialised:
        cells = "".join(
            f'<td class="n">{cell(v)}</td>' if i in numeric else f"<td>{cell(v)}</td>" for i, v in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    cls = f' class="{escape(css_class)}"' if css_class else ""
    return f'<div class="scroll"><table{cls}><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def section(zh: str, en: str, body: str, anchor: str | None = None) -> str:
    return f"<section>{heading(zh, en, anchor=anchor)}{body}</section>"


def page(title_zh: str, title_en: str, subtitle: str, body: str) -> str:
    """The whole document."""
    return (
        '<!doctype html>\n<html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title_zh)} · {escape(title_en)}</title><style>{CSS}</style></head><body>"
        f'<header class="report"><h1>{escape(title_zh)}</h1><div class="en">{escape(title_en)}</div>'
        f"<div>{subtitle}</div></header>"
        f'<main class="report">{body}</main></body></html>\n'
    )


__all__ = ["CSS", "Cell", "Raw", "cell", "heading", "page", "section", "table"]
