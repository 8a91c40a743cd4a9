"""Running the gateway next to an adapter: uvicorn in the adapter's event loop, plus the
webhook dispatcher."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog
import uvicorn

from xregion.adapter.idempotency import ensure_schema as ensure_idempotency
from xregion.errors import ConfigError
from xregion.gateway import webhooks
from xregion.gateway.app import GatewayState, create_app
from xregion.runtime.consumer import Handler

log = structlog.get_logger("xregion.gateway")

TOKEN_ENV = "XREGION_HTTP_TOKEN"
SECRET_ENV = "XREGION_WEBHOOK_SECRET"
OPEN_FLAG = "--http-open-without-authentication"


class GatewayUnauthenticated(ConfigError):
    """The HTTP gateway was asked to run with no way to authenticate its clients (no bearer
    token, no client CA for mutual TLS) and was not explicitly told to run open: anyone who
    reaches its port could submit events signed as the region. Refused before the adapter
    starts."""

    code = "gateway_unauthenticated"


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the adapter's process owns the signals
        yield


def parse_listen(text: str) -> tuple[str, int]:
    """``:8081``, ``0.0.0.0:8081`` or ``8081``."""
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


class Gateway:
    """The HTTP gateway of one adapter. Pass :attr:`handler` to the adapter, then ``start(adapter)``."""

    def __init__(
        self,
        *,
        token: str | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        max_attempts: int = 8,
        backoff_s: float = 1.0,
        max_backoff_s: float = 300.0,
        inner: Handler | None = None,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        client_ca: Path | None = None,
        open_without_authentication: bool = False,
    ) -> None:
        """``tls_cert``/``tls_key``: serve HTTPS; with ``client_ca`` as well, mutual TLS — only
        clients with a certificate issued by that CA get through the handshake (the bearer
        token, if set, is required on top).

        ``token`` (default: ``XREGION_HTTP_TOKEN``; empty counts as unset) or ``client_ca`` is
        required: without either the gateway raises :class:`GatewayUnauthenticated`, unless
        ``open_without_authentication`` (development only: anyone who reaches the port submits
        events as the region)."""
        self.token = (token if token is not None else os.environ.get(TOKEN_ENV)) or None
        self.open_without_authentication = open_without_authentication
        if self.token is None and client_ca is None and not open_without_authentication:
            raise GatewayUnauthenticated(
                "the HTTP gateway has no authentication and would accept requests from anyone: "
                f"set {TOKEN_ENV} (a bearer token), or require client certificates with --http-client-ca "
                f"(mutual TLS, with --http-tls-cert/--http-tls-key), or pass {OPEN_FLAG} "
                "(development only)"
            )
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret if webhook_secret is not None else os.environ.get(SECRET_ENV, "")
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.tls_cert, self.tls_key, self.client_ca = tls_cert, tls_key, client_ca
        if client_ca is not None and (tls_cert is None or tls_key is None):
            raise ConfigError("mutual TLS (a client CA) needs the gateway's own certificate and key")
        self.queue = webhooks.WebhookQueue(inner)
        self.dispatcher: webhooks.Dispatcher | None = None
        self.server: _Server | None = None
        self.url = ""
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def handler(self) -> Handler:
        return self.queue.handle

    async def start(self, adapter: Any, host: str = "127.0.0.1", port: int = 8081) -> Gateway:
        """Serve the API on ``host:port`` (0: a free port; see :attr:`url`) for a started adapter."""
        await ensure_idempotency(adapter.store)
        await webhooks.ensure_schema(adapter.store)
        if self.token is None and self.client_ca is None:
            log.warning(
                f"HTTP gateway WITHOUT AUTHENTICATION ({OPEN_FLAG}): anyone who reaches it submits events "
                f"as this region; development only, set {TOKEN_ENV} or --http-client-ca",
                region=adapter.region,
            )
        if self.webhook_url:
            self.dispatcher = webhooks.Dispatcher(
                adapter.store,
                self.queue,
                self.webhook_url,
                self.webhook_secret,
                max_attempts=self.max_attempts,
                backoff_s=self.backoff_s,
                max_backoff_s=self.max_backoff_s,
                region=adapter.region,
            )
            self._tasks.append(asyncio.create_task(self.dispatcher.run()))
        state = GatewayState(
            adapter.region,
            adapter.client,
            adapter.store,
            self.token,
            self.dispatcher,
            tuple(adapter.config.regions.codes),
        )
        tls: dict[str, Any] = {}
        if self.tls_cert is not None:
            tls = {"ssl_certfile": str(self.tls_cert), "ssl_keyfile": str(self.tls_key)}
            if self.client_ca is not None:
                tls |= {"ssl_ca_certs": str(self.client_ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
        config = uvicorn.Config(create_app(state), host=host, port=port, log_level="warning", lifespan="off", **tls)
        self.server = _Server(config)
        self._tasks.append(asyncio.create_task(self.server.serve()))
        deadline = asyncio.get_running_loop().time() + 10.0
        while not self.server.started:
            if self._tasks[-1].done():
                self._tasks[-1].result()
                raise RuntimeError(f"HTTP gateway did not start on {host}:{port}")
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"HTTP gateway did not start on {host}:{port} within 10s")
            await asyncio.sleep(0.02)
        bound = self.server.servers[0].sockets[0].getsockname()
        self.url = f"{'https' if self.tls_cert else 'http'}://{bound[0]}:{bound[1]}"
        log.info("HTTP gateway listening", region=adapter.region, url=self.url, webhook=self.webhook_url)
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True  # uvicorn's task ends by itself, closing connections
        for task in self._tasks[:-1] if self.server is not None else self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5.0)
        for task in self._tasks:
            if not task.done():
                task.cancel()
        self._tasks = []


async def serve(adapter: Any, *, gateway: Gateway | None, listen: str | None, bridge: Any = None) -> None:
    """``xregion adapter run`` with ``--http`` and/or ``--sql-bridge``: run until SIGTERM/SIGINT."""
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await adapter.start()
    try:
        if gateway is not None:
            host, port = parse_listen(listen or ":8081")
            await gateway.start(adapter, host, port)
        if bridge is not None:
            await bridge.start(adapter)
        await stop.wait()
    finally:
        if gateway is not None:
            await gateway.stop()
        if bridge is not None:
            await bridge.stop()
        await adapter.stop()
