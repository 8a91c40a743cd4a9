"""Cross-witnessed checkpoints: a region's signed statement of the origin chain heads it has seen.

Every region's adapter periodically publishes, on ``xregion.checkpoint.<REGION>``, a
checkpoint naming, for every origin, the highest ``originseq`` it received (or, for its own
chain, published) and that event's hash (:func:`xregion.signing.event_hash`)::

    {"kind": "checkpoint", "version": 1, "region": "TJ", "time": "2026-11-25T06:30:00.000000Z",
     "heads": {"BJ": [12, "sha256:..."], "TJ": [9, "sha256:..."]}, "keyid": "TJ:...", "signature": "..."}

It is signed like an event (Ed25519 over RFC 8785 of everything but ``signature``). An auditor
checks that every attested (origin, seq, hash) is in the stream with exactly that hash, and
that no two regions attest different hashes for the same position: neither one region nor
the bus operator can then remove, rewrite or fork history without someone's signed word
contradicting it. Pure data: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from xregion.chain import ChainHead
from xregion.envelope import HASH, format_time
from xregion.errors import SchemaInvalid
from xregion.regions import PARTY_CODE
from xregion.signing import KeyRoster, Signer, canonical
from xregion.subjects import CHECKPOINT_ROOT

KIND = "checkpoint"
VERSION = 1


def checkpoint_subject(region: str) -> str:
    """Where ``region`` publishes its checkpoints: ``xregion.checkpoint.TJ``."""
    return f"{CHECKPOINT_ROOT}.{region}"


@dataclass(frozen=True)
class Checkpoint:
    """A verified (or to be signed) checkpoint of ``region`` at ``time``."""

    region: str
    time: datetime
    heads: Mapping[str, ChainHead]
    wire: Mapping[str, Any] | None = None

    def unsigned(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "version": VERSION,
            "region": self.region,
            "time": format_time(self.time),
            "heads": {o: [h.seq, h.hash] for o, h in sorted(self.heads.items())},
        }


def sign_checkpoint(signer: Signer, heads: Mapping[str, ChainHead], at: datetime) -> bytes:
    """The wire bytes (canonical JSON) of ``signer``'s party's checkpoint of ``heads``."""
    return canonical(signer.sign(Checkpoint(signer.party, at, heads).unsigned()))


def parse_checkpoint(raw: bytes) -> Checkpoint:
    """Structure only (no signature check): raise :class:`SchemaInvalid` naming the fault."""
    try:
        wire = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise SchemaInvalid(f"checkpoint is not UTF-8 JSON: {exc}", errors=[]) from None
    if not isinstance(wire, dict) or wire.get("kind") != KIND or wire.get("version") != VERSION:
        raise SchemaInvalid("not a version-1 checkpoint", errors=[{"field": "kind", "error": "expected checkpoint"}])
    region, heads = wire.get("region"), wire.get("heads")
    if not isinstance(region, str) or not PARTY_CODE.match(region):
        raise SchemaInvalid("checkpoint region is not a party code", errors=[{"field": "region", "error": "bad"}])
    if not isinstance(heads, dict):
        raise SchemaInvalid("checkpoint heads is not an object", errors=[{"field": "heads", "error": "bad"}])
    parsed: dict[str, ChainHead] = {}
    for origin, head in heads.items():
        ok = (
            isinstance(head, list)
            and len(head) == 2
            and isinstance(head[0], int)
            and not isinstance(head[0], bool)
            and head[0] >= 1
            and isinstance(head[1], str)
            and HASH.match(head[1])
        )
        if not ok:
            raise SchemaInvalid(
                f"checkpoint head of {origin} is not [seq, hash]", errors=[{"field": f"heads.{origin}"}]
            )
        parsed[origin] = ChainHead(head[0], head[1])
    try:
        time = datetime.fromisoformat(str(wire.get("time", "")).replace("Z", "+00:00"))
    except ValueError:
        raise SchemaInvalid("checkpoint time is not RFC 3339", errors=[{"field": "time", "error": "bad"}]) from None
    return Checkpoint(region, time, parsed, wire)


def verify_checkpoint(raw: bytes, roster: KeyRoster) -> Checkpoint:
    """Parse and verify a checkpoint's signature (key of its region, valid at its time)."""
    checkpoint = parse_checkpoint(raw)
    assert checkpoint.wire is not None
    roster.verify(checkpoint.wire, checkpoint.region, checkpoint.time)
    return checkpoint
