"""A real HTTP webhook receiver for the gateway tests (``http.server`` in a thread).

It verifies each request's HMAC signature, records the bodies in arrival order and can be
taken down (socket closed: connection refused) and brought back on the same port, or made
to answer 500 for ever.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from xregion.gateway.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from xregion.ops.server import free_port


class Receiver:
    def __init__(self, secret: str, port: int | None = None) -> None:
        self.secret = secret
        self.port = port or free_port()
        self.events: list[dict[str, Any]] = []
        self.bad_signatures = 0
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
                assert event["event_id"] == self.headers.get(EVENT_ID_HEADER)
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
