"""The verifiable log on the secured broker (accounts, mutual TLS, one identity per party):
the auditor publishes its checkpoints and nothing else, each region's witness reads the
log's latest checkpoint and no other message of the dead-letter stream, and the whole round
— log, three witnesses, cosignatures gathered — works with nothing but those rights."""

from __future__ import annotations

from pathlib import Path

import pytest
from nats.errors import TimeoutError as NatsTimeoutError

from tests.security.secure_bus import SETTINGS, SecureBus
from tests.support import dev_seed, roster_key
from xregion.auditor.checkpointer import Checkpointer
from xregion.auditor.tlog import TransparencyLog
from xregion.examples import PAYLOADS
from xregion.note import default_origin
from xregion.signing import KeyRoster, Signer

pytestmark = pytest.mark.anyio
REFUSED = (NatsTimeoutError, TimeoutError)


@pytest.fixture
def audit(roster: KeyRoster) -> Signer:
    signer = Signer.from_seed("AUDIT", dev_seed("AUDIT"))
    roster.add(roster_key(signer))
    return signer


async def test_log_and_witnesses_need_only_their_own_rights(
    secure_bus: SecureBus, tmp_path: Path, audit: Signer, roster: KeyRoster
) -> None:
    adapters = await secure_bus.start("BJ", "TJ", "HE")
    sent = await secure_bus.adapters["BJ"].client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    await secure_bus.state("BJ", sent.envelope.subject, "received")

    nc = await secure_bus.connect("AUDIT")
    tlog = TransparencyLog(tmp_path / "tlog.db", origin=default_origin(SETTINGS.stream), stream=SETTINGS.stream)
    service = Checkpointer(
        tlog,
        nc,
        audit,
        lambda: roster,
        ["BJ", "TJ", "HE"],
        stream=SETTINGS.stream,
        dead_letter_stream=SETTINGS.dead_letter_stream,
    )
    try:
        assert await service.sync() == 2
        made = await service.checkpoint()
        assert made is not None and service._published == made.size  # published as AUDIT
        for adapter in adapters:
            assert adapter.witness is not None and await adapter.witness.step() is not None
        assert await service.collect() == 3
        assert tlog.cosigners(made.size) == ["BJ", "HE", "TJ"]
    finally:
        tlog.close()

    # the auditor publishes no one else's checkpoint, and still no event
    for subject in ("xregion.checkpoint.BJ", "xregion.v1.lead.submitted.BJ.TJ"):
        await nc.publish(subject, b"{}")
        await secure_bus.log.wait_violation(subject, "AUDIT")
    # a region reads the log's latest checkpoint, nothing else of the dead-letter stream
    tj = await secure_bus.connect("TJ")
    js = tj.jetstream(timeout=1.0)
    assert (await js.get_last_msg(SETTINGS.dead_letter_stream, "xregion.checkpoint.AUDIT", direct=True)).data
    with pytest.raises(REFUSED):
        await js.get_last_msg(SETTINGS.dead_letter_stream, "xregion.checkpoint.BJ", direct=True)
    await secure_bus.log.wait_violation("$js.api.direct.get.xregion_dlq.xregion.checkpoint.bj", "TJ")
    with pytest.raises(REFUSED):
        await js.get_msg(SETTINGS.dead_letter_stream, 1, direct=True)
    await secure_bus.log.wait_violation("$js.api.direct.get.xregion_dlq", "TJ")
