"""What the operator identity (``ADMIN``) does: declare the bus's topology, back up and
restore its streams (:mod:`xregion.ops.backup`).

Regions connect with scoped identities that may not create streams or consumers (a region
allowed ``$JS.API.CONSUMER.CREATE.XREGION.>`` could give itself a consumer on another
region's traffic), so the operator declares them all: both streams, the object store, every
configured region's durable consumer and the coordinator's. ``xregion broker`` does it when
it starts; ``xregion ops apply-topology`` does it against an external server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from xregion.ops.backup import StreamBackup, backup_streams, restore_streams
from xregion.permissions import OPERATOR
from xregion.runtime.connection import ClientIdentity, connect
from xregion.runtime.settings import RuntimeSettings
from xregion.runtime.topology import TopologyReport, ensure_topology


@asynccontextmanager
async def operator_connection(url: str, identity: ClientIdentity | None = None) -> AsyncIterator[Any]:
    """A connection as the operator (``ADMIN``), closed afterwards."""
    nc = await connect(url, "xregion-operator", identity or ClientIdentity(party=OPERATOR))
    try:
        yield nc
    finally:
        await nc.close()


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
    async with operator_connection(url, identity) as nc:
        return await ensure_topology(nc.jetstream(), settings, regions, versions=versions)


async def backup(
    url: str, out: Path, streams: tuple[str, ...], *, identity: ClientIdentity | None = None
) -> list[StreamBackup]:
    """Connect as the operator and back ``streams`` up into ``out/<stream>``."""
    async with operator_connection(url, identity) as nc:
        return await backup_streams(nc, streams, out)


async def restore(url: str, directory: Path, *, identity: ClientIdentity | None = None) -> list[dict[str, Any]]:
    """Connect as the operator and restore every stream backed up in ``directory``."""
    async with operator_connection(url, identity) as nc:
        return await restore_streams(nc, directory)
