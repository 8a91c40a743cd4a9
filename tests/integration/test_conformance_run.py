"""The conformance kit (schemas/conformance/) run through a real TJ adapter on a real
nats-server, exactly as any other implementation runs it: the adapter is started from the
kit's keys directory, the kit's runner publishes every case in order and judges each outcome
from the server alone. Every case must have its expected outcome; and the handler got exactly
the events the kit says are delivered, each once.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bus import Bus
from xregion.adapter import Adapter
from xregion.conformance.runner import KIT_ROOT, Kit, run_kit

pytestmark = pytest.mark.anyio


async def test_every_case_of_the_kit_has_its_expected_outcome_at_an_xregion_adapter(bus: Bus, tmp_path: Path) -> None:
    kit = Kit.load(KIT_ROOT)
    adapter = Adapter.from_keys_dir(
        "TJ",
        KIT_ROOT / kit.receiver["keys_dir"],
        nats_url=bus.server.url,
        store_path=tmp_path / "TJ.db",
        settings=bus.settings,
        handler=bus.recorder("TJ"),
    )
    await adapter.start()
    bus.adapters["TJ"] = adapter  # stopped by the fixture
    nc = await bus.raw()
    try:
        outcomes = await run_kit(nc.jetstream(), kit)
    finally:
        await nc.close()
    report = "\n".join(f"{o.name}: expected {o.expected}, got {o.got}; {o.problems}" for o in outcomes if not o.ok)
    assert all(o.ok for o in outcomes), report
    assert len(outcomes) == len(kit.cases) + 1  # and the end-of-run check
    delivered = [c["expect"]["event_id"] for c in kit.cases if c["expect"]["outcome"] == "delivered"]
    assert [d.event.envelope.id for d in bus.received["TJ"]] == delivered
    # what reached the handler is what the kit holds, byte for byte, its personal data opened
    first = json.loads(kit.body(kit.cases[0]))
    assert bus.received["TJ"][0].event.wire == first
    assert bus.received["TJ"][0].payload.suspects[1].name == "张某"  # type: ignore[attr-defined]
