"""Test helper: the coordinator and its dashboard, served by uvicorn on a free port in-process,
next to real adapters (``tests/bus.py``) on a real nats-server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tests.bus import Bus
from xregion.config import load_config
from xregion.coordinator.service import Coordinator
from xregion.dashboard.run import DashboardStack
from xregion.keys import init_keys


def use_keys_dir(bus: Bus, root: Path) -> Path:
    """Throw-away keys of every region and COORD in a keys directory the adapters start from."""
    keys_dir = root / "keys"
    init_keys(keys_dir, [*load_config().regions.codes, "COORD"])
    bus.keys_dir = keys_dir
    return keys_dir


@asynccontextmanager
async def dashboard_stack(bus: Bus, root: Path, **options: Any) -> AsyncIterator[DashboardStack]:
    """Start after the adapters (they declare the stream); stopped on exit. ``options``:
    more arguments of the :class:`Coordinator` (e.g. ``today``, ``escalate_every_s``)."""
    assert bus.keys_dir is not None, "call use_keys_dir(bus, tmp_path) before starting adapters"
    coordinator = Coordinator(
        nats_url=bus.server.url,
        keys_dir=bus.keys_dir,
        store_path=root / "coordinator.db",
        settings=bus.settings,
        **{"escalate_every_s": 3600.0, **options},
    )
    stack = await DashboardStack(coordinator, host="127.0.0.1", port=0).start()
    try:
        yield stack
    finally:
        await stack.stop()
