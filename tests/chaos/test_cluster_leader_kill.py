"""The stream leader of a three-node cluster SIGKILLed during 10,000 referrals.

Requirement: 0 lost, 0 duplicate handler effects, per-origin order kept.

Three real ``nats-server`` processes (:class:`~xregion.ops.cluster.EmbeddedCluster`,
routes on loopback, each node its own store), streams declared with ``replicas=3``. BJ and
TJ run in-process, connected to all three nodes; BJ submits ``N`` ``lead.submitted`` to TJ,
whose handler (:func:`tests.faults.handlers.record_effect`) records one effect row per
event, and TJ answers each with an automatic receipt. After ``KILL_AFTER`` of BJ's events
were acknowledged, the node leading the ``XREGION`` stream (``stream_info().cluster.leader``)
is SIGKILLed; once a new leader is elected, the dead node is restarted on its store and
catches up. Then: every lead exactly once at TJ in BJ's order, every receipt once at BJ,
every event once in the stream, no dead letters.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nats
import pytest

from tests.bus import eventually
from tests.faults.handlers import record_effect
from tests.faults.harness import (
    consumer_idle,
    dead_letters,
    duplicated,
    effect_count,
    effects,
    make_keys,
    query,
    stream_events,
)
from tests.support import example_payload
from xregion.adapter import Adapter
from xregion.ops.cluster import ClusterConfig, EmbeddedCluster
from xregion.runtime.settings import RuntimeSettings

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

N = 10_000
KILL_AFTER = 3_000
TEST_DEADLINE_S = 900.0
FAILOVER_DEADLINE_S = 30.0


async def stream_leader(urls: list[str], stream: str = "XREGION") -> str | None:
    """The ``server_name`` of the stream's current leader, as any live node reports it."""
    try:
        nc = await nats.connect(urls, connect_timeout=1, max_reconnect_attempts=1, allow_reconnect=False)
    except Exception:  # no node reachable yet
        return None
    try:
        info = await nc.jetstream().stream_info(stream)
        return info.cluster.leader if info.cluster is not None else None
    except Exception:  # 503 or timeout while there is no leader
        return None
    finally:
        await nc.close()


def lead_data(i: int) -> dict[str, object]:
    data = example_payload("lead.submitted")
    data["origin_case_number"] = f"京市监线〔2026〕{i + 1:05d}号"
    return data


async def test_stream_leader_sigkill_during_10000_referrals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XREGION_FAULT_TRACE", raising=False)
    monkeypatch.delenv("XREGION_FAULT_HANDLER_DELAY_S", raising=False)
    keys = make_keys(tmp_path / "keys")
    cluster = EmbeddedCluster(ClusterConfig(store_root=tmp_path / "cluster", size=3)).start()
    settings = RuntimeSettings(replicas=3, ack_wait_s=10.0)
    bj_db, tj_db = tmp_path / "BJ.db", tmp_path / "TJ.db"
    common = {"nats_url": cluster.url, "handler": record_effect, "settings": settings}
    bj = Adapter.from_keys_dir("BJ", keys, store_path=bj_db, **common)  # type: ignore[arg-type]
    tj = Adapter.from_keys_dir("TJ", keys, store_path=tj_db, **common)  # type: ignore[arg-type]
    t0 = time.monotonic()
    try:
        async with asyncio.timeout(TEST_DEADLINE_S):
            await cluster.wait_jetstream()
            await tj.start()
            await bj.start()
            info_nc = await nats.connect(cluster.urls)
            try:
                info = await info_nc.jetstream().stream_info("XREGION")
            finally:
                await info_nc.close()
            assert info.config.num_replicas == 3 and info.cluster is not None
            assert len(info.cluster.replicas or []) == 2

            submitted: list[str] = []

            async def submit_all() -> None:
                for i in range(N):
                    submitted.append((await bj.client.open("lead.submitted", to="TJ", data=lead_data(i))).envelope.id)
                    if i % 50 == 0:
                        await asyncio.sleep(0)

            submitter = asyncio.create_task(submit_all())
            assert bj.relay is not None
            await eventually(
                lambda: _async(bj.relay is not None and bj.relay.published >= KILL_AFTER),
                300,
                f"{KILL_AFTER} of BJ's events acknowledged",
            )

            # --- SIGKILL the stream leader ------------------------------------------------
            leader = await stream_leader(cluster.urls)
            assert leader is not None
            victim = cluster.index_of(leader)
            at_kill = {"submitted": len(submitted), "published": bj.relay.published, "tj_effects": effect_count(tj_db)}
            cluster.kill(victim)
            killed_at = time.monotonic()
            alive = [u for i, u in enumerate(cluster.urls) if i != victim]

            async def new_leader() -> str | None:
                name = await stream_leader(alive)
                return name if name and name != leader else None

            elected = await eventually(new_leader, FAILOVER_DEADLINE_S, "a new stream leader")
            failover_s = time.monotonic() - killed_at
            published_at_kill = bj.relay.published
            await eventually(
                lambda: _async(bj.relay is not None and bj.relay.published > published_at_kill + 100),
                FAILOVER_DEADLINE_S,
                "BJ's publishes to resume after the failover",
            )
            resumed_s = time.monotonic() - killed_at

            # --- the dead node comes back on its store and catches up ----------------------
            cluster.restart(victim)
            await asyncio.wait_for(submitter, 600)
            assert len(submitted) == N
            url = cluster.urls[0]

            async def complete() -> bool:
                return (
                    effect_count(tj_db, "lead.submitted") >= N
                    and effect_count(bj_db, "lead.received") >= N
                    and await bj.store.outbox_depth() == 0
                    and await tj.store.outbox_depth() == 0
                    and await consumer_idle(url, "TJ")
                    and await consumer_idle(url, "BJ")
                )

            await eventually(complete, 600, "all leads handled and all receipts returned")
            done_s = time.monotonic() - t0

            async def replicas_current() -> bool:
                nc = await nats.connect(cluster.urls)
                try:
                    si = await nc.jetstream().stream_info("XREGION")
                    replicas = si.cluster.replicas or [] if si.cluster else []
                    return len(replicas) == 2 and all(r.current for r in replicas)
                finally:
                    await nc.close()

            await eventually(replicas_current, 60, "the restarted node to catch up")

            # --- exactly once, in BJ's order -------------------------------------------------
            tj_effects = effects(tj_db)
            tj_ids = [e[0] for e in tj_effects]
            assert duplicated(tj_ids) == {}, "duplicate effects at TJ"
            assert len(tj_ids) == N and set(tj_ids) == set(submitted), "lost or foreign effects at TJ"
            assert tj_ids == submitted, "TJ's effects are not in BJ's order"
            assert [e[1] for e in tj_effects] == list(range(1, N + 1)), "link sequence out of order"
            assert query(tj_db, "SELECT count(*), count(DISTINCT event_id) FROM inbox") == [(N, N)]
            receipts = effects(bj_db, "lead.received")
            assert duplicated([r[0] for r in receipts]) == {}, "duplicate receipt effects at BJ"
            assert [r[2] for r in receipts] == submitted, "receipts do not answer the leads once each, in order"
            stored = await stream_events(url)
            assert duplicated([s.event_id for s in stored]) == {}, "duplicate events in the stream"
            assert [s.event_id for s in stored if s.event_type == "lead.submitted"] == submitted
            assert len(stored) == 2 * N
            assert [(d.code, d.stream_seq) for d in await dead_letters(url)] == []
            print(
                f"\ncluster leader kill: {leader} (node {victim + 1}) SIGKILLed at {at_kill} "
                f"{killed_at - t0:.1f}s after the start; new leader {elected} after {failover_s:.2f}s; "
                f"BJ's publishes resumed (+100 acks) {resumed_s:.2f}s after the kill; "
                f"{N} leads + {N} receipts exactly once, in order, in {done_s:.1f}s "
                f"({2 * N / done_s:.0f} events/s end to end); max TJ delivery count "
                f"{max(e[3] for e in tj_effects)}; lost 0, duplicate effects 0"
            )
    finally:
        await bj.stop()
        await tj.stop()
        for server in cluster.servers:
            server.kill()


async def _async(value: bool) -> bool:
    return value
