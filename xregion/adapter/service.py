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
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from faststream import FastStream
from faststream.nats import NatsBroker
from faststream.nats.security import NatsNKey, NatsSecurity
from nats.js import JetStreamContext
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_delay,
    wait_exponential_jitter,
)

from xregion.adapter.asyncapi import declare_channels
from xregion.adapter.client import RegionClient, system_clock
from xregion.adapter.witness import Witness
from xregion.chain import ChainHead
from xregion.checkpoint import checkpoint_subject, sign_checkpoint
from xregion.config import BusConfig, load_config
from xregion.contracts.catalog import CATALOG, Catalog
from xregion.errors import ConfigError, XRegionError
from xregion.keys import ROSTER_FILE, load_retired_signers, load_signer, private_key_path
from xregion.logs import StructlogBridge
from xregion.note import default_origin
from xregion.runtime.alerts import SecurityAlerts
from xregion.runtime.connection import ClientIdentity, ConnectGate, PermissionDenied, connection_options
from xregion.runtime.consumer import Consumer, Delivery, Handler
from xregion.runtime.keyfiles import KeyFile, LiveRoster
from xregion.runtime.metrics import OUTBOX_DEPTH
from xregion.runtime.outbox import Outbox
from xregion.runtime.relay import Relay
from xregion.runtime.restores import RestoreMark, RestoreRepair
from xregion.runtime.settings import RuntimeSettings
from xregion.runtime.store import Store
from xregion.runtime.topology import TopologyReport, ensure_topology
from xregion.sealing import FieldSealing
from xregion.signing import KeyRoster, Signer

log = structlog.get_logger("xregion.adapter")


async def log_only(delivery: Delivery) -> None:
    """Default handler: the event is in the adapter's inbox and referral view; nothing else."""


def broker_options(options: dict[str, Any]) -> dict[str, Any]:
    """:func:`connection_options` as :class:`NatsBroker` takes them: FastStream wants the TLS
    context and the NKey seed as one ``security=`` object, the rest as they are."""
    options = dict(options)
    context = options.pop("tls", None)
    seed = options.pop("nkeys_seed_str", None)
    if seed is not None:
        options["security"] = NatsNKey.from_seed(seed, ssl_context=context)
    elif context is not None:
        options["security"] = NatsSecurity(ssl_context=context)
    return options


class Adapter:
    """One region's adapter. ``await start()``/``stop()``, or run :meth:`app` under FastStream.

    ``clock`` stamps the ``time`` of every event it sends, receipts included, and so the day
    each signed ``answerby`` is counted from (default: the system clock)."""

    def __init__(
        self,
        region: str,
        *,
        signer: Signer,
        roster: KeyRoster | LiveRoster,
        nats_url: str,
        store_path: Path,
        config: BusConfig | None = None,
        settings: RuntimeSettings | None = None,
        agency: str | None = None,
        handler: Handler = log_only,
        catalog: Catalog = CATALOG,
        versions: tuple[str, ...] = ("v1",),
        key_file: Path | None = None,
        retired_signers: list[Signer] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.config = config or load_config()
        self.region = self.config.regions.check_region(region)
        self.agency = agency or next(iter(self.config.regions.get(region).agencies))
        self.signer = signer
        self.retired_signers: list[Signer] = list(retired_signers or [])
        self.roster = roster
        self.key_file = KeyFile(key_file, self.region, signer) if key_file is not None else None
        self.alerts: SecurityAlerts | None = None
        self.nats_url = nats_url
        self.settings = settings or RuntimeSettings()
        self.catalog = catalog
        self.versions = versions
        self.handler = handler
        self.identity = ClientIdentity.from_settings(self.settings, self.region)
        self._connected = ConnectGate()
        options = connection_options(f"xregion-adapter-{region}", self.identity, gate=self._connected, url=nats_url)
        self.broker = NatsBroker(nats_url.split(","), logger=StructlogBridge(), **broker_options(options))
        declare_channels(self.broker, catalog, self.settings)
        self.store = Store(store_path)
        self.relay: Relay | None = None
        self.consumer: Consumer | None = None
        # Personal data is sealed to the addressee's current roster keys and opened with this
        # region's own key; both read at each use, so reloads and rotations apply at once.
        self.sealing = FieldSealing(
            lambda: self.roster.roster if isinstance(self.roster, LiveRoster) else self.roster,
            lambda: [self.signer, *self.retired_signers],
            version=self.settings.seal_version,
        )
        self.outbox = Outbox(
            self.store,
            signer,
            catalog=catalog,
            registry=self.config.regions,
            sealing=self.sealing,
            on_commit=self._wake_relay,
        )
        self.client = RegionClient(
            region=self.region,
            agency=self.agency,
            outbox=self.outbox,
            store=self.store,
            catalog=catalog,
            deadlines=self.config.deadlines,
            object_store=self.settings.object_store,
            clock=clock or system_clock,
        )
        self.topology: TopologyReport | None = None
        self.restores: list[RestoreRepair] = []
        """The restores of the stream this adapter applied to its store (its run)."""
        """What the stream lacked of this region's acknowledged events when the adapter started."""
        self._tasks: list[asyncio.Task[None]] = []
        self._depth_task: asyncio.Task[None] | None = None
        self._depth_stale = False
        self._checkpointed: dict[str, ChainHead] | None = None
        self.witness: Witness | None = None
        """This region's witness of the verifiable log (:mod:`xregion.adapter.witness`)."""

    @classmethod
    def from_keys_dir(cls, region: str, keys_dir: Path, **kwargs: Any) -> Adapter:
        """An adapter using ``keys_dir``'s roster and private key, both reloaded when they change."""
        settings = kwargs.get("settings") or RuntimeSettings()
        return cls(
            region,
            signer=load_signer(keys_dir, region),
            roster=LiveRoster.load(keys_dir / ROSTER_FILE, min_interval_s=settings.key_reload_s),
            key_file=private_key_path(keys_dir, region),
            retired_signers=load_retired_signers(keys_dir, region),
            **kwargs,
        )

    # --- keys ---------------------------------------------------------------------------

    def rotate_signer(self, signer: Signer) -> None:
        """Sign everything submitted from now on with ``signer``, without a restart.

        Events already in the outbox keep the signature they got when they were submitted
        and stay valid: a rotated-out key remains valid for every event whose ``time`` falls
        in its validity, however late the event is published.
        """
        if signer.party != self.region:
            raise ConfigError(f"a key of {signer.party} cannot sign for {self.region}")
        previous = self.signer.key_id
        if signer.key_id != previous:
            self.retired_signers.append(self.signer)  # still opens what was sealed to it
        self.signer = signer
        self.outbox.signer = signer
        if self.key_file is not None:
            self.key_file.key_id = signer.key_id
        log.info("signing key rotated", region=self.region, previous_key=previous, key=signer.key_id)
        roster = self.roster.roster if isinstance(self.roster, LiveRoster) else self.roster
        if signer.key_id not in roster:
            log.warning(
                "the new signing key is not in this adapter's roster; addressees must have it to verify",
                region=self.region,
                key=signer.key_id,
            )

    def check_keys(self) -> None:
        """Pick up a changed roster file and a rotated private key file now."""
        if isinstance(self.roster, LiveRoster):
            self.roster.refresh()
        if self.key_file is not None and (signer := self.key_file.poll()) is not None:
            self.rotate_signer(signer)

    async def _watch_keys(self) -> None:
        while True:
            await asyncio.sleep(self.settings.key_reload_s)
            self.check_keys()

    def _wake_relay(self) -> None:
        self._refresh_depth()
        if self.relay is not None:
            self.relay.notify()

    def _refresh_depth(self) -> None:
        """Set ``xregion_outbox_depth`` from the store (one count at a time): a commit may
        add no row (a refused or replayed submission) or many (a group)."""
        self._depth_stale = True
        if self._depth_task is None or self._depth_task.done():
            self._depth_task = asyncio.create_task(self._update_depth(), name="outbox-depth")

    async def _update_depth(self) -> None:
        while self._depth_stale:
            self._depth_stale = False
            with contextlib.suppress(Exception):  # the store may be closing
                OUTBOX_DEPTH.labels(region=self.region).set(await self.store.outbox_depth())

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> Adapter:
        """Open the store, connect (retrying until the broker answers), declare, run."""
        await self.store.open()
        async for attempt in AsyncRetrying(
            # A TLS or authentication failure will not heal by retrying (ConnectionSecurityError).
            retry=retry_if_exception_type(Exception) & retry_if_not_exception_type(XRegionError),
            wait=wait_exponential_jitter(multiplier=0.2, max=5.0, jitter=0.5),
            stop=stop_after_delay(self.settings.connect_timeout_s * 12),
            reraise=True,
        ):
            with attempt:
                await self.broker.start()
        self._connected.open()
        await self._run_parts()
        return self

    async def _run_parts(self) -> None:
        js = self.broker.connection.jetstream(domain=self.settings.js_domain)
        # A region connecting with its own identity may not create streams or consumers
        # (the operator, ADMIN, declares them): it only verifies they exist.
        self.topology = await ensure_topology(
            js, self.settings, (self.region,), versions=self.versions, declare=not self.identity.authenticated
        )
        for drift in self.topology.drift:
            log.warning("stream settings differ from xregion defaults; left unchanged", region=self.region, drift=drift)
        await self._apply_restore(js)
        self.client._js = js
        self.relay = Relay(
            self.store,
            self.broker.connection,
            js,
            self.settings.stream,
            on_published=self._published,
            check_stream=lambda: self._apply_restore(js, strict=True),
            origin=self.region,
            hold_s=self.settings.restore_hold_s,
        )
        OUTBOX_DEPTH.labels(region=self.region).set(await self.store.outbox_depth())
        self.alerts = SecurityAlerts(
            js,
            self.region,
            lambda: self.signer,
            stream=self.settings.dead_letter_stream,
            retry_s=self.settings.alert_retry_s,
        )
        self.witness = Witness(
            self.region,
            self.store,
            js,
            lambda: self.signer,
            lambda: self.roster.roster if isinstance(self.roster, LiveRoster) else self.roster,
            origin=default_origin(self.settings.stream),
            dead_letter_stream=self.settings.dead_letter_stream,
            alerts=self.alerts,
        )
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
            alerts=self.alerts,
            sealing=self.sealing,
            check_stream=lambda: self._apply_restore(js, strict=True),
        )
        self._tasks = [
            asyncio.create_task(self._supervise("relay", self.relay.run)),
            asyncio.create_task(self._supervise("consumer", self.consumer.run)),
            asyncio.create_task(self._supervise("keys", self._watch_keys)),
            asyncio.create_task(self._supervise("checkpoints", self._checkpoints)),
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

    async def _published(self, row: Any, ack: Any) -> None:
        self._refresh_depth()

    async def publish_checkpoint(self, *, force: bool = False) -> dict[str, ChainHead] | None:
        """Publish a signed checkpoint of the origin chain heads this region has seen
        (:mod:`xregion.checkpoint`) if they changed since the last one (or ``force``)."""
        heads = await self.store.read(lambda db: Store.origin_heads(db, self.region))
        if not heads or (heads == self._checkpointed and not force):
            return None
        body = sign_checkpoint(self.signer, heads, datetime.now(UTC))
        await self.broker.connection.jetstream(domain=self.settings.js_domain).publish(
            checkpoint_subject(self.region), body, timeout=5.0
        )
        self._checkpointed = heads
        log.info("checkpoint published", region=self.region, origins=len(heads))
        return heads

    async def _checkpoints(self) -> None:
        while True:
            await asyncio.sleep(self.settings.checkpoint_interval_s)
            try:
                await self.publish_checkpoint()
            except Exception as exc:  # the broker away, or a stream without the checkpoint subject
                log.warning("checkpoint not published", region=self.region, error=type(exc).__name__)
            try:
                if self.witness is not None:
                    await self.witness.step()
            except Exception as exc:  # the broker away; the next round tries again
                log.warning("log checkpoint not witnessed", region=self.region, error=type(exc).__name__)

    async def _answer(self, referral_id: str, event_type: str, data: dict[str, Any], causation_id: str) -> Any:
        """Automatic receipts from the consumer go through the same outbox as everything else."""
        return await self.client.send(referral_id, event_type, data, causation_id=causation_id)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # Bounded: nats-py can swallow a cancellation that lands inside a fetch
            # (asyncio.wait_for on Python 3.11); closing the connection then ends the fetch.
            _, pending = await asyncio.wait(self._tasks, timeout=5.0)
            if pending:
                log.warning("adapter parts ignored cancellation; closing the connection", region=self.region)
                nc = self.broker._connection
                if nc is not None and not nc.is_closed:
                    with contextlib.suppress(Exception):
                        await nc.close()
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending, timeout=5.0)
            for task in self._tasks:
                if task.done() and not task.cancelled():
                    task.exception()  # retrieved: _supervise already logged it
        self._tasks = []
        if self.consumer is not None:
            self.consumer.close()
        if self.alerts is not None:
            await self.alerts.close(timeout=3.0)
        self._stopping = True
        nc = self.broker._connection
        if nc is not None and not nc.is_closed:
            # Flush pending acks, then close without draining: draining waits for the
            # consumer's long-poll fetch to expire (30 s) for nothing.
            with contextlib.suppress(Exception):
                await nc.flush(timeout=2)
            with contextlib.suppress(Exception):
                await nc.close()
        # Forget the closed connection: NatsBroker.stop() drains any connection it still holds,
        # and FastStream calls it again after the shutdown hooks of `xregion adapter run`; a
        # closed one raises ConnectionClosedError there and the process exits 1 on SIGTERM.
        self.broker._connection = None
        with contextlib.suppress(Exception):
            await self.broker.stop()
        await self.store.close()

    def refusal(self, exc: BaseException) -> PermissionDenied | None:
        """``exc`` as the server's refusal of a request this adapter's identity may not make
        (:class:`~xregion.runtime.connection.PermissionDenied`, naming party and subject) when that is how
        it ended, else ``None`` (:meth:`~xregion.runtime.connection.ConnectGate.refusal`)."""
        return self._connected.refusal(exc)

    async def wait_published(self, timeout: float = 30.0) -> None:
        """Wait until the outbox is empty (everything acknowledged by JetStream)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while await self.store.outbox_depth():
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{self.region}: outbox not drained within {timeout}s")
            await asyncio.sleep(0.02)

    async def _apply_restore(self, js: JetStreamContext, *, strict: bool = False) -> None:
        """Apply the stream's restore mark to the store, once per restore
        (:mod:`xregion.runtime.restores`): the events the restored stream lost go out again
        before anything newer, and the copies of events handled here are not handled twice.
        Run before the consumer and the relay start, and by the relay after each reconnect.
        ``strict``: a stream that cannot be read raises (the relay then waits)."""
        try:
            info = await js.stream_info(self.settings.stream)
        except Exception as exc:
            if strict:
                raise
            log.warning("stream not readable for the restore check", region=self.region, error=type(exc).__name__)
            return
        mark = RestoreMark.of(info.config.metadata)
        if mark is None:
            return
        repair = await self.store.apply_restore(mark)
        if repair is None:
            return
        self.restores.append(repair)
        log.warning(
            "the stream was restored from a backup: re-publishing the events it lost",
            region=self.region,
            stream=self.settings.stream,
            **repair.to_log(),
        )
        if repair.republish:
            self._refresh_depth()

    def app(self) -> FastStream:
        """The FastStream application running this adapter (``xregion adapter run``)."""

        async def after_startup() -> None:
            self._connected.open()
            await self.store.open()
            await self._run_parts()

        async def on_shutdown() -> None:
            await self.stop()

        return FastStream(
            self.broker, logger=StructlogBridge(), after_startup=[after_startup], on_shutdown=[on_shutdown]
        )


__all__ = ["Adapter", "broker_options", "connection_options"]
