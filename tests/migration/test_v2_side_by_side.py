"""The migration path for a breaking change: a v2 event type served beside v1.

``share.alert`` gains a v2 in this test only: ``risk_level`` (a word) becomes ``severity``
(1-4). BJ speaks both versions; TJ serves v1 and v2 subjects and its handler is written
against v2, so v1 alerts are upcast for it; HE still reads only v1 and must neither see
the v2 events nor mistake their absence for gaps in BJ's chain.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, Field

from tests.bus import Bus, eventually
from xregion.adapter import Delivery
from xregion.contracts.catalog import EventType, v1_catalog
from xregion.contracts.common import Contract, ShortText, Text
from xregion.errors import UnsupportedVersion
from xregion.examples import PAYLOADS

pytestmark = pytest.mark.anyio

SEVERITY = {"low": 1, "medium": 2, "high": 3, "critical": 4}


class AlertV2(Contract):
    """share.alert v2: severity as a number (breaking: field renamed, type changed)."""

    title: ShortText
    severity: int = Field(ge=1, le=4)
    description: Text


def upcast_alert_v1(data: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in data.items() if k in ("title", "description")}
    out["severity"] = SEVERITY[data["risk_level"]]
    return out


@pytest.fixture
def catalog():  # type: ignore[no-untyped-def]
    catalog = v1_catalog()
    catalog.register(EventType("share", "alert", AlertV2, version=2))
    catalog.register_upcaster("share.alert", 1, upcast_alert_v1)
    return catalog


async def test_v1_and_v2_side_by_side_with_upcasting(bus: Bus, catalog) -> None:  # type: ignore[no-untyped-def]
    seen_by_tj: list[tuple[int, BaseModel]] = []

    async def v2_handler(delivery: Delivery) -> None:
        if delivery.event.envelope.event_type == "share.alert":
            seen_by_tj.append((delivery.event.event_type.version, delivery.payload_as(2)))

    await bus.start("BJ", catalog=catalog, versions=("v1", "v2"))
    await bus.start("TJ", catalog=catalog, versions=("v1", "v2"), handler=v2_handler)
    await bus.start("HE")  # v1 only, the default catalog
    bj = bus.adapters["BJ"].client

    v1 = await bj.open("share.alert", to="ALL", data=PAYLOADS["share.alert"])
    v2 = await bj.open(
        "share.alert",
        to="ALL",
        version=2,
        data={"title": "假冒白酒风险提示（v2）", "severity": 4, "description": "请加强巡查"},
    )
    later_v1 = await bj.open("share.alert", to="ALL", data=dict(PAYLOADS["share.alert"], title="第三次提示"))
    assert v2.subject == "xregion.v2.share.alert.BJ.ALL"
    assert v1.envelope.linkseq == 1 and later_v1.envelope.linkseq == 2 and v2.envelope.linkseq == 1

    async def tj_has_three() -> bool:
        return len(seen_by_tj) == 3

    await eventually(tj_has_three, what="TJ to handle three alerts")
    assert [version for version, _ in seen_by_tj] == [1, 2, 1]
    assert all(isinstance(payload, AlertV2) for _, payload in seen_by_tj)
    assert [p.severity for _, p in seen_by_tj] == [3, 4, 3]  # type: ignore[attr-defined]

    for sent in (v1, v2, later_v1):
        await bus.state("BJ", sent.envelope.subject, "published")

    # HE read only the v1 alerts, in order, with no gap on BJ>ALL and nothing dead-lettered.
    async def he_has_two() -> list[str] | None:
        got = [d.event.envelope.id for d in bus.received.get("HE", [])]
        return got if len(got) == 2 else None

    assert await eventually(he_has_two, what="HE to handle the two v1 alerts") == [v1.envelope.id, later_v1.envelope.id]
    assert await bus.dead_letters() == []

    # Every region acknowledged what it can read: TJ all three, HE the two v1 alerts.
    async def acked() -> bool:
        states = [await bj.referral(s.envelope.subject) for s in (v1, v2, later_v1)]
        return all(s and s.tracks.get("TJ") == "acknowledged" for s in states) and all(
            s and s.tracks.get("HE") == "acknowledged" for s in (states[0], states[2])
        )

    await eventually(acked, what="acknowledgements")
    # Downcasting is refused: a v1 reader cannot take a v2 event.
    delivery = bus.received["HE"][0]
    with pytest.raises(UnsupportedVersion):
        Delivery(v2, 0, 1, delivery.tx, catalog).payload_as(1)
