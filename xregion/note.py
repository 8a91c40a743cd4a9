"""The verifiable log's checkpoints: C2SP signed notes (``tlog-checkpoint``) and witness
cosignatures (``tlog-cosignature``), Ed25519 with the parties' roster keys.

A checkpoint is the text of a signed note::

    xregion/XREGION                                 origin: the log (one per event stream)
    37                                              tree size: leaves (stream messages)
    2Y2HF7...Qg0=                                   root hash, base64 (RFC 6962)

    — xregion/XREGION Az3grl...                     the log's signature (AUDIT key, type 0x01)
    — xregion/witness/TJ jWbPPw...                  a witness cosignature (TJ key, type 0x04)

* **The log's signature** (C2SP ``signed-note``, type ``0x01``): Ed25519 over the note text
  by the auditor's roster key (``AUDIT``); its key name is the origin.
* **Cosignatures** (C2SP ``tlog-cosignature`` v1, type ``0x04``): each region's adapter,
  a witness, signs ``cosignature/v1\\ntime <t>\\n`` + the note text with its roster key,
  after checking that the checkpoint is consistent with the last one it cosigned
  (:mod:`xregion.adapter.witness`). The signature is the 8-byte big-endian time followed by
  the 64-byte Ed25519 signature. Its key name is ``xregion/witness/<REGION>``.
* Key IDs are ``SHA-256(name || 0x0A || type || public key)[:4]``: a verifier computes them
  from the roster and ignores lines it does not know, as the spec asks — but names them
  (:class:`NotAWitness`), because in evidence a line that claims to be a witness and is not
  is worth reporting.

Pure data: no I/O. The formats follow c2sp.org/signed-note@v1.0.0,
c2sp.org/tlog-checkpoint@v1.0.0 and c2sp.org/tlog-cosignature (Ed25519 type).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from nacl.exceptions import BadSignatureError

from xregion.errors import VerificationError
from xregion.regions import AUDITOR
from xregion.signing import KeyRoster, RosterKey, Signer

NOTE_ED25519 = 0x01
COSIGNATURE_ED25519 = 0x04
WITNESS_PREFIX = "xregion/witness/"
DASH = "\u2014"
MAX_SIGNATURES = 32
_NAME = re.compile(r"^[^\s+]+$")
_SIZE = re.compile(r"^(0|[1-9][0-9]{0,19})$")


class NoteInvalid(VerificationError):
    """Not a well-formed checkpoint, or the log's signature on it does not verify."""

    code = "note_invalid"


class CosignatureInvalid(VerificationError):
    """A witness's cosignature does not verify (or its key was not valid at its time)."""

    code = "cosignature_invalid"


class NotAWitness(VerificationError):
    """A cosignature line whose key is not a configured witness's roster key."""

    code = "cosignature_not_witness"


class WitnessQuorum(VerificationError):
    """Fewer witnesses cosigned a checkpoint than the verifier requires."""

    code = "cosignatures_missing"


def default_origin(stream: str) -> str:
    """The log's origin line (and key name) for an event stream: ``xregion/XREGION``."""
    return f"xregion/{stream}"


def witness_name(region: str) -> str:
    """A region's witness key name: ``xregion/witness/TJ``."""
    return f"{WITNESS_PREFIX}{region}"


def key_id(name: str, signature_type: int, public_key: bytes) -> bytes:
    """``SHA-256(name || 0x0A || type || public key)[:4]``."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([signature_type]) + public_key).digest()[:4]


def cosigned_message(text: str, timestamp: int) -> bytes:
    """What a v1 cosignature signs: ``cosignature/v1``, ``time <t>``, then the note text."""
    return f"cosignature/v1\ntime {timestamp}\n".encode() + text.encode()


@dataclass(frozen=True)
class Checkpoint:
    """The note text of a checkpoint: origin, tree size, root hash."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _NAME.match(self.origin):
            raise NoteInvalid(f"origin {self.origin!r} is empty or holds a space or '+'")
        if self.size < 0 or len(self.root) != 32:
            raise NoteInvalid("a checkpoint needs a size ≥ 0 and a 32-byte root")
        if any(not e or "\n" in e for e in self.extensions):
            raise NoteInvalid("extension lines must be non-empty single lines")

    def text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode(), *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        if not text.endswith("\n"):
            raise NoteInvalid("a checkpoint's text ends with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3 or any(not line for line in lines):
            raise NoteInvalid("a checkpoint's text is at least three non-empty lines")
        origin, size, root, *extensions = lines
        if not _SIZE.match(size):
            raise NoteInvalid(f"tree size {size!r} is not a decimal without leading zeroes")
        try:
            digest = base64.b64decode(root, validate=True)
        except (binascii.Error, ValueError):
            raise NoteInvalid("the root hash is not base64") from None
        if len(digest) != 32 or base64.b64encode(digest).decode() != root:
            raise NoteInvalid("the root hash is not the base64 of 32 bytes")
        return cls(origin, int(size), digest, tuple(extensions))


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, 4-byte key ID, the signature bytes."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        return f"{DASH} {self.name} {base64.b64encode(self.key_id + self.signature).decode()}\n"

    @property
    def cosignature_time(self) -> int:
        """The timestamp of a type-0x04 cosignature (its first 8 bytes)."""
        return int(struct.unpack(">Q", self.signature[:8])[0])


@dataclass(frozen=True)
class SignedNote:
    """A note: its text and its signature lines."""

    text: str
    signatures: tuple[NoteSignature, ...] = ()

    def render(self) -> str:
        return self.text + "\n" + "".join(s.line() for s in self.signatures)

    def encode(self) -> bytes:
        return self.render().encode()

    def checkpoint(self) -> Checkpoint:
        return Checkpoint.parse(self.text)

    def adding(self, *signatures: NoteSignature) -> SignedNote:
        """This note with ``signatures`` added (a line already present is not repeated)."""
        known = {s.line() for s in self.signatures}
        fresh = tuple(s for s in signatures if s.line() not in known)
        return SignedNote(self.text, self.signatures + fresh)

    @classmethod
    def parse(cls, raw: str | bytes) -> SignedNote:
        if isinstance(raw, bytes):
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise NoteInvalid("a signed note is UTF-8") from None
        if any(ord(c) < 0x20 and c != "\n" for c in raw):
            raise NoteInvalid("a signed note holds no control character but newline")
        cut = raw.rfind("\n\n")
        if cut < 0 or not raw.endswith("\n"):
            raise NoteInvalid("no blank line between the note text and its signatures")
        text, lines = raw[: cut + 1], raw[cut + 2 : -1].split("\n")
        if len(lines) > MAX_SIGNATURES:
            raise NoteInvalid(f"more than {MAX_SIGNATURES} signatures")
        signatures = []
        for line in lines:
            parts = line.split(" ")
            if len(parts) != 3 or parts[0] != DASH or not _NAME.match(parts[1]):
                raise NoteInvalid(f"malformed signature line {line[:60]!r}")
            try:
                blob = base64.b64decode(parts[2], validate=True)
            except (binascii.Error, ValueError):
                raise NoteInvalid(f"signature of {parts[1]} is not base64") from None
            if len(blob) < 5:
                raise NoteInvalid(f"signature of {parts[1]} is too short")
            signatures.append(NoteSignature(parts[1], blob[:4], blob[4:]))
        if not signatures:
            raise NoteInvalid("a signed note carries at least one signature")
        return cls(text, tuple(signatures))


# --- signing -------------------------------------------------------------------------------


def sign_note(checkpoint: Checkpoint, signer: Signer) -> SignedNote:
    """The log's signed checkpoint: an Ed25519 note signature with key name = origin."""
    text = checkpoint.text()
    kid = key_id(checkpoint.origin, NOTE_ED25519, bytes(signer.verify_key))
    return SignedNote(text, (NoteSignature(checkpoint.origin, kid, signer.sign_bytes(text.encode())),))


def cosign(text: str, signer: Signer, at: datetime | None = None) -> NoteSignature:
    """``signer``'s party's v1 cosignature of the note ``text`` (a witness's statement that,
    at ``at``, this is the largest consistent tree head it has seen of the log)."""
    timestamp = int((at or datetime.now(UTC)).timestamp())
    name = witness_name(signer.party)
    signature = signer.sign_bytes(cosigned_message(text, timestamp))
    return NoteSignature(
        name, key_id(name, COSIGNATURE_ED25519, bytes(signer.verify_key)), struct.pack(">Q", timestamp) + signature
    )


# --- verification --------------------------------------------------------------------------


def _valid_at(key: RosterKey, at: datetime | None) -> bool:
    if at is None:
        return key.revoked_at is None
    if key.revoked_at is not None and at >= key.revoked_at:
        return False
    return key.valid_from <= at and (key.valid_until is None or at < key.valid_until)


def _verify(key: RosterKey, message: bytes, signature: bytes) -> bool:
    try:
        key.verify_key.verify(message, signature)
    except (BadSignatureError, ValueError):
        return False
    return True


def verify_log_signature(note: SignedNote, roster: KeyRoster, origin: str, at: datetime | None = None) -> RosterKey:
    """Check the log's signature on ``note`` (an ``AUDIT`` roster key, valid at ``at`` when
    given, not revoked otherwise) and that its origin is ``origin``; return the key.
    Raise :class:`NoteInvalid` naming what is wrong."""
    checkpoint = note.checkpoint()
    if checkpoint.origin != origin:
        raise NoteInvalid(f"checkpoint of log {checkpoint.origin!r}, not of {origin!r}", origin=checkpoint.origin)
    for line in note.signatures:
        if line.name != origin:
            continue
        key: RosterKey
        for key in roster:
            if key.party != AUDITOR or key_id(origin, NOTE_ED25519, key.public_key) != line.key_id:
                continue
            if not _verify(key, note.text.encode(), line.signature):
                raise NoteInvalid(
                    f"the log's signature on checkpoint {checkpoint.size} does not verify", keyid=key.key_id
                )
            if not _valid_at(key, at):
                when = at.isoformat() if at else "now"
                raise NoteInvalid(f"the log's key {key.key_id} was not valid at {when}", keyid=key.key_id)
            return key
    raise NoteInvalid(f"checkpoint {checkpoint.size} carries no signature of the log's roster key ({AUDITOR})")


@dataclass(frozen=True)
class Cosigned:
    """A verified witness cosignature."""

    region: str
    key_id: str
    time: datetime


@dataclass
class Witnessing:
    """What the cosignature lines of a note amount to."""

    cosigned: list[Cosigned] = field(default_factory=list)
    problems: list[VerificationError] = field(default_factory=list)

    @property
    def regions(self) -> list[str]:
        return sorted({c.region for c in self.cosigned})


def check_cosignatures(note: SignedNote, roster: KeyRoster, witnesses: Iterable[str], origin: str) -> Witnessing:
    """Every cosignature line of ``note`` other than the log's: verified against the roster
    keys of ``witnesses`` (region codes), each valid at its cosignature's time. A line of a
    known witness key that does not verify is :class:`CosignatureInvalid`; a line of any
    other key (another party's, an unknown one, a name that is no witness) is
    :class:`NotAWitness`; neither counts."""
    out = Witnessing()
    allowed = set(witnesses)
    for line in note.signatures:
        if line.name == origin:
            continue  # the log's own signature (checked by verify_log_signature)
        region = line.name[len(WITNESS_PREFIX) :] if line.name.startswith(WITNESS_PREFIX) else None
        candidates = [
            k
            for k in roster
            if region is not None
            and k.party == region
            and key_id(line.name, COSIGNATURE_ED25519, k.public_key) == line.key_id
        ]
        if region not in allowed or not candidates:
            whose = f"party {region}, not a witness" if region and region not in allowed else "an unknown key"
            out.problems.append(
                NotAWitness(
                    f"cosignature by {line.name} (key ID {line.key_id.hex()}): {whose}; it does not count",
                    name=line.name,
                    key_id=line.key_id.hex(),
                )
            )
            continue
        key = candidates[0]
        if len(line.signature) != 72:
            out.problems.append(CosignatureInvalid(f"cosignature by {line.name} is not 8 + 64 bytes", name=line.name))
            continue
        at = datetime.fromtimestamp(line.cosignature_time, UTC)
        if not _verify(key, cosigned_message(note.text, line.cosignature_time), line.signature[8:]):
            out.problems.append(
                CosignatureInvalid(f"cosignature by {line.name} does not verify", name=line.name, keyid=key.key_id)
            )
        elif not _valid_at(key, at):
            out.problems.append(
                CosignatureInvalid(
                    f"cosignature by {line.name}: key {key.key_id} was not valid at {at.isoformat()}",
                    name=line.name,
                    keyid=key.key_id,
                )
            )
        else:
            out.cosigned.append(Cosigned(str(region), key.key_id, at))
    return out


# --- how checkpoints and cosignatures travel on the bus -----------------------------------
#
# The log publishes each checkpoint on ``xregion.checkpoint.AUDIT`` with the consistency
# proofs its witnesses need (from the size each last cosigned, and from the previous
# checkpoint); each witness publishes its cosignature on ``xregion.checkpoint.<REGION>``.
# Both are stored in the dead-letter stream next to the regions' chain-head checkpoints
# (:mod:`xregion.checkpoint`), which they are told apart from by ``kind``.

CHECKPOINT_KIND = "tlog-checkpoint"
COSIGNATURE_KIND = "tlog-cosignature"


def is_tlog_message(raw: bytes) -> bool:
    """Whether a message on a checkpoint subject is the log's checkpoint or a cosignature."""
    try:
        wire = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return isinstance(wire, dict) and wire.get("kind") in (CHECKPOINT_KIND, COSIGNATURE_KIND)


def checkpoint_message(note: SignedNote, proofs: dict[int, list[bytes]]) -> bytes:
    """The log's announcement of a checkpoint, with consistency proofs from older sizes."""
    body = {
        "kind": CHECKPOINT_KIND,
        "note": note.render(),
        "proofs": {str(size): [base64.b64encode(h).decode() for h in proof] for size, proof in sorted(proofs.items())},
    }
    return json.dumps(body, separators=(",", ":")).encode()


def parse_checkpoint_message(raw: bytes) -> tuple[SignedNote, dict[int, list[bytes]]]:
    try:
        wire = json.loads(raw)
        if not isinstance(wire, dict) or wire.get("kind") != CHECKPOINT_KIND:
            raise ValueError("not a checkpoint announcement")
        proofs = {
            int(size): [base64.b64decode(h, validate=True) for h in hashes]
            for size, hashes in dict(wire.get("proofs") or {}).items()
        }
        note = SignedNote.parse(str(wire["note"]))
    except NoteInvalid:
        raise
    except (ValueError, KeyError, TypeError, binascii.Error, RecursionError) as exc:
        raise NoteInvalid(f"malformed checkpoint announcement: {exc}") from None
    return note, proofs


def cosignature_message(region: str, text: str, signature: NoteSignature) -> bytes:
    body = {"kind": COSIGNATURE_KIND, "region": region, "note": text, "cosignature": signature.line().rstrip("\n")}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def parse_cosignature_message(raw: bytes) -> tuple[str, str, NoteSignature]:
    """(region, checkpoint text, cosignature line) of a witness's message."""
    try:
        wire = json.loads(raw)
        if not isinstance(wire, dict) or wire.get("kind") != COSIGNATURE_KIND:
            raise ValueError("not a cosignature")
        region, text, line = str(wire["region"]), str(wire["note"]), str(wire["cosignature"])
        (signature,) = SignedNote.parse(text + "\n" + line + "\n").signatures
    except NoteInvalid:
        raise
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise NoteInvalid(f"malformed cosignature message: {exc}") from None
    return region, text, signature
