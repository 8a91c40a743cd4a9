"""Key rotation without downtime, and revocation, against a real nats-server.

The adapters run from a keys directory (``roster.json`` and ``private/<party>.key``) as in
production; the test rotates and revokes with the same functions ``xregion keys rotate`` and
``xregion keys revoke`` call, and the adapters pick the changes up from the files without a
restart.
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext

from tests.bus import Bus, eventually
from tests.integration.helpers import assert_exactly_once, deliveries, quiesce, types_of
from tests.support import OriginChain, dev_seed, example_event, example_payload, write_keys_dir
from xregion.adapter import Adapter
from xregion.codec import DecodedEvent, encode
from xregion.keys import private_key_path, revoke_key, rotate_key
from xregion.runtime.keyfiles import LiveRoster
from xregion.runtime.settings import RuntimeSettings
from xregion.runtime.store import Store
from xregion.signing import KeyRoster, Signer

pytestmark = pytest.mark.anyio

WEEK = timedelta(days=7)


@pytest.fixture
def keys_dir(tmp_path: Path, signers: dict[str, Signer], roster: KeyRoster) -> Path:
    return write_keys_dir(tmp_path / "keys", signers, roster)


def seed_forms(seed: bytes) -> list[str]:
    return [seed.hex(), base64.b64encode(seed).decode("ascii"), base64.urlsafe_b64encode(seed).decode("ascii")]


def key_file_seed(keys_dir: Path, party: str) -> bytes:
    return base64.b64decode(json.loads(private_key_path(keys_dir, party).read_text())["seed"])


def assert_no_seed_logged(logs: list[dict[str, Any]], *seeds: bytes) -> None:
    text = repr(logs)
    for seed in seeds:
        for form in seed_forms(seed):
            assert form not in text, "a private key appears in the log output"


def live_roster(adapter: Adapter) -> KeyRoster:
    assert isinstance(adapter.roster, LiveRoster)
    return adapter.roster.roster


async def next_from(adapter: Adapter, signer: Signer, *, time: datetime) -> DecodedEvent:
    """A lead BJ→TJ at the next position of BJ's chains, signed with ``signer`` (as a thief
    holding a stolen key would make it), without recording it in BJ's outbox."""
    head = await adapter.store.read(Store.outbox_head)
    link = await adapter.store.read(lambda db: Store.link_head(db, "TJ", 1))
    chain = OriginChain(signer, seq=head.seq, prevhash=head.hash, links={"TJ": (link.seq, link.hash)})
    return chain.seal(example_event("lead.submitted", sender="BJ", to="TJ", time=time, sealed=True))


async def publish(js: JetStreamContext, bus: Bus, event: DecodedEvent) -> int:
    ack = await js.publish(
        event.subject,
        encode(event.wire),
        stream=bus.settings.stream,
        headers={"Nats-Msg-Id": event.envelope.id},
        timeout=5.0,
    )
    return int(ack.seq)


def received_ids(bus: Bus, region: str = "TJ") -> list[str]:
    return [d.event.envelope.id for d in bus.received.get(region, [])]


async def test_rotation_during_live_traffic_loses_nothing(bus: Bus, keys_dir: Path, logs: list[dict[str, Any]]) -> None:
    """BJ submits leads to TJ continuously; half-way BJ's key is rotated (`xregion keys
    rotate`): TJ reloads the roster file, BJ picks up its new private key file. Every lead is
    delivered exactly once and in order, every receipt comes back, and both keys signed some."""
    bus.keys_dir = keys_dir
    bus.settings = RuntimeSettings(ack_wait_s=5.0, max_deliver=5, key_reload_s=0.05)
    bj, tj = await bus.start("BJ", "TJ")
    old_key = bj.signer.key_id
    sent: list[DecodedEvent] = []
    new_signer: Signer | None = None

    while len(sent) < 400:
        sent.append(await bj.client.open("lead.submitted", to="TJ", data=example_payload("lead.submitted")))
        if len(sent) == 20:
            new_signer, closed = rotate_key(keys_dir, "BJ", WEEK)
            assert [k.key_id for k in closed] == [old_key]
        if new_signer is not None and sum(e.envelope.keyid == new_signer.key_id for e in sent) >= 20:
            break
        await asyncio.sleep(0.005)  # a steady stream rather than one burst
    assert new_signer is not None
    assert sum(e.envelope.keyid == new_signer.key_id for e in sent) >= 20, "BJ never switched to its new key"

    await eventually(lambda: _all_received(bus, sent), timeout=30.0, what="every lead at TJ")
    await quiesce(bus, timeout=30.0)
    await assert_exactly_once(bus)

    # In order, each exactly once, signed with the old key up to the switch and the new one after.
    assert received_ids(bus, "TJ") == [e.envelope.id for e in sent]
    keys = [d.event.envelope.keyid for d in bus.received["TJ"]]
    switch = keys.index(new_signer.key_id)
    assert switch >= 20 and set(keys[:switch]) == {old_key} and set(keys[switch:]) == {new_signer.key_id}
    # Every lead's automatic receipt came back to BJ.
    for event in sent:
        assert types_of(deliveries(bus, "BJ", event.envelope.subject)) == ["lead.received"]
    assert await bus.dead_letters() == [] and await bus.alerts() == []

    roster = live_roster(tj)
    old, new = roster.get(old_key), roster.get(new_signer.key_id)
    assert old.valid_until is not None and old.valid_until - new.valid_from == WEEK
    assert any(e.get("event") == "key roster reloaded" for e in logs)
    assert any(e.get("event") == "signing key rotated" and e.get("key") == new_signer.key_id for e in logs)
    assert_no_seed_logged(logs, dev_seed("BJ"), key_file_seed(keys_dir, "BJ"))


async def _all_received(bus: Bus, events: list[DecodedEvent]) -> bool:
    return set(received_ids(bus, "TJ")) >= {e.envelope.id for e in events}


async def test_new_key_before_the_roster_reload_and_outbox_signed_with_the_old_key(
    bus: Bus, keys_dir: Path, logs: list[dict[str, Any]]
) -> None:
    """Events already in BJ's outbox when it rotates stay signed with the old key and are
    delivered; the first event signed with the new key reaches TJ before TJ's periodic roster
    check (an hour away): TJ reloads the roster at once instead of dead-lettering it."""
    bus.keys_dir = keys_dir
    bus.settings = RuntimeSettings(ack_wait_s=5.0, max_deliver=5, key_reload_s=3600.0)
    [tj] = await bus.start("TJ")
    bj = Adapter.from_keys_dir(
        "BJ",
        keys_dir,
        nats_url=bus.server.url,
        store_path=bus.root / "BJ.db",
        settings=bus.settings,
        handler=bus.recorder("BJ"),
    )
    bus.adapters["BJ"] = bj
    await bj.store.open()  # not connected yet: what BJ submits stays in its outbox
    old_key = bj.signer.key_id
    queued = [await bj.client.open("lead.submitted", to="TJ", data=example_payload("lead.submitted")) for _ in range(3)]
    new_signer, _ = rotate_key(keys_dir, "BJ", WEEK)
    bj.rotate_signer(new_signer)  # no restart
    fresh = [await bj.client.open("lead.submitted", to="TJ", data=example_payload("lead.submitted")) for _ in range(3)]
    assert {e.envelope.keyid for e in queued} == {old_key}
    assert {e.envelope.keyid for e in fresh} == {new_signer.key_id}
    assert new_signer.key_id not in live_roster(tj)

    await bj.start()
    await eventually(lambda: _all_received(bus, queued + fresh), what="every lead at TJ")
    await quiesce(bus)
    await assert_exactly_once(bus)
    assert received_ids(bus, "TJ") == [e.envelope.id for e in queued + fresh]
    assert await bus.dead_letters() == []
    assert new_signer.key_id in live_roster(tj)
    assert isinstance(tj.roster, LiveRoster) and tj.roster.reloads == 1
    assert_no_seed_logged(logs, dev_seed("BJ"), new_signer.seed())


async def test_revoked_key_is_refused_named_alerted_and_the_adapter_goes_on(
    bus: Bus, keys_dir: Path, js: JetStreamContext, signers: dict[str, Signer], logs: list[dict[str, Any]]
) -> None:
    """After `xregion keys revoke`, an event signed with the old key is dead-lettered
    ``key_revoked`` naming the key — whether it carries the current time or is backdated to
    before the revocation but reaches the stream after revocation + grace — a security alert
    is raised, and BJ's next (new-key) event is delivered."""
    bus.keys_dir = keys_dir
    bus.settings = RuntimeSettings(ack_wait_s=5.0, max_deliver=5, key_reload_s=0.05, revocation_grace_s=0)
    bj, tj = await bus.start("BJ", "TJ")
    old_signer = signers["BJ"]
    first = await bj.client.open("lead.submitted", to="TJ", data=example_payload("lead.submitted"))
    new_signer, _ = rotate_key(keys_dir, "BJ", WEEK)
    await eventually(lambda: _is(bj.signer.key_id == new_signer.key_id), what="BJ to switch keys")
    second = await bj.client.open("lead.submitted", to="TJ", data=example_payload("lead.submitted"))
    await eventually(lambda: _all_received(bus, [first, second]), what="both leads at TJ")
    await quiesce(bus)

    revoked_at = datetime.now(UTC)
    revoke_key(keys_dir, old_signer.key_id, revoked_at, "private key stolen")
    await eventually(
        lambda: _is(live_roster(tj).get(old_signer.key_id).revoked_at == revoked_at),
        what="TJ to reload the roster with the revocation",
    )

    current = await next_from(bj, old_signer, time=datetime.now(UTC))
    backdated = await next_from(bj, old_signer, time=revoked_at - timedelta(hours=1))
    seqs = [await publish(js, bus, current), await publish(js, bus, backdated)]
    letters = await eventually(lambda: _letters(bus, 2), what="two key_revoked dead letters")
    third = await bj.client.open("lead.submitted", to="TJ", data=example_payload("lead.submitted"))
    await eventually(lambda: _all_received(bus, [third]), what="BJ's next lead at TJ")
    await quiesce(bus)

    assert [(x.code, x.stream_seq) for x in letters] == [("key_revoked", s) for s in seqs]
    for letter in letters:
        assert letter.reason["keyid"] == old_signer.key_id and old_signer.key_id in letter.reason["message"]
        assert letter.reason["revocation_reason"] == "private key stolen"
    assert "reached the stream" in letters[1].reason["message"], "the backdated event was refused for its time?"
    alerts = await eventually(lambda: _alerts(bus, 2), what="two security alerts")
    assert [(a.code, a.record["claimed_keyid"], a.record["stream_seq"]) for a in alerts] == [
        ("key_revoked", old_signer.key_id, s) for s in seqs
    ]
    for alert in alerts:
        assert alert.subject == "xregion.alert.TJ.key_revoked"
        assert alert.verify(live_roster(tj)).party == "TJ"
    assert received_ids(bus, "TJ") == [first.envelope.id, second.envelope.id, third.envelope.id]
    assert tj._tasks and not any(t.done() for t in tj._tasks)
    assert_no_seed_logged(logs, old_signer.seed(), new_signer.seed())


async def test_revocation_grace_lets_an_event_signed_before_it_through(
    bus: Bus, keys_dir: Path, js: JetStreamContext, signers: dict[str, Signer]
) -> None:
    """An event signed before the revocation (time before it) that reaches the stream within
    the grace — it waited in an outbox during an outage — is delivered."""
    bus.keys_dir = keys_dir
    bus.settings = RuntimeSettings(ack_wait_s=5.0, max_deliver=5, key_reload_s=0.05, revocation_grace_s=3600)
    [tj] = await bus.start("TJ")
    signed_before = OriginChain(signers["BJ"]).seal(
        example_event("lead.submitted", sender="BJ", to="TJ", time=datetime.now(UTC), sealed=True)
    )
    revoked_at = datetime.now(UTC) + timedelta(milliseconds=1)
    revoke_key(keys_dir, signers["BJ"].key_id, revoked_at, "retired after a leak")
    await eventually(
        lambda: _is(live_roster(tj).get(signers["BJ"].key_id).revoked_at == revoked_at),
        what="TJ to reload the roster with the revocation",
    )
    await publish(js, bus, signed_before)
    await eventually(lambda: _all_received(bus, [signed_before]), what="the event signed before the revocation")
    assert await bus.dead_letters() == []


async def _is(value: bool) -> bool:
    return value


async def _letters(bus: Bus, n: int) -> Any:
    letters = await bus.dead_letters("TJ")
    return letters if len(letters) >= n else None


async def _alerts(bus: Bus, n: int) -> Any:
    alerts = await bus.alerts("TJ")
    return alerts if len(alerts) >= n else None


async def test_a_rotated_receiver_still_opens_personal_data_sealed_to_its_old_key(
    bus: Bus, keys_dir: Path, js: JetStreamContext
) -> None:
    """BJ seals a lead's personal data to TJ's key of the moment; TJ's key is rotated (no
    overlap) before the lead reaches it, and TJ restarts. The rotated-out key is kept under
    ``private/retired/`` for opening only, so TJ's handler still gets the plaintext."""
    bus.keys_dir = keys_dir
    bus.settings = RuntimeSettings(ack_wait_s=5.0, max_deliver=5, key_reload_s=3600.0)
    bj = Adapter.from_keys_dir(
        "BJ",
        keys_dir,
        nats_url=bus.server.url,
        store_path=bus.root / "BJ.db",
        settings=bus.settings,
        handler=bus.recorder("BJ"),
    )
    bus.adapters["BJ"] = bj
    await bj.store.open()  # not connected yet: the lead waits in BJ's outbox
    data = example_payload("lead.submitted")
    sent = await bj.client.open("lead.submitted", to="TJ", data=data)
    old_tj_key = next(k.key_id for k in KeyRoster.load(keys_dir / "roster.json") if k.party == "TJ")

    new_tj, _ = rotate_key(keys_dir, "TJ", timedelta(0))
    [tj] = await bus.start("TJ")
    assert tj.signer.key_id == new_tj.key_id and [s.key_id for s in tj.retired_signers] == [old_tj_key]
    await bj.start()
    await eventually(lambda: _all_received(bus, [sent]), what="the lead at TJ")

    wire = json.loads((await js.get_msg(bus.settings.stream, 1)).data or b"{}")
    sealed_name = wire["data"]["suspects"][0]["name"]
    assert set(sealed_name["sealed"]) == {old_tj_key}, "the lead was not sealed to TJ's old key only"
    [delivery] = bus.received["TJ"]
    assert delivery.event.envelope.id == sent.envelope.id
    assert delivery.payload.suspects[0].name == data["suspects"][0]["name"]  # type: ignore[attr-defined]
    assert await bus.dead_letters() == []
