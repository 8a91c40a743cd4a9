"""Benchmark: the auditor's replay against a raw nats-py ordered read of the same stream.

:func:`run_bench` starts an embedded nats-server (or uses ``nats_url``), fills the event stream
with ``events`` valid signed events (leads BJ→TJ: submitted, received, accepted, concluded,
so the lifecycle, receipt and deadline checks all run), then measures

* ``raw``: a nats-py ordered push consumer reading every message, doing nothing with it;
* ``replay``: :func:`~xregion.auditor.source.read_stream` + :meth:`Replayer.run_async` in
  the default mode (decoding, hash, key checks, chains, lifecycle, receipts, deadlines for
  every event; the signatures of chain heads, rotations and breaks), with ``workers``
  checking processes (default :func:`~xregion.auditor.checking.default_workers`), then the
  same with ``every_signature`` (every event's Ed25519 signature, in the workers),

each as events/s and resident memory (RSS sampled while it runs: a fixed bound means the
late samples are no higher than the early ones), and

* ``fold``: the coordinator's projection folding the same stream from the start (batched
  direct gets, every signature checked, lifecycle, deadlines, wait log; one SQLite
  transaction per batch), as :class:`~xregion.coordinator.feed.ProjectionFeed` does.

With ``profile`` the replay's main process is sampled (:mod:`xregion.bench.profile`) and
the CPU its worker processes spent is measured. The replay's RSS is the replaying
process's; its worker processes' is sampled apart (``workers_rss_peak_mb``: their sum, which
counts the pages they share more than once). ``xregion bench`` calls it; it is not a test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xregion.auditor.replay import Record, Replayer
from xregion.auditor.source import read_stream
from xregion.bench.common import LEAD, Measure, bench_roster, rss_bytes, synthetic_events
from xregion.bench.profile import Sampler, install, uninstall
from xregion.config import load_config
from xregion.ops.server import EmbeddedServer, ServerConfig, free_port
from xregion.runtime.settings import RuntimeSettings
from xregion.runtime.topology import event_stream_config
from xregion.signing import KeyRoster, Signer

__all__ = ["LEAD", "BenchResult", "Measure", "bench_roster", "rss_bytes", "run_bench", "synthetic_events"]


@dataclass
class BenchResult:
    events: int
    generate_s: float
    raw: Measure
    replay: Measure
    anomalies: int
    workers: int = 0
    workers_rss_samples: list[int] = field(default_factory=list)
    fold: Measure | None = None
    fold_anomalies: int = 0
    profile: dict[str, Any] | None = None
    deferred_checks: int = 0
    """Signatures the default mode checked (chain heads, rotations, breaks)."""
    every_signature: Measure | None = None
    every_signature_anomalies: int = 0

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "events": self.events,
            "generate_s": round(self.generate_s, 1),
            "raw_ordered_read": self.raw.to_json(),
            "audit_replay": self.replay.to_json(),
            "workers": self.workers,
            "workers_rss_peak_mb": round(max(self.workers_rss_samples, default=0) / (1024 * 1024), 1),
            "anomalies": self.anomalies,
        }
        doc["audit_replay"] = {
            **self.replay.to_json(),
            "mode": "default (signatures of chain heads, rotations and breaks)",
            "signatures_checked": self.deferred_checks,
        }
        if self.every_signature is not None:
            doc["audit_replay_every_signature"] = {
                **self.every_signature.to_json(),
                "anomalies": self.every_signature_anomalies,
            }
        if self.fold is not None:
            doc["coordinator_fold"] = {**self.fold.to_json(), "anomalies": self.fold_anomalies}
        if self.profile is not None:
            doc["profile"] = self.profile
        return doc


def workers_rss() -> int:
    """The summed RSS of this process's worker processes: its descendants started by
    ``multiprocessing`` (the forkserver and the workers it forks; not the nats-server).
    Linux ``/proc``; 0 elsewhere."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # pid (comm) state ppid ...: comm may hold spaces and parentheses
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {os.getpid()}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    total = 0
    for pid in found:
        with contextlib.suppress(OSError, ValueError, IndexError):
            if b"multiprocessing" in Path(f"/proc/{pid}/cmdline").read_bytes():
                total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return total


def workers_cpu_seconds() -> float:
    """CPU seconds spent so far by this process's ``multiprocessing`` descendants that are
    still running (Linux ``/proc``; 0 elsewhere)."""
    from xregion.bench.profile import process_cpu_seconds

    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(stat.parent.name)
            mine = pid != os.getpid() and b"multiprocessing" in stat.read_bytes()
            if mine and _descends_from(pid, os.getpid()):
                total += process_cpu_seconds(pid)
    return total


def _descends_from(pid: int, ancestor: int) -> bool:
    for _ in range(16):
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
        if pid == ancestor:
            return True
        if pid <= 1:
            return False
    return False


async def fold_rate(nc: Any, stream: str, roster: KeyRoster, events: int, workdir: Path) -> tuple[Measure, int]:
    """The coordinator's projection folding ``stream`` from its start, every signature
    checked; (events/s with RSS, anomalies recorded)."""
    from xregion.coordinator.feed import ProjectionFeed, live_roster_verifier
    from xregion.coordinator.projection import Projection
    from xregion.runtime.keyfiles import LiveRoster
    from xregion.runtime.stream_reader import StreamReader

    settings = RuntimeSettings()
    projection = Projection(
        workdir / "fold-projection.db", verify=live_roster_verifier(LiveRoster(roster), settings.revocation_grace_s)
    ).open()
    reader = await StreamReader(nc, stream, batch=256).open()
    fold = Measure(rss_start=rss_bytes())
    try:
        feed = ProjectionFeed(projection, reader)
        started = time.perf_counter()
        while projection.last_seq() < events:
            folded = await feed.fold_once()
            if folded == 0:
                break
            fold.events += folded
            if fold.events % max(1, events // 10) < folded:
                fold.rss_samples.append(rss_bytes())
        fold.seconds = time.perf_counter() - started
        anomalies = len(projection.anomalies())
    finally:
        await reader.close()
        projection.close()
    return fold, anomalies


async def run_bench(
    events: int = 100_000,
    nats_url: str | None = None,
    workdir: Path | None = None,
    workers: int | None = None,
    *,
    fold: bool = True,
    profile: bool = False,
    every_signature: bool = True,
) -> BenchResult:
    """Fill a stream with ``events`` events and measure raw read vs audit replay (see module).

    With ``nats_url`` the stream ``XREGION_BENCH`` (subjects ``xregion.v1.>``) is created there
    and deleted afterwards: use a scratch server, whose other streams do not hold those subjects."""
    import nats

    settings = RuntimeSettings(stream="XREGION_BENCH")
    with tempfile.TemporaryDirectory(prefix="xregion-bench-") as tmp:
        root = workdir or Path(tmp)
        server = None
        if nats_url is None:
            config = ServerConfig(store_dir=root / "nats", port=free_port(), sync_always=False)
            server = EmbeddedServer(config).start()
            nats_url = server.url
        try:
            nc = await nats.connect(nats_url)
            js = nc.jetstream()
            config_stream = event_stream_config(settings)
            config_stream.subjects = ["xregion.v1.>"]
            await js.add_stream(config_stream)
            signers = {p: Signer.generate(p) for p in ("BJ", "TJ")}
            started = time.perf_counter()
            pending = []
            for subject, body in synthetic_events(events, signers):
                pending.append(js.publish(subject, body, stream=settings.stream))
                if len(pending) >= 256:
                    await asyncio.gather(*pending)
                    pending = []
            await asyncio.gather(*pending)
            generate_s = time.perf_counter() - started

            raw = Measure(rss_start=rss_bytes())
            started = time.perf_counter()
            done = asyncio.get_running_loop().create_future()

            async def on_msg(msg: Any) -> None:
                raw.events += 1
                if raw.events % max(1, events // 10) == 0:
                    raw.rss_samples.append(rss_bytes())
                if raw.events >= events and not done.done():
                    done.set_result(None)

            sub = await js.subscribe("xregion.v1.>", stream=settings.stream, ordered_consumer=True, cb=on_msg)
            await asyncio.wait_for(done, timeout=max(60.0, events / 1000))
            raw.seconds = time.perf_counter() - started
            await sub.unsubscribe()

            replayer = Replayer(bench_roster(signers), load_config().regions, workers=workers, every_signature=False)
            replay = Measure(rss_start=rss_bytes())
            workers_rss_samples: list[int] = []

            if profile:
                install()
            sampler = Sampler().start() if profile else None
            workers_cpu: list[float] = []

            async def sampled(records: AsyncIterable[Record]) -> AsyncIterator[Record]:
                # One wrapper (each async generator layer costs the replaying process per event).
                every, cpu_every = max(1, events // 10), max(1, events // 20)
                async for record in records:
                    replay.events += 1
                    if replay.events % every == 0:
                        replay.rss_samples.append(rss_bytes())
                        workers_rss_samples.append(workers_rss())
                    if profile and replay.events % cpu_every == 0:
                        workers_cpu.append(workers_cpu_seconds())  # before the workers end
                    yield record

            started = time.perf_counter()
            result = await replayer.run_async(sampled(read_stream(js, settings.stream)))
            replay.seconds = time.perf_counter() - started
            profiled: dict[str, Any] | None = None
            if sampler is not None:
                main = sampler.stop().per_event(events)
                uninstall()
                spent = max(workers_cpu, default=0.0)
                profiled = {
                    "auditor (main process)": main,
                    "workers_cpu_us_per_event": round(spent / events * 1e6, 1),
                    "note": "workers' CPU read while they ran (the last readings before they ended)",
                }
            bench = BenchResult(
                events, generate_s, raw, replay, len(result.anomalies), replayer.workers, workers_rss_samples
            )
            bench.profile = profiled
            bench.deferred_checks = replayer.deferred_checks
            if every_signature:  # the exhaustive mode: every event's signature, in the workers
                exhaustive = Replayer(bench_roster(signers), load_config().regions, workers=workers)
                bench.every_signature = Measure(rss_start=rss_bytes())
                started = time.perf_counter()
                checked = await exhaustive.run_async(read_stream(js, settings.stream))
                bench.every_signature.seconds = time.perf_counter() - started
                bench.every_signature.events = checked.events
                bench.every_signature_anomalies = len(checked.anomalies)
            if fold:
                bench.fold, bench.fold_anomalies = await fold_rate(
                    nc, settings.stream, bench_roster(signers), events, root
                )
            if server is None:  # someone else's server: leave it as it was
                await js.delete_stream(settings.stream)
            await nc.close()
            return bench
        finally:
            if server is not None:
                server.stop()


def main() -> None:  # pragma: no cover - manual benchmark
    import json
    import sys

    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else None
    print(json.dumps(asyncio.run(run_bench(count, workers=workers)).to_json(), indent=2))


if __name__ == "__main__":  # pragma: no cover
    main()
