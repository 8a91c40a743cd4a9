"""Evidence attachments through the JetStream object store, against a real nats-server.

* a file attached with ``client.attach`` and referenced from an evidence item arrives: the
  receiving adapter checks the stored object's digest and size against the reference before
  handing the event over, and ``download`` yields the same bytes;
* a reference that does not match the stored object (wrong digest, object overwritten,
  object missing) is dead-lettered with reason ``attachment_invalid`` naming the object, and
  the receiving adapter goes on with the sender's next event;
* a 200 MB attachment makes the round trip, streamed both ways (``-m slow``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext
from nats.js.errors import ObjectNotFoundError

from tests.bus import Bus
from tests.integration.helpers import assert_exactly_once, deliveries, quiesce, stream_events, types_of
from xregion.adapter import Adapter
from xregion.adapter.client import AttachmentMismatch
from xregion.codec import DecodedEvent
from xregion.contracts.common import AttachmentRef
from xregion.examples import EVIDENCE_PURCHASE, PAYLOADS
from xregion.permissions import BusNames
from xregion.runtime.consumer import attachments_of
from xregion.runtime.evidence import Evidence

pytestmark = pytest.mark.anyio

MB = 1024 * 1024


def evidence_item(ref: AttachmentRef, item_id: str = "E-100") -> dict[str, Any]:
    """An evidence item whose content is the attachment ``ref``."""
    return dict(EVIDENCE_PURCHASE, item_id=item_id, sha256=ref.sha256, attachment=ref.model_dump(mode="json"))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(MB):
            digest.update(chunk)
    return digest.hexdigest()


async def assisting(bus: Bus) -> tuple[Adapter, Adapter, str]:
    """BJ asks TJ for assistance and TJ accepts: TJ may now deliver evidence to BJ."""
    bj, tj = await bus.start("BJ", "TJ")
    requested = await bj.client.open("assist.requested", to="TJ", data=PAYLOADS["assist.requested"])
    rid = requested.envelope.subject
    await bus.state("TJ", rid, "received")
    await tj.client.send(rid, "assist.accepted", PAYLOADS["assist.accepted"])
    await bus.state("BJ", rid, "accepted")
    return bj, tj, rid


async def deliver(tj: Adapter, rid: str, ref: AttachmentRef, item_id: str) -> DecodedEvent:
    return await tj.client.send(rid, "assist.evidence_delivered", {"items": [evidence_item(ref, item_id)]})


@pytest.mark.parametrize("carrier", ["assist.evidence_delivered", "lead.submitted"])
async def test_attachment_arrives_verified_and_downloads_identical(bus: Bus, tmp_path: Path, carrier: str) -> None:
    content = os.urandom(3 * MB + 12_345)  # several object-store chunks, larger than one NATS message
    if carrier == "lead.submitted":
        bj, tj = await bus.start("BJ", "TJ")
        sender, receiver = bj, tj
        ref = await bj.client.attach(content, filename="现场照片.zip", media_type="application/zip")
        data = dict(PAYLOADS["lead.submitted"], evidence=[evidence_item(ref)])
        sent = await bj.client.open("lead.submitted", to="TJ", data=data)
        rid = sent.envelope.subject
        await bus.state("BJ", rid, "received")
    else:
        bj, tj, rid = await assisting(bus)
        sender, receiver = tj, bj
        ref = await tj.client.attach(content, filename="测试购买录像.mp4", media_type="video/mp4")
        sent = await deliver(tj, rid, ref, "E-100")
        await bus.state("BJ", rid, "evidence_delivered")
    assert (ref.sha256, ref.size, ref.object_name) == (hashlib.sha256(content).hexdigest(), len(content), ref.sha256)

    [delivery] = [d for d in deliveries(bus, receiver.region, rid) if d.event.envelope.id == sent.envelope.id]
    [got] = list(attachments_of(delivery.payload))
    assert got == ref
    path = await receiver.client.download(got, tmp_path / "inbox" / got.filename, owner=sender.region)
    assert path.read_bytes() == content
    assert hashlib.sha256(path.read_bytes()).hexdigest() == got.sha256
    # attaching the same bytes again stores nothing new and yields the same reference
    assert await sender.client.attach(content, filename=ref.filename, media_type=ref.media_type) == ref
    await quiesce(bus)
    await assert_exactly_once(bus)
    assert await bus.dead_letters() == []


async def overwrite(bus: Bus, owner: str, name: str, content: bytes) -> None:
    """Replace a stored object's content behind the adapters' back (a raw nats-py client)."""
    nc = await bus.raw()
    try:
        obs = await nc.jetstream().object_store(f"{bus.settings.object_store}_{owner}")
        await obs.put(name, io.BytesIO(content))
    finally:
        await nc.close()


async def stream_ids_by_addressee(bus: Bus) -> dict[str, list[str]]:
    nc = await bus.raw()
    try:
        events = await stream_events(nc.jetstream(), bus.settings.stream)
    finally:
        await nc.close()
    out: dict[str, list[str]] = {}
    for _, _, body in events:
        out.setdefault(body["addressee"], []).append(body["id"])
    return out


def handled_exactly_once_except(bus: Bus, stream: dict[str, list[str]], dead: set[str]) -> None:
    """Each region's handler got every event of the stream addressed to it once, except ``dead``."""
    for region in bus.adapters:
        got = [d.event.envelope.id for d in bus.received.get(region, [])]
        assert len(got) == len(set(got)), f"{region} handled an event twice"
        assert set(got) == set(stream.get(region, [])) - dead, region


@pytest.mark.parametrize("fault", ["wrong-sha256-in-reference", "object-overwritten", "object-missing"])
async def test_reference_not_matching_the_store_is_dead_lettered(bus: Bus, tmp_path: Path, fault: str) -> None:
    bj, tj, rid = await assisting(bus)
    original = os.urandom(256 * 1024)
    ref = await tj.client.attach(original, filename="证据.bin", media_type="application/octet-stream")
    if fault == "wrong-sha256-in-reference":
        bad_ref = ref.model_copy(update={"sha256": hashlib.sha256(b"something else").hexdigest()})
    elif fault == "object-overwritten":
        bad_ref = ref
        await overwrite(bus, "TJ", ref.object_name, os.urandom(len(original)))
    else:
        missing = os.urandom(1000)
        digest = hashlib.sha256(missing).hexdigest()
        bad_ref = AttachmentRef(
            object_name=digest, filename="不存在.bin", media_type="application/octet-stream", size=1000, sha256=digest
        )
    bad = await deliver(tj, rid, bad_ref, "E-BAD")

    # the sender goes on; the receiver handles the next event (its chain is not blocked)
    good_content = os.urandom(64 * 1024)
    good_ref = await tj.client.attach(good_content, filename="证据2.bin", media_type="application/octet-stream")
    good = await deliver(tj, rid, good_ref, "E-GOOD")
    completed = await tj.client.send(rid, "assist.completed", PAYLOADS["assist.completed"])
    await bus.state("BJ", rid, "completed")
    await quiesce(bus)

    [letter] = await bus.dead_letters()
    assert (letter.region, letter.code, letter.event_id) == ("BJ", "attachment_invalid", bad.envelope.id)
    assert letter.reason["code"] == "attachment_invalid"
    assert letter.reason["object_name"] == bad_ref.object_name
    assert bad_ref.object_name in letter.reason["message"]
    assert letter.original_subject == bad.subject
    assert json.loads(letter.body) == bad.wire  # the original message, kept byte for byte
    assert letter.stream_seq is not None
    # BJ never handed the bad event to its system nor recorded it; everything else arrived once
    got = [d.event.envelope.id for d in deliveries(bus, "BJ", rid)]
    assert bad.envelope.id not in got
    assert got[-2:] == [good.envelope.id, completed.envelope.id]
    assert types_of(deliveries(bus, "BJ", rid)) == [
        "assist.received",
        "assist.accepted",
        "assist.evidence_delivered",
        "assist.completed",
    ]
    assert bad.envelope.id not in [h.event_id for h in await bj.client.history(rid)]
    handled_exactly_once_except(bus, await stream_ids_by_addressee(bus), dead={bad.envelope.id})
    # a download of what the bad reference names is refused too
    if fault != "object-missing":
        with pytest.raises(AttachmentMismatch):
            await bj.client.download(bad_ref, tmp_path / "bad.bin", owner="TJ")
        assert not (tmp_path / "bad.bin").exists()
    assert (await bj.client.download(good_ref, tmp_path / "good.bin", owner="TJ")).read_bytes() == good_content


@pytest.mark.slow
async def test_200_mb_attachment_round_trip(bus: Bus, tmp_path: Path) -> None:
    size = 200 * MB
    source = tmp_path / "evidence-200mb.bin"
    digest = hashlib.sha256()
    with source.open("wb") as fh:
        for _ in range(size // MB):
            chunk = os.urandom(MB)
            digest.update(chunk)
            fh.write(chunk)
    expected = digest.hexdigest()
    bj, tj, rid = await assisting(bus)

    started = time.monotonic()
    ref = await tj.client.attach(source, filename="监控录像.mp4", media_type="video/mp4")
    upload_s = time.monotonic() - started
    assert (ref.sha256, ref.size) == (expected, size)
    sent = await deliver(tj, rid, ref, "E-200MB")
    await bus.state("BJ", rid, "evidence_delivered", timeout=60.0)
    [delivery] = [d for d in deliveries(bus, "BJ", rid) if d.event.envelope.id == sent.envelope.id]
    [got] = list(attachments_of(delivery.payload))

    started = time.monotonic()
    path = await bj.client.download(got, tmp_path / "download" / got.filename, owner="TJ")
    download_s = time.monotonic() - started
    assert path.stat().st_size == size
    assert sha256_of(path) == expected
    print(
        f"\n200 MB attachment: upload {upload_s:.1f}s ({size / MB / upload_s:.0f} MB/s), "
        f"download+verify {download_s:.1f}s ({size / MB / download_s:.0f} MB/s)"
    )
    await quiesce(bus)
    await assert_exactly_once(bus)
    assert await bus.dead_letters() == []


async def test_an_object_of_a_region_without_a_bucket_is_simply_not_found(bus: Bus, js: JetStreamContext) -> None:
    """A reference claiming HE's bucket when HE has none (HE never started here) is 'not
    found' — an attachment_invalid dead letter at the receiver — not an unexpected error."""
    await bus.start("BJ")
    evidence = Evidence(js, BusNames(object_store=bus.settings.object_store))
    with pytest.raises(ObjectNotFoundError):
        await evidence.info("HE", hashlib.sha256(b"x").hexdigest())
    with pytest.raises(ObjectNotFoundError):
        await evidence.info("BJ", hashlib.sha256(b"x").hexdigest())
