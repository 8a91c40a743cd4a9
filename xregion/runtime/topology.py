"""Streams and consumers, declared idempotently and never overwriting an operator's settings.

* ``XREGION`` holds every event (``xregion.v1.>``, and ``xregion.v2.>`` during a migration
  so that each origin's chain stays in one ordered log): file storage, no age or count
  limit, deletes and purges denied — events are evidence.
* ``XREGION_DLQ`` holds dead letters (``xregion.dlq.<region>.<reason>``) with their reason.
* One durable pull consumer per region, filtered to what is addressed to it or to ``ALL``,
  explicit acks, bounded redelivery with backoff.

:func:`ensure_topology` creates what is missing. What exists and differs from the project's
defaults is reported (returned, and logged by the caller) but left alone unless
``update=True``: an operator's retention or replica choice is theirs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from xregion.runtime.settings import RuntimeSettings
from xregion.subjects import ROOT, stream_subjects, subscribe_patterns

DLQ_ROOT = f"{ROOT}.dlq"


def dead_letter_subject(region: str, reason_code: str) -> str:
    return f"{DLQ_ROOT}.{region}.{reason_code}"


def consumer_name(party: str) -> str:
    """Durable consumer of a region (or role): ``region-BJ``."""
    return f"region-{party}"


def event_stream_config(settings: RuntimeSettings, versions: tuple[str, ...] = ("v1",)) -> api.StreamConfig:
    return api.StreamConfig(
        name=settings.stream,
        description="xregion events: signed, hash-chained evidence; never deleted by default",
        subjects=[stream_subjects(v) for v in versions],
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        num_replicas=settings.replicas,
        max_msgs=-1,
        max_bytes=-1,
        max_age=0,
        max_msg_size=1024 * 1024,
        discard=api.DiscardPolicy.NEW,
        duplicate_window=settings.duplicate_window_s,
        deny_delete=True,
        deny_purge=True,
        allow_rollup_hdrs=False,
    )


def dead_letter_stream_config(settings: RuntimeSettings) -> api.StreamConfig:
    return api.StreamConfig(
        name=settings.dead_letter_stream,
        description="xregion dead letters: rejected or undeliverable messages with their reason",
        subjects=[f"{DLQ_ROOT}.>"],
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        num_replicas=settings.replicas,
        max_age=0,
        max_msg_size=2 * 1024 * 1024,
        duplicate_window=settings.duplicate_window_s,
        deny_delete=True,
        deny_purge=False,
    )


BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def region_consumer_config(
    settings: RuntimeSettings, region: str, versions: tuple[str, ...] = ("v1",)
) -> api.ConsumerConfig:
    backoff = [BACKOFF_S[min(i, len(BACKOFF_S) - 1)] for i in range(settings.max_deliver - 1)]
    return api.ConsumerConfig(
        name=consumer_name(region),
        durable_name=consumer_name(region),
        description=f"events addressed to {region} or to ALL",
        deliver_policy=api.DeliverPolicy.ALL,
        ack_policy=api.AckPolicy.EXPLICIT,
        ack_wait=settings.ack_wait_s,
        max_deliver=settings.max_deliver,
        backoff=backoff,
        max_ack_pending=1000,
        filter_subjects=[p for v in versions for p in subscribe_patterns(region, v)],
    )


@dataclass
class TopologyReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    """Settings that differ from the project's defaults and were left as the operator set them."""


_STREAM_KEYS = (
    "subjects",
    "storage",
    "num_replicas",
    "max_age",
    "max_msgs",
    "max_bytes",
    "duplicate_window",
    "deny_delete",
    "deny_purge",
    "retention",
)


def _differences(wanted: Any, actual: Any, keys: tuple[str, ...]) -> list[str]:
    out = []
    for key in keys:
        want, have = getattr(wanted, key), getattr(actual, key)
        if key == "subjects" and want is not None and have is not None and set(want) <= set(have):
            continue
        if want is not None and want != have:
            out.append(f"{key}: {have!r} (xregion default {want!r})")
    return out


async def ensure_stream(
    js: JetStreamContext, wanted: api.StreamConfig, report: TopologyReport, *, update: bool
) -> None:
    try:
        info = await js.stream_info(wanted.name or "")
    except NotFoundError:
        await js.add_stream(wanted)
        report.created.append(f"stream {wanted.name}")
        return
    have = set(info.config.subjects or [])
    missing = [s for s in wanted.subjects or [] if s not in have]
    if missing:
        # Adding subjects (a new contract version during a migration) deletes nothing and
        # changes no retention: it is applied; every other difference is only reported.
        config = info.config
        config.subjects = sorted(have | set(missing))
        await js.update_stream(config)
        report.updated.append(f"stream {wanted.name}: subjects += {', '.join(missing)}")
    diffs = _differences(wanted, info.config, _STREAM_KEYS)
    if not diffs:
        return
    if update:
        merged = wanted
        merged.subjects = sorted(set(info.config.subjects or []) | set(wanted.subjects or []))
        await js.update_stream(merged)
        report.updated.append(f"stream {wanted.name}: " + "; ".join(diffs))
    else:
        report.drift.extend(f"stream {wanted.name} {d}" for d in diffs)


async def ensure_consumer(
    js: JetStreamContext, stream: str, wanted: api.ConsumerConfig, report: TopologyReport
) -> None:
    """Create the durable consumer, or update it to the project's settings.

    Consumers are the project's own (not the operator's): re-adding one with the same name
    updates its ack wait, redelivery and filters (changing them in code alone would not).
    """
    try:
        info = await js.consumer_info(stream, wanted.durable_name or "")
    except NotFoundError:
        await js.add_consumer(stream, wanted)
        report.created.append(f"consumer {stream}/{wanted.durable_name}")
        return
    keys = ("ack_wait", "max_deliver", "backoff", "filter_subjects", "max_ack_pending")
    if _differences(wanted, info.config, keys):
        await js.add_consumer(stream, wanted)
        report.updated.append(f"consumer {stream}/{wanted.durable_name}")


async def ensure_topology(
    js: JetStreamContext,
    settings: RuntimeSettings,
    regions: tuple[str, ...] = (),
    *,
    versions: tuple[str, ...] = ("v1",),
    update: bool = False,
) -> TopologyReport:
    """Declare the event stream, the dead-letter stream, the evidence object store and the
    durable consumers of ``regions``."""
    report = TopologyReport()
    await ensure_stream(js, event_stream_config(settings, versions), report, update=update)
    await ensure_stream(js, dead_letter_stream_config(settings), report, update=update)
    for region in regions:
        await ensure_consumer(js, settings.stream, region_consumer_config(settings, region, versions), report)
    await ensure_object_store(js, settings, report)
    return report


async def ensure_object_store(js: JetStreamContext, settings: RuntimeSettings, report: TopologyReport) -> None:
    try:
        await js.object_store(settings.object_store)
    except NotFoundError:
        await js.create_object_store(
            settings.object_store,
            config=api.ObjectStoreConfig(
                description="xregion evidence attachments, addressed by SHA-256",
                storage=api.StorageType.FILE,
                replicas=settings.replicas,
            ),
        )
        report.created.append(f"object store {settings.object_store}")
