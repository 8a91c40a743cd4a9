"""A site on one host, run the way an operator runs it: every step an ``xregion`` command in a
subprocess, every party with its own identity, on free loopback ports in a temporary directory.

:class:`Site` knows the layout (keys, security directory, stores, logs), builds each party's
command line and environment, runs one-shot commands (:meth:`Site.cli`) and long-running ones
(:meth:`Site.spawn`), and at teardown kills whatever is still running — the nats-server the
broker started included — and prints the tail of every log when the test failed.

Nothing here sleeps and hopes: :func:`eventually` polls a condition until a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from xregion.ops.server import free_port

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
XREGION = Path(sys.executable).parent / "xregion"
REGIONS = ("BJ", "TJ", "HE")
HANDLER = "tests.site.handlers:record"
TAIL_LINES = 40


def eventually(check: Callable[[], T | None], *, timeout: float, what: str, every: float = 0.2) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def child_pids(pid: int) -> list[int]:
    """The direct children of ``pid`` (``/proc/<pid>/task/*/children``)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def alive(pid: int) -> bool:
    """Is ``pid`` a process that has not exited (a zombie counts as exited)?"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@dataclass
class Proc:
    """A long-running ``xregion`` command, its output in ``log``; in a session of its own."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    children: list[int] = field(default_factory=list)
    """Processes it started that live in sessions of their own (the broker's nats-server)."""

    def start(self) -> Proc:
        with open(self.log, "ab") as out:
            out.write(f"$ {' '.join(self.argv)}\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.log.parent,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, then its exit code (``AssertionError`` if it does not exit in time)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} did not exit within {timeout}s of SIGTERM") from None

    def kill(self) -> None:
        """SIGKILL it, its process group and the children it started elsewhere."""
        if self.running:
            self.children += [p for p in child_pids(self.pid) if "nats-server" in _cmdline(p)]
        for pid in self.children:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@dataclass
class CliRun:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (
            f"$ {' '.join(self.argv)}\nexit {self.returncode}\n--- stdout\n{self.stdout[-4000:]}"
            f"\n--- stderr\n{self.stderr[-4000:]}"
        )

    def json(self) -> Any:
        return json.loads(self.stdout)


class Site:
    """Paths, ports and identities of one site; the processes it runs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.keys = root / "keys"
        self.security = root / "security"
        self.logs = root / "logs"
        self.logs.mkdir(parents=True)
        self.port = free_port()
        assert self.port != 4222
        self.url = f"tls://127.0.0.1:{self.port}"
        self.http_ports = {r: free_port() for r in REGIONS}
        self.tokens = {r: f"site-token-{r}-{os.urandom(8).hex()}" for r in REGIONS}
        self.dashboard_port = free_port()
        self.procs: dict[str, Proc] = {}
        self.retired: list[Proc] = []
        self.runs: list[CliRun] = []

    # --- identities -----------------------------------------------------------------------

    def tls(self, party: str) -> list[str]:
        """``--tls-ca/--tls-cert/--tls-key`` of ``party``'s client certificate."""
        tls = self.security / "tls"
        return [
            "--tls-ca", str(tls / "ca.pem"),
            "--tls-cert", str(tls / "clients" / f"{party}.pem"),
            "--tls-key", str(tls / "clients" / f"{party}-key.pem"),
        ]  # fmt: skip

    def env(self, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("XREGION_")}
        return {
            **base,
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "XREGION_LOG_FORMAT": "json",
            "NO_COLOR": "1",
            **extra,
        }

    def handled_file(self, region: str) -> Path:
        return self.root / f"handled-{region}.txt"

    def store(self, name: str) -> Path:
        return self.root / f"{name}.db"

    # --- commands ---------------------------------------------------------------------------

    def cli(self, *args: str, timeout: float = 120.0, expect: int | None = 0) -> CliRun:
        """Run ``xregion ARGS`` to completion; with ``expect``, assert its exit code."""
        argv = [str(XREGION), *args]
        done = subprocess.run(
            argv, capture_output=True, text=True, env=self.env(), cwd=self.root, timeout=timeout, check=False
        )
        run = CliRun(argv, done.returncode, done.stdout, done.stderr)
        self.runs.append(run)
        if expect is not None:
            assert run.returncode == expect, f"expected exit {expect}:\n{run}"
        return run

    def spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> Proc:
        """Start ``xregion ARGS`` in the background as ``name`` (log: ``logs/<name>.log``)."""
        assert name not in self.procs or not self.procs[name].running, f"{name} runs already"
        if name in self.procs:
            self.retired.append(self.procs.pop(name))
        proc = Proc(name, [str(XREGION), *args], self.env(**(env or {})), self.logs / f"{name}.log").start()
        self.procs[name] = proc
        return proc

    def wait_for_exit(self, proc: Proc, timeout: float = 60.0) -> int:
        """Until ``proc`` exits by itself; its exit code."""

        def exited() -> bool:
            return not proc.running

        eventually(exited, timeout=timeout, what=f"{proc.name} to exit")
        assert proc.process is not None
        return int(proc.process.returncode)

    def wait_for_output(self, proc: Proc, text: str, timeout: float = 60.0) -> None:
        def seen() -> bool:
            if not proc.running:
                raise AssertionError(
                    f"{proc.name} exited ({proc.process.returncode if proc.process else '?'}):\n{tail(proc.log)}"
                )
            return text in proc.output()

        eventually(seen, timeout=timeout, what=f"{proc.name} to print {text!r}")

    # --- the long-running parties ------------------------------------------------------------

    def start_broker(self, data_dir: Path, *extra: str, name: str = "broker") -> Proc:
        broker = self.spawn(
            name, "broker", "--data-dir", str(data_dir), "--port", str(self.port),
            "--security-dir", str(self.security), *extra,
        )  # fmt: skip
        self.wait_for_output(broker, "nats-server running at", timeout=60.0)
        broker.children = [p for p in child_pids(broker.pid) if "nats-server" in _cmdline(p)]
        assert broker.children, f"no nats-server under the broker:\n{tail(broker.log)}"
        return broker

    def start_adapter(self, region: str) -> Proc:
        return self.spawn(
            region,
            "adapter", "run", "--region", region, "--nats-url", self.url, "--keys-dir", str(self.keys),
            "--store", str(self.store(region)), *self.tls(region), "--handler", HANDLER,
            "--http", f"127.0.0.1:{self.http_ports[region]}", "--log-format", "json",
            env={"XREGION_HTTP_TOKEN": self.tokens[region], "XREGION_SITE_HANDLED": str(self.handled_file(region))},
        )  # fmt: skip

    def start_dashboard(self) -> Proc:
        return self.spawn(
            "dashboard",
            "dashboard", "--nats-url", self.url, "--keys-dir", str(self.keys), "--store", str(self.store("coord")),
            "--host", "127.0.0.1", "--port", str(self.dashboard_port), *self.tls("COORD"), "--log-format", "json",
        )  # fmt: skip

    # --- HTTP ----------------------------------------------------------------------------------

    def gateway(self, region: str) -> httpx.Client:
        return httpx.Client(
            base_url=f"http://127.0.0.1:{self.http_ports[region]}",
            headers={"Authorization": f"Bearer {self.tokens[region]}"},
            timeout=10.0,
        )

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def gateway_up(self, region: str) -> bool:
        proc = self.procs[region]
        if not proc.running:
            raise AssertionError(f"adapter {region} exited:\n{tail(proc.log)}")
        try:
            with self.gateway(region) as gw:
                return gw.get("/v1/referrals").status_code == 200
        except httpx.TransportError:
            return False

    def dashboard_ready(self) -> dict[str, Any] | None:
        proc = self.procs["dashboard"]
        if not proc.running:
            raise AssertionError(f"dashboard exited:\n{tail(proc.log)}")
        try:
            answer = httpx.get(f"{self.dashboard_url}/health/ready", timeout=5.0)
        except httpx.TransportError:
            return None
        return answer.json() if answer.status_code == 200 else None

    # --- reading results -------------------------------------------------------------------

    def handled(self, region: str) -> list[str]:
        """Event ids, one per handler invocation at ``region``, in order."""
        try:
            text = self.handled_file(region).read_text(encoding="ascii")
        except FileNotFoundError:
            return []
        return [line.split()[0] for line in text.splitlines() if line.strip()]

    def query(self, store: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Read-only query on a store (WAL: safe while its process runs)."""
        path = self.store(store)
        if not path.exists():
            return []
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)
        try:
            return db.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
        finally:
            db.close()

    def outbox(self, region: str) -> list[tuple[str, bytes, int | None]]:
        """(event id, signed bytes, stream sequence or None) of every event ``region`` sent."""
        return [
            (r[0], bytes(r[1]), r[2])
            for r in self.query(region, "SELECT event_id, payload, stream_seq FROM outbox ORDER BY seq")
        ]

    def outbox_depth(self, region: str) -> int:
        rows = self.query(region, "SELECT count(*) FROM outbox WHERE published_at IS NULL")
        return int(rows[0][0]) if rows else -1

    # --- teardown ----------------------------------------------------------------------------

    def report(self) -> str:
        """The tail of every process's log and the last commands run."""
        parts = []
        for proc in [*self.retired, *self.procs.values()]:
            code = proc.process.poll() if proc.process is not None else None
            parts.append(f"===== {proc.name} (exit {code}) {proc.log}\n{tail(proc.log)}")
        for server_log in sorted(self.root.glob("*/nats-server.log")):
            parts.append(f"===== {server_log}\n{tail(server_log)}")
        for run in self.runs[-3:]:
            parts.append(f"===== command\n{run}")
        return "\n".join(parts)

    def kill_all(self) -> None:
        for proc in [*self.procs.values(), *self.retired]:
            proc.kill()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def duplicates(ids: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for i in ids:
        counts[i] = counts.get(i, 0) + 1
    return {i: n for i, n in counts.items() if n > 1}
