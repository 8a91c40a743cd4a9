"""The boundary suite: every party's real identity on the secured broker tries every way we
could think of to write, read or delete what is not its own (issue 13, ops/README.md
"What each party may do").

What must hold afterwards, whatever was tried: the event stream, the dead-letter stream and
every region's evidence bucket hold exactly what the genuine parties put there; TJ's adapter
still receives; nothing a party sent as a request made the server publish its answer onto the
bus (reply subjects cross a service import and are rewritten by the server).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from tests.bus import eventually
from tests.security.conftest import REGIONS
from tests.security.secure_bus import SecureBus
from xregion.examples import PAYLOADS
from xregion.permissions import DEFAULT_NAMES, consumer_name, permissions_for

pytestmark = pytest.mark.anyio

EVIDENCE = b"TJ's evidence: a photo of the counterfeit goods" * 100


def streams() -> list[str]:
    return [
        DEFAULT_NAMES.stream,
        DEFAULT_NAMES.dead_letter_stream,
        *(DEFAULT_NAMES.object_stream(r) for r in REGIONS),
    ]


async def bus_state(bus: SecureBus) -> dict[str, tuple[int, int]]:
    """(messages, last sequence) of every stream of the bus, as the operator sees them."""
    js = (await bus.connect("ADMIN")).jetstream()
    out = {}
    for name in streams():
        state = (await js.stream_info(name)).state
        out[name] = (int(state.messages or 0), int(state.last_seq or 0))
    return out


async def barrier(nc: Client) -> None:
    """A JetStream API round trip on ``nc`` after everything it sent before (every party may
    ask ``$JS.API.INFO``): the server has read what came earlier on this connection."""
    await nc.flush()
    await nc.request("$JS.API.INFO", b"", timeout=5.0)


def victims(attacker: str) -> list[str]:
    """Subjects a hostile party would love the server to publish onto."""
    other = next(r for r in REGIONS if r != attacker)
    third = next(r for r in REGIONS if r not in (attacker, other))
    meta = base64.urlsafe_b64encode(b"x").decode()
    return [
        f"xregion.v1.lead.submitted.{other}.{third}",
        f"xregion.v1.share.blacklist_upserted.{other}.ALL",
        f"xregion.dlq.{other}.forged",
        f"xregion.alert.{other}.bad_signature",
        f"xregion.checkpoint.{other}",
        f"$O.{DEFAULT_NAMES.evidence_bucket(other)}.M.{meta}",
    ]


def concrete(pattern: str, party: str) -> str:
    """A subject matching a permission pattern (wildcards filled as a real call would)."""
    tokens = pattern.split(".")
    filled = [("x" if t == "*" else t) for t in tokens if t != ">"]
    if tokens[-1] == ">":
        filled.append(f"$O.{DEFAULT_NAMES.evidence_bucket(party)}.C.x" if "OBJ_" in pattern else "x")
    return ".".join(filled)


def api_calls(party: str) -> list[tuple[str, bytes]]:
    """Every JetStream API call ``party`` may make, with a body that makes the server answer."""
    calls: list[tuple[str, bytes]] = []
    for pattern in permissions_for(party, REGIONS).publish:
        if not pattern.startswith("$JS.API."):
            continue
        subject = concrete(pattern, party)
        if ".DIRECT.GET." in subject or ".MSG.GET." in subject:
            body = json.dumps({"seq": 1}).encode() if subject.count(".") == 4 else b""
        elif ".MSG.NEXT." in subject:
            body = json.dumps({"batch": 10, "no_wait": True}).encode()
        else:
            body = b""
        calls.append((subject, body))
    return calls


async def publish_raw(nc: Client, subject: bytes, payload: bytes = b"{}") -> None:
    """PUB with any bytes as the subject (nats-py encodes str subjects as strict UTF-8)."""
    await nc._send_command(b"PUB " + subject + b" " + str(len(payload)).encode() + b"\r\n" + payload + b"\r\n")
    await nc.flush()


def owner_for(attacker: str) -> str:
    """Whose evidence the attacker goes after: TJ's, or BJ's when TJ attacks."""
    return "BJ" if attacker == "TJ" else "TJ"


async def genuine_traffic(bus: SecureBus, owner: str = "TJ") -> str:
    """BJ and TJ at work, ``owner``'s evidence stored; its object name."""
    bj, tj = bus.adapters.get("BJ"), bus.adapters.get("TJ")
    assert bj is not None and tj is not None
    ref = await bus.adapters[owner].client.attach(EVIDENCE, filename="photo.jpg", media_type="image/jpeg")
    sent = await bj.client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    await bus.state("BJ", sent.envelope.subject, "received")
    return ref.object_name


async def still_served(bus: SecureBus, evidence: str, owner: str) -> None:
    """TJ still receives BJ's leads exactly once, and ``owner``'s evidence is intact for the other."""
    sent = await bus.adapters["BJ"].client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    await bus.state("BJ", sent.envelope.subject, "received")
    got = [d for d in bus.received["TJ"] if d.event.envelope.id == sent.envelope.id]
    assert len(got) == 1
    reader = bus.adapters["TJ" if owner == "BJ" else "BJ"]
    path = await reader.client.download(_ref(evidence), bus.root / "check" / "photo.jpg", owner=owner)
    assert path.read_bytes() == EVIDENCE


def _ref(name: str):  # type: ignore[no-untyped-def]
    from xregion.contracts.common import AttachmentRef

    return AttachmentRef(object_name=name, filename="p.jpg", media_type="image/jpeg", size=len(EVIDENCE), sha256=name)


async def attempts(nc: Client, party: str, evidence: str, owner: str) -> Iterable[str]:
    """Everything ``party`` tries; returns the subjects it published on (for the logs)."""
    tried: list[str] = []
    # 1. Every API call it may make, its answer aimed at a subject the bus captures.
    for subject, body in api_calls(party):
        for victim in victims(party):
            await nc.publish(subject, body, reply=victim)
    # 2. Events, dead letters, alerts and checkpoints in other parties' names.
    for victim in victims(party):
        await nc.publish(victim, b'{"forged": true}')
        tried.append(victim)
    # 3. Subjects the grammar does not know, some not UTF-8.
    for raw in (
        f"xregion.v1.lead.\xff\xfe.{party}.TJ".encode("latin-1"),
        f"xregion.v1.lead.submitted.{party}.\xff".encode("latin-1"),
        f"xregion.v9.lead.submitted.{party}.TJ".encode(),
        f"xregion.dlq.{party}.\xc3\x28".encode("latin-1"),
    ):
        await publish_raw(nc, raw)
    # 4. Consumers: a push consumer delivering onto the bus, on the events and on evidence.
    for stream in (DEFAULT_NAMES.stream, DEFAULT_NAMES.object_stream(owner)):
        for victim in victims(party)[:2]:
            config = {"stream_name": stream, "config": {"deliver_subject": victim, "ack_policy": "none"}}
            await nc.publish(f"$JS.API.CONSUMER.CREATE.{stream}", json.dumps(config).encode())
            named = {"stream_name": stream, "config": {"name": "evil", "deliver_subject": victim}}
            await nc.publish(f"$JS.API.CONSUMER.CREATE.{stream}.evil", json.dumps(named).encode())
    # ... rewriting TJ's durable, fetching from it
    hijack = {"stream_name": "XREGION", "config": {"name": consumer_name("TJ"), "filter_subject": "xregion.>"}}
    await nc.publish("$JS.API.CONSUMER.CREATE.XREGION", json.dumps(hijack).encode())
    if party != "TJ":
        await nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.XREGION.{consumer_name('TJ')}", b'{"batch": 5, "no_wait": true}')
    # 5. Delete, purge, change.
    for stream in streams():
        for call in ("STREAM.PURGE", "STREAM.DELETE", "STREAM.UPDATE"):
            await nc.publish(f"$JS.API.{call}.{stream}", b"{}")
        await nc.publish(f"$JS.API.STREAM.MSG.DELETE.{stream}", b'{"seq": 1}')
    await nc.publish(f"$JS.API.CONSUMER.DELETE.XREGION.{consumer_name('TJ')}", b"")
    # 6. Another region's evidence: overwrite its metadata, mark it deleted, add a chunk.
    bucket = DEFAULT_NAMES.evidence_bucket(owner)
    meta = f"$O.{bucket}.M.{base64.urlsafe_b64encode(evidence.encode()).decode()}"
    forged = {"name": evidence, "bucket": bucket, "nuid": "x", "size": 1, "digest": "SHA-256=AAAA", "deleted": True}
    await nc.publish(meta, json.dumps(forged).encode(), headers={"Nats-Rollup": "sub"})
    await nc.publish(f"$O.{bucket}.C.x", b"junk")
    tried += [meta, f"$O.{bucket}.C.x"]
    await barrier(nc)
    return tried


@pytest.mark.parametrize("attacker", ["BJ", "TJ", "HE", "COORD", "AUDIT"])
async def test_no_party_writes_reads_or_deletes_what_is_not_its_own(secure_bus: SecureBus, attacker: str) -> None:
    await secure_bus.start("BJ", "TJ")
    owner = owner_for(attacker)
    evidence = await genuine_traffic(secure_bus, owner)
    before = await bus_state(secure_bus)
    nc = await secure_bus.connect(attacker)
    tried = await attempts(nc, attacker, evidence, owner)

    assert await bus_state(secure_bus) == before, "something the attacker sent reached a stream"
    for subject in tried:
        if not subject.startswith(f"xregion.checkpoint.{attacker}"):
            await secure_bus.log.wait_violation(subject, attacker)
    await still_served(secure_bus, evidence, owner)
    after = await bus_state(secure_bus)
    assert after[DEFAULT_NAMES.dead_letter_stream] == before[DEFAULT_NAMES.dead_letter_stream]
    assert after[DEFAULT_NAMES.stream][1] == before[DEFAULT_NAMES.stream][1] + 2  # the lead and its receipt


async def test_region_cannot_read_another_regions_traffic_or_the_stream(secure_bus: SecureBus) -> None:
    """BJ fetching from TJ's durable or reading the event stream by sequence gets nothing."""
    await secure_bus.start("BJ", "TJ")
    await genuine_traffic(secure_bus)
    nc = await secure_bus.connect("BJ")
    answers: list[bytes] = []
    inbox = nc.new_inbox()

    async def answered(msg: Msg) -> None:
        answers.append(msg.data)

    await nc.subscribe(inbox, cb=answered)
    await nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.XREGION.{consumer_name('TJ')}", b'{"batch": 5}', reply=inbox)
    await nc.publish("$JS.API.DIRECT.GET.XREGION", b'{"seq": 1}', reply=inbox)
    await nc.publish("$JS.API.STREAM.MSG.GET.XREGION", b'{"seq": 1}', reply=inbox)
    await barrier(nc)
    for subject in ("$JS.API.CONSUMER.MSG.NEXT.XREGION.region-TJ", "$JS.API.DIRECT.GET.XREGION"):
        await secure_bus.log.wait_violation(subject.lower(), "BJ")
    assert answers == []


async def test_a_certificate_is_its_party_whatever_nkey_comes_with_it(secure_bus: SecureBus) -> None:
    """TJ's certificate with an NKey seed attached connects as TJ, and only as TJ: the server
    maps the certificate to the party, there is no second credential to mix with it."""
    import nkeys

    from xregion.runtime.connection import ClientIdentity

    seed = secure_bus.root / "someone.nk"
    seed.write_text(nkeys.encode_seed(b"\x01" * 32, nkeys.PREFIX_BYTE_USER).decode() + "\n")
    tj = secure_bus.security.identity("TJ")
    mixed = ClientIdentity("TJ", nkey_seed=seed, tls_ca=tj.tls_ca, tls_cert=tj.tls_cert, tls_key=tj.tls_key)
    nc = await secure_bus.connect("TJ", mixed)
    subject = "xregion.v1.lead.submitted.BJ.HE"
    await nc.publish(subject, b"{}")
    await barrier(nc)
    await secure_bus.log.wait_violation(subject, "TJ")
    assert subject not in await secure_bus.stream_subjects()

    async def as_tj() -> bool:
        ack = await nc.jetstream().publish("xregion.v1.lead.submitted.TJ.HE", b"{}", timeout=2.0)
        return ack.stream == "XREGION"

    assert await eventually(as_tj, 5.0, "TJ's certificate to publish as TJ")
