"""Who may say and read what on the bus: the NATS permissions of every party, derived from
the subject grammar (:mod:`xregion.subjects`).

Pure data, shared by ``xregion ops gen-config`` (which renders it into the server's
``accounts``, :mod:`xregion.ops.identities`) and the security tests. Nothing here talks to a server.

Principles (ARCHITECTURE §5 *Security* and §7, field notes pitfalls 10, 13, 14):

* **One NATS account per party** (:data:`BUS_ACCOUNT` holds the streams and the operator
  ``ADMIN``; each region, ``COORD`` and ``AUDIT`` has an account of its own). What a party
  may publish in its account reaches the bus only through a *service import* of exactly that
  subject from ``BUS``: the server maps the reply subject of every such request to a private
  one, so no party can make the server publish a JetStream answer where it chooses (a reply
  subject is not checked against publish permissions). The user permissions below are both
  the user's permissions in its own account and the list of its imports (:func:`imports`).
* A region publishes only its own events: every ``xregion.<v>.<family>.<event>.<CODE>.<to>``
  subject is enumerated from the event catalog (never a wildcard in a token, so no subject
  the grammar does not know — e.g. one that is not UTF-8 — can be published); reads
  (core subscriptions) only what is addressed to it or to ``ALL`` and its own inbox prefix
  ``_INBOX_<CODE>``.
* Reading permissions do not cover JetStream delivery, so the JetStream API is granted per
  object: a region may fetch from and acknowledge on its *own* durable consumer
  (``region-<CODE>``), never create or change a consumer (a create request chooses its
  ``deliver_subject``: the server would publish there), never read stream messages
  directly.
* Evidence attachments live in one object store bucket per region
  (``<object_store>_<CODE>``): only the owner may write it; every party may read every
  bucket by direct get (never through a consumer); nobody but ``ADMIN`` purges or deletes.
* ``COORD`` reads everything by direct get and publishes only escalations (``<from>`` =
  ``COORD``); ``AUDIT`` reads everything by direct get and publishes nothing on
  ``xregion.>`` but the verifiable log's checkpoints (``xregion.checkpoint.AUDIT``);
  ``ADMIN`` declares the topology (``$JS.API.>``) and publishes no events.
* Each region, a witness of that log, reads exactly one message of the dead-letter stream:
  the last on ``xregion.checkpoint.AUDIT`` (a direct get by subject, :mod:`xregion.adapter.witness`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from xregion.contracts.catalog import CATALOG, Catalog
from xregion.errors import ConfigError
from xregion.lifecycle.families import ESCALATION
from xregion.reasons import REASON_CODES
from xregion.regions import AUDITOR, BROADCAST, COORDINATOR, PARTY_CODE
from xregion.subjects import ALERT_ROOT, CHECKPOINT_ROOT, DLQ_ROOT, ROOT, subscribe_patterns

OPERATOR = "ADMIN"
"""The operator identity: declares streams and consumers; no events."""
BUS_ACCOUNT = "BUS"
"""The NATS account that holds the streams, the object store buckets and ``ADMIN``."""
ANY_VERSION = "*"
"""Permissions cover every contract version (v1 and v2 side by side during a migration)."""
JS_API = "$JS.API"


PARTY_URI = "urn:xregion:party:"
"""Prefix of the URI SAN that names a party in its client certificate (the secured broker's user)."""
LEAF_URI = "urn:xregion:leaf:"
"""Prefix of the URI SAN of a regional site's leaf node, linking the region's account."""


def party_uri(party: str) -> str:
    """The URI SAN of ``party``'s client certificate, and its NATS user name."""
    return f"{PARTY_URI}{party}"


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

    def evidence_bucket(self, region: str) -> str:
        """``region``'s evidence bucket: only it writes there (``XREGION_EVIDENCE_BJ``)."""
        return f"{self.object_store}_{region}"

    def object_stream(self, region: str) -> str:
        """The stream behind ``region``'s evidence bucket (``OBJ_<bucket>``)."""
        return f"OBJ_{self.evidence_bucket(region)}"


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


def _last_of(stream: str, subject: str) -> str:
    """Read the last message on ``subject`` of ``stream`` (a direct get by subject), nothing else."""
    return f"{JS_API}.DIRECT.GET.{stream}.{subject}"


def _evidence_reader(names: BusNames, regions: Iterable[str]) -> list[str]:
    """Object info and chunks of every region's bucket, by direct get (``xregion.evidence``)."""
    out = []
    for region in regions:
        obj = names.object_stream(region)
        out += [*_stream_info(obj), *_direct_reader(obj)]
    return out


def _evidence_writer(names: BusNames, region: str) -> list[str]:
    """``put`` into its own bucket: chunks and the meta message are publishes under ``$O.<bucket>``."""
    return [f"$O.{names.evidence_bucket(region)}.>"]


def event_subjects(
    party: str, addressees: Iterable[str], catalog: Catalog = CATALOG, *, families: Iterable[str] | None = None
) -> list[str]:
    """Every event subject ``party`` may publish: each type of the catalog (of ``families``,
    default all but escalations) to each addressee, in every version the catalog holds.

    Enumerated, never a wildcard in a token: the server then refuses any subject the grammar
    does not know (a token that is not UTF-8 included, which would kill a reader's client).
    A contract version or event type added later needs the configuration regenerated."""
    wanted = set(families) if families is not None else {t.family for t in catalog} - {ESCALATION.family}
    return [
        f"{ROOT}.{t.subject_version}.{t.family}.{t.event}.{party}.{to}"
        for t in catalog
        if t.family in wanted
        for to in addressees
    ]


def region_permissions(region: str, names: BusNames = DEFAULT_NAMES, regions: Iterable[str] = ()) -> Permissions:
    """A region: its own events, dead letters and alerts; its own durable; evidence
    (``regions``: every configured region, the addressees of its events)."""
    _check_code(region)
    codes = list(dict.fromkeys([*regions, region]))
    publish = [
        *event_subjects(region, [*(r for r in codes if r != region), BROADCAST]),
        *(f"{DLQ_ROOT}.{region}.{code}" for code in sorted(REASON_CODES)),
        *(f"{ALERT_ROOT}.{region}.{code}" for code in sorted(REASON_CODES)),
        f"{CHECKPOINT_ROOT}.{region}",
        f"{JS_API}.INFO",
        *_stream_info(names.stream, names.dead_letter_stream),
        *_durable_reader(names.stream, consumer_name(region)),
        _last_of(names.dead_letter_stream, f"{CHECKPOINT_ROOT}.{AUDITOR}"),
        *_evidence_reader(names, codes),
        *_evidence_writer(names, region),
    ]
    subscribe = [*subscribe_patterns(region, ANY_VERSION), f"{inbox_prefix(region)}.>"]
    return Permissions("region", tuple(publish), tuple(subscribe), publish_deny=_forged_roots(region))


def coordinator_permissions(names: BusNames = DEFAULT_NAMES, regions: Iterable[str] = ()) -> Permissions:
    """Reads everything by direct get; publishes only escalations."""
    codes = list(regions)
    publish = [
        *event_subjects(COORDINATOR, [*codes, BROADCAST], families=[ESCALATION.family]),
        f"{JS_API}.INFO",
        *_stream_info(names.stream, names.dead_letter_stream),
        # Read-only metadata of every durable: the consumer lag of each region on /metrics.
        f"{JS_API}.CONSUMER.INFO.{names.stream}.>",
        f"{JS_API}.STREAM.MSG.GET.{names.dead_letter_stream}",
        *_direct_reader(names.stream),
        *_direct_reader(names.dead_letter_stream),
        *_evidence_reader(names, codes),
    ]
    subscribe = [f"{ROOT}.>", f"{inbox_prefix(COORDINATOR)}.>"]
    return Permissions(
        "coordinator", tuple(dict.fromkeys(publish)), tuple(subscribe), publish_deny=_forged_roots(COORDINATOR)
    )


def auditor_permissions(names: BusNames = DEFAULT_NAMES, regions: Iterable[str] = ()) -> Permissions:
    """Reads everything by direct get; publishes no event and creates no consumer. Its one
    publication is the verifiable log's checkpoint (``xregion.checkpoint.AUDIT``), which the
    regions' witnesses cosign; every other subject under ``xregion.`` of four tokens or more
    (events, dead letters, alerts) stays denied.

    A consumer-create request, whatever its subject, carries the consumer's configuration:
    one with a ``deliver_subject`` makes the server publish every message it selects there
    (on the bus, a subject a stream captures), and one named like a region's durable
    rewrites it (measured with nats-server 2.15). Readers therefore read by sequence.
    """
    publish = [
        f"{CHECKPOINT_ROOT}.{AUDITOR}",
        f"{JS_API}.INFO",
        *_stream_info(names.stream, names.dead_letter_stream),
        f"{JS_API}.CONSUMER.INFO.{names.stream}.>",
        f"{JS_API}.CONSUMER.NAMES.{names.stream}",
        f"{JS_API}.CONSUMER.LIST.{names.stream}",
        *_direct_reader(names.stream),
        *_direct_reader(names.dead_letter_stream),
        *_evidence_reader(names, regions),
    ]
    subscribe = [f"{ROOT}.>", f"{inbox_prefix(AUDITOR)}.>"]
    return Permissions("auditor", tuple(dict.fromkeys(publish)), tuple(subscribe), publish_deny=(f"{ROOT}.*.*.>",))


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
    codes = list(regions)
    if party == COORDINATOR:
        return coordinator_permissions(names, codes)
    if party == AUDITOR:
        return auditor_permissions(names, codes)
    if party == OPERATOR:
        return operator_permissions()
    if party in set(codes):
        return region_permissions(party, names, codes)
    raise ConfigError(f"{party} is neither a configured region nor one of COORD, AUDIT, {OPERATOR}", party=party)


def parties(regions: Iterable[str]) -> list[str]:
    """Every party that gets a NATS identity: the regions, then ``COORD``, ``AUDIT``, ``ADMIN``."""
    codes = list(regions)
    for reserved in (OPERATOR, BUS_ACCOUNT):
        if reserved in codes:
            raise ConfigError(f"{reserved} is reserved (operator identity, bus account); it cannot be a region code")
    return [*codes, COORDINATOR, AUDITOR, OPERATOR]


def _check_code(code: str) -> None:
    if not PARTY_CODE.match(code):
        raise ConfigError(f"party code {code!r} does not match {PARTY_CODE.pattern}", party=code)
