"""Per-origin hash chains: every region's events form one gap-free, hash-linked sequence.

Each event carries ``originseq`` (1, 2, 3, ... per sending region) and ``prevhash``, the
hash (:func:`xregion.signing.event_hash`) of the same region's previous event. A verifier
that follows the chains detects a dropped event (gap), two events swapped (gap, then
replay), an altered or injected event (fork: the next event's ``prevhash`` no longer
matches) and a re-sent old event (replay).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from xregion.envelope import GENESIS_HASH
from xregion.errors import ChainFork, ChainGap, ChainReplay
from xregion.signing import event_hash


@dataclass(frozen=True)
class ChainHead:
    """The last verified event of one origin."""

    seq: int
    hash: str


GENESIS = ChainHead(0, GENESIS_HASH)


class ChainTracker:
    """Follows every origin's chain. :meth:`accept` checks one event and advances the head.

    ``heads`` may be seeded (e.g. from a checkpoint, or from storage after a restart).
    """

    def __init__(self, heads: Mapping[str, ChainHead] | None = None) -> None:
        self.heads: dict[str, ChainHead] = dict(heads or {})

    def head(self, origin: str) -> ChainHead:
        return self.heads.get(origin, GENESIS)

    def check(self, origin: str, seq: int, prevhash: str, event_id: str = "?") -> None:
        """Raise if an event ``(seq, prevhash)`` of ``origin`` is not the next link."""
        head = self.head(origin)
        expected = head.seq + 1
        if seq < expected:
            raise ChainReplay(
                f"{origin} event {event_id} has originseq {seq}, but {origin}'s chain is "
                f"already at {head.seq}: replayed or reordered",
                origin=origin, seq=seq, expected=expected, event_id=event_id,
            )
        if seq > expected:
            raise ChainGap(
                f"{origin} event {event_id} has originseq {seq}, expected {expected}: "
                f"{seq - expected} event(s) of {origin} missing or reordered",
                origin=origin, seq=seq, expected=expected, event_id=event_id,
            )
        if prevhash != head.hash:
            raise ChainFork(
                f"{origin} event {event_id} (originseq {seq}) links to {prevhash}, but "
                f"{origin}'s event {head.seq} hashes to {head.hash}: history was altered",
                origin=origin, seq=seq, expected_prevhash=head.hash, prevhash=prevhash,
                event_id=event_id,
            )

    def accept(self, event: Mapping[str, Any], origin: str) -> ChainHead:
        """Check ``event`` (a signed wire dict) of ``origin`` and make it the new head."""
        seq, prevhash = event.get("originseq"), event.get("prevhash")
        if not isinstance(seq, int) or not isinstance(prevhash, str):
            raise ChainGap(f"{origin} event lacks originseq/prevhash", origin=origin)
        self.check(origin, seq, prevhash, str(event.get("id", "?")))
        head = ChainHead(seq, event_hash(event))
        self.heads[origin] = head
        return head
