"""A regional site's secured leaf node (ops/leaf/<REGION>.conf as ``gen-config --cluster``
writes it, here on loopback): BJ's adapter connects to its own site's leaf node with its own
certificate, the leaf links BJ's account to BJ's account on the hub with BJ's certificate,
and a lead goes BJ→TJ and back with receipts; BJ reaches nothing at the hub that its account
does not import."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bus import eventually
from tests.security.conftest import REGIONS
from tests.security.secure_bus import SETTINGS
from xregion.adapter import Adapter, Delivery
from xregion.examples import PAYLOADS
from xregion.ops.certs import leaf_files, server_files
from xregion.ops.cluster import HUB_DOMAIN, hub_leafnodes_block, leaf_remote_block
from xregion.ops.identities import LEAF_AUTH_FILE, PINNED_FILE
from xregion.ops.operator import apply_topology
from xregion.ops.security import SecurityDir
from xregion.ops.server import EmbeddedServer, ServerConfig, free_port
from xregion.permissions import OPERATOR
from xregion.runtime.connection import connect
from xregion.signing import KeyRoster, Signer

pytestmark = pytest.mark.anyio


@pytest.fixture
def sites(tmp_path: Path, security_dir: SecurityDir) -> Iterator[tuple[EmbeddedServer, EmbeddedServer]]:
    leaf_port = free_port()
    hub = security_dir.secure(ServerConfig(store_dir=tmp_path / "hub", port=free_port(), js_domain=HUB_DOMAIN))
    hub.extra += hub_leafnodes_block(
        "127.0.0.1",
        leaf_port,
        server_files(security_dir.root),
        tls_map=True,
        pinned_file=Path("../security/pinned.conf"),
    )
    leaf = ServerConfig(
        store_dir=tmp_path / "leaf-BJ",
        port=free_port(),
        server_name="xregion-leaf-BJ",
        auth_file=security_dir.root / LEAF_AUTH_FILE,
        tls=server_files(security_dir.root),
        tls_map=True,
        pinned_file=security_dir.root / PINNED_FILE,
        extra=leaf_remote_block([f"tls://127.0.0.1:{leaf_port}"], accounts={"BJ": leaf_files(security_dir.root, "BJ")}),
        jetstream=False,
    )
    servers = [EmbeddedServer(hub).start(), EmbeddedServer(leaf).start()]
    try:
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.kill()


async def test_a_region_on_its_secured_leaf_node_works_with_its_own_identity(
    sites: tuple[EmbeddedServer, EmbeddedServer],
    security_dir: SecurityDir,
    tmp_path: Path,
    signers: dict[str, Signer],
    roster: KeyRoster,
) -> None:
    hub, leaf = sites
    await apply_topology(hub.url, REGIONS, identity=security_dir.identity(OPERATOR), settings=SETTINGS)
    received: dict[str, list[Delivery]] = {"BJ": [], "TJ": []}
    adapters = []
    for region, server in (("BJ", leaf), ("TJ", hub)):

        async def handle(delivery: Delivery, region: str = region) -> None:
            received[region].append(delivery)

        adapter = Adapter(
            region,
            signer=signers[region],
            roster=roster,
            nats_url=server.url,
            store_path=tmp_path / f"{region}.db",
            settings=security_dir.settings_for(region, SETTINGS).model_copy(
                update={"js_domain": HUB_DOMAIN if region == "BJ" else None}
            ),
            handler=handle,
        )
        adapters.append(adapter)
    bj, tj = adapters
    try:
        probe = await connect(leaf.url, "probe-BJ", security_dir.identity("BJ"))

        async def linked() -> bool:
            try:
                await probe.request(f"$JS.{HUB_DOMAIN}.API.STREAM.INFO.XREGION", b"", timeout=1.0)
            except Exception:
                return False
            return True

        await eventually(linked, 20.0, "the bus's JetStream API to answer BJ at its leaf node (the link up)")
        await probe.close()
        await tj.start()
        await bj.start()
        sent = await bj.client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
        rid = sent.envelope.subject

        async def answered() -> bool:
            state = await bj.client.referral(rid)
            return state is not None and state.state == "received"

        await eventually(answered, 20.0, "TJ's receipt to reach BJ through the leaf link")
        assert [d.event.envelope.id for d in received["TJ"]] == [sent.envelope.id]
        assert [d.event.envelope.event_type for d in received["BJ"]] == ["lead.received"]
        assert "Violation" not in hub.log_tail(200) + leaf.log_tail(200)
    finally:
        for adapter in adapters:
            await adapter.stop()
