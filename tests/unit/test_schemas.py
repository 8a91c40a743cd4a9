"""The committed JSON Schemas (``schemas/v1/``): drift check, BACKWARD compatibility, validity.

* ``xregion schemas check`` passes on the committed schemas and fails, naming the field, after
  a breaking edit to a model;
* every rule of :mod:`xregion.schema_compat`, in the breaking and the widening direction, on
  small hand-written schemas;
* the schemas are usable on their own (as a Java or JavaScript team would): every example
  validates with ``jsonschema``, a broken one does not, and a real signed event validates
  against ``envelope.json`` plus the data schema its ``dataschema`` names.
"""

from __future__ import annotations

import copy
import json
import shutil
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from pydantic import Field, create_model
from referencing import Registry, Resource
from typer.testing import CliRunner

from xregion import schema_export
from xregion.cli import app
from xregion.cli import schemas as schemas_cli
from xregion.contracts import lead
from xregion.contracts.catalog import CATALOG, Catalog, EventType
from xregion.contracts.common import Contract
from xregion.examples import PAYLOADS
from xregion.schema_compat import Incompatibility, breaking_changes, compare_documents
from xregion.signing import Signer

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
"""The committed ``schemas/`` directory of the repository."""

V1 = SCHEMAS / "v1"
DATA_FILES = sorted(p.name for p in (V1 / "data").glob("*.json"))

runner = CliRunner()


def run(*args: str) -> Any:
    return runner.invoke(app, ["schemas", *args])


def committed_copy(tmp_path: Path) -> Path:
    """A copy of the committed ``schemas/`` to edit; returns its root."""
    root = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, root)
    return root


def edit(root: Path, name: str, change: Any) -> None:
    """Apply ``change(document)`` to ``root/v1/<name>`` in place."""
    path = root / "v1" / name
    document = json.loads(path.read_text(encoding="utf-8"))
    change(document)
    path.write_text(schema_export.render(document), encoding="utf-8")


def kinds(found: list[Incompatibility]) -> set[tuple[str, str]]:
    return {(item.field, item.kind) for item in found}


# --- the committed schemas ---------------------------------------------------------------


def test_committed_schemas_are_up_to_date() -> None:
    result = run("check", "--root", str(SCHEMAS))
    assert result.exit_code == 0, result.output
    expected = 2 + len(list(CATALOG.versions(1)))  # envelope, index, one per event
    assert f"v1 is up to date ({expected} files)" in result.output


def test_committed_schemas_cover_every_event_and_nothing_else() -> None:
    assert sorted(f"{t.name}.json" for t in CATALOG.versions(1)) == DATA_FILES
    index = json.loads((V1 / "index.json").read_text(encoding="utf-8"))
    for entry, event_type in zip(index["events"], CATALOG.versions(1), strict=True):
        assert entry == {
            "name": event_type.name,
            "type": event_type.ce_type,
            "dataschema": event_type.dataschema,
            "file": f"data/{event_type.name}.json",
        }


def test_committed_schemas_are_stable_text() -> None:
    text = (V1 / "data" / "lead.submitted.json").read_text(encoding="utf-8")
    assert "假冒" in text and "\\u" not in text  # Chinese stays readable
    assert text.endswith("}\n")
    assert schema_export.diff(SCHEMAS) == []
    assert compare_documents(schema_export.load(SCHEMAS), schema_export.generate()) == []


def test_export_writes_a_fresh_tree_and_removes_stale_files(tmp_path: Path) -> None:
    root = tmp_path / "schemas"
    result = run("export", "--root", str(root))
    assert result.exit_code == 0, result.output
    assert "created" in result.output
    for path in V1.rglob("*.json"):
        assert (root / path.relative_to(SCHEMAS)).read_bytes() == path.read_bytes()

    stale = root / "v1" / "data" / "lead.gone.json"
    stale.write_text("{}\n", encoding="utf-8")
    assert "extra data/lead.gone.json" in schema_export.diff(root)
    result = run("export", "--root", str(root), "--force")  # dropping an event is breaking
    assert result.exit_code == 0, result.output
    assert "removed" in result.output and not stale.exists()
    assert run("check", "--root", str(root)).exit_code == 0


# --- a breaking edit to a model ------------------------------------------------------------


class NarrowGround(StrEnum):
    """lead.RejectionGround without ``duplicate``."""

    NO_JURISDICTION = "no_jurisdiction"
    INSUFFICIENT_EVIDENCE = "insufficient_evidence"
    NO_INFRINGEMENT = "no_infringement"
    OTHER = "other"


class AcceptedWithPriority(lead.LeadAccepted):
    priority: int = Field(ge=1)  # a new required field


def _without(model: type[Contract], name: str) -> type[Contract]:
    fields: dict[str, Any] = {n: (f.annotation, f) for n, f in model.model_fields.items() if n != name}
    return create_model(model.__name__, __base__=Contract, **fields)


def _with_field(model: type[Contract], name: str, annotation: Any) -> type[Contract]:
    fields: dict[str, Any] = {n: (f.annotation, f) for n, f in model.model_fields.items()}
    fields[name] = (annotation, model.model_fields[name])
    return create_model(model.__name__, __base__=Contract, **fields)


BROKEN = {
    "lead.submitted": _without(lead.Submitted, "title"),
    "lead.accepted": AcceptedWithPriority,
    "lead.rejected": _with_field(lead.Rejected, "ground", NarrowGround),
}
EXPECTED_BREAKS = {
    ("data/lead.submitted.json", "title", "removed"),
    ("data/lead.accepted.json", "priority", "newly_required"),
    ("data/lead.rejected.json", "ground", "enum_value_removed"),
}


@pytest.fixture
def broken_catalog() -> Catalog:
    """The v1 catalog with three models changed in ways that break v1 consumers."""
    catalog = Catalog()
    for t in CATALOG:
        catalog.register(EventType(t.family, t.event, BROKEN.get(t.name, t.model), t.version))
    return catalog


def test_broken_models_are_named_field_by_field(tmp_path: Path, broken_catalog: Catalog) -> None:
    schema_export.write(tmp_path, broken_catalog)
    found = compare_documents(schema_export.load(SCHEMAS), schema_export.load(tmp_path))
    assert {(i.file, i.field, i.kind) for i in found} == EXPECTED_BREAKS
    messages = {str(i) for i in found}
    assert "lead.submitted: field 'title' was removed" in messages
    assert "lead.accepted: new required field 'priority'" in messages
    assert "lead.rejected: field 'ground': enum value \"duplicate\" was removed" in messages


def test_check_fails_after_breaking_model_edit(
    tmp_path: Path, broken_catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = committed_copy(tmp_path)
    monkeypatch.setattr(schemas_cli, "CATALOG", broken_catalog)

    result = run("check", "--root", str(root))
    assert result.exit_code == 1
    assert "different data/lead.submitted.json" in result.output
    assert "lead.submitted: field 'title' was removed" in result.output
    assert "new required field 'priority'" in result.output
    assert 'enum value "duplicate" was removed' in result.output
    assert "break v1 consumers" in result.output

    before = (root / "v1" / "data" / "lead.submitted.json").read_bytes()
    refused = run("export", "--root", str(root))
    assert refused.exit_code == 1
    assert "refusing to overwrite" in refused.output and "'title'" in refused.output
    assert (root / "v1" / "data" / "lead.submitted.json").read_bytes() == before

    forced = run("export", "--root", str(root), "--force")
    assert forced.exit_code == 0, forced.output
    assert "updated" in forced.output and "lead.submitted.json" in forced.output
    assert run("check", "--root", str(root)).exit_code == 0


def test_check_names_a_field_the_models_dropped(tmp_path: Path) -> None:
    """Committed schema has a property the current model lacks: the model removed a field."""
    root = committed_copy(tmp_path)

    def add_legacy(document: dict[str, Any]) -> None:
        document["$defs"]["Entity"]["properties"]["legacy_code"] = {"type": "string"}

    edit(root, "data/lead.submitted.json", add_legacy)
    result = run("check", "--root", str(root))
    assert result.exit_code == 1
    assert "different data/lead.submitted.json" in result.output
    assert "BREAKING [removed] lead.submitted: field 'suspects[].legacy_code' was removed" in (result.output)


def test_check_fails_on_compatible_drift_and_says_to_export(tmp_path: Path) -> None:
    """Committed schema lacks an optional property the model has: an addition, not a break."""
    root = committed_copy(tmp_path)

    def drop_note(document: dict[str, Any]) -> None:
        del document["properties"]["note"]

    edit(root, "data/lead.accepted.json", drop_note)
    edit(root, "envelope.json", lambda d: d.update(description="edited by hand"))
    result = run("check", "--root", str(root))
    assert result.exit_code == 1
    assert "different data/lead.accepted.json" in result.output
    assert "different envelope.json" in result.output
    assert "BREAKING" not in result.output
    assert "run `xregion schemas export`" in result.output


def test_check_reports_a_removed_event_and_unreadable_files(tmp_path: Path) -> None:
    root = committed_copy(tmp_path)
    shutil.copy(root / "v1" / "data" / "share.alert.json", root / "v1" / "data" / "share.gone.json")
    result = run("check", "--root", str(root))
    assert result.exit_code == 1
    assert "extra data/share.gone.json" in result.output
    assert "event type 'share.gone' was removed" in result.output

    (root / "v1" / "data" / "share.gone.json").write_text("{not json", encoding="utf-8")
    result = run("check", "--root", str(root))
    assert result.exit_code == 1
    assert "share.gone.json is not valid JSON" in result.output
    assert run("export", "--root", str(root)).exit_code == 1
    result = run("export", "--root", str(root), "--force")
    assert result.exit_code == 0, result.output
    assert "removed" in result.output
    assert run("check", "--root", str(root)).exit_code == 0


def test_check_on_missing_directory_says_to_export(tmp_path: Path) -> None:
    result = run("check", "--root", str(tmp_path / "nowhere"))
    assert result.exit_code == 1
    assert "missing envelope.json" in result.output
    assert "run `xregion schemas export`" in result.output


# --- the schemas work on their own (jsonschema, as another language would use them) -----

FORMATS = FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    """RFC 3339 date-time with a required offset (jsonschema checks it only with extras)."""
    if not isinstance(value, str):
        return True
    return datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None


@FORMATS.checks("date", raises=ValueError)
def _date(value: object) -> bool:
    return not isinstance(value, str) or bool(date.fromisoformat(value))


def load_schema(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((V1 / name).read_text(encoding="utf-8"))
    return document


def validator(schema: dict[str, Any], registry: Registry | None = None) -> Draft202012Validator:
    Draft202012Validator.check_schema(schema)
    if registry is None:
        return Draft202012Validator(schema, format_checker=FORMATS)
    return Draft202012Validator(schema, format_checker=FORMATS, registry=registry)


def _break(example: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """``example`` without its first required field or, if none is required, with its first
    property of a wrong type (a list: no v1 field without required siblings is one).

    An unknown property does not break anything: v1 schemas are open (tolerant readers).
    """
    broken = copy.deepcopy(example)
    if schema.get("required"):
        del broken[schema["required"][0]]
    else:
        broken[sorted(schema["properties"])[0]] = ["wrong type"]
    return broken


@pytest.mark.parametrize("name", DATA_FILES)
def test_examples_validate_against_their_data_schema(name: str) -> None:
    schema = load_schema(f"data/{name}")
    event = name.removesuffix(".json")
    assert schema["$id"] == f"urn:xregion:schema:v1:{event}"
    assert schema["examples"] == [PAYLOADS[event]]
    check = validator(schema)
    for example in schema["examples"]:
        assert list(check.iter_errors(example)) == []
        assert not check.is_valid(_break(example, schema))
        # a field added later in v1 is tolerated, at the top level as by older consumers
        assert check.is_valid({**example, "added_in_v1_1": {"any": ["value", 1]}})


def _closed_objects(node: Any, path: str = "") -> list[str]:
    """Paths of every ``additionalProperties: false`` inside a schema."""
    found: list[str] = []
    if isinstance(node, dict):
        if node.get("additionalProperties") is False:
            found.append(path or "(root)")
        for key, value in node.items():
            found += _closed_objects(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _closed_objects(value, f"{path}/{i}")
    return found


@pytest.mark.parametrize("name", ["envelope.json", *(f"data/{n}" for n in DATA_FILES)])
def test_v1_schemas_are_open_to_additions(name: str) -> None:
    """Tolerant readers: no v1 schema forbids unknown properties, nested objects included."""
    assert _closed_objects(load_schema(name)) == []


def test_schemas_reject_what_the_models_reject() -> None:
    check = validator(load_schema("data/lead.submitted.json"))
    example = copy.deepcopy(PAYLOADS["lead.submitted"])
    assert check.is_valid(example)
    for path, value in [
        (("ip_right",), "perfume"),  # not in the enum
        (("suspects",), []),  # minItems 1
        (("suspects", 0, "kind"), "company"),
        (("evidence", 0, "sha256"), "ABC"),  # pattern
        (("evidence", 0, "collected_at"), "2026-11-20T10:15:00"),  # no offset
        (("title",), "x" * 501),  # maxLength
        (("origin_case_number",), 12),  # type
    ]:
        broken = copy.deepcopy(example)
        target: Any = broken
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        assert not check.is_valid(broken), path
    assert check.is_valid({**example, "origin_case_number": None})  # Optional is nullable


def test_a_signed_event_validates_against_envelope_and_its_dataschema(
    signers: dict[str, Signer],
) -> None:
    from tests.support import sealed_example

    # Every data schema registered by its $id, as the envelope's dataschema names it.
    registry: Registry = Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema))
        for schema in (load_schema(f"data/{name}") for name in DATA_FILES)
    )
    envelope = validator(load_schema("envelope.json"))
    for name in ("lead.submitted", "share.blacklist_upserted", "recognition.received"):
        wire = sealed_example(name, signers["BJ"]).wire
        assert list(envelope.iter_errors(wire)) == []
        data = validator({"$ref": wire["dataschema"]}, registry)
        assert list(data.iter_errors(wire["data"])) == []
        assert not envelope.is_valid({**wire, "specversion": "0.3"})
        assert not envelope.is_valid({k: v for k, v in wire.items() if k != "keyid"})
        assert not envelope.is_valid({k: v for k, v in wire.items() if k != "linkseq"})
        assert envelope.is_valid({**wire, "traceparent": "00-0af7651916cd43dd-01"})  # extension


# --- schema_compat rules on hand-written schemas -------------------------------------------


def obj(properties: dict[str, Any], required: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    """A closed object schema (``additionalProperties: false``), for the compatibility rules."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
        **extra,
    }


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}], "default": None}


STR = {"type": "string"}
INT = {"type": "integer"}


def breaks(old: Any, new: Any) -> set[tuple[str, str]]:
    return kinds(breaking_changes(old, new))


def test_identical_and_annotation_only_changes_are_compatible() -> None:
    old = obj({"a": {**STR, "title": "A"}}, ("a",), title="T", description="old")
    new = obj(
        {"a": {**STR, "title": "AA", "description": "d", "examples": ["x"], "x-sensitive": True}},
        ("a",),
        title="T2",
        description="new",
        examples=[{"a": "x"}],
    )
    assert breaks(old, old) == set()
    assert breaks(old, new) == set()


def test_removed_property_is_breaking_added_optional_is_not() -> None:
    old = obj({"title": STR, "note": STR}, ("title",))
    assert breaks(old, obj({"note": STR})) == {("title", "removed")}
    assert breaks(old, obj({"title": STR, "note": STR, "extra": STR}, ("title",))) == set()
    # also on an open object (no additionalProperties: false)
    open_old = {"type": "object", "properties": {"a": STR}}
    assert breaks(open_old, {"type": "object", "properties": {"a": STR, "b": INT}}) == set()


def test_rename_is_a_removal() -> None:
    found = breaking_changes(
        obj({"title": STR}, ("title",)), obj({"headline": STR}, ("headline",)), file="data/x.y.json"
    )
    assert kinds(found) == {("title", "removed"), ("headline", "newly_required")}
    assert "x.y: field 'title' was removed" in {str(i) for i in found}


def test_newly_required_fields() -> None:
    old = obj({"a": STR, "b": STR}, ("a",))
    assert breaks(old, obj({"a": STR, "b": STR}, ("a", "b"))) == {("b", "newly_required")}
    assert breaks(old, obj({"a": STR, "b": STR, "c": INT}, ("a", "c"))) == {("c", "newly_required")}
    assert breaks(obj({"a": STR, "b": STR}, ("a", "b")), old) == set()  # required → optional


def test_type_narrowing_and_widening() -> None:
    assert breaks(STR, INT) == {("", "type_narrowed")}
    assert breaks({"type": ["string", "integer"]}, STR) == {("", "type_narrowed")}
    assert breaks({"type": "number"}, INT) == {("", "type_narrowed")}
    assert breaks(INT, {"type": "number"}) == set()  # integer ⊂ number
    assert breaks(STR, {"type": ["string", "integer"]}) == set()
    assert breaks({}, STR) == {("", "type_narrowed")}  # anything → string
    assert breaks(STR, {}) == set()
    assert breaks(True, STR) == {("", "type_narrowed")}
    assert breaks(STR, False) == {("", "rejected")}


def test_nullable_becoming_required_value() -> None:
    old = obj({"note": nullable(STR)})
    assert breaks(old, obj({"note": STR})) == {("note", "nullable_removed")}
    assert breaks(obj({"note": STR}), old) == set()
    assert breaks({"type": ["string", "null"]}, STR) == {("", "nullable_removed")}
    assert breaks({"type": ["string", "null"]}, nullable(STR)) == set()
    assert breaks(nullable(STR), {"type": ["string", "null"]}) == set()


def test_constraints_inside_an_optional_are_compared() -> None:
    old = obj({"note": nullable({**STR, "maxLength": 100})})
    assert breaks(old, obj({"note": nullable({**STR, "maxLength": 50})})) == {("note", "max_lowered")}
    assert breaks(old, obj({"note": nullable({**STR, "maxLength": 500})})) == set()


def test_enum_values() -> None:
    old = {"type": "string", "enum": ["a", "b", "c"]}
    found = breaking_changes(old, {"type": "string", "enum": ["a", "c"]})
    assert kinds(found) == {("", "enum_value_removed")}
    assert '"b"' in found[0].message
    assert breaks(old, {"type": "string", "enum": ["a", "b", "c", "d"]}) == set()
    assert breaks(old, STR) == set()  # restriction lifted
    assert breaks(STR, old) == {("", "enum_restricted")}
    assert breaks(old, {"type": "string", "const": "a"}) == {("", "enum_value_removed")}


def test_enum_narrowed_through_refs_and_renamed_defs() -> None:
    old = {
        "$defs": {"Ground": {"type": "string", "enum": ["x", "y"]}},
        **obj({"ground": {"$ref": "#/$defs/Ground"}}, ("ground",)),
    }
    renamed = {
        "$defs": {"Reason": {"type": "string", "enum": ["x", "y"]}},
        **obj({"ground": {"$ref": "#/$defs/Reason"}}, ("ground",)),
    }
    narrowed = {
        "$defs": {"Ground": {"type": "string", "enum": ["x"]}},
        **obj({"ground": {"$ref": "#/$defs/Ground"}}, ("ground",)),
    }
    inlined = obj({"ground": {"type": "string", "enum": ["x", "y"]}}, ("ground",))
    assert breaks(old, renamed) == set()
    assert breaks(old, inlined) == set()
    assert breaks(old, narrowed) == {("ground", "enum_value_removed")}


def test_const() -> None:
    old = {"type": "string", "const": "1.0"}
    assert breaks(old, {"type": "string", "const": "2.0"}) == {("", "const_changed")}
    assert breaks(old, {"type": "string", "enum": ["1.0", "1.1"]}) == set()
    assert breaks(old, STR) == set()
    assert breaks(STR, old) == {("", "const_added")}


def test_pattern_and_format() -> None:
    old = {"type": "string", "pattern": "^[A-Z]{2}$"}
    assert breaks(old, {"type": "string", "pattern": "^[A-Z]{2,8}$"}) == {("", "pattern_changed")}
    assert breaks(STR, old) == {("", "pattern_changed")}  # added
    assert breaks(old, STR) == set()  # removed
    assert breaks({"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}) == {
        ("", "format_changed")
    }
    assert breaks({"type": "string", "format": "date"}, STR) == set()


def test_string_and_array_length_limits() -> None:
    old = {"type": "string", "minLength": 1, "maxLength": 500}
    assert breaks(old, {"type": "string", "minLength": 2, "maxLength": 500}) == {("", "min_raised")}
    assert breaks(old, {"type": "string", "minLength": 1, "maxLength": 100}) == {("", "max_lowered")}
    assert breaks(old, {"type": "string", "maxLength": 2000}) == set()
    assert breaks(STR, {"type": "string", "maxLength": 10}) == {("", "max_lowered")}
    arr = {"type": "array", "items": STR, "minItems": 1}
    assert breaks(arr, {**arr, "minItems": 2}) == {("", "min_raised")}
    assert breaks(arr, {**arr, "maxItems": 5}) == {("", "max_lowered")}
    assert breaks(arr, {**arr, "minItems": 0}) == set()


def test_numeric_bounds() -> None:
    old = {"type": "integer", "minimum": 1}
    assert breaks(old, {"type": "integer", "minimum": 2}) == {("", "min_raised")}
    assert breaks(old, {"type": "integer", "minimum": 0}) == set()
    assert breaks(old, {"type": "integer", "exclusiveMinimum": 0}) == set()  # same for integers
    assert breaks(old, {"type": "integer", "exclusiveMinimum": 1}) == {("", "min_raised")}
    assert breaks({"type": "number", "minimum": 1}, {"type": "number", "exclusiveMinimum": 1}) == {("", "min_raised")}
    assert breaks({"type": "number", "maximum": 10}, {"type": "number", "exclusiveMaximum": 10}) == {
        ("", "max_lowered")
    }
    assert breaks({"type": "number", "maximum": 10}, {"type": "number", "maximum": 11}) == set()
    assert breaks({"type": "number"}, {"type": "number", "maximum": 11}) == {("", "max_lowered")}
    assert breaks({"type": "number", "multipleOf": 2}, {"type": "number", "multipleOf": 1}) == set()
    assert breaks({"type": "number", "multipleOf": 1}, {"type": "number", "multipleOf": 2}) == {
        ("", "multiple_of_changed")
    }


def test_additional_properties() -> None:
    open_ = {"type": "object", "properties": {"a": STR}}
    closed = {**open_, "additionalProperties": False}
    assert breaks(open_, closed) == {("", "additional_properties_closed")}
    assert breaks(closed, open_) == set()
    strings = {"type": "object", "additionalProperties": STR}
    ints = {"type": "object", "additionalProperties": INT}
    assert breaks(strings, ints) == {("*", "type_narrowed")}
    assert breaks(open_, {**open_, "additionalProperties": STR}) == {("*", "type_narrowed")}
    assert breaks({**open_, "additionalProperties": STR}, open_) == set()


def test_nested_paths_through_arrays_and_refs() -> None:
    entity = obj({"name": STR, "uscc": nullable({**STR, "minLength": 18})}, ("name",))
    old = {
        "$defs": {"Entity": entity},
        **obj({"suspects": {"type": "array", "items": {"$ref": "#/$defs/Entity"}}}),
    }
    new = copy.deepcopy(old)
    del new["$defs"]["Entity"]["properties"]["uscc"]
    assert breaks(old, new) == {("suspects[].uscc", "removed")}
    assert kinds(breaking_changes(old, new, path="data")) == {("data.suspects[].uscc", "removed")}
    new = copy.deepcopy(old)
    new["properties"]["suspects"]["items"] = STR
    assert breaks(old, new) == {("suspects[]", "type_narrowed")}
    tags = obj({"tags": {"type": "array", "items": STR}})
    assert breaks(tags, obj({"tags": {"type": "array", "items": {**STR, "pattern": "^x"}}})) == {
        ("tags[]", "pattern_changed")
    }
    assert breaks(obj({"tags": {"type": "array", "items": STR}}), obj({"tags": {"type": "array"}})) == set()


def test_anyof_branches() -> None:
    two = {"anyOf": [STR, INT]}
    assert breaks(two, STR) == {("", "type_narrowed")}
    assert breaks(STR, two) == set()
    assert breaks(two, {"anyOf": [INT, STR, {"type": "boolean"}]}) == set()

    a = obj({"a": STR}, ("a",), title="A")
    b = obj({"b": INT}, ("b",), title="B")
    old = {"$defs": {"A": a, "B": b}, "anyOf": [{"$ref": "#/$defs/A"}, {"$ref": "#/$defs/B"}]}
    only_a = {"$defs": {"A": a}, "anyOf": [{"$ref": "#/$defs/A"}]}
    found = breaking_changes(old, only_a)
    assert kinds(found) == {("", "branch_removed")}
    assert "'B'" in found[0].message
    # the same alternatives in another order, or one of them changed: matched by name
    swapped = {"$defs": {"A": a, "B": b}, "anyOf": [{"$ref": "#/$defs/B"}, {"$ref": "#/$defs/A"}]}
    assert breaks(old, swapped) == set()
    b2 = obj({"b": INT, "c": STR}, ("b", "c"), title="B")
    changed = {"$defs": {"A": a, "B": b2}, "anyOf": [{"$ref": "#/$defs/A"}, {"$ref": "#/$defs/B"}]}
    assert breaks(old, changed) == {("c", "newly_required")}


def test_other_validation_keywords_are_conservative() -> None:
    assert breaks(STR, {**STR, "not": {"const": ""}}) == {("", "keyword_changed")}
    assert breaks({**STR, "not": {"const": ""}}, STR) == set()
    assert breaks({"type": "array"}, {"type": "array", "uniqueItems": True}) == {("", "unique_items_added")}


def test_unresolvable_refs_are_compared_as_text() -> None:
    remote = {"$ref": "https://example.org/a.json"}
    assert breaks(remote, remote) == set()
    assert breaks(remote, {"$ref": "https://example.org/b.json"}) == {("", "ref_changed")}


def test_recursive_schemas_terminate() -> None:
    node = {"$defs": {"N": obj({"children": {"type": "array", "items": {"$ref": "#/$defs/N"}}})}}
    old = {**node, "$ref": "#/$defs/N"}
    assert breaks(old, copy.deepcopy(old)) == set()
    new = copy.deepcopy(old)
    new["$defs"]["N"]["properties"]["children"]["maxItems"] = 3
    assert breaks(old, new) == {("children", "max_lowered")}


def test_compare_documents_at_catalog_level() -> None:
    schema = obj({"a": STR}, ("a",))
    old = {"index.json": {"events": [1]}, "envelope.json": schema, "data/x.a.json": schema}
    assert compare_documents(old, {**old, "index.json": {}, "data/x.b.json": schema}) == []
    found = compare_documents(old, {"envelope.json": schema})
    assert [(i.file, i.kind) for i in found] == [("data/x.a.json", "event_removed")]
    assert str(found[0]) == "x.a: event type 'x.a' was removed"
    found = compare_documents(old, {"data/x.a.json": obj({}, ())})
    assert {(i.file, i.field, i.kind) for i in found} == {
        ("data/x.a.json", "a", "removed"),
        ("envelope.json", "", "file_removed"),
    }


def _widen(node: Any) -> Any:
    """``node`` with every limit relaxed, enum extended, requirement and pattern dropped."""
    if isinstance(node, list):
        return [_widen(n) for n in node]
    if not isinstance(node, dict):
        return node
    wide = {k: _widen(v) for k, v in node.items() if k not in ("pattern", "format", "required")}
    for key in ("maxLength", "maxItems"):
        if key in wide:
            wide[key] *= 2
    for key in ("minLength", "minItems", "minimum"):
        if key in wide:
            wide[key] = 0
    if "enum" in wide:
        wide["enum"] = [*wide["enum"], "added_value"]
    if isinstance(wide.get("properties"), dict):
        wide["properties"] = {**wide["properties"], "added_optional": {"type": "string"}}
    return wide


@pytest.mark.parametrize("name", DATA_FILES)
def test_committed_schemas_widened_stay_compatible_narrowed_do_not(name: str) -> None:
    schema = load_schema(f"data/{name}")
    assert breaking_changes(schema, _widen(schema)) == []
    assert breaking_changes(_widen(schema), schema) != []
    for prop in schema["properties"]:
        narrowed = copy.deepcopy(schema)
        del narrowed["properties"][prop]
        if prop in narrowed.get("required", []):
            narrowed["required"].remove(prop)
        assert kinds(breaking_changes(schema, narrowed)) == {(prop, "removed")}
