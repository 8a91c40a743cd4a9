"""The secured three-node cluster, as ``xregion broker --cluster 3`` and ops/cluster run it.

Three real ``nats-server`` processes with the generated users (``auth.conf``) and mutual TLS
on client connections and routes; the operator (ADMIN) declares R3 streams; BJ and TJ, each
with nothing but its own identity, exchange a lead; the operator backs the R3 stream up and
restores it, replicas and all. (The chaos tests kill nodes of an open cluster; this proves
the secured configuration itself.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from tests.bus import eventually
from tests.security.conftest import REGIONS, generate
from tests.security.secure_bus import SETTINGS
from xregion.adapter import Adapter, Delivery
from xregion.examples import PAYLOADS
from xregion.ops.backup import backup_stream, restore_stream
from xregion.ops.cluster import ClusterConfig, EmbeddedCluster
from xregion.ops.operator import apply_topology
from xregion.ops.security import SecurityDir
from xregion.permissions import OPERATOR
from xregion.runtime.connection import connect
from xregion.signing import KeyRoster, Signer

pytestmark = pytest.mark.anyio

R3 = SETTINGS.model_copy(update={"replicas": 3})


@pytest.fixture
def security(tmp_path: Path) -> SecurityDir:
    return generate(tmp_path / "security")


@pytest.fixture
def cluster(tmp_path: Path, security: SecurityDir) -> Iterator[EmbeddedCluster]:
    config = security.secure(ClusterConfig(store_root=tmp_path / "cluster", size=3))
    running = EmbeddedCluster(config).start()
    try:
        yield running
    finally:
        for server in running.servers:
            server.kill()


async def test_secured_cluster_carries_r3_traffic_and_its_backup(
    cluster: EmbeddedCluster, security: SecurityDir, tmp_path: Path, signers: dict[str, Signer], roster: KeyRoster
) -> None:
    admin_identity = security.identity(OPERATOR)

    async def declared() -> bool | None:  # until the meta group has elected a leader
        try:
            await apply_topology(cluster.url, REGIONS, identity=admin_identity, settings=R3)
        except Exception:
            await asyncio.sleep(0.2)
            return None
        return True

    await eventually(declared, 30.0, "the operator to declare the topology on the secured cluster")
    admin = await connect(cluster.url, "test-ADMIN", admin_identity)
    try:
        js = admin.jetstream()
        info = await js.stream_info("XREGION")
        assert info.config.num_replicas == 3
        assert info.cluster is not None and len(info.cluster.replicas or []) == 2

        received: dict[str, list[str]] = {"BJ": [], "TJ": []}

        def recorder(region: str) -> Callable[[Delivery], Awaitable[None]]:
            async def record(delivery: Delivery) -> None:
                received[region].append(delivery.event.envelope.event_type)

            return record

        adapters = []
        for region in ("BJ", "TJ"):
            adapter = Adapter(
                region,
                signer=signers[region],
                roster=roster,
                nats_url=cluster.url,
                store_path=tmp_path / f"{region}.db",
                settings=security.settings_for(region, R3),
                handler=recorder(region),
            )
            adapters.append(await adapter.start())
        bj = adapters[0]
        try:
            sent = await bj.client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])

            async def answered() -> bool | None:
                state = await bj.client.referral(sent.envelope.subject)
                return True if state is not None and state.state == "received" else None

            await eventually(answered, 20.0, "TJ's receipt to reach BJ through the secured cluster")
            assert received == {"TJ": ["lead.submitted"], "BJ": ["lead.received"]}
        finally:
            for adapter in adapters:
                await adapter.stop()

        stored = (await js.stream_info("XREGION")).state.messages
        assert stored == 2  # the lead and TJ's receipt
        backup = await backup_stream(admin, "XREGION", tmp_path / "backup")
        assert backup.messages == stored and backup.config["num_replicas"] == 3
        await js.delete_stream("XREGION")
        await restore_stream(admin, tmp_path / "backup")

        async def current() -> bool | None:
            restored = await js.stream_info("XREGION")
            replicas = restored.cluster.replicas if restored.cluster else None
            complete = restored.state.messages == stored and replicas and len(replicas) == 2
            return True if complete and all(r.current for r in replicas or []) else None

        await eventually(current, 20.0, "the restored stream on three nodes, every replica current")
    finally:
        await admin.close()
