"""Helpers shared by the benchmarks (:mod:`xregion.bench.runner`, :mod:`xregion.auditor.bench`):
resident-memory sampling, a measurement record, and a generator of valid signed events."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from xregion.chain import GENESIS
from xregion.codec import encode
from xregion.compose import compose
from xregion.contracts.catalog import CATALOG
from xregion.examples import PAYLOADS
from xregion.ids import new_event_id, new_referral_id
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
