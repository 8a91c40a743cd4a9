"""Development TLS material: a throw-away CA, the server's certificate and one client
certificate per party, written as PEM files.

DEVELOPMENT ONLY. In production each agency's certificates come from the agency's (or the
bus operator's) certificate authority; the private keys never leave the machine that
generated them, and only a CSR travels (see ``ops/README.md``). What this module writes is
good for a laptop, a test or a demo:

=================================== ===========================================================
``tls/ca.pem``                      the development CA certificate (every party trusts it)
``tls/ca-key.pem``                  its private key (mode 0600; needed only to issue more)
``tls/server.pem`` / ``-key.pem``   nats-server, SAN ``127.0.0.1``, ``localhost`` (+ ``hosts``)
``tls/clients/<PARTY>.pem``         client certificate, CN = the party code, URI SAN
                                    ``urn:xregion:party:<PARTY>`` (the server maps it to the party)
``tls/clients/<PARTY>-key.pem``     its private key (mode 0600)
``tls/leaf/<REGION>.pem``, ``-key``  the region's leaf node's link to the hub, URI SAN
                                    ``urn:xregion:leaf:<REGION>`` (only a leaf-node link may use it)
=================================== ===========================================================

Keys are ECDSA P-256 (fast to generate, accepted by Go's and Python's TLS stacks).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from xregion.permissions import LEAF_URI, PARTY_URI

DEFAULT_HOSTS = ("127.0.0.1", "localhost")
VALID_DAYS = 365
TLS_DIR = "tls"


@dataclass(frozen=True)
class TlsFiles:
    """The three files one TLS endpoint needs: whom to trust, who it is, its private key."""

    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class DevPki:
    """Where :func:`write_dev_pki` put everything."""

    root: Path
    ca: Path
    ca_key: Path
    server: TlsFiles
    clients: dict[str, TlsFiles]


def tls_dir(out: Path) -> Path:
    return out / TLS_DIR


def server_files(out: Path) -> TlsFiles:
    root = tls_dir(out)
    return TlsFiles(ca=root / "ca.pem", cert=root / "server.pem", key=root / "server-key.pem")


def leaf_files(out: Path, region: str) -> TlsFiles:
    """The certificate a region's leaf node presents on its link to the hub."""
    root = tls_dir(out)
    return TlsFiles(ca=root / "ca.pem", cert=root / "leaf" / f"{region}.pem", key=root / "leaf" / f"{region}-key.pem")


def client_files(out: Path, party: str) -> TlsFiles:
    root = tls_dir(out)
    return TlsFiles(
        ca=root / "ca.pem", cert=root / "clients" / f"{party}.pem", key=root / "clients" / f"{party}-key.pem"
    )


def _name(common_name: str, unit: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "xregion development (throw-away)"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


@dataclass(frozen=True)
class Authority:
    """A CA able to issue certificates."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, common_name: str = "xregion development CA") -> Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        name = _name(common_name, "certificate authority")
        cert = (
            _builder(name, name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @classmethod
    def load(cls, cert_file: Path, key_file: Path) -> Authority:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_file}: not an EC private key")
        return cls(key, x509.load_pem_x509_certificate(cert_file.read_bytes()))

    def issue(
        self,
        common_name: str,
        *,
        unit: str,
        server_hosts: Iterable[str] = (),
        client: bool = False,
        uri: str | None = None,
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """A leaf certificate: a server one (with SANs) or a client one (CN = party, and the
        URI SAN ``urn:xregion:party:<PARTY>`` that the server maps to the party's user)."""
        key = ec.generate_private_key(ec.SECP256R1())
        # A server certificate also authenticates its server as a client: cluster routes and
        # leaf-node links are mutual TLS between servers.
        usages = (
            [ExtendedKeyUsageOID.CLIENT_AUTH]
            if client
            else [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        )
        builder = (
            _builder(_name(common_name, unit), self.cert.subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        names: list[x509.GeneralName] = [_san(h) for h in server_hosts]
        if client:
            names.append(x509.UniformResourceIdentifier(uri or f"{PARTY_URI}{common_name}"))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return key, builder.sign(self.key, hashes.SHA256())


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    os.chmod(path, 0o600)


README = """\
DEVELOPMENT / THROW-AWAY TLS MATERIAL generated by `xregion ops gen-certs`.
Anyone holding ca-key.pem can issue certificates this bus trusts. Never use these files in
production: there each agency's certificates come from its certificate authority and
private keys never leave the machine that generated them (see ops/README.md).
"""


def _present(files: TlsFiles) -> bool:
    return files.cert.exists() and files.key.exists()


def write_dev_pki(
    out: Path,
    parties: Iterable[str],
    *,
    hosts: Iterable[str] = DEFAULT_HOSTS,
    renew: bool = False,
    ca_common_name: str = "xregion development CA",
    leaves: Iterable[str] = (),
) -> DevPki:
    """Create a development CA under ``out/tls`` and issue the server's and every party's
    certificate, keeping what exists: the CA (so certificates issued by it stay valid) and
    every certificate already there — ``renew=True`` re-issues the server's and the parties'
    certificates from the same CA (new keys, e.g. after adding a host name). ``leaves``: the
    regions whose leaf-node link certificates to issue too."""
    root = tls_dir(out)
    root.mkdir(parents=True, exist_ok=True)
    ca_file, ca_key_file = root / "ca.pem", root / "ca-key.pem"
    if ca_file.exists() and ca_key_file.exists():
        authority = Authority.load(ca_file, ca_key_file)
    else:
        authority = Authority.create(ca_common_name)
        _write_cert(ca_file, authority.cert)
        _write_key(ca_key_file, authority.key)
        renew = True  # leaves of a previous CA would no longer verify
    (root / "README").write_text(README, encoding="utf-8")
    server = server_files(out)
    if renew or not _present(server):
        key, cert = authority.issue("xregion nats-server", unit="server", server_hosts=hosts)
        _write_cert(server.cert, cert)
        _write_key(server.key, key)
    clients = {}
    for party in parties:
        files = client_files(out, party)
        if renew or not _present(files):
            key, cert = authority.issue(party, unit="client", client=True)
            _write_cert(files.cert, cert)
            _write_key(files.key, key)
        clients[party] = files
    for region in leaves:
        files = leaf_files(out, region)
        if renew or not _present(files):
            key, cert = authority.issue(region, unit="leaf node", client=True, uri=f"{LEAF_URI}{region}")
            _write_cert(files.cert, cert)
            _write_key(files.key, key)
    return DevPki(root=root, ca=ca_file, ca_key=ca_key_file, server=server, clients=clients)
