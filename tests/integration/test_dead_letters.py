"""Every bad input ends in the dead-letter stream with its reason; the adapter carries on.

A real TJ adapter consumes from a real nats-server. The test plays BJ as a buggy or
malicious peer would: it publishes hand-made messages with plain nats-py onto BJ's subjects
in the ``XREGION`` stream — malformed JSON, wrong schema, unknown versions, forged or
unsigned events, broken link chains, illegal lifecycle steps, oversized bodies, subjects
that contradict their envelope. For each one the test checks that

* exactly one dead letter exists, with the stable reason code, TJ as region, the original
  subject, stream sequence and event id, and the original bytes unchanged;
* a structured ``event dead-lettered`` log line names the reason (an error line for
  authenticity failures, which are security events);
* the bad message is settled (nothing pending or awaiting acknowledgement, no redelivery);
* a valid event sent right after it — correctly signed and chained on BJ's link to TJ —
  reaches TJ's handler: the adapter keeps processing.

An authentic event that is refused after its signature and link were verified (wrong
payload, illegal step, subject mismatch) still advances the BJ→TJ link; one refused before
(unreadable, forged, out of chain) does not. The next valid event is chained accordingly,
so a consumer that got this wrong would refuse it.
"""

from __future__ import annotations

import asyncio
import base64
import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from nats.js import JetStreamContext

from tests.bus import Bus, eventually
from tests.integration.helpers import quiesce
from tests.support import example_event
from xregion.chain import GENESIS, ChainHead, link_key
from xregion.codec import MAX_EVENT_BYTES, DecodedEvent, encode
from xregion.compose import seal
from xregion.envelope import SOURCE
from xregion.ids import new_event_id, new_referral_id
from xregion.runtime.deadletter import DeadLetter
from xregion.runtime.settings import RuntimeSettings
from xregion.runtime.topology import consumer_name, ensure_topology
from xregion.signing import Signer, event_hash

pytestmark = pytest.mark.anyio

SUBMITTED = "xregion.v1.lead.submitted.BJ.TJ"
FAKE_HASH = "sha256:" + "ab" * 32
SECURITY_CODES = {
    "bad_signature",
    "unknown_key",
    "key_not_valid",
    "key_revoked",
    "chain_gap",
    "chain_fork",
    "chain_replay",
}
"""Authenticity failures: logged as security events (errors). Others may be flagged too."""


# --- BJ as a peer that can misbehave ------------------------------------------------------


def _link_of(wire: dict[str, Any]) -> str:
    match = SOURCE.match(str(wire.get("source", "")))
    sender = match[1] if match else "?"
    version = str(wire.get("type", "")).rsplit(".v", 1)[-1]
    return link_key(sender, str(wire.get("addressee")), int(version) if version.isdigit() else 1)


@dataclass
class Peer:
    """BJ's origin chain and link chains, as BJ's own adapter would keep them.

    :meth:`good` seals a valid event (validated like a real sender would); :meth:`forge`
    signs whatever it is given at the next chain position, without validating it.
    ``advance`` says whether TJ is expected to count the event on its link (it was
    authentic and in chain, even if refused afterwards).
    """

    signer: Signer
    originseq: int = 0
    prevhash: str = GENESIS.hash
    links: dict[str, ChainHead] = field(default_factory=dict)

    def head(self, wire: dict[str, Any]) -> ChainHead:
        return self.links.get(_link_of(wire), GENESIS)

    def advance(self, wire: dict[str, Any]) -> None:
        digest = event_hash(wire)
        self.originseq += 1
        self.prevhash = digest
        self.links[_link_of(wire)] = ChainHead(int(wire["linkseq"]), digest)

    def good(self, referral_id: str | None = None) -> DecodedEvent:
        event = example_event("lead.submitted", sender="BJ", to="TJ", referral_id=referral_id, sealed=True)
        head = self.head(event)
        decoded = seal(
            event,
            seq=self.originseq + 1,
            prevhash=self.prevhash,
            linkseq=head.seq + 1,
            linkprev=head.hash,
            signer=self.signer,
        )
        self.advance(decoded.wire)
        return decoded

    def forge(
        self,
        event: dict[str, Any],
        *,
        advance: bool,
        signer: Signer | None = None,
        linkseq: int | None = None,
        linkprev: str | None = None,
        skip: int = 0,
    ) -> dict[str, Any]:
        """``skip``: leave out that many events before this one (in both chains)."""
        head = self.head(event)
        wire = {
            **event,
            "originseq": self.originseq + 1 + skip,
            "prevhash": self.prevhash,
            "linkseq": head.seq + 1 + skip if linkseq is None else linkseq,
            "linkprev": head.hash if linkprev is None else linkprev,
        }
        signed = (signer or self.signer).sign(wire)
        if advance:
            self.advance(signed)
        return signed


@dataclass(frozen=True)
class Bad:
    """One bad message: where it is published, its exact bytes, the event id its dead letter
    names (read from a valid envelope, or claimed by a readable JSON object)."""

    subject: str
    body: bytes
    event_id: str | None


@dataclass(frozen=True)
class Ctx:
    signers: dict[str, Signer]
    first: DecodedEvent
    """A lead BJ→TJ that TJ has already received."""


Build = Callable[[Peer, Ctx], Bad]


def submitted(**kw: Any) -> dict[str, Any]:
    return example_event("lead.submitted", sender="BJ", to="TJ", sealed=True, **kw)


def signed(wire: dict[str, Any], subject: str = SUBMITTED, *, readable: bool = True) -> Bad:
    """``readable``: a JSON object within the size limit (its envelope valid or not), so its
    dead letter names the id it holds."""
    return Bad(subject, encode(wire), wire["id"] if readable else None)


def raw(body: bytes) -> Build:
    return lambda peer, ctx: Bad(SUBMITTED, body, None)


def changed(event: dict[str, Any], edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    out = copy.deepcopy(event)
    edit(out)
    return out


# --- the bad inputs -----------------------------------------------------------------------


def truncated_json(peer: Peer, ctx: Ctx) -> Bad:
    body = encode(peer.forge(submitted(), advance=False))
    return Bad(SUBMITTED, body[: len(body) // 2], None)


def envelope_missing_field(peer: Peer, ctx: Ctx) -> Bad:
    event = changed(submitted(), lambda e: e.pop("correlationid"))
    return signed(peer.forge(event, advance=False))  # the id it claims, though the envelope is invalid


def invalid_uscc(peer: Peer, ctx: Ctx) -> Bad:
    def edit(e: dict[str, Any]) -> None:
        uscc = e["data"]["suspects"][0]["uscc"]
        e["data"]["suspects"][0]["uscc"] = uscc[:-1] + ("7" if uscc[-1] != "7" else "8")  # wrong check character

    return signed(peer.forge(changed(submitted(), edit), advance=True))


def payload_missing_field(peer: Peer, ctx: Ctx) -> Bad:
    return signed(peer.forge(changed(submitted(), lambda e: e["data"].pop("title")), advance=True))


def dataschema_of_other_type(peer: Peer, ctx: Ctx) -> Bad:
    event = changed(submitted(), lambda e: e.update(dataschema="urn:xregion:schema:v1:lead.accepted"))
    return signed(peer.forge(event, advance=True))


def unknown_version(peer: Peer, ctx: Ctx) -> Bad:
    # A sender that already speaks a v9 nobody agreed on; its v9 events form their own link
    # (BJ>TJ@v9), which starts at 1.
    def edit(e: dict[str, Any]) -> None:
        e["type"] = "cn.jjj.xregion.lead.submitted.v9"
        e["dataschema"] = "urn:xregion:schema:v9:lead.submitted"

    return signed(peer.forge(changed(submitted(), edit), advance=True))


def unknown_type(peer: Peer, ctx: Ctx) -> Bad:
    def edit(e: dict[str, Any]) -> None:
        e["type"] = "cn.jjj.xregion.lead.teleported.v1"
        e["dataschema"] = "urn:xregion:schema:v1:lead.teleported"

    return signed(peer.forge(changed(submitted(), edit), advance=True), "xregion.v1.lead.teleported.BJ.TJ")


def flipped_signature(peer: Peer, ctx: Ctx) -> Bad:
    wire = peer.forge(submitted(), advance=False)
    signature = bytearray(base64.b64decode(wire["signature"]))
    signature[17] ^= 0x01
    return signed({**wire, "signature": base64.b64encode(bytes(signature)).decode("ascii")})


def tampered_after_signing(peer: Peer, ctx: Ctx) -> Bad:
    wire = peer.forge(submitted(), advance=False)
    return signed(changed(wire, lambda e: e["data"].update(title="篡改后的标题")))


def unsigned(peer: Peer, ctx: Ctx) -> Bad:
    return signed(changed(peer.forge(submitted(), advance=False), lambda e: e.pop("signature")))


def unknown_key(peer: Peer, ctx: Ctx) -> Bad:
    return signed(peer.forge(submitted(), advance=False, signer=Signer.generate("BJ")))


def someone_elses_key(peer: Peer, ctx: Ctx) -> Bad:
    return signed(peer.forge(submitted(), advance=False, signer=ctx.signers["HE"]))


def chain_gap(peer: Peer, ctx: Ctx) -> Bad:
    return signed(peer.forge(submitted(), advance=False, skip=1, linkprev=FAKE_HASH))


def chain_fork(peer: Peer, ctx: Ctx) -> Bad:
    return signed(peer.forge(submitted(), advance=False, linkprev=FAKE_HASH))


def chain_replay(peer: Peer, ctx: Ctx) -> Bad:
    return signed(peer.forge(submitted(), advance=False, linkseq=1, linkprev=GENESIS.hash))


def accepted_by_origin(peer: Peer, ctx: Ctx) -> Bad:
    event = example_event("lead.accepted", sender="BJ", to="TJ", referral_id=ctx.first.envelope.subject)
    return signed(peer.forge(event, advance=True), "xregion.v1.lead.accepted.BJ.TJ")


def concluded_unknown_referral(peer: Peer, ctx: Ctx) -> Bad:
    event = example_event("lead.concluded", sender="BJ", to="TJ", referral_id=new_referral_id("TJ"))
    return signed(peer.forge(event, advance=True), "xregion.v1.lead.concluded.BJ.TJ")


def submitted_twice(peer: Peer, ctx: Ctx) -> Bad:
    return signed(peer.forge(submitted(referral_id=ctx.first.envelope.subject), advance=True))


def lead_broadcast(peer: Peer, ctx: Ctx) -> Bad:
    event = example_event("lead.submitted", sender="BJ", to="ALL", sealed=True)
    return signed(peer.forge(event, advance=True), "xregion.v1.lead.submitted.BJ.ALL")


def unknown_agency(peer: Peer, ctx: Ctx) -> Bad:
    return signed(peer.forge(submitted(agency="nosuchagency"), advance=True))


def oversized(peer: Peer, ctx: Ctx) -> Bad:
    # Over the event limit, well under the server's 1 MB max_payload: it arrives.
    event = changed(submitted(), lambda e: e.update(padding="x" * (MAX_EVENT_BYTES + 4096)))
    return signed(peer.forge(event, advance=False), readable=False)


def on_other_event_subject(peer: Peer, ctx: Ctx) -> Bad:
    return signed(peer.forge(submitted(), advance=True), "xregion.v1.lead.withdrawn.BJ.TJ")


def on_other_sender_subject(peer: Peer, ctx: Ctx) -> Bad:
    return signed(peer.forge(submitted(), advance=True), "xregion.v1.lead.submitted.HE.TJ")


def id_that_is_not_an_event_id(peer: Peer, ctx: Ctx) -> Bad:
    """The id must not reach the dead letter's headers: not an event id (and a header break)."""
    event = changed(submitted(), lambda e: e.update(id="x\r\nNats-Msg-Id: forged"))
    return signed(peer.forge(event, advance=False), readable=False)


def not_a_number(peer: Peer, ctx: Ctx) -> Bad:
    wire = peer.forge(submitted(), advance=False)
    return Bad(SUBMITTED, encode(wire)[:-1] + b',"x":NaN}', None)


@dataclass(frozen=True)
class Case:
    id: str
    code: str
    build: Build
    next_after_dead_letter: bool = False
    """Send the next valid event only once the dead letter exists (see the chain gap case)."""


CASES = [
    Case("truncated-json", "malformed_json", truncated_json),
    Case("not-utf8", "malformed_json", raw(b'{"specversion": "1.0", "id": "\xff\xfe"}')),
    Case("empty-body", "malformed_json", raw(b"")),
    Case("nan-literal", "malformed_json", not_a_number),
    Case("deeply-nested-json", "malformed_json", raw(b"[" * 100_000 + b"]" * 100_000)),
    Case("huge-integer", "malformed_json", raw(b'{"originseq": ' + b"9" * 5000 + b"}")),
    Case("json-array", "schema_invalid", raw(b'["specversion", "1.0"]')),
    Case("envelope-missing-correlationid", "schema_invalid", envelope_missing_field),
    Case("id-not-an-event-id", "schema_invalid", id_that_is_not_an_event_id),
    Case("invalid-uscc-check-character", "schema_invalid", invalid_uscc),
    Case("payload-missing-title", "schema_invalid", payload_missing_field),
    Case("dataschema-of-other-type", "schema_invalid", dataschema_of_other_type),
    Case("unknown-event-version", "unknown_event_version", unknown_version),
    Case("unknown-event-type", "unknown_event_type", unknown_type),
    Case("signature-byte-flipped", "bad_signature", flipped_signature),
    Case("tampered-after-signing", "bad_signature", tampered_after_signing),
    Case("unsigned", "bad_signature", unsigned),
    Case("unknown-key", "unknown_key", unknown_key),
    Case("signed-with-another-partys-key", "key_not_valid", someone_elses_key),
    # Alone in flight, a gap cannot be a reordering: it is dead-lettered at once. (Sent
    # together with its successor, it may first wait for the missing event: see the
    # interleaved and the redelivery-budget tests.)
    Case("chain-gap", "chain_gap", chain_gap, next_after_dead_letter=True),
    Case("chain-fork", "chain_fork", chain_fork),
    Case("chain-replay", "chain_replay", chain_replay),
    Case("accepted-sent-by-origin", "illegal_transition", accepted_by_origin),
    Case("concluded-for-unknown-referral", "illegal_transition", concluded_unknown_referral),
    Case("submitted-twice", "duplicate_referral", submitted_twice),
    Case("lead-broadcast", "misaddressed", lead_broadcast),
    Case("unknown-agency", "unknown_party", unknown_agency),
    Case("oversized", "oversized", oversized),
    Case("subject-names-other-event", "subject_mismatch", on_other_event_subject),
    Case("subject-names-other-sender", "subject_mismatch", on_other_sender_subject),
]


# --- plumbing -----------------------------------------------------------------------------


async def publish(js: JetStreamContext, bus: Bus, subject: str, body: bytes, msg_id: str | None = None) -> int:
    """Publish into the event stream as a peer would; the stream sequence it got."""
    headers = {"Nats-Msg-Id": msg_id or new_event_id()}
    ack = await js.publish(subject, body, stream=bus.settings.stream, headers=headers, timeout=5.0)
    assert not ack.duplicate
    return int(ack.seq)


async def send_good(js: JetStreamContext, bus: Bus, event: DecodedEvent) -> int:
    return await publish(js, bus, event.subject, encode(event.wire), event.envelope.id)


def received_ids(bus: Bus, region: str = "TJ") -> list[str]:
    return [d.event.envelope.id for d in bus.received.get(region, [])]


async def has_received(bus: Bus, *events: DecodedEvent) -> bool:
    got = received_ids(bus)
    return all(e.envelope.id in got for e in events)


async def letters_settled(bus: Bus, n: int) -> list[DeadLetter] | None:
    letters = await bus.dead_letters("TJ")
    return letters if len(letters) >= n else None


async def assert_settled(bus: Bus, js: JetStreamContext) -> None:
    """Nothing of TJ's is pending, awaiting an ack, or redelivered; TJ's parts still run."""
    await quiesce(bus)
    info = await js.consumer_info(bus.settings.stream, consumer_name("TJ"))
    assert info.num_ack_pending == 0, f"{info.num_ack_pending} message(s) still await acknowledgement"
    assert info.num_pending == 0
    assert info.num_redelivered == 0, "a bad message was redelivered instead of settled at once"
    adapter = bus.adapters["TJ"]
    assert adapter._tasks and not any(t.done() for t in adapter._tasks), "an adapter part stopped"


# --- tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_bad_input_is_dead_lettered_and_the_next_event_delivered(
    bus: Bus, js: JetStreamContext, signers: dict[str, Signer], logs: list[dict[str, Any]], case: Case
) -> None:
    await bus.start("TJ")
    bj = Peer(signers["BJ"])
    first = bj.good()
    await send_good(js, bus, first)
    await eventually(lambda: has_received(bus, first), what="the first lead at TJ")

    bad = case.build(bj, Ctx(signers, first))
    bad_seq = await publish(js, bus, bad.subject, bad.body)
    after = bj.good()
    if case.next_after_dead_letter:
        await eventually(lambda: letters_settled(bus, 1), what=f"the {case.code} dead letter")
    after_seq = await send_good(js, bus, after)

    await eventually(lambda: has_received(bus, after), what="the valid event sent after the bad one at TJ")
    [letter] = await eventually(lambda: letters_settled(bus, 1), what=f"the {case.code} dead letter")
    await assert_settled(bus, js)

    assert received_ids(bus) == [first.envelope.id, after.envelope.id]
    assert after_seq > bad_seq
    letters = await bus.dead_letters("TJ")
    assert len(letters) == 1, f"dead-lettered more than once: {[x.code for x in letters]}"
    assert letter.code == case.code, f"reason {letter.code}: {letter.reason.get('message')}"
    assert letter.reason["code"] == case.code and letter.reason["message"]
    assert letter.region == "TJ"
    assert letter.original_subject == bad.subject
    assert letter.stream_seq == bad_seq
    assert letter.event_id == bad.event_id
    assert letter.body == bad.body, "the dead letter does not keep the original bytes"
    assert await bus.dead_letters("BJ") == []
    assert bus.adapters["TJ"].consumer is not None and bus.adapters["TJ"].consumer.dead_lettered == 1

    [line] = [e for e in logs if e.get("event") == "event dead-lettered"]
    assert line["reason"] == case.code and line["region"] == "TJ" and line["stream_seq"] == bad_seq
    assert line["subject"] == bad.subject
    if case.code in SECURITY_CODES:
        assert line["security_event"] is True
    assert line["log_level"] == ("error" if line["security_event"] else "warning")


async def test_bad_inputs_interleaved_with_good_ones(
    bus: Bus, js: JetStreamContext, signers: dict[str, Signer]
) -> None:
    """Published back to back, without waiting: every valid event is delivered once and in
    order, every bad one is dead-lettered once with its own reason."""
    await bus.start("TJ")
    bj = Peer(signers["BJ"])
    goods: list[DecodedEvent] = []
    bads: list[tuple[int, str, Bad]] = []

    async def good() -> None:
        goods.append(bj.good())
        await send_good(js, bus, goods[-1])

    async def bad(code: str, build: Build) -> None:
        item = build(bj, Ctx(signers, goods[0]))
        bads.append((await publish(js, bus, item.subject, item.body), code, item))

    await good()
    await bad("malformed_json", truncated_json)
    await good()
    await bad("bad_signature", flipped_signature)
    await bad("oversized", oversized)
    await good()
    await bad("illegal_transition", accepted_by_origin)
    await good()
    await bad("unknown_key", unknown_key)
    await bad("subject_mismatch", on_other_event_subject)
    await bad("schema_invalid", invalid_uscc)
    await good()
    await bad("chain_replay", chain_replay)
    await bad("malformed_json", raw(b"[" * 100_000 + b"]" * 100_000))
    await good()
    await bad("chain_fork", chain_fork)
    await good()

    await eventually(lambda: has_received(bus, *goods), what="every valid event at TJ")
    letters = await eventually(lambda: letters_settled(bus, len(bads)), what="every dead letter")
    await quiesce(bus)
    info = await js.consumer_info(bus.settings.stream, consumer_name("TJ"))
    assert info.num_ack_pending == 0 and info.num_pending == 0 and info.num_redelivered == 0
    consumer = bus.adapters["TJ"].consumer
    assert consumer is not None and consumer.dead_lettered == len(bads), "a bad message was dead-lettered twice"

    assert received_ids(bus) == [g.envelope.id for g in goods], "valid events lost, repeated or reordered"
    letters = await bus.dead_letters("TJ")
    assert [(x.stream_seq, x.code) for x in letters] == [(seq, code) for seq, code, _ in bads]
    assert [x.body for x in letters] == [item.body for _, _, item in bads]


async def test_chain_gap_waiting_for_an_outstanding_message_is_dead_lettered_not_dropped(
    bus: Bus, js: JetStreamContext, signers: dict[str, Signer]
) -> None:
    """A gap waits while an earlier message is still out (held by another instance of the
    adapter that may have crashed). If the missing event never comes, the gapped message is
    dead-lettered before its redelivery budget runs out — not silently dropped by JetStream."""
    bus.settings = RuntimeSettings(ack_wait_s=5.0, max_deliver=3)
    await ensure_topology(js, bus.settings, ("TJ",))
    bj = Peer(signers["BJ"])
    held = bj.good()  # BJ>TJ 1
    await send_good(js, bus, held)
    gapped = bj.forge(submitted(), advance=False, skip=1, linkprev=FAKE_HASH)  # BJ>TJ 2 is never sent
    gap_seq = await publish(js, bus, SUBMITTED, encode(gapped), gapped["id"])

    # Another instance takes the first message and keeps working on it.
    other = await js.pull_subscribe_bind(durable=consumer_name("TJ"), stream=bus.settings.stream)
    [msg] = await other.fetch(1, timeout=5.0)
    assert msg.data == encode(held.wire)

    async def keep_working() -> None:
        while True:
            await msg.in_progress()
            await asyncio.sleep(0.5)

    worker = asyncio.create_task(keep_working())
    try:
        await bus.start("TJ")
        [letter] = await eventually(
            lambda: letters_settled(bus, 1), timeout=12.0, what="the gapped message in the dead-letter stream"
        )
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    assert (letter.code, letter.stream_seq, letter.event_id) == ("chain_gap", gap_seq, gapped["id"])
    assert letter.body == encode(gapped)

    # The other instance gives up; TJ gets the held event, then the next one.
    await msg.nak()
    await eventually(lambda: has_received(bus, held), what="the held event at TJ")
    after = bj.good()
    await send_good(js, bus, after)
    await eventually(lambda: has_received(bus, after), what="the next event at TJ")
    await quiesce(bus)
    assert received_ids(bus) == [held.envelope.id, after.envelope.id]
    assert len(await bus.dead_letters("TJ")) == 1
