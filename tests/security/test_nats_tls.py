"""Connecting without TLS, with a certificate of another CA or with a certificate that names
no party fails fast, with an error that names the cause (no endless reconnect loop); a region
may not declare the topology it finds missing, and says who does."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.bus import eventually
from tests.security.conftest import generate
from tests.security.secure_bus import SETTINGS, LogCapture, SecureBus
from xregion.adapter import Adapter
from xregion.cli import app
from xregion.ops.certs import server_files
from xregion.ops.security import SecurityDir
from xregion.ops.server import EmbeddedServer
from xregion.runtime.connection import (
    AuthenticationFailed,
    ClientIdentity,
    ConnectionSecurityError,
    IdentityMismatch,
    TlsClientRejected,
    TlsRequired,
    TlsUntrustedServer,
    connect,
)
from xregion.runtime.topology import TopologyError
from xregion.signing import KeyRoster, Signer

FAST_S = 5.0


def plain_url(server: EmbeddedServer) -> str:
    return f"nats://{server.config.host}:{server.config.port}"


async def refused(url: str, identity: ClientIdentity) -> ConnectionSecurityError:
    started = time.monotonic()
    with pytest.raises(ConnectionSecurityError) as caught:
        await connect(url, "test-client", identity)
    assert time.monotonic() - started < FAST_S, "a security failure must not be retried"
    return caught.value


@pytest.mark.anyio
async def test_connecting_without_tls_fails_fast_naming_the_cause(
    secure_server: EmbeddedServer, security_dir: SecurityDir, security_log: LogCapture
) -> None:
    no_tls = ClientIdentity(party="BJ")
    error = await refused(plain_url(secure_server), no_tls)
    assert isinstance(error, TlsRequired) and error.code == "tls_required"
    assert "requires TLS" in error.message and "--tls-ca" in error.message
    assert security_log.security_events("tls_required", party="BJ")


@pytest.mark.anyio
async def test_client_certificate_of_another_ca_is_rejected_by_the_server(
    secure_server: EmbeddedServer, security_dir: SecurityDir, tmp_path: Path
) -> None:
    other = generate(tmp_path / "other-ca").identity("BJ")
    genuine = security_dir.identity("BJ")
    # trusts the real server, presents a certificate from an independently generated CA
    forged = ClientIdentity("BJ", tls_ca=genuine.tls_ca, tls_cert=other.tls_cert, tls_key=other.tls_key)
    error = await refused(secure_server.url, forged)
    assert isinstance(error, TlsClientRejected) and error.code == "tls_client_rejected"
    assert "rejected BJ's client certificate" in error.message

    async def logged() -> bool | None:  # the server writes its log line after sending the TLS alert
        return True if "certificate signed by unknown authority" in secure_server.log_file.read_text() else None

    await eventually(logged, 10.0, "the server to log the refused certificate")


@pytest.mark.anyio
async def test_server_certificate_of_another_ca_is_not_trusted(
    secure_server: EmbeddedServer, security_dir: SecurityDir, tmp_path: Path
) -> None:
    other = generate(tmp_path / "other-ca").identity("BJ")
    error = await refused(secure_server.url, other)
    assert isinstance(error, TlsUntrustedServer) and error.code == "tls_server_untrusted"
    assert "not signed by the CA BJ trusts" in error.message


@pytest.mark.anyio
async def test_a_certificate_of_the_bus_ca_that_names_no_party_is_refused(
    secure_server: EmbeddedServer, security_dir: SecurityDir
) -> None:
    """The server's own certificate chains to the bus's CA, but it names no party (no URI
    SAN ``urn:xregion:party:<CODE>``) and is not pinned: no account would take it."""
    genuine = security_dir.identity("BJ")
    server = server_files(security_dir.root)
    stranger = ClientIdentity("BJ", tls_ca=genuine.tls_ca, tls_cert=server.cert, tls_key=server.key)
    error = await refused(secure_server.url, stranger)
    assert isinstance(error, AuthenticationFailed | TlsClientRejected), error


@pytest.mark.anyio
async def test_adapter_without_tls_does_not_retry_forever(
    secure_server: EmbeddedServer,
    security_dir: SecurityDir,
    tmp_path: Path,
    signers: dict[str, Signer],
    roster: KeyRoster,
) -> None:
    settings = SETTINGS.model_copy(update={"nkey_seed": security_dir.identity("BJ").nkey_seed})
    adapter = Adapter(
        "BJ",
        signer=signers["BJ"],
        roster=roster,
        nats_url=plain_url(secure_server),
        store_path=tmp_path / "BJ.db",
        settings=settings,
    )
    started = time.monotonic()
    with pytest.raises(TlsRequired):
        await adapter.start()
    assert time.monotonic() - started < FAST_S
    await adapter.stop()


@pytest.mark.anyio
async def test_region_cannot_declare_a_missing_topology_and_says_who_does(
    secure_server: EmbeddedServer,
    security_dir: SecurityDir,
    tmp_path: Path,
    signers: dict[str, Signer],
    roster: KeyRoster,
) -> None:
    adapter = Adapter(
        "BJ",
        signer=signers["BJ"],
        roster=roster,
        nats_url=secure_server.url,
        store_path=tmp_path / "BJ.db",
        settings=security_dir.settings_for("BJ", SETTINGS),
    )
    with pytest.raises(TopologyError) as caught:
        await adapter.start()
    await adapter.stop()
    assert caught.value.code == "topology_missing"
    assert "stream XREGION" in caught.value.message and "ADMIN" in caught.value.message


def test_cli_prints_the_cause_and_exits_non_zero(secure_server: EmbeddedServer, security_dir: SecurityDir) -> None:
    started = time.monotonic()
    result = CliRunner().invoke(app, ["ops", "apply-topology", "--nats-url", plain_url(secure_server)])
    assert result.exit_code == 1
    assert "tls_required" in result.output and "requires TLS" in result.output
    assert time.monotonic() - started < FAST_S


def test_cli_operator_declares_the_topology_over_tls(secure_server: EmbeddedServer, security_dir: SecurityDir) -> None:
    admin = security_dir.identity("ADMIN")
    args = ["--tls-ca", admin.tls_ca, "--tls-cert", admin.tls_cert, "--tls-key", admin.tls_key]
    command = ["ops", "apply-topology", "--nats-url", secure_server.url, *map(str, args)]
    first = CliRunner().invoke(app, command)
    assert first.exit_code == 0, first.output
    assert "created  stream XREGION" in first.output and "consumer XREGION/region-BJ" in first.output
    again = CliRunner().invoke(app, command)
    assert again.exit_code == 0 and "topology up to date" in again.output


@pytest.mark.anyio
async def test_another_partys_certificate_is_named_not_taken_for_a_missing_topology(
    secure_bus: SecureBus, tmp_path: Path
) -> None:
    """BJ's certificate given to HE: refused before connecting, naming both parties."""
    bj = secure_bus.security.identity("BJ")
    as_he = ClientIdentity("HE", tls_ca=bj.tls_ca, tls_cert=bj.tls_cert, tls_key=bj.tls_key)
    with pytest.raises(IdentityMismatch) as caught:
        await connect(secure_bus.server.url, "test-HE", as_he)
    assert caught.value.code == "identity_mismatch" and caught.value.details["admitted_as"] == "BJ"
    assert "runs as HE" in caught.value.message and "BJ's" in caught.value.message


def test_adapter_run_with_another_partys_certificate_exits_with_identity_mismatch(
    secure_server: EmbeddedServer, security_dir: SecurityDir, tmp_path: Path
) -> None:
    """Through the CLI, as an operator would mistype it: ``adapter run --region HE`` with BJ's files."""
    keys = tmp_path / "keys"
    assert CliRunner().invoke(app, ["keys", "init", "--keys-dir", str(keys)]).exit_code == 0
    bj = security_dir.identity("BJ")
    started = time.monotonic()
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "xregion"), "adapter", "run", "--region", "HE", "--keys-dir", str(keys),
         "--store", str(tmp_path / "HE.db"), "--nats-url", secure_server.url, "--tls-ca", str(bj.tls_ca),
         "--tls-cert", str(bj.tls_cert), "--tls-key", str(bj.tls_key)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "identity_mismatch" in out and "topology_missing" not in out and "Traceback" not in out, out
    assert time.monotonic() - started < 30
