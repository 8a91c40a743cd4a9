"""TJ's adapter process SIGKILLed and restarted again and again during continuous traffic.

Requirement: exactly-once handler effects.

Extends :mod:`tests.faults.test_adapter_crash` (three kills aimed inside the handler) to a
loop: BJ (in-process) submits leads to TJ at a steady rate for the whole run, while TJ — a
real ``xregion adapter run`` subprocess whose handler records one effect row per event
inside the handling transaction and lingers ``DELAY_S`` there — is SIGKILLed ``KILLS``
times at seeded pseudo-random intervals (wherever it is: fetching, handling, publishing its
receipts) and restarted at once on the same store. At the end every lead has exactly one
effect at TJ, in BJ's order, and one receipt at BJ.
"""

from __future__ import annotations

import asyncio
import random
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

KILLS = 10
KILL_INTERVAL_S = (1.5, 4.0)
SUBMIT_EVERY_S = 0.2
DELAY_S = 0.02
SEED = 20261125
RECOVERY_DEADLINE_S = 180.0


async def test_adapter_sigkill_loop_during_traffic(
    nats_server: EmbeddedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XREGION_FAULT_TRACE", raising=False)
    monkeypatch.delenv("XREGION_FAULT_HANDLER_DELAY_S", raising=False)
    rng = random.Random(SEED)
    keys = make_keys(tmp_path / "keys")
    trace = tmp_path / "TJ-invocations.txt"
    bj_db, tj_db = tmp_path / "BJ.db", tmp_path / "TJ.db"
    tj = AdapterProcess(
        "TJ",
        nats_url=nats_server.url,
        keys_dir=keys,
        store=tj_db,
        log=tmp_path / "TJ.log",
        env={
            "XREGION_FAULT_HANDLER_DELAY_S": str(DELAY_S),
            "XREGION_FAULT_TRACE": str(trace),
            "XREGION_ACK_WAIT_S": "3",
        },
    )
    bj = Adapter.from_keys_dir("BJ", keys, nats_url=nats_server.url, store_path=bj_db, handler=record_effect)
    submitted: list[str] = []
    stop_submitting = asyncio.Event()

    async def submit_continuously() -> None:
        while not stop_submitting.is_set():
            tick = time.monotonic()
            data = example_payload("lead.submitted")
            data["origin_case_number"] = f"京市监线〔2026〕{len(submitted) + 1:04d}号"
            submitted.append((await bj.client.open("lead.submitted", to="TJ", data=data)).envelope.id)
            await asyncio.sleep(max(0.0, tick + SUBMIT_EVERY_S - time.monotonic()))

    t0 = time.monotonic()
    try:
        async with asyncio.timeout(KILLS * (KILL_INTERVAL_S[1] + 15) + RECOVERY_DEADLINE_S + 60):
            tj.start()
            await eventually(lambda: _async(bool(tj.log_lines("adapter running"))), 30, "TJ's adapter to run")
            await bj.start()
            submitter = asyncio.create_task(submit_continuously())
            kills: list[tuple[float, int, int]] = []
            for _ in range(KILLS):
                # let the restarted TJ get going (connected and handling), then kill it wherever it is
                await eventually(
                    lambda: _async(_alive(tj) or len(tj.log_lines("adapter running")) >= tj.starts), 30, "TJ to run"
                )
                await asyncio.sleep(rng.uniform(*KILL_INTERVAL_S))  # the prescribed, seeded kill schedule
                _alive(tj)
                tj.kill()
                committed = effect_count(tj_db)
                kills.append((round(time.monotonic() - t0, 1), committed, len(trace_ids(trace)) - committed))
                tj.start()
            stop_submitting.set()
            await asyncio.wait_for(submitter, 10)
            n = len(submitted)

            async def complete() -> bool:
                _alive(tj)
                return (
                    effect_count(tj_db, "lead.submitted") >= n
                    and effect_count(bj_db, "lead.received") >= n
                    and await bj.store.outbox_depth() == 0
                    and outbox_depth(tj_db) == 0
                    and await consumer_idle(nats_server.url, "TJ")
                    and await consumer_idle(nats_server.url, "BJ")
                )

            await eventually(complete, RECOVERY_DEADLINE_S, "all leads handled and receipted after the kills")
            done_s = time.monotonic() - t0
            # The last restart may still be starting up (the one before it may have handled
            # everything); the graceful-stop check below needs it running.
            await eventually(
                lambda: _async(len(tj.log_lines("adapter running")) >= tj.starts), 30, "the last TJ to run"
            )

            tj_effects = effects(tj_db)
            tj_ids = [e[0] for e in tj_effects]
            assert duplicated(tj_ids) == {}, "duplicate effects at TJ"
            assert tj_ids == submitted, "lost, foreign or reordered effects at TJ"
            assert [e[1] for e in tj_effects] == list(range(1, n + 1))
            assert query(tj_db, "SELECT count(*), count(DISTINCT event_id) FROM inbox") == [(n, n)]
            receipts = effects(bj_db, "lead.received")
            assert duplicated([r[0] for r in receipts]) == {}, "duplicate receipt effects at BJ"
            assert [r[2] for r in receipts] == submitted, "receipts do not answer the leads once each, in order"
            stored = await stream_events(nats_server.url)
            assert duplicated([s.event_id for s in stored]) == {}, "duplicate events in the stream"
            assert [s.event_id for s in stored if s.event_type == "lead.submitted"] == submitted
            assert len(stored) == 2 * n
            assert [(d.code, d.stream_seq) for d in await dead_letters(nats_server.url)] == []
            invocations = Counter(trace_ids(trace))
            reinvoked = sum(1 for c in invocations.values() if c > 1)
            assert tj.kills == KILLS and tj.starts == KILLS + 1
            print(
                f"\nadapter kill loop: {KILLS} SIGKILLs of TJ during {n} leads at {1 / SUBMIT_EVERY_S:.0f}/s "
                f"(at s, committed effects, invocations beyond them: {kills}); done {done_s:.1f}s after the start; "
                f"handler invocations {sum(invocations.values())} for {n} leads, {reinvoked} handled more than once; "
                f"max delivery count {max(e[3] for e in tj_effects)}; lost 0, duplicate effects 0"
            )
    finally:
        stop_submitting.set()
        await bj.stop()
        rc = tj.stop()
    assert rc == 0, f"TJ did not shut down cleanly on SIGTERM (exit code {rc}):\n{tj.tail()}"


async def _async(value: bool) -> bool:
    return value


def _alive(proc: AdapterProcess) -> bool:
    """Fail fast if TJ died on its own (it is only ever killed by the test)."""
    if proc.process is not None and not proc.running:
        raise AssertionError(f"TJ's adapter exited with {proc.process.returncode}:\n{proc.tail()}")
    return False
