"""``xregion report assessment``: the performance assessment of a period, from the coordinator's
projection, as HTML (printable, in Chinese, with charts), JSON and/or CSV.

The figures come from a projection store (``--store``, default the coordinator's
``.xregion/coordinator.db``). With ``--nats-url`` (and ``--keys-dir``) the store first
catches up with the stream from its own position as ``COORD`` — a new store is folded from
the stream's first event, which is how a past period is rebuilt from the stream and
checked: the same figures and the same digest. Exit codes: 0; 2 ``store_missing`` or bad usage.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path
from typing import Annotated, cast

import typer
from rich.console import Console

from xregion.cli.common import (
    DEFAULT_CONNECT_TIMEOUT_S,
    CatchUpNatsUrl,
    ConnectTimeout,
    NkeySeed,
    TlsCa,
    TlsCert,
    TlsKey,
    client_settings,
)

app = typer.Typer(help="Reports: the performance assessment of a period.", no_args_is_help=True)
stderr = Console(stderr=True)

STDOUT = Path("-")


def _error(code: str, message: str) -> None:
    stderr.print(f"[red]error[/red] [bold]{code}[/bold]: {message}", highlight=False)


def _day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a date (YYYY-MM-DD)", param_hint=option) from None


def _write(path: Path, text: str, *, bom: bool = False) -> None:
    if path == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8-sig" if bom else "utf-8", newline="")


@app.command()
def assessment(
    start: Annotated[str, typer.Option("--from", help="First day of the period (YYYY-MM-DD, Beijing date).")],
    end: Annotated[str, typer.Option("--to", help="Last day of the period (included).")],
    region: Annotated[str | None, typer.Option("--region", help="Only this region's referrals and answers.")] = None,
    by: Annotated[str, typer.Option("--by", help="Trend buckets: week | month.")] = "week",
    html: Annotated[Path | None, typer.Option("--html", help="Write the HTML report here (- : stdout).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the JSON document here (- : stdout).")] = None,
    csv_out: Annotated[
        Path | None, typer.Option("--csv", help="Write the CSV (UTF-8 with BOM, for spreadsheets) here (- : stdout).")
    ] = None,
    tracks: Annotated[bool, typer.Option("--tracks", help="JSON: also every track (one addressee's part).")] = False,
    store: Annotated[Path, typer.Option("--store", help="The coordinator's projection database.")] = Path(
        ".xregion/coordinator.db"
    ),
    keys_dir: Annotated[Path | None, typer.Option("--keys-dir", help="With --nats-url: the key roster.")] = None,
    nats_url: CatchUpNatsUrl = None,
    tls_ca: TlsCa = None,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    nkey_seed: NkeySeed = None,
    connect_timeout: ConnectTimeout = DEFAULT_CONNECT_TIMEOUT_S,
) -> None:
    """Per region and region pair, per family: referrals received and sent, answered on time,
    late or still open, working days to receipt, acceptance and conclusion, escalations,
    recognition outcomes, blacklist acknowledgement delays, trends (docs/assessment.md)."""
    from xregion.coordinator.assessment import Bucket, Period, assess
    from xregion.coordinator.projection import Projection
    from xregion.reports.assessment import assessment_csv, assessment_html

    if html is None and json_out is None and csv_out is None:
        raise typer.BadParameter("give at least one of --html, --json, --csv (a file, or - for stdout)")
    if by not in ("week", "month"):
        raise typer.BadParameter("week or month", param_hint="--by")
    try:
        period = Period(_day(start, "--from"), _day(end, "--to"), cast(Bucket, by))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if nats_url is not None:
        if keys_dir is None:
            raise typer.BadParameter("--nats-url needs --keys-dir (the key roster)")
        from xregion.cli.status import _catch_up

        _catch_up(nats_url, keys_dir, store, client_settings(tls_ca, tls_cert, tls_key, nkey_seed), connect_timeout)
    elif not store.is_file():
        _error("store_missing", f"no projection at {store} (give --store, or --nats-url to build one)")
        raise typer.Exit(2)
    with Projection(store) as projection:
        regions = projection.config.regions
        if region is not None and region not in regions.codes:
            raise typer.BadParameter(f"{region} is not a configured region: {', '.join(regions.codes)}")
        result = assess(projection, period, region=region)
        if json_out is not None:
            doc = result.to_json(tracks=tracks)
            _write(json_out, json.dumps(doc, ensure_ascii=False, indent=2) + "\n")
        if csv_out is not None:
            _write(csv_out, assessment_csv(result, regions), bom=True)
        if html is not None:
            _write(html, assessment_html(result, regions))
    written = [str(p) for p in (html, json_out, csv_out) if p is not None and p != STDOUT]
    if written:
        stderr.print(
            f"assessment {period.start}–{period.end}: {len(result.tracks)} tracks, stream seq "
            f"{result.source.first_seq or '-'}–{result.source.last_seq or '-'}; wrote {', '.join(written)}",
            highlight=False,
        )


__all__ = ["app", "assessment"]
