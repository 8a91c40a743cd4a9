"""``xregion status [REFERRAL_ID]``: the coordinator's projection as tables or JSON.

``--json`` prints ``{"summary": Summary.to_json(), "referrals": [ReferralView.to_json(), ...]}``
or, for one referral, its ``ReferralView.to_json()`` with ``timeline`` (keys in README), and
nothing else on stdout (logs go to stderr).

With ``--nats-url`` the store first catches up with the stream from its own position (its
last folded sequence; a new store starts at 1): any number of stores can be kept this way
next to the running coordinator's, each taking nothing from the others. Without it the store
must exist. Exit codes: 0; 1 ``referral_not_found``; 2 ``store_missing`` or bad usage.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from xregion.cli.common import (
    DEFAULT_CONNECT_TIMEOUT_S,
    CatchUpNatsUrl,
    ConnectTimeout,
    NkeySeed,
    TlsCa,
    TlsCert,
    TlsKey,
    client_settings,
    fail,
)

console = Console(width=None if Console().is_terminal else 140)

STATUS_JSON_VERSION = 1


def status_document(
    projection: Any,
    referral_id: str | None,
    *,
    region: str | None = None,
    family: str | None = None,
    state: str | None = None,
    overdue: bool | None = None,
    at: date | None = None,
) -> dict[str, Any] | None:
    """What ``--json`` prints (None: no such referral)."""
    if referral_id is not None:
        view = projection.referral(referral_id, at=at)
        return None if view is None else {"version": STATUS_JSON_VERSION, "referral": view.to_json()}
    views = projection.referrals(region=region, family=family, state=state, overdue=overdue, at=at)
    return {
        "version": STATUS_JSON_VERSION,
        "summary": projection.summary(at=at).to_json(),
        "referrals": [v.to_json() for v in views],
    }


def _tables(projection: Any, **filters: Any) -> Group:
    at = filters.pop("at", None)
    summary = projection.summary(at=at)
    states = Table(title=f"referrals by state (stream seq {summary.last_seq}, {summary.at})")
    for col in ("family", "state", "count"):
        states.add_column(col)
    for family, counts in summary.by_family_state.items():
        for name, count in counts.items():
            states.add_row(family, name, str(count))
    pairs = Table(title="by region pair")
    pairs.add_column("origin>addressee")
    pairs.add_column("count")
    for pair, count in summary.by_pair.items():
        pairs.add_row(pair, str(count))
    rows = Table(title=f"referrals ({summary.overdue} overdue, {summary.anomalies} anomalies)")
    for col in ("referral", "family", "pair", "state", "answer by", "overdue", "waiting on", "escalations"):
        rows.add_column(col)
    for view in projection.referrals(at=at, **filters):
        rows.add_row(
            view.referral_id,
            view.family,
            view.pair,
            view.state + (f" {dict(view.tracks)}" if view.tracks else ""),
            str(view.answer_by or ""),
            "[red]yes[/red] " + ",".join(view.late_parties) if view.overdue else "",
            ",".join(sorted({w.party for w in view.waits})),
            ",".join(view.escalations),
        )
    return Group(states, pairs, rows)


def _timeline(view: Any) -> Group:
    head = Table(title=f"{view.referral_id} ({view.family} {view.pair}): {view.state}")
    for col in ("answer by", "overdue", "receipts outstanding", "acks outstanding", "escalations"):
        head.add_column(col)
    head.add_row(
        str(view.answer_by or ""),
        ",".join(view.late_parties) if view.overdue else "no",
        ",".join(view.outstanding_receipts),
        ",".join(view.outstanding_acknowledgements),
        ",".join(view.escalations),
    )
    events = Table(title="timeline")
    for col in ("seq", "stored at", "event", "from", "to", "state after", "anomaly"):
        events.add_column(col)
    for e in view.timeline:
        events.add_row(
            str(e.stream_seq), e.stored_at, e.event_type, e.sender, e.addressee, e.state_after, e.anomaly or ""
        )
    return Group(head, events)


def status(
    referral_id: Annotated[str | None, typer.Argument(help="One referral: its full timeline.")] = None,
    store: Annotated[Path, typer.Option("--store", help="The coordinator's projection database.")] = Path(
        ".xregion/coordinator.db"
    ),
    region: Annotated[str | None, typer.Option("--region", help="Origin, addressee or track region.")] = None,
    family: Annotated[str | None, typer.Option("--family")] = None,
    state: Annotated[str | None, typer.Option("--state")] = None,
    overdue: Annotated[bool | None, typer.Option("--overdue/--not-overdue", help="Only (not) overdue.")] = None,
    at: Annotated[str | None, typer.Option("--at", help="Judge overdue on this day (YYYY-MM-DD).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output (README).")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh live.")] = False,
    keys_dir: Annotated[Path | None, typer.Option("--keys-dir", help="With --nats-url: COORD keys.")] = None,
    nats_url: CatchUpNatsUrl = None,
    tls_ca: TlsCa = None,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    nkey_seed: NkeySeed = None,
    connect_timeout: ConnectTimeout = DEFAULT_CONNECT_TIMEOUT_S,
) -> None:
    """Referrals by state, region pair and overdue, from the coordinator's projection
    (with --nats-url: after catching STORE up with the stream, from STORE's own position)."""
    from xregion.coordinator.projection import Projection

    if nats_url is not None:
        if keys_dir is None:
            raise typer.BadParameter("--nats-url needs --keys-dir (the key roster)")
        _catch_up(nats_url, keys_dir, store, client_settings(tls_ca, tls_cert, tls_key, nkey_seed), connect_timeout)
    elif not store.is_file():
        _error("store_missing", f"no projection at {store} (give --store, or --nats-url to build one)")
        raise typer.Exit(2)
    day = date.fromisoformat(at) if at else None
    filters: dict[str, Any] = {"region": region, "family": family, "state": state, "overdue": overdue, "at": day}
    with Projection(store) as projection:
        if referral_id is not None and projection.referral(referral_id, at=day) is None:
            _error("referral_not_found", f"no referral {referral_id} in {store}")
            raise typer.Exit(1)
        if as_json:
            doc = status_document(projection, referral_id, **filters)
            typer.echo(json.dumps(doc, ensure_ascii=False, indent=2))
            return

        def render() -> Group:
            if referral_id is not None:
                view = projection.referral(referral_id, at=day)
                return Group(Table(title=f"no referral {referral_id}")) if view is None else _timeline(view)
            return _tables(projection, **filters)

        if not watch:
            console.print(render())
            return
        with Live(render(), console=console, refresh_per_second=2) as live:
            try:
                while True:
                    time.sleep(1.0)
                    live.update(render())
            except KeyboardInterrupt:
                return


def _error(code: str, message: str) -> None:
    """One error line on stderr: ``error <code>: <message>`` (stdout stays the result)."""
    Console(stderr=True).print(f"[red]error[/red] [bold]{code}[/bold]: {message}", highlight=False)


def _catch_up(
    nats_url: str, keys_dir: Path, store: Path, settings_given: dict[str, Any], connect_timeout_s: float
) -> None:
    """Fold into ``store`` what the stream holds after the store's own position (as COORD:
    direct gets only, no consumer)."""
    import logging

    from xregion.coordinator.feed import ProjectionFeed, roster_verifier
    from xregion.coordinator.projection import Projection
    from xregion.errors import XRegionError
    from xregion.logs import configure_logging
    from xregion.regions import COORDINATOR
    from xregion.runtime.connection import ClientIdentity, connected
    from xregion.runtime.settings import RuntimeSettings
    from xregion.runtime.stream_reader import StreamReader

    settings = RuntimeSettings(**settings_given)
    configure_logging(settings.log_format, level=logging.WARNING)  # stderr: stdout is the result

    async def main() -> int:
        verify = roster_verifier(keys_dir, settings.revocation_grace_s)
        identity = ClientIdentity.from_settings(settings, COORDINATOR)
        async with connected(nats_url, "xregion-status", identity, timeout_s=connect_timeout_s) as nc:
            with Projection(store, verify=verify) as projection:
                async with StreamReader(nc, settings.stream) as reader:
                    return await ProjectionFeed(projection, reader).catch_up(timeout=300.0)

    try:
        asyncio.run(main())
    except XRegionError as exc:
        raise fail(exc) from None
