"""Broker killed (SIGKILL) while 1,000 events are being submitted, restarted 30 s later.

Requirement: all 1,000 are delivered to the addressee's handler exactly once, in the
origin's order; none lost, none duplicated.

BJ and TJ run in-process on the real ``nats-server`` of the ``nats_server`` fixture. A task
submits 1,000 ``lead.submitted`` BJ→TJ (each a new referral, each with its own case
number); after 300 submissions the broker is SIGKILLed; submissions continue into BJ's
outbox while it is down; 30 s after the kill it is restarted on the same store directory
and port. Both handlers write their effects through ``delivery.tx`` into a table without
a uniqueness constraint, so a duplicate effect would be visible.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.bus import Bus, eventually
from tests.faults.handlers import record_effect
from tests.faults.harness import consumer_idle, duplicated, effect_count, effects, query, stream_events
from tests.support import example_payload
from xregion.ops.server import EmbeddedServer

pytestmark = pytest.mark.anyio

N = 1000
KILL_AFTER = 300
OUTAGE_S = 30.0
RECOVERY_DEADLINE_S = 45.0


async def test_broker_sigkill_during_1000_submissions(
    bus: Bus, nats_server: EmbeddedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace = tmp_path / "invocations.txt"
    monkeypatch.setenv("XREGION_FAULT_TRACE", str(trace))
    async with asyncio.timeout(OUTAGE_S + RECOVERY_DEADLINE_S + 30):
        bj, tj = await bus.start("BJ", "TJ", handler=record_effect)
        bj_db, tj_db = bus.root / "BJ.db", bus.root / "TJ.db"

        submitted: list[str] = []
        down_latencies: list[float] = []
        broker_down = False

        async def submit_all() -> None:
            for i in range(N):
                data = example_payload("lead.submitted")
                data["origin_case_number"] = f"京市监线〔2026〕{i + 1:04d}号"
                started = time.monotonic()
                event = await bj.client.open("lead.submitted", to="TJ", data=data)
                if broker_down:
                    down_latencies.append(time.monotonic() - started)
                submitted.append(event.envelope.id)
                await asyncio.sleep(0)  # let the relay and the consumers interleave

        submitter = asyncio.create_task(submit_all())
        t0 = time.monotonic()

        async def enough_submitted() -> bool:
            if submitter.done():
                submitter.result()  # re-raise a submission failure
            return len(submitted) >= KILL_AFTER

        await eventually(enough_submitted, 30, f"{KILL_AFTER} submissions")
        nats_server.kill()
        broker_down = True
        killed_at = time.monotonic()
        at_kill = {
            "submitted": len(submitted),
            "published": bj.relay.published if bj.relay else None,
            "tj_effects": effect_count(tj_db),
            "bj_receipts": effect_count(bj_db),
        }
        cpu_at_kill = time.process_time()

        # Submissions keep succeeding into the outbox while the broker is down.
        await asyncio.wait_for(submitter, OUTAGE_S - 1)
        submitted_all_at = time.monotonic() - killed_at
        assert len(submitted) == N
        assert not nats_server.running
        depth_down = await bj.store.outbox_depth()
        assert depth_down > 0

        # "restarted 30 s later": this wait is the scenario's prescribed duration.
        await asyncio.sleep(max(0.0, killed_at + OUTAGE_S - time.monotonic()))
        outage_cpu = time.process_time() - cpu_at_kill
        outage_wall = time.monotonic() - killed_at
        assert not nats_server.running
        nats_server.start()  # the same EmbeddedServer: same store dir, same port
        restarted_at = time.monotonic()

        async def complete() -> bool:
            return (
                effect_count(tj_db, "lead.submitted") >= N
                and effect_count(bj_db, "lead.received") >= N
                and await bj.store.outbox_depth() == 0
                and await tj.store.outbox_depth() == 0
                and await consumer_idle(nats_server.url, "TJ")
                and await consumer_idle(nats_server.url, "BJ")
            )

        await eventually(complete, RECOVERY_DEADLINE_S, "all events delivered and receipts returned")
        recovered_in = time.monotonic() - restarted_at

        # --- TJ's handler: exactly the 1,000 event ids, each once, in BJ's order ------------
        tj_effects = effects(tj_db)
        tj_ids = [e[0] for e in tj_effects]
        assert duplicated(tj_ids) == {}, "duplicate effects at TJ"
        assert len(tj_ids) == N
        assert set(tj_ids) == set(submitted), "lost or foreign events at TJ"
        assert tj_ids == submitted, "TJ's effects are not in BJ's submission order"
        assert [e[1] for e in tj_effects] == list(range(1, N + 1)), "link sequence out of order"
        inbox = query(tj_db, "SELECT count(*), count(DISTINCT event_id) FROM inbox WHERE event_type = 'lead.submitted'")
        assert inbox == [(N, N)]

        # --- BJ: outbox drained, in order, and all 1,000 automatic receipts, once each ------
        rows = query(bj_db, "SELECT event_id, stream_seq, published_at FROM outbox ORDER BY seq")
        assert [r[0] for r in rows] == submitted
        assert all(r[2] is not None for r in rows)
        seqs = [r[1] for r in rows]
        assert seqs == sorted(seqs) and len(set(seqs)) == N
        receipts = effects(bj_db, "lead.received")
        assert duplicated([r[0] for r in receipts]) == {}, "duplicate receipt effects at BJ"
        assert len(receipts) == N
        assert [r[2] for r in receipts] == submitted, "receipts do not answer the leads in order"

        # --- the stream holds each event exactly once --------------------------------------
        stored = await stream_events(nats_server.url)
        leads = [s for s in stored if s.event_type == "lead.submitted"]
        assert all(s.sender == "BJ" for s in leads)
        lead_ids = [s.event_id for s in leads]
        assert duplicated(lead_ids) == {}, "duplicate leads in the stream"
        assert lead_ids == submitted, "stream order differs from BJ's submission order"
        assert all(s.msg_id == s.event_id for s in stored)
        assert duplicated([s.event_id for s in stored]) == {}
        assert len(stored) == 2 * N, f"stream holds {len(stored)} messages, expected {2 * N}"
        assert [s.originseq for s in leads] == list(range(1, N + 1))
        assert await bus.dead_letters() == []

        invocations = trace.read_text().split()
        lead_set = set(submitted)
        lead_calls = sum(1 for i in invocations if i in lead_set)
        print(
            f"\nbroker crash: kill at {at_kill} after {killed_at - t0:.2f}s; "
            f"rest submitted {submitted_all_at:.2f}s after the kill "
            f"(max latency while down {max(down_latencies) * 1000:.1f} ms, outbox depth {depth_down}); "
            f"test-process CPU during the {outage_wall:.1f}s outage {outage_cpu:.2f}s "
            f"({100 * outage_cpu / outage_wall:.1f}%); recovered {recovered_in:.2f}s after restart; "
            f"TJ max delivery count {max(e[3] for e in tj_effects)}; "
            f"handler invocations: {lead_calls} for {N} leads, {len(invocations) - lead_calls} "
            f"for {N} receipts"
        )
