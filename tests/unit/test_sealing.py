"""Sealed personal data (xregion.sealing): personal-data fields encrypted to the addressee.

Round trips, the wrong recipient, tampering (the signature covers the boxes), broadcasts,
rotation overlaps, and which fields of the contract are sealed at all.
"""

from __future__ import annotations

import base64
import copy
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support import (
    EXAMPLE_TIME,
    OriginChain,
    dev_roster,
    dev_signers,
    example_event,
    example_payload,
    roster_key,
)
from xregion.codec import decode, decode_dict, encode
from xregion.config import load_config
from xregion.contracts.catalog import CATALOG
from xregion.contracts.common import Sealed
from xregion.errors import BadSignature, ConfigError, SchemaInvalid, UnsealFailed
from xregion.examples import PAYLOADS
from xregion.logs import DEFAULT_SENSITIVE, REDACTED, Redactor, redacted_keys
from xregion.sealing import (
    FieldSealing,
    OpeningKey,
    open_data,
    paths_in_schema,
    plain_fields,
    recipients,
    refers_to_sealed,
    seal_data,
    sensitive_paths,
    sensitive_values,
)
from xregion.signing import KeyRoster, Signer

SIGNERS = dev_signers()
ROSTER = dev_roster(SIGNERS)
REGISTRY = load_config().regions
SUBMITTED = CATALOG.get("lead", "submitted").model
UPSERTED = CATALOG.get("share", "blacklist_upserted").model


def sealing_of(party: str, roster: KeyRoster = ROSTER, *keys: Signer) -> FieldSealing:
    return FieldSealing(lambda: roster, lambda: list(keys) or [SIGNERS[party]])


def personal_values(data: Any) -> list[str]:
    """Every personal-data value in an example payload (the demo's personal data)."""
    return [v for _, v in sensitive_values(SUBMITTED, data)]


def test_contract_marks_exactly_the_personal_data() -> None:
    found = {t.name: sensitive_paths(t.model) for t in CATALOG if sensitive_paths(t.model)}
    entity = [("name",), ("address",), ("contact",)]
    assert found == {
        "lead.submitted": tuple(("suspects", "*", *p) for p in entity),
        "assist.requested": tuple(("suspects", "*", *p) for p in entity),
        "recognition.published": tuple(("parties", "*", *p) for p in entity),
        "share.blacklist_upserted": (("entry", "name"),),
    }
    # The log redactor knows every one of these names (and the containers holding them).
    leaves = {p[-1] for paths in found.values() for p in paths} | {p[0] for paths in found.values() for p in paths}
    assert leaves <= DEFAULT_SENSITIVE


def test_personal_data_is_marked_by_standard_json_schema_only() -> None:
    """The marker is the ``$ref`` to ``Sealed`` (issue 15 item 6): no custom keyword, which a
    validator in strict mode (Ajv) refuses; the same fields are found in the committed
    schemas, the AsyncAPI and the OpenAPI documents as in the models."""
    schemas = Path(__file__).resolve().parents[2] / "schemas"
    for event_type in CATALOG.versions(1):
        text = (schemas / "v1" / "data" / f"{event_type.name}.json").read_text(encoding="utf-8")
        assert '"x-' not in text, event_type.name
        assert sorted(paths_in_schema(json.loads(text))) == sorted(sensitive_paths(event_type.model)), event_type.name
    for name in ("asyncapi.json", "openapi.json"):
        assert '"x-sensitive"' not in (schemas / name).read_text(encoding="utf-8"), name
    entity = json.loads((schemas / "v1" / "data" / "lead.submitted.json").read_text(encoding="utf-8"))["$defs"]
    assert refers_to_sealed(entity["Entity"]["properties"]["name"]["anyOf"][1])
    assert "Personal data" in entity["Entity"]["properties"]["name"]["description"]


def test_paths_follow_refs_alternatives_and_items_and_refuse_recursion() -> None:
    schema = {
        "$defs": {
            "Sealed": {"type": "object"},
            "Node": {
                "type": "object",
                "properties": {
                    "secret": {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/Sealed"}]},
                    "plain": {"type": "string", "x-sensitive": True},  # a custom keyword marks nothing
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                },
            },
        },
        "properties": {"root": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]}},
    }
    with pytest.raises(ValueError, match="recursive"):  # unbounded paths: refused, not skipped
        paths_in_schema(schema)
    del schema["$defs"]["Node"]["properties"]["children"]
    schema["properties"]["list"] = {"type": "array", "items": {"$ref": "#/$defs/Node"}}
    assert paths_in_schema(schema) == (("root", "secret"), ("list", "*", "secret"))


def test_round_trip_to_the_addressee() -> None:
    plain = example_payload("lead.submitted")
    sealed = sealing_of("BJ").seal(SUBMITTED, plain, ["TJ"], EXAMPLE_TIME)
    assert sealed != plain
    wire = json.dumps(sealed, ensure_ascii=False)
    for value in personal_values(plain):
        assert value not in wire
    assert plain_fields(SUBMITTED, sealed) == []
    name = sealed["suspects"][0]["name"]
    assert set(name) == {"sealed"} and set(name["sealed"]) == {SIGNERS["TJ"].key_id}
    Sealed.model_validate(name)
    # Everything else is untouched, and the input was not mutated.
    assert sealed["suspects"][0]["uscc"] == plain["suspects"][0]["uscc"]
    assert sealed["title"] == plain["title"]
    assert plain == PAYLOADS["lead.submitted"]
    assert sealing_of("TJ").open(SUBMITTED, sealed) == plain
    assert SUBMITTED.model_validate(sealed).suspects[0].name == Sealed.model_validate(name)


def test_every_box_is_fresh() -> None:
    """Sealed boxes are randomised: equal values do not show as equal ciphertexts."""
    plain = example_payload("lead.submitted")
    first = sealing_of("BJ").seal(SUBMITTED, plain, ["TJ"], EXAMPLE_TIME)
    second = sealing_of("BJ").seal(SUBMITTED, plain, ["TJ"], EXAMPLE_TIME)
    assert first["suspects"][0]["name"] != second["suspects"][0]["name"]


@pytest.mark.parametrize("other", ["HE", "COORD", "BJ"])
def test_wrong_recipient_cannot_open(other: str) -> None:
    sealed = sealing_of("BJ").seal(SUBMITTED, example_payload("lead.submitted"), ["TJ"], EXAMPLE_TIME)
    with pytest.raises(UnsealFailed) as info:
        sealing_of(other).open(SUBMITTED, sealed)
    assert info.value.code == "unseal_failed"
    assert info.value.details["field"] == "data.suspects.0.name"
    assert info.value.details["recipients"] == [SIGNERS["TJ"].key_id]


def test_a_box_relabelled_for_another_key_does_not_open() -> None:
    sealed = sealing_of("BJ").seal(SUBMITTED, example_payload("lead.submitted"), ["TJ"], EXAMPLE_TIME)
    box = sealed["suspects"][0]["name"]["sealed"].pop(SIGNERS["TJ"].key_id)
    sealed["suspects"][0]["name"]["sealed"][SIGNERS["HE"].key_id] = box
    with pytest.raises(UnsealFailed) as info:
        sealing_of("HE").open(SUBMITTED, sealed)
    assert info.value.details["keyid"] == SIGNERS["HE"].key_id


def test_broadcast_has_one_box_per_receiving_region_and_none_for_the_coordinator() -> None:
    plain = example_payload("share.blacklist_upserted")
    sealed = sealing_of("HE").seal(UPSERTED, plain, REGISTRY.others("HE"), EXAMPLE_TIME)
    boxes = sealed["entry"]["name"]["sealed"]
    assert set(boxes) == {SIGNERS["BJ"].key_id, SIGNERS["TJ"].key_id}
    for region in ("BJ", "TJ"):
        assert sealing_of(region).open(UPSERTED, sealed) == plain
    for outsider in ("COORD", "HE"):  # the coordinator, and the sender itself
        with pytest.raises(UnsealFailed):
            sealing_of(outsider).open(UPSERTED, sealed)


def test_rotation_overlap_seals_to_both_keys_and_skips_ended_or_revoked_ones() -> None:
    new_tj = Signer.generate("TJ")
    roster = dev_roster(SIGNERS)
    roster.add(roster_key(new_tj, valid_from=EXAMPLE_TIME - timedelta(days=1)))
    both = recipients(roster, ["TJ"], EXAMPLE_TIME)
    assert {r.key_id for r in both} == {SIGNERS["TJ"].key_id, new_tj.key_id}
    sealed = seal_data(SUBMITTED, example_payload("lead.submitted"), both)
    # Either private key opens it: TJ's adapter before and after it switched keys.
    assert open_data(SUBMITTED, sealed, [OpeningKey.of(new_tj)]) == PAYLOADS["lead.submitted"]
    assert open_data(SUBMITTED, sealed, [OpeningKey.of(SIGNERS["TJ"])]) == PAYLOADS["lead.submitted"]
    roster.revoke(SIGNERS["TJ"].key_id, EXAMPLE_TIME - timedelta(hours=1))
    assert [r.key_id for r in recipients(roster, ["TJ"], EXAMPLE_TIME)] == [new_tj.key_id]
    roster.revoke(new_tj.key_id, EXAMPLE_TIME)
    with pytest.raises(ConfigError) as info:
        recipients(roster, ["TJ"], EXAMPLE_TIME)
    assert "TJ" in info.value.message


def test_already_sealed_input_is_refused_and_plain_input_opens_as_is() -> None:
    sealed = sealing_of("BJ").seal(SUBMITTED, example_payload("lead.submitted"), ["TJ"], EXAMPLE_TIME)
    with pytest.raises(SchemaInvalid) as info:
        sealing_of("BJ").seal(SUBMITTED, sealed, ["TJ"], EXAMPLE_TIME)
    assert info.value.details["errors"][0]["field"] == "data.suspects.0.name"
    plain = example_payload("lead.submitted")
    assert sealing_of("HE").open(SUBMITTED, plain) == plain  # nothing sealed: nothing to open
    assert sorted(plain_fields(SUBMITTED, plain)) == [
        "data.suspects.0.address",
        "data.suspects.0.name",
        "data.suspects.1.contact",
        "data.suspects.1.name",
    ]
    # Payloads without personal data need no recipient at all (no roster lookup).
    alert = example_payload("share.alert")
    empty = FieldSealing(lambda: KeyRoster(), list)
    assert empty.seal(CATALOG.get("share", "alert").model, alert, ["BJ"], EXAMPLE_TIME) == alert


PLAIN_EVENT = example_event("lead.submitted", sender="BJ", to="TJ")


def _signed_sealed_event() -> dict[str, Any]:
    event = dict(PLAIN_EVENT, data=sealing_of("BJ").seal(SUBMITTED, PLAIN_EVENT["data"], ["TJ"], EXAMPLE_TIME))
    return OriginChain(SIGNERS["BJ"], registry=REGISTRY).seal(event).wire


def test_the_signature_covers_the_ciphertext_and_anyone_can_verify_it() -> None:
    wire = _signed_sealed_event()
    # The coordinator's view: verifies and decodes without any key to open the boxes.
    assert ROSTER.verify(wire, "BJ", EXAMPLE_TIME).key_id == SIGNERS["BJ"].key_id
    decoded = decode(encode(wire), registry=REGISTRY)
    assert isinstance(decoded.payload.suspects[0].name, Sealed)  # type: ignore[attr-defined]
    raw = encode(wire).decode("utf-8")
    for value in personal_values(PAYLOADS["lead.submitted"]):
        assert value not in raw
    # The addressee opens it; the opened view keeps the wire exactly as signed.
    opened = decoded.opened(sealing_of("TJ").open(SUBMITTED, decoded.envelope.data), REGISTRY)
    assert opened.payload.suspects[1].name == "张某"  # type: ignore[attr-defined]
    assert opened.envelope.data == PLAIN_EVENT["data"]
    assert opened.wire is decoded.wire


def test_tampered_ciphertext_fails_the_signature() -> None:
    wire = _signed_sealed_event()
    tampered = copy.deepcopy(wire)
    boxes = tampered["data"]["suspects"][0]["name"]["sealed"]
    (key_id,) = boxes
    raw = bytearray(base64.b64decode(boxes[key_id]))
    raw[-1] ^= 0x01
    boxes[key_id] = base64.b64encode(bytes(raw)).decode("ascii")
    decode_dict(tampered, registry=REGISTRY)  # still well-formed ...
    with pytest.raises(BadSignature):  # ... but no longer what BJ signed
        ROSTER.verify(tampered, "BJ", EXAMPLE_TIME)
    # And even unsigned, a flipped byte does not open (Poly1305 authenticates the box).
    with pytest.raises(UnsealFailed):
        sealing_of("TJ").open(SUBMITTED, tampered["data"])


def test_a_swapped_box_fails_the_signature() -> None:
    """Moving a valid box to another field (name ↔ address) is tampering too."""
    wire = _signed_sealed_event()
    swapped = copy.deepcopy(wire)
    suspect = swapped["data"]["suspects"][0]
    suspect["name"], suspect["address"] = suspect["address"], suspect["name"]
    with pytest.raises(BadSignature):
        ROSTER.verify(swapped, "BJ", EXAMPLE_TIME)


def test_redactor_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XREGION_LOG_REDACT", "officer, phone ,")
    keys = redacted_keys()
    assert {"officer", "phone"} <= keys and keys >= DEFAULT_SENSITIVE
    assert redacted_keys("") == DEFAULT_SENSITIVE
    redact = Redactor(keys)
    line = redact(None, "info", {"event": "x", "phone": "138", "nested": [{"name": "张某", "ok": 1}]})
    assert line == {"event": "x", "phone": REDACTED, "nested": [{"name": REDACTED, "ok": 1}]}
