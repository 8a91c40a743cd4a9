"""The HTTP gateway's safe defaults: it refuses to run without authentication unless told
to run open (development only), and its API documentation needs no network but the
gateway itself (agencies' networks are offline)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from tests.bus import Bus, eventually
from xregion.gateway.server import TOKEN_ENV, Gateway
from xregion.keys import init_keys
from xregion.ops.server import free_port

pytestmark = pytest.mark.anyio

OPEN_FLAG = "--http-open-without-authentication"


async def listening(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            return (await client.get(f"{url}/openapi.json")).status_code == 200
    except httpx.HTTPError:
        return False


async def start_cli_gateway(
    bus: Bus, tmp_path: Path, *flags: str, token: str | None
) -> tuple[asyncio.subprocess.Process, str, Path]:
    """``xregion adapter run --region BJ --http 127.0.0.1:<free port>`` as a real process, on a
    bus whose topology exists (TJ runs), with ``token`` as XREGION_HTTP_TOKEN (None: unset)."""
    keys = tmp_path / "keys"
    init_keys(keys, ["BJ", "TJ", "HE", "COORD"])
    bus.keys_dir = keys
    await bus.start("TJ")
    url = f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    if token is not None:
        env[TOKEN_ENV] = token
    cmd = [
        sys.executable, "-c", "from xregion.cli import main; main()", "adapter", "run", "--region", "BJ",
        "--nats-url", bus.server.url, "--keys-dir", str(keys), "--store", str(tmp_path / "BJ-cli.db"),
        "--http", url.removeprefix("http://"), "--log-format", "json", *flags,
    ]  # fmt: skip
    log = tmp_path / "bj.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    return proc, url, log


async def exited_or_listening(proc: asyncio.subprocess.Process, url: str) -> str:
    """Wait for the CLI either to exit (``"exited"``) or to serve on ``url`` (``"listening"``)."""

    async def either() -> str | None:
        if proc.returncode is not None:
            return "exited"
        return "listening" if await listening(url) else None

    return await eventually(either, 30, "the CLI to exit or to serve")


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize("token", [None, ""], ids=["token-unset", "token-empty"])
async def test_cli_refuses_a_gateway_without_authentication(bus: Bus, tmp_path: Path, token: str | None) -> None:
    proc, url, log = await start_cli_gateway(bus, tmp_path, token=token)
    try:
        outcome = await exited_or_listening(proc, url)
    finally:
        await stop(proc)
    out = " ".join(log.read_text().split())  # the console wraps long lines
    assert outcome == "exited", f"the gateway served without authentication: {out[-2000:]}"
    assert proc.returncode != 0, out
    assert "error gateway_unauthenticated:" in out, out
    for remedy in (TOKEN_ENV, "--http-client-ca", OPEN_FLAG):
        assert remedy in out, (remedy, out)
    assert "Traceback" not in out, out
    assert not await listening(url)
    assert not (tmp_path / "BJ-cli.db").exists(), "refused before the adapter was even built"


async def test_cli_serves_open_only_when_told_to_and_says_so(bus: Bus, tmp_path: Path) -> None:
    proc, url, log = await start_cli_gateway(bus, tmp_path, OPEN_FLAG, token=None)
    try:
        outcome = await exited_or_listening(proc, url)
        assert outcome == "listening", f"the open gateway did not start: {log.read_text()[-2000:]}"
        async with httpx.AsyncClient(base_url=url, timeout=10.0) as client:
            anyone = await client.get("/v1/referrals")  # no Authorization header at all
        assert anyone.status_code == 200 and anyone.json() == [], anyone.text
    finally:
        await stop(proc)
    out = log.read_text()
    assert proc.returncode == 0, out[-2000:]
    warnings = [
        r for r in map(json.loads, filter(None, out.splitlines())) if "WITHOUT AUTHENTICATION" in r.get("event", "")
    ]
    assert warnings and warnings[0]["level"] == "warning" and warnings[0]["region"] == "BJ", out[-2000:]


ASSET = re.compile(r"""(?:\bsrc|\bhref|\bspec-url)\s*=\s*["']([^"']+)["']|\burl\s*:\s*["']([^"']+)["']""")
ABSOLUTE = re.compile(r"""(?:[a-z][a-z0-9+.-]*:)?//[^\s"'<>()]+""", re.IGNORECASE)


async def test_docs_pages_need_nothing_but_the_gateway(bus: Bus) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` reference only assets the gateway serves itself."""
    gateway = Gateway(token="bj-token", webhook_url=None)
    await bus.start("BJ", handler=gateway.handler)
    await gateway.start(bus.adapters["BJ"], port=0)
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=10.0) as client:
            for page in ("/docs", "/redoc"):
                got = await client.get(page)
                assert got.status_code == 200 and got.headers["content-type"].startswith("text/html"), page
                html = got.text
                for link in ABSOLUTE.findall(html):
                    assert urlsplit(link).netloc == urlsplit(gateway.url).netloc, (page, link)
                assets = {a or b for a, b in ASSET.findall(html)}
                assert any(a.endswith(".js") for a in assets), (page, assets)
                assert "/openapi.json" in assets, (page, assets)
                for asset in assets:
                    target = urljoin(f"{gateway.url}{page}", asset)
                    assert urlsplit(target).netloc == urlsplit(gateway.url).netloc, (page, asset)
                    fetched = await client.get(target)
                    assert fetched.status_code == 200, (page, asset, fetched.status_code)
                    assert fetched.content, (page, asset)
    finally:
        await gateway.stop()
