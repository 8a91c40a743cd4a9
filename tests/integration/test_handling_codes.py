"""Handling codes enforced across real adapters: an H2 lead is not passed on without permission.

Three adapters on a real nats-server. TJ refers a lead to HE marked H2 (no onward sharing
without the originator's permission). HE's attempt to forward it to BJ is refused locally
(``handling_restricted``, nothing stored or published); HE asks TJ, TJ grants
``onward_sharing`` to BJ, and the forward goes through: BJ receives the new, linked lead with
H2 inherited and its personal data readable. A forwarded event that skips the permission
(a buggy or forged HE, played here with HE's key outside any adapter) is dead-lettered by
the origin TJ with the same reason.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.bus import Bus, eventually
from tests.integration.helpers import deliveries, quiesce, stream_events, types_of
from tests.support import OriginChain, example_event
from xregion.codec import DecodedEvent, encode
from xregion.config import load_config
from xregion.errors import HandlingRestricted
from xregion.examples import PAYLOADS

pytestmark = pytest.mark.anyio

REASON = PAYLOADS["lead.forwarded"]["reason"]
ASK = {"purpose": "onward_sharing", "target_region": "BJ", "reason": "经营者住所地在北京市"}
GRANT = {"purpose": "onward_sharing", "target_region": "BJ"}


async def event_types_in_stream(bus: Bus) -> list[str]:
    nc = await bus.raw()
    try:
        return [subject for _, subject, _ in await stream_events(nc.jetstream(), bus.settings.stream)]
    finally:
        await nc.close()


async def test_h2_lead_is_forwarded_only_after_the_originator_grants_it(bus: Bus) -> None:
    await bus.start("BJ", "TJ", "HE")
    tj, he = bus.adapters["TJ"].client, bus.adapters["HE"].client
    sent = await tj.open("lead.submitted", to="HE", data=PAYLOADS["lead.submitted"], handling="H2")
    rid = sent.envelope.subject
    state = await bus.state("HE", rid, "received")
    assert state.handling == ("H2",) and state.permissions == frozenset()
    await quiesce(bus)
    stream_before = await event_types_in_stream(bus)
    depth_before = await bus.adapters["HE"].store.read(lambda db: db.execute("SELECT count(*) FROM outbox").fetchone())

    # 1. Refused locally: a specific error naming the code, the referral and the target.
    with capture_logs() as logs, pytest.raises(HandlingRestricted) as info:
        await he.forward_lead(rid, "BJ", REASON)
    err = info.value
    assert err.code == "handling_restricted"
    assert err.details["handling"] == "H2" and err.details["referral_id"] == rid
    assert err.details["target_region"] == "BJ" and err.details["origin"] == "TJ"
    assert "H2" in err.message and rid in err.message and "BJ" in err.message
    assert any(
        line["event"] == "forward refused by handling code"
        and line["referral_id"] == rid
        and line["target_region"] == "BJ"
        and line["reason_code"] == "handling_restricted"
        for line in logs
    )
    # ... and nothing was stored or published.
    assert (await he.referral(rid)).state == "received"  # type: ignore[union-attr]
    depth_after = await bus.adapters["HE"].store.read(lambda db: db.execute("SELECT count(*) FROM outbox").fetchone())
    assert depth_after == depth_before
    await quiesce(bus)
    assert await event_types_in_stream(bus) == stream_before
    assert [r.referral_id for r in await bus.adapters["BJ"].client.referrals()] == []

    # 2. HE asks, TJ grants: recorded in both views, the lead's state unchanged.
    await he.send(rid, "lead.permission_requested", ASK)

    async def asked() -> bool:
        return "lead.permission_requested" in types_of(deliveries(bus, "TJ", rid))

    await eventually(asked, 10.0, "TJ to receive HE's permission request")
    request = deliveries(bus, "TJ", rid)[-1]
    assert request.payload.target_region == "BJ"  # type: ignore[attr-defined]
    assert (await tj.referral(rid)).state == "received"  # type: ignore[union-attr]
    await tj.send(rid, "lead.permission_granted", GRANT)

    async def granted() -> Any:
        state = await he.referral(rid)
        return state if state is not None and "onward_sharing:BJ" in state.permissions else None

    state = await eventually(granted, 10.0, "HE to record TJ's permission")
    assert state.state == "received"
    tj_view = await tj.referral(rid)
    assert tj_view is not None and tj_view.permissions == {"onward_sharing:BJ"}

    # 3. Now the forward goes through; BJ gets the new lead, H2 inherited, data readable.
    _, opened = await he.forward_lead(rid, "BJ", REASON)
    new_id = opened.envelope.subject
    assert opened.envelope.handling == "H2"
    await bus.state("TJ", rid, "forwarded")
    new_state = await bus.state("BJ", new_id, "received")
    assert new_state.handling == ("H2",) and new_state.origin == "HE"
    (delivery,) = deliveries(bus, "BJ", new_id)
    assert delivery.event.envelope.handling == "H2"
    assert delivery.event.envelope.correlationid == rid
    payload: Any = delivery.payload
    assert payload.forwarded_from.referral_id == rid and payload.forwarded_from.region == "HE"
    assert [s.name for s in payload.suspects] == [s["name"] for s in PAYLOADS["lead.submitted"]["suspects"]]
    # BJ may not pass it on to TJ either without asking HE, its originator now.
    with pytest.raises(HandlingRestricted) as info:
        await bus.adapters["BJ"].client.forward_lead(new_id, "TJ", REASON)
    assert info.value.details["origin"] == "HE" and info.value.details["target_region"] == "TJ"
    await quiesce(bus)
    assert await bus.dead_letters() == []
    history = [(h.event_type, h.sender, h.state_after) for h in await tj.history(rid)]
    assert history == [
        ("lead.submitted", "TJ", "submitted"),
        ("lead.received", "HE", "received"),
        ("lead.permission_requested", "HE", "received"),
        ("lead.permission_granted", "TJ", "received"),
        ("lead.forwarded", "HE", "forwarded"),
    ]


async def test_forged_forward_of_an_h2_lead_is_dead_lettered_at_the_origin(bus: Bus) -> None:
    """HE's key signs a ``lead.forwarded`` its adapter would have refused (no permission):
    TJ dead-letters it as ``handling_restricted``; once TJ granted, the same step is accepted."""
    await bus.start("TJ")
    tj = bus.adapters["TJ"].client
    sent = await tj.open("lead.submitted", to="HE", data=PAYLOADS["lead.submitted"], handling="H2")
    rid = sent.envelope.subject
    he = OriginChain(bus.signers["HE"], registry=load_config().regions)
    nc = await bus.raw()
    js = nc.jetstream()

    async def publish(name: str, data: dict[str, Any]) -> DecodedEvent:
        event = example_event(
            name, sender="HE", to="TJ", referral_id=rid, payload=data, time=datetime.now(UTC), sealed=True
        )
        decoded = he.seal(event)
        await js.publish(decoded.subject, encode(decoded.wire), headers={"Nats-Msg-Id": decoded.envelope.id})
        return decoded

    try:
        await publish("lead.received", {})
        await bus.state("TJ", rid, "received")
        forged = await publish(
            "lead.forwarded", {"to_region": "BJ", "new_referral_id": "HE-" + rid[3:], "reason": REASON}
        )

        async def dead() -> Any:
            return [d for d in await bus.dead_letters("TJ") if d.event_id == forged.envelope.id]

        (letter,) = await eventually(dead, 10.0, "TJ to dead-letter the forged forward")
        assert letter.reason["code"] == "handling_restricted"
        assert letter.reason["referral_id"] == rid and letter.reason["target_region"] == "BJ"
        assert letter.reason["handling"] == "H2"
        alerts = await eventually(bus.alerts, 10.0, "a security alert for the forged forward")
        assert [(a.code, a.record["event_id"]) for a in alerts] == [("handling_restricted", forged.envelope.id)]
        assert (await tj.referral(rid)).state == "received"  # type: ignore[union-attr]

        await publish("lead.permission_requested", ASK)
        await eventually(lambda: _has(bus, rid, "lead.permission_requested"), 10.0, "TJ to receive the request")
        await tj.send(rid, "lead.permission_granted", GRANT)
        again = await publish(
            "lead.forwarded", {"to_region": "BJ", "new_referral_id": "HE-" + rid[3:], "reason": REASON}
        )
        await bus.state("TJ", rid, "forwarded")
        assert [d.event_id for d in await bus.dead_letters("TJ")] == [forged.envelope.id]
        assert again.envelope.id in {d.event.envelope.id for d in deliveries(bus, "TJ", rid)}
    finally:
        await nc.close()


async def _has(bus: Bus, referral_id: str, event_type: str) -> bool:
    return event_type in types_of(deliveries(bus, "TJ", referral_id))
