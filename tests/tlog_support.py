"""Test helpers for the verifiable log: a log service on a test bus, read-backs for the auditor."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nats.aio.client import Client

from tests.bus import Bus
from xregion.auditor.checkpointer import Checkpointer
from xregion.auditor.replay import Record
from xregion.auditor.source import read_stream
from xregion.auditor.tlog import TransparencyLog
from xregion.auditor.tsa import TsaClient
from xregion.note import default_origin
from xregion.signing import Signer
from xregion.subjects import CHECKPOINT_ROOT

WITNESSES = ["BJ", "TJ", "HE"]


@dataclass
class LogHarness:
    """A log service (``xregion audit log run`` in-process) on the test bus."""

    bus: Bus
    nc: Client
    tlog: TransparencyLog
    service: Checkpointer

    @classmethod
    async def open(cls, bus: Bus, path: Path, audit: Signer, tsa: TsaClient | None = None, **kw: object) -> LogHarness:
        nc = await bus.raw()
        tlog = TransparencyLog(path, origin=default_origin(bus.settings.stream), stream=bus.settings.stream)
        service = Checkpointer(
            tlog,
            nc,
            audit,
            lambda: bus.roster,
            WITNESSES,
            stream=bus.settings.stream,
            dead_letter_stream=bus.settings.dead_letter_stream,
            tsa=tsa,
            **kw,  # type: ignore[arg-type]
        )
        return cls(bus, nc, tlog, service)

    async def close(self) -> None:
        self.tlog.close()
        await self.nc.close()

    async def witness_round(self, *regions: str) -> list[str]:
        """Every running adapter (or ``regions``) witnesses the log's latest checkpoint; the
        log collects the cosignatures. Returns the regions that cosigned."""
        cosigned = []
        for region, adapter in self.bus.adapters.items():
            if regions and region not in regions:
                continue
            assert adapter.witness is not None
            if await adapter.witness.step() is not None:
                cosigned.append(region)
        await self.service.collect()
        return cosigned

    async def round(self) -> int:
        """Sync, checkpoint, witnesses cosign, collect: the checkpoint's size."""
        await self.service.sync()
        await self.service.checkpoint()
        await self.witness_round()
        latest = self.tlog.latest_checkpoint()
        assert latest is not None
        return latest.size


async def stored_records(bus: Bus) -> tuple[list[Record], list[Record]]:
    """(the event stream's messages, the checkpoint subjects of the dead-letter stream)."""
    nc = await bus.raw()
    try:
        js = nc.jetstream()
        events = [r async for r in read_stream(js, bus.settings.stream)]
        published = [
            r async for r in read_stream(js, bus.settings.dead_letter_stream, filter_subject=f"{CHECKPOINT_ROOT}.>")
        ]
        return events, published
    finally:
        await nc.close()


async def storage_attacker(bus: Bus) -> None:
    """Declare the event stream so that messages can be deleted (the operator's storage is
    the attacker); call before the adapters start."""
    from xregion.runtime.topology import event_stream_config

    nc = await bus.raw()
    try:
        config = event_stream_config(bus.settings)
        config.deny_delete = False
        await nc.jetstream().add_stream(config)
    finally:
        await nc.close()


async def delete_message(bus: Bus, seq: int) -> None:
    nc = await bus.raw()
    try:
        await nc.jetstream().delete_msg(bus.settings.stream, seq)
    finally:
        await nc.close()
