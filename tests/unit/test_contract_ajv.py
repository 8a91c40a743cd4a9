"""The committed contract checked by a second, independent validator: Ajv under Node.js.

``tests/js/check-contract.mjs`` (Ajv 8 for JSON Schema 2020-12 in strict mode, ajv-formats,
and the AsyncAPI 3.0.0 specification schema of ``@asyncapi/specs``, as a JavaScript team
would use them) must:

* compile every committed JSON Schema of ``schemas/v1/`` (the envelope and the 33 data
  schemas) with no error and no warning: an unknown keyword such as ``x-sensitive`` refuses a
  schema in strict mode;
* validate each schema's own examples, a real signed event of every event type (its envelope,
  and its data against the schema its ``dataschema`` names), sealed personal data, and the
  worked example of ``docs/signing-recipe.md``; refuse broken ones;
* accept ``schemas/asyncapi.json`` as an AsyncAPI 3.0.0 document.

Skipped, with the reason, where ``node`` is not on PATH or the tools are not installed
(``npm ci --prefix tests/js``; ``.ci/run`` installs them).
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support import EXAMPLE_TIME, dev_roster, dev_signers, recipe_blocks, sealed_example
from xregion.contracts.catalog import CATALOG, EventType
from xregion.lifecycle import LIFECYCLES
from xregion.regions import COORDINATOR
from xregion.sealing import FieldSealing, sensitive_paths

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
TOOLS = ROOT / "tests" / "js"
SCRIPT = TOOLS / "check-contract.mjs"
NODE = shutil.which("node")
ENVELOPE_ID = "urn:xregion:schema:v1:envelope"
EVENT_TYPES = sorted(CATALOG.versions(1), key=lambda t: t.name)


def _not_runnable() -> str | None:
    if NODE is None:
        return "node (Node.js >= 18) is not on PATH: the committed schemas were not checked by Ajv"
    if not (TOOLS / "node_modules" / "ajv").is_dir() or not (TOOLS / "node_modules" / "@asyncapi" / "specs").is_dir():
        return "Ajv is not installed: run `npm ci --prefix tests/js` (.ci/run does)"
    return None


pytestmark = pytest.mark.skipif(_not_runnable() is not None, reason=_not_runnable() or "")


def check(root: Path, instances: list[dict[str, Any]], tmp: Path) -> tuple[int, dict[str, Any]]:
    """Run the checker on ``root`` with ``instances``; its exit code and JSON report."""
    cases = tmp / "instances.json"
    cases.write_text(json.dumps(instances, ensure_ascii=False), encoding="utf-8")
    assert NODE is not None
    done = subprocess.run(
        [NODE, str(SCRIPT), str(root), str(cases), "--json"], capture_output=True, timeout=120, check=False
    )
    assert done.stdout, done.stderr.decode(errors="replace")
    report: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, report


def sender_of(event_type: EventType) -> str:
    return COORDINATOR if LIFECYCLES[event_type.family].senders == "coordinator" else "BJ"


def case(label: str, schema: str, instance: Any, *, valid: bool = True) -> dict[str, Any]:
    return {"label": label, "schema": schema, "instance": instance, "valid": valid}


def instances() -> list[dict[str, Any]]:
    """Real events of every type (valid), sealed personal data (valid), the recipe's worked
    example (valid), and broken ones (invalid)."""
    signers = dev_signers()
    sealing = FieldSealing(lambda: dev_roster(signers), lambda: [signers["BJ"]])
    found: list[dict[str, Any]] = []
    for event_type in EVENT_TYPES:
        wire = sealed_example(event_type.name, signers[sender_of(event_type)]).wire
        found.append(case(f"{event_type.name} envelope", ENVELOPE_ID, wire))
        found.append(case(f"{event_type.name} data", wire["dataschema"], wire["data"]))
        if sensitive_paths(event_type.model):
            sealed = sealing.seal(event_type.model, wire["data"], ["TJ"], EXAMPLE_TIME)
            assert sealed != wire["data"]
            found.append(case(f"{event_type.name} data, personal data sealed", wire["dataschema"], sealed))
    found.append(case("recipe worked example", ENVELOPE_ID, json.loads(recipe_blocks()["event"])))

    lead = sealed_example("lead.submitted", signers["BJ"]).wire
    nulls = {"causationid": None, "handlingnote": None, "answerby": None}
    found.append(case("null attributes (read as absent, never written)", ENVELOPE_ID, {**lead, **nulls}))
    found.append(case("causationid that is a number", ENVELOPE_ID, {**lead, "causationid": 7}, valid=False))
    found.append(case("correlationid null", ENVELOPE_ID, {**lead, "correlationid": None}, valid=False))
    found.append(case("originseq that is a string", ENVELOPE_ID, {**lead, "originseq": "1"}, valid=False))
    found.append(
        case("no correlationid", ENVELOPE_ID, {k: v for k, v in lead.items() if k != "correlationid"}, valid=False)
    )
    broken = copy.deepcopy(lead["data"])
    del broken["title"]
    found.append(case("lead without its title", lead["dataschema"], broken, valid=False))
    broken = copy.deepcopy(lead["data"])
    broken["suspects"][0]["name"] = {"sealed": {}}
    found.append(case("a sealed value sealed to nobody", lead["dataschema"], broken, valid=False))
    return found


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The checker's report on the committed ``schemas/`` (one run for the module)."""
    _, found = check(SCHEMAS, instances(), tmp_path_factory.mktemp("ajv"))
    return found


def test_every_committed_json_schema_compiles_in_strict_mode(report: dict[str, Any]) -> None:
    files = sorted(s["file"] for s in report["schemas"])
    expected = sorted(["v1/envelope.json", *(f"v1/data/{t.name}.json" for t in EVENT_TYPES)])
    assert files == expected
    refused = {s["file"]: s["error"] for s in report["schemas"] if s["error"]}
    assert refused == {}, f"Ajv (strict) refuses {len(refused)} of {len(files)} schemas: {refused}"
    assert report["warnings"] == []


def test_examples_and_real_events_validate_and_broken_ones_do_not(report: dict[str, Any]) -> None:
    examples = report["examples"]
    assert len(examples) == len(EVENT_TYPES), "every data schema carries its example"
    assert [e for e in examples if not e["valid"]] == []
    wrong = [(i["label"], i["valid"], i["errors"][:3]) for i in report["instances"] if not i["ok"]]
    assert wrong == []
    assert len(report["instances"]) == len(instances())


def test_asyncapi_document_is_valid_asyncapi_3(report: dict[str, Any]) -> None:
    assert report["asyncapi"]["version"] == "3.0.0"
    assert report["asyncapi"]["valid"], report["asyncapi"]["errors"]


def test_the_checker_is_strict(tmp_path: Path) -> None:
    """The check itself: an unknown keyword refuses a schema, a wrong example is reported,
    an AsyncAPI document that is not one is invalid, and each failure sets the exit code."""
    root = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, root)
    data = root / "v1" / "data" / "share.bulletin.json"
    schema = json.loads(data.read_text(encoding="utf-8"))
    schema["properties"]["title"]["x-unknown"] = True
    data.write_text(json.dumps(schema), encoding="utf-8")
    example = root / "v1" / "data" / "lead.accepted.json"
    schema = json.loads(example.read_text(encoding="utf-8"))
    schema["examples"] = [{}]
    example.write_text(json.dumps(schema), encoding="utf-8")
    asyncapi = root / "asyncapi.json"
    doc = json.loads(asyncapi.read_text(encoding="utf-8"))
    doc["channels"][sorted(doc["channels"])[0]]["parameters"] = {"sender": {"pattern": "^[A-Z]+$"}}
    asyncapi.write_text(json.dumps(doc), encoding="utf-8")

    code, found = check(root, [], tmp_path)
    assert code == 1
    refused = {s["file"]: s["error"] for s in found["schemas"] if s["error"]}
    assert list(refused) == ["v1/data/share.bulletin.json"]
    assert 'unknown keyword: "x-unknown"' in refused["v1/data/share.bulletin.json"]
    assert [(e["file"], e["valid"]) for e in found["examples"] if not e["valid"]] == [
        ("v1/data/lead.accepted.json", False)
    ]
    assert not found["asyncapi"]["valid"]
