"""Bytes ↔ events: the one place where wire input becomes a typed, validated event.

:func:`decode` checks, in this order, and raises the first fault with its stable code
(see :mod:`xregion.errors`): size (``oversized``), JSON (``malformed_json``), envelope
(``schema_invalid``), event type and version (``unknown_event_type``,
``unknown_event_version``), payload (``schema_invalid``, naming the fields), parties
(``unknown_party``, when a registry is given). Authenticity (signature, chain) and
lifecycle are checked by their own modules on the decoded event.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from xregion.contracts.catalog import CATALOG, Catalog, EventType
from xregion.contracts.common import Contract
from xregion.envelope import Envelope
from xregion.errors import (
    ContractError,
    DuplicateMember,
    MalformedJson,
    NotCanonical,
    OversizedMessage,
    SchemaInvalid,
    SubjectMismatch,
    UnknownParty,
)
from xregion.ids import EVENT_ID
from xregion.lifecycle.machine import Step
from xregion.regions import BROADCAST, COORDINATOR, RegionRegistry
from xregion.signing import canonical
from xregion.subjects import Subject
from xregion.subjects import build as build_subject

MAX_EVENT_BYTES = 256 * 1024
"""Largest event accepted. Events carry metadata and digests; files (photos, video,
documents) go to the evidence object store and are referenced by SHA-256. The transport
allows 1 MB, so an oversized event still arrives and is dead-lettered with its reason."""


@dataclass(frozen=True)
class DecodedEvent:
    """A structurally valid event: its wire dict, envelope, type and typed payload.

    ``wire`` is always the event exactly as signed (sensitive fields sealed). ``envelope``
    and ``payload`` are the same until the event is :meth:`opened` by a party that can read
    its sealed fields (the sender, the addressee): then they hold the plain data.
    """

    wire: dict[str, Any]
    envelope: Envelope
    event_type: EventType
    payload: Contract

    @property
    def subject(self) -> str:
        """The NATS subject this event belongs on."""
        env = self.envelope
        return build_subject(env.family, env.event, env.sender, env.addressee, f"v{env.version}")

    def opened(self, data: dict[str, Any], registry: RegionRegistry | None = None) -> DecodedEvent:
        """This event read with ``data`` (its sealed fields opened); ``wire`` stays as signed."""
        payload = decode_data(self.event_type, data, registry)
        return DecodedEvent(self.wire, self.envelope.model_copy(update={"data": data}), self.event_type, payload)


def encode(event: dict[str, Any]) -> bytes:
    """Wire bytes of a signed event: its RFC 8785 canonical form (compact, deterministic)."""
    return canonical(event)


def field_errors(exc: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    """pydantic errors as ``[{"field": "data.suspects.0.uscc", "error": "..."}]``."""
    return [
        {
            "field": ".".join([p for p in (prefix,) if p] + [str(x) for x in err["loc"]]),
            "error": err["msg"],
        }
        for err in exc.errors(include_url=False)
    ]


def schema_invalid(what: str, exc: ValidationError, prefix: str, **details: Any) -> SchemaInvalid:
    errors = field_errors(exc, prefix)
    fields = ", ".join(e["field"] or "(root)" for e in errors[:5])
    return SchemaInvalid(f"{what} is invalid at {fields}: {errors[0]['error']}", errors=errors, **details)


def decode_data(event_type: EventType, data: dict[str, Any], registry: RegionRegistry | None = None) -> Contract:
    """Validate ``data`` against the model of ``event_type``."""
    try:
        return event_type.model.model_validate(data, context={"regions": registry})
    except ValidationError as exc:
        raise schema_invalid(f"data of {event_type.ce_type}", exc, "data", type=event_type.ce_type) from None


def decode_dict(
    wire: Any,
    *,
    catalog: Catalog = CATALOG,
    registry: RegionRegistry | None = None,
    opened: dict[str, Any] | None = None,
    payload: Contract | None = None,
) -> DecodedEvent:
    """Validate an already-parsed JSON value as an event.

    ``opened``: the event's data with its sealed fields opened, when the caller has it (the
    sender, who sealed them): the payload is then validated once, opened, and the event
    returned read with it (as :meth:`DecodedEvent.opened` would), instead of validating the
    sealed form and then the opened one; ``payload``: ``opened`` validated already, as
    :func:`decode_data` would (with ``registry``), by whoever composed it."""
    if not isinstance(wire, dict):
        raise SchemaInvalid(f"an event is a JSON object, got {type(wire).__name__}", errors=[])
    try:
        envelope = Envelope.model_validate(wire)
    except ValidationError as exc:
        raise schema_invalid("envelope", exc, "") from None
    event_type = catalog.by_ce_type(envelope.type)
    if envelope.dataschema != event_type.dataschema:
        raise SchemaInvalid(
            f"dataschema {envelope.dataschema!r} does not match type {envelope.type} "
            f"(expected {event_type.dataschema!r})",
            errors=[{"field": "dataschema", "error": "does not match type"}],
        )
    if payload is None or opened is None or not isinstance(payload, event_type.model):
        payload = decode_data(event_type, envelope.data if opened is None else opened, registry)
    if registry is not None:
        check_parties(envelope, registry)
    if opened is not None:
        envelope = envelope.model_copy(update={"data": opened})
    return DecodedEvent(wire, envelope, event_type, payload)


def claimed_event_id(raw: bytes) -> str | None:
    """The ``id`` that bytes which are not a valid event claim, if it is a well-formed event
    id, so that their dead letter can name it (unverified: the event did not validate);
    ``None`` for bytes that are not a JSON object within the size limit, or another ``id``."""
    try:
        value = parse_json(raw)
    except ContractError:
        return None
    claimed = value.get("id") if isinstance(value, dict) else None
    return claimed if isinstance(claimed, str) and EVENT_ID.fullmatch(claimed) else None


MAX_DEPTH = 32
"""Deepest nesting of arrays and objects accepted (events nest about 8 deep, sealed fields
included). Checked on the bytes before anything recursive (the parser, the canonical form,
pydantic) sees them."""

MAX_VALUES = 10_000
"""Most members and elements, all containers together, accepted in one event."""

# A JSON string, or an unterminated one up to the end: possessive, so linear in the input.
_STRING = re.compile(rb'"(?:[^"\\]++|\\.|\\\Z)*+(?:"|\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_I_JSON_INT = 2**53 - 1


class _Duplicate(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise _Duplicate(name)
            seen.add(name)
    return obj


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")


def _int(text: str) -> int:
    value = int(text)
    if not -_I_JSON_INT <= value <= _I_JSON_INT:
        raise ValueError(f"integer of {len(text)} characters is beyond +-(2**53 - 1) (I-JSON, RFC 7493)")
    return value


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is beyond the range of a double (I-JSON, RFC 7493)")
    return value


def check_shape(raw: bytes) -> None:
    """Size, nesting depth and number of values of ``raw``, from its bytes alone (strings
    skipped), before any recursive work: :class:`OversizedMessage` or :class:`MalformedJson`."""
    if len(raw) > MAX_EVENT_BYTES:
        raise OversizedMessage(
            f"event of {len(raw)} bytes exceeds {MAX_EVENT_BYTES}; send files as attachments",
            size=len(raw),
            limit=MAX_EVENT_BYTES,
        )
    outside = _STRING.sub(b"", raw)
    if outside.count(b",") >= MAX_VALUES:
        raise MalformedJson(f"more than {MAX_VALUES} members and elements", limit=MAX_VALUES)
    brackets = outside.translate(None, _NOT_BRACKETS)
    if len(brackets) > 2 * MAX_VALUES:
        raise MalformedJson(f"more than {MAX_VALUES} arrays and objects", limit=MAX_VALUES)
    depth = 0
    for byte in brackets:
        if byte in b"[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise MalformedJson(f"nested deeper than {MAX_DEPTH} arrays and objects", limit=MAX_DEPTH)
        else:
            depth -= 1


def parse_strict(raw: bytes) -> tuple[Any, bytes]:
    """The JSON value of one event's wire bytes and its RFC 8785 canonical form, strictly.

    The bytes must be I-JSON (RFC 7493), the profile RFC 8785 signs: UTF-8 (no BOM, not
    UTF-16/32; no encoded surrogates), no duplicate member names (``duplicate_member``: two
    parsers would read different objects under one signature), no lone surrogate escapes
    (``"\\ud800"``), integers within +-(2**53 - 1), finite numbers, no ``NaN``/``Infinity``;
    within :data:`MAX_EVENT_BYTES` (``oversized``), :data:`MAX_DEPTH` and :data:`MAX_VALUES`,
    checked on the bytes first. Everything else is :class:`MalformedJson`.

    Bytes that are their own canonical form (what senders publish) are read once and not
    written again (:func:`parse_stored`); the canonical form returned is then ``raw`` itself.
    """
    value, canonical_bytes = parse_stored(raw)
    return value, raw if canonical_bytes else _canonical_form(value)


def parse_json(raw: bytes) -> Any:
    """The JSON value of one event's wire bytes, as strictly as :func:`parse_strict`, without
    writing its canonical form unless the bytes hold a surrogate escape (the only way a value
    can lack one)."""
    return parse_stored(raw)[0]


def parse_stored(raw: bytes) -> tuple[Any, bool]:
    """The JSON value of one event's wire bytes, exactly as strictly as :func:`parse_strict`
    (the same value, or the same fault), and whether ``raw`` is that value's RFC 8785
    canonical form — then :func:`~xregion.signing.hash_of_canonical` of ``raw`` is its hash and
    ``raw`` without its ``signature`` member its signing input, with nothing written again.

    First the cheap reading (:func:`_canonical_value`); where it cannot prove ``raw`` canonical
    — anything unusual, hostile or not — the strict parser reads ``raw`` from the start, so
    every fault is named as the strict parser names it."""
    value = _canonical_value(raw)
    if value is not _NOT_CANONICAL:
        return value, True
    value = _loads(raw)
    if _SURROGATE_ESCAPE.search(raw):
        _canonical_form(value)
    return value, False


_NOT_CANONICAL = object()

_ABOVE_BMP = re.compile(rb"[\xf0-\xff]")
"""A byte that starts a 4-byte UTF-8 sequence (a character above U+FFFF), or is no UTF-8."""

_AS_JCS = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
"""``orjson.dumps`` options under which it writes what RFC 8785 writes, for plain JSON values
(see :func:`_canonical_value`)."""


def _canonical_value(raw: bytes) -> Any:
    """The JSON value of ``raw`` if ``raw`` is exactly its RFC 8785 canonical form, else
    :data:`_NOT_CANONICAL`; the value is then the one the strict parser (:func:`_loads`)
    returns, and it would raise nothing.

    Why: ``orjson`` reads ``raw`` as strict UTF-8 (no BOM, no encoded surrogates, no lone
    surrogate escapes, no ``NaN``/``Infinity``) into ``dict``, ``list``, ``str``, ``int``,
    ``float``, ``bool`` and ``None`` (an integer beyond 64 bits becomes a ``float``); a value
    holding a ``float`` is left to the strict parser. Of the rest, ``orjson.dumps`` with
    sorted keys and integers bounded to +-(2**53 - 1) (:data:`_AS_JCS`, else it raises) writes
    exactly what :func:`xregion.jcs.dumps` writes, as long as no member name holds a character
    above U+FFFF (JCS sorts by UTF-16 code units, ``orjson`` by code points: they agree below
    U+10000): the same escapes (``\\" \\\\ \\b \\f \\n \\r \\t``, lower-case ``\\u00xx`` for the
    other control characters, every other character as itself — checked for every character
    below U+10000 in ``tests/unit/test_codec_stored.py``), no whitespace, the same literals and
    integers. ``raw`` is accepted only if it is byte for byte equal to that. A canonical text
    holds no whitespace, no escape JCS does not write, each member name of an object once
    (a duplicate is read as one member and written once), so the strict parser finds in
    ``raw`` nothing to refuse and reads the same value. The shape limits of
    :func:`check_shape` hold too: ``raw`` has fewer than :data:`MAX_VALUES` commas and at
    most :data:`MAX_DEPTH` opening brackets at all (inside strings or not), which bounds the
    nesting, and a balanced text as many closing ones. The character test: without a byte
    from F0 on ``raw`` holds no character above U+FFFF, and the value none either (one
    written as an escaped surrogate pair is written back as 4 UTF-8 bytes, which ``raw``
    lacks)."""
    if (
        len(raw) > MAX_EVENT_BYTES
        or raw.count(b",") >= MAX_VALUES
        or raw.count(b"{") + raw.count(b"[") > MAX_DEPTH
        or (not raw.isascii() and _ABOVE_BMP.search(raw))
    ):
        return _NOT_CANONICAL
    try:
        value = orjson.loads(raw)
        if _floatless(value) and orjson.dumps(value, option=_AS_JCS) == raw:
            return value
    except (ValueError, TypeError):  # orjson.JSONDecodeError, orjson.JSONEncodeError
        pass
    return _NOT_CANONICAL


def _floatless(value: Any) -> bool:
    """Whether ``value`` (as ``orjson.loads`` returns it) holds no ``float``."""
    kind = type(value)
    if kind is dict:
        items = value.values()
    elif kind is list:
        items = value
    else:
        return kind is not float
    for item in items:
        kind = type(item)
        if kind is str or kind is int or item is None or item is True or item is False:
            continue
        if kind is float or not _floatless(item):
            return False
    return True


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
"""A ``\\uD800``-``\\uDFFF`` escape (or text that looks like one): only through such an escape
can valid UTF-8 bytes parse into a string without a UTF-8 form."""


def _loads(raw: bytes) -> Any:
    check_shape(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedJson(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        return json.loads(text, object_pairs_hook=_object, parse_constant=_not_json, parse_int=_int, parse_float=_float)
    except _Duplicate as exc:
        raise DuplicateMember(
            "an object names a member twice: readers disagree on which one counts", member=_safe(exc.name)[:64]
        ) from None
    except (ValueError, RecursionError) as exc:
        # ValueError: bad JSON, NaN/Infinity, numbers beyond I-JSON, integers beyond
        # int_max_str_digits; RecursionError: cannot happen within MAX_DEPTH, kept as a net.
        raise MalformedJson(f"not JSON: {_safe(str(exc))[:200]}") from None


def _canonical_form(value: Any) -> bytes:
    try:
        return canonical(value)
    except Exception as exc:  # a lone surrogate escape: no UTF-8 form, no RFC 8785 form
        raise MalformedJson(f"not I-JSON (RFC 7493): {type(exc).__name__}, e.g. a lone surrogate escape") from None


def check_canonical(raw: bytes, canonical_form: bytes) -> None:
    """What is signed is exactly what is stored: an event's wire bytes must be its RFC 8785
    canonical form (as the adapters send it), else :class:`NotCanonical` — no whitespace,
    no BOM or trailing newline, no ``\\u`` escapes of characters JCS writes as themselves,
    members in JCS order, numbers in ECMAScript form (``1`` not ``1.0``, ``0`` not ``-0``)."""
    if raw != canonical_form:
        at = next((i for i, (a, b) in enumerate(zip(raw, canonical_form, strict=False)) if a != b), None)
        where = at if at is not None else min(len(raw), len(canonical_form))
        raise NotCanonical(
            f"the event's bytes are not its RFC 8785 canonical form (first difference at byte {where}; "
            f"{len(raw)} bytes sent, {len(canonical_form)} canonical)",
            offset=where,
        )


def _safe(text: str) -> str:
    """``text`` without lone surrogates (they cannot be written as UTF-8)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def decode(raw: bytes, *, catalog: Catalog = CATALOG, registry: RegionRegistry | None = None) -> DecodedEvent:
    """Parse and validate wire bytes; raise a :class:`~xregion.errors.ContractError`."""
    return decode_dict(parse_json(raw), catalog=catalog, registry=registry)


def decode_stored(
    raw: bytes, *, catalog: Catalog = CATALOG, registry: RegionRegistry | None = None
) -> tuple[DecodedEvent, bool]:
    """:func:`decode` of stored bytes, and whether they are the event's RFC 8785 canonical form
    (:func:`parse_stored`): then ``raw`` is what its hash and its signature cover."""
    value, canonical_bytes = parse_stored(raw)
    return decode_dict(value, catalog=catalog, registry=registry), canonical_bytes


def check_parties(envelope: Envelope, registry: RegionRegistry) -> None:
    """Sender, its agency and the addressee must be configured parties."""
    registry.check_sender(envelope.sender, envelope.agency)
    if envelope.addressee != BROADCAST and envelope.addressee not in registry:
        raise UnknownParty(f"unknown addressee {envelope.addressee!r}", party=envelope.addressee)
    if envelope.sender == COORDINATOR and envelope.addressee == COORDINATOR:
        raise UnknownParty("the coordinator cannot address itself", party=COORDINATOR)


def check_subject(subject: Subject, event: DecodedEvent) -> None:
    """The subject a message arrived on must say what its envelope says."""
    expected = event.subject
    if str(subject) != expected:
        raise SubjectMismatch(
            f"message on {subject} carries an event that belongs on {expected}",
            subject=str(subject),
            expected=expected,
        )


def step_of(event: DecodedEvent) -> Step:
    """The lifecycle's view of a decoded event."""
    env = event.envelope
    return Step(env.event_type, env.sender, env.addressee, env.subject, env.id, env.data, env.handling_codes)
