"""Issue 14's acceptance test: a whole site on one host, run the way an operator runs it.

Every step is an ``xregion`` command in a subprocess (the console script next to
``sys.executable``), every party with its own identity on a secured broker (mutual TLS,
development certificates): BJ, TJ and HE adapters with their HTTP gateways, COORD for the
dashboard, ``status`` and ``coordinator rebuild``, AUDIT for the auditor, ADMIN for backups.
The test only *reads* results (HTTP, JSON output, SQLite, files) to assert.

The story, which ops/RUNBOOK.md "A site on one host, step by step" lists command by command:
keys, broker, adapters, dashboard, leads over HTTP, ``status`` beside the dashboard, a
rebuild equal to the live projection, the auditor (replay, export, verify), an online backup,
more traffic, the broker destroyed (SIGKILL, its store deleted) while a region keeps
submitting, a new broker restored from the backup on the same port, and the adapters
re-publishing from their outboxes what the backup lacked: at the end the stream holds every
event exactly once, byte for byte as its origin signed it, the audit is clean, every event was
handed to its addressee's regional system exactly once, and the dashboard's projection
(folded again from the start after the restore) equals a rebuild of the restored stream.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx

from tests.site.processes import REGIONS, Site, alive, duplicates, eventually
from xregion.auditor.archive import read_archive
from xregion.coordinator.projection import Projection
from xregion.examples import PAYLOADS

STEP_S = 60.0
"""Deadline of each wait (generous: two cores shared with other test runs)."""


def _lead(site: Site, origin: str, to: str, key: str) -> dict[str, Any]:
    """Open a lead over ``origin``'s HTTP gateway (what its case system does)."""
    body = {"event_type": "lead.submitted", "to": to, "data": PAYLOADS["lead.submitted"]}
    with site.gateway(origin) as gw:
        answer = gw.post("/v1/referrals", json=body, headers={"Idempotency-Key": key})
    assert answer.status_code == 201, answer.text
    sent = answer.json()
    assert sent["referral_id"].startswith(f"{origin}-") and sent["to"] == to
    return sent


def _accept(site: Site, region: str, referral_id: str) -> dict[str, Any]:
    body = {"event_type": "lead.accepted", "data": PAYLOADS["lead.accepted"]}
    with site.gateway(region) as gw:
        answer = gw.post(
            f"/v1/referrals/{referral_id}/events", json=body, headers={"Idempotency-Key": f"accept-{referral_id}"}
        )
    assert answer.status_code == 201, answer.text
    return answer.json()


def _state_at(site: Site, region: str, referral_id: str) -> str | None:
    with site.gateway(region) as gw:
        answer = gw.get(f"/v1/referrals/{referral_id}")
    return answer.json()["state"] if answer.status_code == 200 else None


def _settled(site: Site, expected: dict[str, str]) -> bool:
    """Every region's outbox acknowledged by the stream, every event any region sent handled
    by its addressee, and each referral of ``expected`` (id → state) in that state at its origin."""
    if any(site.outbox_depth(r) != 0 for r in REGIONS):
        return False
    handled = {r: set(site.handled(r)) for r in REGIONS}
    for region in REGIONS:
        for event_id, addressee in site.query(region, "SELECT event_id, addressee FROM outbox"):
            if event_id not in handled.get(addressee, set()):
                return False
    return all(_state_at(site, rid.split("-", 1)[0], rid) == state for rid, state in expected.items())


def _sent_events(site: Site) -> dict[str, tuple[str, bytes]]:
    """Every event the regions sent: event id → (addressee, signed bytes), from their outboxes."""
    out: dict[str, tuple[str, bytes]] = {}
    for region in REGIONS:
        for event_id, addressee, payload in site.query(region, "SELECT event_id, addressee, payload FROM outbox"):
            out[event_id] = (addressee, bytes(payload))
    return out


def _dashboard_caught_up(site: Site, referrals: int) -> dict[str, Any] | None:
    ready = site.dashboard_ready()
    if not ready or ready.get("lag") != 0:
        return None
    listed = httpx.get(f"{site.dashboard_url}/api/referrals", timeout=5.0).json()
    return ready if len(listed) == referrals else None


def _projection(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with Projection(path) as projection:
        return projection.dump()


def _without_restore_note(dump: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    """A projection's tables, without the meta row noting which restore it followed (a
    rebuild folds a stream, it follows no restore)."""
    return {**dump, "meta": [row for row in dump["meta"] if row[0] != "restored_at"]}


def test_a_site_runs_backs_up_is_destroyed_and_restored_losing_and_duplicating_nothing(site: Site) -> None:
    started = time.monotonic()
    keys, security = site.keys, site.security
    roster = str(keys / "roster.json")

    # 1. keys for every party that signs, AUDIT included
    site.cli("keys", "init", "--keys-dir", str(keys))
    assert {p.stem for p in (keys / "private").glob("*.key")} >= {*REGIONS, "COORD", "AUDIT"}

    # 2. the secured broker: it generates the development certificates, declares the topology as ADMIN
    data_1 = site.root / "nats-1"
    broker = site.start_broker(data_1)
    assert (security / "tls" / "clients" / "ADMIN.pem").is_file()
    for party in (*REGIONS, "COORD", "AUDIT"):
        assert (security / "tls" / "clients" / f"{party}-key.pem").is_file()

    # 3. three adapters, each with its own certificate, HTTP gateway (token) and regional system
    for region in REGIONS:
        site.start_adapter(region)
    for region in REGIONS:
        eventually(lambda r=region: site.gateway_up(r), timeout=STEP_S, what=f"{region}'s gateway")

    # 4. the dashboard (COORD)
    site.start_dashboard()
    eventually(site.dashboard_ready, timeout=STEP_S, what="the dashboard to be ready")

    # 5. leads over HTTP; the addressees' systems handle them, the origins get the receipts
    leads = [
        _lead(site, "BJ", "TJ", "site-1"),
        _lead(site, "BJ", "HE", "site-2"),
        _lead(site, "BJ", "TJ", "site-3"),
        _lead(site, "TJ", "HE", "site-4"),
        _lead(site, "HE", "BJ", "site-5"),
    ]
    expected = {lead["referral_id"]: "received" for lead in leads}
    eventually(lambda: _settled(site, expected), timeout=STEP_S, what="the first leads to be handled and receipted")
    for lead in leads:
        assert lead["event_id"] in site.handled(lead["to"])

    # 6. `xregion status` beside the running dashboard: the same referrals, no anomaly on either
    eventually(lambda: _dashboard_caught_up(site, len(leads)), timeout=STEP_S, what="the dashboard to catch up")
    status = site.cli(
        "status", "--nats-url", site.url, "--keys-dir", str(keys), "--store", str(site.store("other")),
        *site.tls("COORD"), "--json",
    ).json()  # fmt: skip
    listed = httpx.get(f"{site.dashboard_url}/api/referrals", timeout=5.0).json()
    summary = httpx.get(f"{site.dashboard_url}/api/summary", timeout=5.0).json()
    by_id = sorted(status["referrals"], key=lambda r: r["referral_id"])
    assert by_id == sorted(listed, key=lambda r: r["referral_id"])
    assert {r["referral_id"] for r in by_id} == set(expected)
    assert status["summary"]["anomalies"] == 0 and summary["anomalies"] == 0
    assert status["summary"]["total"] == summary["total"] == len(leads)

    # 7. the dashboard stopped, `coordinator rebuild` folds the stream again: equal to the live projection
    assert site.procs["dashboard"].terminate() == 0
    site.cli(
        "coordinator", "rebuild", "--nats-url", site.url, "--keys-dir", str(keys),
        "--store", str(site.store("rebuilt")), *site.tls("COORD"),
    )  # fmt: skip
    assert _projection(site.store("rebuilt")) == _projection(site.store("coord"))
    site.start_dashboard()  # it follows the rest of the story: the restore included
    eventually(lambda: _dashboard_caught_up(site, len(leads)), timeout=STEP_S, what="the dashboard to restart")

    # 8. the auditor (AUDIT): replay clean, an archive exported and verified offline
    replay = site.cli("audit", "replay", "--nats-url", site.url, "--roster", roster, *site.tls("AUDIT"), "--json")
    audit = replay.json()
    assert audit["ok"] and audit["anomalies"] == [] and audit["events"] == len(_sent_events(site))
    archive = site.root / "archive"
    site.cli("audit", "export", "--out", str(archive), "--nats-url", site.url, "--keys-dir", str(keys),
             *site.tls("AUDIT"))  # fmt: skip
    site.cli("audit", "verify", str(archive), "--roster", roster)

    # 9. online backup (ADMIN)
    backup = site.root / "backup"
    site.cli("ops", "backup", "--out", str(backup), "--nats-url", site.url, *site.tls("ADMIN"))
    backed_up = json.loads((backup / "XREGION" / "backup.json").read_text(encoding="utf-8"))
    assert backed_up["messages"] == audit["events"]

    # 10. more traffic after the backup: new leads, and an answer on a lead from before it
    later = [
        _lead(site, "BJ", "TJ", "site-6"),
        _lead(site, "TJ", "BJ", "site-7"),
        _lead(site, "HE", "TJ", "site-8"),
    ]
    accepted = _accept(site, "TJ", leads[0]["referral_id"])
    expected |= {lead["referral_id"]: "received" for lead in later} | {leads[0]["referral_id"]: "accepted"}
    eventually(lambda: _settled(site, expected), timeout=STEP_S, what="the traffic after the backup to be handled")
    before_disaster = _sent_events(site)
    lost = {
        event_id
        for region in REGIONS
        for event_id, _payload, seq in site.outbox(region)
        if seq is not None and seq > backed_up["last_seq"]
    }
    assert len(lost) == len(before_disaster) - backed_up["messages"] >= 7  # 3 leads + 3 receipts + 1 answer
    assert accepted["event_id"] in lost

    # 11. the disaster: the broker SIGKILLed (its nats-server too) and its store deleted
    nats_pids = list(broker.children)
    broker.kill()
    assert not any(alive(pid) for pid in nats_pids)
    shutil.rmtree(data_1)
    assert not data_1.exists()
    # the adapters keep running; BJ's case system keeps submitting into its outbox
    outage = _lead(site, "BJ", "HE", "site-9")
    assert site.outbox_depth("BJ") == 1
    expected[outage["referral_id"]] = "received"
    for region in REGIONS:
        assert site.procs[region].running, f"adapter {region} died with the broker"

    # 12. a new broker on a new store, same port and security directory, restored from the backup
    data_2 = site.root / "nats-2"
    restored = site.start_broker(data_2, "--restore", str(backup), name="broker-restored")
    assert f"restored XREGION: {backed_up['messages']} messages" in restored.output()

    # 13. the adapters reconnect and re-publish what the backup lacked, then the outage's lead
    eventually(lambda: _settled(site, expected), timeout=STEP_S, what="the regions to re-publish and catch up")
    sent = _sent_events(site)
    new = {e: to for e, (to, _p) in sent.items() if e not in before_disaster}
    assert set(before_disaster) <= set(sent)
    assert len(new) == 2 and new.pop(outage["event_id"]) == "HE" and list(new.values()) == ["BJ"]  # + HE's receipt
    for region in REGIONS:
        logged = site.procs[region].output()
        if any(event_id in lost for event_id, _p, _s in site.outbox(region)):
            assert "the stream was restored from a backup" in logged, f"{region} did not say it re-published"

    replay = site.cli("audit", "replay", "--nats-url", site.url, "--roster", roster, *site.tls("AUDIT"), "--json")
    audit = replay.json()
    assert audit["ok"] and audit["anomalies"] == [], audit["anomalies"]
    assert audit["events"] == len(sent) and audit["last_seq"] == len(sent)
    after = site.root / "archive-after"
    site.cli("audit", "export", "--out", str(after), "--nats-url", site.url, "--keys-dir", str(keys),
             *site.tls("AUDIT"))  # fmt: skip
    site.cli("audit", "verify", str(after), "--roster", roster)
    stored = [(json.loads(r.raw)["id"], r.raw) for r in read_archive(after)]
    assert duplicates(e for e, _ in stored) == {}, "an event is in the stream twice"
    assert {e: raw for e, raw in stored} == {e: payload for e, (_to, payload) in sent.items()}  # byte for byte
    handled_at: dict[str, list[str]] = defaultdict(list)
    for region in REGIONS:
        ids = site.handled(region)
        assert duplicates(ids) == {}, f"{region}'s regional system got an event twice"
        for event_id in ids:
            handled_at[event_id].append(region)
    assert handled_at == {e: [to] for e, (to, _p) in sent.items()}  # each by its addressee, once

    # the dashboard followed the restore: folded again from the start, equal to a rebuild
    eventually(lambda: _dashboard_caught_up(site, len(expected)), timeout=STEP_S, what="the dashboard, restored")
    assert site.procs["dashboard"].terminate() == 0
    site.cli(
        "coordinator", "rebuild", "--nats-url", site.url, "--keys-dir", str(keys),
        "--store", str(site.store("rebuilt-after")), *site.tls("COORD"),
    )  # fmt: skip
    live = _projection(site.store("coord"))
    assert _without_restore_note(live) == _without_restore_note(_projection(site.store("rebuilt-after")))
    assert not live["anomalies"]

    # everything stops on SIGTERM, cleanly
    for region in REGIONS:
        assert site.procs[region].terminate() == 0, f"adapter {region}"
    assert restored.terminate() == 0
    assert not any(alive(pid) for pid in restored.children)
    # restoring into a store that holds the streams already is refused, nothing restored
    again = site.spawn(
        "broker-refused", "broker", "--data-dir", str(data_2), "--port", str(site.port),
        "--security-dir", str(security), "--restore", str(backup),
    )  # fmt: skip
    assert site.wait_for_exit(again) == 1
    assert "backup_failed" in again.output() and "nothing was restored" in again.output()
    print(f"site story: {time.monotonic() - started:.1f}s, {len(sent)} events, {len(lost)} re-published")
