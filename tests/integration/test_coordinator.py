"""The coordinator against a real nats-server: the demo scenario projected live and rebuilt
from an empty store (equal), and escalation exactly once per threshold across a restart,
received by the late region's adapter."""

from __future__ import annotations

import io
from datetime import date, timedelta
from pathlib import Path

import nats
import pytest
from rich.console import Console

from tests.bus import Bus, eventually
from xregion.coordinator.calendar import WorkingCalendar
from xregion.coordinator.projection import Projection
from xregion.coordinator.service import Coordinator
from xregion.demo import run_demo
from xregion.examples import PAYLOADS
from xregion.keys import ROSTER_FILE, write_private_key
from xregion.ops.server import EmbeddedServer
from xregion.runtime.settings import RuntimeSettings
from xregion.runtime.stream_reader import StreamReader
from xregion.runtime.topology import ensure_topology

pytestmark = pytest.mark.anyio


async def declare_coordinator(url: str, settings: RuntimeSettings) -> None:
    nc = await nats.connect(url)
    try:
        await ensure_topology(nc.jetstream(), settings)  # the streams: the coordinator needs no consumer
    finally:
        await nc.close()


async def stream_messages(url: str, settings: RuntimeSettings) -> list[tuple[bytes, int, object]]:
    nc = await nats.connect(url)
    try:
        async with StreamReader(nc, settings.stream, batch=50) as reader:
            return [(m.data, m.seq, m.stored_at) async for m in reader.read(1)]
    finally:
        await nc.close()


async def test_projection_of_the_demo_rebuilt_from_scratch_equals_the_live_one(
    nats_server: EmbeddedServer, tmp_path: Path
) -> None:
    settings = RuntimeSettings(data_dir=tmp_path / "demo")
    sc = await run_demo(nats_url=nats_server.url, workdir=tmp_path / "demo", console=Console(file=io.StringIO()))
    await declare_coordinator(nats_server.url, settings)
    far = date.today() + timedelta(days=400)  # every open wait is overdue by then: escalations too
    coordinator = Coordinator(
        nats_url=nats_server.url,
        keys_dir=tmp_path / "demo" / "keys",
        store_path=tmp_path / "live.db",
        settings=settings,
        batch=7,  # the live projection is folded in many small transactions
        today=lambda: far,
        escalate_every_s=0,
    )
    await coordinator.start()
    try:
        await coordinator.catch_up()
        sent = await coordinator.escalate()
        await coordinator.wait_published()
        await coordinator.catch_up()
        live = coordinator.projection
        summary = live.summary(at=far)
        assert summary.total == len(sc.referrals)
        assert summary.anomalies == 0, live.anomalies()
        assert {e.split(":")[1] for v in live.referrals(at=far) for e in v.escalations} <= {"overdue", "overdue+5"}
        assert sum(len(v.escalations) for v in live.referrals(at=far)) == len(sent)
        shares = live.blacklist_propagation()
        assert shares and all(not p.pending for p in shares)
        messages = await stream_messages(nats_server.url, settings)
        assert messages[-1][1] == live.last_seq()
        with Projection(tmp_path / "rebuilt.db", config=live.config, verify=coordinator.verify) as rebuilt:
            assert rebuilt.rebuild(messages) == len(messages)  # type: ignore[arg-type]
            assert rebuilt.dump() == live.dump()
            assert rebuilt.summary(at=far) == summary
    finally:
        await coordinator.stop()


async def test_escalation_exactly_once_per_threshold_across_restart(bus: Bus, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    write_private_key(keys, bus.signers["COORD"])
    bus.roster.save(keys / ROSTER_FILE)
    await bus.start("BJ", "TJ")
    await declare_coordinator(bus.server.url, bus.settings)
    sent = await bus.adapters["BJ"].client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    rid = sent.envelope.subject
    await bus.state("BJ", rid, "received")

    clock = [date.today()]
    cal = WorkingCalendar()

    def make() -> Coordinator:
        return Coordinator(
            nats_url=bus.server.url,
            keys_dir=keys,
            store_path=tmp_path / "coord.db",
            settings=bus.settings,
            today=lambda: clock[0],
            escalate_every_s=0,
        )

    coordinator = make()
    await coordinator.start()
    try:
        await coordinator.catch_up()
        view = coordinator.projection.referral(rid)
        assert view is not None and view.answer_by is not None
        assert [w.party for w in view.waits] == ["TJ"]
        due = view.answer_by
        assert due == cal.add(view.waits[0].since, 10)  # lead.submitted: 10 working days

        clock[0] = due
        assert len(await coordinator.escalate()) == 1  # reminder
        clock[0] = due + timedelta(days=1)
        assert len(await coordinator.escalate()) == 1  # overdue
        assert await coordinator.escalate() == []
        await coordinator.wait_published()
    finally:
        await coordinator.stop()

    coordinator = make()  # a restart: same store, same clock
    await coordinator.start()
    try:
        assert await coordinator.escalate() == []
        clock[0] = cal.add(due, 5)
        assert len(await coordinator.escalate()) == 1  # overdue+5
        assert await coordinator.escalate() == []
        await coordinator.wait_published()

        async def tj_got_three() -> list[str] | None:
            kinds = [d.event.envelope.event_type for d in bus.received.get("TJ", [])]
            escalations = [k for k in kinds if k.startswith("escalation.")]
            return escalations if len(escalations) >= 3 else None

        kinds = await eventually(tj_got_three, 15, "TJ's adapter to receive the escalations")
        assert kinds == ["escalation.reminder", "escalation.overdue", "escalation.overdue"]

        async def projected() -> tuple[str, ...] | None:
            await coordinator.catch_up()
            view = coordinator.projection.referral(rid, at=clock[0])
            return view.escalations if view is not None and len(view.escalations) == 3 else None

        assert await eventually(projected, 15, "the projection to see the escalations") == (
            "TJ:reminder",
            "TJ:overdue",
            "TJ:overdue+5",
        )
        on_stream = [
            m for m in await stream_messages(bus.server.url, bus.settings) if b"cn.jjj.xregion.escalation." in m[0]
        ]
        assert len(on_stream) == 3
        assert await bus.dead_letters() == []
        view = coordinator.projection.referral(rid, at=clock[0])
        assert view is not None and view.overdue and view.late_parties == ("TJ",)
    finally:
        await coordinator.stop()
