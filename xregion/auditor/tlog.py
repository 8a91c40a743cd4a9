"""The verifiable log's store: a Merkle tree over the event stream, maintained incrementally.

One SQLite file (``xregion audit log run --store``) holds, for the stream it follows:

``leaves``        one row per stored message, in stream order: leaf index, stream sequence,
                  when it reached the stream, subject, event id and referral id (when the
                  bytes are an event) and the leaf hash ``SHA-256(0x00 || bytes)``;
``nodes``         every perfect subtree above the leaves (level ≥ 1), written as leaves
                  arrive: a proof is O(log n) indexed reads, nothing is recomputed;
``checkpoints``   every checkpoint the log signed (C2SP signed note, :mod:`xregion.note`);
``cosignatures``  the witnesses' cosignature lines per checkpoint;
``witness_heads`` the largest size each witness has cosigned (of any checkpoint with this
                  origin, even one this store does not hold): the next checkpoint carries a
                  consistency proof from it;
``timestamps``    the RFC 3161 response per time-stamped checkpoint (:mod:`xregion.timestamps`);
``tsa_outages``   every period the time-stamping authority could not be reached: when,
                  how many attempts, the last error, and the checkpoint whose token finally
                  covered it;
``meta``          origin, stream, the position read in the dead-letter stream (cosignatures).

The leaf is a message's original bytes as the stream stores them, so anyone holding an
event can recompute its leaf hash. Nothing is ever updated in place: a rewritten store
shows as checkpoints that are no longer consistent (:class:`~xregion.merkle.LogInconsistent`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from xregion.errors import ConfigError
from xregion.merkle import (
    EMPTY_ROOT,
    LogInconsistent,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    split,
    verify_consistency,
)
from xregion.note import Checkpoint, NoteSignature, SignedNote, sign_note
from xregion.signing import Signer

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS leaves (
    idx         INTEGER PRIMARY KEY,
    stream_seq  INTEGER NOT NULL UNIQUE,
    stored_at   TEXT NOT NULL,
    subject     TEXT NOT NULL,
    event_id    TEXT,
    referral_id TEXT,
    hash        BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS leaves_event ON leaves (event_id);
CREATE INDEX IF NOT EXISTS leaves_referral ON leaves (referral_id);
CREATE TABLE IF NOT EXISTS nodes (
    level INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    hash  BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    size      INTEGER PRIMARY KEY,
    root      BLOB NOT NULL,
    note      TEXT NOT NULL,
    made_at   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cosignatures (
    size        INTEGER NOT NULL,
    witness     TEXT NOT NULL,
    line        TEXT NOT NULL,
    cosigned_at TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (size, witness)
);
CREATE TABLE IF NOT EXISTS witness_heads (
    witness TEXT PRIMARY KEY,
    size    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS timestamps (
    size        INTEGER PRIMARY KEY,
    response    BLOB NOT NULL,
    gen_time    TEXT NOT NULL,
    hash_alg    TEXT NOT NULL,
    tsa_url     TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tsa_outages (
    started_at  TEXT PRIMARY KEY,
    ended_at    TEXT,
    attempts    INTEGER NOT NULL,
    last_error  TEXT NOT NULL,
    first_size  INTEGER,
    covered_by  INTEGER
);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True)
class Leaf:
    """One logged message."""

    index: int
    stream_seq: int
    stored_at: datetime
    subject: str
    event_id: str | None
    referral_id: str | None
    hash: bytes


@dataclass(frozen=True)
class StoredCheckpoint:
    size: int
    root: bytes
    note: SignedNote
    made_at: datetime


@dataclass(frozen=True)
class StoredTimestamp:
    size: int
    response: bytes
    gen_time: datetime
    hash_alg: str
    tsa_url: str
    received_at: datetime


@dataclass(frozen=True)
class Outage:
    started_at: datetime
    ended_at: datetime | None
    attempts: int
    last_error: str
    first_size: int | None
    covered_by: int | None


def _event_keys(raw: bytes) -> tuple[str | None, str | None]:
    """The event id and referral id a message's bytes claim, if it is an event at all."""
    try:
        wire = json.loads(raw)
    except (ValueError, RecursionError):
        return None, None
    if not isinstance(wire, dict):
        return None, None
    eid, rid = wire.get("id"), wire.get("subject")
    return (eid if isinstance(eid, str) else None), (rid if isinstance(rid, str) else None)


class TransparencyLog:
    """The Merkle tree of one event stream, its checkpoints, cosignatures and time-stamps."""

    def __init__(self, path: Path, *, origin: str, stream: str) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        self.origin = origin
        self.stream = stream
        with self._tx():
            for key, value in (("origin", origin), ("stream", stream)):
                row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
                if row is None:
                    self.db.execute("INSERT INTO meta VALUES (?, ?)", (key, value))
                elif row[0] != value:
                    raise ConfigError(f"log store {path} is the log of {key} {row[0]!r}, not {value!r}")
        row = self.db.execute("SELECT COUNT(*), MAX(stream_seq) FROM leaves").fetchone()
        self._size = int(row[0])
        self._position = int(row[1] or 0)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _tx(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- the tree -------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Leaves in the tree."""
        return self._size

    @property
    def position(self) -> int:
        """The stream sequence of the last logged message (0: none)."""
        return self._position

    def append(self, records: Iterable[tuple[int, datetime, str, bytes]]) -> list[int]:
        """Log ``(stream seq, stored at, subject, bytes)`` messages, in stream order, in one
        transaction; a message at or before :attr:`position` is skipped. Returns the stream
        sequences that were skipped over (the stream no longer held them when read)."""
        gaps: list[int] = []
        with self._tx():
            size, position = self._size, self._position
            for seq, stored_at, subject, raw in records:
                if seq <= position:
                    continue
                if position and seq != position + 1:
                    gaps.extend(range(position + 1, seq))
                event_id, referral_id = _event_keys(raw)
                digest = leaf_hash(raw)
                self.db.execute(
                    "INSERT INTO leaves VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (size, seq, stored_at.isoformat(), subject, event_id, referral_id, digest),
                )
                level, index, right = 0, size, digest
                while index & 1:  # a completed pair: write the parent, and on up
                    left = self._node(level, index - 1)
                    right = node_hash(left, right)
                    level, index = level + 1, index >> 1
                    self.db.execute("INSERT INTO nodes VALUES (?, ?, ?)", (level, index, right))
                size, position = size + 1, seq
            self._size, self._position = size, position
        return gaps

    def _node(self, level: int, index: int) -> bytes:
        if level == 0:
            row = self.db.execute("SELECT hash FROM leaves WHERE idx = ?", (index,)).fetchone()
        else:
            row = self.db.execute("SELECT hash FROM nodes WHERE level = ? AND idx = ?", (level, index)).fetchone()
        if row is None:
            raise LookupError(f"no node at level {level}, index {index}")
        return bytes(row[0])

    def subtree(self, start: int, end: int) -> bytes:
        """The root of leaves ``[start, end)`` from the stored perfect subtrees."""
        if end > self._size or start >= end:
            raise ValueError(f"no subtree [{start}, {end}) in a tree of {self._size}")
        n = end - start
        if n & (n - 1) == 0 and start % n == 0:
            return self._node(n.bit_length() - 1, start // n)
        k = split(n)
        return node_hash(self.subtree(start, start + k), self.subtree(start + k, end))

    def root(self, size: int | None = None) -> bytes:
        size = self._size if size is None else size
        return EMPTY_ROOT if size == 0 else self.subtree(0, size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return inclusion_proof(self, index, size)

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        return consistency_proof(self, old, new)

    # --- leaves -------------------------------------------------------------------------

    _LEAF = "SELECT idx, stream_seq, stored_at, subject, event_id, referral_id, hash FROM leaves"

    @staticmethod
    def _leaf(row: tuple[object, ...]) -> Leaf:
        return Leaf(
            int(row[0]),  # type: ignore[call-overload]
            int(row[1]),  # type: ignore[call-overload]
            datetime.fromisoformat(str(row[2])),
            str(row[3]),
            row[4] if isinstance(row[4], str) else None,
            row[5] if isinstance(row[5], str) else None,
            bytes(row[6]),  # type: ignore[call-overload]
        )

    def leaf(self, index: int) -> Leaf:
        row = self.db.execute(f"{self._LEAF} WHERE idx = ?", (index,)).fetchone()
        if row is None:
            raise LookupError(f"no leaf {index}")
        return self._leaf(row)

    def leaves(self, start: int = 0, end: int | None = None) -> Iterator[Leaf]:
        rows = self.db.execute(f"{self._LEAF} WHERE idx >= ? AND idx < ? ORDER BY idx", (start, end or self._size))
        for row in rows:
            yield self._leaf(row)

    def leaves_of_event(self, event_id: str) -> list[Leaf]:
        rows = self.db.execute(f"{self._LEAF} WHERE event_id = ? ORDER BY idx", (event_id,)).fetchall()
        return [self._leaf(r) for r in rows]

    def leaves_of_referral(self, referral_id: str) -> list[Leaf]:
        rows = self.db.execute(f"{self._LEAF} WHERE referral_id = ? ORDER BY idx", (referral_id,)).fetchall()
        return [self._leaf(r) for r in rows]

    # --- checkpoints --------------------------------------------------------------------

    def make_checkpoint(self, signer: Signer, *, force: bool = False) -> StoredCheckpoint | None:
        """Sign and store a checkpoint of the tree as it is, if it grew since the last one
        (or ``force``). Refuses (:class:`LogInconsistent`) to sign a tree that is not
        consistent with the last checkpoint: a log never signs two inconsistent heads."""
        last = self.latest_checkpoint()
        size = self._size
        if last is not None and last.size == size and not force:
            return None
        root = self.root(size)
        if last is not None:
            if last.size > size:
                raise LogInconsistent(
                    f"the tree has {size} leaves, fewer than checkpoint {last.size} signed: it was truncated",
                    old_size=last.size,
                    new_size=size,
                )
            verify_consistency(last.size, size, last.root, root, self.consistency_proof(last.size, size))
        note = sign_note(Checkpoint(self.origin, size, root), signer)
        made = datetime.now(UTC)
        with self._tx():
            self.db.execute(
                "INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?)", (size, root, note.render(), made.isoformat())
            )
        return StoredCheckpoint(size, root, note, made)

    @staticmethod
    def _checkpoint(row: tuple[object, ...]) -> StoredCheckpoint:
        return StoredCheckpoint(
            int(row[0]),  # type: ignore[call-overload]
            bytes(row[1]),  # type: ignore[call-overload]
            SignedNote.parse(str(row[2])),
            datetime.fromisoformat(str(row[3])),
        )

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        row = self.db.execute("SELECT size, root, note, made_at FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        return None if row is None else self._checkpoint(row)

    def checkpoint(self, size: int) -> StoredCheckpoint | None:
        row = self.db.execute("SELECT size, root, note, made_at FROM checkpoints WHERE size = ?", (size,)).fetchone()
        return None if row is None else self._checkpoint(row)

    def checkpoint_before(self, size: int) -> StoredCheckpoint | None:
        """The newest checkpoint smaller than ``size``."""
        row = self.db.execute(
            "SELECT size, root, note, made_at FROM checkpoints WHERE size < ? ORDER BY size DESC LIMIT 1", (size,)
        ).fetchone()
        return None if row is None else self._checkpoint(row)

    def checkpoint_after(self, size: int) -> StoredCheckpoint | None:
        """The oldest checkpoint larger than ``size``."""
        row = self.db.execute(
            "SELECT size, root, note, made_at FROM checkpoints WHERE size > ? ORDER BY size LIMIT 1", (size,)
        ).fetchone()
        return None if row is None else self._checkpoint(row)

    def checkpoint_covering(self, index: int, *, cosigners: int = 0, stamped: bool = False) -> StoredCheckpoint | None:
        """The oldest checkpoint that includes leaf ``index``, has at least ``cosigners``
        cosignatures and, if ``stamped``, a time-stamp token of its own."""
        rows = self.db.execute(
            "SELECT c.size, c.root, c.note, c.made_at FROM checkpoints c "
            "WHERE c.size > ? AND (SELECT COUNT(*) FROM cosignatures s WHERE s.size = c.size) >= ? "
            "AND (? = 0 OR EXISTS (SELECT 1 FROM timestamps t WHERE t.size = c.size)) ORDER BY c.size LIMIT 1",
            (index, cosigners, int(stamped)),
        ).fetchone()
        return None if rows is None else self._checkpoint(rows)

    def checkpoints(self) -> list[StoredCheckpoint]:
        rows = self.db.execute("SELECT size, root, note, made_at FROM checkpoints ORDER BY size").fetchall()
        return [self._checkpoint(r) for r in rows]

    # --- cosignatures -------------------------------------------------------------------

    def add_cosignature(self, size: int, witness: str, line: NoteSignature, cosigned_at: datetime) -> bool:
        """Record ``witness``'s (verified) cosignature of checkpoint ``size``; False if known."""
        with self._tx():
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO cosignatures VALUES (?, ?, ?, ?, ?)",
                (size, witness, line.line(), cosigned_at.isoformat(), _now()),
            )
        return cursor.rowcount > 0

    def cosigned_note(self, size: int) -> SignedNote:
        """Checkpoint ``size`` with the log's signature and every recorded cosignature."""
        stored = self.checkpoint(size)
        if stored is None:
            raise LookupError(f"no checkpoint of size {size}")
        rows = self.db.execute("SELECT line FROM cosignatures WHERE size = ? ORDER BY witness", (size,)).fetchall()
        lines = [SignedNote.parse(stored.note.text + "\n" + str(r[0])).signatures[0] for r in rows]
        return stored.note.adding(*lines)

    def cosigners(self, size: int) -> list[str]:
        rows = self.db.execute("SELECT witness FROM cosignatures WHERE size = ? ORDER BY witness", (size,)).fetchall()
        return [str(r[0]) for r in rows]

    def note_witness(self, witness: str, size: int) -> None:
        """``witness`` has cosigned a checkpoint of ``size`` (verified by the caller)."""
        with self._tx():
            self.db.execute(
                "INSERT INTO witness_heads VALUES (?, ?) ON CONFLICT (witness) DO UPDATE SET size = MAX(size, ?)",
                (witness, size, size),
            )

    def witness_sizes(self) -> dict[str, int]:
        """The largest checkpoint each witness has cosigned."""
        rows = self.db.execute("SELECT witness, size FROM witness_heads").fetchall()
        return {str(w): int(s) for w, s in rows}

    # --- time-stamps --------------------------------------------------------------------

    def add_timestamp(self, size: int, response: bytes, gen_time: datetime, hash_alg: str, tsa_url: str) -> None:
        with self._tx():
            self.db.execute(
                "INSERT OR REPLACE INTO timestamps VALUES (?, ?, ?, ?, ?, ?)",
                (size, response, gen_time.isoformat(), hash_alg, tsa_url, _now()),
            )
            self.db.execute(
                "UPDATE tsa_outages SET ended_at = ?, covered_by = ? WHERE ended_at IS NULL", (_now(), size)
            )

    @staticmethod
    def _timestamp(row: tuple[object, ...]) -> StoredTimestamp:
        return StoredTimestamp(
            int(row[0]),  # type: ignore[call-overload]
            bytes(row[1]),  # type: ignore[call-overload]
            datetime.fromisoformat(str(row[2])),
            str(row[3]),
            str(row[4]),
            datetime.fromisoformat(str(row[5])),
        )

    _TS = "SELECT size, response, gen_time, hash_alg, tsa_url, received_at FROM timestamps"

    def timestamp(self, size: int) -> StoredTimestamp | None:
        row = self.db.execute(f"{self._TS} WHERE size = ?", (size,)).fetchone()
        return None if row is None else self._timestamp(row)

    def timestamps(self) -> list[StoredTimestamp]:
        return [self._timestamp(r) for r in self.db.execute(f"{self._TS} ORDER BY size").fetchall()]

    def latest_timestamp(self) -> StoredTimestamp | None:
        row = self.db.execute(f"{self._TS} ORDER BY size DESC LIMIT 1").fetchone()
        return None if row is None else self._timestamp(row)

    def unstamped(self) -> StoredCheckpoint | None:
        """The newest checkpoint, if it has no token yet and is newer than the last token:
        stamping it covers every checkpoint and event before it (batching)."""
        latest = self.latest_checkpoint()
        stamped = self.latest_timestamp()
        if latest is None or (stamped is not None and stamped.size >= latest.size):
            return None
        return latest

    def tsa_failed(self, error: str, size: int | None) -> Outage:
        """Record a failed attempt: opens an outage or counts into the open one."""
        with self._tx():
            row = self.db.execute("SELECT started_at FROM tsa_outages WHERE ended_at IS NULL").fetchone()
            if row is None:
                self.db.execute("INSERT INTO tsa_outages VALUES (?, NULL, 1, ?, ?, NULL)", (_now(), error, size))
            else:
                self.db.execute(
                    "UPDATE tsa_outages SET attempts = attempts + 1, last_error = ? WHERE ended_at IS NULL", (error,)
                )
        open_outage = self.open_outage()
        assert open_outage is not None
        return open_outage

    def _outages(self, where: str) -> list[Outage]:
        rows = self.db.execute(
            f"SELECT started_at, ended_at, attempts, last_error, first_size, covered_by FROM tsa_outages {where} "
            "ORDER BY started_at"
        ).fetchall()
        return [
            Outage(
                datetime.fromisoformat(r[0]),
                datetime.fromisoformat(r[1]) if r[1] else None,
                int(r[2]),
                str(r[3]),
                r[4],
                r[5],
            )
            for r in rows
        ]

    def open_outage(self) -> Outage | None:
        found = self._outages("WHERE ended_at IS NULL")
        return found[0] if found else None

    def outages(self) -> list[Outage]:
        return self._outages("")

    # --- meta ---------------------------------------------------------------------------

    def meta(self, key: str, default: str = "") -> str:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._tx():
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
