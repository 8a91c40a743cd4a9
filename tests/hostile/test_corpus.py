"""The hostile suite: a corpus of bad inputs and a seeded byte-level fuzz, published raw into
a real nats-server (bypassing any sender's adapter) between valid events, against a real
TJ adapter.

Every bad message must end as exactly one dead letter with its expected code (fuzz cases:
exactly one dead letter with a known code, or — if the mutation is harmless — exactly one
delivery; never both, never neither); no bad message reaches the handler; every valid
event reaches it exactly once; and the adapter keeps delivering (a valid event published
after everything else arrives). Waits are conditions with deadlines, never sleeps.
"""

from __future__ import annotations

import base64
import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from nats.js import JetStreamContext

from tests.bus import Bus, eventually
from tests.hostile.peer import Peer, publish, publish_raw_subject, send_good, submitted
from tests.integration.helpers import quiesce
from tests.support import OriginChain, example_event, roster_key
from xregion.codec import MAX_EVENT_BYTES, DecodedEvent, encode
from xregion.ids import new_event_id
from xregion.reasons import REASON_CODES
from xregion.runtime.alerts import SECURITY_CODES
from xregion.runtime.topology import consumer_name, ensure_topology
from xregion.signing import Signer

pytestmark = pytest.mark.anyio

SUBMITTED = "xregion.v1.lead.submitted.BJ.TJ"
FAKE_HASH = "sha256:" + "ab" * 32
ENVELOPE_FIELDS = (
    *("specversion", "id", "source", "type", "time", "subject", "dataschema", "datacontenttype", "data"),
    *("addressee", "correlationid", "causationid", "originseq", "prevhash", "linkseq", "linkprev"),
    *("handling", "handlingnote", "answerby", "keyid", "signature"),
)


@dataclass
class Item:
    """One message of the corpus: its subject, bytes, headers and expected code (None: valid)."""

    subject: str
    body: bytes
    code: str | None
    name: str
    headers: dict[str, str] = field(default_factory=dict)
    raw_subject: bytes | None = None
    event_id: str | None = None
    seq: int = 0


@dataclass
class Corpus:
    """Builds the corpus in publishing order, keeping BJ's (and COORD's) chains as TJ will."""

    signers: dict[str, Signer]
    revoked: Signer
    bj: Peer = field(init=False)
    coord: Peer = field(init=False)
    items: list[Item] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.bj, self.coord = Peer(self.signers["BJ"]), Peer(self.signers["COORD"])

    def good(self) -> DecodedEvent:
        event = self.bj.good()
        self.items.append(Item(event.subject, encode(event.wire), None, "valid", event_id=event.envelope.id))
        return event

    def bad(self, name: str, code: str, body: bytes, subject: str = SUBMITTED, **kw: Any) -> None:
        self.items.append(Item(subject, body, code, name, **kw))

    def forged(self, **kw: Any) -> dict[str, Any]:
        """BJ's next event, signed, at its next chain position, not counted by TJ."""
        return self.bj.forge(submitted(**kw), advance=False)

    def resigned(self, wire: dict[str, Any], **changes: Any) -> bytes:
        """``wire`` with ``changes``, signed again by BJ (``keyid``/``signature`` set after)."""
        out = {**wire, **{k: v for k, v in changes.items() if k not in ("keyid", "signature")}}
        out = self.signers["BJ"].sign(out)
        out.update({k: v for k, v in changes.items() if k in ("keyid", "signature")})
        return encode(out)


WRONG_TYPES: dict[str, Any] = {name: {"a": 1} for name in ENVELOPE_FIELDS}
WRONG_TYPES.update(data=[1], originseq="2", linkseq=True, time="2026-11-25T06:30:00", answerby="25/11/2026")


def build_corpus(c: Corpus) -> None:
    """Every class of bad input, each at least once per reason code the consumer gives."""
    first = c.good()
    body = encode(c.forged())
    # --- bytes that are not (strict) JSON
    c.bad("empty", "malformed_json", b"")
    c.bad("truncated", "malformed_json", body[: len(body) // 2])
    c.bad("trailing-garbage", "malformed_json", body + b"}")
    c.bad("bom", "malformed_json", b"\xef\xbb\xbf" + body)
    c.bad("nul-in-string", "malformed_json", body.replace(b'"title":"', b'"title":"\x00', 1))
    c.bad("utf16", "malformed_json", body.decode().encode("utf-16"))
    c.bad("utf32", "malformed_json", body.decode().encode("utf-32-le"))
    c.bad("latin1", "malformed_json", body.decode().encode("gb18030"))
    c.bad("nan", "malformed_json", body[:-1] + b',"x":NaN}')
    c.bad("1e400", "malformed_json", body[:-1] + b',"x":1e400}')
    c.bad("huge-int", "malformed_json", body.replace(b'"linkseq":', b'"linkseq":1' + b"0" * 30, 1))
    c.bad("lone-surrogate", "malformed_json", body.replace(b'"title":"', b'"title":"\\ud800', 1))
    c.bad("deep-985", "malformed_json", body[:-1] + b',"x":' + b"[" * 985 + b"]" * 985 + b"}")
    c.bad("deep-100k", "malformed_json", b"[" * 100_000 + b"]" * 100_000)
    c.bad("many-members", "malformed_json", b"[" + b"0," * 20_000 + b"0]")
    c.bad("duplicate-member", "duplicate_member", body.replace(b'"title":', b'"title":"x","title":', 1))
    c.bad("duplicate-signature", "duplicate_member", body[:-1] + b',"signature":"AAAA"}')
    c.bad("oversized", "oversized", body[:-1] + b',"y":"' + b"x" * MAX_EVENT_BYTES + b'"}')
    # --- JSON that is not an event envelope
    for value in (b"null", b"[]", b'"event"', b"42", b"true"):
        c.bad(f"not-an-object-{value.decode()}", "schema_invalid", value)
    wire = c.forged()
    for name, value in WRONG_TYPES.items():
        c.bad(f"wrong-type-{name}", "schema_invalid", c.resigned(wire, **{name: value}))
    c.bad("originseq-float", "schema_invalid", c.resigned(wire, originseq=1.5))
    c.bad("linkseq-zero", "schema_invalid", c.resigned(wire, linkseq=0))
    c.bad("linkseq-over-originseq", "schema_invalid", c.resigned(wire, linkseq=wire["originseq"] + 1))
    c.bad("addressee-is-sender", "schema_invalid", c.resigned(wire, addressee="BJ"))
    c.bad("h3-without-note", "schema_invalid", c.resigned(wire, handling="H3"))
    # --- valid JSON of a valid envelope, but not its canonical form
    c.bad("pretty", "not_canonical", json.dumps(json.loads(body), ensure_ascii=False, indent=2).encode())
    c.bad(
        "ascii-escaped", "not_canonical", json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    )
    c.bad(
        "unsorted",
        "not_canonical",
        json.dumps(dict(reversed(json.loads(body).items())), ensure_ascii=False, separators=(",", ":")).encode(),
    )
    c.bad("minus-zero", "not_canonical", body[:-1] + b',"x":-0}')
    c.bad("one-point-zero", "not_canonical", body[:-1] + b',"x":1.0}')
    c.bad("trailing-newline", "not_canonical", body + b"\n")
    # --- authenticity
    flipped = bytearray(base64.b64decode(wire["signature"]))
    flipped[5] ^= 0x80
    c.bad("signature-flipped", "bad_signature", encode({**wire, "signature": base64.b64encode(flipped).decode()}))
    c.bad("signature-not-base64", "bad_signature", encode({**wire, "signature": "not base64!"}))
    c.bad("unsigned", "bad_signature", encode({k: v for k, v in wire.items() if k != "signature"}))
    c.bad("tampered", "bad_signature", encode({**wire, "correlationid": "BJ-tampered"}))
    c.bad("unknown-key", "unknown_key", encode(c.bj.forge(submitted(), advance=False, signer=Signer.generate("BJ"))))
    c.bad(
        "forged-sender-he",
        "key_not_valid",
        encode(c.bj.forge(submitted(agency="amr"), advance=False, signer=c.signers["HE"])),
    )
    c.bad("revoked-key", "key_revoked", encode(c.bj.forge(submitted(), advance=False, signer=c.revoked)))
    c.bad("chain-fork", "chain_fork", encode(c.bj.forge(submitted(), advance=False, linkprev=FAKE_HASH)))
    c.bad(
        "chain-replay-link",
        "chain_replay",
        encode(c.bj.forge(submitted(), advance=False, linkseq=1, linkprev="sha256:" + "0" * 64)),
    )
    c.bad("replay-of-delivered", "chain_replay", encode(first.wire), event_id=first.envelope.id)
    stolen = OriginChain(c.signers["TJ"]).seal(example_event("share.alert", sender="TJ", to="ALL"))
    c.bad("own-sender-not-in-outbox", "own_event_unknown", encode(stolen.wire), subject=stolen.subject)
    c.bad(
        "forged-nats-msg-id",
        "bad_signature",
        encode({**wire, "signature": base64.b64encode(flipped).decode()}),
        headers={"Nats-Msg-Id": new_event_id(), "Xregion-Reason-Code": "none", "X-Long": "v" * 4000},
    )
    c.bad("subject-not-utf8", "subject_invalid", body, subject="", raw_subject=b"xregion.v1.lead.\xc3\x28.BJ.TJ")
    c.bad(
        "subject-not-utf8-keyid-lone-surrogate",  # its alert must still be signable
        "subject_invalid",
        b'{"keyid":"\\ud800","source":"urn:xregion:BJ:amr"}',
        subject="",
        raw_subject=b"xregion.v1.share.\xff.BJ.ALL",
    )
    c.good()
    # --- authentic and in chain, refused afterwards: each advances BJ's link
    bj = c.bj

    def authentic(name: str, code: str, event: dict[str, Any], subject: str, peer: Peer | None = None) -> None:
        c.bad(name, code, encode((peer or bj).forge(event, advance=True)), subject=subject)

    authentic("subject-other-event", "subject_mismatch", submitted(), "xregion.v1.lead.withdrawn.BJ.TJ")
    authentic("subject-other-sender", "subject_mismatch", submitted(), "xregion.v1.lead.submitted.HE.TJ")
    authentic("subject-broadcast", "subject_mismatch", submitted(), "xregion.v1.lead.submitted.BJ.ALL")
    authentic("subject-bad-token", "bad_subject", submitted(), "xregion.v1.Lead.submitted.BJ.TJ")
    authentic(
        "dataschema-other",
        "schema_invalid",
        {**submitted(), "dataschema": "urn:xregion:schema:v1:lead.accepted"},
        SUBMITTED,
    )
    authentic(
        "payload-missing-title",
        "schema_invalid",
        {**submitted(), "data": {k: v for k, v in submitted()["data"].items() if k != "title"}},
        SUBMITTED,
    )
    authentic(
        "unknown-type",
        "unknown_event_type",
        {
            **submitted(),
            "type": "cn.jjj.xregion.lead.teleported.v1",
            "dataschema": "urn:xregion:schema:v1:lead.teleported",
        },
        "xregion.v1.lead.teleported.BJ.TJ",
    )
    authentic(
        "unknown-version",
        "unknown_event_version",
        {
            **submitted(),
            "type": "cn.jjj.xregion.lead.submitted.v9",
            "dataschema": "urn:xregion:schema:v9:lead.submitted",
        },
        SUBMITTED,
    )
    authentic("unknown-agency", "unknown_party", submitted(agency="nosuchagency"), SUBMITTED)
    authentic(
        "escalation-from-region",
        "role_violation",
        example_event("escalation.overdue", sender="BJ", to="TJ"),
        "xregion.v1.escalation.overdue.BJ.TJ",
    )
    authentic(
        "lead-from-coordinator",
        "role_violation",
        example_event("lead.submitted", sender="COORD", to="TJ"),
        "xregion.v1.lead.submitted.COORD.TJ",
        peer=c.coord,
    )
    authentic(
        "accepted-by-origin",
        "illegal_transition",
        example_event("lead.accepted", sender="BJ", to="TJ", referral_id=first.envelope.subject),
        "xregion.v1.lead.accepted.BJ.TJ",
    )
    authentic("submitted-twice", "duplicate_referral", submitted(referral_id=first.envelope.subject), SUBMITTED)
    authentic(
        "lead-broadcast",
        "misaddressed",
        example_event("lead.submitted", sender="BJ", to="ALL", sealed=True),
        "xregion.v1.lead.submitted.BJ.ALL",
    )
    c.good()
    c.good()


async def publish_item(bus: Bus, js: JetStreamContext, item: Item) -> int:
    if item.raw_subject is not None:
        return await publish_raw_subject(bus, js, item.raw_subject, item.body)
    headers = {"Nats-Msg-Id": new_event_id(), **item.headers}
    ack = await js.publish(item.subject, item.body, stream=bus.settings.stream, headers=headers, timeout=5.0)
    assert not ack.duplicate, item.name
    return int(ack.seq)


async def run_and_check(bus: Bus, js: JetStreamContext, items: list[Item], fuzz: list[Item] = ()) -> None:  # type: ignore[assignment]
    """Publish ``items`` then ``fuzz`` back to back, then one last valid event; check everything."""
    for item in [*items, *fuzz]:
        item.seq = await publish_item(bus, js, item)
    consumer = bus.adapters["TJ"].consumer
    assert consumer is not None
    goods = [i for i in items if i.code is None]
    bads = [i for i in items if i.code is not None]

    async def done() -> bool:
        got = {d.event.envelope.id for d in bus.received.get("TJ", [])}
        fuzz_settled = sum(1 for f in fuzz if f.seq in {d.stream_seq for d in bus.received.get("TJ", [])})
        return all(g.event_id in got for g in goods) and consumer.dead_lettered + fuzz_settled >= len(bads) + len(fuzz)

    await eventually(done, timeout=60.0, what="every valid event delivered and every bad one settled")
    await quiesce(bus, timeout=30.0)
    letters = await bus.dead_letters("TJ")
    by_seq = Counter(x.stream_seq for x in letters)
    assert not [s for s, n in by_seq.items() if n > 1], "a message was dead-lettered twice"
    assert consumer.dead_lettered == len(letters), "a dead-lettering was attempted twice"
    code_of = {x.stream_seq: x.code for x in letters}
    delivered = Counter(d.stream_seq for d in bus.received.get("TJ", []))
    wrong = [(b.name, b.code, code_of.get(b.seq)) for b in bads if code_of.get(b.seq) != b.code]
    assert not wrong, f"(case, expected, got): {wrong}"
    assert not [b.name for b in bads if delivered[b.seq]], "a bad message reached the handler"
    assert all(delivered[g.seq] == 1 for g in goods), "a valid event was not handled exactly once"
    for f in fuzz:
        assert (f.seq in code_of) != bool(delivered[f.seq]), (
            f"fuzz case {f.name}: dead-lettered and delivered, or neither"
        )
        assert delivered[f.seq] <= 1
        assert f.seq not in code_of or code_of[f.seq] in REASON_CODES, code_of.get(f.seq)
    alerts = await bus.alerts("TJ")
    alerted = Counter(int(a.record["stream_seq"]) for a in alerts)
    assert all(n == 1 for n in alerted.values())
    assert {s for s, code in code_of.items() if code in SECURITY_CODES} == set(alerted)
    info = await js.consumer_info(bus.settings.stream, consumer_name("TJ"))
    assert info.num_ack_pending == 0 and info.num_pending == 0
    adapter = bus.adapters["TJ"]
    assert adapter._tasks and not any(t.done() for t in adapter._tasks), "an adapter part stopped"


# --- fuzz ------------------------------------------------------------------------------------


def mutations(rng: random.Random) -> list[Callable[[bytes], bytes]]:
    def flip(b: bytes) -> bytes:
        i = rng.randrange(len(b))
        return b[:i] + bytes([b[i] ^ (1 << rng.randrange(8))]) + b[i + 1 :]

    def truncate(b: bytes) -> bytes:
        return b[: rng.randrange(len(b))]

    def insert(b: bytes) -> bytes:
        i = rng.randrange(len(b) + 1)
        return (
            b[:i]
            + rng.choice([b" ", b",", b"{", b"[", b'"', b"\\", b"\x00", b"\xff", bytes([rng.randrange(256)])])
            + b[i:]
        )

    def delete(b: bytes) -> bytes:
        i = rng.randrange(len(b))
        return b[:i] + b[i + rng.randrange(1, 8) :]

    def duplicate_member(b: bytes) -> bytes:
        wire = json.loads(b)
        obj = wire if rng.random() < 0.5 else wire["data"]
        name = rng.choice(sorted(obj))
        member = json.dumps({name: obj[name]}, ensure_ascii=False, separators=(",", ":"))[1:-1].encode()
        start = b.index(b"{", 0 if obj is wire else b.index(b'"data":')) + 1
        return b[:start] + member + b"," + b[start:]

    def swap(b: bytes) -> bytes:
        i, j = sorted(rng.sample(range(len(b)), 2))
        return b[:i] + b[j : j + 1] + b[i + 1 : j] + b[i : i + 1] + b[j + 1 :]

    def digit(b: bytes) -> bytes:
        spots = [i for i, ch in enumerate(b) if 48 <= ch <= 57]
        i = rng.choice(spots)
        return b[:i] + str((b[i] - 48 + rng.randrange(1, 10)) % 10).encode() + b[i + 1 :]

    return [flip, truncate, insert, delete, duplicate_member, swap, digit]


def fuzz_items(signers: dict[str, Signer], n: int, seed: int) -> list[Item]:
    """``n`` mutations of HE's first event to TJ (HE sends nothing else, so a harmless
    mutation, delivered, takes a link position no valid event needs)."""
    rng = random.Random(seed)
    he = Peer(signers["HE"])
    base = encode(he.forge(example_event("lead.submitted", sender="HE", to="TJ", sealed=True), advance=False))
    kinds = mutations(rng)
    out = []
    for k in range(n):
        mutate = kinds[k % len(kinds)]
        body = base
        for _ in range(1 + (rng.random() < 0.2)):
            body = mutate(body) if body else body
        out.append(Item("xregion.v1.lead.submitted.HE.TJ", body, None, f"fuzz-{k}-{mutate.__name__}"))
    return out


# --- tests -----------------------------------------------------------------------------------


async def start_tj(bus: Bus, js: JetStreamContext, signers: dict[str, Signer]) -> Signer:
    revoked = Signer.generate("BJ")
    bus.roster.add(roster_key(revoked, revoked_at=datetime(2026, 6, 1, tzinfo=UTC)))
    await ensure_topology(js, bus.settings, ("TJ",))
    await bus.start("TJ")
    return revoked


async def test_corpus_and_fuzz_interleaved_with_valid_events(
    bus: Bus, js: JetStreamContext, signers: dict[str, Signer]
) -> None:
    revoked = await start_tj(bus, js, signers)
    corpus = Corpus(signers, revoked)
    build_corpus(corpus)
    fuzz = fuzz_items(signers, 300, seed=13)
    assert {i.code for i in corpus.items} - {None} >= {
        "malformed_json",
        "duplicate_member",
        "not_canonical",
        "oversized",
        "schema_invalid",
        "bad_signature",
        "unknown_key",
        "key_not_valid",
        "key_revoked",
        "chain_fork",
        "chain_replay",
        "own_event_unknown",
        "subject_invalid",
        "subject_mismatch",
        "bad_subject",
        "unknown_event_type",
        "unknown_event_version",
        "unknown_party",
        "role_violation",
        "illegal_transition",
        "duplicate_referral",
        "misaddressed",
    }
    await run_and_check(bus, js, corpus.items, fuzz)
    # Still delivering: one more valid event, then a chain gap alone at the end.
    last = corpus.bj.good()
    await send_good(js, bus, last)
    await eventually(lambda: _has(bus, last.envelope.id), what="the valid event after the corpus")
    gap = corpus.bj.forge(submitted(), advance=False, skip=1, linkprev=FAKE_HASH)
    gap_seq = await publish(js, bus, SUBMITTED, encode(gap))
    letter = await eventually(lambda: _letter(bus, gap_seq), what="the chain gap's dead letter")
    assert letter == "chain_gap"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_fuzz_long(bus: Bus, js: JetStreamContext, signers: dict[str, Signer], seed: int) -> None:
    revoked = await start_tj(bus, js, signers)
    corpus = Corpus(signers, revoked)
    goods = [corpus.good() for _ in range(3)]
    assert goods
    await run_and_check(bus, js, corpus.items, fuzz_items(signers, 2000, seed=seed))


async def _has(bus: Bus, event_id: str) -> bool:
    return any(d.event.envelope.id == event_id for d in bus.received.get("TJ", []))


async def _letter(bus: Bus, seq: int) -> str | None:
    return next((x.code for x in await bus.dead_letters("TJ") if x.stream_seq == seq), None)
