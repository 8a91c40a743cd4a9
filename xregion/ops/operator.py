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
from xregion.runtime.connection import ClientIdentity, connected
from xregion.runtime.settings import RuntimeSettings
from xregion.runtime.topology import TopologyReport, ensure_topology


@asynccontextmanager
async def operator_connection(
    url: str, identity: ClientIdentity | None = None, *, connect_timeout_s: float | None = None
) -> AsyncIterator[Any]:
    """A connection as the operator (``ADMIN``), closed afterwards (:func:`connected`:
    ``broker_unreachable`` after ``connect_timeout_s``, ``permission_denied``)."""
    async with connected(
        url, "xregion-operator", identity or ClientIdentity(party=OPERATOR), timeout_s=connect_timeout_s
    ) as nc:
        yield nc


async def apply_topology(
    url: str,
    regions: tuple[str, ...],
    *,
    identity: ClientIdentity | None = None,
    settings: RuntimeSettings | None = None,
    versions: tuple[str, ...] = ("v1",),
    connect_timeout_s: float | None = None,
) -> TopologyReport:
    """Connect as the operator and declare everything that is missing (idempotent)."""
    settings = settings or RuntimeSettings()
    async with operator_connection(url, identity, connect_timeout_s=connect_timeout_s) as nc:
        return await ensure_topology(nc.jetstream(), settings, regions, versions=versions)


async def backup(
    url: str,
    out: Path,
    streams: tuple[str, ...],
    *,
    identity: ClientIdentity | None = None,
    connect_timeout_s: float | None = None,
) -> list[StreamBackup]:
    """Connect as the operator and back ``streams`` up into ``out/<stream>``."""
    async with operator_connection(url, identity, connect_timeout_s=connect_timeout_s) as nc:
        return await backup_streams(nc, streams, out)


async def restore(
    url: str, directory: Path, *, identity: ClientIdentity | None = None, connect_timeout_s: float | None = None
) -> list[dict[str, Any]]:
    """Connect as the operator and restore every stream backed up in ``directory``."""
    async with operator_connection(url, identity, connect_timeout_s=connect_timeout_s) as nc:
        return await restore_streams(nc, directory)
