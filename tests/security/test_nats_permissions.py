"""The NATS server itself enforces who may say and read what (ARCHITECTURE §5 *Security*).

Every refused attempt must be refused by the server (not by our client code), must not reach
the stream, must appear in the server's log and as a ``security event`` line in ours.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import api

from tests.bus import eventually
from tests.security.secure_bus import SecureBus
from xregion.examples import PAYLOADS
from xregion.ops.backup import backup_stream, restore_stream
from xregion.permissions import consumer_name

pytestmark = pytest.mark.anyio

REFUSED = (NatsTimeoutError, TimeoutError)
"""A JetStream request whose publish the server refuses gets no answer: it times out."""


async def test_region_runs_its_adapter_with_only_its_identity(secure_bus: SecureBus) -> None:
    """BJ→TJ lead with receipts and an evidence attachment over mutual TLS + NKeys, the
    topology declared by ADMIN and only verified by the adapters; no violation anywhere."""
    bj, tj = await secure_bus.start("BJ", "TJ")
    video = b"test-purchase video " * 20_000
    ref = await bj.client.attach(video, filename="video.mp4", media_type="video/mp4")
    sent = await bj.client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    rid = sent.envelope.subject
    await secure_bus.state("TJ", rid, "received")
    await secure_bus.state("BJ", rid, "received")
    await tj.client.send(rid, "lead.accepted", PAYLOADS["lead.accepted"])
    await secure_bus.state("BJ", rid, "accepted")
    got = await tj.client.download(ref, secure_bus.root / "evidence" / "video.mp4", owner="BJ")
    assert got.read_bytes() == video
    assert [d.event.envelope.event_type for d in secure_bus.received["TJ"]] == ["lead.submitted"]
    assert [d.event.envelope.event_type for d in secure_bus.received["BJ"]] == ["lead.received", "lead.accepted"]
    assert bj.topology is not None and not bj.topology.created  # ADMIN declared everything
    assert secure_bus.log.security_events() == []
    assert "Violation" not in secure_bus.server_log()


async def test_region_cannot_publish_as_another_region(secure_bus: SecureBus) -> None:
    subject = "xregion.v1.lead.submitted.TJ.HE"
    nc = await secure_bus.connect("BJ")
    with pytest.raises(REFUSED):
        await nc.jetstream().publish(subject, b'{"forged": true}', timeout=1.0)
    event = await secure_bus.log.wait_violation(subject, "BJ")
    assert event["operation"] == "publish" and event["subject"] == subject and event["client"] == "test-BJ"
    await secure_bus.server_logged("Publish Violation", f'"{subject}"')
    assert subject not in await secure_bus.stream_subjects()


async def test_region_cannot_read_what_is_not_addressed_to_it(secure_bus: SecureBus) -> None:
    """BJ subscribing to HE→TJ gets nothing, while TJ's real adapter receives HE's lead."""
    _he, _tj = await secure_bus.start("HE", "TJ")
    snooped: list[str] = []
    nc = await secure_bus.connect("BJ")

    async def snoop(msg: object) -> None:
        snooped.append(getattr(msg, "subject", ""))

    subject = "xregion.v1.lead.submitted.HE.TJ"
    await nc.subscribe(subject, cb=snoop)
    await nc.subscribe("xregion.>", cb=snoop)
    await secure_bus.log.wait_violation(subject, "BJ")
    await secure_bus.log.wait_violation("xregion.>", "BJ")
    await secure_bus.server_logged("Subscription Violation", f'"{subject}"')

    sent = await secure_bus.adapters["HE"].client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    await secure_bus.state("HE", sent.envelope.subject, "received")  # TJ got it and answered
    assert [d.event.envelope.id for d in secure_bus.received["TJ"]] == [sent.envelope.id]
    await nc.flush()
    assert snooped == []


async def test_region_cannot_give_itself_a_consumer_on_another_regions_traffic(secure_bus: SecureBus) -> None:
    """Creating a consumer filtered to TJ, rewriting TJ's durable, or fetching from it: refused."""
    await secure_bus.start("HE", "TJ")
    sent = await secure_bus.adapters["HE"].client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    await secure_bus.state("HE", sent.envelope.subject, "received")
    nc = await secure_bus.connect("BJ")
    js = nc.jetstream()

    steal = api.ConsumerConfig(name="steal", filter_subject="xregion.*.*.*.*.TJ", ack_policy=api.AckPolicy.NONE)
    with pytest.raises(REFUSED):
        await js.add_consumer("XREGION", steal, timeout=1.0)
    await secure_bus.log.wait_violation("$js.api.consumer.create.xregion.steal.xregion.*.*.*.*.tj", "BJ")
    await secure_bus.server_logged("Publish Violation", '"$JS.API.CONSUMER.CREATE.XREGION.steal.')

    # The unnamed create with a name in the body would rewrite TJ's durable: refused too.
    hijack = {"stream_name": "XREGION", "config": {"name": consumer_name("TJ"), "filter_subject": "xregion.>"}}
    with pytest.raises(REFUSED):
        await nc.request("$JS.API.CONSUMER.CREATE.XREGION", json.dumps(hijack).encode(), timeout=1.0)
    await secure_bus.log.wait_violation("$js.api.consumer.create.xregion", "BJ")

    sub = await js.pull_subscribe_bind(durable=consumer_name("TJ"), stream="XREGION")
    with pytest.raises(REFUSED):
        await sub.fetch(1, timeout=1.0)
    await secure_bus.log.wait_violation(f"$js.api.consumer.msg.next.xregion.{consumer_name('TJ')}", "BJ")
    await secure_bus.server_logged("Publish Violation", f'"$JS.API.CONSUMER.MSG.NEXT.XREGION.{consumer_name("TJ")}"')

    with pytest.raises(REFUSED):  # reading the stream directly
        await js.get_msg("XREGION", 1)
    await secure_bus.log.wait_violation("$js.api.stream.msg.get.xregion", "BJ")

    # TJ's durable is untouched and still filtered to TJ.
    admin = await secure_bus.connect("ADMIN")
    info = await admin.jetstream().consumer_info("XREGION", consumer_name("TJ"))
    assert info.config.filter_subjects == ["xregion.v1.*.*.*.TJ", "xregion.v1.*.*.*.ALL"]


async def test_coordinator_cannot_publish_a_lead_as_a_region(secure_bus: SecureBus) -> None:
    subject = "xregion.v1.lead.submitted.BJ.TJ"
    nc = await secure_bus.connect("COORD")
    with pytest.raises(REFUSED):
        await nc.jetstream().publish(subject, b"{}", timeout=1.0)
    await secure_bus.log.wait_violation(subject, "COORD")
    await secure_bus.server_logged("Publish Violation", f'"{subject}"')
    assert subject not in await secure_bus.stream_subjects()


async def test_coordinator_publishes_escalations_only(secure_bus: SecureBus) -> None:
    """Even with its own code as sender, the coordinator may not open a lead or answer one."""
    subject = "xregion.v1.lead.submitted.COORD.TJ"
    nc = await secure_bus.connect("COORD")
    with pytest.raises(REFUSED):
        await nc.jetstream().publish(subject, b"{}", timeout=1.0)
    await secure_bus.log.wait_violation(subject, "COORD")
    assert subject not in await secure_bus.stream_subjects()
    allowed = "xregion.v1.escalation.reminder.COORD.TJ"
    ack = await nc.jetstream().publish(allowed, b"{}", timeout=5.0)
    assert ack.seq > 0 and allowed in await secure_bus.stream_subjects()


async def test_coordinator_reads_everything_by_sequence(secure_bus: SecureBus) -> None:
    await secure_bus.start("BJ", "TJ")
    sent = await secure_bus.adapters["BJ"].client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    await secure_bus.state("BJ", sent.envelope.subject, "received")
    nc = await secure_bus.connect("COORD")
    msgs = [await nc.jetstream().get_msg("XREGION", seq, direct=True) for seq in (1, 2)]
    assert {m.subject for m in msgs} == {"xregion.v1.lead.submitted.BJ.TJ", "xregion.v1.lead.received.TJ.BJ"}
    # The regions' consumer lag (for /metrics) is readable; their messages are not.
    info = await nc.jetstream().consumer_info("XREGION", consumer_name("TJ"))
    assert info.name == consumer_name("TJ") and info.num_pending is not None
    assert secure_bus.log.security_events() == []
    tj_sub = await nc.jetstream().pull_subscribe_bind(durable=consumer_name("TJ"), stream="XREGION")
    with pytest.raises(REFUSED):
        await tj_sub.fetch(1, timeout=1.0)
    await secure_bus.log.wait_violation(f"$js.api.consumer.msg.next.xregion.{consumer_name('TJ')}", "COORD")


async def test_auditor_reads_the_stream_and_publishes_nothing(secure_bus: SecureBus) -> None:
    await secure_bus.start("BJ", "TJ")
    sent = await secure_bus.adapters["BJ"].client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    await secure_bus.state("BJ", sent.envelope.subject, "received")
    nc = await secure_bus.connect("AUDIT")
    js = nc.jetstream()

    # reads: by sequence (direct gets), never through a consumer of its own
    assert await secure_bus.stream_subjects() == [
        "xregion.v1.lead.submitted.BJ.TJ",
        "xregion.v1.lead.received.TJ.BJ",
    ]
    assert (await js.get_msg("XREGION", 2, direct=True)).subject == "xregion.v1.lead.received.TJ.BJ"
    audit = api.ConsumerConfig(name="audit", ack_policy=api.AckPolicy.EXPLICIT, inactive_threshold=30.0)
    with pytest.raises(REFUSED):
        await js.add_consumer("XREGION", audit, timeout=1.0)
    await secure_bus.log.wait_violation("$js.api.consumer.create.xregion.audit", "AUDIT")

    # publishes nothing: neither an event nor a dead letter
    for subject in ("xregion.v1.lead.submitted.BJ.TJ", "xregion.dlq.BJ.bad_signature"):
        await nc.publish(subject, b"{}")
        await secure_bus.log.wait_violation(subject, "AUDIT")
        await secure_bus.server_logged("Publish Violation", f'"{subject}"')
    # and cannot touch a region's durable
    with pytest.raises(REFUSED):
        await js.add_consumer("XREGION", api.ConsumerConfig(durable_name=consumer_name("BJ")), timeout=1.0)
    await secure_bus.log.wait_violation(f"$js.api.consumer.durable.create.xregion.{consumer_name('BJ')}", "AUDIT")

    assert len(await secure_bus.stream_subjects()) == 2


async def test_violations_are_logged_while_the_adapter_keeps_running(secure_bus: SecureBus) -> None:
    """A violation on the adapter's own connection is a security event, not a crash."""
    (bj,) = await secure_bus.start("BJ")
    nc = bj.broker.connection
    await nc.publish("xregion.v1.lead.submitted.TJ.BJ", b"{}")
    event = await secure_bus.log.wait_violation("xregion.v1.lead.submitted.TJ.BJ", "BJ")
    assert event["client"] == "xregion-adapter-BJ"
    sent = await bj.client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    await bj.wait_published(timeout=10.0)

    async def stored() -> bool:
        return "xregion.v1.lead.submitted.BJ.TJ" in await secure_bus.stream_subjects()

    await eventually(stored, 10.0, f"BJ's lead {sent.envelope.subject} in the stream")


async def test_operator_backs_up_and_restores_the_event_stream_a_region_cannot(
    secure_bus: SecureBus, tmp_path: Path
) -> None:
    """The runbook's online backup and restore work with nothing but the ADMIN identity."""
    bj, _ = await secure_bus.start("BJ", "TJ")
    sent = await bj.client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    await secure_bus.state("BJ", sent.envelope.subject, "received")
    for adapter in secure_bus.adapters.values():
        await adapter.stop()
    secure_bus.adapters.clear()
    subjects = await secure_bus.stream_subjects()

    region = await secure_bus.connect("BJ")
    await region.publish("$JS.API.STREAM.SNAPSHOT.XREGION", b"{}")
    await secure_bus.log.wait_violation("$js.api.stream.snapshot.xregion", "BJ")

    admin = await secure_bus.connect("ADMIN")
    backup = await backup_stream(admin, "XREGION", tmp_path / "backup")
    assert backup.messages == len(subjects) >= 2
    await admin.jetstream().delete_stream("XREGION")
    await restore_stream(admin, tmp_path / "backup")
    assert await secure_bus.stream_subjects() == subjects
    assert not secure_bus.log.security_events("permission_violation", party="ADMIN")
