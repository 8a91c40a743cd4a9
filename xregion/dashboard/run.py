"""The coordinator and its dashboard in one event loop (``xregion dashboard``)."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import structlog

from xregion.coordinator.incidents import Incidents
from xregion.coordinator.service import Coordinator
from xregion.dashboard.app import Dashboard, Readiness
from xregion.dashboard.server import DashboardServer
from xregion.runtime.connection import connect
from xregion.runtime.metrics import PROJECTION_LAG, BusProbe
from xregion.runtime.topology import ensure_topology

log = structlog.get_logger("xregion.dashboard")


async def declare_streams(coordinator: Coordinator) -> None:
    """On an open development server (no identity) declare the streams, as an adapter does;
    a secured server's operator has declared them (``xregion broker`` / ``xregion ops
    apply-topology``). The coordinator needs no consumer: it reads by sequence."""
    if coordinator.identity.authenticated:
        return
    nc = await connect(coordinator.nats_url, "xregion-dashboard-topology", coordinator.identity)
    try:
        await ensure_topology(nc.jetstream(), coordinator.settings, ())
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


class DashboardStack:
    """A started :class:`Coordinator` serving a :class:`Dashboard` over uvicorn.

    Ready (``/health/ready``) once connected to NATS and the projection has caught up with
    the stream (its position at the stream's last sequence) at least once since start; the
    answer names the position (``last_seq``), the stream's ``stream_last_seq`` and ``lag``.
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
        await declare_streams(self.coordinator)
        await self.coordinator.start()
        regions = self.coordinator.config.regions
        self.probe = BusProbe(self.coordinator.js, self.coordinator.settings, regions.codes)
        incidents = Incidents(
            lambda: self.coordinator.nc,
            self.coordinator.settings.dead_letter_stream,
            roster=lambda: self.coordinator.rosters.roster,
        )
        self.dashboard = Dashboard(
            self.coordinator.projection,
            regions,
            ready=self.ready,
            refresh_metrics=self.refresh_metrics,
            incidents=incidents,
        )
        self.server = await DashboardServer(self.dashboard, host=self.host, port=self.port).start()
        log.info("dashboard serving", url=self.server.url)
        return self

    async def refresh_metrics(self) -> None:
        """Before a ``/metrics`` scrape: the regions' consumer lag, dead letters, the projection's lag."""
        assert self.probe is not None
        await self.probe.refresh()
        with contextlib.suppress(Exception):
            PROJECTION_LAG.set((await self.coordinator.lag()).lag)

    async def ready(self) -> Readiness:
        nc = self.coordinator.nc
        connected = bool(nc is not None and nc.is_connected)
        checks: dict[str, object] = {"nats_connected": connected, "last_seq": self.coordinator.projection.last_seq()}
        if connected:
            try:
                lag = await self.coordinator.lag()
                checks.update(lag.to_json())
                PROJECTION_LAG.set(lag.lag)
                self.caught_up = self.caught_up or lag.lag == 0
            except Exception as exc:
                checks["stream_info_error"] = getattr(exc, "code", type(exc).__name__)
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
    """Run until SIGTERM or SIGINT, then stop the web server and the coordinator (its
    connection and stores closed) and return: ``xregion dashboard`` exits 0."""
    stack = await DashboardStack(coordinator, host=host, port=port).start()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)

    def shut_down(sig: signal.Signals) -> None:
        log.info("dashboard stopping", signal=sig.name)
        assert stack.dashboard is not None and stack.server is not None
        stack.dashboard.close()  # live-update streams end now, not at uvicorn's graceful timeout
        stack.server.server.should_exit = True

    for sig in signals:
        loop.add_signal_handler(sig, shut_down, sig)
    try:
        await stack.wait()
    finally:
        with contextlib.suppress(asyncio.CancelledError):
            await stack.stop()
        for sig in signals:
            loop.remove_signal_handler(sig)
    log.info("dashboard stopped", store=str(coordinator.projection.path))


__all__ = ["DashboardStack", "declare_streams", "serve_dashboard"]
