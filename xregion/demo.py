"""``xregion demo``: the embedded broker, three adapters and a scenario over all four families.

Runs in one process on a fresh temporary data directory (or ``--nats-url``), plays the
part of each region's enforcement system, then prints every referral's final state and
history as seen by its origin. Exit code 0 means every step reached its expected state.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from xregion.adapter import Adapter, Delivery, RegionClient
from xregion.config import BusConfig, load_config
from xregion.examples import EVIDENCE_PHOTOS, EVIDENCE_PURCHASE, PAYLOADS
from xregion.keys import init_keys, load_signer
from xregion.lifecycle import ReferralState
from xregion.ops.operator import apply_topology
from xregion.ops.security import SecurityDir, ensure_dev_security
from xregion.ops.server import EmbeddedServer, ServerConfig, free_port
from xregion.permissions import OPERATOR
from xregion.profiles import Profile, load_profile
from xregion.runtime.settings import RuntimeSettings

STEP_TIMEOUT_S = 20.0


class DemoFailure(RuntimeError):
    pass


@dataclass
class Scenario:
    adapters: dict[str, Adapter]
    console: Console
    referrals: list[tuple[str, str, str]] = field(default_factory=list)  # (title, origin, referral id)
    inbound: dict[str, list[str]] = field(default_factory=dict)
    profiles: dict[str, Profile] = field(default_factory=dict)  # adapters/profiles/<region>.toml

    def case_number(self, region: str, serial: int, *, lead: bool = False) -> str | None:
        """A local case number in ``region``'s format (from its profile), if it has one."""
        profile = self.profiles.get(region)
        return profile.case_number(2026, serial, lead=lead) if profile else None

    def local_lead(self, region: str) -> dict[str, Any]:
        """The example lead as ``region``'s case system records it, mapped to the v1 contract
        through the region's profile (its field names and codes, its case number)."""
        data = dict(PAYLOADS["lead.submitted"])
        profile = self.profiles.get(region)
        if profile is None:
            return data
        local = {next((k for k, v in profile.field_map.items() if v == f), f): v for f, v in data.items()}
        right = next((k for k, v in profile.value_map.get("ip_right", {}).items() if v == data["ip_right"]), None)
        local[next(k for k, v in profile.field_map.items() if v == "ip_right")] = right or data["ip_right"]
        local[next(k for k, v in profile.field_map.items() if v == "origin_case_number")] = self.case_number(
            region, 341, lead=True
        )
        return profile.to_contract(local)

    def client(self, region: str) -> RegionClient:
        return self.adapters[region].client

    async def until(
        self, region: str, referral_id: str, check: Callable[[ReferralState], bool], what: str
    ) -> ReferralState:
        """Wait (bounded) until ``region``'s view of the referral satisfies ``check``."""
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while time.monotonic() < deadline:
            state = await self.client(region).referral(referral_id)
            if state is not None and check(state):
                return state
            await asyncio.sleep(0.02)
        raise DemoFailure(f"{region} never saw {referral_id} reach {what}")

    async def state(self, region: str, referral_id: str, state: str) -> ReferralState:
        return await self.until(region, referral_id, lambda s: s.state == state, repr(state))

    async def tracks(self, region: str, referral_id: str, wanted: dict[str, str]) -> ReferralState:
        return await self.until(
            region, referral_id, lambda s: all(s.tracks.get(k) == v for k, v in wanted.items()), str(wanted)
        )

    def note(self, text: str) -> None:
        self.console.print(f"  [green]✓[/green] {text}")


async def lead_accepted_and_concluded(sc: Scenario) -> None:
    sent = await sc.client("BJ").open("lead.submitted", to="TJ", data=sc.local_lead("BJ"))
    rid = sent.envelope.subject
    sc.referrals.append(("线索移送 BJ→TJ", "BJ", rid))
    await sc.state("TJ", rid, "received")
    number = sc.case_number("TJ", 2207) or PAYLOADS["lead.accepted"]["local_case_number"]
    await sc.client("TJ").send(rid, "lead.accepted", dict(PAYLOADS["lead.accepted"], local_case_number=number))
    await sc.state("BJ", rid, "accepted")
    await sc.client("TJ").send(rid, "lead.progress", PAYLOADS["lead.progress"])
    await sc.client("TJ").send(rid, "lead.concluded", PAYLOADS["lead.concluded"])
    await sc.state("BJ", rid, "concluded")
    sc.note("lead BJ→TJ: received, accepted, in progress, concluded with an administrative penalty")


async def lead_forwarded(sc: Scenario) -> None:
    data = dict(PAYLOADS["lead.submitted"], title="网店销售假冒服装线索", location="河北省廊坊市")
    # H2: HE may not pass the lead on without TJ's permission; it asks, TJ grants.
    sent = await sc.client("TJ").open("lead.submitted", to="HE", data=data, handling="H2")
    rid = sent.envelope.subject
    sc.referrals.append(("线索移送 TJ→HE (转送)", "TJ", rid))
    await sc.state("HE", rid, "received")
    await sc.client("HE").send(rid, "lead.permission_requested", PAYLOADS["lead.permission_requested"])
    await sc.until("TJ", rid, lambda s: s.events >= 3, "the permission request")
    await sc.client("TJ").send(rid, "lead.permission_granted", PAYLOADS["lead.permission_granted"])
    await sc.until("HE", rid, lambda s: "onward_sharing:BJ" in s.permissions, "onward_sharing to BJ granted")
    _, opened = await sc.client("HE").forward_lead(rid, "BJ", PAYLOADS["lead.forwarded"]["reason"])
    new_id = opened.envelope.subject
    sc.referrals.append(("线索转送 HE→BJ", "HE", new_id))
    await sc.state("TJ", rid, "forwarded")
    await sc.state("BJ", new_id, "received")
    await sc.client("BJ").send(
        new_id,
        "lead.accepted",
        dict(PAYLOADS["lead.accepted"], local_case_number=sc.case_number("BJ", 3301) or "京市监立〔2026〕3301号"),
    )
    await sc.state("HE", new_id, "accepted")
    sc.note("lead TJ→HE marked H2: forwarded by HE to BJ with TJ's permission as a linked referral, accepted by BJ")


async def joint_investigation(sc: Scenario, workdir: Path) -> None:
    sent = await sc.client("BJ").open("assist.requested", to="HE", data=PAYLOADS["assist.requested"])
    rid = sent.envelope.subject
    sc.referrals.append(("协查请求 BJ→HE", "BJ", rid))
    await sc.state("HE", rid, "received")
    await sc.client("HE").send(rid, "assist.accepted", PAYLOADS["assist.accepted"])
    video = b"demo test-purchase video " * 40_000  # ~1 MB: too large for an event, so an attachment
    ref = await sc.client("HE").attach(video, filename="测试购买录像.mp4", media_type="video/mp4")
    item = dict(EVIDENCE_PURCHASE, sha256=hashlib.sha256(video).hexdigest(), attachment=ref.model_dump(mode="json"))
    await sc.client("HE").send(rid, "assist.evidence_delivered", {"items": [EVIDENCE_PHOTOS], "note": "现场照片"})
    await sc.client("HE").send(rid, "assist.evidence_delivered", {"items": [item], "note": "测试购买录像"})
    await sc.state("BJ", rid, "evidence_delivered")
    got = await sc.client("BJ").download(ref, workdir / "evidence" / ref.filename, owner="HE")
    await sc.client("HE").send(rid, "assist.completed", PAYLOADS["assist.completed"])
    await sc.state("BJ", rid, "completed")
    sc.note(
        f"joint investigation BJ→HE: two evidence deliveries, a {ref.size:,}-byte attachment "
        f"verified by digest ({got.name})"
    )


async def recognition(sc: Scenario) -> None:
    sent = await sc.client("BJ").open("recognition.published", to="ALL", data=PAYLOADS["recognition.published"])
    rid = sent.envelope.subject
    sc.referrals.append(("处罚决定互认 BJ→ALL", "BJ", rid))
    await sc.tracks("BJ", rid, {"TJ": "received", "HE": "received"})
    await sc.client("TJ").send(rid, "recognition.recognized", PAYLOADS["recognition.recognized"])
    await sc.client("HE").send(rid, "recognition.contested", PAYLOADS["recognition.contested"])
    await sc.tracks("BJ", rid, {"TJ": "recognized", "HE": "contested"})
    await sc.client("BJ").send(rid, "recognition.revoked", PAYLOADS["recognition.revoked"])
    await sc.tracks("BJ", rid, {"TJ": "revocation_acknowledged", "HE": "revocation_acknowledged"})
    sc.note("penalty decision recognised by TJ, contested by HE, revoked by BJ, revocation acknowledged by both")


async def blacklist(sc: Scenario) -> None:
    for event in ("share.blacklist_upserted", "share.blacklist_removed"):
        sent = await sc.client("HE").open(event, to="ALL", data=PAYLOADS[event])
        rid = sent.envelope.subject
        sc.referrals.append((f"黑名单 {event.split('_')[1]} HE→ALL", "HE", rid))
        await sc.tracks("HE", rid, {"BJ": "acknowledged", "TJ": "acknowledged"})
    sc.note("blacklist entry upserted and removed by HE, each acknowledged by BJ and TJ")


def recorder(sc: Scenario, region: str) -> Callable[[Delivery], Awaitable[None]]:
    async def handle(delivery: Delivery) -> None:
        sc.inbound.setdefault(region, []).append(delivery.event.envelope.event_type)

    return handle


async def print_report(sc: Scenario) -> None:
    for title, origin, rid in sc.referrals:
        client = sc.client(origin)
        state = await client.referral(rid)
        assert state is not None
        tracks = ", ".join(f"{k}: {v}" for k, v in sorted(state.tracks.items()))
        table = Table(title=f"{title}  {rid}", title_justify="left", show_lines=False)
        table.add_column("#", justify="right")
        table.add_column("time (UTC)")
        table.add_column("event")
        table.add_column("from → to")
        table.add_column("state after")
        for i, entry in enumerate(await client.history(rid), 1):
            table.add_row(
                str(i), entry.time[11:23], entry.event_type, f"{entry.sender} → {entry.addressee}", entry.state_after
            )
        sc.console.print(table)
        sc.console.print(f"  final state: [bold]{state.state}[/bold]" + (f"  ({tracks})" if tracks else "") + "\n")


async def run_demo(
    nats_url: str | None = None,
    workdir: Path | None = None,
    console: Console | None = None,
    config: BusConfig | None = None,
    *,
    insecure: bool = False,
    security_dir: Path | None = None,
) -> Scenario:
    """Play the scenario. The embedded server runs secured (mutual TLS, one account and
    client-certificate identity per party, generated into ``<workdir>/security``) unless ``insecure``;
    with ``nats_url`` the adapters use the identities in ``security_dir``, if given."""
    console = console or Console()
    config = config or load_config()
    started = time.monotonic()
    async with AsyncExitStack() as stack:
        root = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="xregion-demo-")))
        settings = RuntimeSettings(data_dir=root)
        sec = SecurityDir(security_dir) if security_dir is not None else None
        if nats_url is None:
            server_config = ServerConfig(store_dir=root / "nats", port=free_port())
            if not insecure:
                sec = sec or ensure_dev_security(root / "security", config.regions.codes)
                sec.secure(server_config)
            server = EmbeddedServer(server_config).start()
            stack.callback(server.stop)
            nats_url = server.url
            mode = (
                f"mutual TLS, one account and certificate per party from {sec.root}"
                if sec is not None
                else "--insecure: no authentication, no TLS"
            )
            console.print(
                f"[bold]embedded nats-server[/bold] {server.url}, "
                f"JetStream store {root / 'nats'} (sync_interval: always), {mode}"
            )
        if sec is not None and sec.has_identity(OPERATOR):
            await apply_topology(nats_url, config.regions.codes, identity=sec.identity(OPERATOR), settings=settings)
        regions = list(config.regions.codes)
        roster = init_keys(root / "keys", [*regions, "COORD"])
        adapters: dict[str, Adapter] = {}
        sc = Scenario(adapters, console)
        for region in regions:
            if (profile := load_profile(region, config)) is not None:
                sc.profiles[region] = profile
        for region in regions:
            profile = sc.profiles.get(region)
            adapter = Adapter(
                region,
                signer=load_signer(root / "keys", region),
                roster=roster,
                nats_url=nats_url,
                store_path=root / f"{region}.db",
                config=profile.apply(config) if profile else config,
                agency=profile.default_agency if profile else None,
                settings=sec.settings_for(region, settings) if sec is not None else settings,
                handler=recorder(sc, region),
            )
            await adapter.start()
            stack.push_async_callback(adapter.stop)
            adapters[region] = adapter
        console.print(f"adapters running: {', '.join(regions)} — playing the scenario\n")
        await lead_accepted_and_concluded(sc)
        await lead_forwarded(sc)
        await joint_investigation(sc, root)
        await recognition(sc)
        await blacklist(sc)
        for adapter in adapters.values():
            await adapter.wait_published()
        console.print()
        await print_report(sc)
        events = sum(len(v) for v in sc.inbound.values())
        console.print(
            f"[bold green]demo complete[/bold green]: {len(sc.referrals)} referrals, "
            f"{events} events delivered, {time.monotonic() - started:.1f}s"
        )
    return sc
