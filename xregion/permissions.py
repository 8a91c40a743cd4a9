"""Who may say and read what on the bus: the NATS permissions of every party, derived from
the subject grammar (:mod:`xregion.subjects`).

Pure data, shared by ``xregion ops gen-config`` (which renders it into the server's
``authorization`` block) and the security tests. Nothing here talks to a server.

Principles (ARCHITECTURE §5 *Security*, field notes pitfall 10):

* A region publishes only with its own code as ``<from>``; reads (core subscriptions) only
  what is addressed to it or to ``ALL`` and its own inbox prefix ``_INBOX_<CODE>``.
* Reading permissions do not cover JetStream delivery, so the JetStream API is granted per
  object: a region may fetch from and acknowledge on its *own* durable consumer
  (``region-<CODE>``), never create or change a consumer on the event stream (its filter is
  what limits what it reads; the operator ``ADMIN`` declares it) and never read stream
  messages directly (``STREAM.MSG.GET`` / ``DIRECT.GET`` on the event stream).
* Evidence attachments are content-addressed in one shared object store; every region may
  put and get objects there (what nats-py's object store measurably uses), never purge or
  delete.
* ``COORD`` reads everything through its own durable ``coordinator`` and publishes only
  escalations (``<from>`` = ``COORD``); ``AUDIT`` reads everything (direct gets and its own
  consumer named ``audit``) and publishes nothing on ``xregion.>``; ``ADMIN``
  declares the topology (``$JS.API.>``) and publishes no events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from xregion.errors import ConfigError
from xregion.lifecycle.families import ESCALATION
from xregion.regions import AUDITOR, COORDINATOR, PARTY_CODE
from xregion.subjects import ALERT_ROOT, CHECKPOINT_ROOT, DLQ_ROOT, ROOT, publish_patterns, subscribe_patterns

OPERATOR = "ADMIN"
"""The operator identity: declares streams and consumers; no events."""
ANY_VERSION = "*"
"""Permissions cover every contract version (v1 and v2 side by side during a migration)."""
JS_API = "$JS.API"
COORDINATOR_CONSUMER = "coordinator"
"""The coordinator's durable consumer on the event stream (every event)."""
AUDIT_CONSUMER = "audit"
"""The only consumer name the auditor may create (on the event and dead-letter streams)."""


def consumer_name(party: str) -> str:
    """Durable consumer of a region on the event stream: ``region-BJ``."""
    return f"region-{party}"


def inbox_prefix(party: str) -> str:
    """The party's own inbox prefix (nats-py ``inbox_prefix``): replies to its requests and
    its push-consumer deliveries arrive below it, and only it may subscribe there."""
    return f"_INBOX_{party}"


@dataclass(frozen=True)
class BusNames:
    """The JetStream objects permissions refer to (defaults = :class:`RuntimeSettings`'s)."""

    stream: str = "XREGION"
    dead_letter_stream: str = "XREGION_DLQ"
    object_store: str = "XREGION_EVIDENCE"

    @property
    def object_stream(self) -> str:
        """The stream behind the object store (``OBJ_<bucket>``)."""
        return f"OBJ_{self.object_store}"


DEFAULT_NAMES = BusNames()


@dataclass(frozen=True)
class Permissions:
    """One NATS user's ``permissions`` block. Deny wins over allow."""

    role: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    publish_deny: tuple[str, ...] = ()
    subscribe_deny: tuple[str, ...] = ()


def _forged_roots(party: str) -> tuple[str, ...]:
    """Six-token subjects under the dead-letter and alert roots that an event pattern with
    a wildcard version (``xregion.*.*.*.<party>.*``) would otherwise let ``party`` publish,
    e.g. ``xregion.dlq.TJ.x.BJ.y`` — a dead letter filed under TJ's name."""
    return tuple(f"{root}.*.*.{party}.*" for root in (DLQ_ROOT, ALERT_ROOT, CHECKPOINT_ROOT))


def _stream_info(*streams: str) -> list[str]:
    return [f"{JS_API}.STREAM.INFO.{s}" for s in streams]


def _durable_reader(stream: str, durable: str) -> list[str]:
    """Fetch from and acknowledge on one existing durable (pull) consumer, nothing else."""
    return [
        f"{JS_API}.CONSUMER.INFO.{stream}.{durable}",
        f"{JS_API}.CONSUMER.MSG.NEXT.{stream}.{durable}",
        f"$JS.ACK.{stream}.{durable}.>",
    ]


def _direct_reader(stream: str) -> list[str]:
    """Read any message of ``stream`` by sequence or subject (auditor, object store)."""
    return [
        f"{JS_API}.STREAM.MSG.GET.{stream}",
        f"{JS_API}.DIRECT.GET.{stream}",
        f"{JS_API}.DIRECT.GET.{stream}.>",
    ]


def _ordered_reader(stream: str) -> list[str]:
    """Create ephemeral (ordered) push consumers on ``stream``, delivered to one's inbox.

    nats-py creates them with the unnamed ``CONSUMER.CREATE.<stream>`` (server-generated
    name); the named form (other client libraries) is allowed too. Only for the object
    store's stream: there are no durables there that such a create could rewrite.
    """
    return [
        f"{JS_API}.CONSUMER.CREATE.{stream}",
        f"{JS_API}.CONSUMER.CREATE.{stream}.>",
        f"$JS.FC.{stream}.>",
    ]


def _evidence_reader(names: BusNames) -> list[str]:
    """``js.object_store(...)``, ``get_info`` and ``get`` (measured with nats-py 2.16)."""
    obj = names.object_stream
    return [
        f"{JS_API}.STREAM.NAMES",  # js.subscribe() looks the stream up by subject
        *_stream_info(obj),
        *_direct_reader(obj),
        *_ordered_reader(obj),
    ]


def _evidence_writer(names: BusNames) -> list[str]:
    """``put``: chunks and the meta message are plain publishes under ``$O.<bucket>``."""
    return [f"$O.{names.object_store}.>"]


def region_permissions(region: str, names: BusNames = DEFAULT_NAMES) -> Permissions:
    """A region: its own events, dead letters and alerts; its own durable; evidence."""
    _check_code(region)
    publish = [
        *publish_patterns(region, ANY_VERSION),
        f"{DLQ_ROOT}.{region}.>",
        f"{ALERT_ROOT}.{region}.>",
        f"{CHECKPOINT_ROOT}.{region}",
        f"{JS_API}.INFO",
        *_stream_info(names.stream, names.dead_letter_stream),
        *_durable_reader(names.stream, consumer_name(region)),
        *_evidence_reader(names),
        *_evidence_writer(names),
    ]
    subscribe = [*subscribe_patterns(region, ANY_VERSION), f"{inbox_prefix(region)}.>"]
    return Permissions("region", tuple(publish), tuple(subscribe), publish_deny=_forged_roots(region))


def coordinator_permissions(names: BusNames = DEFAULT_NAMES) -> Permissions:
    """Reads everything through its durable ``coordinator``; publishes only escalations."""
    publish = [
        f"{ROOT}.{ANY_VERSION}.{ESCALATION.family}.*.{COORDINATOR}.*",  # escalations, nothing else
        f"{JS_API}.INFO",
        *_stream_info(names.stream, names.dead_letter_stream),
        *_durable_reader(names.stream, COORDINATOR_CONSUMER),
        # Read-only metadata of every durable: the consumer lag of each region on /metrics.
        f"{JS_API}.CONSUMER.INFO.{names.stream}.>",
        f"{JS_API}.STREAM.MSG.GET.{names.dead_letter_stream}",
        *_direct_reader(names.stream),
        *_direct_reader(names.dead_letter_stream),
        *_evidence_reader(names),
    ]
    subscribe = [f"{ROOT}.>", f"{inbox_prefix(COORDINATOR)}.>"]
    return Permissions("coordinator", tuple(publish), tuple(subscribe), publish_deny=_forged_roots(COORDINATOR))


def auditor_permissions(names: BusNames = DEFAULT_NAMES) -> Permissions:
    """Reads everything (direct gets, its own consumer ``audit``); publishes no event.

    Consumers only under its own name: any create subject that admits another name — the
    unnamed ``CONSUMER.CREATE.<stream>`` included, whose request body may carry
    ``"name": "region-BJ"`` — lets its holder *rewrite* a region's durable (measured with
    nats-server 2.15: the filter becomes whatever the request says).
    """
    publish = [
        f"{JS_API}.INFO",
        f"{JS_API}.STREAM.NAMES",
        *_stream_info(names.stream, names.dead_letter_stream),
        f"{JS_API}.CONSUMER.INFO.{names.stream}.>",
        f"{JS_API}.CONSUMER.NAMES.{names.stream}",
        f"{JS_API}.CONSUMER.LIST.{names.stream}",
    ]
    for stream in (names.stream, names.dead_letter_stream):
        publish += [
            *_direct_reader(stream),
            f"{JS_API}.CONSUMER.CREATE.{stream}.{AUDIT_CONSUMER}",
            f"{JS_API}.CONSUMER.CREATE.{stream}.{AUDIT_CONSUMER}.>",
            f"{JS_API}.CONSUMER.DELETE.{stream}.{AUDIT_CONSUMER}",
            *_durable_reader(stream, AUDIT_CONSUMER),
            f"$JS.FC.{stream}.>",
        ]
    publish += _evidence_reader(names)
    subscribe = [f"{ROOT}.>", f"{inbox_prefix(AUDITOR)}.>"]
    return Permissions("auditor", tuple(dict.fromkeys(publish)), tuple(subscribe), publish_deny=(f"{ROOT}.>",))


def operator_permissions() -> Permissions:
    """Declares streams, consumers and the object store, backs streams up and restores them
    (``$JS.SNAPSHOT.>``: the snapshot's flow control and restore chunks); publishes and reads
    no events."""
    return Permissions(
        "operator",
        publish=(f"{JS_API}.>", "$JS.SNAPSHOT.>"),
        subscribe=(f"{inbox_prefix(OPERATOR)}.>",),
        publish_deny=(f"{ROOT}.>",),
    )


def permissions_for(party: str, regions: Iterable[str], names: BusNames = DEFAULT_NAMES) -> Permissions:
    """The permissions of ``party``: a configured region, ``COORD``, ``AUDIT`` or ``ADMIN``."""
    if party == COORDINATOR:
        return coordinator_permissions(names)
    if party == AUDITOR:
        return auditor_permissions(names)
    if party == OPERATOR:
        return operator_permissions()
    if party in set(regions):
        return region_permissions(party, names)
    raise ConfigError(f"{party} is neither a configured region nor one of COORD, AUDIT, {OPERATOR}", party=party)


def parties(regions: Iterable[str]) -> list[str]:
    """Every party that gets a NATS identity: the regions, then ``COORD``, ``AUDIT``, ``ADMIN``."""
    codes = list(regions)
    if OPERATOR in codes:
        raise ConfigError(f"{OPERATOR} is reserved for the operator identity; it cannot be a region code")
    return [*codes, COORDINATOR, AUDITOR, OPERATOR]


def _check_code(code: str) -> None:
    if not PARTY_CODE.match(code):
        raise ConfigError(f"party code {code!r} does not match {PARTY_CODE.pattern}", party=code)
