"""Reports people read: the assessment and the audit report as self-contained, printable HTML
pages in Chinese (bilingual headings), with charts as inline SVG, and the assessment as CSV.

* :mod:`xregion.reports.labels`     — Chinese names of families, states, outcomes, milestones
* :mod:`xregion.reports.charts`     — line, bar and horizontal-bar charts as inline SVG
* :mod:`xregion.reports.page`       — the page shell (screen and print stylesheet) and tables
* :mod:`xregion.reports.assessment` — the assessment as HTML, CSV and the dashboard's charts
"""
