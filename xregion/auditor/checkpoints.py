"""The auditor's side of cross-witnessed checkpoints (:mod:`xregion.checkpoint`).

:func:`collect` verifies every stored checkpoint (signature of its region's key valid at
its time; subject naming the same region) and folds them into *attestations*: for each
origin and sequence, the hash the checkpoints attest and who attests it. Two regions
attesting different hashes at the same position is a fork (``checkpoint_fork``): someone
showed them different histories. The :class:`~xregion.auditor.replay.Replayer` then checks
the attestations against the stream: an attested event the stream lacks is
``event_removed``, another event in its place ``checkpoint_mismatch``.

Memory grows with the number of distinct attested positions (checkpoints × origins, far
fewer than events), not with the events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from xregion.auditor.replay import CHECKPOINT_FORK, CHECKPOINT_INVALID, Anomaly, Attestation, Record
from xregion.checkpoint import checkpoint_subject, verify_checkpoint
from xregion.errors import XRegionError
from xregion.note import is_tlog_message
from xregion.signing import KeyRoster


@dataclass
class CheckpointSet:
    attestations: dict[str, dict[int, dict[str, Attestation]]] = field(default_factory=dict)
    """origin -> seq -> attested hash -> who attests it (more than one hash: a fork)."""
    anomalies: list[Anomaly] = field(default_factory=list)
    count: int = 0
    regions: set[str] = field(default_factory=set)


def collect(records: Iterable[Record], roster: KeyRoster) -> CheckpointSet:
    """Verify stored checkpoints and fold them into attestations (see the module doc)."""
    out = CheckpointSet()
    for record in records:
        if is_tlog_message(record.raw):
            continue  # the verifiable log's checkpoints and cosignatures (xregion audit log verify)
        try:
            checkpoint = verify_checkpoint(record.raw, roster)
        except XRegionError as exc:
            out.anomalies.append(
                Anomaly(
                    CHECKPOINT_INVALID if exc.code == "schema_invalid" else exc.code,
                    f"checkpoint on {record.subject or '?'}: {exc.message}",
                    where=record.where or f"checkpoint message {record.seq}",
                    evidence=dict(exc.details),
                )
            )
            continue
        if record.subject and record.subject != checkpoint_subject(checkpoint.region):
            out.anomalies.append(
                Anomaly(
                    CHECKPOINT_INVALID,
                    f"checkpoint of {checkpoint.region} stored on {record.subject}",
                    where=record.where or f"checkpoint message {record.seq}",
                )
            )
            continue
        out.count += 1
        out.regions.add(checkpoint.region)
        for origin, head in checkpoint.heads.items():
            claims = out.attestations.setdefault(origin, {}).setdefault(head.seq, {})
            others = {h: a for h, a in claims.items() if h != head.hash}
            claim = claims.setdefault(head.hash, Attestation(head.hash, [], []))
            if checkpoint.region not in claim.regions:
                claim.regions.append(checkpoint.region)
            claim.checkpoint_seqs.append(record.seq)
            for other in others.values():
                out.anomalies.append(
                    Anomaly(
                        CHECKPOINT_FORK,
                        f"{checkpoint.region} attests {origin} event {head.seq} as {head.hash}, but "
                        f"{', '.join(other.regions)} attested {other.hash}: they were shown different histories",
                        where=record.where or f"checkpoint message {record.seq}",
                        origin=origin,
                        evidence={
                            "origin": origin,
                            "seq": head.seq,
                            "hashes": {checkpoint.region: head.hash, ",".join(other.regions): other.hash},
                            "checkpoint_seqs": [*other.checkpoint_seqs, record.seq],
                        },
                    )
                )
    return out
