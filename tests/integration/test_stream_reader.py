"""The stream reader (batched direct get) against a real nats-server: order and batches,
deleted sequences stepped over, the end of the stream, start time, filter, until, and clear
errors for a missing stream and an unanswered request."""

from __future__ import annotations

import json
from datetime import timedelta

import nats
import pytest

from xregion.ops.server import EmbeddedServer
from xregion.runtime.stream_reader import StreamReader, StreamReadTimeout, StreamUnavailable

pytestmark = pytest.mark.anyio


async def test_reads_in_order_across_gaps_to_the_end(nats_server: EmbeddedServer) -> None:
    nc = await nats.connect(nats_server.url, inbox_prefix="_INBOX_COORD")
    try:
        js = nc.jetstream()
        await js.add_stream(name="S", subjects=["s.>"], allow_direct=True)
        for i in range(1, 26):
            await js.publish(f"s.{'a' if i % 2 else 'b'}", json.dumps(i).encode(), headers={"Nats-Msg-Id": str(i)})
        for seq in (3, 4, 10, 25):
            await js.delete_msg("S", seq)
        wanted = [i for i in range(1, 26) if i not in (3, 4, 10, 25)]
        async with StreamReader(nc, "S", batch=4) as reader:
            got = [m async for m in reader.read(1)]
            assert [m.seq for m in got] == wanted and [json.loads(m.data) for m in got] == wanted
            assert got[0].subject == "s.a" and got[0].headers["Nats-Msg-Id"] == "1" and got[-1].pending == 0
            batch = await reader.fetch(9)
            assert [m.seq for m in batch.messages] == [9, 11, 12, 13] and batch.pending == 11  # 14..24
            assert (await reader.fetch(25)).messages == []  # past the end: empty, no error
            assert [m.seq async for m in reader.read(5, until_seq=9)] == [5, 6, 7, 8, 9]
            later = got[10].stored_at - timedelta(microseconds=1)
            assert [m.seq async for m in reader.read(start_time=later)] == wanted[10:]
            assert await reader.last_seq() == 25
        async with StreamReader(nc, "S", batch=3, filter_subject="s.b") as odd:
            assert [m.seq async for m in odd.read(1)] == [i for i in wanted if i % 2 == 0]
    finally:
        await nc.close()


async def test_a_missing_stream_and_an_unanswered_request_are_named(nats_server: EmbeddedServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        async with StreamReader(nc, "NOPE") as reader:
            with pytest.raises(StreamUnavailable, match="NOPE"):
                await reader.fetch(1)
            with pytest.raises(StreamUnavailable):
                await reader.last_seq()
        await nc.subscribe("$JS.API.DIRECT.GET.SILENT")  # someone listens, nobody answers
        await nc.flush()
        async with StreamReader(nc, "SILENT", timeout=0.5) as reader:
            with pytest.raises(StreamReadTimeout, match=r"DIRECT\.GET\.SILENT"):
                await reader.fetch(1)
    finally:
        await nc.close()
