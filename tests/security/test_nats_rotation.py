"""An NKey is rotated without downtime: add the new user, reload, switch, remove the old
one, reload (ops/README.md). The adapter keeps working throughout; afterwards the old key
is refused."""

from __future__ import annotations

from dataclasses import replace

import pytest
from typer.testing import CliRunner

from tests.bus import eventually
from tests.security.secure_bus import SecureBus
from xregion.cli import app
from xregion.examples import PAYLOADS
from xregion.runtime.connection import AuthenticationFailed, connect
from xregion.runtime.identities import new_seed, public_key, public_keys_path, seed_path, write_seed

pytestmark = pytest.mark.anyio


def gen_config(bus: SecureBus) -> None:
    result = CliRunner().invoke(app, ["ops", "gen-config", "--out", str(bus.security.root)])
    assert result.exit_code == 0, result.output


async def test_nkey_rotation_without_downtime(secure_bus: SecureBus) -> None:
    (old,) = await secure_bus.start("BJ")
    await secure_bus.start("TJ")
    old_seed = secure_bus.security.identity("BJ").nkey_seed
    assert old_seed is not None

    # 1. the agency generates a new key and hands over its public half; the operator adds it
    new_seed_file = secure_bus.root / "agency-BJ" / "BJ.nk"
    write_seed(new_seed_file, new_seed())
    new_public = public_key(new_seed_file.read_text().strip())
    public_keys_path(secure_bus.security.root, "BJ").write_text(new_public + "\n")
    gen_config(secure_bus)
    assert (secure_bus.security.root / "auth.conf").read_text().count("# BJ (region)") == 2  # old and new
    secure_bus.server.reload()
    new_identity = secure_bus.security.identity("BJ")
    new_identity = type(new_identity)(
        "BJ", new_seed_file, new_identity.tls_ca, new_identity.tls_cert, new_identity.tls_key
    )

    async def new_key_admitted() -> bool:
        try:
            nc = await connect(secure_bus.server.url, "probe", new_identity)
        except AuthenticationFailed:
            return False
        await nc.close()
        return True

    await eventually(new_key_admitted, 10.0, "the server to admit BJ's new key after the reload")

    # the running adapter (old key) is not disturbed
    sent = await old.client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    await secure_bus.state("BJ", sent.envelope.subject, "received")

    # 2. BJ switches to the new key (restart with the new seed; its outbox and store are kept)
    await old.stop()
    del secure_bus.adapters["BJ"]
    old_seed.rename(secure_bus.root / "BJ-retired.nk")  # 3. the operator retires the old key
    seed_path(secure_bus.security.root, "BJ").write_text(new_seed_file.read_text())
    public_keys_path(secure_bus.security.root, "BJ").unlink()
    gen_config(secure_bus)
    secure_bus.server.reload()
    (new,) = await secure_bus.start("BJ")
    second = await new.client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    await secure_bus.state("BJ", second.envelope.subject, "received")

    retired = replace(new_identity, nkey_seed=secure_bus.root / "BJ-retired.nk")

    async def old_key_refused() -> bool:
        try:
            nc = await connect(secure_bus.server.url, "probe", retired)
        except AuthenticationFailed:
            return True
        await nc.close()
        return False

    await eventually(old_key_refused, 10.0, "the server to refuse BJ's retired key")
    assert "Violation" not in secure_bus.server_log()
