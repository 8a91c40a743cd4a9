"""Ed25519 signatures over the RFC 8785 (JCS) canonical form, and the key roster.

The recipe (the README spells it out for other languages):

1. Take the event as a JSON object with every attribute except ``signature``
   (``keyid`` included: it is signed too).
2. Canonicalise it with RFC 8785 (JCS): keys sorted by UTF-16 code units, no whitespace,
   ECMAScript number formatting, UTF-8 output.
3. Sign those bytes with Ed25519 (RFC 8032, pure Ed25519, no pre-hash).
4. Encode the 64-byte signature in standard base64 with padding (RFC 4648 §4) and attach
   it as the ``signature`` attribute.

An event's *hash*, used by the per-origin chain, is ``sha256:`` + hex SHA-256 of the
canonical form of the complete signed event (signature included).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from xregion import jcs
from xregion.errors import (
    BadSignature,
    ConfigError,
    KeyNotValid,
    KeyRevoked,
    UnknownKey,
)

SIGNATURE = "signature"


def canonical(obj: Mapping[str, Any]) -> bytes:
    """RFC 8785 canonical JSON bytes of ``obj``, by :func:`xregion.jcs.dumps`."""
    return jcs.dumps(obj)


def signing_input(event: Mapping[str, Any]) -> bytes:
    """The bytes that are signed: the canonical form of ``event`` without ``signature``."""
    return canonical({k: v for k, v in event.items() if k != SIGNATURE})


def _around_signature(event: Mapping[str, Any]) -> tuple[bool, bytes] | None:
    """Whether ``event`` has members before ``signature`` in JCS order, and the canonical
    text of the members after it (without braces); None when a member name is not ASCII
    (then JCS's UTF-16 order is not worked out here)."""
    if not all(type(k) is str and k.isascii() for k in event):
        return None
    before = any(k < SIGNATURE for k in event)
    after = {k: v for k, v in event.items() if k > SIGNATURE}
    return before, (canonical(after)[1:-1] if after else b"")


def signing_input_of_wire(wire: bytes, event: Mapping[str, Any]) -> bytes:
    """The signing input of an event from its wire bytes, which must be the canonical form of
    ``event`` (as the receivers require, ``not_canonical``): RFC 8785 writes an object's
    members sorted and joined by commas, so the canonical form without ``signature`` is the
    wire bytes without that member. Only the members after ``signature`` are written again,
    to find it (a nested member of the same name cannot be taken for it); anything
    unexpected falls back to :func:`signing_input`."""
    signature = event.get(SIGNATURE)
    around = _around_signature(event) if isinstance(signature, str) else None
    if around is None or not isinstance(signature, str):
        return signing_input(event)
    before, tail = around
    member = b'"signature":' + canonical_string(signature)
    end = (b"," if before else b"") + member + (b"," + tail if tail else b"") + b"}"
    if not wire.endswith(end) or len(wire) < len(end) + 1:
        return signing_input(event)
    return wire[: len(wire) - len(end)] + (b"," if before and tail else b"") + tail + b"}"


def wire_of_signing_input(signed_input: bytes, unsigned: Mapping[str, Any], signature: str) -> bytes:
    """The canonical form of ``unsigned`` with ``signature`` attached, from the canonical
    form of ``unsigned`` (the signing input): the ``signature`` member put in its place."""
    around = _around_signature(unsigned)
    if around is None:
        return canonical({**unsigned, SIGNATURE: signature})
    before, tail = around
    end = (b"," if before and tail else b"") + tail + b"}"
    if not signed_input.endswith(end):
        return canonical({**unsigned, SIGNATURE: signature})
    member = b'"signature":' + canonical_string(signature)
    head = signed_input[: len(signed_input) - len(end)]
    return head + (b"," if before else b"") + member + (b"," + tail if tail else b"") + b"}"


def canonical_string(text: str) -> bytes:
    """The canonical form of a JSON string."""
    return jcs.dumps(text)


def event_hash(event: Mapping[str, Any]) -> str:
    """The chain hash of a complete signed event."""
    return hash_of_canonical(canonical(event))


def hash_of_canonical(canonical_bytes: bytes) -> str:
    """The chain hash of a complete signed event from its canonical bytes (its wire form)."""
    return "sha256:" + hashlib.sha256(canonical_bytes).hexdigest()


def key_id_for(party: str, verify_key: VerifyKey) -> str:
    """A key id naming its owner and its fingerprint: ``BJ:1a2b3c4d5e6f7a8b``."""
    return f"{party}:{hashlib.sha256(bytes(verify_key)).hexdigest()[:16]}"


class Signer:
    """Holds one party's private key; signs events. Never logs or exposes the seed."""

    def __init__(self, party: str, signing_key: SigningKey) -> None:
        self.party = party
        self._key = signing_key
        self.verify_key = signing_key.verify_key
        self.key_id = key_id_for(party, self.verify_key)

    @classmethod
    def generate(cls, party: str) -> Signer:
        return cls(party, SigningKey.generate())

    @classmethod
    def from_seed(cls, party: str, seed: bytes) -> Signer:
        return cls(party, SigningKey(seed))

    def __repr__(self) -> str:  # never the seed
        return f"Signer(party={self.party!r}, key_id={self.key_id!r})"

    def seed(self) -> bytes:
        """The 32-byte private seed, for writing the key file; handle with care."""
        return bytes(self._key)

    def sign_bytes(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message`` as it is (signed notes, witness
        cosignatures, evidence manifests: formats whose bytes are fixed, not JSON)."""
        return bytes(self._key.sign(message).signature)

    def sign(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``event`` with this key's ``keyid`` and the ``signature`` attached."""
        return self.sign_encoded(event)[0]

    def sign_encoded(self, event: Mapping[str, Any]) -> tuple[dict[str, Any], bytes]:
        """:meth:`sign`, and the signed event's canonical form (its wire bytes), written once:
        the signature member is put into the signed bytes (:func:`wire_of_signing_input`)."""
        unsigned = {k: v for k, v in event.items() if k != SIGNATURE}
        unsigned["keyid"] = self.key_id
        signed_input = canonical(unsigned)
        signature = base64.b64encode(self._key.sign(signed_input).signature).decode("ascii")
        return {**unsigned, SIGNATURE: signature}, wire_of_signing_input(signed_input, unsigned, signature)


@dataclass(frozen=True)
class RosterKey:
    """One public key of the roster with the period in which it may sign."""

    key_id: str
    party: str
    public_key: bytes
    valid_from: datetime
    valid_until: datetime | None = None
    revoked_at: datetime | None = None
    revocation_reason: str | None = None

    def __post_init__(self) -> None:
        if len(self.public_key) != 32:
            raise ConfigError(f"key {self.key_id}: an Ed25519 public key has 32 bytes")
        for moment in (self.valid_from, self.valid_until, self.revoked_at):
            if moment is not None and moment.tzinfo is None:
                raise ConfigError(f"key {self.key_id}: times must carry a UTC offset")

    @property
    def verify_key(self) -> VerifyKey:
        return VerifyKey(self.public_key)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "key_id": self.key_id,
            "party": self.party,
            "public_key": base64.b64encode(self.public_key).decode("ascii"),
            "valid_from": self.valid_from.isoformat(),
        }
        if self.valid_until:
            out["valid_until"] = self.valid_until.isoformat()
        if self.revoked_at:
            out["revoked_at"] = self.revoked_at.isoformat()
        if self.revocation_reason:
            out["revocation_reason"] = self.revocation_reason
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> RosterKey:
        try:
            return cls(
                key_id=raw["key_id"],
                party=raw["party"],
                public_key=base64.b64decode(raw["public_key"], validate=True),
                valid_from=datetime.fromisoformat(raw["valid_from"]),
                valid_until=_opt_time(raw.get("valid_until")),
                revoked_at=_opt_time(raw.get("revoked_at")),
                revocation_reason=raw.get("revocation_reason") or None,
            )
        except (KeyError, ValueError, binascii.Error) as exc:
            raise ConfigError(f"bad roster entry {raw.get('key_id', '?')}: {exc}") from None


def _opt_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _check_revocation(
    key: RosterKey, revoked_at: datetime, at: datetime, received_at: datetime | None, grace: timedelta
) -> None:
    details: dict[str, Any] = {"keyid": key.key_id, "revoked_at": revoked_at.isoformat()}
    if key.revocation_reason:
        details["revocation_reason"] = key.revocation_reason
    if at >= revoked_at:
        raise KeyRevoked(
            f"key {key.key_id} was revoked at {revoked_at.isoformat()}, at or before the event's time {at.isoformat()}",
            **details,
        )
    if received_at is not None and received_at > revoked_at + grace:
        raise KeyRevoked(
            f"key {key.key_id} was revoked at {revoked_at.isoformat()}; the event claims the time {at.isoformat()} "
            f"but reached the stream at {received_at.isoformat()}, more than {grace.total_seconds():g} s after "
            "the revocation (backdated?)",
            received_at=received_at.isoformat(),
            grace_s=int(grace.total_seconds()),
            **details,
        )


class KeyRoster:
    """Public keys of every party, with validity periods and revocations.

    Rotation is an overlap of two keys' validity; revocation sets ``revoked_at``: events
    whose ``time`` is at or after it are refused, and — because whoever stole a key can
    backdate ``time`` — so are events signed with it that reached the stream later than
    ``revoked_at`` + a grace period (see :meth:`verify`). Verification errors name the key.
    """

    def __init__(self, keys: Iterable[RosterKey] = ()) -> None:
        self._keys: dict[str, RosterKey] = {}
        self._verifiers: dict[str, VerifyKey] = {}
        for key in keys:
            self.add(key)

    def add(self, key: RosterKey) -> None:
        self._keys[key.key_id] = key
        self._verifiers[key.key_id] = key.verify_key

    def __iter__(self) -> Any:
        return iter(self._keys.values())

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def get(self, key_id: str) -> RosterKey:
        try:
            return self._keys[key_id]
        except KeyError:
            raise UnknownKey(f"key {key_id!r} is not in the roster", keyid=key_id) from None

    def revoke(self, key_id: str, at: datetime, reason: str | None = None) -> RosterKey:
        """Mark ``key_id`` revoked from ``at`` on (``reason`` is recorded in the roster)."""
        if at.tzinfo is None:
            raise ConfigError(f"key {key_id}: the revocation time must carry a UTC offset")
        key = replace(self.get(key_id), revoked_at=at, revocation_reason=reason or None)
        self.add(key)
        return key

    def verify(
        self,
        event: Mapping[str, Any],
        sender: str,
        at: datetime,
        *,
        received_at: datetime | None = None,
        grace: timedelta = timedelta(0),
        signed_bytes: bytes | None = None,
    ) -> RosterKey:
        """Check ``event``'s signature; ``sender`` and ``at`` come from its parsed envelope.

        ``received_at`` is when the event reached the stream (JetStream's timestamp), if
        known. An event signed with a revoked key is refused when its ``time`` is at or after
        the revocation, and also when it reached the stream more than ``grace`` after the
        revocation, whatever ``time`` it claims: a thief can backdate ``time``, but not the
        stream's clock. The grace lets events that were legitimately signed before the
        revocation, and then waited in an outbox during an outage, still be delivered.

        ``signed_bytes``: the signing input when the caller has it already
        (:func:`signing_input_of_wire`); otherwise it is written from ``event``.

        Raises :class:`UnknownKey`, :class:`KeyNotValid`, :class:`KeyRevoked` or
        :class:`BadSignature`, each naming the key.
        """
        key = self.check_key(event, sender, at, received_at=received_at, grace=grace)
        key_id = key.key_id
        raw = event.get(SIGNATURE)
        try:
            signature = base64.b64decode(raw if isinstance(raw, str) else "", validate=True)
            message = signed_bytes if signed_bytes is not None else signing_input(event)
            self._verifiers[key_id].verify(message, signature)
        except (BadSignatureError, binascii.Error, ValueError):
            raise BadSignature(f"signature does not verify with key {key_id}", keyid=key_id) from None
        return key

    def check_key(
        self,
        event: Mapping[str, Any],
        sender: str,
        at: datetime,
        *,
        received_at: datetime | None = None,
        grace: timedelta = timedelta(0),
    ) -> RosterKey:
        """What :meth:`verify` checks but the signature itself: the key named by ``event``
        is in the roster, the sender's, valid at ``at`` and not revoked (see :meth:`verify`).
        The auditor's default mode makes this check of every event and the Ed25519 check of
        the events whose signature carries the others (xregion/auditor/replay.py)."""
        key_id = event.get("keyid")
        if not isinstance(key_id, str):
            raise UnknownKey("event carries no keyid", keyid=None)
        key = self.get(key_id)
        if key.party != sender:
            raise KeyNotValid(f"key {key_id} belongs to {key.party}, not to the sender {sender}", keyid=key_id)
        if key.revoked_at is not None:
            _check_revocation(key, key.revoked_at, at, received_at, grace)
        if at < key.valid_from or (key.valid_until is not None and at >= key.valid_until):
            raise KeyNotValid(f"key {key_id} was not valid at {at.isoformat()}", keyid=key_id)
        return key

    # --- files --------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {"keys": [k.to_json() for k in self._keys.values()]}

    def save(self, path: Path) -> None:
        """Write the roster atomically (a reader never sees a half-written file)."""
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> KeyRoster:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read key roster {path}: {exc}") from None
        return cls(RosterKey.from_json(k) for k in raw.get("keys", []))
