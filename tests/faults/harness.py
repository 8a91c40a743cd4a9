"""Helpers of the fault tests: adapter subprocesses, CPU accounting, reading the evidence.

Everything waits on conditions with deadlines (:func:`tests.bus.eventually`); nothing
sleeps and hopes.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import nats

from xregion.keys import init_keys
from xregion.runtime.deadletter import DeadLetter, read_dead_letters

ROOT = Path(__file__).resolve().parents[2]
XREGION_BIN = Path(sys.executable).parent / "xregion"
CLK_TCK = os.sysconf("SC_CLK_TCK")
HANDLER = "tests.faults.handlers:record_effect"


def make_keys(keys_dir: Path) -> Path:
    """Throw-away keys for every party, usable by ``xregion adapter run --keys-dir``."""
    init_keys(keys_dir, ["BJ", "TJ", "HE", "COORD"])
    return keys_dir


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time of a process (all its threads), from ``/proc/<pid>/stat``."""
    stat = Path(f"/proc/{pid or 'self'}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


# --- the adapter's own database ------------------------------------------------------------


def _ro(db_path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5.0)


def query(db_path: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Run a read-only query against an adapter's store (WAL: safe while it runs).

    A missing database or table reads as no rows (the adapter may not have created it yet).
    """
    if not db_path.exists():
        return []
    try:
        db = _ro(db_path)
    except sqlite3.OperationalError:
        return []
    try:
        return db.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        db.close()


def effects(db_path: Path, event_type: str | None = None) -> list[tuple[str, int, str | None, int]]:
    """(event_id, linkseq, causation_id, delivery_count) of each effect row, in commit order."""
    sql = "SELECT event_id, linkseq, causation_id, delivery_count FROM effects"
    params: tuple[object, ...] = ()
    if event_type is not None:
        sql += " WHERE event_type = ?"
        params = (event_type,)
    return [tuple(r) for r in query(db_path, sql + " ORDER BY rowid", params)]  # type: ignore[misc]


def effect_count(db_path: Path, event_type: str | None = None) -> int:
    if event_type is None:
        rows = query(db_path, "SELECT count(*) FROM effects")
    else:
        rows = query(db_path, "SELECT count(*) FROM effects WHERE event_type = ?", (event_type,))
    return int(str(rows[0][0])) if rows else 0


def outbox_depth(db_path: Path) -> int:
    """Events in the adapter's outbox not yet acknowledged by JetStream."""
    rows = query(db_path, "SELECT count(*) FROM outbox WHERE published_at IS NULL")
    return int(str(rows[0][0])) if rows else 0


def trace_ids(trace: Path) -> list[str]:
    """The event ids of every handler invocation recorded in ``XREGION_FAULT_TRACE``."""
    try:
        return trace.read_text(encoding="ascii").split()
    except FileNotFoundError:
        return []


def duplicated(ids: list[str]) -> dict[str, int]:
    return {k: n for k, n in Counter(ids).items() if n > 1}


# --- the stream ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredEvent:
    stream_seq: int
    subject: str
    msg_id: str | None
    event_id: str
    event_type: str
    sender: str
    originseq: int
    linkseq: int


async def consumer_idle(url: str, region: str, stream: str = "XREGION") -> bool:
    """Has ``region``'s durable consumer nothing left to deliver and nothing unacknowledged?"""
    nc = await nats.connect(url, max_reconnect_attempts=3)
    try:
        info = await nc.jetstream().consumer_info(stream, f"region-{region}")
        return not info.num_pending and not info.num_ack_pending
    finally:
        await nc.close()


async def stream_events(url: str, stream: str = "XREGION") -> list[StoredEvent]:
    """Every message of ``stream``, read one by one by sequence (no consumer involved)."""
    nc = await nats.connect(url, max_reconnect_attempts=3)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(stream, seq)
            wire = json.loads(msg.data or b"{}")
            out.append(
                StoredEvent(
                    stream_seq=seq,
                    subject=msg.subject or "",
                    msg_id=(msg.headers or {}).get("Nats-Msg-Id"),
                    event_id=wire["id"],
                    # cn.jjj.xregion.<family>.<event>.v<N> and urn:xregion:<region>:<agency>
                    event_type=".".join(wire["type"].split(".")[3:5]),
                    sender=wire["source"].split(":")[2],
                    originseq=wire["originseq"],
                    linkseq=wire["linkseq"],
                )
            )
        assert len(out) == info.state.messages, "stream has interior deletes"
        return out
    finally:
        await nc.close()


async def dead_letters(url: str, region: str | None = None, stream: str = "XREGION_DLQ") -> list[DeadLetter]:
    """Every dead letter (of ``region``) in the dead-letter stream."""
    nc = await nats.connect(url, max_reconnect_attempts=3)
    try:
        return await read_dead_letters(nc.jetstream(), stream, region)
    finally:
        await nc.close()


# --- adapters as subprocesses ----------------------------------------------------------------


class AdapterProcess:
    """``xregion adapter run`` in a subprocess, killable and restartable on the same store."""

    def __init__(
        self,
        region: str,
        *,
        nats_url: str,
        keys_dir: Path,
        store: Path,
        log: Path,
        env: dict[str, str] | None = None,
        handler: str = HANDLER,
    ) -> None:
        self.region = region
        self.nats_url = nats_url
        self.keys_dir = keys_dir
        self.store = store
        self.log = log
        self.handler = handler
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> AdapterProcess:
        assert not self.running, "already running"
        cmd = [
            str(XREGION_BIN),
            "adapter",
            "run",
            "--region",
            self.region,
            "--nats-url",
            self.nats_url,
            "--keys-dir",
            str(self.keys_dir),
            "--store",
            str(self.store),
            "--handler",
            self.handler,
            "--log-format",
            "json",
        ]
        with open(self.log, "ab") as log:
            log.write(f"=== start #{self.starts + 1} {time.time():.3f}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.starts += 1
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, nothing is flushed."""
        if self.running:
            assert self.process is not None
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            self.kills += 1

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (graceful), SIGKILL if it does not exit in time. Returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def log_lines(self, event: str) -> list[dict[str, object]]:
        """The JSON log records whose ``event`` is ``event``."""
        out = []
        for line in self.log_text().splitlines():
            if line.startswith("{") and f'"{event}"' in line:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("event") == event:
                    out.append(rec)
        return out

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])
