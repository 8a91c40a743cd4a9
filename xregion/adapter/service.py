"""The adapter service: one region's connection to the bus.

A FastStream application (broker connection with unlimited reconnects, lifecycle hooks,
AsyncAPI) hosting three parts that use the broker's nats-py connection directly on the hot
paths: the :class:`~xregion.runtime.outbox.Outbox` behind the typed
:class:`~xregion.adapter.client.RegionClient`, the :class:`~xregion.runtime.relay.Relay`
and the :class:`~xregion.runtime.consumer.Consumer`.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import structlog
from faststream import FastStream
from faststream.nats import NatsBroker
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential_jitter

from xregion.adapter.asyncapi import declare_channels
from xregion.adapter.client import RegionClient
from xregion.config import BusConfig, load_config
from xregion.contracts.catalog import CATALOG, Catalog
from xregion.keys import load_roster, load_signer
from xregion.runtime.consumer import Consumer, Delivery, Handler
from xregion.runtime.outbox import Outbox
from xregion.runtime.relay import Relay
from xregion.runtime.settings import RuntimeSettings
from xregion.runtime.store import Store
from xregion.runtime.topology import TopologyReport, ensure_topology
from xregion.signing import KeyRoster, Signer

log = structlog.get_logger("xregion.adapter")


async def log_only(delivery: Delivery) -> None:
    """Default handler: the event is in the adapter's inbox and referral view; nothing else."""


def connection_options(name: str) -> dict[str, Any]:
    """nats-py options for a process that must survive outages of any length.

    ``max_reconnect_attempts=-1``: the client never gives up, so it never reaches the
    closed state in which FastStream's pull loops spin (field notes, pitfall 1).
    """

    async def on_error(exc: Exception) -> None:
        log.warning("nats connection error", client=name, error=type(exc).__name__, detail=str(exc)[:200])

    async def on_disconnect() -> None:
        log.warning("nats disconnected", client=name)

    async def on_reconnect() -> None:
        log.info("nats reconnected", client=name)

    async def on_closed() -> None:
        log.info("nats connection closed", client=name)

    return {
        "name": name,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 1,
        "allow_reconnect": True,
        "error_cb": on_error,
        "disconnected_cb": on_disconnect,
        "reconnected_cb": on_reconnect,
        "closed_cb": on_closed,
    }


class Adapter:
    """One region's adapter. ``await start()``/``stop()``, or run :meth:`app` under FastStream."""

    def __init__(
        self,
        region: str,
        *,
        signer: Signer,
        roster: KeyRoster,
        nats_url: str,
        store_path: Path,
        config: BusConfig | None = None,
        settings: RuntimeSettings | None = None,
        agency: str | None = None,
        handler: Handler = log_only,
        catalog: Catalog = CATALOG,
        versions: tuple[str, ...] = ("v1",),
    ) -> None:
        self.config = config or load_config()
        self.region = self.config.regions.check_region(region)
        self.agency = agency or next(iter(self.config.regions.get(region).agencies))
        self.signer = signer
        self.roster = roster
        self.nats_url = nats_url
        self.settings = settings or RuntimeSettings()
        self.catalog = catalog
        self.versions = versions
        self.handler = handler
        self.broker = NatsBroker(nats_url.split(","), **connection_options(f"xregion-adapter-{region}"))
        declare_channels(self.broker, catalog, self.settings)
        self.store = Store(store_path)
        self.relay: Relay | None = None
        self.consumer: Consumer | None = None
        self.outbox = Outbox(
            self.store, signer, catalog=catalog, registry=self.config.regions, on_commit=self._wake_relay
        )
        self.client = RegionClient(
            region=self.region,
            agency=self.agency,
            outbox=self.outbox,
            store=self.store,
            catalog=catalog,
            deadlines=self.config.deadlines,
            object_store=self.settings.object_store,
        )
        self.topology: TopologyReport | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    def from_keys_dir(cls, region: str, keys_dir: Path, **kwargs: Any) -> Adapter:
        return cls(region, signer=load_signer(keys_dir, region), roster=load_roster(keys_dir), **kwargs)

    def _wake_relay(self) -> None:
        if self.relay is not None:
            self.relay.notify()

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> Adapter:
        """Open the store, connect (retrying until the broker answers), declare, run."""
        await self.store.open()
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(Exception),
            wait=wait_exponential_jitter(multiplier=0.2, max=5.0, jitter=0.5),
            stop=stop_after_delay(self.settings.connect_timeout_s * 12),
            reraise=True,
        ):
            with attempt:
                await self.broker.start()
        await self._run_parts()
        return self

    async def _run_parts(self) -> None:
        js = self.broker.connection.jetstream()
        self.topology = await ensure_topology(js, self.settings, (self.region,), versions=self.versions)
        for drift in self.topology.drift:
            log.warning("stream settings differ from xregion defaults; left unchanged", region=self.region, drift=drift)
        self.client._js = js
        self.relay = Relay(self.store, js, self.settings.stream)
        self.consumer = Consumer(
            region=self.region,
            js=js,
            store=self.store,
            roster=self.roster,
            registry=self.config.regions,
            catalog=self.catalog,
            settings=self.settings,
            handler=self.handler,
            submit=self._answer,
        )
        self._tasks = [
            asyncio.create_task(self._supervise("relay", self.relay.run)),
            asyncio.create_task(self._supervise("consumer", self.consumer.run)),
        ]
        log.info("adapter running", region=self.region, agency=self.agency, nats=self.nats_url)

    async def _supervise(self, name: str, run: Any) -> None:
        """Keep a part running: an unexpected crash is logged and the part restarted."""
        while True:
            try:
                await run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error(
                    "adapter part crashed; restarting",
                    part=name,
                    region=self.region,
                    error=type(exc).__name__,
                    detail=str(exc)[:300],
                )
                await asyncio.sleep(1.0)

    async def _answer(self, referral_id: str, event_type: str, data: dict[str, Any], causation_id: str) -> Any:
        """Automatic receipts from the consumer go through the same outbox as everything else."""
        return await self.client.send(referral_id, event_type, data, causation_id=causation_id)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        self._stopping = True
        nc = self.broker._connection
        if nc is not None and not nc.is_closed:
            # Flush pending acks, then close without draining: draining waits for the
            # consumer's long-poll fetch to expire (30 s) for nothing.
            with contextlib.suppress(Exception):
                await nc.flush(timeout=2)
            with contextlib.suppress(Exception):
                await nc.close()
        with contextlib.suppress(Exception):
            await self.broker.stop()
        await self.store.close()

    async def wait_published(self, timeout: float = 30.0) -> None:
        """Wait until the outbox is empty (everything acknowledged by JetStream)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while await self.store.outbox_depth():
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{self.region}: outbox not drained within {timeout}s")
            await asyncio.sleep(0.02)

    def app(self) -> FastStream:
        """The FastStream application running this adapter (``xregion adapter run``)."""

        async def after_startup() -> None:
            await self.store.open()
            await self._run_parts()

        async def on_shutdown() -> None:
            await self.stop()

        return FastStream(self.broker, after_startup=[after_startup], on_shutdown=[on_shutdown])


__all__ = ["Adapter"]
