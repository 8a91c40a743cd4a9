"""A real nats-server secured with freshly generated identities and certificates.

``security_dir`` runs ``xregion ops gen-config`` and ``xregion ops gen-certs`` (the real CLI)
into ``tmp_path``; ``secure_server`` starts nats-server with the generated ``auth.conf`` and
mutual TLS on a free loopback port; ``secure_bus`` declares the topology as the operator
(ADMIN) and gives adapters and raw connections under each party's own identity.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

from tests.security.secure_bus import SETTINGS, LogCapture, SecureBus
from xregion.cli import app
from xregion.config import load_config
from xregion.logs import configure_logging
from xregion.ops.operator import apply_topology
from xregion.ops.security import SecurityDir
from xregion.ops.server import EmbeddedServer, ServerConfig, free_port
from xregion.permissions import OPERATOR
from xregion.signing import KeyRoster, Signer

REGIONS = load_config().regions.codes


def generate(out: Path) -> SecurityDir:
    """``xregion ops gen-config --out OUT`` and ``xregion ops gen-certs --out OUT``."""
    runner = CliRunner()
    for command in ("gen-config", "gen-certs"):
        result = runner.invoke(app, ["ops", command, "--out", str(out)])
        assert result.exit_code == 0, result.output
    return SecurityDir(out)


@pytest.fixture
def security_dir(tmp_path: Path) -> SecurityDir:
    return generate(tmp_path / "security")


@pytest.fixture
def secure_server(tmp_path: Path, security_dir: SecurityDir) -> Iterator[EmbeddedServer]:
    config = security_dir.secure(ServerConfig(store_dir=tmp_path / "nats", port=free_port()))
    server = EmbeddedServer(config).start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def security_log() -> Iterator[LogCapture]:
    """Our structured log, captured as JSON lines."""
    capture = LogCapture()
    configure_logging("json", stream=capture.stream)
    try:
        yield capture
    finally:
        structlog.reset_defaults()


@pytest.fixture
async def secure_bus(
    secure_server: EmbeddedServer,
    security_dir: SecurityDir,
    tmp_path: Path,
    signers: dict[str, Signer],
    roster: KeyRoster,
    security_log: LogCapture,
) -> AsyncIterator[SecureBus]:
    await apply_topology(secure_server.url, REGIONS, identity=security_dir.identity(OPERATOR), settings=SETTINGS)
    bus = SecureBus(secure_server, security_dir, tmp_path, signers, roster, security_log)
    try:
        yield bus
    finally:
        await bus.stop()
