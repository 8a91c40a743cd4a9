"""The pluggable time-stamp verifier and the SM3 path: the log's own DER request (any of
SHA-256/384/512 and SM3) answered by OpenSSL's time-stamping authority (``openssl ts
-reply``), checked by the OpenSSL verifier — and refused by ``rfc3161-client``, which has
no SM3 (why the verifier is pluggable)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tests.tsa import make_tsa_pki
from xregion.timestamps import (
    OpenSslVerifier,
    Rfc3161ClientVerifier,
    TimestampInvalid,
    TimestampMismatch,
    build_request,
)

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="no openssl command")

CONFIG = """
[tsa]
default_tsa = tsa1
[tsa1]
serial = {root}/serial
signer_cert = {root}/tsa.pem
certs = {root}/ca.pem
signer_key = {root}/tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
other_policies = 1.2.3.4.2
digests = sm3, sha256, sha384, sha512
accuracy = secs:1
ess_cert_id_alg = sha256
"""


def openssl(*args: str) -> subprocess.CompletedProcess[str]:
    assert OPENSSL is not None
    return subprocess.run([OPENSSL, *args], capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture
def openssl_tsa(tmp_path: Path) -> Path:
    ca, _, cert, key = make_tsa_pki("OpenSSL TSA")
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "tsa.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "tsa.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (tmp_path / "serial").write_text("01\n")
    (tmp_path / "tsa.cnf").write_text(CONFIG.format(root=tmp_path))
    return tmp_path


def stamp(root: Path, request: bytes) -> bytes:
    (root / "q.tsq").write_bytes(request)
    done = openssl("ts", "-reply", "-config", str(root / "tsa.cnf"), "-queryfile", str(root / "q.tsq"), "-out",
                   str(root / "r.tsr"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    return (root / "r.tsr").read_bytes()


@pytest.mark.parametrize("hash_alg", ["sha256", "sha384", "sha512", "sm3"])
def test_requests_are_well_formed(tmp_path: Path, hash_alg: str) -> None:
    request, nonce = build_request(b"xregion/XREGION\n3\n", hash_alg)
    (tmp_path / "q.tsq").write_bytes(request)
    text = openssl("ts", "-query", "-in", str(tmp_path / "q.tsq"), "-text").stdout
    assert f"Hash Algorithm: {hash_alg}" in text
    found = re.search(r"Nonce: 0x([0-9A-F]+)", text)
    assert found is not None and int(found.group(1), 16) == nonce
    assert "Certificate required: yes" in text


def test_an_sm3_token_of_openssls_tsa(openssl_tsa: Path) -> None:
    if "sm3" not in openssl("list", "-digest-algorithms").stdout.lower():
        pytest.skip("this OpenSSL has no SM3")
    data = b"xregion/XREGION\n3\nAAAA\n"
    request, nonce = build_request(data, "sm3")
    response = stamp(openssl_tsa, request)
    verifier = OpenSslVerifier(openssl_tsa / "ca.pem")
    info = verifier.verify(response, data)
    assert info.hash_alg == "sm3" and info.nonce == nonce and len(info.imprint) == 32
    with pytest.raises(TimestampMismatch):
        verifier.verify(response, data + b"x")
    other = make_tsa_pki("someone else")[0]
    (openssl_tsa / "other.pem").write_bytes(other.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(TimestampInvalid):
        OpenSslVerifier(openssl_tsa / "other.pem").verify(response, data)
    # rfc3161-client cannot read it: the verifier is pluggable for a reason
    with pytest.raises(TimestampInvalid):
        Rfc3161ClientVerifier.from_bundle(openssl_tsa / "ca.pem").verify(response, data)
