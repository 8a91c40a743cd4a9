"""Streams and consumers, declared idempotently and never overwriting an operator's settings.

* ``XREGION`` holds every event (``xregion.v1.>``, and ``xregion.v2.>`` during a migration
  so that each origin's chain stays in one ordered log): file storage, no age or count
  limit, deletes and purges denied — events are evidence.
* ``XREGION_DLQ`` holds dead letters (``xregion.dlq.<region>.<reason>``) with their reason,
  and the security alerts adapters raise for the coordinator
  (``xregion.alert.<detecting region>.<reason>``), and every region's signed
  checkpoints of the chain heads it has seen (``xregion.checkpoint.<region>``).
* One durable pull consumer per region, filtered to what is addressed to it or to ``ALL``,
  explicit acks, bounded redelivery with backoff.

:func:`ensure_topology` creates what is missing. What exists and differs from the project's
defaults is reported (returned, and logged by the caller) but left alone unless
``update=True``: an operator's retention or replica choice is theirs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from xregion.errors import XRegionError
from xregion.permissions import BusNames
from xregion.permissions import consumer_name as consumer_name
from xregion.runtime.settings import RuntimeSettings
from xregion.subjects import ALERT_ROOT as ALERT_ROOT
from xregion.subjects import CHECKPOINT_ROOT as CHECKPOINT_ROOT
from xregion.subjects import DLQ_ROOT as DLQ_ROOT
from xregion.subjects import dead_letter_subject as dead_letter_subject
from xregion.subjects import stream_subjects, subscribe_patterns


class TopologyError(XRegionError):
    """A stream, consumer or the object store is missing and this identity may not declare it."""

    code = "topology_missing"


DECLARE_HINT = (
    "the operator declares it: start `xregion broker` (it applies the topology with the ADMIN "
    "identity) or run `xregion ops apply-topology --nats-url URL` with the ADMIN identity"
)


def alert_subject(region: str, reason_code: str) -> str:
    """Where ``region`` publishes a security alert: ``xregion.alert.TJ.bad_signature``."""
    return f"{ALERT_ROOT}.{region}.{reason_code}"


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
        allow_atomic=True,  # the relay's atomic batches (xregion.runtime.relay)
        allow_direct=True,  # readers that own their position read by sequence (DIRECT.GET)
    )


def dead_letter_stream_config(settings: RuntimeSettings) -> api.StreamConfig:
    return api.StreamConfig(
        name=settings.dead_letter_stream,
        description="xregion dead letters: rejected or undeliverable messages with their reason",
        subjects=[f"{DLQ_ROOT}.>", f"{ALERT_ROOT}.>", f"{CHECKPOINT_ROOT}.>"],
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        num_replicas=settings.replicas,
        max_age=0,
        max_msg_size=2 * 1024 * 1024,
        duplicate_window=settings.duplicate_window_s,
        deny_delete=True,
        deny_purge=False,
        allow_direct=True,
    )


BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def region_consumer_config(
    settings: RuntimeSettings, region: str, versions: tuple[str, ...] = ("v1",)
) -> api.ConsumerConfig:
    # Redelivery after an ack timeout (the adapter died or stalled holding the message) comes
    # after ack_wait every time: a growing server backoff would make every crash of the
    # adapter cost the messages it held minutes more each time (measured: 10 kills under
    # traffic left TJ crawling through 30-60 s redelivery waits). Handler failures are paced
    # by the consumer itself, which naks with growing delays (BACKOFF_S). The list is explicit
    # (not None) so that an existing durable with an older backoff is updated to it.
    backoff = [settings.ack_wait_s] * (settings.max_deliver - 1)
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
    missing: list[str] = field(default_factory=list)
    """Objects that do not exist and were not declared (``declare=False``)."""


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


_ADDED_CAPABILITIES = (
    ("allow_atomic", "does not allow atomic batches: relays publish one event at a time"),
    ("allow_direct", "does not allow direct gets: projections and auditors cannot read it by sequence"),
)
"""Stream flags an existing stream is given when the topology is applied, and what their
absence costs."""


def _differences(wanted: Any, actual: Any, keys: tuple[str, ...]) -> list[str]:
    out = []
    for key in keys:
        want, have = getattr(wanted, key), getattr(actual, key)
        if key == "subjects" and want is not None and have is not None and set(want) <= set(have):
            continue
        if want is not None and want != have:
            out.append(f"{key}: {have!r} (xregion default {want!r})")
    return out


async def _declare(what: str, action: Any) -> None:
    """Run a create/update request; a denied one (the JetStream API answers nothing: timeout)
    becomes a :class:`TopologyError` naming the object."""
    try:
        await action
    except (NatsTimeoutError, TimeoutError):
        raise TopologyError(
            f"{what} is missing or outdated and could not be declared (no answer from the JetStream "
            f"API: this identity may not declare it); {DECLARE_HINT}",
            object=what,
        ) from None


async def _info(what: str, request: Any) -> Any:
    try:
        return await request
    except (NatsTimeoutError, TimeoutError):
        raise TopologyError(
            f"no answer to the JetStream info request for {what}: is JetStream enabled and is this "
            "identity allowed to read it?",
            object=what,
        ) from None


async def ensure_stream(
    js: JetStreamContext, wanted: api.StreamConfig, report: TopologyReport, *, update: bool, declare: bool = True
) -> None:
    what = f"stream {wanted.name}"
    try:
        info = await _info(what, js.stream_info(wanted.name or ""))
    except NotFoundError:
        if not declare:
            report.missing.append(what)
            return
        await _declare(what, js.add_stream(wanted))
        report.created.append(what)
        return
    have = set(info.config.subjects or [])
    missing = [s for s in wanted.subjects or [] if s not in have]
    if missing and not declare:
        report.drift.append(f"{what} lacks subjects {', '.join(missing)}")
    elif missing:
        # Adding subjects (a new contract version during a migration) deletes nothing and
        # changes no retention: it is applied; every other difference is only reported.
        config = info.config
        config.subjects = sorted(have | set(missing))
        await _declare(what, js.update_stream(config))
        report.updated.append(f"stream {wanted.name}: subjects += {', '.join(missing)}")
    for flag, lacking in _ADDED_CAPABILITIES:
        # Allowing a capability removes nothing and changes no retention: applied like added
        # subjects (with declare=False only reported).
        if getattr(wanted, flag) and not getattr(info.config, flag):
            if declare:
                config = info.config
                setattr(config, flag, True)
                await _declare(what, js.update_stream(config))
                report.updated.append(f"stream {wanted.name}: {flag}")
            else:
                report.drift.append(f"{what} {lacking}")
    diffs = _differences(wanted, info.config, _STREAM_KEYS)
    if not diffs:
        return
    if update and declare:
        merged = wanted
        merged.subjects = sorted(set(info.config.subjects or []) | set(wanted.subjects or []))
        merged.metadata = info.config.metadata  # a restore mark among them (xregion.runtime.restores)
        await _declare(what, js.update_stream(merged))
        report.updated.append(f"stream {wanted.name}: " + "; ".join(diffs))
    else:
        report.drift.extend(f"stream {wanted.name} {d}" for d in diffs)


async def ensure_consumer(
    js: JetStreamContext, stream: str, wanted: api.ConsumerConfig, report: TopologyReport, *, declare: bool = True
) -> None:
    """Create the durable consumer, or update it to the project's settings.

    Consumers are the project's own (not the operator's): re-adding one with the same name
    updates its ack wait, redelivery and filters (changing them in code alone would not).
    With ``declare=False`` (a region's scoped identity) it is only verified.
    """
    what = f"consumer {stream}/{wanted.durable_name}"
    try:
        info = await _info(what, js.consumer_info(stream, wanted.durable_name or ""))
    except NotFoundError:
        if not declare:
            report.missing.append(what)
            return
        await _declare(what, js.add_consumer(stream, wanted))
        report.created.append(what)
        return
    keys: tuple[str, ...] = ("ack_wait", "max_deliver", "backoff", "filter_subjects", "max_ack_pending")
    if wanted.backoff:
        keys = keys[1:]  # with a backoff the server sets ack_wait to its first step
    diffs = _differences(wanted, info.config, keys)
    if diffs and not declare:
        report.drift.extend(f"{what} {d}" for d in diffs)
    elif diffs:
        await _declare(what, js.add_consumer(stream, wanted))
        report.updated.append(what)


async def ensure_topology(
    js: JetStreamContext,
    settings: RuntimeSettings,
    regions: tuple[str, ...] = (),
    *,
    versions: tuple[str, ...] = ("v1",),
    update: bool = False,
    declare: bool = True,
) -> TopologyReport:
    """Declare the event stream, the dead-letter stream, and the durable consumers and
    evidence buckets of ``regions``. Readers (coordinator, auditor) need no consumer: they
    read by sequence.

    Every object is looked up first and created only if missing. With ``declare=False`` —
    a region's scoped NATS identity, which may not create streams or consumers — nothing is
    created or changed: differences are reported as drift, and anything missing raises
    :class:`TopologyError` naming it and who declares it.
    """
    report = TopologyReport()
    await ensure_stream(js, event_stream_config(settings, versions), report, update=update, declare=declare)
    await ensure_stream(js, dead_letter_stream_config(settings), report, update=update, declare=declare)
    for region in regions:
        wanted = region_consumer_config(settings, region, versions)
        await ensure_consumer(js, settings.stream, wanted, report, declare=declare)
    for region in regions:
        await ensure_object_store(js, settings, region, report, declare=declare)
    if report.missing:
        raise TopologyError(f"missing on the NATS server: {', '.join(report.missing)}; {DECLARE_HINT}")
    return report


async def ensure_object_store(
    js: JetStreamContext, settings: RuntimeSettings, region: str, report: TopologyReport, *, declare: bool = True
) -> None:
    """``region``'s evidence bucket (only it writes there, :mod:`xregion.runtime.evidence`)."""
    bucket = BusNames(object_store=settings.object_store).evidence_bucket(region)
    what = f"object store {bucket}"
    try:
        await _info(what, js.object_store(bucket))
    except NotFoundError:
        if not declare:
            report.missing.append(what)
            return
        config = api.ObjectStoreConfig(
            description=f"xregion evidence attachments of {region}, addressed by SHA-256",
            storage=api.StorageType.FILE,
            replicas=settings.replicas,
        )
        await _declare(what, js.create_object_store(bucket, config=config))
        report.created.append(what)
