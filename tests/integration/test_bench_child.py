"""The benchmark's second process: it reports what it consumed, and its failures reach the
parent as errors (with the child's own output), never as a hang."""

from __future__ import annotations

from pathlib import Path

import pytest

from xregion.bench.child import Child
from xregion.bench.raw import RAW_STREAM, publish_all, raw_stream
from xregion.ops.server import EmbeddedServer, free_port

pytestmark = pytest.mark.anyio


async def test_raw_consumer_reports_when_the_last_message_is_acked(nats_server: EmbeddedServer, tmp_path: Path) -> None:
    import nats

    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await raw_stream(js, RAW_STREAM, "bench.raw.>")
        args = ("raw", nats_server.url, RAW_STREAM, "child-test", "bench.raw.t", "250")
        async with Child(*args, log=tmp_path / "raw.log") as child:
            await publish_all(js, "bench.raw.t", 250)
            done = float(await child.expect("done", timeout=60.0))
        assert done > 0
        info = await js.consumer_info(RAW_STREAM, "child-test")
        assert info.num_ack_pending == 0 and info.num_pending == 0
        assert info.delivered.stream_seq == 250
    finally:
        await nc.close()


async def test_a_child_that_cannot_start_is_an_error_with_its_output(tmp_path: Path) -> None:
    dead = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(RuntimeError, match="said 'exited', not 'ready'") as caught:
        async with Child("raw", dead, RAW_STREAM, "d", "bench.raw.t", "1", log=tmp_path / "raw.log"):
            pass
    assert "cannot connect to" in str(caught.value)  # the child's own words reach the parent


async def test_wrong_arguments_are_refused_with_usage(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="usage"):
        async with Child("nonsense", log=tmp_path / "x.log"):
            pass
