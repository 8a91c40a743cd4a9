"""What the operator identity (``ADMIN``) does: declare the bus's topology.

Regions connect with scoped identities that may not create streams or consumers (a region
allowed ``$JS.API.CONSUMER.CREATE.XREGION.>`` could give itself a consumer on another
region's traffic), so the operator declares them all: both streams, the object store, every
configured region's durable consumer and the coordinator's. ``xregion broker`` does it when
it starts; ``xregion ops apply-topology`` does it against an external server.
"""

from __future__ import annotations

from xregion.permissions import OPERATOR
from xregion.runtime.connection import ClientIdentity, connect
from xregion.runtime.settings import RuntimeSettings
from xregion.runtime.topology import TopologyReport, ensure_topology


async def apply_topology(
    url: str,
    regions: tuple[str, ...],
    *,
    identity: ClientIdentity | None = None,
    settings: RuntimeSettings | None = None,
    versions: tuple[str, ...] = ("v1",),
) -> TopologyReport:
    """Connect as the operator and declare everything that is missing (idempotent)."""
    settings = settings or RuntimeSettings()
    nc = await connect(url, "xregion-operator", identity or ClientIdentity(party=OPERATOR))
    try:
        return await ensure_topology(nc.jetstream(), settings, regions, versions=versions, coordinator=True)
    finally:
        await nc.close()
