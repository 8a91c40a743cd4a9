"""``xregion coordinator run|rebuild``: the running coordinator and its projection."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from xregion.cli.common import NatsUrl, NkeySeed, TlsCa, TlsCert, TlsKey, client_settings

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
    nats_url: NatsUrl = None,
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
    from xregion.runtime.settings import RuntimeSettings

    if nats_url is None:
        raise typer.BadParameter("--nats-url (or XREGION_NATS_URL) is required", param_hint="--nats-url")
    settings = RuntimeSettings(**client_settings(tls_ca, tls_cert, tls_key, nkey_seed))
    coordinator = Coordinator(
        nats_url=nats_url,
        keys_dir=keys_dir,
        store_path=store,
        settings=settings,
        calendar=calendar_named(calendar),
        escalate_every_s=escalate_every,
    )

    async def main() -> None:
        await coordinator.start()
        console.print(f"coordinator running: projection {store}, stream sequence {coordinator.projection.last_seq()}")
        try:
            await asyncio.Event().wait()
        finally:
            await coordinator.stop()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        console.print("coordinator stopped")


@app.command("rebuild")
def rebuild(
    store: StorePath = Path(".xregion/coordinator.db"),
    nats_url: NatsUrl = None,
    keys_dir: Annotated[
        Path | None, typer.Option("--keys-dir", help="Check signatures against KEYS/roster.json, as the coordinator.")
    ] = None,
    calendar: Calendar = "working",
    tls_ca: TlsCa = None,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    nkey_seed: NkeySeed = None,
) -> None:
    """Empty STORE and fold the whole event stream again from sequence 1, reading by
    sequence with the COORD identity (direct gets, no consumer). With --keys-dir signatures
    are checked against the roster as the running coordinator checks them, so the tables
    equal the live projection's. Stop the coordinator that uses STORE first."""
    import logging

    from xregion.coordinator.calendar import calendar_named
    from xregion.coordinator.feed import ProjectionFeed, roster_verifier
    from xregion.coordinator.projection import Projection
    from xregion.errors import XRegionError
    from xregion.logs import configure_logging
    from xregion.regions import COORDINATOR
    from xregion.runtime.connection import ClientIdentity, connect
    from xregion.runtime.settings import RuntimeSettings
    from xregion.runtime.stream_reader import StreamReader

    if nats_url is None:
        raise typer.BadParameter("--nats-url (or XREGION_NATS_URL) is required", param_hint="--nats-url")
    settings = RuntimeSettings(**client_settings(tls_ca, tls_cert, tls_key, nkey_seed))
    configure_logging(settings.log_format, level=logging.WARNING)
    verify = roster_verifier(keys_dir, settings.revocation_grace_s) if keys_dir is not None else None

    async def main() -> int:
        nc = await connect(nats_url, "xregion-coordinator-rebuild", ClientIdentity.from_settings(settings, COORDINATOR))
        try:
            with Projection(store, calendar=calendar_named(calendar), verify=verify) as projection:
                projection.reset()
                async with StreamReader(nc, settings.stream) as reader:
                    await ProjectionFeed(projection, reader).catch_up(timeout=3600.0)
                return projection.last_seq()
        finally:
            await nc.close()

    try:
        last = asyncio.run(main())
    except XRegionError as exc:
        console.print(f"[red]error[/red] [bold]{exc.code}[/bold]: {exc.message}", highlight=False)
        raise typer.Exit(1) from None
    console.print(f"projection {store} rebuilt from the stream up to sequence {last}")
