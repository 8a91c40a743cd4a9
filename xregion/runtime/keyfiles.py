"""Key material a running adapter picks up without a restart.

* :class:`LiveRoster` — the key roster an adapter verifies with: fixed, or loaded from
  ``roster.json`` and reloaded when the file changes (checked at most every
  ``min_interval_s``, and at once on demand: the consumer forces a reload when an event names
  a key the roster does not know, so an event signed with a brand-new key that arrives
  before the next periodic check is not lost).
* :class:`KeyFile` — the adapter's own private key file; :meth:`KeyFile.poll` returns the new
  signer once ``xregion keys rotate`` has replaced it.

A file that cannot be read or parsed (an operator's typo) leaves the previous roster or key
in force and is logged; it is retried when the file changes again. Only key ids are logged,
never a seed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import structlog

from xregion.errors import ConfigError
from xregion.keys import load_signer_file
from xregion.signing import KeyRoster, Signer

log = structlog.get_logger("xregion.keys")

Stamp = tuple[int, int, int]


def stamp_of(path: Path) -> Stamp | None:
    """What changes when a file is rewritten or replaced: inode, size, mtime (ns)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class LiveRoster:
    """The current key roster, reloaded from ``path`` (if any) when the file changes."""

    def __init__(self, roster: KeyRoster, path: Path | None = None, *, min_interval_s: float = 5.0) -> None:
        self._roster = roster
        self.path = path
        self.min_interval_s = min_interval_s
        self._stamp = stamp_of(path) if path is not None else None
        self._checked = time.monotonic()
        self.reloads = 0

    @classmethod
    def load(cls, path: Path, *, min_interval_s: float = 5.0) -> LiveRoster:
        stamp = stamp_of(path)
        live = cls(KeyRoster.load(path), path, min_interval_s=min_interval_s)
        live._stamp = stamp
        return live

    @property
    def roster(self) -> KeyRoster:
        """The roster in force, after reloading it if the interval passed and the file changed."""
        if self.path is not None and time.monotonic() - self._checked >= self.min_interval_s:
            self.refresh()
        return self._roster

    def refresh(self, *, force: bool = False) -> bool:
        """Reload the roster if its file changed (``force``: re-read it regardless).

        True when a roster with different content is now in force.
        """
        self._checked = time.monotonic()
        if self.path is None:
            return False
        stamp = stamp_of(self.path)
        if stamp is None or (stamp == self._stamp and not force):
            return False
        try:
            fresh = KeyRoster.load(self.path)
        except ConfigError as exc:
            log.error(
                "key roster not reloaded; the previous one stays in force",
                path=str(self.path),
                detail=exc.message[:300],
            )
            self._stamp = stamp
            return False
        self._stamp = stamp
        before = {k.key_id: k.to_json() for k in self._roster}
        after = {k.key_id: k.to_json() for k in fresh}
        if before == after:
            return False
        self._roster = fresh
        self.reloads += 1
        log.info(
            "key roster reloaded",
            path=str(self.path),
            keys=len(after),
            added=sorted(after.keys() - before.keys()),
            removed=sorted(before.keys() - after.keys()),
            changed=sorted(k for k in after.keys() & before.keys() if after[k] != before[k]),
        )
        return True


class KeyFile:
    """A party's private key file, watched for a rotated key."""

    def __init__(self, path: Path, party: str, current: Signer) -> None:
        self.path = path
        self.party = party
        self.key_id = current.key_id
        self._stamp = stamp_of(path)

    def poll(self) -> Signer | None:
        """The signer in the file if it changed to another key since the last poll, else None."""
        stamp = stamp_of(self.path)
        if stamp is None or stamp == self._stamp:
            return None
        self._stamp = stamp
        try:
            signer = load_signer_file(self.path, self.party)
        except ConfigError as exc:
            log.error(
                "private key file not reloaded; the current key stays in use",
                party=self.party,
                path=str(self.path),
                detail=exc.message[:300],
            )
            return None
        if signer.key_id == self.key_id:
            return None
        self.key_id = signer.key_id
        return signer
