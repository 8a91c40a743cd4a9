"""A party's certificate is its identity: it is renewed without downtime and revoked before
it expires (ops/README.md "Certificates"). The new certificate is pinned next to the old one
(``gen-config`` pins every file in ``tls/clients``), the server reloaded, the adapter switched;
then the old certificate's file is removed, the pins regenerated and the server reloaded:
from then on the old certificate is refused, though the CA still vouches for it."""

from __future__ import annotations

from dataclasses import replace

import pytest
from typer.testing import CliRunner

from tests.bus import eventually
from tests.security.secure_bus import SecureBus
from xregion.cli import app
from xregion.examples import PAYLOADS
from xregion.ops.certs import Authority, _write_cert, _write_key, client_files, tls_dir
from xregion.runtime.connection import ClientIdentity, ConnectionSecurityError, connect

pytestmark = pytest.mark.anyio


def gen_config(bus: SecureBus) -> None:
    result = CliRunner().invoke(app, ["ops", "gen-config", "--out", str(bus.security.root)])
    assert result.exit_code == 0, result.output


async def admitted(bus: SecureBus, identity: ClientIdentity) -> bool:
    try:
        nc = await connect(bus.server.url, "probe", identity)
    except ConnectionSecurityError:
        return False
    await nc.close()
    return True


async def test_certificate_rotation_and_revocation_without_downtime(secure_bus: SecureBus) -> None:
    (old,) = await secure_bus.start("BJ")
    await secure_bus.start("TJ")
    root = secure_bus.security.root
    current = client_files(root, "BJ")
    retired_cert, retired_key = secure_bus.root / "BJ-retired.pem", secure_bus.root / "BJ-retired-key.pem"

    # 1. the CA issues BJ a new certificate (same party URI, new key): pinned next to the old one
    ca = Authority.load(tls_dir(root) / "ca.pem", tls_dir(root) / "ca-key.pem")
    key, cert = ca.issue("BJ", unit="client", client=True)
    new_cert, new_key = tls_dir(root) / "clients" / "BJ-2.pem", secure_bus.root / "BJ-2-key.pem"
    _write_cert(new_cert, cert)
    _write_key(new_key, key)
    new_identity = replace(secure_bus.security.identity("BJ"), tls_cert=new_cert, tls_key=new_key)
    assert not await admitted(secure_bus, new_identity), "a certificate not yet pinned must be refused"
    gen_config(secure_bus)
    secure_bus.server.reload()
    await eventually(lambda: admitted(secure_bus, new_identity), 10.0, "the server to admit BJ's new certificate")

    # the running adapter (old certificate) is not disturbed
    sent = await old.client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    await secure_bus.state("BJ", sent.envelope.subject, "received")

    # 2. BJ switches (restart with the new certificate; outbox and store kept), 3. the old one is revoked
    await old.stop()
    del secure_bus.adapters["BJ"]
    current.cert.rename(retired_cert)
    current.key.rename(retired_key)
    new_cert.rename(current.cert)
    new_key.rename(current.key)
    gen_config(secure_bus)
    secure_bus.server.reload()
    (new,) = await secure_bus.start("BJ")
    second = await new.client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    await secure_bus.state("BJ", second.envelope.subject, "received")

    retired = replace(secure_bus.security.identity("BJ"), tls_cert=retired_cert, tls_key=retired_key)

    async def old_refused() -> bool:
        return not await admitted(secure_bus, retired)

    await eventually(old_refused, 10.0, "the server to refuse BJ's revoked certificate")
    assert "Violation" not in secure_bus.server_log()
