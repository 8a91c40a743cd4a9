"""``xregion dashboard``: the coordinator with its live web dashboard."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from xregion.cli.common import LogFormat, NkeySeed, RequiredNatsUrl, TlsCa, TlsCert, TlsKey, client_settings, fail
from xregion.errors import XRegionError
from xregion.logs import configure_logging

console = Console()


def dashboard(
    nats_url: RequiredNatsUrl = None,
    store: Annotated[Path, typer.Option(help="The coordinator's projection (SQLite).")] = Path(
        ".xregion/coordinator.db"
    ),
    keys_dir: Annotated[Path, typer.Option(help="Keys directory (roster.json, private/COORD.key).")] = Path(
        ".xregion/keys"
    ),
    host: Annotated[str, typer.Option(help="Listen address of the web server.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the web server.")] = 8080,
    log_format: LogFormat = "auto",
    tls_ca: TlsCa = None,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    nkey_seed: NkeySeed = None,
) -> None:
    """Run the coordinator and its web dashboard (flows, overdue list, timelines, blacklist
    propagation; live) until SIGTERM/Ctrl-C. Also serves /health/live, /health/ready and /metrics.

    Against a secured server give the coordinator's identity (COORD):
    --tls-ca/--tls-cert/--tls-key."""
    from xregion.coordinator.service import Coordinator
    from xregion.dashboard.run import serve_dashboard
    from xregion.runtime.connection import refused_or
    from xregion.runtime.settings import RuntimeSettings

    configure_logging(log_format)
    if nats_url is None:
        console.print("[red]--nats-url (or XREGION_NATS_URL) is required; `xregion broker` runs a local server[/red]")
        raise typer.Exit(2)
    coordinator = None
    try:
        coordinator = Coordinator(
            nats_url=nats_url,
            keys_dir=keys_dir,
            store_path=store,
            settings=RuntimeSettings(**client_settings(tls_ca, tls_cert, tls_key, nkey_seed)),
        )
        console.print(f"dashboard: http://{host}:{port}/  (Ctrl-C stops it)", highlight=False)
        asyncio.run(serve_dashboard(coordinator, host=host, port=port))
    except XRegionError as exc:  # keys, another party's certificate, permissions refused
        raise fail(refused_or(exc, coordinator.nc if coordinator is not None else None)) from None
