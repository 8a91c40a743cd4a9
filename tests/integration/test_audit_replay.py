"""The auditor against a real nats-server: the demo scenario replays clean, its state at
every moment equals the coordinator's projection, exported archives verify, and history
rewritten by whoever holds the server's storage (an ADMIN connection deleting a message,
publishing a forged event, a region's checkpoint contradicting the others) is named."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from rich.console import Console

from tests.bus import Bus
from tests.support import PARTIES, dev_roster, dev_signers, write_keys_dir
from xregion.auditor.checkpoints import collect
from xregion.auditor.replay import Record, Replayer, ReplayResult
from xregion.auditor.source import read_stream
from xregion.auditor.state import state_at
from xregion.chain import ChainHead
from xregion.checkpoint import checkpoint_subject, sign_checkpoint
from xregion.config import load_config
from xregion.demo import (
    Scenario,
    blacklist,
    joint_investigation,
    lead_accepted_and_concluded,
    lead_forwarded,
    recognition,
)
from xregion.ops.server import EmbeddedServer
from xregion.runtime.settings import RuntimeSettings
from xregion.runtime.topology import event_stream_config
from xregion.signing import KeyRoster, Signer
from xregion.subjects import CHECKPOINT_ROOT

pytestmark = pytest.mark.anyio
REGISTRY = load_config().regions
SETTINGS = RuntimeSettings(ack_wait_s=5.0, max_deliver=5, checkpoint_interval_s=0.5)


@pytest.fixture
def all_signers() -> dict[str, Signer]:
    return dev_signers((*PARTIES, "AUDIT"))


@pytest.fixture
def all_keys(all_signers: dict[str, Signer]) -> KeyRoster:
    return dev_roster(all_signers)


@pytest.fixture
async def audit_bus(
    nats_server: EmbeddedServer, tmp_path: Path, all_signers: dict[str, Signer], all_keys: KeyRoster
) -> AsyncIterator[Bus]:
    the_bus = Bus(nats_server, tmp_path, all_signers, all_keys, settings=SETTINGS)
    try:
        yield the_bus
    finally:
        await the_bus.stop()


async def settle(bus: Bus) -> None:
    """Everything published and handled; then every region checkpoints what it saw."""
    for adapter in bus.adapters.values():
        await adapter.wait_published()
    await asyncio.sleep(0.3)
    for adapter in bus.adapters.values():
        await adapter.wait_published()
    for adapter in bus.adapters.values():
        await adapter.publish_checkpoint(force=True)


async def stored(bus: Bus) -> tuple[list[Record], list[Record]]:
    nc = await bus.raw()
    try:
        js = nc.jetstream()
        events = [r async for r in read_stream(js, SETTINGS.stream)]
        checkpoints = [
            r async for r in read_stream(js, SETTINGS.dead_letter_stream, filter_subject=f"{CHECKPOINT_ROOT}.>")
        ]
        return events, checkpoints
    finally:
        await nc.close()


def audit(events: list[Record], checkpoints: list[Record], keys: KeyRoster) -> ReplayResult:
    found = collect(checkpoints, keys)
    replayer = Replayer(keys, REGISTRY, attestations=found.attestations)
    replayer.result.anomalies.extend(found.anomalies)
    replayer.result.checkpoints = found.count
    return replayer.run(events)


def xregion(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from xregion.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_the_demo_replays_clean_and_its_state_at_every_moment_equals_the_projection(
    audit_bus: Bus, tmp_path: Path, all_keys: KeyRoster, all_signers: dict[str, Signer]
) -> None:
    bus = audit_bus
    await bus.start("BJ", "TJ", "HE")
    sc = Scenario(bus.adapters, Console(file=open("/dev/null", "w")))  # noqa: SIM115
    await lead_accepted_and_concluded(sc)
    await lead_forwarded(sc)
    await joint_investigation(sc, tmp_path)
    await recognition(sc)
    await blacklist(sc)
    await settle(bus)
    events, checkpoints = await stored(bus)
    assert len(checkpoints) >= 3

    result = audit(events, checkpoints, all_keys)
    assert [a.line() for a in result.anomalies] == []
    assert result.events == len(events)
    assert set(result.heads) == {"BJ", "TJ", "HE"}
    assert result.checkpoints >= 3
    assert {p: s.on_time for p, s in result.pairs.items() if s.requests} == {
        p: s.requests for p, s in result.pairs.items() if s.requests
    }

    # The state at every moment equals what the coordinator's projection showed then.
    from xregion.coordinator.projection import Projection

    def verify(wire: dict[str, object], env: object, at: object) -> None:
        all_keys.verify(wire, env.sender, env.time, received_at=at, grace=timedelta(hours=1))  # type: ignore[attr-defined]

    projection = Projection(tmp_path / "coordinator.sqlite", config=load_config(), verify=verify).open()
    try:
        for i, record in enumerate(events):
            projection.apply(record.raw, record.seq, record.stored_at)
            if i + 1 < len(events) and events[i + 1].stored_at == record.stored_at:
                continue  # the same instant: compare after both
            ours = state_at(events, record.stored_at, all_keys, REGISTRY)
            theirs = {v.referral_id: v for v in projection.referrals()}
            assert set(ours) == set(theirs), f"at stream seq {record.seq}"
            for rid, state in ours.items():
                view = theirs[rid]
                got = (view.family, view.origin, view.addressee, view.state, dict(view.tracks), view.events)
                want = (state.family, state.origin, state.addressee, state.state, dict(state.tracks), state.events)
                assert got == want, f"{rid} at stream seq {record.seq}"
    finally:
        projection.close()

    # ... and at the end equals every origin adapter's own view.
    final = state_at(events, events[-1].stored_at, all_keys, REGISTRY)
    for _, origin, rid in sc.referrals:
        view = await bus.adapters[origin].client.referral(rid)
        assert view is not None
        assert replace(final[rid], last_event_id=view.last_event_id) == view

    # The CLI: replay, state --at, export, verify (offline), report.
    keys_dir = write_keys_dir(tmp_path / "keys", all_signers, all_keys)
    roster = str(keys_dir / "roster.json")
    url = bus.server.url
    out = await asyncio.to_thread(xregion, "audit", "replay", "--nats-url", url, "--roster", roster)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"ok: {len(events)} events" in out.stdout
    middle = events[len(events) // 2]
    at = middle.stored_at.isoformat()
    out = await asyncio.to_thread(
        xregion, "audit", "state", "--at", at, "--nats-url", url, "--roster", roster, "--json"
    )
    assert out.returncode == 0, out.stderr
    printed = {s["referral_id"]: s for s in json.loads(out.stdout)}
    expected = state_at(events, middle.stored_at, all_keys, REGISTRY)
    assert {k: (v["state"], v["tracks"], v["events"]) for k, v in printed.items()} == {
        k: (v.state, dict(sorted(v.tracks.items())), v.events) for k, v in expected.items()
    }
    archive = tmp_path / "archive"
    args = ("--nats-url", url, "--keys-dir", str(keys_dir), "--segment-events", "10")
    out = await asyncio.to_thread(xregion, "audit", "export", "--out", str(archive), *args)
    assert out.returncode == 0, out.stdout + out.stderr
    out = await asyncio.to_thread(xregion, "audit", "verify", str(archive), "--roster", roster)
    assert out.returncode == 0, out.stdout + out.stderr
    out = await asyncio.to_thread(xregion, "audit", "export", "--out", str(archive), *args)  # incremental: nothing new
    assert "exported 0 new events" in out.stdout, out.stdout + out.stderr
    report = tmp_path / "report.html"
    out = await asyncio.to_thread(
        xregion,
        "audit",
        "report",
        "--archive",
        str(archive),
        "--roster",
        roster,
        "--html",
        str(report),
        "--json",
        str(tmp_path / "report.json"),
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "No anomalies" in report.read_text(encoding="utf-8")
    assert json.loads((tmp_path / "report.json").read_text())["events"] == len(events)


async def test_history_rewritten_through_the_servers_storage_is_named(
    audit_bus: Bus, all_keys: KeyRoster, all_signers: dict[str, Signer]
) -> None:
    bus = audit_bus
    # The operator's storage is the attacker: a stream that allows deleting messages.
    nc = await bus.raw()
    js = nc.jetstream()
    config = event_stream_config(SETTINGS)
    config.deny_delete = False
    await js.add_stream(config)
    await bus.start("BJ", "TJ", "HE")
    sc = Scenario(bus.adapters, Console(file=open("/dev/null", "w")))  # noqa: SIM115
    await lead_accepted_and_concluded(sc)
    await blacklist(sc)
    await settle(bus)
    events, _ = await stored(bus)
    by_type = {}
    for record in events:
        wire = json.loads(record.raw)
        by_type.setdefault((wire["source"].split(":")[2], wire["type"].split(".")[4]), []).append((record, wire))
    try:
        # 1. Remove TJ's lead.accepted (mid-chain) and HE's last event (the tail of its chain).
        accepted, _ = by_type[("TJ", "accepted")][0]
        removed_tail, tail_wire = by_type[("HE", "blacklist_removed")][-1]
        assert tail_wire["originseq"] == max(w["originseq"] for (o, _), v in by_type.items() if o == "HE" for _, w in v)
        await js.delete_msg(SETTINGS.stream, accepted.seq)
        await js.delete_msg(SETTINGS.stream, removed_tail.seq)
        # 2. Inject a forged event: BJ's lead, its title changed, BJ's signature kept.
        original, wire = by_type[("BJ", "submitted")][0]
        forged = dict(wire, id=wire["id"][:-4] + "ffff", data=dict(wire["data"], title="伪造的线索"))
        await js.publish(
            original.subject, json.dumps(forged, ensure_ascii=False).encode(), headers={"Nats-Msg-Id": forged["id"]}
        )
        # 3. A region's checkpoint contradicting the others about BJ's first event.
        lie = sign_checkpoint(
            all_signers["HE"], {"BJ": ChainHead(1, "sha256:" + "ab" * 32)}, events[-1].stored_at + timedelta(seconds=1)
        )
        await js.publish(checkpoint_subject("HE"), lie)
        await asyncio.sleep(0.2)
    finally:
        await nc.close()

    events, checkpoints = await stored(bus)
    result = audit(events, checkpoints, all_keys)
    by_code: dict[str, list[str]] = {}
    for anomaly in result.anomalies:
        by_code.setdefault(anomaly.code, []).append(anomaly.line())
    report = "\n".join(a.line() for a in result.anomalies)
    # the mid-chain removal: TJ's origin chain has a gap right after it
    assert any("TJ event" in line and "expected" in line for line in by_code.get("chain_gap", [])), report
    # the tail removal: only the checkpoints of BJ and TJ (who received it) can tell
    assert any(f"HE event {tail_wire['originseq']}" in line for line in by_code.get("event_removed", [])), report
    # the forgery: its signature does not verify, named with its id
    assert any(forged["id"] in line for line in by_code.get("bad_signature", [])), report
    # the lying checkpoint: it disagrees with the others, and with the stream
    assert by_code.get("checkpoint_fork"), report
    assert any("HE" in line for line in by_code.get("checkpoint_mismatch", [])), report

    # The CLI names them too, and exits 1.
    out = await asyncio.to_thread(
        xregion, "audit", "replay", "--nats-url", bus.server.url, "--roster", _roster_file(bus, all_keys), "--json"
    )
    assert out.returncode == 1
    codes = {a["code"] for a in json.loads(out.stdout)["anomalies"]}
    assert {"chain_gap", "event_removed", "bad_signature", "checkpoint_fork", "checkpoint_mismatch"} <= codes
    # ... in its exhaustive mode too (every signature checked, issue 17): what it finds, the
    # default mode found (which also names the forgery's place in BJ's chain: a replay).
    out = await asyncio.to_thread(
        xregion,
        "audit",
        "replay",
        "--every-signature",
        "--nats-url",
        bus.server.url,
        "--roster",
        _roster_file(bus, all_keys),
        "--json",
    )
    assert out.returncode == 1
    assert {a["code"] for a in json.loads(out.stdout)["anomalies"]} <= codes


def _roster_file(bus: Bus, keys: KeyRoster) -> str:
    path = bus.root / "audit-roster.json"
    keys.save(path)
    return str(path)
