"""The conformance kit: signed example events and the outcome each must have at a receiver.

``xregion conformance generate`` writes it to ``schemas/conformance/`` (the README there says
how any implementation runs it; ``xregion conformance run`` does); a unit test checks that
the committed kit is byte for byte what :func:`generate` produces, so it is regenerated,
never edited. Everything in it is deterministic:

* **keys** — THROW-AWAY development keys derived from public seeds
  (``sha256("xregion-conformance-kit-v1:" + label)``): anyone can recompute them; they must
  never enter a real roster. ``keys/`` is a keys directory (``roster.json`` and
  ``private/TJ.key``, the receiver's key) that ``xregion adapter run --keys-dir`` takes as is.
* **events** — fixed ids (UUIDv7 whose time is the event's and whose other bits come from a
  hash of the case's name), fixed times, ``answerby`` counted by the bus's deadline policy;
  Ed25519 is deterministic.
* **sealed fields** — libsodium sealed boxes (``crypto_box_seal``) whose ephemeral key is
  derived from the case, the field and the recipient instead of drawn at random: the same
  bytes as any sealed box, opened by ``crypto_box_seal_open`` like every other. The sealing
  v2 cases (recipe §8) derive the event's one ephemeral X25519 secret from the case instead
  of drawing it: ChaCha20-Poly1305 boxes under per-field HKDF keys as any v2 sender makes.

The receiver under test plays ``TJ``. The cases are one sequence published in order into a
fresh stream: BJ's, HE's and the coordinator's events to TJ (or to ``ALL``), valid ones
interleaved with every kind of refusal a receiver must make. Their expected answers come
from :func:`xregion.conformance.answers.answer_table`; a refused event's code is the stable
reason code, and whether it raises a security alert follows :data:`SECURITY_CODES`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import nacl.encoding
import nacl.hash
from nacl.public import Box, PrivateKey, PublicKey
from pydantic import BaseModel

from xregion import jcs
from xregion.codec import claimed_event_id, encode
from xregion.compose import compose
from xregion.config import load_config
from xregion.conformance.answers import answer_table
from xregion.contracts.catalog import CATALOG
from xregion.deadlines import beijing_date
from xregion.envelope import GENESIS_HASH
from xregion.examples import PAYLOADS
from xregion.ids import EVENT_ID
from xregion.regions import BROADCAST
from xregion.sealing import ANY_ITEM, EPHEMERAL, SEAL_VERSION, SEALED, Recipient, SealingV2, sensitive_paths
from xregion.signing import KeyRoster, RosterKey, Signer, event_hash
from xregion.subjects import build as build_subject

KIT_VERSION = 1
RECEIVER = "TJ"
SEED_PREFIX = b"xregion-conformance-kit-v1:"
VALID_FROM = datetime(2026, 1, 1, tzinfo=UTC)
REVOKED_AT = datetime(2026, 6, 1, tzinfo=UTC)
T0 = datetime(2026, 11, 25, 6, 30, tzinfo=UTC)
"""The time of the first event; each later message is one second later."""
NOTE = "THROW-AWAY conformance-kit key (public seed): for tests only, never in a real roster."

SECURITY_CODES = frozenset(
    {
        "bad_signature",
        "unknown_key",
        "key_not_valid",
        "key_revoked",
        "chain_break",
        "chain_gap",
        "chain_fork",
        "chain_replay",
        "subject_mismatch",
        "misaddressed",
        "handling_restricted",
        "subject_invalid",
        "own_event_unknown",
        "role_violation",
    }
)
"""The codes that raise a security alert besides the dead letter (the runtime's
``xregion.runtime.alerts.SECURITY_CODES``; a unit test keeps the two equal — the kit does
not import the runtime)."""


def kit_seed(label: str) -> bytes:
    """The public 32-byte seed of the kit's key ``label`` (THROW-AWAY)."""
    return hashlib.sha256(SEED_PREFIX + label.encode("ascii")).digest()


def kit_signers() -> dict[str, Signer]:
    """The kit's keys: one per party, BJ's revoked one, and a BJ key no roster holds."""
    signers = {party: Signer.from_seed(party, kit_seed(party)) for party in ("BJ", "TJ", "HE", "COORD")}
    signers["BJ-revoked"] = Signer.from_seed("BJ", kit_seed("BJ-revoked"))
    signers["BJ-unknown"] = Signer.from_seed("BJ", kit_seed("BJ-unknown"))
    return signers


def kit_roster(signers: Mapping[str, Signer]) -> KeyRoster:
    keys = [
        RosterKey(s.key_id, s.party, bytes(s.verify_key), VALID_FROM)
        for label, s in signers.items()
        if label in ("BJ", "TJ", "HE", "COORD")
    ]
    revoked = signers["BJ-revoked"]
    keys.append(
        RosterKey(
            revoked.key_id,
            "BJ",
            bytes(revoked.verify_key),
            VALID_FROM,
            revoked_at=REVOKED_AT,
            revocation_reason="throw-away conformance-kit key, revoked for the key_revoked case",
        )
    )
    return KeyRoster(keys)


def kit_event_id(at: datetime, label: str) -> str:
    """A UUIDv7 with ``at``'s milliseconds and the other bits from a hash of ``label``."""
    stamp = f"{int(at.timestamp() * 1000):012x}"
    bits = hashlib.sha256(SEED_PREFIX + b"id:" + label.encode()).hexdigest()
    variant = "89ab"[int(bits[3], 16) & 3]
    value = f"{stamp[:8]}-{stamp[8:]}-7{bits[:3]}-{variant}{bits[4:7]}-{bits[7:19]}"
    assert EVENT_ID.fullmatch(value), value
    return value


# --- deterministic sealing --------------------------------------------------------------------


def sealed_box(text: bytes, recipient: PublicKey, label: str) -> bytes:
    """libsodium's ``crypto_box_seal(text, recipient)`` with the ephemeral key derived from
    ``label``: ephemeral public key ‖ ``crypto_box(text, nonce, recipient, ephemeral secret)``
    with ``nonce = BLAKE2b-192(ephemeral public key ‖ recipient)``."""
    ephemeral = PrivateKey(hashlib.sha256(SEED_PREFIX + b"ephemeral:" + label.encode()).digest())
    epk = bytes(ephemeral.public_key)
    nonce = nacl.hash.blake2b(epk + bytes(recipient), digest_size=24, encoder=nacl.encoding.RawEncoder)
    return epk + Box(ephemeral, recipient).encrypt(text, nonce).ciphertext


def _at_paths(value: Any, path: tuple[str, ...], where: tuple[str, ...], fn: Callable[[Any, str], Any]) -> Any:
    if not path:
        return fn(value, ".".join(where))
    head, rest = path[0], path[1:]
    if head == ANY_ITEM:
        if not isinstance(value, list):
            return value
        return [_at_paths(item, rest, (*where, str(i)), fn) for i, item in enumerate(value)]
    if not isinstance(value, Mapping) or value.get(head) is None:
        return value
    return {**value, head: _at_paths(value[head], rest, (*where, head), fn)}


def seal_fields(
    model: type[BaseModel], data: Mapping[str, Any], to: list[tuple[str, PublicKey]], label: str
) -> dict[str, Any]:
    """``data`` with every personal-data field sealed, deterministically, to each ``(key id,
    X25519 public key)`` of ``to``: ``{"sealed": {key id: base64 box}}`` as §8 of the recipe."""

    def seal(value: Any, where: str) -> Any:
        text = jcs.dumps(value)
        boxes = {
            key_id: base64.b64encode(sealed_box(text, public, f"{label}:{where}:{key_id}")).decode("ascii")
            for key_id, public in to
        }
        return {SEALED: boxes}

    result: Any = dict(data)
    for path in sensitive_paths(model):
        result = _at_paths(result, path, ("data",), seal)
    return dict(result)


def ephemeral_v2(label: str) -> bytes:
    """The ephemeral X25519 secret of the v2 sealing of case ``label``'s event (public: THROW-AWAY)."""
    return hashlib.sha256(SEED_PREFIX + b"ephemeral-v2:" + label.encode()).digest()


def sealing_v2(event_id: str, to: list[tuple[str, PublicKey]], label: str) -> SealingV2:
    """The v2 sealing of ``event_id`` to ``to`` with the ephemeral secret of ``label``: one
    key agreement per recipient, a ChaCha20-Poly1305 key per field (recipe §8, v2)."""
    return SealingV2.new(event_id, [Recipient(key_id, public) for key_id, public in to], ephemeral_v2(label))


def seal_fields_v2(
    model: type[BaseModel], data: Mapping[str, Any], to: list[tuple[str, PublicKey]], event_id: str, label: str
) -> dict[str, Any]:
    """``data`` with every personal-data field sealed v2, deterministically, to each ``(key id,
    X25519 public key)`` of ``to``: ``{"v": 2, "epk": ..., "sealed": {key id: base64 box}}``,
    bound to ``event_id`` and the field's path."""
    sealing = sealing_v2(event_id, to, label)
    result: Any = dict(data)
    for path in sensitive_paths(model):
        result = _at_paths(result, path, ("data",), sealing.seal)
    return dict(result)


def _suspects_v2_values(event: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The v2 sealed values of a lead's suspects (to tamper with, for the refusal cases)."""
    for suspect in event["data"]["suspects"]:
        for value in suspect.values():
            if isinstance(value, dict) and value.get(SEAL_VERSION) == 2:
                yield value


# --- the cases --------------------------------------------------------------------------------


@dataclass
class Sender:
    """One sending party's origin chain and link chains, as its adapter keeps them."""

    signer: Signer
    originseq: int = 0
    prevhash: str = GENESIS_HASH
    links: dict[str, tuple[int, str]] = field(default_factory=dict)

    def chain(
        self, event: dict[str, Any], *, advance: bool, signer: Signer | None = None, skip: int = 0, **over: Any
    ) -> dict[str, Any]:
        """``event`` at this sender's next position (``skip`` events left out), signed."""
        linkseq, linkprev = self.links.get(event["addressee"], (0, GENESIS_HASH))
        wire = {
            **event,
            "originseq": self.originseq + 1 + skip,
            "prevhash": self.prevhash,
            "linkseq": linkseq + 1 + skip,
            "linkprev": linkprev,
            **over,
        }
        signed = (signer or self.signer).sign(wire)
        if advance:
            self.advance(signed)
        return signed

    def advance(self, wire: dict[str, Any]) -> None:
        digest = event_hash(wire)
        self.originseq, self.prevhash = int(wire["originseq"]), digest
        self.links[str(wire["addressee"])] = (int(wire["linkseq"]), digest)


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    subject: str
    body: bytes
    headers: dict[str, str]
    expect: dict[str, Any]
    advances_link: bool


@dataclass
class Builder:
    signers: dict[str, Signer]
    roster: KeyRoster
    cases: list[Case] = field(default_factory=list)
    senders: dict[str, Sender] = field(init=False)
    answers: dict[str, dict[str, Any]] = field(init=False)
    moment: datetime = T0
    config: Any = field(default_factory=load_config)

    def __post_init__(self) -> None:
        self.senders = {p: Sender(self.signers[p]) for p in ("BJ", "HE", "COORD")}
        self.answers = {row["event"]: row for row in answer_table()["events"]}

    # -- events

    def event(
        self,
        name: str,
        sender: str,
        *,
        label: str,
        to: str = RECEIVER,
        referral_id: str | None = None,
        data: Mapping[str, Any] | None = None,
        sealed_to: tuple[str, ...] | None = None,
        seal_version: int = 1,
        agency: str = "amr",
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> dict[str, Any]:
        """An unsigned event composed as a sender's adapter composes it, its personal data
        sealed to ``sealed_to``'s keys (default: the regions it is addressed to; ``()``: in
        the clear), with sealing v1 or, ``seal_version=2``, v2."""
        family, event = name.split(".", 1)
        kind = CATALOG.get(family, event)
        self.moment += timedelta(seconds=1)
        event_id = kit_event_id(self.moment, label)
        payload = dict(PAYLOADS[name] if data is None else data)
        wire = compose(
            kind,
            payload,
            sender=sender,
            agency=agency,
            to=to,
            referral_id=referral_id or f"{sender}-{kit_event_id(self.moment, label + ':referral')}",
            correlation_id=correlation_id,
            causation_id=causation_id,
            answer_by=self.answer_by(name),
            time=self.moment,
            event_id=event_id,
        )
        if sealed_to is None:
            sealed_to = tuple(r for r in self.config.regions.codes if r != sender) if to == BROADCAST else (to,)
        if sealed_to:
            recipients = self.recipients(sealed_to)
            if seal_version == 2:
                wire["data"] = seal_fields_v2(kind.model, wire["data"], recipients, event_id, label)
            else:
                wire["data"] = seal_fields(kind.model, wire["data"], recipients, label)
        return wire

    def recipients(self, parties: tuple[str, ...]) -> list[tuple[str, PublicKey]]:
        """``(key id, X25519 public key)`` of every unrevoked roster key of ``parties``."""
        return [
            (k.key_id, k.verify_key.to_curve25519_public_key())
            for k in self.roster
            if k.party in parties and k.revoked_at is None
        ]

    def answer_by(self, name: str) -> date | None:
        answer_by: date | None = self.config.deadlines.default_answer_by(name, beijing_date(self.moment))
        return answer_by

    # -- cases

    def add(
        self,
        name: str,
        description: str,
        body: bytes | dict[str, Any],
        *,
        subject: str | None = None,
        code: str | None = None,
        advances: bool,
        msg_id: str | None = None,
    ) -> None:
        raw = body if isinstance(body, bytes) else encode(body)
        wire = body if isinstance(body, dict) else None
        if subject is None:
            assert wire is not None
            kind = CATALOG.by_ce_type(wire["type"])
            sender = str(wire["source"]).split(":")[2]
            subject = build_subject(kind.family, kind.event, sender, wire["addressee"], "v1")
        claimed = claimed_event_id(raw)
        headers = {"Nats-Msg-Id": msg_id or claimed or kit_event_id(self.moment, name + ":msg")}
        expect: dict[str, Any]
        if code is None:
            assert wire is not None
            row = self.answers[CATALOG.by_ce_type(wire["type"]).name]
            sender = str(wire["source"]).split(":")[2]
            answers = (
                [{"type": row["answer"], "from": RECEIVER, "to": sender, "data": row["data"]}] if row["answer"] else []
            )
            expect = {"outcome": "delivered", "event_id": wire["id"], "answers": answers}
        else:
            expect = {"outcome": "dead_letter", "code": code, "event_id": claimed, "alert": code in SECURITY_CODES}
        number = len(self.cases) + 1
        self.cases.append(Case(f"{number:02d}-{name}", description, subject, raw, headers, expect, advances))


def build_cases(signers: dict[str, Signer], roster: KeyRoster) -> list[Case]:
    """The sequence, in publishing order."""
    b = Builder(signers, roster)
    bj, he, coord = b.senders["BJ"], b.senders["HE"], b.senders["COORD"]

    lead1 = b.event("lead.submitted", "BJ", label="lead-1")
    first = bj.chain(lead1, advance=True)
    b.add(
        "valid-lead-submitted",
        "BJ refers a lead to TJ, its personal data sealed to TJ's key: delivered, and TJ answers lead.received.",
        first,
        advances=True,
    )
    rid1 = first["subject"]

    # --- refused before the signature is checked: the link does not advance
    nxt = bj.chain(b.event("lead.submitted", "BJ", label="lead-2"), advance=False)
    raw = encode(nxt)
    b.add(
        "malformed-json",
        "The first half of BJ's next event: not JSON.",
        raw[: len(raw) // 2],
        subject="xregion.v1.lead.submitted.BJ.TJ",
        code="malformed_json",
        advances=False,
        msg_id=kit_event_id(b.moment, "malformed"),
    )
    b.add(
        "duplicate-member",
        "BJ's next event naming the member title twice.",
        raw.replace(b'"title":', b'"title":"x","title":', 1),
        subject="xregion.v1.lead.submitted.BJ.TJ",
        code="duplicate_member",
        advances=False,
        msg_id=kit_event_id(b.moment, "duplicate-member"),
    )
    pretty = bj.chain(b.event("lead.submitted", "BJ", label="pretty"), advance=False)
    b.add(
        "not-canonical",
        "A valid, signed event of BJ, pretty-printed: not its RFC 8785 form.",
        json.dumps(pretty, ensure_ascii=False, indent=2).encode("utf-8"),
        subject="xregion.v1.lead.submitted.BJ.TJ",
        code="not_canonical",
        advances=False,
    )
    wrong = bj.chain(b.event("lead.submitted", "BJ", label="wrong-type"), advance=False, originseq="2")
    b.add(
        "schema-invalid-envelope",
        'originseq as a string ("2"), signed as such.',
        wrong,
        code="schema_invalid",
        advances=False,
    )

    # --- refused for their authenticity: the link does not advance, an alert is raised
    flipped = bj.chain(b.event("lead.submitted", "BJ", label="flipped"), advance=False)
    sig = bytearray(base64.b64decode(flipped["signature"]))
    sig[5] ^= 0x80
    b.add(
        "bad-signature",
        "One bit of the signature flipped.",
        {**flipped, "signature": base64.b64encode(bytes(sig)).decode("ascii")},
        code="bad_signature",
        advances=False,
    )
    b.add(
        "unknown-key",
        "Signed by a BJ key that is not in the roster.",
        bj.chain(b.event("lead.submitted", "BJ", label="unknown-key"), advance=False, signer=signers["BJ-unknown"]),
        code="unknown_key",
        advances=False,
    )
    b.add(
        "key-of-another-party",
        "source names BJ, but the key is HE's.",
        bj.chain(b.event("lead.submitted", "BJ", label="he-key"), advance=False, signer=signers["HE"]),
        code="key_not_valid",
        advances=False,
    )
    b.add(
        "key-revoked",
        "Signed by BJ's key that the roster revoked before the event's time.",
        bj.chain(b.event("lead.submitted", "BJ", label="revoked"), advance=False, signer=signers["BJ-revoked"]),
        code="key_revoked",
        advances=False,
    )
    b.add(
        "chain-gap",
        "BJ's event after the next one (linkseq and originseq skip one): one is missing.",
        bj.chain(b.event("lead.submitted", "BJ", label="gap"), advance=False, skip=1),
        code="chain_gap",
        advances=False,
    )
    b.add(
        "chain-fork",
        "BJ's next event whose linkprev is not the hash of BJ's previous event to TJ.",
        bj.chain(b.event("lead.submitted", "BJ", label="fork"), advance=False, linkprev="sha256:" + "ab" * 32),
        code="chain_fork",
        advances=False,
    )
    b.add(
        "chain-replay",
        "Case 01 again, byte for byte, under another Nats-Msg-Id.",
        first,
        code="chain_replay",
        advances=False,
        msg_id=kit_event_id(b.moment, "replay"),
    )

    # --- authentic and in chain, refused for their content: each advances BJ's link to TJ
    moved = bj.chain(b.event("lead.submitted", "BJ", label="lead-2"), advance=True)
    b.add(
        "subject-mismatch",
        "An authentic event of BJ published on the subject of another event type.",
        moved,
        subject="xregion.v1.lead.withdrawn.BJ.TJ",
        code="subject_mismatch",
        advances=True,
    )
    bad_data = b.event("lead.submitted", "BJ", label="bad-uscc")
    bad_data["data"]["suspects"][0]["uscc"] = "91120111MA05K8XY07"  # wrong GB 32100-2015 check character
    b.add(
        "schema-invalid-data",
        "A unified social credit code whose check character is wrong.",
        bj.chain(bad_data, advance=True),
        code="schema_invalid",
        advances=True,
    )
    b.add(
        "personal-data-unsealed",
        "A lead whose personal data travels in the clear: an evidence-grade "
        "receiver refuses it (an xregion adapter with XREGION_UNSEALED_PERSONAL_DATA=accept delivers it).",
        bj.chain(b.event("lead.submitted", "BJ", label="clear", sealed_to=()), advance=True),
        code="personal_data_unsealed",
        advances=True,
    )
    b.add(
        "unseal-failed",
        "A lead whose personal data is sealed to HE's key only: TJ cannot open it.",
        bj.chain(b.event("lead.submitted", "BJ", label="to-he", sealed_to=("HE",)), advance=True),
        code="unseal_failed",
        advances=True,
    )
    b.add(
        "illegal-transition",
        "BJ supplies information on lead 01 that nobody asked for.",
        bj.chain(
            b.event("lead.info_supplied", "BJ", label="info", referral_id=rid1, causation_id=first["id"]), advance=True
        ),
        code="illegal_transition",
        advances=True,
    )
    b.add(
        "duplicate-referral",
        "BJ opens lead 01's referral a second time.",
        bj.chain(b.event("lead.submitted", "BJ", label="again", referral_id=rid1), advance=True),
        code="duplicate_referral",
        advances=True,
    )
    b.add(
        "role-violation",
        "BJ sends an escalation: only the coordinator escalates.",
        bj.chain(
            b.event(
                "escalation.overdue",
                "BJ",
                label="escalation-from-bj",
                data={**PAYLOADS["escalation.overdue"], "referral_id": rid1},
            ),
            advance=True,
        ),
        code="role_violation",
        advances=True,
    )
    b.add(
        "misaddressed",
        "BJ sends a share.alert to TJ alone: a share is a broadcast to ALL.",
        bj.chain(b.event("share.alert", "BJ", label="alert-to-tj"), advance=True),
        code="misaddressed",
        advances=True,
    )

    # --- valid events of every family, and what follows the refusals
    b.add(
        "valid-lead-withdrawn",
        "BJ withdraws lead 01: delivered, answered by nothing.",
        bj.chain(
            b.event("lead.withdrawn", "BJ", label="withdrawn", referral_id=rid1, causation_id=first["id"]), advance=True
        ),
        advances=True,
    )
    b.add(
        "valid-assist-requested",
        "BJ asks TJ for assistance, personal data sealed: assist.received.",
        bj.chain(b.event("assist.requested", "BJ", label="assist"), advance=True),
        advances=True,
    )
    b.add(
        "valid-recognition-published",
        "BJ publishes a decision to ALL, sealed to TJ and HE: TJ answers recognition.received.",
        bj.chain(b.event("recognition.published", "BJ", label="recognition", to=BROADCAST), advance=True),
        advances=True,
    )
    b.add(
        "valid-blacklist-upserted",
        "HE broadcasts a blacklist entry, its name sealed to BJ and TJ: "
        'TJ answers share.acknowledged {"applied": true}.',
        he.chain(b.event("share.blacklist_upserted", "HE", label="blacklist", to=BROADCAST), advance=True),
        advances=True,
    )
    b.add(
        "valid-escalation",
        "The coordinator reminds TJ of lead 01: delivered, answered by nothing.",
        coord.chain(
            b.event(
                "escalation.reminder",
                "COORD",
                label="reminder",
                agency="coordinator",
                correlation_id=rid1,
                data={**PAYLOADS["escalation.reminder"], "referral_id": rid1, "late_party": "TJ"},
            ),
            advance=True,
        ),
        advances=True,
    )
    # --- sealing v2 (recipe §8): receivers open v1 and v2; every v2 refusal below is an
    # authentic event in chain, refused for its content: each advances BJ's link to TJ
    lead_v2 = bj.chain(b.event("lead.submitted", "BJ", label="lead-v2", seal_version=2), advance=True)
    b.add(
        "valid-lead-sealed-v2",
        "Case 01's twin with its personal data sealed v2 (one key agreement per event and recipient, "
        "a ChaCha20-Poly1305 box per field) to TJ's key: delivered, and TJ answers lead.received.",
        lead_v2,
        advances=True,
    )
    b.add(
        "valid-broadcast-sealed-v2",
        "BJ publishes a decision to ALL, its personal data sealed v2 to TJ and HE (one epk, a box per "
        "field and recipient): TJ answers recognition.received.",
        bj.chain(
            b.event("recognition.published", "BJ", label="recognition-v2", to=BROADCAST, seal_version=2), advance=True
        ),
        advances=True,
    )
    b.add(
        "unseal-failed-v2-not-to-tj",
        "A lead whose personal data is sealed v2 to HE's key only: TJ has no box to open.",
        bj.chain(b.event("lead.submitted", "BJ", label="v2-to-he", sealed_to=("HE",), seal_version=2), advance=True),
        code="unseal_failed",
        advances=True,
    )
    tj_only = b.recipients((RECEIVER,))
    tj_key = tj_only[0][0]
    altered = b.event("lead.submitted", "BJ", label="v2-altered", seal_version=2)
    name = altered["data"]["suspects"][1]["name"]
    box = bytearray(base64.b64decode(name[SEALED][tj_key]))
    box[0] ^= 0x01
    name[SEALED][tj_key] = base64.b64encode(bytes(box)).decode("ascii")
    b.add(
        "unseal-failed-v2-altered",
        "A lead sealed v2 to TJ whose box of data.suspects.1.name has one bit of its ciphertext flipped "
        "before BJ signed it: the ChaCha20-Poly1305 tag does not verify.",
        bj.chain(altered, advance=True),
        code="unseal_failed",
        advances=True,
    )
    moved = b.event("lead.submitted", "BJ", label="v2-moved", seal_version=2)
    moved["data"]["suspects"][0]["name"] = moved["data"]["suspects"][1]["name"]
    b.add(
        "unseal-failed-v2-moved-field",
        "A lead sealed v2 to TJ whose data.suspects.0.name holds the sealed value of data.suspects.1.name "
        "(same event, epk and recipient), signed by BJ as it is: the field's key and associated data "
        "name its path, so the box does not open at another one.",
        bj.chain(moved, advance=True),
        code="unseal_failed",
        advances=True,
    )
    other = b.event("lead.submitted", "BJ", label="v2-other-event", seal_version=2)
    other["data"]["suspects"][1]["name"] = sealing_v2(lead_v2["id"], tj_only, "v2-other-event").seal(
        PAYLOADS["lead.submitted"]["suspects"][1]["name"], "data.suspects.1.name"
    )
    b.add(
        "unseal-failed-v2-other-event",
        "A lead sealed v2 to TJ whose data.suspects.1.name was sealed for the id of another event "
        f"({lead_v2['id']}; same epk, path and recipient), signed by BJ as it is: the field's key and "
        "associated data name the event, so the box does not open in this one.",
        bj.chain(other, advance=True),
        code="unseal_failed",
        advances=True,
    )
    low = b.event("lead.submitted", "BJ", label="v2-low-order-epk", seal_version=2)
    for value in _suspects_v2_values(low):
        value[EPHEMERAL] = base64.b64encode(bytes(32)).decode("ascii")
    b.add(
        "unseal-failed-v2-low-order-epk",
        "A lead sealed v2 to TJ whose epk is the all-zero X25519 point (low order: the key agreement "
        "would be all zero, known to anyone): refused, not opened.",
        bj.chain(low, advance=True),
        code="unseal_failed",
        advances=True,
    )
    unknown = b.event("lead.submitted", "BJ", label="v2-unknown-version", seal_version=2)
    for value in _suspects_v2_values(unknown):
        value[SEAL_VERSION] = 3
    b.add(
        "unknown-seal-version",
        'A lead sealed v2 to TJ but marked "v": 3, a sealing version that does not exist.',
        bj.chain(unknown, advance=True),
        code="schema_invalid",
        advances=True,
    )

    b.add(
        "valid-lead-after-refusals",
        "BJ's next lead, chained after every event of BJ that TJ counted "
        "(the refused authentic ones included): delivered and receipted.",
        bj.chain(b.event("lead.submitted", "BJ", label="lead-3"), advance=True),
        advances=True,
    )
    return b.cases


# --- the kit's files -------------------------------------------------------------------------


def _json(document: Any) -> bytes:
    return (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def generate() -> dict[str, bytes]:
    """Every generated file of the kit, by its path relative to the kit's root (README.md is
    written by hand and not among them)."""
    signers = kit_signers()
    roster = kit_roster(signers)
    tj = signers[RECEIVER]
    files: dict[str, bytes] = {
        "answers.json": _json(answer_table()),
        "keys/roster.json": _json(roster.to_json()),
        "keys/private/TJ.key": _json(
            {
                "party": RECEIVER,
                "key_id": tj.key_id,
                "seed": base64.b64encode(tj.seed()).decode("ascii"),
                "note": NOTE,
            }
        ),
    }
    entries = []
    for case in build_cases(signers, roster):
        path = f"messages/{case.name}.json"
        files[path] = case.body
        entries.append(
            {
                "name": case.name,
                "description": case.description,
                "subject": case.subject,
                "headers": case.headers,
                "body": path,
                "body_sha256": hashlib.sha256(case.body).hexdigest(),
                "expect": {k: v for k, v in case.expect.items() if v is not None},
                "advances_link": case.advances_link,
            }
        )
    files["cases.json"] = _json(
        {
            "version": KIT_VERSION,
            "about": "Publish every case, in this order, into a fresh stream and wait for each outcome "
            "(README.md). THROW-AWAY keys: never put them in a real roster.",
            "receiver": {
                "party": RECEIVER,
                "keys_dir": "keys",
                "consumer": f"region-{RECEIVER}",
                "stream": "XREGION",
                "dead_letter_stream": "XREGION_DLQ",
            },
            "cases": entries,
        }
    )
    return files


def write(root: Path) -> list[str]:
    """Write the generated files under ``root`` (removing generated files no longer produced);
    the paths written."""
    files = generate()
    for stale in _generated_on_disk(root) - set(files):
        (root / stale).unlink()
    for relative, content in files.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return sorted(files)


def diff(root: Path) -> list[str]:
    """``missing <file>``, ``extra <file>`` or ``different <file>``; empty when ``root`` holds
    exactly what :func:`generate` produces."""
    files = generate()
    on_disk = _generated_on_disk(root)
    lines = [f"missing {p}" for p in sorted(set(files) - on_disk)]
    lines += [f"extra {p}" for p in sorted(on_disk - set(files))]
    lines += [f"different {p}" for p in sorted(set(files) & on_disk) if (root / p).read_bytes() != files[p]]
    return lines


def _generated_on_disk(root: Path) -> set[str]:
    """The files under ``root`` but the hand-written ones (README.md, .gitattributes)."""
    if not root.is_dir():
        return set()
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.name not in ("README.md", ".gitattributes")
    }
