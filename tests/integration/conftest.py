"""Fixtures shared by the integration tests (the ``bus`` and ``nats_server`` ones are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from nats.js import JetStreamContext
from structlog.testing import capture_logs

from tests.bus import Bus


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    """Every structlog record emitted during the test."""
    with capture_logs() as entries:
        yield entries


@pytest.fixture
async def js(bus: Bus) -> AsyncIterator[JetStreamContext]:
    """A plain nats-py JetStream context on the test server, for crafting and reading raw messages."""
    nc = await bus.raw()
    try:
        yield nc.jetstream()
    finally:
        await nc.close()
