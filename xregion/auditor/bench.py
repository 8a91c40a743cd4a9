"""Benchmark: the auditor's replay against a raw nats-py ordered read of the same stream.

:func:`run_bench` starts an embedded nats-server (or uses ``nats_url``), fills the event stream
with ``events`` valid signed events (leads BJ→TJ: submitted, received, accepted, concluded,
so the lifecycle, receipt and deadline checks all run), then measures

* ``raw``: a nats-py ordered push consumer reading every message, doing nothing with it;
* ``replay``: :func:`~xregion.auditor.source.read_stream` + :meth:`Replayer.run_async`
  (signature, chains, lifecycle, receipts, deadlines for every event), with ``workers``
  checking processes (default :func:`~xregion.auditor.checking.default_workers`),

each as events/s and resident memory (RSS sampled while it runs: a fixed bound means the
late samples are no higher than the early ones). The replay's RSS is the replaying
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
from xregion.config import load_config
from xregion.ops.server import EmbeddedServer, ServerConfig, free_port
from xregion.runtime.settings import RuntimeSettings
from xregion.runtime.topology import event_stream_config
from xregion.signing import Signer

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

    def to_json(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "generate_s": round(self.generate_s, 1),
            "raw_ordered_read": self.raw.to_json(),
            "audit_replay": self.replay.to_json(),
            "workers": self.workers,
            "workers_rss_peak_mb": round(max(self.workers_rss_samples, default=0) / (1024 * 1024), 1),
            "anomalies": self.anomalies,
        }


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


async def run_bench(
    events: int = 100_000, nats_url: str | None = None, workdir: Path | None = None, workers: int | None = None
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

            replayer = Replayer(bench_roster(signers), load_config().regions, workers=workers)
            replay = Measure(rss_start=rss_bytes())
            workers_rss_samples: list[int] = []

            async def sampled(records: AsyncIterable[Record]) -> AsyncIterator[Record]:
                async for record in records:
                    replay.events += 1
                    if replay.events % max(1, events // 10) == 0:
                        replay.rss_samples.append(rss_bytes())
                        workers_rss_samples.append(workers_rss())
                    yield record

            started = time.perf_counter()
            result = await replayer.run_async(sampled(read_stream(js, settings.stream)))
            replay.seconds = time.perf_counter() - started
            if server is None:  # someone else's server: leave it as it was
                await js.delete_stream(settings.stream)
            await nc.close()
            return BenchResult(
                events, generate_s, raw, replay, len(result.anomalies), replayer.workers, workers_rss_samples
            )
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
