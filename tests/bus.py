"""Test helper: real adapters on a real nats-server, with recording handlers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import nats
from nats.aio.client import Client

from xregion.adapter import Adapter, Delivery
from xregion.lifecycle import ReferralState
from xregion.ops.server import EmbeddedServer
from xregion.runtime.alerts import SecurityAlert, read_security_alerts
from xregion.runtime.deadletter import DeadLetter, read_dead_letters
from xregion.runtime.settings import RuntimeSettings
from xregion.signing import KeyRoster, Signer

T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float = 10.0, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


@dataclass
class Bus:
    server: EmbeddedServer
    root: Path
    signers: dict[str, Signer]
    roster: KeyRoster
    settings: RuntimeSettings = field(default_factory=lambda: RuntimeSettings(ack_wait_s=5.0, max_deliver=5))
    adapters: dict[str, Adapter] = field(default_factory=dict)
    received: dict[str, list[Delivery]] = field(default_factory=dict)
    keys_dir: Path | None = None
    """Set it to start adapters from a keys directory (roster and private key files, reloaded
    when they change) instead of the in-memory ``signers`` and ``roster``."""

    def recorder(self, region: str) -> Callable[[Delivery], Awaitable[None]]:
        async def handle(delivery: Delivery) -> None:
            self.received.setdefault(region, []).append(delivery)

        return handle

    async def start(
        self, *regions: str, handler: Callable[[Delivery], Awaitable[None]] | None = None, **kwargs: Any
    ) -> list[Adapter]:
        started = []
        for region in regions:
            common: dict[str, Any] = {
                "nats_url": self.server.url,
                "store_path": self.root / f"{region}.db",
                "settings": self.settings,
                "handler": handler or self.recorder(region),
                **kwargs,
            }
            if self.keys_dir is not None:
                adapter = Adapter.from_keys_dir(region, self.keys_dir, **common)
            else:
                adapter = Adapter(region, signer=self.signers[region], roster=self.roster, **common)
            await adapter.start()
            self.adapters[region] = adapter
            started.append(adapter)
        return started

    async def stop(self) -> None:
        for adapter in list(self.adapters.values()):
            await adapter.stop()
        self.adapters.clear()

    async def state(self, region: str, referral_id: str, wanted: str, timeout: float = 10.0) -> ReferralState:
        async def check() -> ReferralState | None:
            state = await self.adapters[region].client.referral(referral_id)
            return state if state is not None and state.state == wanted else None

        return await eventually(check, timeout, f"{region} to see {referral_id} in state {wanted}")

    async def raw(self) -> Client:
        """A plain nats-py connection to the test server (for crafting bad input)."""
        return await nats.connect(self.server.url)

    async def dead_letters(self, region: str | None = None) -> list[DeadLetter]:
        nc = await self.raw()
        try:
            return await read_dead_letters(nc.jetstream(), self.settings.dead_letter_stream, region)
        finally:
            await nc.close()

    async def alerts(self, region: str | None = None) -> list[SecurityAlert]:
        """The security alerts raised (by ``region``), oldest first."""
        nc = await self.raw()
        try:
            return await read_security_alerts(nc.jetstream(), self.settings.dead_letter_stream, region)
        finally:
            await nc.close()
