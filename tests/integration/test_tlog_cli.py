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

    run = await process("audit", "log", "run", *common, *url, "--keys-dir", str(keys), "--once")
    assert run.exit_code == 0, run.output
    for adapter in bus.adapters.values():
        assert adapter.witness is not None and await adapter.witness.step() is not None
    run = await process("audit", "log", "run", *common, *url, "--keys-dir", str(keys), "--once")
    assert run.exit_code == 0, run.output

    status = await xregion("audit", "log", "status", *common, "--json")
    assert status.exit_code == 0, status.output  # no TSA configured: nothing waits for a token
    state = json.loads(status.stdout)
    assert state["size"] == 2 and state["checkpoint"] == 2 and state["cosigners"] == ["BJ", "HE", "TJ"]

    # prove: refused without a time-stamp, given with --allow-unstamped, and it verifies
    refused = await xregion("audit", "prove", sent.envelope.id, *common, "--roster", str(keys / "roster.json"))
    assert refused.exit_code == 1 and "time-stamp token" in refused.output
    trusted = ["--roster", str(keys / "roster.json")]
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

    # a second checkpoint, and a consistency proof between the two
    await bus.adapters["TJ"].client.send(sent.envelope.subject, "lead.accepted", PAYLOADS["lead.accepted"])
    await bus.state("BJ", sent.envelope.subject, "accepted")
    run = await process("audit", "log", "run", *common, *url, "--keys-dir", str(keys), "--once")
    assert run.exit_code == 0, run.output
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

    verify = await process("audit", "log", "verify", *common, *url, "--roster", str(keys / "roster.json"))
    assert verify.exit_code == 0, verify.output
    assert "log consistent" in verify.output

    # the storage's owner removes the lead: log verify names it, exit 1
    await delete_message(bus, proof["stream_seq"])
    verify = await process("audit", "log", "verify", *common, *url, "--roster", str(keys / "roster.json"), "--json")
    assert verify.exit_code == 1
    found = json.loads(verify.stdout)["anomalies"]
    assert any(a["code"] == "tlog_event_removed" and a.get("event_id") == sent.envelope.id for a in found), found
