"""Personal data sealed end to end, against a real nats-server.

* The addressee's handler gets plain data while the stream (what the coordinator and the
  auditor read) holds only ciphertext, still verifiable with the roster.
* A broadcast is sealed once per receiving region, and each of them reads it.
* An event the addressee cannot unseal is dead-lettered (``unseal_failed``); personal data
  sent in the clear is refused (``personal_data_unsealed``), or accepted with a warning
  naming the field (not the value) where ``XREGION_UNSEALED_PERSONAL_DATA=accept``.
* The full demo: neither its output nor its logs (``-v --log-format json``), nor the stream
  as the coordinator sees it, contain any of the demo's personal data.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from structlog.testing import capture_logs

from tests.bus import Bus, eventually
from tests.integration.helpers import deliveries, quiesce
from tests.support import OriginChain, example_event
from xregion.codec import decode, encode
from xregion.config import load_config
from xregion.contracts.catalog import CATALOG
from xregion.contracts.common import Sealed
from xregion.demo import run_demo
from xregion.examples import PAYLOADS
from xregion.ops.server import EmbeddedServer
from xregion.runtime.settings import RuntimeSettings
from xregion.sealing import recipients, seal_data, sensitive_values

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


def personal_data() -> set[str]:
    """Every personal-data value of the example payloads: the demo's suspects and blacklisted."""
    values = {
        str(value)
        for kind in CATALOG
        if kind.name in PAYLOADS
        for _, value in sensitive_values(kind.model, PAYLOADS[kind.name])
    }
    demo = {"张某", "138****0000", "天津市某某商贸有限公司", "天津市西青区某物流园3号库", "石家庄市某某服装店"}
    assert demo <= values
    return values


def leaks(text: str) -> set[str]:
    return {value for value in personal_data() if value in text}


async def raw_stream(url: str, stream: str) -> list[tuple[str, bytes]]:
    """The stream as the coordinator reads it: every message's subject and raw bytes."""
    import nats

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(stream, seq)
            out.append((msg.subject, msg.data or b""))
        return out
    finally:
        await nc.close()


async def test_handler_reads_plain_data_while_the_stream_holds_only_ciphertext(bus: Bus) -> None:
    await bus.start("BJ", "TJ", "HE")
    sent = await bus.adapters["BJ"].client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    rid = sent.envelope.subject
    # The sender gets its event back readable; what it stored and published is sealed.
    assert sent.payload.suspects[1].name == "张某"  # type: ignore[attr-defined]
    assert isinstance(decode(encode(sent.wire)).payload.suspects[1].name, Sealed)  # type: ignore[attr-defined]
    shared = await bus.adapters["HE"].client.open(
        "share.blacklist_upserted", to="ALL", data=PAYLOADS["share.blacklist_upserted"]
    )
    await bus.state("TJ", rid, "received")
    await quiesce(bus)
    assert await bus.dead_letters() == []

    # TJ's handler: plain data, in the typed payload and in the envelope's data.
    (delivery,) = deliveries(bus, "TJ", rid)
    payload: Any = delivery.payload
    expected = PAYLOADS["lead.submitted"]["suspects"]
    assert [s.name for s in payload.suspects] == [s["name"] for s in expected]
    assert payload.suspects[0].address == expected[0]["address"]
    assert payload.suspects[1].contact == expected[1]["contact"]
    assert delivery.event.envelope.data["suspects"][1]["name"] == "张某"
    # ... while the event it keeps (inbox) is the signed wire: sealed to TJ's key only.
    box = delivery.event.wire["data"]["suspects"][1]["name"]
    assert list(box["sealed"]) == [bus.signers["TJ"].key_id]
    bus.roster.verify(delivery.event.wire, "BJ", delivery.event.envelope.time)

    # The broadcast: one box per receiving region, each reads it.
    for region in ("BJ", "TJ"):
        (got,) = deliveries(bus, region, shared.envelope.subject)
        assert got.payload.entry.name == "石家庄市某某服装店"  # type: ignore[attr-defined]
        assert set(got.event.wire["data"]["entry"]["name"]["sealed"]) == {
            bus.signers["BJ"].key_id,
            bus.signers["TJ"].key_id,
        }

    # The stream — the coordinator's and the auditor's view — holds no personal data, and
    # every event in it verifies and decodes without any key to open it.
    messages = await raw_stream(bus.server.url, bus.settings.stream)
    assert len(messages) >= 5
    for subject, raw in messages:
        assert not leaks(raw.decode("utf-8")), subject
        event = decode(raw, registry=load_config().regions)
        bus.roster.verify(event.wire, event.envelope.sender, event.envelope.time)
    # Nor do the adapters' stores (outbox and inbox hold the events as signed).
    for region, adapter in bus.adapters.items():
        rows = await adapter.store.read(
            lambda db: db.execute("SELECT payload FROM outbox UNION ALL SELECT payload FROM inbox").fetchall()
        )
        assert rows and not leaks(b"".join(bytes(r[0]) for r in rows).decode("utf-8")), region


class PlayedBJ:
    """BJ played outside any adapter, with its key, publishing leads to TJ: sealed to the keys
    of ``to_keys_of`` (None: personal data in the clear, as a producer that does not seal)."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.chain = OriginChain(bus.signers["BJ"], registry=load_config().regions)

    async def publish(self, js: Any, to_keys_of: str | None) -> str:
        event = example_event("lead.submitted", sender="BJ", to="TJ", time=datetime.now(UTC))
        if to_keys_of is not None:
            keys = recipients(self.bus.roster, [to_keys_of], datetime.now(UTC))
            event["data"] = seal_data(CATALOG.get("lead", "submitted").model, event["data"], keys)
        decoded = self.chain.seal(event)
        await js.publish(decoded.subject, encode(decoded.wire), headers={"Nats-Msg-Id": decoded.envelope.id})
        return decoded.envelope.id


def handled_ids(bus: Bus) -> set[str]:
    return {d.event.envelope.id for d in bus.received.get("TJ", [])}


async def all_handled(bus: Bus, *event_ids: str) -> bool:
    return set(event_ids) <= handled_ids(bus)


async def test_an_event_the_addressee_cannot_unseal_is_dead_lettered(bus: Bus) -> None:
    """One lead sealed to the wrong region, then a correct one."""
    await bus.start("TJ")
    bj = PlayedBJ(bus)
    nc = await bus.raw()
    try:
        wrong = await bj.publish(nc.jetstream(), "HE")
        right = await bj.publish(nc.jetstream(), "TJ")
        await eventually(lambda: all_handled(bus, right), 10.0, "TJ to handle the sealed lead")
        (letter,) = await eventually(lambda: bus.dead_letters("TJ"), 10.0, "a dead letter")
        assert letter.event_id == wrong and letter.reason["code"] == "unseal_failed"
        assert letter.reason["field"].startswith("data.suspects.0.")
        assert letter.reason["recipients"] == [bus.signers["HE"].key_id]
        assert handled_ids(bus) == {right}
        assert bus.received["TJ"][0].payload.suspects[1].name == "张某"  # type: ignore[attr-defined]
    finally:
        await nc.close()


async def test_personal_data_in_the_clear_is_refused_by_default(bus: Bus) -> None:
    """The default receiver keeps evidence: a lead whose personal data travels in the clear is
    dead-lettered ``personal_data_unsealed`` naming the fields (never their values), raises no
    security alert, and — authentic and in chain — advances BJ's link: the next, sealed lead
    is delivered."""
    assert bus.settings.unsealed_personal_data == "refuse"
    await bus.start("TJ")
    bj = PlayedBJ(bus)
    nc = await bus.raw()
    try:
        with capture_logs() as logs:
            clear = await bj.publish(nc.jetstream(), None)
            sealed = await bj.publish(nc.jetstream(), "TJ")
            await eventually(lambda: all_handled(bus, sealed), 10.0, "TJ to handle the sealed lead")
            (letter,) = await eventually(lambda: bus.dead_letters("TJ"), 10.0, "a dead letter")
        assert letter.event_id == clear and letter.code == "personal_data_unsealed"
        assert (letter.region, letter.original_subject) == ("TJ", "xregion.v1.lead.submitted.BJ.TJ")
        fields = letter.reason["fields"]
        assert {"data.suspects.0.name", "data.suspects.1.name", "data.suspects.0.address"} <= set(fields)
        assert not leaks(json.dumps(letter.reason, ensure_ascii=False))
        assert handled_ids(bus) == {sealed}
        assert await bus.alerts("TJ") == []
        refused = [line for line in logs if line["event"] == "event dead-lettered"]
        assert [line["reason"] for line in refused] == ["personal_data_unsealed"]
        assert not [line for line in logs if line["event"] == "personal data received unsealed"]
        assert not leaks(json.dumps(logs, ensure_ascii=False, default=str))
    finally:
        await nc.close()


async def test_personal_data_in_the_clear_is_accepted_with_a_warning_when_configured(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``XREGION_UNSEALED_PERSONAL_DATA=accept`` (a migration setting for producers that do not
    seal yet): delivered, with a warning naming the fields, not the values."""
    monkeypatch.setenv("XREGION_UNSEALED_PERSONAL_DATA", "accept")
    bus.settings = RuntimeSettings(ack_wait_s=5.0, max_deliver=5)
    assert bus.settings.unsealed_personal_data == "accept"
    await bus.start("TJ")
    bj = PlayedBJ(bus)
    nc = await bus.raw()
    try:
        with capture_logs() as logs:
            clear = await bj.publish(nc.jetstream(), None)
            sealed = await bj.publish(nc.jetstream(), "TJ")
            await eventually(lambda: all_handled(bus, clear, sealed), 10.0, "TJ to handle both leads")
        assert await bus.dead_letters("TJ") == []
        for delivery in bus.received["TJ"]:
            assert delivery.payload.suspects[1].name == "张某"  # type: ignore[attr-defined]
        warnings = [line for line in logs if line["event"] == "personal data received unsealed"]
        assert [w["event_id"] for w in warnings] == [clear]
        assert "data.suspects.1.name" in warnings[0]["fields"]
        assert not leaks(json.dumps(logs, ensure_ascii=False, default=str))
    finally:
        await nc.close()


async def test_coordinators_view_of_the_demo_holds_no_personal_data(
    nats_server: EmbeddedServer, tmp_path: Path
) -> None:
    """The whole demo scenario on a test server, then the stream read with plain nats-py."""
    out = io.StringIO()
    with capture_logs() as logs:
        scenario = await run_demo(nats_server.url, tmp_path / "demo", Console(file=out, width=160))
    assert len(scenario.referrals) == 7
    messages = await raw_stream(nats_server.url, "XREGION")
    assert len(messages) >= 30
    sealed = 0
    for subject, raw in messages:
        text = raw.decode("utf-8")
        assert not leaks(text), subject
        sealed += '"sealed":{' in text
    assert sealed >= 5  # lead (BJ→TJ, TJ→HE, HE→BJ), assist, recognition, blacklist
    assert not leaks(out.getvalue())
    assert not leaks(json.dumps(logs, ensure_ascii=False, default=str))


def test_demo_output_and_logs_hold_no_personal_data() -> None:
    """``xregion demo -v --log-format json``, as a user runs it: scan everything it prints."""
    env = {k: v for k, v in os.environ.items() if k != "XREGION_NATS_URL"}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "xregion"), "demo", "-v", "--log-format", "json"],
        cwd=ROOT,
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        timeout=90,
        check=False,
    )
    stdout, stderr = done.stdout.decode("utf-8"), done.stderr.decode("utf-8")
    assert done.returncode == 0, stdout[-2000:] + stderr[-2000:]
    assert "demo complete" in stdout
    lines = [json.loads(line) for line in (stdout + stderr).splitlines() if line.startswith("{")]
    assert any(line.get("event") == "event delivered" for line in lines)  # the logs were on
    assert any(line.get("type") == "lead.permission_granted" for line in lines)
    assert not leaks(stdout) and not leaks(stderr)


async def test_a_v2_sender_reaches_v1_configured_receivers_and_answers_go_either_way(bus: Bus) -> None:
    """Sealing v2 introduced as the README's migration path says: receivers open both; one
    sender switched by configuration (``seal_version=2``) seals v2, the others still v1."""
    await bus.start("TJ", "HE")  # default settings: seal v1, open both
    await bus.start("BJ", settings=bus.settings.model_copy(update={"seal_version": 2}))
    sent = await bus.adapters["BJ"].client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    shared = await bus.adapters["BJ"].client.open(
        "share.blacklist_upserted", to="ALL", data=PAYLOADS["share.blacklist_upserted"]
    )
    back = await bus.adapters["HE"].client.open("lead.submitted", to="BJ", data=PAYLOADS["lead.submitted"])
    await bus.state("TJ", sent.envelope.subject, "received")
    await bus.state("BJ", back.envelope.subject, "received")
    await quiesce(bus)
    assert await bus.dead_letters() == []
    wire_name = sent.wire["data"]["suspects"][1]["name"]
    assert wire_name["v"] == 2 and list(wire_name["sealed"]) == [bus.signers["TJ"].key_id]
    (delivery,) = deliveries(bus, "TJ", sent.envelope.subject)
    assert delivery.payload.suspects[1].name == "张某"  # type: ignore[attr-defined]
    for region in ("TJ", "HE"):
        (got,) = deliveries(bus, region, shared.envelope.subject)
        assert got.payload.entry.name == "石家庄市某某服装店"  # type: ignore[attr-defined]
    (answer,) = deliveries(bus, "BJ", back.envelope.subject)  # HE still seals v1: BJ opens it
    assert "v" not in answer.event.wire["data"]["suspects"][1]["name"]
    assert answer.payload.suspects[1].name == "张某"  # type: ignore[attr-defined]
    messages = await raw_stream(bus.server.url, bus.settings.stream)
    assert not any(leaks(raw.decode("utf-8")) for _, raw in messages)
