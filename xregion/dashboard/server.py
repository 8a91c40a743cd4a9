"""Serving the dashboard with uvicorn inside the caller's event loop (next to the coordinator)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import uvicorn

from xregion.dashboard.app import Dashboard


class _Server(uvicorn.Server):
    """uvicorn without its signal handling. uvicorn's own catches SIGTERM/SIGINT, shuts the
    server down, then raises the signal again once ``serve()`` returns: the process dies of
    it (exit -15) inside the server's task, before whoever runs the server has stopped
    anything else (the coordinator's connection, its stores). The process that owns the
    signals (:func:`xregion.dashboard.run.serve_dashboard`) stops the server itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class DashboardServer:
    """A uvicorn server for a :class:`Dashboard`, as a task of the running loop.

    ``port=0`` picks a free port; :attr:`url` is known once :meth:`start` returned. It
    handles no signals: :meth:`stop` it (``serve_dashboard`` does on SIGTERM/SIGINT).
    """

    def __init__(self, dashboard: Dashboard, *, host: str = "127.0.0.1", port: int = 8080) -> None:
        self.dashboard = dashboard
        self.host = host
        self.port = port
        self.config = uvicorn.Config(
            dashboard.app,
            host=host,
            port=port,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=3,
        )
        self.server = _Server(self.config)
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self, timeout: float = 10.0) -> DashboardServer:
        self._task = asyncio.create_task(self.server.serve())
        async with asyncio.timeout(timeout):
            while not self.server.started:
                if self._task.done():
                    self._task.result()  # raises what stopped it (e.g. the port is taken)
                    raise RuntimeError("the dashboard server stopped while starting")
                await asyncio.sleep(0.02)
        if self.port == 0:
            self.port = int(self.server.servers[0].sockets[0].getsockname()[1])
        return self

    async def wait(self) -> None:
        """Until the server stops (``should_exit``, :meth:`stop`)."""
        if self._task is not None:
            await self._task

    async def stop(self, timeout: float = 10.0) -> None:
        self.dashboard.close()
        self.server.should_exit = True
        if self._task is None:
            return
        try:
            async with asyncio.timeout(timeout):
                await self._task
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._task = None


__all__ = ["DashboardServer"]
