"""Sealing personal data end to end: personal-data fields encrypted to the addressee region.

Every field whose JSON Schema admits a sealed value — an alternative that is a ``$ref`` to the
``Sealed`` definition (``#/$defs/Sealed`` in ``schemas/v1/``, ``#/components/schemas/Sealed``
in the AsyncAPI and OpenAPI documents) — holds personal data (names, addresses and contacts of
the entities in a payload) and travels sealed::

    "name": {"sealed": {"TJ:1a2b3c4d5e6f7a8b": "<base64 sealed box>", ...}}

* **What is boxed**: the UTF-8 JSON text of the plain value (``"张某"``, quotes included),
  in a libsodium *sealed box* (``crypto_box_seal``: ephemeral X25519 + XSalsa20-Poly1305),
  so only the recipient can open it and the sender stays anonymous to the box itself (the
  signature says who sent the event).
* **To whom**: every roster key of the addressee region valid at the event's ``time`` (both
  keys during a rotation's overlap); for a broadcast (``ALL``), every key of every other
  configured region. The map is keyed by the recipient's key id. The coordinator and the
  auditor are not recipients: they verify signatures, chains and lifecycles over the
  ciphertext without being able to read personal data.
* **Which key**: the recipient's X25519 key is derived from its Ed25519 roster key
  (``VerifyKey.to_curve25519_public_key()``; the recipient opens with
  ``SigningKey.to_curve25519_private_key()``). One key pair per party means no second
  roster, no second rotation procedure and no second distribution channel: whoever can
  verify a party's signatures can seal to it. The trade-off is key separation: the same
  secret serves for signing and for decryption, so one leaked private key both forges and
  reads, and a rotation that destroys the old private key also ends the reading of events
  sealed to it only (hence sealing to every key valid at the event's time). The
  Ed25519→X25519 map is the birational one libsodium implements; no attack is known on
  using both with the same secret, but a deployment needing strict separation adds a
  dedicated encryption key to the roster and changes only :func:`recipients`.
* **Order**: sealed first, signed after. The signature covers the boxes, so a tampered box
  fails signature verification before anyone tries to open it.

**Sealing v2** (``{"v": 2, "epk": ..., "sealed": {key id: ...}}``): one key agreement per
event and recipient instead of one per field and recipient. The sender makes one ephemeral
X25519 key pair ``(e, E)`` per event; for each recipient key ``R`` (the same X25519 keys as
v1) ``prk = HKDF-Extract(salt = E || R, ikm = X25519(e, R))`` (SHA-256); each field's key is
``HKDF-Expand(prk, info, 32)`` with ``info = "xregion-seal-v2" 0x00 event id 0x00 field path
0x00 recipient key id`` (the field path as ``data.suspects.1.name``), and the field is
``ChaCha20-Poly1305`` (IETF, RFC 8439) of the value's JSON text under that key, a zero nonce
(each key seals exactly one text) and ``info`` as associated data, so a box moved to another
field, event or recipient does not open. ``epk`` is ``E`` (standard base64), the same in every
field of the event; each box is the base64 ciphertext with its tag. The per-field key also lets
a recipient disclose one field (to a court, say) without the others: it hands over that
field's key (:func:`field_key`) and the court opens that box alone.

Receivers open both; a sender seals v2 when configured to (``XREGION_SEAL_VERSION=2``) once
every addressee runs a release that opens v2; v1 stays readable for ever.

Everything here is pure (no I/O); the runtime seals in the outbox and opens in the consumer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from nacl.bindings import (
    crypto_aead_chacha20poly1305_ietf_decrypt,
    crypto_aead_chacha20poly1305_ietf_encrypt,
    crypto_scalarmult,
    crypto_scalarmult_base,
    randombytes,
)
from nacl.exceptions import CryptoError
from nacl.exceptions import RuntimeError as NaclRuntimeError
from nacl.public import PrivateKey, PublicKey, SealedBox
from nacl.signing import SigningKey, VerifyKey
from pydantic import BaseModel

from xregion import jcs
from xregion.errors import ConfigError, SchemaInvalid, UnsealFailed
from xregion.signing import KeyRoster, RosterKey, Signer

SEALED = "sealed"
SEAL_VERSION = "v"
EPHEMERAL = "epk"
V2 = 2
V2_LABEL = b"xregion-seal-v2"
SEALED_TYPE = "Sealed"
"""Name of the sealed value's schema definition: a field whose schema refers to it (one
alternative of its ``anyOf``) is personal data. The one marker: plain JSON Schema, which every
validator loads in its strictest mode, unlike a custom keyword."""
ANY_ITEM = "*"

FieldPath = tuple[str, ...]
"""Where a sensitive field sits in ``data``: property names, ``*`` for every list item."""


# --- which fields ---------------------------------------------------------------------------


def _resolve(node: Any, defs: Mapping[str, Any]) -> Any:
    while isinstance(node, Mapping) and isinstance(node.get("$ref"), str):
        ref = node["$ref"]
        if not ref.startswith("#/$defs/"):
            break
        node = {**defs.get(ref.removeprefix("#/$defs/"), {}), **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def refers_to_sealed(node: Any) -> bool:
    """Whether ``node`` is a ``$ref`` to the sealed value's definition (in any document)."""
    return (
        isinstance(node, Mapping)
        and isinstance(node.get("$ref"), str)
        and node["$ref"].rsplit("/", 1)[-1] == SEALED_TYPE
    )


def _walk(node: Any, defs: Mapping[str, Any], path: FieldPath, refs: frozenset[str]) -> Iterator[FieldPath]:
    if refers_to_sealed(node):
        yield path  # the field this alternative belongs to may be sealed: personal data
        return
    if isinstance(node, Mapping) and isinstance(node.get("$ref"), str):
        if node["$ref"] in refs:  # its sensitive fields would lie at unbounded depths
            raise ValueError(f"recursive schema at {'.'.join(path)} ({node['$ref']}): sealing needs finite paths")
        refs = refs | {node["$ref"]}
    node = _resolve(node, defs)
    if not isinstance(node, Mapping):
        return
    for keyword in ("anyOf", "oneOf", "allOf"):
        for alternative in node.get(keyword, []) or []:
            yield from _walk(alternative, defs, path, refs)
    for name, child in (node.get("properties") or {}).items():
        yield from _walk(child, defs, (*path, name), refs)
    if isinstance(node.get("items"), Mapping):
        yield from _walk(node["items"], defs, (*path, ANY_ITEM), refs)


def paths_in_schema(schema: Mapping[str, Any]) -> tuple[FieldPath, ...]:
    """Every personal-data field of a JSON Schema: those admitting a ``$ref`` to ``Sealed``
    (local ``$defs`` references followed)."""
    return tuple(dict.fromkeys(_walk(schema, schema.get("$defs") or {}, (), frozenset())))


@cache
def sensitive_paths(model: type[BaseModel]) -> tuple[FieldPath, ...]:
    """Every personal-data field of a payload model, from its JSON Schema (the contract)."""
    return paths_in_schema(model.model_json_schema())


def _visit(value: Any, path: FieldPath, where: FieldPath, fn: Callable[[Any, FieldPath], Any]) -> Any:
    """``value`` with ``fn(leaf, concrete path)`` applied at ``path``; copies what it changes."""
    if not path:
        return fn(value, where)
    head, rest = path[0], path[1:]
    if head == ANY_ITEM:
        if not isinstance(value, list):
            return value
        return [_visit(item, rest, (*where, str(i)), fn) for i, item in enumerate(value)]
    if not isinstance(value, Mapping) or value.get(head) is None:
        return value
    return {**value, head: _visit(value[head], rest, (*where, head), fn)}


def _apply(model: type[BaseModel], data: Mapping[str, Any], fn: Callable[[Any, FieldPath], Any]) -> dict[str, Any]:
    result: Any = dict(data)
    for path in sensitive_paths(model):
        result = _visit(result, path, ("data",), fn)
    return dict(result)


def is_sealed(value: Any) -> bool:
    """Whether ``value`` is a sealed value on the wire: ``{"sealed": {...}}`` (v1) or
    ``{"v": 2, "epk": "...", "sealed": {...}}`` (v2)."""
    if not isinstance(value, Mapping) or not isinstance(value.get(SEALED), Mapping):
        return False
    if set(value) - {SEALED, SEAL_VERSION, EPHEMERAL}:
        return False
    version, epk = value.get(SEAL_VERSION), value.get(EPHEMERAL)  # null is absent (the null rule)
    return (version is None and epk is None) or (version == V2 and isinstance(epk, str))


def sensitive_values(model: type[BaseModel], data: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """``(field path, value)`` of every sensitive field present in ``data``, plain or sealed."""
    found: list[tuple[str, Any]] = []

    def collect(value: Any, where: FieldPath) -> Any:
        found.append((".".join(where), value))
        return value

    _apply(model, data, collect)
    return found


def plain_fields(model: type[BaseModel], data: Mapping[str, Any]) -> list[str]:
    """Paths of the sensitive fields of ``data`` that travel in the clear (not sealed)."""
    return [where for where, value in sensitive_values(model, data) if not is_sealed(value)]


# --- keys -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    """A key a sensitive value is sealed to: the roster key id and its X25519 public key."""

    key_id: str
    public_key: PublicKey


@dataclass(frozen=True)
class OpeningKey:
    """A party's X25519 private key (from its Ed25519 signing key) and the roster key id."""

    key_id: str
    private_key: PrivateKey

    @classmethod
    def of(cls, signer: Signer) -> OpeningKey:
        return _opening_key(signer.key_id, signer.seed())

    def __repr__(self) -> str:  # never the key
        return f"OpeningKey(key_id={self.key_id!r})"


@cache
def _opening_key(key_id: str, seed: bytes) -> OpeningKey:
    return OpeningKey(key_id, SigningKey(seed).to_curve25519_private_key())


def usable_at(key: RosterKey, at: datetime) -> bool:
    """Whether ``key`` may be used at ``at``: inside its validity period and not revoked."""
    if key.revoked_at is not None and at >= key.revoked_at:
        return False
    return key.valid_from <= at and (key.valid_until is None or at < key.valid_until)


@cache
def _x25519_public(ed25519_public: bytes) -> PublicKey:
    """The X25519 public key of an Ed25519 one (a conversion worth doing once per key)."""
    return VerifyKey(ed25519_public).to_curve25519_public_key()


def recipients(roster: Iterable[RosterKey], regions: Iterable[str], at: datetime) -> list[Recipient]:
    """The keys to seal to: every key of each of ``regions`` usable at ``at``.

    Raises :class:`~xregion.errors.ConfigError` naming a region that has no such key: its
    personal data cannot be sent to it.
    """
    keys = list(roster)
    found: list[Recipient] = []
    for region in regions:
        usable = [k for k in keys if k.party == region and usable_at(k, at)]
        if not usable:
            raise ConfigError(
                f"no roster key of {region} is valid at {at.isoformat()}: cannot seal personal data to it",
                party=region,
            )
        found += [Recipient(k.key_id, _x25519_public(k.public_key)) for k in usable]
    return found


# --- v2: one key agreement per event and recipient ---------------------------------------------


def _hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def _hkdf_expand_32(prk: bytes, info: bytes) -> bytes:
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()  # RFC 5869, one block of 32 bytes


def field_info(event_id: str, where: str, key_id: str) -> bytes:
    """The HKDF ``info`` and AEAD associated data of one field sealed to one recipient (v2)."""
    return b"\x00".join((V2_LABEL, event_id.encode(), where.encode(), key_id.encode()))


def _x25519(secret: bytes, public: bytes) -> bytes | None:
    """X25519, or None for a low-order public key (the all-zero shared value, which
    libsodium refuses)."""
    try:
        shared = crypto_scalarmult(secret, public)
    except NaclRuntimeError:
        return None
    return shared if any(shared) else None


def field_key(prk: bytes, event_id: str, where: str, key_id: str) -> bytes:
    """The 32-byte ChaCha20-Poly1305 key of one field for one recipient (v2): what a
    recipient discloses to let someone open that field alone."""
    return _hkdf_expand_32(prk, field_info(event_id, where, key_id))


_ZERO_NONCE = bytes(12)


@dataclass
class SealingV2:
    """The sealing of one event to its recipients (v2): one ephemeral key, one key agreement
    per recipient, made once and used for every field."""

    event_id: str
    ephemeral_public: bytes
    keys: list[tuple[str, bytes]]
    """(recipient key id, its pseudo-random key)."""

    @classmethod
    def new(cls, event_id: str, to: Sequence[Recipient], secret: bytes | None = None) -> SealingV2:
        """A fresh sealing of ``event_id`` to ``to``; ``secret``: the ephemeral secret to use
        instead of 32 random bytes (deterministic test vectors and conformance cases only)."""
        esk = randombytes(32) if secret is None else secret  # X25519 clamps the scalar itself
        epk = crypto_scalarmult_base(esk)
        keys = []
        for r in to:
            public = bytes(r.public_key)
            shared = _x25519(esk, public)
            if shared is None:
                raise ConfigError(f"recipient key {r.key_id} is a low-order X25519 key: cannot seal to it")
            keys.append((r.key_id, _hkdf_extract(epk + public, shared)))
        return cls(event_id, epk, keys)

    def seal(self, value: Any, where: str) -> dict[str, Any]:
        text = jcs.dumps(value)
        boxes = {
            key_id: base64.b64encode(
                crypto_aead_chacha20poly1305_ietf_encrypt(
                    text, info := field_info(self.event_id, where, key_id), _ZERO_NONCE, _hkdf_expand_32(prk, info)
                )
            ).decode("ascii")
            for key_id, prk in self.keys
        }
        return {SEAL_VERSION: V2, EPHEMERAL: base64.b64encode(self.ephemeral_public).decode("ascii"), SEALED: boxes}


def _open_v2(
    value: Mapping[str, Any], key: OpeningKey, event_id: str, where: str, agreed: dict[tuple[str, bytes], bytes]
) -> Any:
    """The plain value of a v2 box sealed to ``key``; ``agreed`` caches the event's key
    agreement (one per event and recipient key, whatever the number of fields)."""
    epk = base64.b64decode(value[EPHEMERAL], validate=True)
    if len(epk) != 32:
        raise ValueError("epk is not an X25519 public key")
    prk = agreed.get((key.key_id, epk))
    if prk is None:
        shared = _x25519(bytes(key.private_key), epk)
        if shared is None:
            raise CryptoError("low-order ephemeral key")
        prk = agreed[(key.key_id, epk)] = _hkdf_extract(epk + bytes(key.private_key.public_key), shared)
    info = field_info(event_id, where, key.key_id)
    box = base64.b64decode(value[SEALED][key.key_id], validate=True)
    text = crypto_aead_chacha20poly1305_ietf_decrypt(box, info, _ZERO_NONCE, _hkdf_expand_32(prk, info))
    return json.loads(text.decode("utf-8"))


# --- sealing and opening -----------------------------------------------------------------------


def seal_value(value: Any, to: Sequence[Recipient]) -> dict[str, Any]:
    """``{"sealed": {key id: base64 box}}`` of ``value``'s JSON text, one box per recipient."""
    if not to:
        raise ValueError("a value is sealed to at least one recipient")
    text = jcs.dumps(value)  # the value's JSON text (any JSON encoding opens the same)
    boxes = {r.key_id: base64.b64encode(SealedBox(r.public_key).encrypt(text)).decode("ascii") for r in to}
    return {SEALED: boxes}


def open_value(
    value: Any,
    keys: Sequence[OpeningKey],
    where: str = "",
    *,
    event_id: str | None = None,
    agreed: dict[tuple[str, bytes], bytes] | None = None,
) -> Any:
    """The plain value of a sealed value, opened with the first of ``keys`` it was sealed to.

    A v2 value needs the ``event_id`` and field path ``where`` it was sealed for (they are
    bound to it); ``agreed`` caches the event's key agreements between its fields."""
    boxes = value[SEALED]
    for key in keys:
        box = boxes.get(key.key_id)
        if box is None:
            continue
        try:
            if value.get(SEAL_VERSION) == V2:
                if event_id is None:
                    raise ValueError("a v2 sealed value opens only with the id of its event")
                return _open_v2(value, key, event_id, where, {} if agreed is None else agreed)
            text = SealedBox(key.private_key).decrypt(base64.b64decode(box, validate=True))
            return json.loads(text.decode("utf-8"))
        except (CryptoError, binascii.Error, ValueError, TypeError) as exc:
            raise UnsealFailed(
                f"sealed field {where or '(value)'} does not open with key {key.key_id}: {type(exc).__name__}",
                field=where,
                keyid=key.key_id,
            ) from None
    raise UnsealFailed(
        f"sealed field {where or '(value)'} is not sealed to any key of this party "
        f"(sealed to {', '.join(sorted(boxes)) or 'nobody'}; holds {', '.join(k.key_id for k in keys) or 'none'})",
        field=where,
        recipients=sorted(boxes),
    )


def seal_data(
    model: type[BaseModel],
    data: Mapping[str, Any],
    to: Sequence[Recipient],
    *,
    version: int = 1,
    event_id: str | None = None,
) -> dict[str, Any]:
    """``data`` (plain, as composed) with every sensitive value sealed to ``to``: v1, a sealed
    box per field and recipient, or v2 (``version=2``, bound to ``event_id``), one key
    agreement per recipient for the whole event and an AEAD per field.

    A value that is already sealed is refused: the adapter seals, its caller gives plain text.
    """
    if version not in (1, V2):
        raise ConfigError(f"sealing version {version} is not known (1 or 2)")
    if version == V2 and not event_id:
        raise ValueError("v2 sealing binds each field to its event: give the event id")
    if not to:
        raise ValueError("a value is sealed to at least one recipient")
    v2: SealingV2 | None = None

    def seal(value: Any, where: FieldPath) -> Any:
        nonlocal v2
        if is_sealed(value):
            field = ".".join(where)
            raise SchemaInvalid(
                f"{field} is sealed already; give the plain value, the adapter seals it",
                errors=[{"field": field, "error": "sealed by the caller"}],
            )
        if version == V2:
            if v2 is None:
                v2 = SealingV2.new(str(event_id), to)
            return v2.seal(value, ".".join(where))
        return seal_value(value, to)

    return _apply(model, data, seal)  # without personal data: a copy, nothing sealed


def open_data(
    model: type[BaseModel], data: Mapping[str, Any], keys: Sequence[OpeningKey], *, event_id: str | None = None
) -> dict[str, Any]:
    """``data`` with every sealed sensitive value opened (v1 or v2: v2 needs the ``event_id``);
    plain values are left as they are. Raises :class:`~xregion.errors.UnsealFailed` naming the field.
    """
    agreed: dict[tuple[str, bytes], bytes] = {}

    def unseal(value: Any, where: FieldPath) -> Any:
        if not is_sealed(value):
            return value
        return open_value(value, keys, ".".join(where), event_id=event_id, agreed=agreed)

    return _apply(model, data, unseal)


class FieldSealing:
    """One party's sealing context: seals to others from the roster, opens with its own keys.

    Both are providers, read at each use, so a reloaded roster or a rotated key is picked up
    without rebuilding anything.
    """

    def __init__(
        self, roster: Callable[[], KeyRoster], own_keys: Callable[[], Iterable[Signer]], *, version: int = 1
    ) -> None:
        self._roster = roster
        self._own_keys = own_keys
        if version not in (1, V2):
            raise ConfigError(f"sealing version {version} is not known (1 or 2)")
        self.version = version
        """The version this party seals with (it opens both)."""

    def seal(
        self,
        model: type[BaseModel],
        data: Mapping[str, Any],
        regions: Iterable[str],
        at: datetime,
        *,
        event_id: str | None = None,
    ) -> dict[str, Any]:
        """``data`` with its sensitive values sealed to every usable key of ``regions`` (v2
        binds them to ``event_id``)."""
        if not sensitive_paths(model):
            return dict(data)
        to = recipients(self._roster(), regions, at)
        version = self.version if event_id else 1
        return seal_data(model, data, to, version=version, event_id=event_id)

    def open(self, model: type[BaseModel], data: Mapping[str, Any], event_id: str | None = None) -> dict[str, Any]:
        """``data`` with the values sealed to this party opened (v2 ones need ``event_id``)."""
        if not any(is_sealed(v) for _, v in sensitive_values(model, data)):
            return dict(data)
        return open_data(model, data, [OpeningKey.of(s) for s in self._own_keys()], event_id=event_id)
