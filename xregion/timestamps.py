"""RFC 3161 trusted time-stamps on the log's checkpoints: requests, and pluggable verifiers.

The log (:mod:`xregion.auditor.checkpointer`) asks a time-stamping authority (TSA) for a
token over each new checkpoint's note text (origin, size, root: :meth:`Checkpoint.text`).
The token's ``messageImprint`` is the hash of those bytes and its ``genTime`` the TSA's
time; because the root commits to every leaf before it, **one token covers every event up
to that tree size** (X-Road batches its message log the same way). What a token proves and
what it does not: ``docs/evidence.md``.

Verification is pluggable (:class:`TimestampVerifier`), because national TSAs may sign with
SM2 and hash with SM3:

* :class:`Rfc3161ClientVerifier` (default; the ``rfc3161-client`` library): the response is
  granted, its CMS signature verifies, the signer certificate chains to the trusted CA
  bundle and was valid at ``genTime``, carries the critical ``timeStamping`` extended key
  usage; imprints SHA-256, SHA-384, SHA-512; RSA and ECDSA signatures. No SM2/SM3.
* :class:`OpenSslVerifier`: ``openssl ts -verify`` and ``openssl ts -reply -text``: the same
  checks, done by OpenSSL; also SM3 imprints (OpenSSL ≥ 1.1.1), and tokens whose DER
  ``rfc3161-client`` refuses (e.g. OpenSSL's own TSA's unsorted certificate sets).

**SM2-signed tokens are verified by neither**: ``rfc3161-client`` knows no SM2, and OpenSSL
3.0's PKCS#7 code neither signs nor verifies SM2 (tested: ``openssl ts -reply`` with an SM2
key fails). A national TSA that signs with SM2 needs a verifier of its own behind
:class:`TimestampVerifier` (e.g. one built on GmSSL); requests with SM3 imprints are
supported here (``--tsa-hash sm3``).

Both report a token that does not verify as :class:`TimestampInvalid` and a valid token
over other data as :class:`TimestampMismatch`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from cryptography import x509
from rfc3161_client import (
    TimeStampResponse,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

from xregion.errors import ConfigError, XRegionError
from xregion.errors import VerificationError as XVerificationError

HASH_OIDS = {
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
    "1.2.156.10197.1.401": "sm3",
}
HASH_NAMES = {name: oid for oid, name in HASH_OIDS.items()}
"""Imprint algorithms a request may use; ``sm3`` where the local OpenSSL provides it (GB/T
32905), for a national TSA — its tokens are then checked by :class:`OpenSslVerifier`."""


class TimestampInvalid(XVerificationError):
    """An RFC 3161 token that does not verify: altered, forged, not granted, or signed by a
    TSA the trusted CA bundle does not vouch for."""

    code = "timestamp_invalid"


class TimestampMismatch(XVerificationError):
    """A valid RFC 3161 token over other data than the checkpoint it is filed with."""

    code = "timestamp_mismatch"


class TimestampUnavailable(XRegionError):
    """The time-stamping authority could not be reached or refused the request."""

    code = "timestamp_unavailable"


class TimestampStale(XRegionError):
    """No fresh token for longer than the configured maximum age: the alert."""

    code = "timestamp_stale"


@dataclass(frozen=True)
class TokenInfo:
    """What a verified token says."""

    gen_time: datetime
    hash_alg: str
    imprint: bytes
    serial: int
    tsa: str
    policy: str
    nonce: int | None = None


def digest(data: bytes, hash_alg: str) -> bytes:
    if hash_alg == "sm3":
        return hashlib.new("sm3", data).digest()  # where the local OpenSSL provides it
    return hashlib.new(hash_alg, data).digest()


def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    octets = (n.bit_length() + 7) // 8
    return bytes([tag, 0x80 | octets]) + n.to_bytes(octets, "big") + body


def _der_int(value: int) -> bytes:
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _der_oid(dotted: str) -> bytes:
    first, second, *rest = (int(p) for p in dotted.split("."))
    out = bytearray()
    for arc in (40 * first + second, *rest):
        chunk = [arc & 0x7F]
        while arc > 0x7F:
            arc >>= 7
            chunk.insert(0, 0x80 | (arc & 0x7F))
        out += bytes(chunk)
    return _der(0x06, bytes(out))


def build_request(data: bytes, hash_alg: str = "sha256") -> tuple[bytes, int]:
    """A DER ``TimeStampReq`` (RFC 3161 §2.4.1: v1, the imprint of ``data``, a 64-bit nonce,
    ``certReq`` true) and its nonce. Any of :data:`HASH_NAMES`."""
    if hash_alg not in HASH_NAMES:
        raise ConfigError(f"time-stamp hash {hash_alg!r}: one of {', '.join(HASH_NAMES)}")
    try:
        imprint = digest(data, hash_alg)
    except ValueError:
        raise ConfigError(f"time-stamp hash {hash_alg}: not provided by this machine's OpenSSL") from None
    nonce = secrets.randbits(63) | 1
    algorithm = _der(0x30, _der_oid(HASH_NAMES[hash_alg]) + (b"" if hash_alg == "sm3" else b"\x05\x00"))
    message_imprint = _der(0x30, algorithm + _der(0x04, imprint))
    request = _der(0x30, _der_int(1) + message_imprint + _der_int(nonce) + b"\x01\x01\xff")
    return request, nonce


def parse_response(response: bytes) -> TimeStampResponse:
    try:
        return decode_timestamp_response(response)
    except (ValueError, VerificationError) as exc:
        raise TimestampInvalid(f"not an RFC 3161 time-stamp response: {exc}") from None


def token_info(response: bytes) -> TokenInfo:
    """What ``response`` claims (not verified)."""
    parsed = parse_response(response)
    info = parsed.tst_info
    oid = info.message_imprint.hash_algorithm.dotted_string
    try:
        tsa = info.name.value.rfc4514_string() if info.name is not None else ""
    except Exception:  # a name of another kind
        tsa = str(info.name)
    return TokenInfo(
        gen_time=info.gen_time,
        hash_alg=HASH_OIDS.get(oid, oid),
        imprint=bytes(info.message_imprint.message),
        serial=int(info.serial_number),
        tsa=tsa,
        policy=info.policy.dotted_string,
        nonce=info.nonce,
    )


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle (the TSA's trust anchors)."""
    try:
        certificates = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the TSA CA bundle {path}: {exc}") from None
    if not certificates:
        raise ConfigError(f"the TSA CA bundle {path} holds no certificate")
    return certificates


class TimestampVerifier(Protocol):
    """Checks an RFC 3161 response over ``data`` against trusted roots; returns what it says."""

    name: str

    def verify(self, response: bytes, data: bytes) -> TokenInfo: ...


def _check_imprint(info: TokenInfo, data: bytes) -> TokenInfo:
    try:
        expected = digest(data, info.hash_alg)
    except ValueError:
        raise TimestampInvalid(f"the token's imprint algorithm {info.hash_alg} is not available here") from None
    if expected != info.imprint:
        raise TimestampMismatch(
            f"the token (TSA time {info.gen_time.isoformat()}) is over other data than this checkpoint",
            gen_time=info.gen_time.isoformat(),
        )
    return info


class Rfc3161ClientVerifier:
    """The default verifier (``rfc3161-client``): SHA-2 imprints, RSA/ECDSA TSAs."""

    name = "rfc3161-client"

    def __init__(self, roots: list[x509.Certificate]) -> None:
        if not roots:
            raise ConfigError("a time-stamp verifier needs at least one trusted TSA CA certificate")
        self.roots = roots

    @classmethod
    def from_bundle(cls, path: Path) -> Rfc3161ClientVerifier:
        return cls(load_certificates(path))

    def verify(self, response: bytes, data: bytes) -> TokenInfo:
        parsed = parse_response(response)
        info = token_info(response)
        builder = VerifierBuilder()
        for root in self.roots:
            builder = builder.add_root_certificate(root)
        try:
            # The signature, the chain to the roots at genTime, the EKU; the imprint is the
            # token's own here, compared with the checkpoint's below (to tell the two apart).
            builder.build().verify(parsed, info.imprint)
        except (VerificationError, ValueError) as exc:
            raise TimestampInvalid(f"the time-stamp token does not verify: {exc}") from None
        return _check_imprint(info, data)


class OpenSslVerifier:
    """``openssl ts -verify`` against the CA bundle (SM3 imprints too; no SM2, see above)."""

    name = "openssl"

    def __init__(self, ca_bundle: Path, openssl: str | None = None) -> None:
        found = openssl or shutil.which("openssl")
        if found is None:
            raise ConfigError("the openssl time-stamp verifier needs the openssl command")
        self.openssl = found
        self.ca_bundle = ca_bundle

    def _info(self, reply: Path) -> TokenInfo:
        """What the token says, as ``openssl ts -reply -text`` reads it (it also reads the
        tokens whose DER ``rfc3161-client`` refuses, e.g. unsorted certificate sets)."""
        done = subprocess.run(
            [self.openssl, "ts", "-reply", "-in", str(reply), "-text"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        text = done.stdout
        fields = dict(re.findall(r"^([A-Za-z ]+): (.*)$", text, re.M))
        if done.returncode != 0 or "Time stamp" not in fields:
            raise TimestampInvalid("not an RFC 3161 time-stamp response (openssl ts -reply)")
        hexed = re.search(r"^Message data:\n((?:\s+[0-9a-f]{4} - .*\n)+)", text, re.M)
        imprint = b""
        if hexed:
            for line in hexed.group(1).splitlines():
                imprint += bytes.fromhex(line.split(" - ", 1)[1][:48].replace("-", " "))
        stamp = re.sub(r"\.\d+", "", fields["Time stamp"]).replace(" GMT", "")
        gen_time = datetime.strptime(" ".join(stamp.split()), "%b %d %H:%M:%S %Y").replace(tzinfo=UTC)
        nonce = fields.get("Nonce", "")
        return TokenInfo(
            gen_time=gen_time,
            hash_alg=fields.get("Hash Algorithm", "?").lower(),
            imprint=imprint,
            serial=int(fields.get("Serial number", "0"), 16),
            tsa=fields.get("TSA", ""),
            policy=fields.get("Policy OID", ""),
            nonce=int(nonce, 16) if nonce.startswith("0x") else None,
        )

    def verify(self, response: bytes, data: bytes) -> TokenInfo:
        with tempfile.TemporaryDirectory(prefix="xregion-tsr-") as tmp:
            reply, content = Path(tmp) / "reply.tsr", Path(tmp) / "data"
            reply.write_bytes(response)
            content.write_bytes(data)
            command = [self.openssl, "ts", "-verify", "-in", str(reply), "-data", str(content)]
            done = subprocess.run(
                [*command, "-CAfile", str(self.ca_bundle)],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            info = self._info(reply) if done.returncode == 0 and "Verification: OK" in done.stdout else None
        if info is not None:
            return info
        detail = (done.stderr or done.stdout).strip().splitlines()
        reason = next((line for line in detail if "error" in line.lower()), detail[-1] if detail else "failed")
        if "message imprint mismatch" in (done.stderr + done.stdout).lower():
            raise TimestampMismatch(f"the token is over other data than this checkpoint ({reason})")
        raise TimestampInvalid(f"openssl ts -verify: {reason}")


VERIFIERS = ("rfc3161-client", "openssl")


def make_verifier(name: str, ca_bundle: Path) -> TimestampVerifier:
    """The verifier called ``name`` (:data:`VERIFIERS`) trusting ``ca_bundle``."""
    if name == "rfc3161-client":
        return Rfc3161ClientVerifier.from_bundle(ca_bundle)
    if name == "openssl":
        return OpenSslVerifier(ca_bundle)
    raise ConfigError(f"unknown time-stamp verifier {name!r}: one of {', '.join(VERIFIERS)}")
