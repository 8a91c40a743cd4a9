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
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from xregion.auditor.replay import Replayer
from xregion.auditor.source import read_stream
from xregion.chain import GENESIS
from xregion.codec import encode
from xregion.compose import compose
from xregion.config import load_config
from xregion.contracts.catalog import CATALOG
from xregion.examples import PAYLOADS
from xregion.ids import new_event_id, new_referral_id
from xregion.runtime.server import EmbeddedServer, ServerConfig, free_port
from xregion.runtime.settings import RuntimeSettings
from xregion.runtime.topology import event_stream_config
from xregion.signing import KeyRoster, RosterKey, Signer, event_hash
from xregion.subjects import build as build_subject

LEAD = ("lead.submitted", "lead.received", "lead.accepted", "lead.concluded")


def rss_bytes() -> int:
    """The process's resident set size now (Linux ``/proc/self/statm``; 0 elsewhere)."""
    try:
        import os

        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


@dataclass
class Measure:
    events: int = 0
    seconds: float = 0.0
    rss_start: int = 0
    rss_samples: list[int] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    @property
    def rss_peak(self) -> int:
        return max([self.rss_start, *self.rss_samples])

    def to_json(self) -> dict[str, Any]:
        mb = 1024 * 1024
        return {
            "events": self.events,
            "seconds": round(self.seconds, 3),
            "events_per_s": round(self.rate, 1),
            "rss_start_mb": round(self.rss_start / mb, 1),
            "rss_peak_mb": round(self.rss_peak / mb, 1),
            "rss_samples_mb": [round(s / mb, 1) for s in self.rss_samples],
        }


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


def synthetic_events(count: int, signers: dict[str, Signer]) -> Iterator[tuple[str, bytes]]:
    """``count`` signed events (subject, bytes): leads BJ→TJ through their whole lifecycle."""
    templates = {
        name: compose(
            CATALOG.get(name.split(".")[0], name.split(".")[1]),
            PAYLOADS[name],
            sender="BJ" if name == "lead.submitted" else "TJ",
            agency="amr",
            to="TJ" if name == "lead.submitted" else "BJ",
            referral_id="BJ-01a21164-abe0-7a12-9b34-56789abcdef0",
        )
        for name in LEAD
    }
    heads = {"BJ": GENESIS, "TJ": GENESIS}
    made, previous, rid = 0, "", ""
    while made < count:
        for i, name in enumerate(LEAD):
            if made >= count:
                return
            sender, to = ("BJ", "TJ") if i == 0 else ("TJ", "BJ")
            if i == 0:
                rid = new_referral_id("BJ")
            now = datetime.now(UTC)
            event = dict(templates[name], id=new_event_id(), subject=rid, correlationid=rid, time=_time(now))
            if i == 0:
                event["answerby"] = (now.date() + timedelta(days=10)).isoformat()
                event.pop("causationid", None)
            else:
                event["causationid"] = previous
            head = heads[sender]
            # One link per origin here (BJ→TJ, TJ→BJ): link and origin chains coincide.
            event.update(originseq=head.seq + 1, prevhash=head.hash, linkseq=head.seq + 1, linkprev=head.hash)
            signed = signers[sender].sign(event)
            heads[sender] = type(head)(head.seq + 1, event_hash(signed))
            previous = signed["id"]
            made += 1
            family, kind = name.split(".")
            yield build_subject(family, kind, sender, to), encode(signed)


def _time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def bench_roster(signers: dict[str, Signer]) -> KeyRoster:
    valid_from = datetime.combine(date.today() - timedelta(days=1), datetime.min.time(), UTC)
    return KeyRoster(RosterKey(s.key_id, s.party, bytes(s.verify_key), valid_from=valid_from) for s in signers.values())


async def run_bench(events: int = 100_000, nats_url: str | None = None, workdir: Path | None = None) -> BenchResult:
    """Fill a stream with ``events`` events and measure raw read vs audit replay (see module)."""
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
