"""The conformance kit (schemas/conformance/) run through a real TJ adapter on a real
nats-server, exactly as any other implementation runs it: the adapter is started from the
kit's keys directory, the kit's runner publishes every case in order and judges each outcome
from the server alone. Every case must have its expected outcome; and the handler got exactly
the events the kit says are delivered, each once, v1 and v2 sealed alike opened; and each bad
sealing v2 case was refused at the field it altered.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bus import Bus
from xregion.adapter import Adapter
from xregion.conformance.runner import KIT_ROOT, Kit, run_kit
from xregion.runtime.deadletter import read_dead_letters

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
        letters = await read_dead_letters(nc.jetstream(), kit.receiver["dead_letter_stream"], "TJ")
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
    # a v2 sealed lead reaches the handler opened like its v1 twin
    [v2] = [d for d in bus.received["TJ"] if d.event.envelope.id == _expected_id(kit, "valid-lead-sealed-v2")]
    assert v2.payload == bus.received["TJ"][0].payload
    # each bad v2 case is refused at the field it altered (the binding, not another fault)
    fields = {letter.event_id: letter.reason.get("field") for letter in letters}
    assert {
        name: fields[_expected_id(kit, name)]
        for name in (
            "unseal-failed-v2-altered",
            "unseal-failed-v2-moved-field",
            "unseal-failed-v2-other-event",
        )
    } == {
        "unseal-failed-v2-altered": "data.suspects.1.name",
        "unseal-failed-v2-moved-field": "data.suspects.0.name",
        "unseal-failed-v2-other-event": "data.suspects.1.name",
    }


def _expected_id(kit: Kit, name: str) -> str:
    [case] = [c for c in kit.cases if c["name"].split("-", 1)[1] == name]
    return str(case["expect"]["event_id"])
