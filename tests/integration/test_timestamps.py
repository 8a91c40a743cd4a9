"""RFC 3161 time-stamps on the log's checkpoints, against a real local TSA over HTTP: a token
per checkpoint; forged, altered and misfiled tokens named; the TSA down for a while — the
bus keeps working, the gap is reported and alerted, and the first token after it covers it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.bus import Bus, eventually
from tests.support import dev_seed, roster_key
from tests.tlog_support import WITNESSES, LogHarness, stored_records
from tests.tsa import LocalTsa
from xregion.auditor.logcheck import check_log
from xregion.auditor.tsa import TsaClient, TsaConfig
from xregion.examples import PAYLOADS
from xregion.note import default_origin
from xregion.signing import KeyRoster, Signer
from xregion.timestamps import (
    OpenSslVerifier,
    Rfc3161ClientVerifier,
    TimestampInvalid,
    TimestampMismatch,
    token_info,
)

pytestmark = pytest.mark.anyio
ORIGIN = default_origin("XREGION")


@pytest.fixture
def audit(roster: KeyRoster) -> Signer:
    signer = Signer.from_seed("AUDIT", dev_seed("AUDIT"))
    roster.add(roster_key(signer))
    return signer


@pytest.fixture
def tsa(tmp_path: Path) -> LocalTsa:
    server = LocalTsa(tmp_path / "tsa").up()
    try:
        yield server  # type: ignore[misc]
    finally:
        server.down()


def client(tsa: LocalTsa) -> TsaClient:
    return TsaClient(TsaConfig(tsa.url, tsa.ca_file, timeout_s=2.0))


async def lead(bus: Bus, to: str = "TJ") -> str:
    sent = await bus.adapters["BJ"].client.open("lead.submitted", to=to, data=PAYLOADS["lead.submitted"])
    await bus.state("BJ", sent.envelope.subject, "received")
    return sent.envelope.subject


async def test_a_token_per_checkpoint_and_bad_tokens_are_named(
    bus: Bus, tmp_path: Path, audit: Signer, roster: KeyRoster, tsa: LocalTsa
) -> None:
    await bus.start("BJ", "TJ", "HE")
    log = await LogHarness.open(bus, tmp_path / "log.db", audit, tsa=client(tsa))
    try:
        sizes = []
        for to in ("TJ", "HE", "TJ"):
            await lead(bus, to)
            sizes.append(await log.round())
            stamped = await log.service.stamp()
            assert stamped is not None and stamped.size == sizes[-1]
        assert [t.size for t in log.tlog.timestamps()] == sizes == [2, 4, 6]
        assert tsa.requests == 3
        assert await log.service.stamp() is None  # nothing new: no request
        verifier = Rfc3161ClientVerifier.from_bundle(tsa.ca_file)
        for token in log.tlog.timestamps():
            text = log.tlog.checkpoint(token.size).note.text.encode()  # type: ignore[union-attr]
            info = verifier.verify(token.response, text)
            assert info.hash_alg == "sha256" and info.gen_time == token.gen_time
            OpenSslVerifier(tsa.ca_file).verify(token.response, text)  # a second, independent verifier
        events, published = await stored_records(bus)
        clean = check_log(events, published, roster, WITNESSES, ORIGIN, tlog=log.tlog, tsa=verifier)
        assert [a.line() for a in clean.anomalies] == [] and clean.tokens == 3

        # Tamper with the stored tokens: altered (a byte of the TSTInfo), forged (another TSA),
        # misfiled (checkpoint 4's token filed as checkpoint 6's).
        first, second, third = log.tlog.timestamps()
        altered = bytearray(first.response)
        altered[len(altered) // 2] ^= 0x01
        other = LocalTsa(tmp_path / "other", "unknown TSA")
        forged = other.stamp(_query(log.tlog.checkpoint(second.size).note.text.encode()))  # type: ignore[union-attr]
        db = sqlite3.connect(tmp_path / "log.db")
        db.execute("UPDATE timestamps SET response = ? WHERE size = ?", (bytes(altered), first.size))
        db.execute("UPDATE timestamps SET response = ? WHERE size = ?", (forged, second.size))
        db.execute("UPDATE timestamps SET response = ? WHERE size = ?", (second.response, third.size))
        db.commit()
        db.close()
        for bad, code in ((bytes(altered), TimestampInvalid), (forged, TimestampInvalid)):
            with pytest.raises(code):
                verifier.verify(bad, b"anything")
        with pytest.raises(TimestampMismatch):
            verifier.verify(second.response, log.tlog.checkpoint(third.size).note.text.encode())  # type: ignore[union-attr]
        report = check_log(events, published, roster, WITNESSES, ORIGIN, tlog=log.tlog, tsa=verifier)
        named = {(a.evidence.get("size"), a.code) for a in report.anomalies}
        assert named == {(2, "timestamp_invalid"), (4, "timestamp_invalid"), (6, "timestamp_mismatch")}
        # the openssl verifier names them the same way
        with pytest.raises(TimestampInvalid):
            OpenSslVerifier(tsa.ca_file).verify(forged, log.tlog.checkpoint(4).note.text.encode())  # type: ignore[union-attr]
        with pytest.raises(TimestampMismatch):
            OpenSslVerifier(tsa.ca_file).verify(second.response, log.tlog.checkpoint(6).note.text.encode())  # type: ignore[union-attr]
    finally:
        await log.close()


def _query(data: bytes) -> bytes:
    from xregion.timestamps import build_request

    return build_request(data)[0]


async def test_the_tsa_down_for_a_while(
    bus: Bus, tmp_path: Path, audit: Signer, roster: KeyRoster, tsa: LocalTsa, logs: list[dict[str, Any]]
) -> None:
    """The log runs as in production (its loop, a stamper beside it); the TSA goes away."""
    await bus.start("BJ", "TJ", "HE")
    await lead(bus)
    log = await LogHarness.open(
        bus, tmp_path / "log.db", audit, tsa=client(tsa), interval_s=0.1, max_token_age_s=0.5, tsa_retry_s=0.05
    )
    service = log.service
    running = asyncio.create_task(service.run())
    try:

        async def stamped_up_to_date() -> bool:
            latest, token = log.tlog.latest_checkpoint(), log.tlog.latest_timestamp()
            return bool(latest and token and token.size == latest.size == log.tlog.size and log.tlog.size)

        await eventually(stamped_up_to_date, what="the first checkpoint time-stamped")
        before = log.tlog.latest_timestamp()
        assert before is not None

        tsa.down()
        referrals = [await lead(bus, to) for to in ("TJ", "HE")]  # the bus keeps working
        for rid in referrals:
            await bus.state("BJ", rid, "received")

        async def gap_reported() -> bool:
            outage = log.tlog.open_outage()
            latest = log.tlog.latest_checkpoint()
            return bool(outage and outage.attempts >= 2 and latest and latest.size >= 6)

        await eventually(gap_reported, what="the outage recorded while the log goes on checkpointing")
        await eventually(lambda: _async(service.health().stale()), what="the stale-token alert")
        assert service.check_alert()
        assert any(e.get("code") == "timestamp_stale" and e["log_level"] == "error" for e in logs)
        status = await status_json(tmp_path / "log.db")
        assert status.exit_code == 1 and json.loads(status.stdout)["stale"] is True
        assert json.loads(status.stdout)["outages"][0]["ended_at"] is None
        outage = log.tlog.open_outage()
        assert outage is not None and outage.first_size is not None and outage.first_size > before.size
        assert "unreachable" in outage.last_error

        tsa.up()
        await eventually(stamped_up_to_date, what="time-stamps resumed")
        after = log.tlog.latest_timestamp()
        assert after is not None and after.size >= 6
        (closed,) = log.tlog.outages()
        assert closed.ended_at is not None and closed.covered_by == after.size
        # the one token after the outage covers every event logged during it
        gap = [leaf for leaf in log.tlog.leaves(before.size, after.size)]
        assert {leaf.referral_id for leaf in gap} >= set(referrals)
        assert all(leaf.index < after.size for leaf in gap)
        assert not service.health().stale() and not service.check_alert()
        resumed = [e for e in logs if e["event"].startswith("time-stamps resumed")]
        assert resumed and resumed[0]["covered_by"] == after.size
        status = await status_json(tmp_path / "log.db")
        assert status.exit_code == 0, status.output
        (reported,) = json.loads(status.stdout)["outages"]
        assert reported["covered_by_checkpoint"] == after.size and reported["attempts"] >= 2
        assert token_info(after.response).gen_time >= closed.started_at.replace(microsecond=0)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await log.close()


async def _async(value: bool) -> bool:
    return value


async def status_json(store: Path) -> Any:
    import anyio
    from typer.testing import CliRunner

    from xregion.cli import app

    args = ["audit", "log", "status", "--store", str(store), "--max-token-age", "0.5", "--json"]
    return await anyio.to_thread.run_sync(lambda: CliRunner().invoke(app, args))
