"""``xregion ops gen-config|gen-certs|apply-topology|backup|restore``: NATS identities, TLS,
topology, stream backups."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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
from xregion.config import load_config
from xregion.errors import XRegionError

if TYPE_CHECKING:
    from xregion.runtime.connection import ClientIdentity
    from xregion.runtime.settings import RuntimeSettings

console = Console(width=None if Console().is_terminal else 120)
app = typer.Typer(
    help="NATS identities, TLS certificates, the topology, stream backups (operators).", no_args_is_help=True
)

OutDir = Annotated[Path, typer.Option("--out", help="Directory of the security material.")]


@app.command("gen-config")
def gen_config(
    out: OutDir = Path(".xregion/security"),
    cluster: Annotated[
        int,
        typer.Option(
            "--cluster",
            help="Also write the server configurations of an N-node cluster (CLUSTER_DIR/cluster/n<i>.conf, "
            "accepting regional leaf nodes) and each region's leaf node (CLUSTER_DIR/leaf/<REGION>.conf).",
        ),
    ] = 0,
    cluster_dir: Annotated[Path, typer.Option("--cluster-dir", help="Where --cluster writes.")] = Path("ops"),
    node_host: Annotated[
        list[str] | None,
        typer.Option("--node-host", help="Host name of cluster node i (repeat; default xregion-n1..n3)."),
    ] = None,
) -> None:
    """The server's accounts OUT/auth.conf: the bus account (streams, evidence, ADMIN) and one
    account per configured region, COORD and AUDIT, each user being the client certificate
    whose URI SAN is urn:xregion:party:<CODE> (gen-certs issues development ones)."""
    from xregion.ops.identities import AUTH_FILE, PINNED_FILE, write_auth_config, write_pinned_certs
    from xregion.permissions import party_uri

    if cluster:
        from xregion.ops.cluster import OpsLayout, write_ops_configs

        layout = OpsLayout(hosts=node_host) if node_host else OpsLayout()
        for path in write_ops_configs(cluster_dir, cluster, load_config().regions.codes, layout):
            console.print(f"server config {path}", highlight=False)

    try:
        admitted = write_auth_config(out, load_config().regions.codes)
        pinned = write_pinned_certs(out)
    except XRegionError as exc:
        raise fail(exc) from None
    for party in admitted:
        console.print(f"{party:6} certificate URI SAN {party_uri(party)}", highlight=False)
    console.print(f"accounts: {out / AUTH_FILE}; {len(pinned)} client certificates pinned in {out / PINNED_FILE}")


@app.command("gen-certs")
def gen_certs(
    out: OutDir = Path(".xregion/security"),
    host: Annotated[
        list[str] | None,
        typer.Option("--host", help="Server certificate name or IP (repeat); default 127.0.0.1, localhost."),
    ] = None,
    renew: Annotated[bool, typer.Option("--renew", help="Re-issue existing certificates from the same CA.")] = False,
) -> None:
    """A development CA, the server's certificate and a client certificate per party under
    OUT/tls. DEVELOPMENT ONLY: production certificates come from the agency's CA."""
    from xregion.ops.certs import DEFAULT_HOSTS, write_dev_pki
    from xregion.ops.identities import write_pinned_certs
    from xregion.permissions import parties

    try:
        codes = load_config().regions.codes
        pki = write_dev_pki(out, parties(codes), hosts=host or DEFAULT_HOSTS, renew=renew, leaves=codes)
        write_pinned_certs(out)
    except XRegionError as exc:
        raise fail(exc) from None
    console.print(f"CA      {pki.ca}  (key {pki.ca_key}, mode 0600)", highlight=False)
    console.print(f"server  {pki.server.cert}  SAN {', '.join(host or DEFAULT_HOSTS)}", highlight=False)
    for party, files in pki.clients.items():
        console.print(f"{party:7} {files.cert}", highlight=False)


@app.command("apply-topology")
def apply_topology(
    nats_url: RequiredNatsUrl = None,
    tls_ca: TlsCa = None,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    nkey_seed: NkeySeed = None,
    connect_timeout: ConnectTimeout = DEFAULT_CONNECT_TIMEOUT_S,
) -> None:
    """Declare the streams, the object store and every durable consumer (regions' and the
    coordinator's) as the operator (ADMIN identity); idempotent, never overwrites settings."""
    from xregion.ops import operator

    url, settings, identity = _operator(nats_url, tls_ca, tls_cert, tls_key, nkey_seed)
    try:
        regions = load_config().regions.codes
        report = asyncio.run(
            operator.apply_topology(
                url, regions, identity=identity, settings=settings, connect_timeout_s=connect_timeout
            )
        )
    except XRegionError as exc:
        raise fail(exc) from None
    for line in report.created:
        console.print(f"created  {line}")
    for line in report.updated:
        console.print(f"updated  {line}")
    for line in report.drift:
        console.print(f"[yellow]drift[/yellow]    {line} (left as the operator set it)")
    if not (report.created or report.updated):
        console.print("topology up to date")


def _operator(
    nats_url: str | None, tls_ca: Path | None, tls_cert: Path | None, tls_key: Path | None, nkey_seed: Path | None
) -> tuple[str, RuntimeSettings, ClientIdentity]:
    """The server, settings and ADMIN identity of an operator's command (``--nats-url`` required);
    connection notices (warnings and worse) on stderr."""
    import logging

    from xregion.logs import configure_logging
    from xregion.permissions import OPERATOR
    from xregion.runtime.connection import ClientIdentity
    from xregion.runtime.settings import RuntimeSettings

    if nats_url is None:
        console.print("[red]--nats-url (or XREGION_NATS_URL) is required[/red]")
        raise typer.Exit(2)
    settings = RuntimeSettings(**client_settings(tls_ca, tls_cert, tls_key, nkey_seed))
    configure_logging(settings.log_format, level=logging.WARNING)
    return nats_url, settings, ClientIdentity.from_settings(settings, OPERATOR)


@app.command("backup")
def backup(
    out: Annotated[Path, typer.Option("--out", help="A new directory: one sub-directory per stream.")],
    stream: Annotated[
        list[str] | None,
        typer.Option("--stream", help="A stream to back up (repeat). Default: events, dead letters, evidence."),
    ] = None,
    nats_url: RequiredNatsUrl = None,
    tls_ca: TlsCa = None,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    nkey_seed: NkeySeed = None,
    connect_timeout: ConnectTimeout = DEFAULT_CONNECT_TIMEOUT_S,
) -> None:
    """Back the bus's streams up online (JetStream snapshots, with their durable consumers)
    as the operator (ADMIN); each with its size and SHA-256 in backup.json."""
    from xregion.ops import operator
    from xregion.ops.backup import bus_streams

    url, settings, identity = _operator(nats_url, tls_ca, tls_cert, tls_key, nkey_seed)
    streams = tuple(stream) if stream else bus_streams(settings, load_config().regions.codes)
    try:
        backups = asyncio.run(operator.backup(url, out, streams, identity=identity, connect_timeout_s=connect_timeout))
    except XRegionError as exc:
        raise fail(exc) from None
    for b in backups:
        console.print(
            f"backed up {b.stream}: {b.messages:,} messages (seq {b.first_seq}..{b.last_seq}), "
            f"{b.consumers} consumers, {b.size:,} bytes, sha256 {b.sha256} -> {out / b.stream}",
            highlight=False,
        )


@app.command("restore")
def restore(
    directory: Annotated[Path, typer.Argument(help="What `xregion ops backup` wrote, or one stream's part of it.")],
    nats_url: RequiredNatsUrl = None,
    tls_ca: TlsCa = None,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    nkey_seed: NkeySeed = None,
    connect_timeout: ConnectTimeout = DEFAULT_CONNECT_TIMEOUT_S,
) -> None:
    """Restore backed-up streams as the operator (ADMIN), under their own names, which must not
    exist; every backup is checked (size, SHA-256) before anything is restored."""
    from xregion.cli.run import _restored
    from xregion.ops import operator

    url, _, identity = _operator(nats_url, tls_ca, tls_cert, tls_key, nkey_seed)
    try:
        restored = asyncio.run(operator.restore(url, directory, identity=identity, connect_timeout_s=connect_timeout))
    except XRegionError as exc:
        raise fail(exc) from None
    for info in restored:
        console.print(f"restored {_restored(info)}", highlight=False)
    console.print("now audit the restored stream: xregion audit replay --nats-url ...")
