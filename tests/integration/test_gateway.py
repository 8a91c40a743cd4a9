"""The HTTP gateway over real HTTP and a real nats-server: submission, webhooks, problems."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.bus import Bus, eventually
from tests.integration.helpers import stream_events
from tests.integration.webhook_receiver import Receiver
from xregion.examples import PAYLOADS
from xregion.gateway.server import Gateway
from xregion.keys import init_keys
from xregion.ops.certs import write_dev_pki
from xregion.ops.server import free_port

pytestmark = pytest.mark.anyio

TOKEN = {"BJ": "bj-token", "TJ": "tj-token"}
SECRET = "webhook-secret"


@dataclass
class Regions:
    bus: Bus
    gateways: dict[str, Gateway] = field(default_factory=dict)
    http: dict[str, httpx.AsyncClient] = field(default_factory=dict)
    receivers: dict[str, Receiver] = field(default_factory=dict)

    async def start(self, region: str, receiver: Receiver, *, up: bool = True, **options: object) -> None:
        gateway = Gateway(token=TOKEN[region], webhook_url=receiver.url, webhook_secret=SECRET, **options)  # type: ignore[arg-type]
        await self.bus.start(region, handler=gateway.handler)
        await gateway.start(self.bus.adapters[region], port=0)
        if up:
            receiver.start()
        self.gateways[region] = gateway
        self.receivers[region] = receiver
        self.http[region] = httpx.AsyncClient(
            base_url=gateway.url, headers={"Authorization": f"Bearer {TOKEN[region]}"}, timeout=10.0
        )

    async def close(self) -> None:
        for client in self.http.values():
            await client.aclose()
        for gateway in self.gateways.values():
            await gateway.stop()
        for receiver in self.receivers.values():
            receiver.stop()
        # every webhook a test received is what schemas/openapi.json's webhooks section describes
        assert [p for r in self.receivers.values() for p in r.invalid] == []


@pytest.fixture
async def regions(bus: Bus) -> AsyncIterator[Regions]:
    r = Regions(bus)
    try:
        yield r
    finally:
        await r.close()


def lead(to: str = "TJ", **changes: object) -> dict[str, object]:
    return {"event_type": "lead.submitted", "to": to, "data": dict(PAYLOADS["lead.submitted"], **changes)}


async def test_lead_round_trip_over_http(regions: Regions) -> None:
    await regions.start("BJ", Receiver(SECRET))
    await regions.start("TJ", Receiver(SECRET))
    bj, tj = regions.http["BJ"], regions.http["TJ"]

    sent = await bj.post("/v1/referrals", json=lead(), headers={"Idempotency-Key": "BJ-case-0001"})
    assert sent.status_code == 201, sent.text
    rid = sent.json()["referral_id"]
    assert rid.startswith("BJ-") and sent.json()["to"] == "TJ"

    async def arrived() -> dict[str, object] | None:
        got = regions.receivers["TJ"].of_type("lead.submitted")
        return got[0] if got else None

    webhook = await eventually(arrived, 15, "TJ's webhook to receive the lead")
    assert webhook["referral_id"] == rid and webhook["sender"] == "BJ"
    assert webhook["data"]["suspects"][0]["name"] == PAYLOADS["lead.submitted"]["suspects"][0]["name"]  # opened

    accepted = await tj.post(
        f"/v1/referrals/{rid}/events", json={"event_type": "lead.accepted", "data": PAYLOADS["lead.accepted"]}
    )
    assert accepted.status_code == 201, accepted.text

    async def bj_accepted() -> bool:
        r = await bj.get(f"/v1/referrals/{rid}")
        return r.status_code == 200 and r.json()["state"] == "accepted"

    await eventually(bj_accepted, 15, "BJ's referral to show accepted")
    history = (await bj.get(f"/v1/referrals/{rid}/history")).json()
    assert [h["event_type"] for h in history] == ["lead.submitted", "lead.received", "lead.accepted"]
    assert [r["referral_id"] for r in (await bj.get("/v1/referrals")).json()] == [rid]
    await eventually(
        lambda: asyncio.sleep(0, [e["event_type"] for e in regions.receivers["BJ"].events][-1:] == ["lead.accepted"]),
        15,
        "BJ's webhook to get the acceptance",
    )
    assert regions.receivers["TJ"].bad_signatures == regions.receivers["BJ"].bad_signatures == 0
    # each real webhook body and its headers validate against the OpenAPI webhooks section
    for region in ("BJ", "TJ"):
        assert regions.receivers[region].invalid == []
        assert regions.receivers[region].checked >= len(regions.receivers[region].events) > 0
    assert {e["event_type"] for r in regions.receivers.values() for e in r.events} >= {
        "lead.submitted",
        "lead.received",
        "lead.accepted",
    }

    # Idempotency: the same key and body return the first answer; nothing is sent twice.
    again = await bj.post("/v1/referrals", json=lead(), headers={"Idempotency-Key": "BJ-case-0001"})
    assert again.status_code == 201 and again.json() == sent.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    other = await bj.post("/v1/referrals", json=lead(title="另一线索"), headers={"Idempotency-Key": "BJ-case-0001"})
    assert other.status_code == 422
    assert other.headers["content-type"] == "application/problem+json"
    assert other.json()["type"] == "urn:xregion:error:idempotency_conflict"
    outbox = await regions.bus.adapters["BJ"].store.read(
        lambda db: db.execute("SELECT count(*) FROM outbox WHERE event_type = 'lead.submitted'").fetchone()[0]
    )
    assert outbox == 1


async def test_invalid_submissions_get_problem_details_and_nothing_is_published(regions: Regions) -> None:
    await regions.start("BJ", Receiver(SECRET))
    bj = regions.http["BJ"]
    nc = await regions.bus.raw()
    js = nc.jetstream()
    try:
        before = await stream_events(js, regions.bus.settings.stream)

        unauthenticated = await bj.post("/v1/referrals", json=lead(), headers={"Authorization": "Bearer wrong"})
        assert unauthenticated.status_code == 401
        assert unauthenticated.json()["type"] == "urn:xregion:error:unauthorized"

        no_suspects = await bj.post("/v1/referrals", json=lead(suspects=[]))
        assert no_suspects.status_code == 422
        problem = no_suspects.json()
        assert no_suspects.headers["content-type"] == "application/problem+json"
        assert problem["type"] == "urn:xregion:error:schema_invalid" and problem["status"] == 422
        assert [e["field"] for e in problem["errors"]] == ["data.suspects"]

        bad = copy.deepcopy(lead())
        bad["data"]["suspects"][0]["uscc"] = "91120111MA05K8XY07"  # wrong check character
        bad_uscc = await bj.post("/v1/referrals", json=bad)
        assert bad_uscc.status_code == 422
        assert bad_uscc.json()["errors"][0]["field"].startswith("data.suspects.0")

        unknown = await bj.post("/v1/referrals", json={**lead(), "event_type": "lead.teleported"})
        assert unknown.status_code == 422 and unknown.json()["type"] == "urn:xregion:error:unknown_event_type"

        nowhere = await bj.post("/v1/referrals", json=lead(to="XX"))
        assert nowhere.status_code == 422 and nowhere.json()["type"] == "urn:xregion:error:unknown_party"

        broken = await bj.post("/v1/referrals", content=b"{not json", headers={"Content-Type": "application/json"})
        assert broken.status_code == 422 and broken.json()["type"] == "urn:xregion:error:malformed_json"

        missing = await bj.post(
            "/v1/referrals/BJ-01a21266-2a95-7ab6-acd3-9944e2600e69/events",
            json={"event_type": "lead.withdrawn", "data": PAYLOADS["lead.withdrawn"]},
        )
        assert missing.status_code == 404 and missing.json()["type"] == "urn:xregion:error:unknown_referral"

        # A legal body in an illegal place: the origin cannot accept its own lead.
        sent = await bj.post("/v1/referrals", json=lead())
        rid = sent.json()["referral_id"]
        await regions.bus.adapters["BJ"].wait_published()
        before = await stream_events(js, regions.bus.settings.stream)
        illegal = await bj.post(
            f"/v1/referrals/{rid}/events", json={"event_type": "lead.accepted", "data": PAYLOADS["lead.accepted"]}
        )
        assert illegal.status_code == 409, illegal.text
        body = illegal.json()
        assert body["type"] in {"urn:xregion:error:illegal_transition", "urn:xregion:error:misaddressed"}
        assert "accepted" in body["detail"]
        assert (await bj.get("/v1/referrals/nope")).status_code == 404

        await regions.bus.adapters["BJ"].wait_published()
        assert await stream_events(js, regions.bus.settings.stream) == before
    finally:
        await nc.close()


async def test_receiver_down_for_a_while_loses_nothing(regions: Regions) -> None:
    await regions.start("BJ", Receiver(SECRET))
    await regions.start("TJ", Receiver(SECRET), up=False, backoff_s=0.2, max_backoff_s=0.5, max_attempts=100)
    rids = []
    for n in range(3):
        sent = await regions.http["BJ"].post("/v1/referrals", json=lead(title=f"线索{n}"))
        assert sent.status_code == 201
        rids.append(sent.json()["referral_id"])

    async def attempted() -> bool:
        rows = await regions.bus.adapters["TJ"].store.read(
            lambda db: db.execute("SELECT max(attempts) FROM webhooks").fetchone()[0]
        )
        return bool(rows and rows >= 3)

    await eventually(attempted, 15, "TJ's dispatcher to fail against the absent receiver")
    assert regions.receivers["TJ"].events == []
    regions.receivers["TJ"].start()

    async def all_arrived() -> bool:
        return len(regions.receivers["TJ"].of_type("lead.submitted")) == 3

    await eventually(all_arrived, 15, "every lead after the receiver came back")
    assert [e["referral_id"] for e in regions.receivers["TJ"].of_type("lead.submitted")] == rids
    assert (await regions.http["TJ"].get("/v1/webhooks/dead-letters")).json() == []


async def test_receiver_that_never_recovers_ends_in_dead_letters(regions: Regions) -> None:
    await regions.start("BJ", Receiver(SECRET))
    receiver = Receiver(SECRET)
    receiver.fail_with = 503
    await regions.start("TJ", receiver, backoff_s=0.05, max_backoff_s=0.1, max_attempts=3)
    sent = await regions.http["BJ"].post("/v1/referrals", json=lead())
    rid = sent.json()["referral_id"]

    async def dead() -> list[dict[str, object]] | None:
        r = await regions.http["TJ"].get("/v1/webhooks/dead-letters")
        return r.json() or None

    letters = await eventually(dead, 15, "the webhook to be dead-lettered")
    assert len(letters) == 1
    letter = letters[0]
    assert letter["referral_id"] == rid and letter["event_type"] == "lead.submitted"
    assert letter["attempts"] == 3 and letter["last_status"] == 503
    assert "HTTP 503" in str(letter["last_error"]) and "case system unavailable" in str(letter["last_error"])

    # Fixed: queued again by the operator, delivered.
    receiver.fail_with = None
    retried = await regions.http["TJ"].post(f"/v1/webhooks/dead-letters/{letter['event_id']}/retry")
    assert retried.status_code == 202
    await eventually(
        lambda: asyncio.sleep(0, bool(receiver.of_type("lead.submitted"))), 15, "the retried webhook to arrive"
    )


CURL_EXAMPLE = Path(__file__).resolve().parents[2] / "adapters" / "examples" / "curl" / "submit-lead.sh"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_curl_example_through_a_gateway_run_by_the_cli(regions: Regions, tmp_path: Path) -> None:
    """`xregion adapter run --http` (a real process) + the README's curl script → TJ's webhook."""
    keys = tmp_path / "keys"
    init_keys(keys, ["BJ", "TJ", "HE", "COORD"])
    regions.bus.keys_dir = keys
    await regions.start("TJ", Receiver(SECRET))
    port = free_port()
    env = dict(os.environ, XREGION_HTTP_TOKEN=TOKEN["BJ"], XREGION_WEBHOOK_SECRET=SECRET)
    cmd = [
        sys.executable, "-c", "from xregion.cli import main; main()", "adapter", "run", "--region", "BJ",
        "--nats-url", regions.bus.server.url, "--keys-dir", str(keys), "--store", str(tmp_path / "BJ-cli.db"),
        "--http", f"127.0.0.1:{port}", "--webhook-url", Receiver(SECRET).url, "--log-format", "json",
    ]  # fmt: skip
    log = (tmp_path / "bj.log").open("wb")
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:

        async def listening() -> bool:
            try:
                async with httpx.AsyncClient() as c:
                    return (await c.get(f"http://127.0.0.1:{port}/openapi.json")).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(listening, 30, "the CLI's gateway to listen")
        script_env = dict(os.environ, XREGION_GATEWAY=f"http://127.0.0.1:{port}", XREGION_HTTP_TOKEN=TOKEN["BJ"])
        runs = []
        for _ in range(2):  # the same idempotency key twice: one lead
            run = await asyncio.create_subprocess_exec(
                "sh", str(CURL_EXAMPLE), "BJ-curl-0001", env=script_env, stdout=subprocess.PIPE
            )
            out, _ = await run.communicate()
            assert run.returncode == 0, out
            runs.append(json.loads(out))
        assert runs[0] == runs[1] and runs[0]["to"] == "TJ"

        async def arrived() -> bool:
            return [e["referral_id"] for e in regions.receivers["TJ"].of_type("lead.submitted")] == [
                runs[0]["referral_id"]
            ]

        await eventually(arrived, 20, "TJ's webhook to receive the curl-submitted lead")
        bad = await asyncio.create_subprocess_exec(
            "sh", str(CURL_EXAMPLE), env=dict(script_env, XREGION_HTTP_TOKEN="wrong"), stdout=subprocess.PIPE
        )
        out, _ = await bad.communicate()
        assert bad.returncode != 0 and json.loads(out)["type"] == "urn:xregion:error:unauthorized"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        log.close()
    assert proc.returncode == 0, (tmp_path / "bj.log").read_text()[-2000:]


async def test_mutual_tls_authenticates_the_regional_system(bus: Bus, tmp_path: Path) -> None:
    pki = write_dev_pki(tmp_path / "pki", ["BJ-case-system"])
    other = write_dev_pki(tmp_path / "other", ["intruder"])  # a different CA
    gateway = Gateway(token=None, tls_cert=pki.server.cert, tls_key=pki.server.key, client_ca=pki.ca, webhook_url=None)
    await bus.start("BJ", handler=gateway.handler)
    await gateway.start(bus.adapters["BJ"], port=0)
    try:
        assert gateway.url.startswith("https://")
        system = pki.clients["BJ-case-system"]
        async with httpx.AsyncClient(
            base_url=gateway.url, verify=ssl_context(pki.ca, system.cert, system.key), timeout=10
        ) as client:
            sent = await client.post("/v1/referrals", json=lead())
            assert sent.status_code == 201, sent.text
        for cert in (None, other.clients["intruder"]):
            context = ssl_context(pki.ca, cert.cert, cert.key) if cert else ssl_context(pki.ca)
            async with httpx.AsyncClient(base_url=gateway.url, verify=context, timeout=10) as client:
                with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
                    await client.get("/v1/referrals")
    finally:
        await gateway.stop()


def ssl_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key))
    return context
