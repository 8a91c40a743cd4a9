"""``xregion audit log run|status|verify``, ``xregion audit prove|consistency`` on a real
nats-server: the commands an auditor runs, their output and exit codes."""

from __future__ import annotations

import base64
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from typer.testing import CliRunner

from tests.bus import Bus
from tests.support import dev_seed, roster_key, write_keys_dir
from tests.tlog_support import delete_message, storage_attacker
from tests.tsa import LocalTsa
from xregion.cli import app
from xregion.examples import PAYLOADS
from xregion.merkle import leaf_hash, verify_consistency, verify_inclusion
from xregion.signing import KeyRoster, Signer

pytestmark = pytest.mark.anyio


async def xregion(*args: str) -> Any:
    """Run a command that does not configure logging in a worker thread (it runs its own
    event loop); those that connect to NATS configure logging, and run in a process."""
    return await anyio.to_thread.run_sync(lambda: CliRunner().invoke(app, list(args)))


@dataclass
class Done:
    exit_code: int
    stdout: str
    output: str


async def process(*args: str) -> Done:
    done = await anyio.run_process([sys.executable, "-c", "from xregion.cli import main; main()", *args], check=False)
    out, err = done.stdout.decode(), done.stderr.decode()
    return Done(done.returncode, out, out + err)


async def test_the_auditor_runs_the_log_and_proves_an_event(
    bus: Bus, tmp_path: Path, roster: KeyRoster, signers: dict[str, Signer]
) -> None:
    audit = Signer.from_seed("AUDIT", dev_seed("AUDIT"))
    roster.add(roster_key(audit))
    keys = write_keys_dir(tmp_path / "keys", {**signers, "AUDIT": audit}, roster)
    await storage_attacker(bus)
    await bus.start("BJ", "TJ", "HE")
    sent = await bus.adapters["BJ"].client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    await bus.state("BJ", sent.envelope.subject, "received")
    store = str(tmp_path / "tlog.db")
    common = ["--store", store]
    url = ["--nats-url", bus.server.url]

    tsa = LocalTsa(tmp_path / "tsa").up()
    stamping = ["--tsa-url", tsa.url, "--tsa-ca", str(tsa.ca_file)]
    trusted = ["--roster", str(keys / "roster.json")]
    try:
        # round 1, no TSA configured: checkpoint 2, which the three witnesses cosign
        run = await process("audit", "log", "run", *common, *url, "--keys-dir", str(keys), "--once")
        assert run.exit_code == 0, run.output
        for adapter in bus.adapters.values():
            assert adapter.witness is not None and await adapter.witness.step() is not None
        # round 2, with a TSA: the cosignatures gathered; a new event, checkpoint 3, stamped
        await bus.adapters["TJ"].client.send(sent.envelope.subject, "lead.accepted", PAYLOADS["lead.accepted"])
        await bus.state("BJ", sent.envelope.subject, "accepted")
        run = await process("audit", "log", "run", *common, *url, "--keys-dir", str(keys), *stamping, "--once")
        assert run.exit_code == 0, run.output
        assert tsa.requests == 1

        status = await xregion("audit", "log", "status", *common, "--json")
        assert status.exit_code == 0, status.output
        state = json.loads(status.stdout)
        assert (state["size"], state["checkpoint"], state["stamped"], state["cosigners"]) == (3, 3, 3, [])

        # prove: no checkpoint is both cosigned and stamped yet; --allow-unstamped takes checkpoint 2
        refused = await xregion("audit", "prove", sent.envelope.id, *common, *trusted)
        assert refused.exit_code == 1 and "time-stamp token" in refused.output
        proved = await xregion("audit", "prove", sent.envelope.id, *common, *trusted, "--allow-unstamped", "--json")
        assert proved.exit_code == 0, proved.output
        proof = json.loads(proved.stdout)
        assert proof["cosigned_by"] == ["BJ", "HE", "TJ"] and proof["timestamp"] is None
        assert proof["checkpoint"].startswith("xregion/XREGION\n2\n")
        nc = await bus.raw()
        stored = await nc.jetstream().get_msg(bus.settings.stream, proof["stream_seq"])
        await nc.close()
        verify_inclusion(
            leaf_hash(stored.data or b""),
            proof["leaf_index"],
            proof["tree_size"],
            [base64.b64decode(h) for h in proof["inclusion_proof"]],
            base64.b64decode(proof["root_hash"]),
        )

        # round 3: the witnesses cosign checkpoint 3; now it is cosigned and stamped
        for adapter in bus.adapters.values():
            assert adapter.witness is not None and await adapter.witness.step() is not None
        run = await process("audit", "log", "run", *common, *url, "--keys-dir", str(keys), *stamping, "--once")
        assert run.exit_code == 0, run.output
        assert tsa.requests == 1  # nothing new to stamp
    finally:
        tsa.down()
    proved = await xregion("audit", "prove", sent.envelope.id, *common, *trusted, "--json")
    assert proved.exit_code == 0, proved.output
    stamped = json.loads(proved.stdout)
    assert stamped["tree_size"] == 3 and stamped["timestamp"]["hash"] == "sha256"
    assert stamped["cosigned_by"] == ["BJ", "HE", "TJ"]

    consistent = await xregion(
        "audit", "consistency", "2", "3", *common, "--roster", str(keys / "roster.json"), "--json"
    )
    assert consistent.exit_code == 0, consistent.output
    result = json.loads(consistent.stdout)
    verify_consistency(
        2,
        3,
        base64.b64decode(result["old_root"]),
        base64.b64decode(result["new_root"]),
        [base64.b64decode(h) for h in result["consistency_proof"]],
    )

    verify = await process("audit", "log", "verify", *common, *url, *trusted, "--tsa-ca", str(tsa.ca_file))
    assert verify.exit_code == 0, verify.output
    assert "log consistent" in verify.output and "1 time-stamp tokens" in verify.output

    # the storage's owner removes the lead: log verify names it, exit 1
    await delete_message(bus, proof["stream_seq"])
    verify = await process("audit", "log", "verify", *common, *url, "--roster", str(keys / "roster.json"), "--json")
    assert verify.exit_code == 1
    found = json.loads(verify.stdout)["anomalies"]
    assert any(a["code"] == "tlog_event_removed" and a.get("event_id") == sent.envelope.id for a in found), found
