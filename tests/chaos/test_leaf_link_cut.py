"""A region's leaf-node link to the hub cut for a minute during traffic.

Requirement: nothing lost, everything delivered after the link returns; the region keeps
accepting (and storing) its own submissions while cut off.

Topology (ops/README.md "Topologies"): the hub site runs JetStream (the ``XREGION`` stream);
BJ's site runs a leaf-node ``nats-server`` without JetStream, linked to the hub's leafnode
port through :class:`~tests.chaos.tcp_proxy.LinkProxy` (the WAN link). BJ's adapter connects
to its site's leaf node only; TJ and HE connect to the hub. BJ and HE submit leads to TJ at
a steady cadence; for ``CUT_S`` the link is cut (every connection closed, redials refused):
BJ's submissions keep returning at once, into its outbox (the region's local store), while
HE→TJ traffic goes on. After the link returns, BJ's backlog is forwarded and TJ's receipts,
stored on the hub meanwhile, reach BJ: every lead exactly once at TJ, in each origin's order.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nats
import pytest

from tests.bus import eventually
from tests.chaos.tcp_proxy import LinkProxy
from tests.faults.handlers import record_effect
from tests.faults.harness import (
    consumer_idle,
    dead_letters,
    duplicated,
    effect_count,
    effects,
    make_keys,
    stream_events,
)
from tests.support import example_payload
from xregion.adapter import Adapter
from xregion.ops.cluster import HUB_DOMAIN, hub_leafnodes_block, leaf_remote_block
from xregion.ops.server import EmbeddedServer, ServerConfig, free_port
from xregion.runtime.settings import RuntimeSettings

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

CUT_S = 60.0
"""The prescribed duration of the cut."""
SUBMIT_EVERY_S = 0.5
WARMUP = 10
RECOVERY_DEADLINE_S = 60.0
MAX_SUBMIT_S = 1.0


async def leaf_serves_jetstream(url: str) -> bool:
    """Does a client of the leaf node reach the hub's JetStream (the link is up)?"""
    try:
        nc = await nats.connect(url, connect_timeout=1, allow_reconnect=False)
    except Exception:  # the leaf itself not up yet
        return False
    try:
        await nc.jetstream(domain=HUB_DOMAIN).account_info()
        return True
    except Exception:  # no responders: the link is down
        return False
    finally:
        await nc.close()


async def test_leaf_link_cut_for_a_minute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XREGION_FAULT_TRACE", raising=False)
    monkeypatch.delenv("XREGION_FAULT_HANDLER_DELAY_S", raising=False)
    keys = make_keys(tmp_path / "keys")
    leaf_port, link_port = free_port(), free_port()
    hub = EmbeddedServer(
        ServerConfig(
            store_dir=tmp_path / "hub",
            port=free_port(),
            server_name="hub",
            js_domain=HUB_DOMAIN,
            extra=hub_leafnodes_block("127.0.0.1", leaf_port),
        )
    ).start()
    link = LinkProxy(link_port, leaf_port)
    await link.restore()
    leaf = EmbeddedServer(
        ServerConfig(
            store_dir=tmp_path / "leaf-BJ",
            port=free_port(),
            server_name="leaf-BJ",
            jetstream=False,
            extra=leaf_remote_block([f"nats-leaf://127.0.0.1:{link_port}"]),
        )
    ).start()
    dbs = {r: tmp_path / f"{r}.db" for r in ("BJ", "TJ", "HE")}
    adapters = {
        "BJ": Adapter.from_keys_dir(
            "BJ",
            keys,
            nats_url=leaf.url,
            store_path=dbs["BJ"],
            handler=record_effect,
            settings=RuntimeSettings(js_domain=HUB_DOMAIN),
        ),
        "TJ": Adapter.from_keys_dir("TJ", keys, nats_url=hub.url, store_path=dbs["TJ"], handler=record_effect),
        "HE": Adapter.from_keys_dir("HE", keys, nats_url=hub.url, store_path=dbs["HE"], handler=record_effect),
    }
    submitted: dict[str, list[str]] = {"BJ": [], "HE": []}
    latencies: list[float] = []

    async def submit(region: str) -> None:
        i = len(submitted[region])
        data = example_payload("lead.submitted")
        data["origin_case_number"] = f"{region}〔2026〕{i + 1:04d}号"
        started = time.monotonic()
        event = await adapters[region].client.open("lead.submitted", to="TJ", data=data)
        if region == "BJ":
            latencies.append(time.monotonic() - started)
        submitted[region].append(event.envelope.id)

    async def all_done() -> bool:
        n = len(submitted["BJ"]) + len(submitted["HE"])
        return (
            effect_count(dbs["TJ"], "lead.submitted") >= n
            and effect_count(dbs["BJ"], "lead.received") >= len(submitted["BJ"])
            and effect_count(dbs["HE"], "lead.received") >= len(submitted["HE"])
            and all([await a.store.outbox_depth() == 0 for a in adapters.values()])
            and all([await consumer_idle(hub.url, r) for r in adapters])
        )

    try:
        async with asyncio.timeout(CUT_S + RECOVERY_DEADLINE_S + 90):
            await eventually(lambda: leaf_serves_jetstream(leaf.url), 30, "BJ's leaf node to link to the hub")
            await adapters["TJ"].start()  # declares the topology on the hub
            await adapters["HE"].start()
            await adapters["BJ"].start()  # through its leaf node
            for _ in range(WARMUP):
                await submit("BJ")
                await submit("HE")
            await eventually(all_done, 30, "the warm-up leads delivered and receipted")

            # --- the link is cut ---------------------------------------------------------
            await link.cut()
            cut_at = time.monotonic()
            await eventually(lambda: _not(leaf_serves_jetstream(leaf.url)), 10, "the leaf to lose the hub")
            bj_before, he_before = len(submitted["BJ"]), len(submitted["HE"])
            he_done_during = 0
            while time.monotonic() - cut_at < CUT_S:  # the prescribed duration of the cut
                tick = time.monotonic()
                await submit("BJ")
                await submit("HE")
                await asyncio.sleep(max(0.0, tick + SUBMIT_EVERY_S - time.monotonic()))
            he_at_tj = [e for e in effects(dbs["TJ"], "lead.submitted") if e[0] in set(submitted["HE"][he_before:])]
            he_done_during = len(he_at_tj)
            bj_at_tj_during = sum(1 for e in effects(dbs["TJ"]) if e[0] in set(submitted["BJ"][bj_before:]))
            depth_cut = await adapters["BJ"].store.outbox_depth()
            cut_wall = time.monotonic() - cut_at
            assert bj_at_tj_during == 0, "BJ's leads reached TJ through a cut link?"
            assert depth_cut == len(submitted["BJ"]) - bj_before, "BJ's submissions are not all kept in its outbox"
            assert he_done_during > 0, "the rest of the bus stopped while BJ's link was cut"

            # --- the link returns ----------------------------------------------------------
            await link.restore()
            restored_at = time.monotonic()
            await eventually(all_done, RECOVERY_DEADLINE_S, "everything delivered after the link returned")
            recovered_s = time.monotonic() - restored_at

            tj_leads = effects(dbs["TJ"], "lead.submitted")
            ids = [e[0] for e in tj_leads]
            assert duplicated(ids) == {}, "duplicate effects at TJ"
            assert sorted(ids) == sorted(submitted["BJ"] + submitted["HE"]), "lost or foreign effects at TJ"
            for region in ("BJ", "HE"):
                mine = set(submitted[region])
                assert [i for i in ids if i in mine] == submitted[region], f"{region}'s order not kept at TJ"
                receipts = effects(dbs[region], "lead.received")
                assert duplicated([r[0] for r in receipts]) == {}
                assert [r[2] for r in receipts] == submitted[region], f"{region}'s receipts not once each, in order"
            stored = await stream_events(hub.url)
            assert duplicated([s.event_id for s in stored]) == {}
            assert len(stored) == 2 * len(ids)
            assert [(d.code, d.stream_seq) for d in await dead_letters(hub.url)] == []
            print(
                f"\nleaf link cut: {cut_wall:.1f}s; BJ submitted {len(submitted['BJ']) - bj_before} leads meanwhile "
                f"(max latency {max(latencies) * 1000:.1f} ms, outbox depth {depth_cut}); HE→TJ leads handled during "
                f"the cut {he_done_during}/{len(submitted['HE']) - he_before}; recovered {recovered_s:.2f}s after the "
                f"link returned; {len(ids)} leads exactly once at TJ, per-origin order kept; "
                f"link connections {link.connections}"
            )
            assert max(latencies) < MAX_SUBMIT_S
    finally:
        for adapter in adapters.values():
            await adapter.stop()
        await link.cut()
        leaf.kill()
        hub.kill()


async def _not(check: object) -> bool:
    return not await check  # type: ignore[misc]
