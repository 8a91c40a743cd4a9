"""The v1 rule on ``null`` (issue 15 item 5), in the schemas and on the producing side.

* Producers leave a member without a value out: :func:`xregion.compose.compose` never writes
  ``null``, and :func:`xregion.compose.seal` — the last step before every xregion signature —
  refuses an event holding one (``schema_invalid``, naming each member).
* Receivers read ``null`` as absent. The schemas keep accepting it (v1 always did: an event
  that was valid stays valid), and say so: each optional member's ``null`` alternative is
  ``deprecated``, with the rule as its description, in ``envelope.json``, every data schema
  and the AsyncAPI and OpenAPI documents.

The receiving path (a signed event with ``null`` attributes over a real nats-server) is
``tests/hostile/test_null_members.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from tests.support import OriginChain, dev_signers, example_event, example_payload
from xregion.codec import decode_dict
from xregion.compose import compose, null_members, seal
from xregion.contracts.catalog import CATALOG
from xregion.contracts.common import NULL_IS_ABSENT
from xregion.envelope import GENESIS_HASH
from xregion.errors import SchemaInvalid

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
OPTIONAL_ATTRIBUTES = ("causationid", "handlingnote", "answerby", "signature")


def null_branches(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every ``{"type": "null", ...}`` alternative of an ``anyOf`` in a schema document."""
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        for branch in node.get("anyOf") or ():
            if isinstance(branch, dict) and branch.get("type") == "null":
                found.append((path, branch))
        for key, child in node.items():
            found += null_branches(child, f"{path}/{key}")
    elif isinstance(node, list):
        for i, child in enumerate(node):
            found += null_branches(child, f"{path}/{i}")
    return found


def test_compose_leaves_absent_attributes_and_fields_out() -> None:
    payload = example_payload("lead.submitted")
    payload["suspects"][0]["contact"] = None
    event = compose(
        CATALOG.get("lead", "submitted"),
        payload,
        sender="BJ",
        agency="amr",
        to="TJ",
        referral_id="BJ-01a21164-abe0-7a12-9b34-56789abcdef0",
        causation_id=None,
        handling_note=None,
        answer_by=None,
    )
    assert not {"causationid", "handlingnote", "answerby"} & set(event)
    assert "contact" not in event["data"]["suspects"][0]
    assert null_members(event) == []


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        (lambda e: e.update(causationid=None), ["causationid"]),
        (lambda e: e.update(answerby=None, handlingnote=None), ["answerby", "handlingnote"]),
        (lambda e: e["data"]["suspects"][0].update(contact=None), ["data.suspects.0.contact"]),
        (lambda e: e["data"].update(location=None), ["data.location"]),
    ],
)
def test_no_xregion_producer_signs_a_null(edit: Any, where: list[str]) -> None:
    event = example_event("lead.submitted")
    edit(event)
    with pytest.raises(SchemaInvalid) as info:
        seal(event, seq=1, prevhash=GENESIS_HASH, linkseq=1, linkprev=GENESIS_HASH, signer=dev_signers()["BJ"])
    assert info.value.code == "schema_invalid"
    assert [e["field"] for e in info.value.details["errors"]] == where
    assert "leave" in str(info.value)


def test_a_received_null_is_read_as_absent() -> None:
    signer = dev_signers()["BJ"]
    plain = OriginChain(signer).seal(example_event("lead.submitted")).wire
    unsigned = {k: v for k, v in plain.items() if k != "signature"}
    nulled = signer.sign({**unsigned, "causationid": None, "handlingnote": None, "answerby": None})
    decoded = decode_dict(nulled)
    assert (decoded.envelope.causationid, decoded.envelope.handlingnote, decoded.envelope.answerby) == (None,) * 3
    assert decoded.wire == nulled  # kept as received: the signature is verified over it


def test_committed_schemas_accept_null_and_say_it_is_never_written() -> None:
    envelope = json.loads((SCHEMAS / "v1" / "envelope.json").read_text(encoding="utf-8"))
    for name in OPTIONAL_ATTRIBUTES:
        assert name not in envelope["required"]
        [(_, branch)] = null_branches(envelope["properties"][name])
        assert branch == {"type": "null", "deprecated": True, "description": NULL_IS_ABSENT}, name
    wire = OriginChain(dev_signers()["BJ"]).seal(example_event("lead.submitted")).wire
    validator = Draft202012Validator(envelope, format_checker=FormatChecker())
    assert validator.is_valid({**wire, "causationid": None, "handlingnote": None, "answerby": None})
    assert not validator.is_valid({**wire, "correlationid": None})  # required members are never null

    wire_documents = [SCHEMAS / "v1" / "envelope.json", *sorted((SCHEMAS / "v1" / "data").glob("*.json"))]
    for path in [*wire_documents, SCHEMAS / "asyncapi.json"]:  # the wire contract: every null alternative
        branches = null_branches(json.loads(path.read_text(encoding="utf-8")))
        assert all(b == {"type": "null", "deprecated": True, "description": NULL_IS_ABSENT} for _, b in branches), path
    # the gateway's OpenAPI carries the contract's data models (and HTTP members of its own)
    openapi = null_branches(json.loads((SCHEMAS / "openapi.json").read_text(encoding="utf-8")))
    assert sum(1 for _, b in openapi if b.get("description") == NULL_IS_ABSENT) > 20
