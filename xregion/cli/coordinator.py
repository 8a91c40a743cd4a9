"""``xregion coordinator run|rebuild``: the running coordinator and its projection."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from xregion.cli.common import (
    DEFAULT_CONNECT_TIMEOUT_S,
    ConnectTimeout,
    NkeySeed,
    RequiredNatsUrl,
    TlsCa,
    TlsCert,
    TlsKey,
    client_settings,
    fail,
)
from xregion.errors import XRegionError

console = Console()
app = typer.Typer(help="The coordinator: projection of every referral, deadlines, escalation.", no_args_is_help=True)

StorePath = Annotated[Path, typer.Option("--store", help="The projection database (SQLite).")]
KeysDir = Annotated[Path, typer.Option("--keys-dir", help="Keys directory (roster.json and COORD's private key).")]
Calendar = Annotated[str, typer.Option("--calendar", help="Deadline days: working (Chinese official) | calendar.")]
EVERY = Annotated[float, typer.Option("--escalate-every", help="Seconds between escalation runs.")]


@app.command("run")
def run(
    keys_dir: KeysDir,
    store: StorePath = Path(".xregion/coordinator.db"),
    nats_url: RequiredNatsUrl = None,
    calendar: Calendar = "working",
    escalate_every: EVERY = 60.0,
    tls_ca: TlsCa = None,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    nkey_seed: NkeySeed = None,
) -> None:
    """Read the event stream by sequence with the COORD identity from STORE's own position,
    keep the projection in STORE, and publish reminders and overdue escalations until interrupted."""
    from xregion.coordinator.calendar import calendar_named
    from xregion.coordinator.service import Coordinator
    from xregion.runtime.connection import refused_or
    from xregion.runtime.settings import RuntimeSettings

    if nats_url is None:
        raise typer.BadParameter("--nats-url (or XREGION_NATS_URL) is required", param_hint="--nats-url")
    settings = RuntimeSettings(**client_settings(tls_ca, tls_cert, tls_key, nkey_seed))

    async def main(coordinator: Coordinator) -> None:
        await coordinator.start()
        console.print(f"coordinator running: projection {store}, stream sequence {coordinator.projection.last_seq()}")
        try:
            await asyncio.Event().wait()
        finally:
            await coordinator.stop()

    coordinator = None
    try:
        coordinator = Coordinator(
            nats_url=nats_url,
            keys_dir=keys_dir,
            store_path=store,
            settings=settings,
            calendar=calendar_named(calendar),
            escalate_every_s=escalate_every,
        )
        asyncio.run(main(coordinator))
    except KeyboardInterrupt:
        console.print("coordinator stopped")
    except XRegionError as exc:  # keys, another party's certificate, permissions refused
        raise fail(refused_or(exc, coordinator.nc if coordinator is not None else None)) from None


@app.command("rebuild")
def rebuild(
    store: StorePath = Path(".xregion/coordinator.db"),
    nats_url: RequiredNatsUrl = None,
    keys_dir: Annotated[
        Path | None, typer.Option("--keys-dir", help="Check signatures against KEYS/roster.json, as the coordinator.")
    ] = None,
    calendar: Calendar = "working",
    tls_ca: TlsCa = None,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    nkey_seed: NkeySeed = None,
    connect_timeout: ConnectTimeout = DEFAULT_CONNECT_TIMEOUT_S,
) -> None:
    """Empty STORE and fold the whole event stream again from sequence 1, reading by
    sequence with the COORD identity (direct gets, no consumer). With --keys-dir signatures
    are checked against the roster as the running coordinator checks them, so the tables
    equal the live projection's. Stop the coordinator that uses STORE first."""
    import logging

    from xregion.coordinator.calendar import calendar_named
    from xregion.coordinator.feed import ProjectionFeed, roster_verifier
    from xregion.coordinator.projection import Projection
    from xregion.logs import configure_logging
    from xregion.regions import COORDINATOR
    from xregion.runtime.connection import ClientIdentity, connected
    from xregion.runtime.settings import RuntimeSettings
    from xregion.runtime.stream_reader import StreamReader

    if nats_url is None:
        raise typer.BadParameter("--nats-url (or XREGION_NATS_URL) is required", param_hint="--nats-url")
    settings = RuntimeSettings(**client_settings(tls_ca, tls_cert, tls_key, nkey_seed))
    configure_logging(settings.log_format, level=logging.WARNING)
    identity = ClientIdentity.from_settings(settings, COORDINATOR)

    async def main(verify: Any) -> int:
        async with connected(nats_url, "xregion-coordinator-rebuild", identity, timeout_s=connect_timeout) as nc:
            with Projection(store, calendar=calendar_named(calendar), verify=verify) as projection:
                projection.reset()
                async with StreamReader(nc, settings.stream) as reader:
                    await ProjectionFeed(projection, reader).catch_up(timeout=3600.0)
                return projection.last_seq()

    try:
        last = asyncio.run(main(roster_verifier(keys_dir, settings.revocation_grace_s) if keys_dir else None))
    except XRegionError as exc:
        raise fail(exc) from None
    console.print(f"projection {store} rebuilt from the stream up to sequence {last}")
