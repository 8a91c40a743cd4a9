"""The coordinator and its dashboard in one event loop (``xregion dashboard``)."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from xregion.coordinator.service import Coordinator
from xregion.dashboard.app import Dashboard, Readiness
from xregion.dashboard.server import DashboardServer
from xregion.permissions import COORDINATOR_CONSUMER
from xregion.runtime.connection import connect
from xregion.runtime.metrics import BusProbe
from xregion.runtime.topology import ensure_topology

log = structlog.get_logger("xregion.dashboard")


async def declare_coordinator_consumer(coordinator: Coordinator) -> None:
    """On an open development server (no NKey identity) declare the streams and the
    ``coordinator`` durable, as an adapter declares its own; a secured server's operator
    has declared them (``xregion broker`` / ``xregion ops apply-topology``)."""
    if coordinator.identity.nkey_seed is not None:
        return
    nc = await connect(coordinator.nats_url, "xregion-dashboard-topology", coordinator.identity)
    try:
        await ensure_topology(nc.jetstream(), coordinator.settings, (), coordinator=True)
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


class DashboardStack:
    """A started :class:`Coordinator` serving a :class:`Dashboard` over uvicorn.

    Ready (``/health/ready``) once connected to NATS and the projection has caught up with
    the ``coordinator`` durable (nothing pending) at least once since start.
    """

    def __init__(self, coordinator: Coordinator, *, host: str = "127.0.0.1", port: int = 8080) -> None:
        self.coordinator = coordinator
        self.host = host
        self.port = port
        self.dashboard: Dashboard | None = None
        self.server: DashboardServer | None = None
        self.probe: BusProbe | None = None
        self.caught_up = False

    @property
    def url(self) -> str:
        assert self.server is not None, "not started"
        return self.server.url

    async def start(self) -> DashboardStack:
        await declare_coordinator_consumer(self.coordinator)
        await self.coordinator.start()
        regions = self.coordinator.config.regions
        self.probe = BusProbe(self.coordinator.js, self.coordinator.settings, regions.codes)
        self.dashboard = Dashboard(
            self.coordinator.projection, regions, ready=self.ready, refresh_metrics=self.probe.refresh
        )
        self.server = await DashboardServer(self.dashboard, host=self.host, port=self.port).start()
        log.info("dashboard serving", url=self.server.url)
        return self

    async def ready(self) -> Readiness:
        nc = self.coordinator.nc
        connected = bool(nc is not None and nc.is_connected)
        checks: dict[str, object] = {"nats_connected": connected, "last_seq": self.coordinator.projection.last_seq()}
        if connected:
            try:
                info = await self.coordinator.js.consumer_info(
                    self.coordinator.settings.stream, COORDINATOR_CONSUMER, timeout=2.0
                )
                pending = int(info.num_pending or 0)
                checks["pending"] = pending
                self.caught_up = self.caught_up or pending == 0
            except Exception as exc:
                checks["consumer_info_error"] = type(exc).__name__
                connected = False
        checks["caught_up"] = self.caught_up
        return Readiness(connected and self.caught_up, checks)

    async def wait(self) -> None:
        assert self.server is not None
        await self.server.wait()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
        await self.coordinator.stop()


async def serve_dashboard(coordinator: Coordinator, *, host: str, port: int) -> None:
    """Run until uvicorn is told to stop (SIGINT/SIGTERM), then stop the coordinator."""
    stack = await DashboardStack(coordinator, host=host, port=port).start()
    try:
        await stack.wait()
    finally:
        with contextlib.suppress(asyncio.CancelledError):
            await stack.stop()


__all__ = ["DashboardStack", "declare_coordinator_consumer", "serve_dashboard"]
