"""The assessment from the running coordinator's projection, and the same assessment rebuilt from
the stream into a new store by ``xregion report assessment --nats-url … --store new.db``: the
same figures, the same stream sequence range and digest, on a real nats-server."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.assessment_scenario import PARTIES, PERIOD, build, publish
from tests.bus import Bus, eventually
from tests.support import dev_roster, dev_signers, write_keys_dir
from xregion.coordinator.assessment import Period, assess
from xregion.coordinator.service import Coordinator
from xregion.dashboard.run import declare_streams

pytestmark = pytest.mark.anyio

XREGION = Path(sys.executable).parent / "xregion"


async def run_cli(*args: str, timeout: float = 60.0) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(XREGION), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(timeout):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def figures(doc: dict[str, Any]) -> dict[str, Any]:
    doc["source"].pop("store")
    doc["source"].pop("generated")
    return doc


async def test_rebuilt_from_the_stream_the_figures_are_the_same(bus: Bus, tmp_path: Path) -> None:
    signers = dev_signers(PARTIES)
    keys_dir = write_keys_dir(tmp_path / "keys", signers, dev_roster(signers))
    scenario = build()
    coordinator = Coordinator(
        nats_url=bus.server.url,
        keys_dir=keys_dir,
        store_path=tmp_path / "coordinator.db",
        settings=bus.settings,
        escalate_every_s=0.0,  # the scenario carries COORD's notices; this one sends none
    )
    await declare_streams(coordinator)  # an open development server: as `xregion dashboard` does
    await coordinator.start()
    try:
        nc = await bus.raw()
        try:
            last = await publish(nc.jetstream(), bus.settings.stream, scenario)
        finally:
            await nc.close()

        async def folded() -> bool:
            return coordinator.projection.last_seq() >= last

        await eventually(folded, 15.0, "the coordinator to fold the scenario")
        live = assess(coordinator.projection, Period(*PERIOD)).to_json(tracks=True)
    finally:
        await coordinator.stop()

    csv_path, html_path = tmp_path / "a.csv", tmp_path / "a.html"
    code, out, err = await run_cli(
        "report",
        "assessment",
        "--nats-url",
        bus.server.url,
        "--keys-dir",
        str(keys_dir),
        "--store",
        str(tmp_path / "rebuilt.db"),
        "--from",
        PERIOD[0].isoformat(),
        "--to",
        PERIOD[1].isoformat(),
        "--tracks",
        "--json",
        "-",
        "--csv",
        str(csv_path),
        "--html",
        str(html_path),
    )
    assert code == 0, err
    rebuilt = json.loads(out)
    assert figures(rebuilt) == figures(live)
    assert rebuilt["source"]["position"] == last and rebuilt["source"]["anomalies"] == {"illegal_transition": 1}
    assert rebuilt["per_region"]["HE"]["received"]["all"]["late"] == 1  # R2, as pinned in tests/unit
    assert csv_path.read_bytes().startswith(b"\xef\xbb\xbf") and "考核评估报告" in html_path.read_text("utf-8")
    assert "wrote" in err and str(csv_path) in err
