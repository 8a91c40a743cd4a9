"""The benchmark's second process: the consuming side of its publish → consume pipelines.

Each region runs its own adapter, on its own machine in production; the benchmark runs the
addressee (TJ) in a child process so that it does not share the sender's interpreter (and its
GIL) any more than a deployment would, and, for a like-for-like baseline, the raw pipeline's
pull consumer too. Both ends of the line protocol are here:

* ``python -m xregion.bench.child adapter NATS_URL WORKDIR REGION [profile]`` runs ``REGION``'s adapter
  (:func:`serve_adapter`). stdout: ``ready`` once its consumer runs; ``committed <t> <id> …``
  after each batch its consumer committed and acked; ``published`` in answer to the stdin
  command ``publish`` (everything the adapter submitted, its receipts, is published);
  ``profiling`` in answer to ``profile-start`` and ``profile <json>`` to ``profile-stop``
  (:mod:`xregion.bench.profile`, the process's CPU by stage in between). End of stdin stops
  the adapter.
* ``python -m xregion.bench.child raw NATS_URL STREAM DURABLE SUBJECT COUNT`` pulls and acks
  ``COUNT`` messages (:func:`consume_raw`). stdout: ``ready`` once its pull consumer exists,
  ``done <t>`` when the last one is acked.

``t`` is :func:`time.perf_counter`, the monotonic clock on Linux and macOS, one for all
processes of the machine: the parent subtracts its own readings from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xregion.bench.profile import Sampler, install
from xregion.bench.raw import fetch_all, pull_subscription

if TYPE_CHECKING:
    from xregion.adapter import Adapter

CONNECT_TIMEOUT_S = 10.0
"""How long the raw consumer may take to connect before the child gives up, saying why."""


class Commits:
    """When each event's batch was committed (and acked) by the addressee's consumer."""

    def __init__(self, on_commit: Callable[[float, list[str]], None] = lambda at, ids: None) -> None:
        self.pending: list[str] = []
        self.at: dict[str, float] = {}
        self.changed = asyncio.Event()
        self.on_commit = on_commit
        self.ended: str | None = None
        """Why no more commits will come (the process reporting them ended), if so."""

    async def handler(self, delivery: Any) -> None:
        self.pending.append(delivery.event.envelope.id)

    def wrap(self, process: Callable[[list[Any]], Awaitable[None]]) -> Callable[[list[Any]], Awaitable[None]]:
        """``process`` (a consumer's batch), stamping the events it handled once it returns."""

        async def timed(msgs: list[Any]) -> None:
            await process(msgs)
            ids, self.pending = self.pending, []
            self.record(time.perf_counter(), ids)

        return timed

    def record(self, at: float, ids: list[str]) -> None:
        for event_id in ids:
            self.at[event_id] = at
        self.changed.set()
        self.on_commit(at, ids)

    async def wait_for(self, count: int, timeout: float) -> None:
        deadline = time.perf_counter() + timeout
        while len(self.at) < count:
            if self.ended is not None:
                raise RuntimeError(f"only {len(self.at)} of {count} events handled: {self.ended}")
            self.changed.clear()
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError(f"only {len(self.at)} of {count} events handled within {timeout:.0f}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), timeout=min(left, 1.0))


def bench_adapter(region: str, nats_url: str, workdir: Path, store: str, handler: Any = None) -> Adapter:
    """An adapter of ``region`` over the keys in ``workdir/keys``, its store ``workdir/store``."""
    from xregion.adapter import Adapter
    from xregion.config import load_config
    from xregion.keys import load_roster, load_signer
    from xregion.runtime.settings import RuntimeSettings

    keys = workdir / "keys"
    extra = {"handler": handler} if handler is not None else {}
    return Adapter(
        region,
        signer=load_signer(keys, region),
        roster=load_roster(keys),
        nats_url=nats_url,
        store_path=workdir / store,
        config=load_config(),
        settings=RuntimeSettings(data_dir=workdir),
        **extra,
    )


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _commands() -> AsyncIterator[str]:
    """The lines of stdin, until it ends."""
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        yield line.strip()


async def serve_adapter(nats_url: str, workdir: Path, region: str, profile: bool = False) -> None:
    """Run ``region``'s adapter, reporting its commits, until stdin ends (with ``profile``,
    every thread profiled from the start: :mod:`xregion.bench.profile`)."""
    import structlog

    if profile:
        install()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # as the parent
    commits = Commits(lambda at, ids: _say(" ".join(["committed", repr(at), *ids])))
    adapter = await bench_adapter(region, nats_url, workdir, f"e2e-{region}.db", commits.handler).start()
    try:
        assert adapter.consumer is not None
        adapter.consumer.process = commits.wrap(adapter.consumer.process)  # type: ignore[method-assign,assignment]
        _say("ready")
        sampler: Sampler | None = None
        async for command in _commands():
            if command == "publish":
                await adapter.wait_published(timeout=60.0)
                _say("published")
            elif command == "profile-start":
                sampler = Sampler().start()
                _say("profiling")
            elif command == "profile-stop" and sampler is not None:
                _say("profile " + json.dumps(sampler.stop().to_json()))
                sampler = None
    finally:
        await adapter.stop()


async def consume_raw(nats_url: str, stream: str, durable: str, subject: str, count: int) -> None:
    """Pull and ack ``count`` messages of ``subject``, saying when the last one is acked."""
    import nats

    failures: list[str] = []

    async def remember(exc: Exception) -> None:
        failures.append(f"{type(exc).__name__}: {exc}")

    try:  # nats-py retries a first connection for ever: bound it, say why it failed
        nc = await asyncio.wait_for(nats.connect(nats_url, error_cb=remember), timeout=CONNECT_TIMEOUT_S)
    except TimeoutError:
        raise SystemExit(f"cannot connect to {nats_url}: {failures[-1] if failures else 'timed out'}") from None
    try:
        sub = await pull_subscription(nc.jetstream(), stream, durable, subject)
        _say("ready")
        await fetch_all(sub, count)
        _say(f"done {time.perf_counter()!r}")
    finally:
        await nc.close()


class Child:
    """A child process of this module, seen from the parent: its lines, its commits."""

    def __init__(self, *args: str, log: Path) -> None:
        self.args = args
        self.log = log
        self.commits = Commits()
        self.lines: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.process: asyncio.subprocess.Process | None = None
        self.reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Child:
        with self.log.open("wb") as errors:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", __name__, *self.args,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=errors,
            )  # fmt: skip
        self.reader = asyncio.create_task(self._read())
        try:
            await self.expect("ready", timeout=60.0)
        except BaseException:
            await self.__aexit__()  # reap it: ``async with`` does not when entering fails
            raise
        return self

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := (await self.process.stdout.readline()).decode():
            word, _, rest = line.strip().partition(" ")
            if word == "committed":
                at, *ids = rest.split()
                self.commits.record(float(at), ids)
            else:
                await self.lines.put((word, rest))
        self.commits.ended = f"the child process ended: {self._last_errors()}"
        self.commits.changed.set()
        await self.lines.put(("exited", ""))

    def _last_errors(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""

    async def expect(self, word: str, timeout: float) -> str:
        """The rest of the child's next line, which must start with ``word``."""
        got, rest = await asyncio.wait_for(self.lines.get(), timeout=timeout)
        if got != word:
            raise RuntimeError(f"the benchmark's child process said {got!r}, not {word!r}: {self._last_errors()}")
        return rest

    async def wait_published(self) -> None:
        """Until the child adapter's own submissions (its receipts) are all published."""
        await self.command("publish", "published", timeout=90.0)

    async def command(self, command: str, answer: str, timeout: float = 30.0) -> str:
        """Send ``command`` to the child; the rest of its answer, a line starting ``answer``."""
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()
        return await self.expect(answer, timeout=timeout)

    async def __aexit__(self, *exc: object) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), timeout=30.0)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        if self.reader is not None:
            await self.reader


def main(argv: list[str]) -> None:
    if argv[:1] == ["adapter"] and len(argv) in (4, 5) and argv[4:] in ([], ["profile"]):
        asyncio.run(serve_adapter(argv[1], Path(argv[2]), argv[3], profile=argv[4:] == ["profile"]))
    elif argv[:1] == ["raw"] and len(argv) == 6:
        asyncio.run(consume_raw(argv[1], argv[2], argv[3], argv[4], int(argv[5])))
    else:
        raise SystemExit(f"usage: see {__name__}'s docstring; got {argv}")


if __name__ == "__main__":
    main(sys.argv[1:])
