"""Hash chains: every region's events form gap-free, hash-linked sequences.

Each event is in two chains of its sender:

* the **origin chain** — all of the sender's events: ``originseq`` (1, 2, 3, ...) and
  ``prevhash``, the hash (:func:`xregion.signing.event_hash`) of its previous event. Only
  parties that see everything (auditor, coordinator) can follow it.
* the **link chain** — the sender's events to one addressee (``BJ→TJ``), or its
  broadcasts (``BJ→ALL``): ``linkseq`` and ``linkprev``. Every addressee sees all of its
  links completely, so an adapter verifies those.

A verifier that follows a chain detects a dropped event (gap), two events swapped (gap,
then replay), an altered or injected event (fork: the next event's previous hash no longer
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
    """The last verified event of one chain."""

    seq: int
    hash: str


GENESIS = ChainHead(0, GENESIS_HASH)

ORIGIN = ("originseq", "prevhash")
LINK = ("linkseq", "linkprev")


def link_key(sender: str, addressee: str, version: int = 1) -> str:
    """The name of a link chain: ``BJ>TJ``, ``BJ>ALL``; ``BJ>TJ@v2`` on v2 subjects.

    Links are per contract version because a consumer that still reads only v1 subjects
    during a migration never sees v2 events and must not see their absence as gaps.
    """
    return f"{sender}>{addressee}" if version == 1 else f"{sender}>{addressee}@v{version}"


class ChainTracker:
    """Follows chains by name (an origin code, or a :func:`link_key`).

    :meth:`accept` checks one event and advances the head. ``heads`` may be seeded (from
    storage after a restart, or from a checkpoint).
    """

    def __init__(self, heads: Mapping[str, ChainHead] | None = None) -> None:
        self.heads: dict[str, ChainHead] = dict(heads or {})

    def head(self, chain: str) -> ChainHead:
        return self.heads.get(chain, GENESIS)

    def check(self, chain: str, seq: int, prevhash: str, event_id: str = "?") -> None:
        """Raise if an event ``(seq, prevhash)`` is not the next link of ``chain``."""
        head = self.head(chain)
        expected = head.seq + 1
        if seq < expected:
            raise ChainReplay(
                f"{chain} event {event_id} has sequence {seq}, but chain {chain} is "
                f"already at {head.seq}: replayed or reordered",
                chain=chain,
                origin=chain.split(">")[0],
                seq=seq,
                expected=expected,
                event_id=event_id,
            )
        if seq > expected:
            raise ChainGap(
                f"{chain} event {event_id} has sequence {seq}, expected {expected}: "
                f"{seq - expected} event(s) of {chain} missing or reordered",
                chain=chain,
                origin=chain.split(">")[0],
                seq=seq,
                expected=expected,
                event_id=event_id,
            )
        if prevhash != head.hash:
            raise ChainFork(
                f"{chain} event {event_id} (sequence {seq}) links to {prevhash}, but "
                f"event {head.seq} of {chain} hashes to {head.hash}: history was altered",
                chain=chain,
                origin=chain.split(">")[0],
                seq=seq,
                expected_prevhash=head.hash,
                prevhash=prevhash,
                event_id=event_id,
            )

    def accept(
        self, event: Mapping[str, Any], chain: str, fields: tuple[str, str] = ORIGIN, *, digest: str | None = None
    ) -> ChainHead:
        """Check ``event`` (a signed wire dict) against ``chain`` and make it the new head.

        ``fields`` names the attributes: :data:`ORIGIN` (``originseq``/``prevhash``) or
        :data:`LINK` (``linkseq``/``linkprev``). ``digest``: the event's hash when the caller
        has it (from its canonical bytes, :func:`~xregion.signing.hash_of_canonical`).
        """
        seq, prevhash = event.get(fields[0]), event.get(fields[1])
        if not isinstance(seq, int) or not isinstance(prevhash, str):
            raise ChainGap(f"{chain} event lacks {fields[0]}/{fields[1]}", chain=chain, origin=chain.split(">")[0])
        self.check(chain, seq, prevhash, str(event.get("id", "?")))
        head = ChainHead(seq, digest if digest is not None else event_hash(event))
        self.heads[chain] = head
        return head

    def accept_link(self, event: Mapping[str, Any], *, digest: str | None = None) -> tuple[str, ChainHead]:
        """Check ``event`` against its link chain (sender → addressee)."""
        source, addressee = str(event.get("source", "")), str(event.get("addressee", ""))
        sender = source.split(":")[2] if source.count(":") >= 3 else source
        version = str(event.get("type", "")).rsplit(".v", 1)[-1]
        chain = link_key(sender, addressee, int(version) if version.isdigit() else 1)
        return chain, self.accept(event, chain, LINK, digest=digest)
