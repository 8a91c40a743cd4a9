"""The smallest end-to-end check: a lead BJ→TJ is received, its receipt reaches BJ."""

from __future__ import annotations

import pytest

from tests.bus import Bus
from xregion.examples import PAYLOADS

pytestmark = pytest.mark.anyio


async def test_lead_reaches_tj_and_receipt_returns(bus: Bus) -> None:
    bj, _tj = await bus.start("BJ", "TJ")
    sent = await bj.client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    rid = sent.envelope.subject
    await bus.state("BJ", rid, "received")
    assert [d.event.envelope.id for d in bus.received["TJ"]] == [sent.envelope.id]
    assert [d.event.envelope.event_type for d in bus.received["BJ"]] == ["lead.received"]
