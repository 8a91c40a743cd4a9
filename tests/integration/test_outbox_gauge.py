"""``xregion_outbox_depth`` is the number of unpublished outbox rows (issue 14 item 7): a
refused submission adds no row and must not move the gauge (it read 5 with 0 rows)."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from tests.bus import Bus, eventually
from xregion.errors import XRegionError
from xregion.examples import PAYLOADS

pytestmark = pytest.mark.anyio


async def test_outbox_depth_gauge_counts_rows_not_submissions(bus: Bus) -> None:
    bj, _tj = await bus.start("BJ", "TJ")
    sent = await bj.client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    rid = sent.envelope.subject
    await bus.state("BJ", rid, "received")
    for _ in range(5):  # BJ is the origin: accepting is the addressee's step, refused
        with pytest.raises(XRegionError):
            await bj.client.send(rid, "lead.accepted", PAYLOADS["lead.accepted"])

    async def settled() -> bool:
        gauge = REGISTRY.get_sample_value("xregion_outbox_depth", {"region": "BJ"})
        return await bj.store.outbox_depth() == 0 and gauge == 0

    await eventually(settled, 10.0, "the outbox gauge to read the 0 unpublished rows")
