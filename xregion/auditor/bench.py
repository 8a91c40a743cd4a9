"""Benchmark: the auditor's replay against a raw nats-py ordered read of the same stream.

:func:`run_bench` starts an embedded nats-server (or uses ``nats_url``), fills the event stream
with ``events`` valid signed events (leads BJ→TJ: submitted, received, accepted, concluded,
so the lifecycle, receipt and deadline checks all run), then measures

* ``raw``: a nats-py ordered push consumer reading every message, doing nothing with it;
* ``replay``: :func:`~xregion.auditor.source.read_stream` + :class:`Replayer` (signature,
  chains, lifecycle, receipts, deadlines for every event),

each as events/s and resident memory (RSS sampled while it runs: a fixed bound means the
late samples are no higher than the early ones). ``xregion bench`` calls it; it is not a test.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xregion.auditor.replay import Replayer
from xregion.auditor.source import read_stream
from xregion.bench.common import LEAD, Measure, bench_roster, rss_bytes, synthetic_events
from xregion.config import load_config
from xregion.runtime.server import EmbeddedServer, ServerConfig, free_port
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

    def to_json(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "generate_s": round(self.generate_s, 1),
            "raw_ordered_read": self.raw.to_json(),
            "audit_replay": self.replay.to_json(),
            "anomalies": self.anomalies,
        }


async def run_bench(events: int = 100_000, nats_url: str | None = None, workdir: Path | None = None) -> BenchResult:
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

            replayer = Replayer(bench_roster(signers), load_config().regions)
            replay = Measure(rss_start=rss_bytes())
            started = time.perf_counter()
            async for record in read_stream(js, settings.stream):
                replayer.feed(record)
                replay.events += 1
                if replay.events % max(1, events // 10) == 0:
                    replay.rss_samples.append(rss_bytes())
            result = replayer.finish()
            replay.seconds = time.perf_counter() - started
            if server is None:  # someone else's server: leave it as it was
                await js.delete_stream(settings.stream)
            await nc.close()
            return BenchResult(events, generate_s, raw, replay, len(result.anomalies))
        finally:
            if server is not None:
                server.stop()


def main() -> None:  # pragma: no cover - manual benchmark
    import json
    import sys

    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    print(json.dumps(asyncio.run(run_bench(count)).to_json(), indent=2))


if __name__ == "__main__":  # pragma: no cover
    main()
