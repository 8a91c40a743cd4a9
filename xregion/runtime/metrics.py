"""Prometheus metrics of the bus, one object per metric, labelled by region or consumer.

Adapter side (exposed by ``xregion adapter run --metrics-port N``): handler latency and
outbox depth. Coordinator side (exposed on the dashboard's ``/metrics``): events per
subject, dead letters per region and reason code, consumer lag. All live in the default
registry, so one process running several parts (tests, the demo) exposes them together.
"""

from __future__ import annotations

import time

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from prometheus_client import Counter, Gauge, Histogram

from xregion.permissions import consumer_name
from xregion.runtime.deadletter import parse_dead_letter
from xregion.runtime.settings import RuntimeSettings
from xregion.subjects import DLQ_ROOT

HANDLER_LATENCY = Histogram(
    "xregion_handler_seconds",
    "Time the regional system's handler took per inbound event (including failures)",
    ["region"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
OUTBOX_DEPTH = Gauge(
    "xregion_outbox_depth",
    "Events in the region's local outbox not yet acknowledged by JetStream",
    ["region"],
)
EVENTS = Counter(
    "xregion_events",
    "Events seen by the coordinator, per subject (xregion.v1.<family>.<event>.<from>.<to>)",
    ["subject"],
)
DEAD_LETTERS = Counter(
    "xregion_dead_letters",
    "Dead letters in XREGION_DLQ, per detecting region and reason code",
    ["region", "code"],
)
CONSUMER_LAG = Gauge(
    "xregion_consumer_lag",
    "Messages of the event stream not yet delivered to a durable consumer (num_pending)",
    ["consumer"],
)
PROJECTION_LAG = Gauge(
    "xregion_projection_lag",
    "Messages of the event stream after the coordinator's projection position (stream last seq - position)",
)
CONSUMER_ACK_PENDING = Gauge(
    "xregion_consumer_ack_pending",
    "Messages delivered to a durable consumer and not yet acknowledged (num_ack_pending)",
    ["consumer"],
)


class BusProbe:
    """Reads what the server knows into the coordinator's gauges: the lag of each region's
    durable, and the dead letters (read incrementally, each once). The coordinator's own lag
    is its projection's (``xregion_projection_lag``, :mod:`xregion.coordinator.feed`).

    A consumer this identity may not read (a coordinator's scoped NKey identity sees only its
    own durable) is skipped for ``denied_retry_s`` instead of waiting on it at every scrape.
    """

    def __init__(
        self,
        js: JetStreamContext,
        settings: RuntimeSettings,
        regions: tuple[str, ...],
        *,
        timeout_s: float = 1.0,
        batch: int = 1000,
        denied_retry_s: float = 300.0,
    ) -> None:
        self.js = js
        self.settings = settings
        self.consumers = tuple(consumer_name(r) for r in regions)
        self.timeout_s = timeout_s
        self.batch = batch
        self.denied_retry_s = denied_retry_s
        self.dlq_seq = 0
        self._denied: dict[str, float] = {}

    async def refresh(self) -> None:
        await self.consumer_lag()
        await self.dead_letters()

    async def consumer_lag(self) -> None:
        for name in self.consumers:
            if time.monotonic() < self._denied.get(name, 0.0):
                continue
            try:
                info = await self.js.consumer_info(self.settings.stream, name, timeout=self.timeout_s)
            except NotFoundError:
                continue
            except (NatsTimeoutError, TimeoutError):
                self._denied[name] = time.monotonic() + self.denied_retry_s
                continue
            CONSUMER_LAG.labels(consumer=name).set(int(info.num_pending or 0))
            CONSUMER_ACK_PENDING.labels(consumer=name).set(int(info.num_ack_pending or 0))

    async def dead_letters(self) -> None:
        """Count the dead letters stored since the last call (at most ``batch`` per call)."""
        try:
            info = await self.js.stream_info(self.settings.dead_letter_stream)
        except (NotFoundError, NatsTimeoutError, TimeoutError):
            return
        first, last = int(info.state.first_seq or 0), int(info.state.last_seq or 0)
        start = max(self.dlq_seq + 1, first)
        for seq in range(start, min(last, start + self.batch - 1) + 1):
            try:
                msg = await self.js.get_msg(self.settings.dead_letter_stream, seq)
            except NotFoundError:
                self.dlq_seq = seq
                continue
            subject = msg.subject or ""
            if subject.startswith(f"{DLQ_ROOT}."):
                letter = parse_dead_letter(subject, msg.headers, b"")
                DEAD_LETTERS.labels(region=letter.region, code=letter.code).inc()
            self.dlq_seq = seq


__all__ = [
    "CONSUMER_ACK_PENDING",
    "CONSUMER_LAG",
    "DEAD_LETTERS",
    "EVENTS",
    "HANDLER_LATENCY",
    "OUTBOX_DEPTH",
    "PROJECTION_LAG",
    "BusProbe",
]
