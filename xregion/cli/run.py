"""``xregion demo``, ``xregion broker``, ``xregion keys``, ``xregion adapter run``."""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import socket
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from xregion.cli.common import (
    Insecure,
    LogFormat,
    NatsUrl,
    NkeySeed,
    RequiredNatsUrl,
    SecurityDirOption,
    TlsCa,
    TlsCert,
    TlsKey,
    client_settings,
)
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
    insecure: Insecure = False,
    security_dir: SecurityDirOption = None,
) -> None:
    """Start the embedded broker and adapters for BJ, TJ and HE and play a scenario over all four families."""
    from xregion.demo import DemoFailure, run_demo

    if verbose:
        configure_logging(log_format)
    else:
        import logging

        configure_logging(log_format, level=logging.ERROR)
    try:
        asyncio.run(run_demo(nats_url, workdir, console, insecure=insecure, security_dir=security_dir))
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
    insecure: Insecure = False,
    security_dir: SecurityDirOption = None,
    cluster: Annotated[
        int,
        typer.Option(
            "--cluster",
            help="Run N nodes joined by routes (client ports PORT..PORT+N-1, streams with N replicas): "
            "a development cluster; production uses ops/cluster/*.conf.",
        ),
    ] = 1,
    restore: Annotated[
        Path | None,
        typer.Option(
            "--restore",
            help="Restore the streams backed up in this directory (`xregion ops backup`) before declaring the "
            "topology; the store must not hold them (a new DATA_DIR). Adapters then re-publish what the backup lacks.",
        ),
    ] = None,
) -> None:
    """Run the embedded nats-server with JetStream and the project's configuration until Ctrl-C.

    Secure by default: one account per party, each party's client certificate its user
    (pinned), and mutual TLS from SECURITY_DIR (default DATA_DIR/security; development material is generated there if
    absent), and the topology declared with the ADMIN identity.

    After a disaster: --restore BACKUP_DIR on a new DATA_DIR restores the backup first (every
    stream checked whole before anything is restored), then declares what is missing."""
    from xregion.ops import operator
    from xregion.ops.operator import apply_topology
    from xregion.ops.security import ensure_dev_security
    from xregion.ops.server import EmbeddedServer, ServerConfig
    from xregion.permissions import OPERATOR

    if cluster > 1:
        if restore is not None:
            console.print("[red]--restore runs on a single node; restore a cluster with `xregion ops restore`[/red]")
            raise typer.Exit(2)
        _broker_cluster(data_dir, port, host, not no_sync_always, insecure, security_dir, cluster)
        return
    config = ServerConfig(store_dir=data_dir, port=port, host=host, sync_always=not no_sync_always)
    regions = load_config().regions.codes
    server = EmbeddedServer(config)
    try:
        sec = None
        if not insecure:
            hosts = ["127.0.0.1", "localhost", socket.gethostname()]
            if host not in ("0.0.0.0", "::", *hosts):
                hosts.append(host)
            sec = ensure_dev_security(security_dir or data_dir / "security", regions, hosts=hosts)
            sec.secure(config)
        server.start()
        if sec is None or sec.has_identity(OPERATOR):  # an open server: declared over a plain connection
            identity = sec.identity(OPERATOR) if sec is not None else None
            if restore is not None:
                for info in asyncio.run(operator.restore(server.url, restore, identity=identity)):
                    console.print(f"restored {_restored(info)}", highlight=False)
            report = asyncio.run(apply_topology(server.url, regions, identity=identity))
            for line in report.created:
                console.print(f"created {line}")
        elif restore is not None:
            server.stop()
            console.print(f"[red]--restore needs the ADMIN identity in {sec.root}[/red]", highlight=False)
            raise typer.Exit(2)
    except XRegionError as exc:
        server.stop()
        console.print(f"[red]error[/red] [bold]{exc.code}[/bold]: {exc.message}", highlight=False)
        raise typer.Exit(1) from None
    console.print(f"nats-server running at {server.url}; store {data_dir}; config {server.conf_file}; Ctrl-C stops it")
    if sec is None:
        console.print("[yellow]--insecure: development only — no authentication, no TLS[/yellow]")
    else:
        p = sec.identity("<PARTY>")
        console.print(
            f"accounts: {sec.auth_file} (after a change: kill -HUP {os.getpid()}); "
            f"clients connect with --tls-ca {p.tls_ca} --tls-cert {p.tls_cert} --tls-key {p.tls_key}",
            highlight=False,
        )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    # SIGHUP (systemctl reload): nats-server re-reads auth.conf and the certificates.
    signal.signal(signal.SIGHUP, lambda *_: server.reload())
    while not stop.wait(0.5):
        if not server.running:
            console.print(f"[red]nats-server exited[/red]\n{server.log_tail()}")
            raise typer.Exit(1)
    server.stop()


def _restored(info: dict[str, Any]) -> str:
    """One restored stream, as the server describes it: name, messages, sequences."""
    state = info.get("state", {})
    return (
        f"{info.get('config', {}).get('name')}: {state.get('messages', 0):,} messages "
        f"(seq {state.get('first_seq')}..{state.get('last_seq')})"
    )


def _broker_cluster(
    data_dir: Path, port: int, host: str, sync_always: bool, insecure: bool, security_dir: Path | None, size: int
) -> None:
    """``xregion broker --cluster N``: N nodes on this machine, R-N streams declared."""
    from xregion.ops.cluster import ClusterConfig, EmbeddedCluster
    from xregion.ops.security import ensure_dev_security
    from xregion.ops.server import free_port
    from xregion.permissions import OPERATOR
    from xregion.runtime.settings import RuntimeSettings

    regions = load_config().regions.codes
    sec = None
    if not insecure:
        hosts = ["127.0.0.1", "localhost", socket.gethostname()]
        if host not in ("0.0.0.0", "::", *hosts):
            hosts.append(host)
        sec = ensure_dev_security(security_dir or data_dir / "security", regions, hosts=hosts)
    config = ClusterConfig(
        store_root=data_dir,
        size=size,
        host=host,
        client_ports=[port + i for i in range(size)],
        route_ports=[free_port(host) for _ in range(size)],
        sync_always=sync_always,
    )
    if sec is not None:
        sec.secure(config)
    the_cluster = EmbeddedCluster(config)
    settings = RuntimeSettings(replicas=size)
    try:
        the_cluster.start()
        identity = sec.identity(OPERATOR) if sec is not None and sec.has_identity(OPERATOR) else None
        if sec is None or identity is not None:
            report = asyncio.run(_declare_with_retry(the_cluster.url, regions, identity, settings))
            for line in report.created:
                console.print(f"created {line}")
    except XRegionError as exc:
        the_cluster.stop()
        console.print(f"[red]error[/red] [bold]{exc.code}[/bold]: {exc.message}", highlight=False)
        raise typer.Exit(1) from None
    console.print(
        f"{size}-node cluster running at {the_cluster.url}; stores under {data_dir}/n*; "
        f"streams with {size} replicas; Ctrl-C stops it"
    )
    if sec is None:
        console.print("[yellow]--insecure: development only — no authentication, no TLS[/yellow]")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    def reload_all(*_: object) -> None:
        for server in the_cluster.servers:
            server.reload()

    signal.signal(signal.SIGHUP, reload_all)
    while not stop.wait(0.5):
        if not all(s.running for s in the_cluster.servers):
            console.print("[red]a cluster node exited[/red]")
            the_cluster.stop()
            raise typer.Exit(1)
    the_cluster.stop()


async def _declare_with_retry(
    url: str, regions: tuple[str, ...], identity: Any, settings: Any, timeout: float = 30.0
) -> Any:
    """Declare the topology once the cluster's JetStream meta group has elected a leader
    (until then the JetStream API answers 503 or not at all)."""
    import time

    from xregion.ops.operator import apply_topology

    deadline = time.monotonic() + timeout
    while True:
        try:
            return await apply_topology(url, regions, identity=identity, settings=settings)
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


@keys_app.command("init")
def keys_init(
    keys_dir: Annotated[Path, typer.Option(help="Where to write roster.json and private/<party>.key.")] = Path(
        ".xregion/keys"
    ),
) -> None:
    """Generate throw-away development keys for every party that signs: the configured
    regions, the coordinator (COORD) and the auditor (AUDIT)."""
    from xregion.keys import init_keys, signing_parties

    config = load_config()
    roster = init_keys(keys_dir, signing_parties(config.regions.codes))
    for key in roster:
        console.print(f"{key.party:6} {key.key_id}")
    console.print(f"roster: {keys_dir / 'roster.json'} (public); private keys under {keys_dir / 'private'} (mode 0600)")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """``7d``, ``12h``, ``30m``, ``90s``, ``2w`` or plain seconds."""
    value = text.strip().lower()
    unit = _UNITS.get(value[-1:])
    number = value[:-1] if unit else value
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a duration (e.g. 7d, 12h, 30m, 90s)") from None
    if seconds < 0:
        raise typer.BadParameter("a duration cannot be negative")
    return timedelta(seconds=seconds)


def parse_moment(text: str) -> datetime:
    """``now`` or an ISO 8601 time with a UTC offset (``2026-11-25T06:30:00+08:00``, ``...Z``)."""
    if text.strip().lower() == "now":
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise typer.BadParameter("give the time with its UTC offset (Z or +08:00)")
    return moment


KeysDir = Annotated[Path, typer.Option(help="Keys directory (roster.json, private/<party>.key).")]


@keys_app.command("rotate")
def keys_rotate(
    party: Annotated[str, typer.Option(help="Party whose key is rotated (BJ, TJ, HE, COORD, ...).")],
    keys_dir: KeysDir = Path(".xregion/keys"),
    overlap: Annotated[str, typer.Option(help="How long the old key stays valid beside the new one.")] = "7d",
) -> None:
    """Give a party a new signing key without downtime.

    The new key enters roster.json valid from now; the party's current key stays valid for
    the overlap. Distribute roster.json to every adapter (they reload it when it changes);
    the party's adapter picks up its new private key file by itself.
    """
    from xregion.keys import private_key_path, rotate_key

    try:
        signer, closed = rotate_key(keys_dir, party, parse_duration(overlap))
    except XRegionError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    for key in closed:
        until = key.valid_until.isoformat() if key.valid_until else "-"
        console.print(f"{party:6} {key.key_id}  valid until {until}")
    console.print(f"{party:6} {signer.key_id}  new, valid from now")
    console.print(f"roster: {keys_dir / 'roster.json'}; private key: {private_key_path(keys_dir, party)} (mode 0600)")


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="Key id, e.g. BJ:9fe888a4c9e95064.")],
    reason: Annotated[str, typer.Option(help="Why (compromised, lost, ...): recorded in the roster.")],
    at: Annotated[str, typer.Option(help="Revoked from this time on: ISO 8601 with offset, or 'now'.")] = "now",
    keys_dir: KeysDir = Path(".xregion/keys"),
) -> None:
    """Revoke a key in roster.json: events it signed at or after TIME, or that reach the bus
    later than TIME + XREGION_REVOCATION_GRACE_S, are refused (key_revoked)."""
    from xregion.keys import revoke_key

    try:
        key = revoke_key(keys_dir, key_id, parse_moment(at), reason)
    except XRegionError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    revoked = key.revoked_at.isoformat() if key.revoked_at else "?"
    console.print(f"{key.party:6} {key.key_id}  revoked at {revoked} ({reason}); distribute {keys_dir / 'roster.json'}")


def load_handler(spec: str) -> Any:
    module, _, name = spec.partition(":")
    if not name:
        raise typer.BadParameter("--handler takes module:function")
    return getattr(importlib.import_module(module), name)


@adapter_app.command("run")
def adapter_run(
    region: Annotated[str, typer.Option(help="Region code (BJ, TJ, HE, ...).")],
    nats_url: RequiredNatsUrl = None,
    keys_dir: Annotated[Path, typer.Option(help="Keys directory (xregion keys init).")] = Path(".xregion/keys"),
    store: Annotated[Path | None, typer.Option(help="SQLite store (outbox, inbox, views).")] = None,
    agency: Annotated[str | None, typer.Option(help="Agency code used for automatic receipts.")] = None,
    handler: Annotated[str | None, typer.Option(help="module:function receiving each Delivery.")] = None,
    log_format: LogFormat = "auto",
    tls_ca: TlsCa = None,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    nkey_seed: NkeySeed = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve Prometheus metrics (handler latency, outbox depth) on this port at /metrics."),
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Listen address of --metrics-port.")] = "127.0.0.1",
    http: Annotated[
        str | None,
        typer.Option(
            help="Serve the HTTP gateway on HOST:PORT (e.g. :8081); token from XREGION_HTTP_TOKEN. Refused "
            "without XREGION_HTTP_TOKEN or --http-client-ca unless --http-open-without-authentication."
        ),
    ] = None,
    webhook_url: Annotated[
        str | None,
        typer.Option(help="POST inbound events here (with --http), signed with XREGION_WEBHOOK_SECRET."),
    ] = None,
    webhook_attempts: Annotated[int, typer.Option(help="Webhook attempts before dead-lettering.")] = 8,
    http_tls_cert: Annotated[Path | None, typer.Option(help="Serve --http over HTTPS with this certificate.")] = None,
    http_tls_key: Annotated[Path | None, typer.Option(help="Private key of --http-tls-cert.")] = None,
    http_client_ca: Annotated[
        Path | None, typer.Option(help="Mutual TLS: require client certificates issued by this CA.")
    ] = None,
    http_open_without_authentication: Annotated[
        bool,
        typer.Option(
            "--http-open-without-authentication",
            help="DEVELOPMENT ONLY: serve --http with neither XREGION_HTTP_TOKEN nor --http-client-ca; "
            "anyone who reaches the port submits events as the region.",
        ),
    ] = False,
    sql_bridge: Annotated[
        str | None,
        typer.Option(help="Bridge xregion_outbox/xregion_inbox tables: postgresql://... or an SQLite file."),
    ] = None,
) -> None:
    """Run one region's adapter (a FastStream application) until SIGTERM/Ctrl-C.

    Against a secured server give the region's identity: --nkey-seed and --tls-ca/--tls-cert/
    --tls-key (or XREGION_NKEY_SEED, XREGION_TLS_CA, XREGION_TLS_CERT, XREGION_TLS_KEY)."""
    from xregion.adapter import Adapter
    from xregion.runtime.settings import RuntimeSettings

    configure_logging(log_format)
    if nats_url is None:
        console.print("[red]--nats-url (or XREGION_NATS_URL) is required; `xregion broker` runs a local server[/red]")
        raise typer.Exit(2)
    kwargs: dict[str, Any] = {
        "nats_url": nats_url,
        "store_path": store or Path(f".xregion/{region}.db"),
        "agency": agency,
        "settings": RuntimeSettings(**client_settings(tls_ca, tls_cert, tls_key, nkey_seed)),
    }
    if handler:
        kwargs["handler"] = load_handler(handler)
    gateway, bridge = None, None
    if sql_bridge:
        from xregion.bridge import SqlBridge

        bridge = SqlBridge(sql_bridge, inner=kwargs.get("handler"))
        kwargs["handler"] = bridge.handler
    if http:
        from xregion.gateway.server import Gateway

        try:
            gateway = Gateway(
                webhook_url=webhook_url,
                max_attempts=webhook_attempts,
                inner=kwargs.get("handler"),
                tls_cert=http_tls_cert,
                tls_key=http_tls_key,
                client_ca=http_client_ca,
                open_without_authentication=http_open_without_authentication,
            )
        except XRegionError as exc:  # no authentication, mutual TLS without a certificate
            console.print(f"[red]error[/red] [bold]{exc.code}[/bold]: {exc.message}", highlight=False)
            raise typer.Exit(2) from None
        kwargs["handler"] = gateway.handler
    try:
        adapter = Adapter.from_keys_dir(region, keys_dir, **kwargs)
    except XRegionError as exc:  # keys, configuration, a certificate of another party
        console.print(f"[red]error[/red] [bold]{exc.code}[/bold]: {exc.message}", highlight=False)
        raise typer.Exit(2) from None
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=metrics_host)
    try:
        if gateway is not None or bridge is not None:
            from xregion.gateway.server import serve

            asyncio.run(serve(adapter, gateway=gateway, listen=http, bridge=bridge))
        else:
            asyncio.run(adapter.app().run())
    except XRegionError as exc:  # e.g. TLS or NKey refused, topology missing: no retry will help
        exc = adapter.refusal(exc) or exc  # a request the server's permissions refused
        console.print(f"[red]error[/red] [bold]{exc.code}[/bold]: {exc.message}", highlight=False)
        raise typer.Exit(1) from None
