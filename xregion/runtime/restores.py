"""The mark a restore leaves on the event stream, and what each reader does about it.

A stream restored from a backup ends where the backup ended: the events acknowledged after
the backup are gone from it, although each origin's outbox still holds them. The operator's
restore (``xregion broker --restore``, ``xregion ops restore``) writes, in the same request
that restores the stream, two entries into the stream's metadata:

``xregion.restored_at``        when it was restored (ISO 8601, UTC): the restore's identity;
``xregion.restored_last_seq``  the last stream sequence the backup holds.

Every reader that remembers stream sequences compares the mark with the one it last
applied (:class:`RestoreMark`), and when it is new:

* a region's outbox makes its events acknowledged beyond ``restored_last_seq`` pending
  again, so its relay re-publishes them — same bytes, same ids and signatures, in origin
  order — before anything newer;
* a region's inbox records the events it handled beyond ``restored_last_seq`` as "handled,
  position unknown" (stream sequence 0), so their re-published copies are acknowledged as
  duplicates, never handled twice and never taken for a replay; the first copy's position is
  recorded (a further copy is a replay again);
* every origin re-publishes on its own, so a region's relay holds back an event answering
  one of those until the answered event's copy has come back (its position recorded): no
  answer precedes its cause in the stream (:mod:`xregion.runtime.relay`; at most
  ``XREGION_RESTORE_HOLD_S``);
* a projection whose position lies beyond ``restored_last_seq`` is folded again from the
  start (the coordinator's read model is derived; it then equals a rebuild).

The mark is part of the stream's configuration from the moment the stream exists again, so
no client can publish into a restored stream before the mark is there to read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RESTORED_AT = "xregion.restored_at"
RESTORED_LAST_SEQ = "xregion.restored_last_seq"


@dataclass(frozen=True)
class RestoreMark:
    """The restore the stream's metadata records."""

    restored_at: str
    last_seq: int

    @classmethod
    def of(cls, metadata: dict[str, Any] | None) -> RestoreMark | None:
        """The mark in a stream's metadata, or ``None`` (never restored by xregion, or a mark
        that does not parse: ignored, as a stream without one)."""
        if not metadata or RESTORED_AT not in metadata:
            return None
        try:
            last_seq = int(metadata[RESTORED_LAST_SEQ])
        except (KeyError, TypeError, ValueError):
            return None
        if last_seq < 0:
            return None
        return cls(str(metadata[RESTORED_AT]), last_seq)

    def metadata(self) -> dict[str, str]:
        return {RESTORED_AT: self.restored_at, RESTORED_LAST_SEQ: str(self.last_seq)}


@dataclass(frozen=True)
class RestoreRepair:
    """What a region's store did about a restore mark."""

    mark: RestoreMark
    republish: int = 0
    """Outbox events made pending again (acknowledged beyond the backup)."""
    first_originseq: int | None = None
    last_originseq: int | None = None
    inbox_unpositioned: int = 0
    """Handled events whose stream position was forgotten (their copies will be acked)."""

    def to_log(self) -> dict[str, Any]:
        return {
            "restored_at": self.mark.restored_at,
            "restored_last_seq": self.mark.last_seq,
            "republish": self.republish,
            "first_originseq": self.first_originseq,
            "last_originseq": self.last_originseq,
            "inbox_unpositioned": self.inbox_unpositioned,
        }
