"""TEST-ONLY: a real RFC 3161 time-stamping authority on loopback.

A throw-away root CA and a TSA certificate (EC P-256, critical extended key usage
``timeStamping``, as RFC 3161 §2.3 requires) are made with ``cryptography``; the token is
built and signed by certomancer's :class:`~certomancer.services.TimeStamper` (CMS
SignedData over a TSTInfo, ESS signing-certificate attribute). It answers
``application/timestamp-query`` POSTs over HTTP on 127.0.0.1, on a free port.

``down()`` closes the listening socket (clients get *connection refused*, as from a TSA
that is away) and ``up()`` opens it again on the same port; ``requests`` counts what it
answered.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from asn1crypto import keys as asn1_keys
from asn1crypto import tsp as asn1_tsp
from asn1crypto import x509 as asn1_x509
from certomancer.services import TimeStamper
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from xregion.ops.server import free_port


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.COUNTRY_NAME, "CN")])


def make_tsa_pki(label: str = "xregion test TSA") -> tuple[Any, Any, Any, Any]:
    """(CA certificate, CA key, TSA certificate, TSA key) — ``cryptography`` objects."""
    now = datetime.now(UTC) - timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{label} root CA"))
        .issuer_name(_name(f"{label} root CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    tsa_key = ec.generate_private_key(ec.SECP256R1())
    tsa = (
        x509.CertificateBuilder()
        .subject_name(_name(label))
        .issuer_name(ca.subject)
        .public_key(tsa_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return ca, ca_key, tsa, tsa_key


class LocalTsa:
    """A running RFC 3161 server: ``url``, ``ca_file`` (the trust anchor), ``down()``/``up()``."""

    def __init__(self, root: Path, label: str = "xregion test TSA") -> None:
        self.ca, _, self.cert, key = make_tsa_pki(label)
        root.mkdir(parents=True, exist_ok=True)
        self.ca_file = root / f"{label.replace(' ', '-')}-ca.pem"
        self.ca_file.write_bytes(self.ca.public_bytes(serialization.Encoding.PEM))
        self.stamper = TimeStamper(
            tsa_cert=asn1_x509.Certificate.load(self.cert.public_bytes(serialization.Encoding.DER)),
            tsa_key=asn1_keys.PrivateKeyInfo.load(
                key.private_bytes(
                    serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            ),
        )
        self.port = free_port()
        self.requests = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/tsa"

    def stamp(self, query: bytes) -> bytes:
        """The DER TimeStampResp to a DER TimeStampReq."""
        return bytes(self.stamper.request_tsa_response(asn1_tsp.TimeStampReq.load(query)).dump())

    def up(self) -> LocalTsa:
        tsa = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Type") != "application/timestamp-query":
                    self.send_error(415)
                    return
                answer = tsa.stamp(body)
                tsa.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-tsa", daemon=True)
        self._thread.start()
        return self

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
