"""Scale-out topologies: a three-node JetStream cluster on one site, leaf nodes between sites.

* :class:`ClusterConfig` renders one ``nats-server`` configuration per node: JetStream with
  its own store directory and ``server_name``, a ``cluster`` block whose ``routes`` name
  every node (a node ignores the route to itself), mutual TLS on the routes when the client
  side is secured. Streams declared with ``replicas=3`` (``XREGION_REPLICAS=3``) are R3:
  a write is acknowledged once a majority of nodes stored it; if the stream leader dies a
  new one is elected (4-9 s) and publishes in between are retried with the same
  ``Nats-Msg-Id`` (the relay does).
* :class:`EmbeddedCluster` runs the nodes as real processes (``xregion broker --cluster 3``
  and the chaos tests).
* :func:`hub_leafnodes_block` / :func:`leaf_remote_block`: a regional site's server as a
  *leaf node* of the hub site (ops/README.md "Topologies" explains the choice).
* :func:`write_ops_configs` writes the deployable files under ``ops/``.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import nats
from nats.errors import NoServersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import APIError, ServiceUnavailableError

from xregion.ops.certs import TlsFiles
from xregion.ops.server import BrokerError, EmbeddedServer, ServerConfig, free_port


def _tls_block(tls: TlsFiles, indent: str = "  ", *, tls_map: bool = False) -> list[str]:
    return [
        f"{indent}tls {{",
        f'{indent}  cert_file: "{tls.cert.as_posix()}"',
        f'{indent}  key_file: "{tls.key.as_posix()}"',
        f'{indent}  ca_file: "{tls.ca.as_posix()}"',
        f"{indent}  verify_and_map: true" if tls_map else f"{indent}  verify: true",
        f"{indent}  timeout: 2",
        f"{indent}}}",
    ]


@dataclass
class ClusterConfig:
    """``size`` JetStream nodes joined by routes."""

    store_root: Path
    size: int = 3
    host: str = "127.0.0.1"
    name: str = "xregion"
    client_ports: list[int] = field(default_factory=list)
    route_ports: list[int] = field(default_factory=list)
    route_hosts: list[str] = field(default_factory=list)
    """Where each node's route port is reached (one host per node; default ``host``)."""
    sync_always: bool = True
    auth_file: Path | None = None
    tls: TlsFiles | None = None
    """Client TLS; also used (mutual) on the routes unless ``route_tls`` is given."""
    route_tls: TlsFiles | None = None
    tls_map: bool = False
    """Client certificates are the users (``verify_and_map``; :mod:`xregion.ops.identities`)."""
    pinned_file: Path | None = None
    """The client certificates admitted (``pinned.conf``)."""
    conf_dir: Path | None = None
    """Where the rendered files live (for ``include``); default each node's store directory."""

    def __post_init__(self) -> None:
        if self.size < 1:
            raise BrokerError("a cluster needs at least one node")
        if not self.client_ports:
            self.client_ports = [free_port(self.host) for _ in range(self.size)]
        if not self.route_ports:
            self.route_ports = [free_port(self.host) for _ in range(self.size)]
        if not self.route_hosts:
            self.route_hosts = [self.host] * self.size
        if not (len(self.client_ports) == len(self.route_ports) == len(self.route_hosts) == self.size):
            raise BrokerError("one client port, route port and route host per node")

    def server_name(self, index: int) -> str:
        return f"{self.name}-n{index + 1}"

    def cluster_block(self, index: int) -> list[str]:
        routes = ", ".join(f"nats-route://{h}:{p}" for h, p in zip(self.route_hosts, self.route_ports, strict=True))
        lines = [
            "cluster {",
            f'  name: "{self.name}"',
            f"  listen: {self.host}:{self.route_ports[index]}",
            f"  routes: [{routes}]",
        ]
        route_tls = self.route_tls or self.tls
        if route_tls is not None:
            lines += _tls_block(route_tls)
        lines.append("}")
        return lines

    def node(self, index: int) -> ServerConfig:
        return ServerConfig(
            store_dir=self.store_root / f"n{index + 1}",
            port=self.client_ports[index],
            host=self.host,
            server_name=self.server_name(index),
            sync_always=self.sync_always,
            auth_file=self.auth_file,
            tls=self.tls,
            tls_map=self.tls_map,
            pinned_file=self.pinned_file,
            extra=self.cluster_block(index),
            conf_dir=self.conf_dir,
        )

    def nodes(self) -> list[ServerConfig]:
        return [self.node(i) for i in range(self.size)]


class EmbeddedCluster:
    """The nodes of a :class:`ClusterConfig` as real ``nats-server`` processes."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.servers = [EmbeddedServer(node) for node in config.nodes()]

    @property
    def url(self) -> str:
        """Every node's URL, comma-separated (what ``--nats-url`` takes)."""
        return ",".join(s.url for s in self.servers)

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    def start(self, timeout: float = 20.0) -> EmbeddedCluster:
        for server in self.servers:
            server.start(timeout)
        return self

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def kill(self, index: int) -> None:
        """SIGKILL one node (a crash); :meth:`restart` brings it back on its store."""
        self.servers[index].kill()

    def restart(self, index: int, timeout: float = 20.0) -> None:
        self.servers[index].start(timeout)

    def index_of(self, server_name: str) -> int:
        for i in range(self.config.size):
            if self.config.server_name(i) == server_name:
                return i
        raise BrokerError(f"no node named {server_name!r}")

    async def wait_jetstream(self, timeout: float = 30.0) -> None:
        """Until the JetStream meta group has a leader (a stream can be declared)."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                nc = await nats.connect(self.urls, connect_timeout=2, max_reconnect_attempts=1)
            except (NoServersError, OSError, NatsTimeoutError) as exc:
                last = exc
            else:
                try:
                    info = await nc.jetstream().account_info()
                    if info is not None:
                        return
                except (APIError, ServiceUnavailableError, NatsTimeoutError, TimeoutError) as exc:
                    last = exc
                finally:
                    await nc.close()
            await asyncio.sleep(0.25)
        raise BrokerError(f"JetStream of the cluster not ready within {timeout}s: {last!r}")

    def __enter__(self) -> EmbeddedCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- leaf nodes --------------------------------------------------------------------------

HUB_DOMAIN = "hub"
"""The hub's JetStream domain. A leaf node does not pass the plain ``$JS.API`` to the hub
(measured, nats-server 2.15: no responders); adapters at a regional site set
``XREGION_JS_DOMAIN=hub`` and reach it as ``$JS.hub.API``."""


def hub_leafnodes_block(
    host: str, port: int, tls: TlsFiles | None = None, *, tls_map: bool = False, pinned_file: Path | None = None
) -> list[str]:
    """The hub site accepts regional leaf nodes on ``host:port`` (mutual TLS when given;
    ``tls_map``: a link's certificate names the region whose account it joins, URI SAN
    ``urn:xregion:leaf:<REGION>``; ``pinned_file``: the certificates admitted)."""
    # no_advertise: the hub must not gossip its own leaf URLs to the leaf nodes, or a leaf
    # reconnects around the address it was given (a load balancer, a proxy, a firewall rule).
    lines = ["leafnodes {", f"  listen: {host}:{port}", "  no_advertise: true"]
    if tls is not None:
        block = _tls_block(tls, tls_map=tls_map)
        if pinned_file is not None:
            block.insert(-1, f'    include "{pinned_file.as_posix()}"')
        lines += block
    return [*lines, "}"]


def leaf_remote_block(
    hub_urls: list[str],
    tls: TlsFiles | None = None,
    reconnect_s: float = 1.0,
    *,
    accounts: dict[str, TlsFiles] | None = None,
) -> list[str]:
    """A regional site's server as a leaf node of the hub at ``hub_urls`` (``nats-leaf://``
    or ``tls://`` URLs of every hub node); it redials every ``reconnect_s`` while cut off.

    ``accounts`` (a secured bus): one link per local account, each authenticated with that
    party's certificate, so that the hub puts it into the party's account (whose imports
    reach the bus); without, one link of the global account with ``tls``."""
    urls = ", ".join(f'"{u}"' for u in hub_urls)
    links = accounts.items() if accounts else [(None, tls)]
    lines = ["leafnodes {", f'  reconnect: "{reconnect_s:g}s"', "  remotes: ["]
    for account, files in links:
        lines += ["    {", f"      urls: [{urls}]"]
        if account is not None:
            lines.append(f"      account: {account}")
        if files is not None:
            lines += _tls_block(files, "      ")
        lines.append("    }")
    return [*lines, "  ]", "}"]


# --- deployable files ------------------------------------------------------------------------


@dataclass
class OpsLayout:
    """Where the production files are on the servers (the systemd units use these)."""

    etc: Path = Path("/etc/xregion")
    data: Path = Path("/var/lib/xregion/nats")
    hosts: list[str] = field(default_factory=lambda: ["xregion-n1", "xregion-n2", "xregion-n3"])
    client_port: int = 4222
    route_port: int = 6222
    leaf_port: int = 7422

    @property
    def security(self) -> Path:
        return self.etc / "security"

    def server_tls(self) -> TlsFiles:
        tls = self.security / "tls"
        return TlsFiles(ca=tls / "ca.pem", cert=tls / "server.pem", key=tls / "server-key.pem")


def write_ops_configs(out: Path, size: int, regions: tuple[str, ...], layout: OpsLayout | None = None) -> list[Path]:
    """``out/cluster/n{i}.conf`` (one site, ``size`` nodes; on a node ``n{i}`` also accepts the
    regional leaf nodes) and ``out/leaf/<REGION>.conf`` (a regional site's leaf node), all
    with the accounts of ``auth.conf`` / ``leaf-auth.conf``, client certificates as users,
    pinned, and mutual TLS (clients, routes, leaf links; each leaf links its region's account
    with the region's leaf certificate, ``tls/leaf/<REGION>.pem``)."""
    layout = layout or OpsLayout()
    hosts = (layout.hosts * size)[:size] if len(layout.hosts) < size else layout.hosts[:size]
    tls = layout.server_tls()
    pinned = layout.security / "pinned.conf"
    cluster_dir = out / "cluster"
    cluster = ClusterConfig(
        store_root=layout.data,
        size=size,
        host="0.0.0.0",
        client_ports=[layout.client_port] * size,
        route_ports=[layout.route_port] * size,
        route_hosts=hosts,
        auth_file=layout.security / "auth.conf",
        tls=tls,
        tls_map=True,
        pinned_file=pinned,
        conf_dir=layout.etc / "cluster",
    )
    written = []
    cluster_dir.mkdir(parents=True, exist_ok=True)
    leaf_pinned = Path(os.path.relpath(pinned, layout.etc / "cluster"))
    for i in range(size):
        node = cluster.node(i)
        node.store_dir = layout.data / f"n{i + 1}"
        node.js_domain = HUB_DOMAIN
        node.extra += hub_leafnodes_block("0.0.0.0", layout.leaf_port, tls, tls_map=True, pinned_file=leaf_pinned)
        path = cluster_dir / f"n{i + 1}.conf"
        path.write_text(node.render(), encoding="utf-8")
        written.append(path)
    leaf_dir = out / "leaf"
    leaf_dir.mkdir(parents=True, exist_ok=True)
    hub = [f"tls://{h}:{layout.leaf_port}" for h in hosts]
    for region in regions:
        link = TlsFiles(
            ca=tls.ca,
            cert=layout.security / "tls" / "leaf" / f"{region}.pem",
            key=layout.security / "tls" / "leaf" / f"{region}-key.pem",
        )
        leaf = ServerConfig(
            store_dir=layout.data / f"leaf-{region}",
            port=layout.client_port,
            host="0.0.0.0",
            server_name=f"xregion-leaf-{region}",
            auth_file=layout.security / "leaf-auth.conf",
            tls=tls,
            tls_map=True,
            pinned_file=pinned,
            extra=leaf_remote_block(hub, accounts={region: link}),
            conf_dir=layout.etc / "leaf",
            jetstream=False,  # the region's adapter outbox is its local store (ops/README.md)
        )
        path = leaf_dir / f"{region}.conf"
        path.write_text(leaf.render(), encoding="utf-8")
        written.append(path)
    return written
