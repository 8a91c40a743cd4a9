"""Every command that connects fails fast and clearly (issue 14 items 2, 5, 6, 7), run as an
operator runs it: the real ``xregion`` executable against a real secured nats-server.

* A one-shot command whose broker does not answer gives up after ``--connect-timeout``
  (``XREGION_CONNECT_TIMEOUT``) with ``error broker_unreachable``, instead of logging a
  reconnect warning every second for ever.
* A certificate of another party is ``error identity_mismatch`` from every command; an
  identity the server admits but whose permissions refuse what the command does is
  ``error permission_denied`` naming the party and the refused subject (not a timeout, a
  misleading ``topology_missing`` or a traceback).
* A clean exit (a finished command, SIGTERM of ``adapter run``) logs no ``nats disconnected``
  warning; an unexpected disconnect still does.
* ``--help`` of commands that need ``--nats-url`` does not promise an embedded server.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.bus import eventually
from tests.security.secure_bus import LogCapture
from xregion.cli import app
from xregion.keys import ROSTER_FILE
from xregion.ops.security import SecurityDir
from xregion.ops.server import EmbeddedServer, free_port
from xregion.runtime.connection import connect

XREGION_BIN = Path(sys.executable).parent / "xregion"
CONNECT_TIMEOUT_S = 2.0
MARGIN_S = 20.0
"""Process start-up and shut-down on a loaded 2-core machine; a command that waits for ever
is what this bounds, and it is killed after ``HANG_S``."""
HANG_S = 45.0


@dataclass
class Ran:
    args: Sequence[str]
    code: int | None
    """``None``: still running after ``HANG_S`` (killed)."""
    out: str
    err: str
    elapsed: float

    @property
    def output(self) -> str:
        """stdout and stderr, whitespace normalised (a terminal-less console wraps lines)."""
        return " ".join((self.out + self.err).split())

    def __str__(self) -> str:
        return f"xregion {' '.join(self.args)} -> {self.code} in {self.elapsed:.1f}s\n{self.output[-3000:]}"


def run(args: Sequence[str], env: dict[str, str] | None = None) -> Ran:
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [str(XREGION_BIN), *args],
            capture_output=True,
            text=True,
            timeout=HANG_S,
            env={**os.environ, **(env or {})},
        )
    except subprocess.TimeoutExpired as hung:
        out = hung.stdout.decode() if isinstance(hung.stdout, bytes) else hung.stdout or ""
        err = hung.stderr.decode() if isinstance(hung.stderr, bytes) else hung.stderr or ""
        return Ran(args, None, out, err, time.monotonic() - started)
    return Ran(args, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


def run_all(commands: Sequence[tuple[Sequence[str], dict[str, str] | None]]) -> list[Ran]:
    """The commands side by side (three at a time: each process spends ~1 s importing)."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        return list(pool.map(lambda command: run(*command), commands))


def failed_with(ran: Ran, code: str) -> None:
    assert ran.code not in (0, None), ran
    assert f"error {code}:" in ran.output, ran
    assert "Traceback" not in ran.output, ran


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    """Throw-away keys of every party (the roster commands verify against)."""
    keys = tmp_path / "keys"
    result = CliRunner().invoke(app, ["keys", "init", "--keys-dir", str(keys)])
    assert result.exit_code == 0, result.output
    return keys


def as_party(server: EmbeddedServer, security: SecurityDir, party: str) -> list[str]:
    identity = security.identity(party)
    return [
        "--nats-url", server.url,
        "--tls-ca", str(identity.tls_ca), "--tls-cert", str(identity.tls_cert), "--tls-key", str(identity.tls_key),
    ]  # fmt: skip


def one_shot_commands(tmp_path: Path, keys: Path) -> dict[str, list[str]]:
    """Every one-shot command that connects, with what it needs besides the identity."""
    roster = str(keys / ROSTER_FILE)
    return {
        "audit replay": ["audit", "replay", "--roster", roster],
        "audit state": ["audit", "state", "--at", "2026-11-25T08:00:00Z", "--roster", roster],
        "audit export": ["audit", "export", "--out", str(tmp_path / "archive"), "--keys-dir", str(keys)],
        "audit report": ["audit", "report", "--html", str(tmp_path / "report.html"), "--roster", roster],
        "ops apply-topology": ["ops", "apply-topology"],
        "ops backup": ["ops", "backup", "--out", str(tmp_path / "backup")],
        "ops restore": ["ops", "restore", str(tmp_path / "no-backup")],
        "coordinator rebuild": ["coordinator", "rebuild", "--store", str(tmp_path / "rebuilt.db")],
        "status": ["status", "--keys-dir", str(keys), "--store", str(tmp_path / "status.db"), "--json"],
        "audit log verify": ["audit", "log", "verify", "--roster", roster],
        "report assessment": [
            *("report", "assessment", "--from", "2026-11-01", "--to", "2026-11-30", "--json", "-"),
            *("--keys-dir", str(keys), "--store", str(tmp_path / "assessment.db")),
        ],
    }


# --- broker unreachable ------------------------------------------------------------------------


def test_one_shot_commands_give_up_on_an_unreachable_broker(tmp_path: Path, keys: Path) -> None:
    url = f"nats://127.0.0.1:{free_port()}"  # nobody listens there
    commands = one_shot_commands(tmp_path, keys)
    # the environment variable instead of the option (first: it is the one waiting for ever before)
    runs: list[tuple[Sequence[str], dict[str, str] | None]] = [
        ([*commands["coordinator rebuild"], "--nats-url", url], {"XREGION_CONNECT_TIMEOUT": "1"})
    ]
    runs += [
        ([*args, "--nats-url", url, "--connect-timeout", str(CONNECT_TIMEOUT_S)], None) for args in commands.values()
    ]
    for ran in run_all(runs):
        failed_with(ran, "broker_unreachable")
        assert url in ran.output and "is the broker up" in ran.output, ran
        assert ran.elapsed < CONNECT_TIMEOUT_S + MARGIN_S, ran
        assert ran.output.count("nats connection error") <= 1, ran  # not a warning a second
    assert not (tmp_path / "status.db").exists() and not (tmp_path / "rebuilt.db").exists()


# --- wrong identity ----------------------------------------------------------------------------


def test_another_partys_certificate_is_identity_mismatch_from_every_command(
    secure_server: EmbeddedServer, security_dir: SecurityDir, tmp_path: Path, keys: Path
) -> None:
    commands = one_shot_commands(tmp_path, keys)
    wrong = {  # the command's party: the certificate given instead
        "audit replay": "COORD",
        "audit state": "COORD",
        "audit export": "COORD",
        "audit report": "COORD",
        "ops apply-topology": "BJ",
        "ops backup": "AUDIT",
        "ops restore": "BJ",
        "coordinator rebuild": "ADMIN",
        "status": "AUDIT",
        "audit log verify": "BJ",
        "report assessment": "AUDIT",
    }
    runs: list[tuple[Sequence[str], dict[str, str] | None]] = [
        ([*commands[name], *as_party(secure_server, security_dir, party)], None) for name, party in wrong.items()
    ]
    runs.append(([*commands["coordinator rebuild"], *as_party(secure_server, security_dir, "AUDIT")], None))
    long_running = [
        ["coordinator", "run", "--keys-dir", str(keys), "--store", str(tmp_path / "coord.db")],
        ["dashboard", "--keys-dir", str(keys), "--store", str(tmp_path / "dash.db"), "--port", str(free_port())],
    ]
    runs += [([*args, *as_party(secure_server, security_dir, "AUDIT")], None) for args in long_running]
    for ran in run_all(runs):
        failed_with(ran, "identity_mismatch")
        assert "topology_missing" not in ran.output, ran
    assert not (tmp_path / "status.db").exists()


# --- admitted, but refused by the permissions --------------------------------------------------


def restrict(security: SecurityDir, refused: dict[str, tuple[str, str]]) -> None:
    """In ``auth.conf``, replace one subject of each party's publish permissions (party →
    (subject, replacement)): the party is still admitted, and refused that subject."""
    text, account = [], None
    for line in security.auth_file.read_text(encoding="utf-8").splitlines():
        top = re.match(r"  (\w+): \{", line)
        if top:
            account = top[1]
        user = re.search(r'user: "urn:xregion:party:(\w+)"', line)
        if user:
            account = user[1]  # ADMIN is a user of the bus account
        if account in refused and "publish: { allow: [" in line:
            subject, replacement = refused[account]
            assert f'"{subject}"' in line, line
            line = line.replace(f'"{subject}"', f'"{replacement}"')
        text.append(line)
    security.auth_file.write_text("\n".join(text) + "\n", encoding="utf-8")


def test_permissions_refusing_the_command_are_permission_denied(
    secure_server: EmbeddedServer, security_dir: SecurityDir, tmp_path: Path, keys: Path
) -> None:
    """A server of one's own whose accounts grant COORD, AUDIT, BJ and ADMIN less than the
    commands need: each says which party was refused which subject. (A running coordinator or
    dashboard keeps retrying instead: the operator may still fix the accounts and reload.)"""
    ok = CliRunner().invoke(app, ["ops", "apply-topology", *as_party(secure_server, security_dir, "ADMIN")])
    assert ok.exit_code == 0, ok.output
    info = "$JS.API.STREAM.INFO.XREGION"
    refused = {party: (info, "$JS.API.INFO") for party in ("COORD", "AUDIT", "BJ")}
    restrict(security_dir, {**refused, "ADMIN": ("$JS.API.>", "$JS.API.INFO")})
    secure_server.reload()
    time.sleep(1.0)
    commands = one_shot_commands(tmp_path, keys)
    runs: list[tuple[Sequence[str], dict[str, str] | None]] = [
        ([*commands["coordinator rebuild"], *as_party(secure_server, security_dir, "COORD")], None),
        ([*commands["status"], *as_party(secure_server, security_dir, "COORD")], None),
        ([*commands["audit replay"], *as_party(secure_server, security_dir, "AUDIT")], None),
        ([*commands["ops apply-topology"], *as_party(secure_server, security_dir, "ADMIN")], None),
        (
            ["adapter", "run", "--region", "BJ", "--keys-dir", str(keys), "--store", str(tmp_path / "BJ.db"),
             *as_party(secure_server, security_dir, "BJ")],
            None,
        ),
    ]  # fmt: skip
    party_of = ["COORD", "COORD", "AUDIT", "ADMIN", "BJ"]
    results = run_all(runs)
    for party, ran in zip(party_of, results, strict=True):
        failed_with(ran, "permission_denied")
        assert party in ran.output and info in ran.output, ran
        assert "topology_missing" not in ran.output and "stream_read_timeout" not in ran.output, ran
    assert results[1].out == "", results[1]  # status --json: stdout is for JSON only


# --- clean exits -------------------------------------------------------------------------------


def disconnect_warnings(log: LogCapture) -> list[dict[str, object]]:
    return [line for line in log.lines() if line.get("event") == "nats disconnected" and line.get("level") == "warning"]


@pytest.mark.anyio
async def test_only_an_unexpected_disconnect_is_a_warning(
    secure_server: EmbeddedServer, security_dir: SecurityDir, security_log: LogCapture
) -> None:
    nc = await connect(secure_server.url, "test-clean", security_dir.identity("ADMIN"))
    await nc.close()
    lost = await connect(secure_server.url, "test-lost", security_dir.identity("ADMIN"))
    try:
        assert not disconnect_warnings(security_log), security_log.lines()
        secure_server.kill()

        async def warned() -> list[dict[str, object]]:
            return disconnect_warnings(security_log)

        (line,) = await eventually(warned, 10.0, "a warning that the connection was lost")
        assert line["client"] == "test-lost"
    finally:
        await lost.close()
    assert len(disconnect_warnings(security_log)) == 1, security_log.lines()


def test_commands_and_a_sigtermed_adapter_exit_without_a_disconnect_warning(
    secure_server: EmbeddedServer, security_dir: SecurityDir, tmp_path: Path, keys: Path
) -> None:
    topology = run(["ops", "apply-topology", *as_party(secure_server, security_dir, "ADMIN")])
    assert topology.code == 0, topology
    assert "nats disconnected" not in topology.output, topology
    rebuild = run(["coordinator", "rebuild", "--store", str(tmp_path / "c.db"),
                   *as_party(secure_server, security_dir, "COORD")])  # fmt: skip
    assert rebuild.code == 0 and "nats disconnected" not in rebuild.output, rebuild

    log = tmp_path / "adapter.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(XREGION_BIN), "adapter", "run", "--region", "BJ", "--keys-dir", str(keys),
             "--store", str(tmp_path / "BJ.db"), "--log-format", "json", *as_party(secure_server, security_dir, "BJ")],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + HANG_S
        while '"adapter running"' not in log.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(HANG_S) == 0, log.read_text(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert any(line.get("event") == "FastStream app shut down gracefully." for line in lines), lines
    warned = [line for line in lines if line.get("event") == "nats disconnected" and line.get("level") == "warning"]
    assert not warned, lines


# --- help --------------------------------------------------------------------------------------


def help_text(*command: str) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
    assert result.exit_code == 0, result.output
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())


@pytest.mark.parametrize(
    "command",
    [
        ("ops", "apply-topology"),
        ("ops", "backup"),
        ("ops", "restore"),
        ("coordinator", "run"),
        ("coordinator", "rebuild"),
        ("dashboard",),
        ("audit", "replay"),
        ("audit", "export"),
        ("status",),
    ],
)
def test_help_of_commands_needing_a_server_does_not_offer_the_embedded_one(command: tuple[str, ...]) -> None:
    """Only ``xregion demo`` starts a server of its own without ``--nats-url``."""
    text = help_text(*command)
    assert "--nats-url" in text and "embedded server" not in text, text
    if command not in {("audit", "replay"), ("status",)}:
        assert "Required" in text, text
    if command[0] in {"ops", "audit"} or command == ("coordinator", "rebuild") or command == ("status",):
        assert "--connect-timeout" in text and "XREGION_CONNECT_TIMEOUT" in text, text
    assert "Unset: the embedded server" in help_text("demo")
