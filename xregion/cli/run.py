"""``xregion demo``, ``xregion broker``, ``xregion keys``, ``xregion adapter run``."""

from __future__ import annotations

import asyncio
import importlib
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from xregion.cli.common import LogFormat, NatsUrl
from xregion.config import load_config
from xregion.errors import XRegionError
from xregion.logs import configure_logging

console = Console(width=None if Console().is_terminal else 120)
keys_app = typer.Typer(help="Signing keys and the key roster.", no_args_is_help=True)
adapter_app = typer.Typer(help="Run a region's adapter.", no_args_is_help=True)


def demo(
    nats_url: NatsUrl = None,
    workdir: Annotated[Path | None, typer.Option(help="Keep state here instead of a temporary directory.")] = None,
    log_format: LogFormat = "json",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the adapters' logs.")] = False,
) -> None:
    """Start the embedded broker and adapters for BJ, TJ and HE and play a scenario over all four families."""
    from xregion.demo import DemoFailure, run_demo

    if verbose:
        configure_logging(log_format)
    else:
        import logging

        configure_logging(log_format, level=logging.ERROR)
    try:
        asyncio.run(run_demo(nats_url, workdir, console))
    except (DemoFailure, XRegionError) as exc:
        console.print(f"[red]demo failed:[/red] {exc}")
        raise typer.Exit(1) from None


def broker(
    data_dir: Annotated[Path, typer.Option(help="JetStream store directory.")] = Path(".xregion/nats"),
    port: Annotated[int, typer.Option(help="Client port.")] = 4222,
    host: Annotated[str, typer.Option(help="Listen address.")] = "127.0.0.1",
    no_sync_always: Annotated[
        bool,
        typer.Option("--no-sync-always", help="fsync every 2 min instead of every write (faster, not evidence-grade)."),
    ] = False,
) -> None:
    """Run the embedded nats-server with JetStream and the project's configuration until Ctrl-C."""
    from xregion.runtime.server import EmbeddedServer, ServerConfig

    server = EmbeddedServer(ServerConfig(store_dir=data_dir, port=port, host=host, sync_always=not no_sync_always))
    try:
        server.start()
    except XRegionError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    console.print(f"nats-server running at {server.url}; store {data_dir}; config {server.conf_file}; Ctrl-C stops it")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        if not server.running:
            console.print(f"[red]nats-server exited[/red]\n{server.log_tail()}")
            raise typer.Exit(1)
    server.stop()


@keys_app.command("init")
def keys_init(
    keys_dir: Annotated[Path, typer.Option(help="Where to write roster.json and private/<party>.key.")] = Path(
        ".xregion/keys"
    ),
) -> None:
    """Generate throw-away development keys for every configured region and the coordinator."""
    from xregion.keys import init_keys

    config = load_config()
    roster = init_keys(keys_dir, [*config.regions.codes, "COORD"])
    for key in roster:
        console.print(f"{key.party:6} {key.key_id}")
    console.print(f"roster: {keys_dir / 'roster.json'} (public); private keys under {keys_dir / 'private'} (mode 0600)")


def load_handler(spec: str) -> Any:
    module, _, name = spec.partition(":")
    if not name:
        raise typer.BadParameter("--handler takes module:function")
    return getattr(importlib.import_module(module), name)


@adapter_app.command("run")
def adapter_run(
    region: Annotated[str, typer.Option(help="Region code (BJ, TJ, HE, ...).")],
    nats_url: NatsUrl = None,
    keys_dir: Annotated[Path, typer.Option(help="Keys directory (xregion keys init).")] = Path(".xregion/keys"),
    store: Annotated[Path | None, typer.Option(help="SQLite store (outbox, inbox, views).")] = None,
    agency: Annotated[str | None, typer.Option(help="Agency code used for automatic receipts.")] = None,
    handler: Annotated[str | None, typer.Option(help="module:function receiving each Delivery.")] = None,
    log_format: LogFormat = "auto",
) -> None:
    """Run one region's adapter (a FastStream application) until SIGTERM/Ctrl-C."""
    from xregion.adapter import Adapter

    configure_logging(log_format)
    if nats_url is None:
        console.print("[red]--nats-url (or XREGION_NATS_URL) is required; `xregion broker` runs a local server[/red]")
        raise typer.Exit(2)
    kwargs: dict[str, Any] = {
        "nats_url": nats_url,
        "store_path": store or Path(f".xregion/{region}.db"),
        "agency": agency,
    }
    if handler:
        kwargs["handler"] = load_handler(handler)
    try:
        adapter = Adapter.from_keys_dir(region, keys_dir, **kwargs)
    except XRegionError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    asyncio.run(adapter.app().run())
