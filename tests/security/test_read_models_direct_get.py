"""COORD and AUDIT read the streams with no consumer right (issue 14 item 1, ARCHITECTURE §7).

A consumer-create request lets its sender choose where the server delivers, so the readers'
identities are to keep only ``$JS.API.INFO``, ``STREAM.INFO`` and direct gets on the event
and dead-letter streams. This test takes every consumer right (create, delete, info,
MSG.NEXT, acks, flow control) away from COORD and AUDIT in the generated ``auth.conf`` and
runs, through the CLI with those identities: ``status`` catching up into a new store,
``coordinator rebuild`` (equal tables), and ``audit replay`` (clean).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

import pytest

from tests.security.conftest import generate
from tests.security.secure_bus import SecureBus
from xregion.coordinator.projection import Projection
from xregion.examples import PAYLOADS
from xregion.keys import ROSTER_FILE
from xregion.ops.security import SecurityDir
from xregion.regions import AUDITOR, COORDINATOR

pytestmark = pytest.mark.anyio

XREGION_BIN = Path(sys.executable).parent / "xregion"
CONSUMER_RIGHT = re.compile(r"\$JS\.(API\.CONSUMER\.|ACK\.|FC\.)")


def without_consumer_rights(security: SecurityDir, *parties: str) -> None:
    """Take every consumer subject away from ``parties`` in ``auth.conf``: out of the bus
    account's exports to them, their accounts' imports and their users' publish permissions."""
    out, account = [], None
    for line in security.auth_file.read_text(encoding="utf-8").splitlines():
        top = re.match(r"  (\w+): \{", line)
        if top:
            account = top[1]
        export = re.match(r'(\s*\{ service: "([^"]+)", accounts: \[)([^\]]*)(\].*)', line)
        if export and CONSUMER_RIGHT.search(export[2]):
            kept = [a for a in export[3].split(", ") if a.strip('"') not in parties]
            if kept:
                out.append(f"{export[1]}{', '.join(kept)}{export[4]}")
            continue
        if account in parties:
            if "service: { account:" in line and CONSUMER_RIGHT.search(line):
                continue  # an import
            allow = re.search(r"publish: \{ allow: \[([^\]]*)\]", line)
            if allow:
                kept = [s for s in allow[1].split(", ") if not CONSUMER_RIGHT.search(s)]
                line = line.replace(allow[1], ", ".join(kept))
        out.append(line)
    text = "\n".join(out) + "\n"
    for who in parties:  # what is left for them: direct gets, no consumer subject at all
        block = text.split(f"\n  {who}: {{", 1)[1].split("\n  }", 1)[0]
        assert "$JS.API.DIRECT.GET.XREGION" in block and not CONSUMER_RIGHT.search(block), block
        for export in re.findall(r'service: "([^"]+)", accounts: \[([^\]]*)\]', text):
            assert not (CONSUMER_RIGHT.search(export[0]) and f'"{who}"' in export[1]), export
    security.auth_file.write_text(text, encoding="utf-8")


@pytest.fixture
def security_dir(tmp_path: Path) -> SecurityDir:
    security = generate(tmp_path / "security")
    without_consumer_rights(security, COORDINATOR, AUDITOR)
    return security


def identity_options(bus: SecureBus, party: str) -> list[str]:
    identity = bus.security.identity(party)
    options = [
        "--nats-url", bus.server.url,
        "--tls-ca", str(identity.tls_ca),
        "--tls-cert", str(identity.tls_cert),
        "--tls-key", str(identity.tls_key),
    ]  # fmt: skip
    seed = getattr(identity, "nkey_seed", None)
    return [*options, "--nkey-seed", str(seed)] if seed is not None else options


async def run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(XREGION_BIN), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(90):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_coord_and_audit_read_the_streams_without_any_consumer_right(
    secure_bus: SecureBus, tmp_path: Path
) -> None:
    bus = secure_bus
    await bus.start("BJ", "TJ")
    rids = []
    for _ in range(3):
        sent = await bus.adapters["BJ"].client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
        rids.append(sent.envelope.subject)
    for rid in rids:
        await bus.state("BJ", rid, "received")
    keys = tmp_path / "keys"
    keys.mkdir()
    bus.roster.save(keys / ROSTER_FILE)

    coord = identity_options(bus, COORDINATOR)
    store = tmp_path / "status.db"
    code, out, err = await run_cli("status", *coord, "--keys-dir", str(keys), "--store", str(store), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert sorted(r["referral_id"] for r in doc["referrals"]) == sorted(rids)
    assert doc["summary"]["anomalies"] == 0 and doc["summary"]["last_seq"] == 6

    rebuilt = tmp_path / "rebuilt.db"
    code, _, err = await run_cli("coordinator", "rebuild", *coord, "--keys-dir", str(keys), "--store", str(rebuilt))
    assert code == 0, err
    with Projection(store) as a, Projection(rebuilt) as b:
        assert a.dump() == b.dump()

    code, out, err = await run_cli(
        "audit", "replay", *identity_options(bus, AUDITOR), "--roster", str(keys / ROSTER_FILE)
    )
    assert code == 0, out + err
