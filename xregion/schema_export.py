"""The committed JSON Schemas of the wire contract, generated from the pydantic models.

Layout under ``<root>/v<N>/`` (all JSON Schema draft 2020-12):

* ``envelope.json``: the CloudEvents envelope (:class:`xregion.envelope.Envelope`);
* ``data/<family>.<event>.json``: the ``data`` of one event type, ``$id`` = its ``dataschema``;
* ``index.json``: every event type with its CloudEvents ``type``, ``dataschema`` and file.

Files are serialised with sorted keys, two-space indent, non-ASCII kept as is and a final
newline, so that regenerating unchanged models reproduces them byte for byte.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xregion.contracts.catalog import CATALOG, Catalog, EventType
from xregion.envelope import Envelope
from xregion.examples import PAYLOADS

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
ENVELOPE_FILE = "envelope.json"
INDEX_FILE = "index.json"
DATA_DIR = "data"


def render(document: Mapping[str, Any]) -> str:
    """The committed text of a document: stable, readable Chinese, final newline."""
    return json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def data_file(event_type: EventType) -> str:
    """``data/<family>.<event>.json``, relative to ``<root>/v<N>/``."""
    return f"{DATA_DIR}/{event_type.name}.json"


def envelope_schema(version: int = 1) -> dict[str, Any]:
    """JSON Schema of the envelope; ``data`` is left to the schema named in ``dataschema``."""
    schema = Envelope.model_json_schema()
    schema["$schema"] = JSON_SCHEMA_DIALECT
    schema["$id"] = f"urn:xregion:schema:v{version}:envelope"
    schema["title"] = f"xregion v{version} event envelope (CloudEvents 1.0, structured JSON mode)"
    schema["properties"]["data"]["description"] = (
        "The event payload, validated by the schema named in dataschema "
        f"(schemas/v{version}/{DATA_DIR}/<family>.<event>.json, whose $id is that dataschema)."
    )
    return schema


def data_schema(event_type: EventType) -> dict[str, Any]:
    """JSON Schema of the ``data`` of ``event_type``, with its example payload."""
    schema = event_type.model.model_json_schema()
    schema["$schema"] = JSON_SCHEMA_DIALECT
    schema["$id"] = event_type.dataschema
    schema["title"] = f"{event_type.name} v{event_type.version} data"
    doc = event_type.model.__dict__.get("__doc__")
    schema["description"] = (
        inspect.cleandoc(doc)
        if doc
        else f"Data of the {event_type.name} event (CloudEvents type {event_type.ce_type})."
    )
    if event_type.name in PAYLOADS:
        schema["examples"] = [PAYLOADS[event_type.name]]
    return schema


def index(event_types: list[EventType], version: int = 1) -> dict[str, Any]:
    """The list of event types of version ``version`` and their schema files."""
    return {
        "version": version,
        "envelope": ENVELOPE_FILE,
        "events": [
            {
                "name": t.name,
                "type": t.ce_type,
                "dataschema": t.dataschema,
                "file": data_file(t),
            }
            for t in event_types
        ],
    }


def generate(catalog: Catalog = CATALOG, version: int = 1) -> dict[str, dict[str, Any]]:
    """Every document of ``schemas/v<version>/``, keyed by path relative to that directory."""
    event_types = catalog.versions(version)
    documents: dict[str, dict[str, Any]] = {
        ENVELOPE_FILE: envelope_schema(version),
        INDEX_FILE: index(event_types, version),
    }
    for event_type in event_types:
        documents[data_file(event_type)] = data_schema(event_type)
    return documents


def version_dir(root: Path, version: int = 1) -> Path:
    return root / f"v{version}"


def committed_files(root: Path, version: int = 1) -> list[str]:
    """Relative paths of the managed files present: ``*.json`` and ``data/*.json``."""
    base = version_dir(root, version)
    found = [p.name for p in base.glob("*.json") if p.is_file()]
    found += [f"{DATA_DIR}/{p.name}" for p in (base / DATA_DIR).glob("*.json") if p.is_file()]
    return sorted(found)


def load(root: Path, version: int = 1) -> dict[str, Any]:
    """The committed documents, parsed, keyed like :func:`generate`.

    Raises ``ValueError`` naming the file if one is not valid JSON.
    """
    base = version_dir(root, version)
    documents: dict[str, Any] = {}
    for name in committed_files(root, version):
        try:
            documents[name] = json.loads((base / name).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{base / name} is not valid JSON: {exc}") from exc
    return documents


@dataclass(frozen=True)
class Written:
    """What :func:`write` did to one file: created, updated, unchanged or removed."""

    path: Path
    action: str


def write(root: Path, catalog: Catalog = CATALOG, version: int = 1) -> list[Written]:
    """Write the generated documents under ``root/v<version>/``; remove stale ``data/*.json``.

    Files whose content is unchanged are not rewritten.
    """
    base = version_dir(root, version)
    documents = generate(catalog, version)
    results: list[Written] = []
    (base / DATA_DIR).mkdir(parents=True, exist_ok=True)
    for name in sorted(documents):
        path = base / name
        text = render(documents[name])
        if path.is_file():
            if path.read_bytes() == text.encode("utf-8"):
                results.append(Written(path, "unchanged"))
                continue
            action = "updated"
        else:
            action = "created"
        path.write_bytes(text.encode("utf-8"))
        results.append(Written(path, action))
    for name in committed_files(root, version):
        if name.startswith(f"{DATA_DIR}/") and name not in documents:
            (base / name).unlink()
            results.append(Written(base / name, "removed"))
    return results


def diff(root: Path, catalog: Catalog = CATALOG, version: int = 1) -> list[str]:
    """How the committed files differ from the generated ones, one line per file.

    Lines read ``missing <file>``, ``extra <file>`` or ``different <file>``; empty when the
    committed schemas are up to date.
    """
    base = version_dir(root, version)
    documents = generate(catalog, version)
    present = set(committed_files(root, version))
    lines: list[str] = []
    for name in sorted(set(documents) | present):
        if name not in present:
            lines.append(f"missing {name}")
        elif name not in documents:
            lines.append(f"extra {name}")
        elif (base / name).read_bytes() != render(documents[name]).encode("utf-8"):
            lines.append(f"different {name}")
    return lines
