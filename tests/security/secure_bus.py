"""Test helper: a real nats-server secured with the identities and certificates that
``xregion ops gen-config`` and ``gen-certs`` generate, real adapters and raw connections
under those identities, and the two logs a violation must show up in.
"""

from __future__ import annotations

import io
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from tests.bus import eventually
from xregion.adapter import Adapter, Delivery
from xregion.lifecycle import ReferralState
from xregion.ops.security import SecurityDir
from xregion.ops.server import EmbeddedServer
from xregion.runtime.connection import ClientIdentity, connect
from xregion.runtime.settings import RuntimeSettings
from xregion.signing import KeyRoster, Signer

SETTINGS = RuntimeSettings(ack_wait_s=5.0, max_deliver=5)
"""The settings of the operator's topology and of every adapter (so nothing drifts)."""


@dataclass
class LogCapture:
    """Our structured log (JSON lines) as the tests see it."""

    stream: io.StringIO = field(default_factory=io.StringIO)

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.stream.getvalue().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def security_events(self, kind: str | None = None, **match: str) -> list[dict[str, Any]]:
        return [
            line
            for line in self.lines()
            if line.get("event") == "security event"
            and (kind is None or line.get("kind") == kind)
            and all(str(line.get(k, "")) == v for k, v in match.items())
        ]

    async def wait_violation(self, subject: str, party: str, timeout: float = 5.0) -> dict[str, Any]:
        async def found() -> dict[str, Any] | None:
            hits = self.security_events("permission_violation", party=party)
            return next((h for h in hits if h["subject"].lower() == subject.lower()), None)

        return await eventually(found, timeout, f"a security event: {party} violating {subject}")


@dataclass
class SecureBus:
    server: EmbeddedServer
    security: SecurityDir
    root: Path
    signers: dict[str, Signer]
    roster: KeyRoster
    log: LogCapture
    adapters: dict[str, Adapter] = field(default_factory=dict)
    received: dict[str, list[Delivery]] = field(default_factory=dict)
    connections: list[Client] = field(default_factory=list)

    def recorder(self, region: str) -> Callable[[Delivery], Awaitable[None]]:
        async def handle(delivery: Delivery) -> None:
            self.received.setdefault(region, []).append(delivery)

        return handle

    async def start(self, *regions: str) -> list[Adapter]:
        """Real adapters, each connecting with nothing but its own generated identity."""
        started = []
        for region in regions:
            adapter = Adapter(
                region,
                signer=self.signers[region],
                roster=self.roster,
                nats_url=self.server.url,
                store_path=self.root / f"{region}.db",
                settings=self.security.settings_for(region, SETTINGS),
                handler=self.recorder(region),
            )
            await adapter.start()
            self.adapters[region] = adapter
            started.append(adapter)
        return started

    async def connect(self, party: str, identity: ClientIdentity | None = None) -> Client:
        """A raw nats-py connection as ``party`` (our connection options: violations are logged)."""
        nc = await connect(self.server.url, f"test-{party}", identity or self.security.identity(party))
        self.connections.append(nc)
        return nc

    async def state(self, region: str, referral_id: str, wanted: str, timeout: float = 10.0) -> ReferralState:
        async def check() -> ReferralState | None:
            state = await self.adapters[region].client.referral(referral_id)
            return state if state is not None and state.state == wanted else None

        return await eventually(check, timeout, f"{region} to see {referral_id} in state {wanted}")

    def server_log(self) -> str:
        return self.server.log_file.read_text(errors="replace")

    async def server_logged(self, *fragments: str, timeout: float = 5.0) -> str:
        """Wait for a server log line holding every fragment; return it."""

        async def found() -> str | None:
            return next((ln for ln in self.server_log().splitlines() if all(f in ln for f in fragments)), None)

        return await eventually(found, timeout, f"the server log to mention {fragments}")

    async def stream_subjects(self, stream: str = "XREGION") -> list[str]:
        """Every subject stored in ``stream``, read as the auditor."""
        nc = await self.connect("AUDIT")
        js = nc.jetstream()
        info = await js.stream_info(stream)
        if info.state.messages == 0:
            return []
        return [(await js.get_msg(stream, seq)).subject for seq in range(info.state.first_seq, info.state.last_seq + 1)]

    async def stop(self) -> None:
        for adapter in list(self.adapters.values()):
            await adapter.stop()
        self.adapters.clear()
        for nc in self.connections:
            if not nc.is_closed:
                await nc.close()
        self.connections.clear()
