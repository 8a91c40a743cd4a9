"""How every xregion process connects to NATS: one party's identity (NKey seed, mutual-TLS
files, own inbox prefix), the nats-py options, and what its errors mean.

* :class:`ClientIdentity` comes from :class:`RuntimeSettings` (``--tls-ca/--tls-cert/--tls-key``,
  ``--nkey-seed``; ``XREGION_TLS_*``, ``XREGION_NKEY_SEED``) and the party code.
* :func:`connection_options` is the one place that turns it into nats-py options
  (``tls=``, ``nkeys_seed_str=``, ``inbox_prefix=``) with callbacks that survive outages of any
  length and log permission violations as ``security event`` lines.
* A TLS or authentication failure on the *first* connect is not retried forever (it will not
  heal by itself): the error callback raises :class:`ConnectionSecurityError` naming the cause.
  A refused TCP connection is retried as before (the broker may simply not be up yet), and
  once connected every failure is retried (a certificate or key rotation in progress).
"""

from __future__ import annotations

import contextlib
import logging
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from cryptography import x509

from xregion.errors import ConfigError, XRegionError
from xregion.permissions import PARTY_URI, inbox_prefix
from xregion.runtime import nats_compat  # noqa: F401  (on import: nats-py survives subjects that are not UTF-8)
from xregion.runtime.settings import RuntimeSettings
from xregion.subjects import ROOT

log = structlog.get_logger("xregion.security")


class _SslEofNoise(logging.Filter):
    """asyncio warns "returning true from eof_received() has no effect when using ssl" each
    time nats-py closes a TLS connection: true, harmless, and alarming in an operator's log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "eof_received()" not in record.getMessage()


logging.getLogger("asyncio").addFilter(_SslEofNoise())

PERMISSIONS_VIOLATION = re.compile(
    r"permissions violation for (?P<op>publish|subscription) to \"?(?P<subject>[^\"'\s]+)", re.IGNORECASE
)


class ConnectionSecurityError(XRegionError):
    """The server and this client could not establish a secure, authenticated connection."""

    code = "connection_security"


class TlsRequired(ConnectionSecurityError):
    """The server requires TLS with a client certificate; this client has none configured."""

    code = "tls_required"


class TlsUntrustedServer(ConnectionSecurityError):
    """The server's certificate does not chain to the CA this client trusts."""

    code = "tls_server_untrusted"


class TlsClientRejected(ConnectionSecurityError):
    """The server refused this client's certificate (another CA, expired, missing)."""

    code = "tls_client_rejected"


class AuthenticationFailed(ConnectionSecurityError):
    """The server does not know this identity (or none was given)."""

    code = "auth_failed"


class IdentityMismatch(ConnectionSecurityError):
    """The client certificate names another party than the one this client runs as (e.g.
    BJ's certificate given to HE's adapter): the server would admit it as that other party,
    and refuse everything it then did; said before connecting."""

    code = "identity_mismatch"


def read_seed(path: Path) -> str:
    """The seed in an NKey seed file (comment lines starting with ``#`` are ignored)."""
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read NKey seed file {path}: {exc.strerror}", path=str(path)) from None
    seeds = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if len(seeds) != 1 or not seeds[0].startswith("SU"):
        raise ConfigError(f"{path} does not hold exactly one NKey user seed (SU...)", path=str(path))
    return seeds[0]


@dataclass(frozen=True)
class ClientIdentity:
    """Who connects: a party code and its credentials (all optional: plain, unauthenticated)."""

    party: str | None = None
    nkey_seed: Path | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @classmethod
    def from_settings(cls, settings: RuntimeSettings, party: str | None = None) -> ClientIdentity:
        return cls(
            party=party,
            nkey_seed=settings.nkey_seed,
            tls_ca=settings.tls_ca,
            tls_cert=settings.tls_cert,
            tls_key=settings.tls_key,
        )

    @property
    def uses_tls(self) -> bool:
        return self.tls_ca is not None or self.tls_cert is not None

    @property
    def authenticated(self) -> bool:
        """Does it present credentials (a client certificate, which the secured broker maps to
        a party, or an NKey)? Without any it is an open development server's client."""
        return self.tls_cert is not None or self.nkey_seed is not None

    def ssl_context(self) -> ssl.SSLContext | None:
        """Verify the server against ``tls_ca`` and present ``tls_cert``/``tls_key``."""
        if not self.uses_tls:
            return None
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConnectionSecurityError("--tls-cert and --tls-key go together", party=self.party)
        try:
            context = ssl.create_default_context(
                ssl.Purpose.SERVER_AUTH, cafile=str(self.tls_ca) if self.tls_ca else None
            )
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            if self.tls_cert is not None and self.tls_key is not None:
                context.load_cert_chain(str(self.tls_cert), str(self.tls_key))
        except (OSError, ssl.SSLError) as exc:
            raise ConnectionSecurityError(
                f"cannot load the TLS files ({self.tls_ca}, {self.tls_cert}, {self.tls_key}): {exc}",
                party=self.party,
            ) from None
        return context

    def certificate_party(self) -> str | None:
        """The party the client certificate names (its URI SAN ``urn:xregion:party:<CODE>``),
        if it names one."""
        if self.tls_cert is None:
            return None
        try:
            cert = x509.load_pem_x509_certificate(self.tls_cert.read_bytes())
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (OSError, ValueError, x509.ExtensionNotFound):
            return None  # unreadable files are reported by ssl_context(); no SAN: not ours to judge
        uris = [u for u in names.get_values_for_type(x509.UniformResourceIdentifier) if u.startswith(PARTY_URI)]
        return uris[0].removeprefix(PARTY_URI) if uris else None

    def nats_options(self) -> dict[str, Any]:
        """``tls``, ``nkeys_seed_str`` and ``inbox_prefix`` for nats-py; refuses a certificate
        that names another party than ``party`` before anything is sent."""
        options: dict[str, Any] = {}
        named = self.certificate_party()
        if self.party is not None and named is not None and named != self.party:
            raise IdentityMismatch(
                f"this runs as {self.party}, but the certificate {self.tls_cert} is {named}'s: "
                f"give {self.party}'s own certificate (--tls-cert/--tls-key)",
                party=self.party,
                admitted_as=named,
            )
        context = self.ssl_context()
        if context is not None:
            options["tls"] = context
        if self.nkey_seed is not None:
            # The seed, not the file: nats-py reads a seed file whole, and ours may carry comments.
            options["nkeys_seed_str"] = read_seed(self.nkey_seed)
        if self.party is not None:
            options["inbox_prefix"] = inbox_prefix(self.party)
        return options


def explain(exc: BaseException, identity: ClientIdentity, url: str = "") -> ConnectionSecurityError | None:
    """The security failure behind a connect error, in words; ``None`` if it is not one
    (a refused or reset TCP connection, a timeout: retry those)."""
    who = identity.party or "this client"
    where = f" at {url}" if url else ""
    text = str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text:
        if not identity.uses_tls:
            return TlsRequired(
                f"the NATS server{where} requires TLS with a client certificate, and {who} has none "
                "configured: pass --tls-ca, --tls-cert and --tls-key (XREGION_TLS_CA/_CERT/_KEY), "
                f"or run a development server with --insecure ({exc})",
                party=identity.party,
            )
        return TlsUntrustedServer(
            f"TLS: the NATS server's certificate{where} is not signed by the CA {who} trusts "
            f"({identity.tls_ca}): {getattr(exc, 'verify_message', '') or exc}",
            party=identity.party,
        )
    if isinstance(exc, ssl.SSLError):
        reason = getattr(exc, "reason", None) or text
        if "UNKNOWN_CA" in str(reason) or "BAD_CERTIFICATE" in str(reason) or "CERTIFICATE" in str(reason):
            return TlsClientRejected(
                f"TLS: the NATS server{where} rejected {who}'s client certificate ({identity.tls_cert}): "
                f"it is not issued by a CA the server trusts ({reason})",
                party=identity.party,
            )
        return TlsClientRejected(f"TLS handshake with the NATS server{where} failed: {reason}", party=identity.party)
    if "authorization violation" in text.lower() or type(exc).__name__ == "AuthorizationError":
        if identity.tls_cert is not None:
            how = (
                f"the client certificate {identity.tls_cert} names no party the server admits "
                "(its URI SAN must be urn:xregion:party:<CODE>; `xregion ops gen-certs --renew` issues such ones)"
            )
        elif identity.nkey_seed is not None:
            how = f"the NKey in {identity.nkey_seed} is not one of its users"
        else:
            how = "no credentials were given (--tls-cert/--tls-key)"
        return AuthenticationFailed(
            f"the NATS server{where} refused {who}'s identity: authorization violation — {how}",
            party=identity.party,
        )
    if identity.uses_tls and isinstance(exc, BrokenPipeError | ConnectionResetError):
        if identity.tls_cert is None:
            return TlsClientRejected(
                f"the NATS server{where} closed the TLS handshake: it requires a client certificate "
                "(--tls-cert/--tls-key)",
                party=identity.party,
            )
        # Before the first connection only (the gate): a server that pins certificates closes
        # the connection right after a handshake with one it does not pin.
        return TlsClientRejected(
            f"the NATS server{where} closed the connection after the TLS handshake: it does not accept "
            f"{who}'s client certificate {identity.tls_cert} (not among its pinned certificates: revoked, or "
            "issued after the server's pinned.conf was generated — ops/README.md, rotation and revocation)",
            party=identity.party,
        )
    return None


def restore_case(subject: str) -> str:
    """nats-py lower-cases the server's error text; put an event subject's party codes back
    in upper case (``xregion.v1.lead.submitted.tj.he`` → ``...TJ.HE``). Other subjects stay
    as reported; the server's log has every one exactly."""
    tokens = subject.split(".")
    if len(tokens) == 6 and tokens[0] == ROOT:
        return ".".join([*tokens[:4], tokens[4].upper(), tokens[5].upper()])
    return subject


def security_event(kind: str, **fields: Any) -> None:
    """One structured ``security event`` log line (never event data)."""
    log.warning("security event", kind=kind, **fields)


class ConnectGate:
    """Tells the error callback whether the connection has been established once.

    Before that, a security error ends the connect attempt; afterwards every error is only
    logged and nats-py keeps reconnecting. :meth:`open` is called by the code that connected;
    a disconnect or reconnect callback opens it too (they only happen after a connection).
    """

    def __init__(self) -> None:
        self.established = False
        self.refused: ConnectionSecurityError | None = None
        """The security failure seen before the gate opened (a server that closes the
        connection right after the handshake does so after nats-py's connect returned)."""
        self.connecting = True
        """nats-py's connect is under way: a security failure is raised into it. Afterwards
        it is only recorded (raising would escape from nats-py's reconnect task)."""

    def open(self) -> None:
        self.established = True


FIRST_ROUND_TRIP_S = 2


def connection_options(
    name: str,
    identity: ClientIdentity | None = None,
    *,
    gate: ConnectGate | None = None,
    url: str = "",
) -> dict[str, Any]:
    """nats-py options for a process that must survive outages of any length.

    ``max_reconnect_attempts=-1``: the client never gives up, so it never reaches the
    closed state in which FastStream's pull loops spin (field notes, pitfall 1).
    """
    identity = identity or ClientIdentity()
    gate = gate or ConnectGate()

    async def on_error(exc: Exception) -> None:
        found = PERMISSIONS_VIOLATION.search(str(exc))
        if found:
            security_event(
                "permission_violation",
                operation=found["op"].lower(),
                subject=restore_case(found["subject"]),
                client=name,
                party=identity.party,
            )
            return
        if not gate.established:
            refused = explain(exc, identity, url)
            if refused is not None:
                gate.refused = refused
                security_event(refused.code, client=name, party=identity.party, detail=refused.message[:300])
                if gate.connecting:
                    raise refused
                return
        log.warning("nats connection error", client=name, error=type(exc).__name__, detail=str(exc)[:200])

    async def on_disconnect() -> None:
        gate.open()
        log.warning("nats disconnected", client=name)

    async def on_reconnect() -> None:
        gate.open()
        log.info("nats reconnected", client=name)

    async def on_closed() -> None:
        log.info("nats connection closed", client=name)

    return {
        "name": name,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 1,
        "allow_reconnect": True,
        "error_cb": on_error,
        "disconnected_cb": on_disconnect,
        "reconnected_cb": on_reconnect,
        "closed_cb": on_closed,
        **identity.nats_options(),
    }


async def connect(url: str, name: str, identity: ClientIdentity | None = None) -> Any:
    """A nats-py connection with :func:`connection_options` (CLI tools, ADMIN topology)."""
    import nats

    gate = ConnectGate()
    nc = await nats.connect(url.split(","), **connection_options(name, identity, gate=gate, url=url))
    gate.connecting = False
    # One round trip before the connection counts as established: a server refusing the
    # client's certificate after the TLS handshake (not pinned) closes it only now.
    with contextlib.suppress(Exception):
        await nc.flush(timeout=FIRST_ROUND_TRIP_S)
    if gate.refused is None and not nc.is_connected:
        # Lost before the first round trip (nats-py may report it as a disconnect, not an error).
        lost = explain(
            ConnectionResetError("closed by the server right after connecting"), identity or ClientIdentity(), url
        )
        if lost is not None:
            party = identity.party if identity else None
            security_event(lost.code, client=name, party=party, detail=lost.message[:300])
            gate.refused = lost
    if gate.refused is not None:
        with contextlib.suppress(Exception):
            await nc.close()
        raise gate.refused
    gate.open()
    return nc
