"""A real HTTP webhook receiver for the gateway tests (``http.server`` in a thread).

It verifies each request's HMAC signature, checks its headers and body against the
``webhooks`` section of the committed ``schemas/openapi.json`` (what a regional system
implements from), records the bodies in arrival order and can be taken down (socket closed:
connection refused) and brought back on the same port, or made to answer 500 for ever. A
request the document does not describe is answered 400 and listed in ``invalid``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from xregion.gateway.app import OPENAPI_FILE, WEBHOOK
from xregion.gateway.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from xregion.ops.server import free_port

OPENAPI = Path(__file__).resolve().parents[2] / "schemas" / OPENAPI_FILE
_BASE = "urn:xregion:openapi"


@dataclass(frozen=True)
class WebhookContract:
    """The webhook as ``schemas/openapi.json`` describes it: its body and header schemas."""

    body: Draft202012Validator
    headers: dict[str, tuple[bool, Draft202012Validator]]

    def problems(self, headers: Mapping[str, str], body: Any) -> list[str]:
        """Everything in a request the document does not allow (empty: it conforms)."""
        found = [
            f"body {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in self.body.iter_errors(body)
        ]
        for name, (required, schema) in self.headers.items():
            value = headers.get(name)
            if value is None:
                found += [f"header {name} missing"] if required else []
            else:
                found += [f"header {name}: {e.message}" for e in schema.iter_errors(value)]
        return found


@cache
def webhook_contract(path: Path = OPENAPI) -> WebhookContract:
    """The committed document's ``webhooks`` section, ready to validate requests."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    operation = doc["webhooks"][WEBHOOK]["post"]
    registry: Registry[Any] = Registry().with_resource(_BASE, Resource.from_contents(doc, DRAFT202012))
    pointer = f"{_BASE}#/webhooks/{WEBHOOK}/post/requestBody/content/application~1json/schema"
    checker = Draft202012Validator.FORMAT_CHECKER
    body = Draft202012Validator({"$ref": pointer}, registry=registry, format_checker=checker)
    headers = {
        p["name"]: (bool(p.get("required")), Draft202012Validator(p["schema"], format_checker=checker))
        for p in operation["parameters"]
        if p["in"] == "header"
    }
    return WebhookContract(body, headers)


class Receiver:
    def __init__(self, secret: str, port: int | None = None) -> None:
        self.secret = secret
        self.port = port or free_port()
        self.events: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self.invalid: list[str] = []
        """Requests the committed OpenAPI ``webhooks`` section does not describe (none, ever)."""
        self.checked = 0
        """Requests checked against it."""
        self.fail_with: int | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/xregion/webhook"

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e["event_type"] == event_type]

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if receiver.fail_with is not None:
                    self.send_response(receiver.fail_with)
                    self.end_headers()
                    self.wfile.write(b"case system unavailable")
                    return
                ok = verify(
                    receiver.secret,
                    self.headers.get(TIMESTAMP_HEADER, ""),
                    body,
                    self.headers.get(SIGNATURE_HEADER, ""),
                )
                if not ok:
                    with receiver._lock:
                        receiver.bad_signatures += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                event = json.loads(body)
                try:
                    problems = webhook_contract().problems(self.headers, event)
                except KeyError as exc:  # a document without the section
                    problems = [f"{OPENAPI.name} describes no webhook {exc}"]
                if event.get("event_id") != self.headers.get(EVENT_ID_HEADER):
                    problems.append("X-Xregion-Event-Id differs from the body's event_id")
                with receiver._lock:
                    receiver.checked += 1
                    receiver.invalid += [f"{event.get('event_type')}: {p}" for p in problems]
                if problems:
                    self.send_response(400)
                    self.end_headers()
                    return
                with receiver._lock:
                    if all(e["event_id"] != event["event_id"] for e in receiver.events):
                        receiver.events.append(event)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
