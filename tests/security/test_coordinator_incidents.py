"""On the secured broker, the coordinator's own identity (COORD) sees every region's dead letters
and security alerts — reading XREGION_DLQ by direct get, creating no consumer — and rebuilds
the assessment from the stream into a new store (issue 18).

BJ's thief publishes a lead with a broken signature to TJ; TJ's adapter dead-letters it and
raises a signed alert.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.bus import eventually
from tests.security.secure_bus import SETTINGS, SecureBus
from tests.support import OriginChain, example_event, write_keys_dir
from xregion.codec import encode
from xregion.coordinator.incidents import Incidents
from xregion.ids import new_event_id
from xregion.regions import COORDINATOR
from xregion.signing import Signer

pytestmark = pytest.mark.anyio

XREGION = Path(sys.executable).parent / "xregion"
SUBMITTED = "xregion.v1.lead.submitted.BJ.TJ"


def broken(wire: dict[str, Any]) -> dict[str, Any]:
    signature = wire["signature"]
    return {**wire, "signature": ("A" if signature[0] != "A" else "B") + signature[1:]}


async def test_the_coordinator_sees_dead_letters_and_alerts_and_rebuilds_the_assessment(
    secure_bus: SecureBus, signers: dict[str, Signer], tmp_path: Path
) -> None:
    await secure_bus.start("TJ")
    thief = await secure_bus.connect("BJ")
    forged = broken(OriginChain(signers["BJ"]).seal(example_event("lead.submitted", sender="BJ", sealed=True)).wire)
    await thief.jetstream().publish(
        SUBMITTED, encode(forged), stream=SETTINGS.stream, headers={"Nats-Msg-Id": new_event_id()}, timeout=5.0
    )

    coord = await secure_bus.connect(COORDINATOR)
    incidents = Incidents(lambda: coord, SETTINGS.dead_letter_stream, roster=lambda: secure_bus.roster)

    async def both() -> dict[str, Any] | None:
        await incidents.refresh()
        doc = incidents.to_json(("BJ", "TJ", "HE"))
        return doc if doc["dead_letters"] and doc["security_alerts"] else None

    doc = await eventually(both, 15.0, "TJ's dead letter and alert, read as COORD")
    assert doc["available"] is True and doc["error"] is None
    assert doc["per_region"]["TJ"] == {"dead_letters": {"bad_signature": 1}, "security_alerts": {"bad_signature": 1}}
    assert doc["per_region"]["BJ"] == {"dead_letters": {}, "security_alerts": {}}
    alert = next(i for i in doc["recent"] if i["kind"] == "security_alert")
    assert (alert["verified"], alert["claimed_sender"], alert["event_id"]) == (True, "BJ", forged["id"])
    assert alert["title"] == "签名无效"
    letter = next(i for i in doc["recent"] if i["kind"] == "dead_letter")
    assert letter["original_subject"] == SUBMITTED and "data" not in json.dumps(letter)

    # The assessment, rebuilt from the stream into a new store with COORD's identity.
    keys_dir = write_keys_dir(tmp_path / "keys", {}, secure_bus.roster)
    identity = secure_bus.security.identity(COORDINATOR)
    proc = await asyncio.create_subprocess_exec(
        str(XREGION),
        *("report", "assessment", "--from", "2026-01-01", "--to", "2026-12-31", "--json", "-"),
        *("--nats-url", secure_bus.server.url, "--keys-dir", str(keys_dir), "--store", str(tmp_path / "new.db")),
        *("--tls-ca", str(identity.tls_ca), "--tls-cert", str(identity.tls_cert), "--tls-key", str(identity.tls_key)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    report = json.loads(out)
    # The coordinator projects the forged lead (it reports, never refuses); the assessment
    # judges nobody on it: left out, and named.
    assert report["source"]["anomalies"] == {"bad_signature": 1}
    assert report["source"]["excluded_referrals"] == [forged["subject"]]
    assert report["per_region"]["TJ"]["received"]["all"]["referrals"] == 0
