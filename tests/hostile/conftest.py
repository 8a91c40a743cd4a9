"""Fixtures of the hostile-input suite (``bus`` and ``nats_server`` are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from nats.js import JetStreamContext

from tests.bus import Bus


@pytest.fixture
async def js(bus: Bus) -> AsyncIterator[JetStreamContext]:
    """A plain nats-py JetStream context on the test server: the hostile peer's connection."""
    nc = await bus.raw()
    try:
        yield nc.jetstream()
    finally:
        await nc.close()
