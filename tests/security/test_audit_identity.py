"""The auditor's commands work with nothing but the AUDIT identity on a secured server, and a
region's adapter may publish its own checkpoints (and no other region's)."""

from __future__ import annotations

import pytest

from tests.security.secure_bus import SETTINGS, SecureBus
from tests.support import example_payload
from xregion.auditor.checkpoints import collect
from xregion.auditor.replay import Replayer
from xregion.auditor.source import read_stream
from xregion.checkpoint import checkpoint_subject
from xregion.config import load_config
from xregion.subjects import CHECKPOINT_ROOT

pytestmark = pytest.mark.anyio


async def test_audit_reads_everything_and_regions_checkpoint(secure_bus: SecureBus) -> None:
    bus = secure_bus
    await bus.start("BJ", "TJ")
    sent = await bus.adapters["BJ"].client.open("lead.submitted", to="TJ", data=example_payload("lead.submitted"))
    await bus.state("BJ", sent.envelope.subject, "received")
    for adapter in bus.adapters.values():
        await adapter.wait_published()
        assert await adapter.publish_checkpoint(force=True)

    nc = await bus.connect("AUDIT")
    js = nc.jetstream()
    events = [r async for r in read_stream(js, SETTINGS.stream)]
    checkpoints = [r async for r in read_stream(js, SETTINGS.dead_letter_stream, filter_subject=f"{CHECKPOINT_ROOT}.>")]
    assert len(events) == 2 and {r.subject for r in checkpoints} == {checkpoint_subject("BJ"), checkpoint_subject("TJ")}
    found = collect(checkpoints, bus.roster)
    result = Replayer(bus.roster, load_config().regions, attestations=found.attestations).run(events)
    assert found.anomalies == [] and result.anomalies == []

    # BJ may not publish a checkpoint under TJ's name.
    forged = await bus.connect("BJ")
    await forged.publish(checkpoint_subject("TJ"), b"{}")
    await bus.log.wait_violation(checkpoint_subject("TJ"), "BJ")
