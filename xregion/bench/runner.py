"""``xregion bench``: the bus's paths against raw nats-py, on one server, in one run.

Every measurement runs against the same ``nats-server`` (started here with file storage and
``sync_interval: always`` unless ``--nats-url``), one after another, never two at once:

* raw nats-py baselines on a stream of their own: ``js.publish_async`` of 1 KB messages
  (≤ 4000 in flight, futures bounded by ``asyncio.wait_for``: nats.py#985), the same in
  JetStream atomic batches of 100 (the strongest durable raw publish), pull ``fetch(100)`` +
  ack of those messages, and publish and consume together (publisher and pull consumer
  running at once, the consumer in a second process: the raw publish → consume pipeline);
* the machine's Ed25519 verification rate on one core (libsodium, the signature the bus
  checks), the ceiling of any exhaustive signature check;
* outbound: a region's adapter validating, sealing, signing and storing events in its outbox
  (:meth:`RegionClient.open`), its relay publishing them until JetStream acknowledged them all;
* end to end: submit at BJ → TJ's consumer verified, handled, committed and acked, as fast as
  possible (throughput), then at a fixed offered rate (latency p50/p99 from the *scheduled*
  submission time to TJ's commit, so a stalled sender cannot hide its queueing delay); TJ's
  adapter runs in a second process (:mod:`xregion.bench.child`), as each region's adapter
  does in a deployment;
* auditor replay with full verification vs a raw ordered read
  (:func:`xregion.auditor.bench.run_bench`), with RSS sampled during the replay, and the
  coordinator's fold of the same stream into its projection.

With ``profile=True`` each path also reports where its CPU goes, per event, by stage
(:mod:`xregion.bench.profile`): BJ's process for outbound and end to end, TJ's (the child)
for end to end, the auditor's main process for the replay, and nats-server's CPU per event
on each path. The profiler costs a little CPU: read the rates of an unprofiled run.

The server runs without TLS or authentication so that raw and bus measurements travel the same
transport (the bus's own mutual TLS and NKey identities are not measured). With ``--nats-url``
use a scratch server: the benchmark creates and deletes the streams ``XREGION``,
``XREGION_DLQ``, ``XREGION_BENCH`` and ``BENCH_RAW``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from xregion.bench.child import Child, bench_adapter
from xregion.bench.profile import Profile, Sampler, install, process_cpu_seconds, uninstall
from xregion.bench.raw import (
    IN_FLIGHT,
    RAW_STREAM,
    fetch_all,
    publish_all,
    publish_atomic,
    pull_subscription,
    raw_stream,
)

SUBMITTERS = 64
"""Concurrent submitting tasks in the throughput runs (the outbox serialises their commits)."""


@dataclass(frozen=True)
class Goal:
    """``measured / baseline`` must reach ``ratio`` (or, for latency, stay below ``limit_ms``)."""

    name: str
    measured: str
    baseline: str
    ratio: float | None = None
    limit_ms: float | None = None


GOALS = (
    Goal("outbound", "outbound", "raw_publish_async", ratio=1.0),
    Goal("end to end", "end_to_end", "raw_pipeline", ratio=0.5),
    Goal("p99 latency @ rate", "latency", "raw_publish_async", limit_ms=5.0),
)


@dataclass
class Rate:
    events: int
    seconds: float

    @property
    def per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"events": self.events, "seconds": round(self.seconds, 3), "events_per_s": round(self.per_s, 1)}


@dataclass
class Latency:
    rate_per_s: float
    events: int
    samples_ms: list[float] = field(default_factory=list)
    achieved_per_s: float = 0.0

    def percentile(self, q: float) -> float:
        if not self.samples_ms:
            return 0.0
        ordered = sorted(self.samples_ms)
        return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]

    def to_json(self) -> dict[str, Any]:
        return {
            "offered_per_s": self.rate_per_s,
            "achieved_per_s": round(self.achieved_per_s, 1),
            "events": self.events,
            "p50_ms": round(self.percentile(50), 3),
            "p99_ms": round(self.percentile(99), 3),
            "max_ms": round(max(self.samples_ms, default=0.0), 3),
            "mean_ms": round(statistics.fmean(self.samples_ms), 3) if self.samples_ms else 0.0,
        }


def disk_sync_ms(directory: Path, commits: int = 50) -> float:
    """Median milliseconds of one small SQLite commit as the adapters make them (WAL,
    ``synchronous=FULL``) in ``directory``: the floor under each durable step of an event's
    way (the sender's outbox, the addressee's handling; the server syncs its own too)."""
    import sqlite3

    path = directory / "sync-probe.db"
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE probe (n INTEGER)")
        samples = []
        for n in range(commits):
            started = time.perf_counter()
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO probe VALUES (?)", (n,))
            db.execute("COMMIT")
            samples.append((time.perf_counter() - started) * 1000)
    finally:
        db.close()
    for leftover in directory.glob("sync-probe.db*"):
        leftover.unlink()
    return round(statistics.median(samples), 3)


def machine() -> dict[str, Any]:
    """Where the numbers come from."""
    from xregion.ops.server import find_nats_server

    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    version = ""
    with contextlib.suppress(Exception):
        import subprocess

        version = subprocess.run(
            [find_nats_server(), "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "nats_server": version,
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


# --- raw nats-py ----------------------------------------------------------------------------


async def raw_baselines(nats_url: str, count: int, workdir: Path) -> dict[str, Rate]:
    """``raw_publish_async``, ``raw_atomic_batch`` (atomic batches of 100), ``raw_fetch_ack``
    and ``raw_pipeline`` (both at once, the consumer in a process of its own as the bus's
    addressee is)."""
    import nats

    nc = await nats.connect(nats_url)
    js = nc.jetstream(publish_async_max_pending=IN_FLIGHT)
    try:
        await raw_stream(js, RAW_STREAM, "bench.raw.>")
        await publish_all(js, "bench.raw.warm", min(count, 1000))  # connection and file warm-up
        started = time.perf_counter()
        await publish_all(js, "bench.raw.a", count)
        publish = Rate(count, time.perf_counter() - started)

        await publish_atomic(nc, RAW_STREAM, "bench.raw.warm", min(count, 500))
        started = time.perf_counter()
        await publish_atomic(nc, RAW_STREAM, "bench.raw.atomic", count)
        atomic = Rate(count, time.perf_counter() - started)

        started = time.perf_counter()
        await fetch_all(await pull_subscription(js, RAW_STREAM, "raw-a", "bench.raw.a"), count)
        fetch = Rate(count, time.perf_counter() - started)

        consuming = ("raw", nats_url, RAW_STREAM, "raw-b", "bench.raw.b", str(count))
        async with Child(*consuming, log=workdir / "raw-consumer.log") as consumer:
            started = time.perf_counter()
            await publish_all(js, "bench.raw.b", count)
            done = float(await consumer.expect("done", timeout=max(60.0, count / 500)))
        pipeline = Rate(count, done - started)
        await js.delete_stream(RAW_STREAM)
        return {
            "raw_publish_async": publish,
            "raw_atomic_batch": atomic,
            "raw_fetch_ack": fetch,
            "raw_pipeline": pipeline,
        }
    finally:
        await nc.close()


def ed25519_verify_rate(seconds: float = 1.0) -> Rate:
    """Ed25519 verifications per second on one core (libsodium through PyNaCl, the check the
    bus makes) of a signature over an event-sized message (1.5 KB)."""
    from nacl.signing import SigningKey

    key = SigningKey.generate()
    message = os.urandom(1536)
    signed = key.sign(message)
    verify, signature = key.verify_key.verify, signed.signature
    for _ in range(200):  # warm-up
        verify(message, signature)
    done, started = 0, time.process_time()
    while (spent := time.process_time() - started) < seconds:
        for _ in range(500):
            verify(message, signature)
        done += 500
    return Rate(done, spent)


# --- the bus --------------------------------------------------------------------------------


async def _drop_bus_streams(nats_url: str) -> None:
    """Delete the bus's streams, so the next phase starts with fresh chains and consumers."""
    import nats

    from xregion.runtime.settings import RuntimeSettings

    settings = RuntimeSettings()
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for name in (settings.stream, settings.dead_letter_stream):
            with contextlib.suppress(Exception):
                await js.delete_stream(name)
    finally:
        await nc.close()


async def _submit_many(client: Any, count: int, data: dict[str, Any]) -> list[str]:
    """Open ``count`` referrals BJ→TJ from ``SUBMITTERS`` concurrent tasks; their event ids."""
    ids: list[str] = []
    queue = iter(range(count))

    async def worker() -> None:
        for _ in queue:
            sent = await client.open("lead.submitted", to="TJ", data=data)
            ids.append(sent.envelope.id)

    await asyncio.gather(*(worker() for _ in range(SUBMITTERS)))
    return ids


@dataclass
class PathProfile:
    """Where one path's CPU went: each process's :class:`Profile` over the measured interval
    and the events it carried; nats-server's CPU seconds over the same interval."""

    events: int
    processes: dict[str, Profile] = field(default_factory=dict)
    server_cpu_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "processes": {name: p.per_event(self.events) for name, p in self.processes.items()},
            "nats_server_cpu_us_per_event": round(self.server_cpu_s / self.events * 1e6, 1) if self.events else 0.0,
        }


class _Watch:
    """Optionally profiles this process (and reads nats-server's CPU) over an interval."""

    def __init__(self, enabled: bool, server_pid: int | None, events: int) -> None:
        self.enabled = enabled
        self.server_pid = server_pid
        self.result = PathProfile(events)
        self._sampler: Sampler | None = None
        self._server0 = 0.0

    def __enter__(self) -> _Watch:
        if self.enabled:
            self._server0 = process_cpu_seconds(self.server_pid) if self.server_pid else 0.0
            self._sampler = Sampler().start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._sampler is not None:
            self.result.processes["BJ (sender)"] = self._sampler.stop()
            if self.server_pid:
                self.result.server_cpu_s = process_cpu_seconds(self.server_pid) - self._server0


async def bus_paths(
    nats_url: str,
    workdir: Path,
    count: int,
    latency_events: int,
    rate: float,
    *,
    profile: bool = False,
    server_pid: int | None = None,
) -> tuple[Rate, Rate, Latency, dict[str, PathProfile]]:
    """Outbound throughput, end-to-end throughput and latency at ``rate`` events/s (and, with
    ``profile``, where the CPU of the first two went).

    BJ's adapter runs here; in the end-to-end runs TJ's runs in a process of its own, as each
    region's does in a deployment (:mod:`xregion.bench.child`)."""
    import structlog

    from xregion.examples import PAYLOADS
    from xregion.keys import init_keys

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # warnings off: 2 cores
    init_keys(workdir / "keys", ["BJ", "TJ", "COORD"])
    data = dict(PAYLOADS["lead.submitted"])
    profiles: dict[str, PathProfile] = {}
    if profile:
        install()  # before the adapters start their threads
    try:
        return await _bus_paths(nats_url, workdir, count, latency_events, rate, data, profile, server_pid, profiles)
    finally:
        if profile:
            uninstall()


async def _bus_paths(
    nats_url: str,
    workdir: Path,
    count: int,
    latency_events: int,
    rate: float,
    data: dict[str, Any],
    profile: bool,
    server_pid: int | None,
    profiles: dict[str, PathProfile],
) -> tuple[Rate, Rate, Latency, dict[str, PathProfile]]:

    # Outbound: only BJ runs (nobody consumes), fresh streams.
    await _drop_bus_streams(nats_url)
    async with AsyncExitStack() as stack:
        bj = await bench_adapter("BJ", nats_url, workdir, "out-BJ.db").start()
        stack.push_async_callback(bj.stop)
        await _submit_many(bj.client, min(50, count), data)  # warm-up
        await bj.wait_published(timeout=60.0)
        with _Watch(profile, server_pid, count) as watch:
            started = time.perf_counter()
            await _submit_many(bj.client, count, data)
            await bj.wait_published(timeout=max(120.0, count / 20))
            outbound = Rate(count, time.perf_counter() - started)
        if profile:
            profiles["outbound"] = watch.result

    # End to end: BJ submits, TJ verifies, handles, commits, acks (and answers a receipt).
    await _drop_bus_streams(nats_url)
    async with AsyncExitStack() as stack:
        child_args = ("adapter", nats_url, str(workdir), "TJ", *(("profile",) if profile else ()))
        tj = await stack.enter_async_context(Child(*child_args, log=workdir / "TJ.log"))
        commits = tj.commits
        bj = await bench_adapter("BJ", nats_url, workdir, "e2e-BJ.db").start()
        stack.push_async_callback(bj.stop)
        warm = await _submit_many(bj.client, min(50, count), data)
        await commits.wait_for(len(warm), timeout=60.0)

        if profile:
            await tj.command("profile-start", "profiling")
        with _Watch(profile, server_pid, count) as watch:
            started = time.perf_counter()
            await _submit_many(bj.client, count, data)
            await commits.wait_for(len(warm) + count, timeout=max(120.0, count / 20))
            end_to_end = Rate(count, time.perf_counter() - started)
        if profile:
            watch.result.processes["TJ (addressee)"] = Profile.from_json(
                json.loads(await tj.command("profile-stop", "profile"))
            )
            profiles["end_to_end"] = watch.result
        await bj.wait_published(timeout=60.0)
        await tj.wait_published()  # TJ's receipts out before the latency run
        await asyncio.sleep(0.5)

        latency = Latency(rate, latency_events)
        scheduled: dict[str, float] = {}
        tasks: list[asyncio.Task[None]] = []

        async def submit_at(at: float) -> None:
            sent = await bj.client.open("lead.submitted", to="TJ", data=data)
            scheduled[sent.envelope.id] = at

        begin = time.perf_counter() + 0.05
        for i in range(latency_events):
            at = begin + i / rate
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(submit_at(at)))
        await asyncio.gather(*tasks)
        await commits.wait_for(len(warm) + count + latency_events, timeout=max(60.0, latency_events / 20))
        latency.samples_ms = [(commits.at[i] - at) * 1000 for i, at in scheduled.items()]
        latency.achieved_per_s = latency_events / (max(commits.at[i] for i in scheduled) - begin)
    await _drop_bus_streams(nats_url)
    return outbound, end_to_end, latency, profiles


# --- the whole run --------------------------------------------------------------------------


@dataclass
class BenchReport:
    machine: dict[str, Any]
    server: str
    rates: dict[str, Rate]
    latency: Latency
    replays: list[dict[str, Any]]
    profiles: dict[str, Any] = field(default_factory=dict)

    def comparisons(self) -> list[dict[str, Any]]:
        """One row per measurement: measured, baseline, ratio, goal, met."""
        rows: list[dict[str, Any]] = []
        publish = self.rates["raw_publish_async"].per_s
        atomic = self.rates["raw_atomic_batch"].per_s
        rows.append(_row("raw atomic batches of 100", atomic, "raw publish_async", publish))
        rows.append(_row("raw fetch(100)+ack", self.rates["raw_fetch_ack"].per_s, "raw publish_async", publish))
        rows.append(_row("raw publish→consume", self.rates["raw_pipeline"].per_s, "raw publish_async", publish))
        verify = self.rates["ed25519_verify_1core"].per_s
        cores = int(self.machine.get("cpus") or 1)
        rows.append(_row("Ed25519 verify, one core (libsodium)", verify, f"× {cores} cores", verify * cores))
        rows.append(
            _row(
                "outbound (validate, seal, sign, outbox, ack)",
                self.rates["outbound"].per_s,
                "raw publish_async",
                publish,
                goal=1.0,
            )
        )
        rows.append(
            _row("outbound, against raw atomic batches", self.rates["outbound"].per_s, "raw atomic batches", atomic)
        )
        rows.append(
            _row(
                "end to end (submit → TJ handled, committed, acked)",
                self.rates["end_to_end"].per_s,
                "raw publish→consume",
                self.rates["raw_pipeline"].per_s,
                goal=0.5,
            )
        )
        p99 = self.latency.percentile(99)
        rows.append(
            {
                "measurement": f"latency p99 at {self.latency.rate_per_s:g} ev/s (ms)",
                "value": round(p99, 2),
                "unit": "ms",
                "baseline": f"p50 {self.latency.percentile(50):.2f} ms",
                "baseline_value": round(self.latency.percentile(50), 2),
                "ratio": round(p99 / self.latency.percentile(50), 2) if self.latency.percentile(50) else 0.0,
                "goal": "p99 < 5 ms",
                "met": 0 < p99 < 5.0,
            }
        )
        for replay in self.replays:
            n = replay["events"]
            raw = replay["raw_ordered_read"]["events_per_s"]
            got = replay["audit_replay"]["events_per_s"]
            row = _row(f"audit replay (default mode), {n:,} events", got, "raw ordered read", raw, goal=0.5)
            row["memory_flat"] = replay["memory_flat"]
            row["rss_peak_mb"] = replay["audit_replay"]["rss_peak_mb"]
            row["goal"] += " and flat RSS"
            row["met"] = row["met"] and replay["memory_flat"]
            rows.append(row)
            every = replay.get("audit_replay_every_signature")
            if every is not None:
                rows.append(
                    _row(
                        f"audit replay --every-signature, {n:,} events",
                        every["events_per_s"],
                        f"{cores} cores × Ed25519 verify",
                        verify * cores,
                        goal=0.8,
                    )
                )
            fold = replay.get("coordinator_fold")
            if fold is not None:
                rows.append(_row(f"coordinator fold, {n:,} events", fold["events_per_s"], "raw ordered read", raw))
                end_to_end = self.rates["end_to_end"].per_s
                rows.append(
                    _row(
                        f"coordinator fold, {n:,} events, against end to end",
                        fold["events_per_s"],
                        "end to end",
                        end_to_end,
                        goal=1.0,
                    )
                )
        return rows

    def to_json(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "server": self.server,
            "measurements": {name: rate.to_json() for name, rate in self.rates.items()},
            "latency": self.latency.to_json(),
            "replay": self.replays,
            "comparisons": self.comparisons(),
            **({"profile": self.profiles} if self.profiles else {}),
        }


def _row(name: str, value: float, baseline: str, base: float, *, goal: float | None = None) -> dict[str, Any]:
    ratio = value / base if base else 0.0
    return {
        "measurement": name,
        "value": round(value, 1),
        "unit": "ev/s",
        "baseline": baseline,
        "baseline_value": round(base, 1),
        "ratio": round(ratio, 3),
        "goal": f"≥ {goal:g}×" if goal is not None else "",
        "met": ratio >= goal if goal is not None else None,
    }


def memory_flat(replay: dict[str, Any], slack_mb: float = 8.0) -> bool:
    """RSS bounded: the late samples are no higher than the early ones (plus ``slack_mb``)."""
    samples: list[float] = replay["audit_replay"]["rss_samples_mb"]
    if len(samples) < 4:
        return True
    half = len(samples) // 2
    return max(samples[half:]) <= max(samples[:half]) + slack_mb


async def run_all(
    *,
    events: int = 2000,
    replay_events: tuple[int, ...] = (100_000,),
    latency_events: int | None = None,
    rate: float = 500.0,
    nats_url: str | None = None,
    progress: Callable[[str], None] = lambda _: None,
    profile: bool = False,
    seal_version: int = 2,
) -> BenchReport:
    """Every measurement in one run (see the module); the adapters seal with ``seal_version``."""
    latency_events = latency_events if latency_events is not None else max(1, min(events, 2000))
    # The adapters (BJ here, TJ in its child process) read it from the environment.
    previous_seal = os.environ.get("XREGION_SEAL_VERSION")
    os.environ["XREGION_SEAL_VERSION"] = str(seal_version)
    try:
        return await _run_all(events, replay_events, latency_events, rate, nats_url, progress, profile, seal_version)
    finally:
        if previous_seal is None:
            os.environ.pop("XREGION_SEAL_VERSION", None)
        else:
            os.environ["XREGION_SEAL_VERSION"] = previous_seal


async def _run_all(
    events: int,
    replay_events: tuple[int, ...],
    latency_events: int,
    rate: float,
    nats_url: str | None,
    progress: Callable[[str], None],
    profile: bool,
    seal_version: int,
) -> BenchReport:
    from xregion.auditor.bench import run_bench
    from xregion.ops.server import EmbeddedServer, ServerConfig, free_port

    with tempfile.TemporaryDirectory(prefix="xregion-bench-") as tmp:
        root = Path(tmp)
        server = None
        if nats_url is None:
            server = EmbeddedServer(ServerConfig(store_dir=root / "nats", port=free_port(), sync_always=True)).start()
            nats_url = server.url
            where = f"embedded nats-server {server.url}, file storage, sync_interval: always, no TLS/auth"
        else:
            where = f"external server {nats_url}"
        try:
            progress(f"raw nats-py baselines, {events:,} × 1 KB")
            rates = await raw_baselines(nats_url, events, root)
            progress("Ed25519 verification rate, one core")
            rates["ed25519_verify_1core"] = ed25519_verify_rate()
            progress(f"outbound and end to end, {events:,} events; latency {latency_events:,} at {rate:g}/s")
            server_pid = server.process.pid if server is not None and server.process is not None else None
            outbound, end_to_end, latency, profiles = await bus_paths(
                nats_url, root / "bus", events, latency_events, rate, profile=profile, server_pid=server_pid
            )
            rates["outbound"] = outbound
            rates["end_to_end"] = end_to_end
            report_profiles: dict[str, Any] = {name: p.to_json() for name, p in profiles.items()}
            replays = []
            for i, n in enumerate(replay_events):
                progress(f"audit replay vs raw ordered read{', coordinator fold' if i == 0 else ''}, {n:,} events")
                bench = await run_bench(
                    n,
                    nats_url=nats_url,
                    workdir=root / f"replay-{n}",
                    fold=i == 0,
                    profile=profile,
                    every_signature=i == 0,
                )
                result = bench.to_json()
                result["memory_flat"] = memory_flat(result)
                if bench.profile is not None:
                    report_profiles[f"audit_replay_{n}"] = result.pop("profile")
                replays.append(result)
            sync_ms = disk_sync_ms(root)
        finally:
            if server is not None:
                server.stop()
    return BenchReport(
        {**machine(), "disk_sync_ms": sync_ms, "seal_version": seal_version},
        where,
        rates,
        latency,
        replays,
        report_profiles,
    )


__all__ = ["BenchReport", "machine", "memory_flat", "run_all"]
