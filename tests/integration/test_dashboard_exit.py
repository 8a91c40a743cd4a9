"""``xregion dashboard`` stops cleanly on SIGTERM (systemctl stop) and SIGINT (Ctrl-C): the
web server and the coordinator are stopped — its connection and stores closed — and the
process exits 0, with a live-update stream open meanwhile.

uvicorn's own signal handling used to catch the signal, shut the web server down and raise
the signal again as ``serve()`` returned: the process died of it (exit -15) before the
coordinator was stopped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from xregion.keys import init_keys
from xregion.ops.server import EmbeddedServer, free_port

XREGION = Path(sys.executable).parent / "xregion"


def _ready(url: str, process: subprocess.Popen[bytes], log: Path) -> bool:
    assert process.poll() is None, log.read_text(errors="replace")
    try:
        return httpx.get(f"{url}/health/ready", timeout=2.0).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_the_dashboard_stops_its_coordinator_and_exits_0_on_a_signal(
    nats_server: EmbeddedServer, tmp_path: Path, sig: signal.Signals
) -> None:
    init_keys(tmp_path / "keys", ["BJ", "TJ", "HE", "COORD"])
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "dashboard.log"
    env = {**os.environ, "XREGION_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
    argv = [
        str(XREGION), "dashboard", "--nats-url", nats_server.url, "--keys-dir", str(tmp_path / "keys"),
        "--store", str(tmp_path / "coord.db"), "--port", str(port),
    ]  # fmt: skip
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60.0
        while not _ready(url, process, log):
            assert time.monotonic() < deadline, "the dashboard did not become ready:\n" + log.read_text()
            time.sleep(0.1)
        with httpx.stream("GET", f"{url}/events", timeout=10.0) as events:  # a browser watching
            assert next(events.iter_lines()).startswith("retry:")
            process.send_signal(sig)
            code = process.wait(20.0)
        output = log.read_text(errors="replace")
        assert code == 0, output
        assert '"dashboard stopped"' in output, output
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
