"""How every xregion process connects to NATS: one party's identity (NKey seed, mutual-TLS
files, own inbox prefix), the nats-py options, and what its errors mean.

* :class:`ClientIdentity` comes from :class:`RuntimeSettings` (``--tls-ca/--tls-cert/--tls-key``,
  ``--nkey-seed``; ``XREGION_TLS_*``, ``XREGION_NKEY_SEED``) and the party code.
* :func:`connection_options` is the one place that turns it into nats-py options
  (``tls=``, ``nkeys_seed_str=``, ``inbox_prefix=``) with callbacks that survive outages of any
  length and log permission violations as ``security event`` lines.
* A TLS or authentication failure on the *first* connect is not retried forever (it will not
  heal by itself): the error callback raises :class:`ConnectionSecurityError` naming the cause.
  A refused TCP connection is retried (the broker may simply not be up yet): for ever by the
  long-running processes, for ``timeout_s`` by a one-shot command (:func:`connect`,
  :func:`connected`), which then raises :class:`BrokerUnreachable`. Once connected every
  failure is retried (a certificate or key rotation in progress).
* A request the server's permissions refuse is only logged by nats-py (the request then
  times out): the :class:`ConnectGate` remembers the violation, and :meth:`ConnectGate.refusal`
  turns the failure that follows into :class:`PermissionDenied` naming party and subject.
* A disconnect is a warning only when nobody asked for it: closing the connection logs it
  at info.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
import weakref
from collections.abc import AsyncIterator
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


class BrokerUnreachable(XRegionError):
    """A one-shot command found no NATS server answering at its URL within its connect
    timeout (``--connect-timeout``): the broker is down, or the URL is wrong."""

    code = "broker_unreachable"


class PermissionDenied(XRegionError):
    """The server admitted the identity but its permissions refused what the command does
    (a publish or subscription violation, after which the request found no answer)."""

    code = "permission_denied"


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


JS_API_PREFIX = "$js."
DIRECT_GET_PREFIX = "$js.api.direct.get."
DURABLE = re.compile(r"^region-(\w+)$")


def restore_case(subject: str) -> str:
    """nats-py lower-cases the server's error text; put an event subject's party codes back
    in upper case (``xregion.v1.lead.submitted.tj.he`` → ``...TJ.HE``), and a JetStream API
    subject's words and xregion's stream names (``$js.api.stream.info.xregion`` →
    ``$JS.API.STREAM.INFO.XREGION``; durables ``region-BJ``). Other subjects stay as
    reported; the server's log has every one exactly."""
    tokens = subject.split(".")
    if len(tokens) == 6 and tokens[0] == ROOT:
        return ".".join([*tokens[:4], tokens[4].upper(), tokens[5].upper()])
    if subject.startswith(DIRECT_GET_PREFIX) and len(tokens) > 5:  # a direct get by subject
        return ".".join([t.upper() for t in tokens[:5]]) + "." + restore_case(".".join(tokens[5:]))
    if subject.startswith(JS_API_PREFIX):
        durables = [DURABLE.match(t) for t in tokens]
        return ".".join(f"region-{d[1].upper()}" if d else t.upper() for t, d in zip(tokens, durables, strict=True))
    return subject


def security_event(kind: str, **fields: Any) -> None:
    """One structured ``security event`` log line (never event data)."""
    log.warning("security event", kind=kind, **fields)


UNANSWERED = frozenset({"stream_read_timeout", "stream_read_failed", "topology_missing", "backup_failed"})
"""Codes of the errors a request the server refused ends in: the server answers a permission
violation with an error on the connection, not to the request, which finds no answer."""


class ConnectGate:
    """One connection's state as its callbacks see it.

    Before the connection is established, a security error ends the connect attempt;
    afterwards every error is only logged and nats-py keeps reconnecting. :meth:`open` is
    called by the code that connected; a disconnect or reconnect callback opens it too (they
    only happen after a connection). It also remembers the last permission violation
    (:meth:`refusal`) and whether the connection was closed on purpose (a disconnect is then
    no warning).
    """

    def __init__(self) -> None:
        self.established = False
        self.refused: ConnectionSecurityError | None = None
        """The security failure seen before the gate opened (a server that closes the
        connection right after the handshake does so after nats-py's connect returned)."""
        self.attempt: asyncio.Future[Any] | None = None
        """The task running nats-py's connect (security failures are raised into it only)."""
        self.connecting = True
        """nats-py's connect is under way: a security failure is raised into it. Afterwards
        it is only recorded (raising would escape from nats-py's reconnect task)."""
        self.bounded = False
        """A one-shot command's connect (with a timeout): failed attempts are logged at info,
        and the last one is named in :class:`BrokerUnreachable`."""
        self.last_error: str | None = None
        self.violation: dict[str, Any] | None = None
        """The last permission violation: ``party``, ``operation``, ``subject``."""
        self.closed = False
        """The connection was closed (on purpose: nats-py never closes it by itself, it
        reconnects for ever)."""
        self._judging: set[asyncio.Task[None]] = set()

    def open(self) -> None:
        self.established = True

    def refusal(self, exc: BaseException) -> PermissionDenied | None:
        """``exc`` as :class:`PermissionDenied` if it is how a request the server refused
        ends (a timeout, or an error whose code is in :data:`UNANSWERED`) and the server has
        reported a permission violation on this connection; else ``None``."""
        if self.violation is None or isinstance(exc, ConnectionSecurityError | PermissionDenied):
            return None
        code = getattr(exc, "code", None)
        if not (isinstance(exc, TimeoutError) or (isinstance(exc, XRegionError) and code in UNANSWERED)):
            return None
        party, operation, subject = self.violation["party"], self.violation["operation"], self.violation["subject"]
        who = party or "this client"
        whose = f"{party}'s" if party else "its party's"
        verb = "publish to" if operation == "publish" else "subscribe to"
        return PermissionDenied(
            f"the NATS server admitted {who} but does not let it {verb} {subject} (permissions violation), "
            f"which this command needs: use {whose} own certificate (--tls-cert/--tls-key) on a server whose "
            'accounts grant what `xregion ops gen-config` grants (ops/README.md, "What each party may do")',
            party=party,
            operation=operation,
            subject=subject,
            failed=code or type(exc).__name__,
        )


_GATES: weakref.WeakKeyDictionary[Any, ConnectGate] = weakref.WeakKeyDictionary()


def gate_of(nc: Any) -> ConnectGate | None:
    """The :class:`ConnectGate` of a connection :func:`connect` made (``None`` for others)."""
    try:
        return _GATES.get(nc)
    except TypeError:  # not weakly referenceable (None, a test double)
        return None


def refused_or(exc: XRegionError, nc: Any) -> XRegionError:
    """``exc``, or the :class:`PermissionDenied` it stands for on ``nc`` (a connection made
    by :func:`connect`; ``None`` or another: ``exc``)."""
    gate = gate_of(nc)
    return (gate.refusal(exc) if gate is not None else None) or exc


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
            gate.violation = {
                "party": identity.party,
                "operation": found["op"].lower(),
                "subject": restore_case(found["subject"]),
            }
            security_event("permission_violation", **gate.violation, client=name)
            return
        if not gate.established:
            refused = explain(exc, identity, url)
            if refused is not None:
                gate.refused = refused
                security_event(refused.code, client=name, party=identity.party, detail=refused.message[:300])
                # Raised only into nats-py's connect itself: from its reconnect task (a server closing
                # right after the handshake, before connect() has resumed) it would escape unhandled.
                if gate.connecting and (gate.attempt is None or asyncio.current_task() is gate.attempt):
                    raise refused
                return
            gate.last_error = f"{type(exc).__name__}: {exc}"[:200]
            if gate.bounded:  # said once, by BrokerUnreachable, if it does not come up in time
                log.info("nats connection error", client=name, error=type(exc).__name__, detail=str(exc)[:200])
                return
        log.warning("nats connection error", client=name, error=type(exc).__name__, detail=str(exc)[:200])

    async def judge_disconnect() -> None:
        # Runs once the callback's caller yields: a close has called on_closed by then.
        if gate.closed:
            log.info("nats disconnected", client=name, closed=True)
        else:
            log.warning("nats disconnected", client=name)

    async def on_disconnect() -> None:
        gate.open()
        # nats-py calls this callback and then, when the connection is being closed, the
        # closed callback, without yielding in between: decide once it has.
        task = asyncio.get_running_loop().create_task(judge_disconnect())
        gate._judging.add(task)
        task.add_done_callback(gate._judging.discard)

    async def on_reconnect() -> None:
        gate.open()
        log.info("nats reconnected", client=name)

    async def on_closed() -> None:
        gate.closed = True
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


async def connect(
    url: str, name: str, identity: ClientIdentity | None = None, *, timeout_s: float | None = None
) -> Any:
    """A nats-py connection with :func:`connection_options` (CLI tools, ADMIN topology).

    ``timeout_s=None`` waits for the broker for ever (long-running processes: it may start
    later); otherwise :class:`BrokerUnreachable` after ``timeout_s`` seconds without one
    (one-shot commands). Security failures end it at once either way.
    """
    from nats.aio.client import Client

    identity = identity or ClientIdentity()
    gate = ConnectGate()
    gate.bounded = timeout_s is not None
    options = connection_options(name, identity, gate=gate, url=url)
    nc = Client()
    attempt = asyncio.ensure_future(nc.connect(url.split(","), **options))
    gate.attempt = attempt
    try:
        # Not asyncio.timeout(): nats-py's connect loop could swallow the cancellation.
        done, _ = await asyncio.wait({attempt}, timeout=timeout_s)
    finally:
        if not attempt.done():
            attempt.cancel()
    if not done:
        await asyncio.wait({attempt}, timeout=1.0)
        await _close_within(nc, 1.0)
        last = f" (last: {gate.last_error})" if gate.last_error else ""
        raise BrokerUnreachable(
            f"no NATS server answered at {url} within {timeout_s:g} s{last}: is the broker up, and is the URL "
            "right? (--nats-url, --connect-timeout)",
            url=url,
            timeout_s=timeout_s,
        )
    attempt.result()  # a security failure: raised (nats-py's connect leaves nothing running)
    gate.connecting = False
    # One round trip before the connection counts as established: a server refusing the
    # client's certificate after the TLS handshake (not pinned) closes it only now.
    with contextlib.suppress(Exception):
        await nc.flush(timeout=FIRST_ROUND_TRIP_S)
    if gate.refused is None and not nc.is_connected:
        # Lost before the first round trip (nats-py may report it as a disconnect, not an error).
        lost = explain(ConnectionResetError("closed by the server right after connecting"), identity, url)
        if lost is not None:
            security_event(lost.code, client=name, party=identity.party, detail=lost.message[:300])
            gate.refused = lost
    if gate.refused is not None:
        with contextlib.suppress(Exception):
            await nc.close()
        raise gate.refused
    gate.open()
    _GATES[nc] = gate
    return nc


async def _close_within(nc: Any, timeout_s: float) -> None:
    """Close a connection that never was established: nats-py may wait for ever for a
    transport whose handshake did not finish."""
    closing = asyncio.ensure_future(nc.close())
    done, _ = await asyncio.wait({closing}, timeout=timeout_s)
    if not done:
        closing.cancel()
    elif not closing.cancelled():
        closing.exception()  # retrieved: nothing to do about it


@contextlib.asynccontextmanager
async def connected(
    url: str, name: str, identity: ClientIdentity | None = None, *, timeout_s: float | None = None
) -> AsyncIterator[Any]:
    """A one-shot command's connection (:func:`connect`), closed afterwards; a request the
    server's permissions refused comes out as :class:`PermissionDenied`."""
    nc = await connect(url, name, identity, timeout_s=timeout_s)
    try:
        yield nc
    except Exception as exc:
        gate = gate_of(nc)
        denied = gate.refusal(exc) if gate is not None else None
        if denied is not None:
            raise denied from exc
        raise
    finally:
        with contextlib.suppress(Exception):
            await nc.close()
