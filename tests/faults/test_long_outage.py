"""A broker outage of three minutes, longer than the client's reconnect budget (nats-py's default ~2 min).

Requirement: the adapter does not spin the CPU, keeps accepting submissions into its
outbox, and recovers by itself.

TJ runs as a real ``xregion adapter run`` subprocess (its CPU time read from ``/proc``); BJ
runs in-process and submits ``lead.submitted`` to TJ. After a warm-up exchange the broker is
SIGKILLed and kept down for ``outage_s``; meanwhile BJ submits a lead every second (each
submission must return promptly, into the outbox), and both adapters' CPU time is sampled.
Then the broker is restarted on the same store and port, and nothing else is touched: the
adapters must reconnect, publish the backlog and deliver every lead to TJ exactly once, in
BJ's order, with one receipt back for each. Finally TJ must still stop cleanly on SIGTERM
(a client that gave up reconnecting leaves FastStream's pull loops spinning, deaf to it).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.bus import eventually
from tests.faults.handlers import record_effect
from tests.faults.harness import (
    AdapterProcess,
    consumer_idle,
    dead_letters,
    duplicated,
    effect_count,
    effects,
    make_keys,
    outbox_depth,
    query,
    stream_events,
    trace_ids,
)
from tests.support import example_payload
from xregion.adapter import Adapter
from xregion.ops.server import EmbeddedServer

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

WARMUP = 20
OUTAGE_S = (180.0,)
"""The prescribed durations: three minutes (the scale & faults issue), longer than nats-py's
default reconnect budget (60 attempts × 2 s) — which the former 130 s case covered too, so it
is not run separately (CI time)."""
SUBMIT_EVERY_S = 1.0
MAX_SUBMIT_S = 1.0
MAX_CPU_SHARE = 0.05
"""Of one core, over the whole outage, for the adapter subprocess."""
MAX_CPU_SHARE_WINDOW = 0.25
"""Of one core, over any ``WINDOW_S`` of the outage (a busy loop would show as ~100 %)."""
MAX_TEST_PROCESS_CPU_SHARE = 0.10
"""The test process: the in-process BJ adapter plus one submission a second (sign, chain, store)."""
WINDOW_S = 10.0
RECOVERY_DEADLINE_S = 45.0


def lead_data(i: int) -> dict[str, object]:
    data = example_payload("lead.submitted")
    data["origin_case_number"] = f"京市监线〔2026〕{i + 1:04d}号"
    return data


@pytest.mark.parametrize("outage_s", OUTAGE_S, ids=lambda s: f"{s:g}s")
async def test_outage_longer_than_reconnect_budget(
    nats_server: EmbeddedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outage_s: float
) -> None:
    monkeypatch.delenv("XREGION_FAULT_TRACE", raising=False)
    monkeypatch.delenv("XREGION_FAULT_HANDLER_DELAY_S", raising=False)
    keys = make_keys(tmp_path / "keys")
    trace = tmp_path / "TJ-invocations.txt"
    bj_db, tj_db = tmp_path / "BJ.db", tmp_path / "TJ.db"
    tj = AdapterProcess(
        "TJ",
        nats_url=nats_server.url,
        keys_dir=keys,
        store=tj_db,
        log=tmp_path / "TJ.log",
        env={"XREGION_FAULT_TRACE": str(trace)},
    )
    bj = Adapter.from_keys_dir("BJ", keys, nats_url=nats_server.url, store_path=bj_db, handler=record_effect)

    def tj_alive() -> None:
        if not tj.running:
            assert tj.process is not None
            raise AssertionError(f"TJ's adapter exited with {tj.process.returncode}:\n{tj.tail()}")

    async def all_done(n: int) -> bool:
        tj_alive()
        return (
            effect_count(tj_db, "lead.submitted") >= n
            and effect_count(bj_db, "lead.received") >= n
            and await bj.store.outbox_depth() == 0
            and outbox_depth(tj_db) == 0
            and await consumer_idle(nats_server.url, "TJ")
            and await consumer_idle(nats_server.url, "BJ")
        )

    submitted: list[str] = []
    try:
        async with asyncio.timeout(outage_s + RECOVERY_DEADLINE_S + 60):
            tj.start()

            async def tj_running() -> bool:
                tj_alive()
                return bool(tj.log_lines("adapter running"))

            await eventually(tj_running, 30, "TJ's adapter process to run")
            await bj.start()

            # --- warm-up: the pipeline works before the outage ---------------------------
            for i in range(WARMUP):
                submitted.append((await bj.client.open("lead.submitted", to="TJ", data=lead_data(i))).envelope.id)
            await eventually(lambda: all_done(WARMUP), 30, "the warm-up leads to be delivered and receipted")

            # --- the outage ------------------------------------------------------------------
            nats_server.kill()
            killed_at = time.monotonic()
            tj_cpu0, self_cpu0 = tj.cpu_seconds(), time.process_time()
            samples: list[tuple[float, float, float]] = [(0.0, tj_cpu0, self_cpu0)]
            latencies: list[float] = []
            during: list[str] = []
            # "longer than the reconnect budget": the wait is the scenario's prescribed duration;
            # in it BJ submits at a fixed cadence and both CPU clocks are sampled.
            while (elapsed := time.monotonic() - killed_at) < outage_s:
                started = time.monotonic()
                event = await bj.client.open("lead.submitted", to="TJ", data=lead_data(len(submitted)))
                latencies.append(time.monotonic() - started)
                submitted.append(event.envelope.id)
                during.append(event.envelope.id)
                tj_alive()
                samples.append((elapsed, tj.cpu_seconds(), time.process_time()))
                await asyncio.sleep(max(0.0, started + SUBMIT_EVERY_S - time.monotonic()))
            outage_wall = time.monotonic() - killed_at
            tj_cpu = tj.cpu_seconds() - tj_cpu0
            self_cpu = time.process_time() - self_cpu0
            assert not nats_server.running
            tj_alive()
            bj_nc = bj.broker._connection
            assert bj_nc is not None and not bj_nc.is_closed, "BJ's client gave up reconnecting"
            assert tj.log_lines("nats connection closed") == [], "TJ's client gave up reconnecting"
            depth_down = await bj.store.outbox_depth()
            assert depth_down == len(during), "submissions made while the broker was down are not all in the outbox"

            windows = []
            for t, cpu, _ in samples:
                later = [s for s in samples if s[0] >= t + WINDOW_S]
                if later:
                    t2, cpu2, _ = later[0]
                    windows.append((cpu2 - cpu) / (t2 - t))
            worst_window = max(windows)

            # --- the broker comes back; the adapters are left alone --------------------------
            nats_server.start()  # the same EmbeddedServer: same store dir, same port
            restarted_at = time.monotonic()
            await eventually(
                lambda: all_done(len(submitted)),
                RECOVERY_DEADLINE_S,
                "every lead delivered and receipted after the broker's restart",
            )
            recovered_in = time.monotonic() - restarted_at
            assert tj.starts == 1 and tj.kills == 0, "TJ was restarted: it did not recover by itself"
            assert tj.log_lines("nats reconnected"), "TJ's log does not show a reconnection"

            # --- exactly once, in order --------------------------------------------------------
            n = len(submitted)
            tj_effects = effects(tj_db)
            tj_ids = [e[0] for e in tj_effects]
            assert duplicated(tj_ids) == {}, "duplicate effects at TJ"
            assert tj_ids == submitted, "lost, foreign or reordered effects at TJ"
            assert [e[1] for e in tj_effects] == list(range(1, n + 1))
            assert query(tj_db, "SELECT count(*), count(DISTINCT event_id) FROM inbox") == [(n, n)]
            receipts = effects(bj_db, "lead.received")
            assert duplicated([r[0] for r in receipts]) == {}, "duplicate receipt effects at BJ"
            assert [r[2] for r in receipts] == submitted, "receipts do not answer the leads once each, in order"
            rows = query(bj_db, "SELECT event_id, stream_seq FROM outbox ORDER BY seq")
            assert [r[0] for r in rows] == submitted
            stored = await stream_events(nats_server.url)
            assert duplicated([s.event_id for s in stored]) == {}, "duplicate events in the stream"
            assert [s.event_id for s in stored if s.event_type == "lead.submitted"] == submitted
            assert len(stored) == 2 * n
            assert [(d.code, d.stream_seq) for d in await dead_letters(nats_server.url)] == []

            # --- the numbers -----------------------------------------------------------------
            invocations = Counter(trace_ids(trace))
            tj_share, self_share = tj_cpu / outage_wall, self_cpu / outage_wall
            print(
                f"\nlong outage: broker down {outage_wall:.1f}s; {len(during)} leads submitted meanwhile "
                f"(latency max {max(latencies) * 1000:.1f} ms, median "
                f"{sorted(latencies)[len(latencies) // 2] * 1000:.1f} ms; outbox depth {depth_down}); "
                f"CPU over the outage: TJ subprocess {tj_cpu:.2f}s = {100 * tj_share:.2f}% of a core "
                f"(worst {WINDOW_S:.0f}s window {100 * worst_window:.1f}%), test process (BJ in-process + "
                f"submissions) {self_cpu:.2f}s = {100 * self_share:.2f}%; recovered {recovered_in:.2f}s after "
                f"the broker's restart; {n} leads exactly once; handler invocations at TJ "
                f"{sum(invocations.values())} for {n} leads"
            )
            assert max(latencies) < MAX_SUBMIT_S, f"a submission took {max(latencies):.2f}s while the broker was down"
            assert tj_share < MAX_CPU_SHARE, f"TJ used {100 * tj_share:.1f}% of a core while the broker was down"
            assert worst_window < MAX_CPU_SHARE_WINDOW, f"TJ used {100 * worst_window:.1f}% of a core in {WINDOW_S}s"
            assert self_share < MAX_TEST_PROCESS_CPU_SHARE, f"BJ's process used {100 * self_share:.1f}% of a core"
    finally:
        await bj.stop()
        stop_started = time.monotonic()
        rc = tj.stop()
        stop_took = time.monotonic() - stop_started
    assert rc == 0, f"TJ did not shut down cleanly on SIGTERM (exit code {rc}):\n{tj.tail()}"
    assert stop_took < 10, f"TJ took {stop_took:.1f}s to stop on SIGTERM"
