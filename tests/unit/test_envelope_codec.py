"""The v1 wire contract: envelope, codec, USCC, subjects, regions/config and ids.

Every event of every family round-trips, the CloudEvents SDK reads every event the way we
do, and every kind of bad input is refused with its stable error code.
"""

from __future__ import annotations

import copy
import json
import re
import textwrap
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from cloudevents.core.formats.json import JSONFormat

from tests.support import OriginChain, dev_roster, dev_signers, example_event, example_payload
from xregion import subjects
from xregion.codec import MAX_EVENT_BYTES, DecodedEvent, check_subject, decode, encode, step_of
from xregion.compose import compose
from xregion.config import CONFIG_ENV, load_config, parse_config
from xregion.contracts.catalog import CATALOG, EventType
from xregion.errors import (
    BadSignature,
    ConfigError,
    ContractError,
    MalformedJson,
    OversizedMessage,
    SchemaInvalid,
    SubjectError,
    SubjectMismatch,
    UnknownEventType,
    UnknownParty,
    UnsupportedVersion,
)
from xregion.examples import PAYLOADS
from xregion.ids import EVENT_ID, REFERRAL_ID, new_event_id, new_referral_id
from xregion.regions import BROADCAST, RegionRegistry
from xregion.signing import Signer
from xregion.uscc import ALPHABET, InvalidUSCC, check_character, validate_uscc

EVENT_TYPES: list[EventType] = list(CATALOG)
EVENT_NAMES = [t.name for t in EVENT_TYPES]
EXTENSIONS = (
    "addressee",
    "correlationid",
    "causationid",
    "originseq",
    "prevhash",
    "linkseq",
    "linkprev",
    "handling",
    "handlingnote",
    "answerby",
    "keyid",
    "signature",
)
TIME = datetime(2026, 11, 25, 6, 30, tzinfo=UTC)

SIGNERS = dev_signers()


def sealed(name: str, sender: str = "BJ", **kw: Any) -> DecodedEvent:
    """An example event of ``name``, signed as the first event of ``sender``'s chain."""
    kw.setdefault("time", TIME)
    return OriginChain(SIGNERS[sender]).seal(example_event(name, sender=sender, **kw))


def full(name: str) -> DecodedEvent:
    """An example event carrying every optional extension attribute."""
    return sealed(
        name,
        causation_id=new_event_id(),
        handling="H1,H3",
        handling_note="仅限本案使用，未经移送方同意不得转送第三方",
        answer_by=date(2026, 12, 5),
    )


def strings(value: Any) -> Iterator[str]:
    """Every string (keys included) inside a JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def raw_of(wire: dict[str, Any]) -> bytes:
    """Wire bytes of a (possibly invalid) event dict, without canonicalising it."""
    return json.dumps(wire, ensure_ascii=False).encode("utf-8")


def expect(exc_type: type[ContractError], raw: bytes, **kw: Any) -> ContractError:
    with pytest.raises(exc_type) as info:
        decode(raw, **kw)
    return info.value


def fields(exc: ContractError) -> list[str]:
    return [e["field"] for e in exc.details.get("errors", [])]


# --- round trip ----------------------------------------------------------------------------


def test_catalog_covers_four_families_and_every_example() -> None:
    assert {t.family for t in EVENT_TYPES} == {"lead", "assist", "recognition", "share", "escalation"}
    assert set(EVENT_NAMES) == set(PAYLOADS)
    assert all(t.version == 1 for t in EVENT_TYPES)


@pytest.mark.parametrize("name", EVENT_NAMES)
def test_every_event_round_trips(name: str) -> None:
    event = full(name)
    raw = encode(event.wire)
    again = decode(raw)
    assert again.wire == event.wire
    assert again.envelope == event.envelope
    assert again.event_type is event.event_type is CATALOG.by_ce_type(f"cn.jjj.xregion.{name}.v1")
    assert type(again.payload) is event.event_type.model
    assert again.payload == event.payload
    assert again.payload.model_dump(mode="json", exclude_none=True) == PAYLOADS[name] | {
        k: v for k, v in again.wire["data"].items() if k not in PAYLOADS[name]
    }
    assert again.envelope.to_dict() == event.wire
    assert again.subject == event.subject
    assert encode(again.wire) == raw  # canonical: re-encoding is byte-identical
    assert step_of(again).event_type == name


@pytest.mark.parametrize("name", EVENT_NAMES)
def test_chinese_text_survives_byte_for_byte(name: str) -> None:
    raw = encode(full(name).wire)
    assert b"\\u" not in raw, "wire bytes must be UTF-8, not \\u-escaped"
    raw.decode("utf-8")  # strict
    assert "仅限本案使用，未经移送方同意不得转送第三方".encode() in raw
    for text in strings(PAYLOADS[name]):
        assert json.dumps(text, ensure_ascii=False).encode("utf-8") in raw
        assert text in set(strings(decode(raw).wire["data"]))


def test_specific_chinese_strings_survive() -> None:
    event = full("lead.submitted")
    raw = encode(event.wire)
    decoded = decode(raw)
    payload: Any = decoded.payload
    assert payload.title == "“某某”牌运动鞋假冒注册商标线索"
    assert payload.suspects[0].name == "天津市某某商贸有限公司"
    assert payload.suspects[1].name == "张某"
    assert payload.origin_case_number == "京市监线〔2026〕0341号"
    assert payload.evidence[0].chain_of_custody[0].action == "采集并计算摘要"
    assert decoded.envelope.handlingnote == "仅限本案使用，未经移送方同意不得转送第三方"
    for text in ("“某某”牌运动鞋", "〔2026〕0341号", "张某", "138****0000"):
        assert text.encode("utf-8") in raw
    # a full-width digit and an ideographic space are kept, not normalised
    data = example_payload("lead.submitted")
    data["location"] = "天津市西青区某物流园３号库\u3000东侧"
    with_odd = decode(encode(sealed("lead.submitted", payload=data).wire))
    assert with_odd.wire["data"]["location"] == "天津市西青区某物流园３号库\u3000东侧"


def test_escaped_input_decodes_to_the_same_text() -> None:
    """Any valid JSON is accepted on input, \\u escapes included; the text is the same."""
    event = full("recognition.published")
    escaped = json.dumps(event.wire, ensure_ascii=True).encode("ascii")
    assert b"\\u" in escaped
    decoded = decode(escaped)
    assert decoded.wire == event.wire
    assert encode(decoded.wire) == encode(event.wire)


def test_optional_attributes_are_omitted_not_null() -> None:
    event = sealed("lead.submitted")
    assert None not in event.wire.values()
    for absent in ("causationid", "handlingnote", "answerby"):
        assert absent not in event.wire
        assert f'"{absent}"'.encode() not in encode(event.wire)


# --- CloudEvents SDK -----------------------------------------------------------------------


def _expected_attributes(event: DecodedEvent) -> dict[str, Any]:
    wire = event.wire
    return {k: v for k, v in wire.items() if k != "data"}


@pytest.mark.parametrize("name", EVENT_NAMES)
def test_cloudevents_sdk_reads_every_event(name: str) -> None:
    """cloudevents 2.x: ``cloudevents.core.formats.json.JSONFormat`` (the 1.x
    ``cloudevents.http.from_json`` lives on as ``cloudevents.v1.http.from_json``)."""
    event = full(name)
    raw = encode(event.wire)
    ce = JSONFormat().read(None, raw)
    env = event.envelope
    assert ce.get_specversion() == "1.0"
    assert ce.get_id() == env.id
    assert ce.get_source() == env.source
    assert ce.get_type() == env.type
    assert ce.get_subject() == env.subject
    assert ce.get_time() == env.time
    assert ce.get_dataschema() == env.dataschema
    assert ce.get_datacontenttype() == "application/json"
    assert ce.get_data() == event.wire["data"]
    for ext in EXTENSIONS:
        assert ce.get_extension(ext) == event.wire[ext], ext
    assert ce.get_extension("originseq") == 1
    attributes = dict(ce.get_attributes())
    attributes["time"] = event.wire["time"]
    assert attributes == _expected_attributes(event)


@pytest.mark.parametrize("name", EVENT_NAMES)
def test_cloudevents_v1_http_from_json_reads_every_event(name: str) -> None:
    from cloudevents.v1.http import from_json

    event = full(name)
    ce = from_json(encode(event.wire))
    for attr in ("specversion", "id", "source", "type", "subject", "time", *EXTENSIONS):
        assert ce[attr] == event.wire[attr], attr
    assert ce.data == event.wire["data"]


# --- refused input -------------------------------------------------------------------------


def test_oversized_message() -> None:
    raw = encode(sealed("lead.submitted").wire)
    exact = raw + b" " * (MAX_EVENT_BYTES - len(raw))
    assert len(exact) == MAX_EVENT_BYTES
    decode(exact)  # the limit itself is allowed
    exc = expect(OversizedMessage, exact + b" ")
    assert exc.code == "oversized"
    assert exc.details == {"size": MAX_EVENT_BYTES + 1, "limit": MAX_EVENT_BYTES}
    assert expect(OversizedMessage, b"x" * (2 * MAX_EVENT_BYTES)).code == "oversized"


@pytest.mark.parametrize("raw", [b"{not json", b"", b'{"id": "1",}', b'{"a": "\xff\xfe"}', b"\xef\xbb"])
def test_malformed_json(raw: bytes) -> None:
    assert expect(MalformedJson, raw).code == "malformed_json"


@pytest.mark.parametrize("raw", [b"[]", b"[{}]", b'"event"', b"42", b"null", b"true"])
def test_not_an_object(raw: bytes) -> None:
    exc = expect(SchemaInvalid, raw)
    assert exc.code == "schema_invalid"
    assert "object" in exc.message


def test_event_wrapped_in_an_array_is_schema_invalid() -> None:
    raw = b"[" + encode(sealed("lead.submitted").wire) + b"]"
    assert expect(SchemaInvalid, raw).code == "schema_invalid"


@pytest.mark.parametrize(
    "attribute",
    [
        "id",
        "source",
        "type",
        "time",
        "subject",
        "specversion",
        "data",
        "addressee",
        "originseq",
        "prevhash",
        "linkseq",
        "linkprev",
        "keyid",
        "handling",
        "correlationid",
        "dataschema",
    ],
)
def test_missing_attribute_is_named(attribute: str) -> None:
    wire = dict(sealed("lead.submitted").wire)
    del wire[attribute]
    exc = expect(SchemaInvalid, raw_of(wire))
    assert exc.code == "schema_invalid"
    assert attribute in fields(exc)
    assert attribute in exc.message


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("id", "not-a-uuid"),
        ("id", "01937a2c-5b1e-4c3d-8e4f-5a6b7c8d9e0f"),  # a UUIDv4
        ("source", "urn:xregion:bj:amr"),
        ("specversion", "0.3"),
        ("time", "2026-11-25T06:30:00"),  # no offset
        ("originseq", 0),
        ("originseq", "1"),  # a JSON integer, strictly: the chain reads the wire value
        ("originseq", 1.0),
        ("originseq", True),
        ("prevhash", "sha256:XYZ"),
        ("linkseq", 0),
        ("linkseq", "1"),
        ("linkseq", 1.0),
        ("linkseq", True),
        ("linkprev", "sha256:XYZ"),
        ("linkprev", None),
        ("handling", "H4"),
        ("handling", "H0,H0"),
        ("addressee", "BJ"),  # the sender itself
        ("datacontenttype", "text/plain"),
        ("dataschema", "urn:xregion:schema:v1:lead.withdrawn"),
    ],
)
def test_bad_envelope_attribute(attribute: str, value: Any) -> None:
    wire = dict(sealed("lead.submitted").wire)
    wire[attribute] = value
    exc = expect(SchemaInvalid, raw_of(wire))
    assert exc.code == "schema_invalid"


def test_unknown_envelope_attribute_is_kept_and_signed() -> None:
    """Tolerant reader: an extension added later in v1 decodes, stays in the wire dict (and
    the envelope's dump) and is covered by the signature like any other attribute."""
    event = sealed("lead.submitted")
    signed = SIGNERS["BJ"].sign({**event.wire, "traceparent": "00-0af7651916cd43dd-01"})
    decoded = decode(encode(signed))
    assert decoded.wire["traceparent"] == "00-0af7651916cd43dd-01"
    assert decoded.wire == signed
    assert decoded.envelope.to_dict() == signed
    assert encode(decoded.wire) == encode(signed)
    r = dev_roster(SIGNERS)
    r.verify(decoded.wire, "BJ", decoded.envelope.time)
    for forged in (
        {**signed, "traceparent": "00-0af7651916cd43dd-02"},  # altered
        {k: v for k, v in signed.items() if k != "traceparent"},  # stripped
        {**event.wire, "traceparent": "00-0af7651916cd43dd-01"},  # added after signing
    ):
        decode(raw_of(forged))  # structurally fine: only the signature can tell
        with pytest.raises(BadSignature):
            r.verify(forged, "BJ", decoded.envelope.time)


def test_h3_needs_a_handling_note() -> None:
    wire = dict(sealed("lead.submitted").wire)
    wire["handling"] = "H0,H3"
    assert expect(SchemaInvalid, raw_of(wire)).code == "schema_invalid"
    wire["handlingnote"] = "仅供协查使用"
    decode(raw_of(wire))


def test_unknown_event_type() -> None:
    wire = dict(sealed("lead.submitted").wire)
    wire["type"] = "cn.jjj.xregion.lead.teleported.v1"
    exc = expect(UnknownEventType, raw_of(wire))
    assert exc.code == "unknown_event_type"
    assert "cn.jjj.xregion.lead.teleported.v1" in exc.message
    assert exc.details["type"] == "cn.jjj.xregion.lead.teleported.v1"


def test_unsupported_version() -> None:
    wire = dict(sealed("lead.submitted").wire)
    wire["type"] = "cn.jjj.xregion.lead.submitted.v9"
    exc = expect(UnsupportedVersion, raw_of(wire))
    assert exc.code == "unknown_event_version"
    assert "v9" in exc.message


def test_bad_uscc_inside_data_names_the_field_path() -> None:
    wire = json.loads(encode(sealed("lead.submitted").wire))
    good = wire["data"]["suspects"][0]["uscc"]
    wrong = next(c for c in ALPHABET if c != good[-1])
    wire["data"]["suspects"][0]["uscc"] = good[:-1] + wrong
    exc = expect(SchemaInvalid, raw_of(wire))
    assert exc.code == "schema_invalid"
    assert "data.suspects.0.uscc" in fields(exc)
    assert "data.suspects.0.uscc" in exc.message
    assert "check character" in exc.message


def test_enterprise_without_uscc_is_refused() -> None:
    wire = json.loads(encode(sealed("lead.submitted").wire))
    del wire["data"]["suspects"][0]["uscc"]
    exc = expect(SchemaInvalid, raw_of(wire))
    assert any(f.startswith("data.suspects.0") for f in fields(exc))


@pytest.mark.parametrize("reason", ["", "   ", "\u3000\u3000", "\n\t"])
def test_rejection_with_blank_reason(reason: str) -> None:
    wire = json.loads(encode(sealed("lead.rejected").wire))
    wire["data"]["reason"] = reason
    exc = expect(SchemaInvalid, raw_of(wire))
    assert exc.code == "schema_invalid"
    assert "data.reason" in fields(exc)


def test_unknown_data_field_is_ignored_on_decode_but_signed() -> None:
    """Tolerant reader: fields added later in v1 (top level or nested) do not make a
    received event invalid; the payload model ignores them, the wire dict keeps them and
    the signature covers them."""
    event = sealed("lead.submitted")
    data = copy.deepcopy(event.wire["data"])
    data["remark"] = "多余字段"
    data["suspects"][0]["nickname"] = "某某"
    signed = SIGNERS["BJ"].sign({**event.wire, "data": data})
    decoded = decode(encode(signed))
    assert decoded.payload == event.payload
    assert "remark" not in decoded.payload.model_dump()
    assert not hasattr(decoded.payload, "remark")
    assert "nickname" not in decoded.payload.model_dump()["suspects"][0]
    assert decoded.wire["data"]["remark"] == "多余字段"
    assert decoded.wire["data"]["suspects"][0]["nickname"] == "某某"
    assert decoded.envelope.data == data
    r = dev_roster(SIGNERS)
    r.verify(decoded.wire, "BJ", decoded.envelope.time)
    forged = copy.deepcopy(signed)
    forged["data"]["remark"] = "篡改"
    decode(raw_of(forged))
    with pytest.raises(BadSignature):
        r.verify(forged, "BJ", decoded.envelope.time)


def test_unknown_data_field_is_refused_when_composing() -> None:
    """Strict writer: composing from a dict refuses unknown fields, naming them."""
    data = example_payload("lead.rejected") | {"remark": "多余字段"}
    with pytest.raises(SchemaInvalid) as info:
        example_event("lead.rejected", payload=data)
    exc = info.value
    assert exc.code == "schema_invalid"
    assert fields(exc) == ["data"]
    assert "remark" in exc.message and "unknown field" in exc.message
    assert "remark" in exc.details["errors"][0]["error"]

    data = example_payload("lead.submitted")
    data["suspects"][0]["nickname"] = "某某"
    with pytest.raises(SchemaInvalid) as info:
        example_event("lead.submitted", payload=data)
    assert fields(info.value) == ["data.suspects.0"]
    assert "nickname" in info.value.message

    # the same data as a payload model: unknown fields are dropped, nothing is sent
    event_type = CATALOG.get("lead", "rejected")
    model = event_type.model.model_validate(example_payload("lead.rejected") | {"remark": "x"})
    event = example_event("lead.rejected", payload=model)
    assert "remark" not in event["data"]


def test_forwarded_to_unknown_region_with_registry() -> None:
    registry = load_config().regions
    data = example_payload("lead.forwarded") | {"to_region": "SD"}
    event = sealed("lead.forwarded", sender="TJ", to="BJ", payload=data)  # no registry: fine
    exc = expect(SchemaInvalid, encode(event.wire), registry=registry)
    assert exc.code == "schema_invalid"
    assert "data.to_region" in fields(exc)
    assert "SD" in exc.message
    decode(encode(sealed("lead.forwarded", sender="TJ", to="BJ").wire), registry=registry)


def test_unknown_agency_with_registry() -> None:
    registry = load_config().regions
    event = sealed("lead.submitted", agency="police")
    decode(encode(event.wire))  # structurally valid
    exc = expect(UnknownParty, encode(event.wire), registry=registry)
    assert exc.code == "unknown_party"
    assert "police" in exc.message
    assert exc.details == {"party": "BJ", "agency": "police"}


def test_unknown_sender_and_addressee_with_registry() -> None:
    registry = load_config().regions
    wire = dict(sealed("lead.submitted").wire)
    wire["addressee"] = "SD"
    assert expect(UnknownParty, raw_of(wire), registry=registry).details["party"] == "SD"
    wire = dict(sealed("lead.submitted").wire)
    wire["source"] = "urn:xregion:SD:amr"
    assert expect(UnknownParty, raw_of(wire), registry=registry).details["party"] == "SD"


def test_broadcast_and_coordinator_pass_the_registry() -> None:
    registry = load_config().regions
    share = sealed("share.alert")
    assert share.envelope.addressee == BROADCAST
    decode(encode(share.wire), registry=registry)


def test_subject_mismatch() -> None:
    event = sealed("lead.submitted")
    check_subject(subjects.parse("xregion.v1.lead.submitted.BJ.TJ"), event)
    for wrong in (
        "xregion.v1.lead.submitted.BJ.HE",
        "xregion.v1.lead.submitted.HE.TJ",
        "xregion.v1.lead.withdrawn.BJ.TJ",
        "xregion.v1.assist.submitted.BJ.TJ",
        "xregion.v2.lead.submitted.BJ.TJ",
        "xregion.v1.lead.submitted.BJ.ALL",
    ):
        with pytest.raises(SubjectMismatch) as info:
            check_subject(subjects.parse(wrong), event)
        assert info.value.code == "subject_mismatch"
        expected = "xregion.v1.lead.submitted.BJ.TJ"
        assert info.value.details == {"subject": wrong, "expected": expected}


# --- USCC ----------------------------------------------------------------------------------

REAL_USCC = ["914403001922038216", "91350100M000100Y43", "9144030071526726XG", "91330100716105852F"]


@pytest.mark.parametrize("code", [*REAL_USCC, "91120111MA05K8XY06", "92130102MA0F3T5D2J"])
def test_valid_uscc(code: str) -> None:
    assert validate_uscc(code) == code
    assert check_character(code[:17]) == code[17]


@pytest.mark.parametrize("code", REAL_USCC)
def test_every_other_check_character_is_refused(code: str) -> None:
    for wrong in ALPHABET:
        if wrong != code[-1]:
            with pytest.raises(InvalidUSCC, match="check character"):
                validate_uscc(code[:-1] + wrong)


@pytest.mark.parametrize("code", ["", "91440300192203821", "9144030019220382166", "9" * 40])
def test_uscc_wrong_length(code: str) -> None:
    with pytest.raises(InvalidUSCC, match="18 characters"):
        validate_uscc(code)


@pytest.mark.parametrize("letter", [*"IOZSV", "a", "m", "-", " ", "中"])
def test_uscc_letters_outside_the_alphabet(letter: str) -> None:
    code = "91350100M000100Y43"
    for position in (0, 9, 17):
        with pytest.raises(InvalidUSCC, match="alphabet"):
            validate_uscc(code[:position] + letter + code[position + 1 :])


@pytest.mark.parametrize("position", range(2, 8))
def test_uscc_division_must_be_digits(position: int) -> None:
    code = "914403001922038216"
    bad = code[:position] + "A" + code[position + 1 : 17]
    bad += check_character(bad)  # a correct check character does not save it
    with pytest.raises(InvalidUSCC, match="administrative division"):
        validate_uscc(bad)


def test_uscc_alphabet() -> None:
    assert len(ALPHABET) == 31
    assert not set("IOZSV") & set(ALPHABET)


# --- subjects ------------------------------------------------------------------------------


def _nats_match(pattern: str, subject: str) -> bool:
    """NATS wildcard matching: ``*`` one token, ``>`` one or more trailing tokens."""
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)


@pytest.mark.parametrize("name", EVENT_NAMES)
def test_subject_build_parse_round_trip(name: str) -> None:
    family, event = name.split(".")
    for sender, to in (("BJ", "TJ"), ("HE", "ALL"), ("COORD", "BJ"), ("TJ", "COORD")):
        text = subjects.build(family, event, sender, to)
        assert text == f"xregion.v1.{family}.{event}.{sender}.{to}"
        parsed = subjects.parse(text)
        assert (parsed.family, parsed.event) == (family, event)
        assert (parsed.sender, parsed.to) == (sender, to)
        assert parsed.version == "v1" and parsed.event_type == name
        assert str(parsed) == text
        assert parsed.is_broadcast == (to == "ALL")
    assert subjects.parse(f"xregion.v2.{family}.{event}.BJ.TJ").version == "v2"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "xregion",
        "xregion.v1.lead.submitted.BJ",
        "xregion.v1.lead.submitted.BJ.TJ.extra",
        "nats.v1.lead.submitted.BJ.TJ",
        "XREGION.v1.lead.submitted.BJ.TJ",
        "xregion.v0.lead.submitted.BJ.TJ",
        "xregion.1.lead.submitted.BJ.TJ",
        "xregion.V1.lead.submitted.BJ.TJ",
        "xregion.v1.Lead.submitted.BJ.TJ",
        "xregion.v1.lead.submitted-now.BJ.TJ",
        "xregion.v1.lead..BJ.TJ",
        "xregion.v1.lead.submitted.bj.TJ",
        "xregion.v1.lead.submitted.B.TJ",
        "xregion.v1.lead.submitted.BEIJINGXX.TJ",
        "xregion.v1.lead.submitted.BJ.T1",
        "xregion.v1.lead.submitted.ALL.TJ",
        "xregion.v1.lead.submitted.BJ.BJ",
        "xregion.v1.lead.submitted.*.TJ",
        "xregion.v1.lead.submitted.BJ.>",
        "xregion.v1.*.submitted.BJ.TJ",
        "xregion.v1.lead.submitted.BJ.TJ ",
        " xregion.v1.lead.submitted.BJ.TJ",
        "xregion.v1.lead.提交.BJ.TJ",
    ],
)
def test_malformed_subjects_are_refused(text: str) -> None:
    with pytest.raises(SubjectError) as info:
        subjects.parse(text)
    assert info.value.code == "bad_subject"


@pytest.mark.parametrize(
    "args",
    [
        ("lead", "submitted", "BJ", "BJ"),
        ("lead", "submitted", "ALL", "TJ"),
        ("lead", "Submitted", "BJ", "TJ"),
        ("lead", "submitted", "BJ", "TJ", "1"),
    ],
)
def test_build_refuses_bad_tokens(args: tuple[str, ...]) -> None:
    with pytest.raises(SubjectError):
        subjects.build(*args)


def test_publish_and_subscribe_patterns() -> None:
    assert subjects.publish_patterns("BJ") == ["xregion.v1.*.*.BJ.*"]
    assert subjects.subscribe_patterns("TJ") == ["xregion.v1.*.*.*.TJ", "xregion.v1.*.*.*.ALL"]
    assert subjects.publish_patterns("HE", "v2") == ["xregion.v2.*.*.HE.*"]
    assert subjects.stream_subjects() == "xregion.v1.>"
    for bad in ("bj", "B", "*", ">", "BJ.TJ"):
        with pytest.raises(SubjectError):
            subjects.publish_patterns(bad)
        with pytest.raises(SubjectError):
            subjects.subscribe_patterns(bad)


def test_patterns_grant_exactly_the_right_subjects() -> None:
    direct = sealed("lead.submitted").subject  # BJ → TJ
    broadcast = sealed("share.alert", sender="HE").subject  # HE → ALL

    def may_publish(party: str, subject: str) -> bool:
        return any(_nats_match(p, subject) for p in subjects.publish_patterns(party))

    def may_read(party: str, subject: str) -> bool:
        return any(_nats_match(p, subject) for p in subjects.subscribe_patterns(party))

    assert may_publish("BJ", direct) and not may_publish("TJ", direct)
    assert may_read("TJ", direct) and not may_read("HE", direct) and not may_read("BJ", direct)
    assert may_publish("HE", broadcast) and not may_publish("BJ", broadcast)
    assert all(may_read(r, broadcast) for r in ("BJ", "TJ", "HE"))
    assert _nats_match(subjects.stream_subjects(), direct)


# --- regions and configuration -------------------------------------------------------------

FOUR_REGIONS = """
[regions.BJ]
name_zh = "北京市"
name_en = "Beijing"
iso = "CN-BJ"
[regions.BJ.agencies]
amr = "北京市市场监督管理局"
ipo = "北京市知识产权局"

[regions.TJ]
name_zh = "天津市"
name_en = "Tianjin"
iso = "CN-TJ"
[regions.TJ.agencies]
amr = "天津市市场监督管理委员会"

[regions.HE]
name_zh = "河北省"
name_en = "Hebei"
iso = "CN-HE"
[regions.HE.agencies]
amr = "河北省市场监督管理局"

[regions.SD]
name_zh = "山东省"
name_en = "Shandong"
iso = "CN-SD"
[regions.SD.agencies]
amr = "山东省市场监督管理局"
ipo = "山东省知识产权局"

[deadlines]
calendar = "calendar"
"lead.submitted" = 10
"""


def _write(tmp_path: Path, text: str, name: str = "bus.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_default_configuration() -> None:
    config = load_config()
    assert config.regions.codes == ("BJ", "TJ", "HE")
    assert config.regions.get("BJ").name_zh == "北京市"
    assert "amr" in config.regions.get("HE").agencies
    assert config.regions.others("TJ") == ("BJ", "HE")
    assert config.deadlines.period("lead.submitted") == 10
    assert config.deadlines.calendar.name == "working"
    # Wed 25 Nov + 10 working days: 26, 27, 30 Nov, 1, 2, 3, 4, 7, 8, 9 Dec.
    assert config.deadlines.default_answer_by("lead.submitted", date(2026, 11, 25)) == date(2026, 12, 9)


def test_a_fourth_region_is_a_configuration_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(_write(tmp_path, FOUR_REGIONS)))
    four = load_config().regions
    default = load_config(Path(__file__).parents[2] / "xregion" / "config" / "bus.toml").regions
    assert four.codes == ("BJ", "TJ", "HE", "SD")
    assert four.get("SD").name_zh == "山东省"
    assert four.others("BJ") == ("TJ", "HE", "SD")

    event = sealed("lead.submitted", to="SD")
    assert event.subject == "xregion.v1.lead.submitted.BJ.SD"
    subjects.parse(event.subject)
    decoded = decode(encode(event.wire), registry=four)
    assert decoded.envelope.addressee == "SD"
    with pytest.raises(UnknownParty):
        decode(encode(event.wire), registry=default)

    from_sd = OriginChain(Signer.generate("SD"), registry=four).seal(
        example_event(
            "lead.forwarded", sender="SD", to="BJ", payload=example_payload("lead.forwarded") | {"to_region": "HE"}
        )
    )
    decode(encode(from_sd.wire), registry=four)
    with pytest.raises(UnknownParty):
        decode(encode(from_sd.wire), registry=default)

    forwarded_to_sd = sealed(
        "lead.forwarded",
        sender="TJ",
        to="BJ",
        payload=example_payload("lead.forwarded") | {"to_region": "SD"},
    )
    decode(encode(forwarded_to_sd.wire), registry=four)
    with pytest.raises(SchemaInvalid):
        decode(encode(forwarded_to_sd.wire), registry=default)


def test_config_path_argument_wins_over_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "missing.toml"))
    assert load_config(_write(tmp_path, FOUR_REGIONS)).regions.codes[-1] == "SD"
    with pytest.raises(ConfigError, match=r"missing\.toml"):
        load_config()


def _region(code: str, agencies: str = 'amr = "市场监督管理局"', **fields_: str) -> str:
    entries = {"name_zh": "某省", "name_en": "Some", "iso": f"CN-{code}"} | fields_
    body = "\n".join(f'{k} = "{v}"' for k, v in entries.items() if v != "-")
    return f"[regions.{code}]\n{body}\n[regions.{code}.agencies]\n{agencies}\n"


BAD_CONFIGS: list[tuple[str, str, str]] = [
    ("no regions", '[deadlines]\n"lead.submitted" = 10\n', "no [regions] table"),
    ("missing name", _region("BJ", name_zh="-") + _region("TJ"), "region BJ lacks 'name_zh'"),
    (
        "missing agencies",
        '[regions.BJ]\nname_zh = "x"\nname_en = "x"\niso = "x"\n' + _region("TJ"),
        "region BJ lacks 'agencies'",
    ),
    ("lower-case code", _region("sd") + _region("TJ"), "'sd' must be 2-8 upper-case letters"),
    ("reserved code", _region("ALL") + _region("TJ"), "'ALL' is reserved"),
    ("coordinator code", _region("COORD") + _region("TJ"), "'COORD' is reserved"),
    ("no agencies", _region("BJ", agencies="") + _region("TJ"), "region BJ lists no agencies"),
    ("bad agency", _region("BJ", agencies='Police = "公安"') + _region("TJ"), "agency code 'Police' of region BJ"),
    ("one region", _region("BJ"), "at least two regions"),
    (
        "bad deadline",
        _region("BJ") + _region("TJ") + '[deadlines]\n"lead.submitted" = 0\n',
        "deadline 'lead.submitted'",
    ),
    (
        "string deadline",
        _region("BJ") + _region("TJ") + '[deadlines]\n"lead.submitted" = "10"\n',
        "deadline 'lead.submitted'",
    ),
    (
        "agencies not a table",
        _region("TJ") + '[regions.BJ]\nname_zh = "x"\nname_en = "x"\niso = "x"\nagencies = "amr"\n',
        "region BJ: agencies must be a table",
    ),
    ("region not a table", 'regions.BJ = "北京市"\n' + _region("TJ"), "region BJ must be a table"),
    ("regions not a table", 'regions = ["BJ", "TJ"]\n', "no [regions] table"),
    ("deadlines not a table", "deadlines = 3\n" + _region("BJ") + _region("TJ"), "[deadlines] must be a table"),
    ("not toml", "[regions.BJ\nname_zh = ", "bus.toml"),
    ("duplicate table", _region("BJ") + _region("BJ") + _region("TJ"), "bus.toml"),
]


@pytest.mark.parametrize(("case", "text", "message"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_configuration(case: str, text: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(_write(tmp_path, text)))
    with pytest.raises(ConfigError) as info:
        load_config()
    assert info.value.code == "config_invalid"
    assert message in info.value.message


def test_missing_configuration_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match=r"nope\.toml"):
        load_config()


def test_parse_config_in_memory() -> None:
    config = parse_config(
        {
            "regions": {
                "BJ": {"name_zh": "北京市", "name_en": "Beijing", "iso": "CN-BJ", "agencies": {"amr": ""}},
                "SD": {"name_zh": "山东省", "name_en": "Shandong", "iso": "CN-SD", "agencies": {"ipo": ""}},
            }
        }
    )
    assert isinstance(config.regions, RegionRegistry)
    assert config.regions.check_addressee("ALL") == "ALL"
    assert config.regions.check_region("SD") == "SD"
    with pytest.raises(UnknownParty):
        config.regions.check_region("TJ")
    config.regions.check_sender("COORD", "anything")


# --- ids -----------------------------------------------------------------------------------


def test_event_ids_are_unique_and_time_ordered() -> None:
    ids = [new_event_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert sorted(ids) == ids
    assert all(EVENT_ID.match(i) for i in ids)
    pattern = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
    assert all(pattern.match(i) for i in ids[:100])


def test_referral_ids_name_their_owner() -> None:
    ids = [new_referral_id("BJ") for _ in range(1_000)]
    assert len(set(ids)) == len(ids)
    assert sorted(ids) == ids
    assert all(REFERRAL_ID.match(i) and i.startswith("BJ-") for i in ids)
    event = compose(
        CATALOG.get("lead", "submitted"),
        PAYLOADS["lead.submitted"],
        sender="BJ",
        agency="amr",
        to="TJ",
        referral_id=ids[0],
    )
    assert EVENT_ID.match(event["id"]) and event["subject"] == ids[0]
