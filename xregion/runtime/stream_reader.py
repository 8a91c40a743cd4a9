"""Reading a stream in sequence order by batched direct get, creating no consumer.

A read model that owns its position (ARCHITECTURE §7) asks the stream for "up to K
messages from sequence N" and folds them; it never creates a consumer and never shares
one with another reader. The request is JetStream's batched direct get (ADR-31,
nats-server ≥ 2.11; the stream needs ``allow_direct``)::

    PUB $JS.API.DIRECT.GET.<stream> <reply>   {"seq": N, "batch": K, "max_bytes": B}
                                              (or "start_time" instead of "seq";
                                               "next_by_subj" filters by subject)

The server answers on ``<reply>`` with up to K stored messages in sequence order —
deleted sequences are stepped over —, each with the headers ``Nats-Stream``,
``Nats-Subject``, ``Nats-Sequence``, ``Nats-Time-Stamp`` (RFC 3339, UTC),
``Nats-Num-Pending`` (messages after this one) and ``Nats-Last-Sequence`` (the previous
message of the batch, 0 for the first), then an end-of-batch status ``204 EOB`` with
``Nats-Num-Pending`` and ``Nats-Last-Sequence``. Nothing at or after N answers
``404 Message Not Found`` (the end of the stream); a stream that does not exist or does
not allow direct gets has no responder (``503``); a request the server never sees (a
permission violation on the request subject, the server away) gets no answer at all.
Checked against nats-server 2.15.1 (``server/stream.go``: ``getDirectRequest``).

The reply subject is under the connection's own inbox prefix (``_INBOX_<PARTY>`` on the
secured broker), one token per request: an answer to a request that timed out is dropped.
The only permissions a reader needs are ``$JS.API.DIRECT.GET.<stream>`` (and
``$JS.API.STREAM.INFO.<stream>`` for :meth:`StreamReader.last_seq`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import NotFoundError

from xregion.errors import XRegionError
from xregion.runtime.restores import RestoreMark

DIRECT_GET = "$JS.API.DIRECT.GET.{stream}"
DEFAULT_BATCH = 500
DEFAULT_MAX_BYTES = 8 * 1024 * 1024


class StreamReadError(XRegionError):
    """A stream could not be read by direct get."""

    code = "stream_read_failed"


class StreamUnavailable(StreamReadError):
    """No responder: the stream does not exist or does not allow direct gets."""

    code = "stream_unavailable"


class StreamReadTimeout(StreamReadError):
    """No answer in time: the request was not allowed (permissions) or the server is away."""

    code = "stream_read_timeout"


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One message as the stream holds it."""

    seq: int
    subject: str
    data: bytes
    stored_at: datetime
    pending: int
    """Messages after this one (matching the filter) when it was read."""
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Batch:
    """The answer to one request: the messages, and how many came after the last one."""

    messages: list[StoredMessage]
    pending: int

    @property
    def last_seq(self) -> int | None:
        return self.messages[-1].seq if self.messages else None


def parse_time(text: str) -> datetime:
    """``Nats-Time-Stamp`` (RFC 3339 with nanoseconds, ``Z``) as an aware UTC datetime."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class _Request:
    messages: list[StoredMessage] = field(default_factory=list)
    done: asyncio.Future[int] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class StreamReader:
    """Reads ``stream`` by sequence over ``nc`` (a connected nats-py client).

    ``async with StreamReader(nc, "XREGION") as reader:`` then :meth:`fetch` (one batch
    from a sequence) or :meth:`read` (every message from a sequence, in order, the next
    batch requested while the current one is consumed).
    """

    def __init__(
        self,
        nc: Any,
        stream: str,
        *,
        batch: int = DEFAULT_BATCH,
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout: float = 5.0,
        filter_subject: str | None = None,
    ) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self.nc = nc
        self.stream = stream
        self.batch = batch
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.filter_subject = filter_subject
        self._sub: Any = None
        self._inbox = ""
        self._next = 0
        self._requests: dict[str, _Request] = {}

    async def open(self) -> StreamReader:
        if self._sub is None:
            self._inbox = self.nc.new_inbox()
            self._sub = await self.nc.subscribe(f"{self._inbox}.*", cb=self._on_message)
        return self

    async def close(self) -> None:
        for request in self._requests.values():
            if not request.done.done():
                request.done.cancel()
        self._requests.clear()
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    async def __aenter__(self) -> StreamReader:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- the protocol -----------------------------------------------------------------

    async def _on_message(self, msg: Any) -> None:
        token = msg.subject.rsplit(".", 1)[-1]
        request = self._requests.get(token)
        if request is None or request.done.done():
            return  # the answer to a request that timed out or was abandoned
        headers = msg.headers or {}
        status = headers.get("Status")
        if status is None:
            try:
                message = StoredMessage(
                    seq=int(headers["Nats-Sequence"]),
                    subject=headers.get("Nats-Subject", ""),
                    data=msg.data or b"",
                    stored_at=parse_time(headers["Nats-Time-Stamp"]),
                    pending=int(headers.get("Nats-Num-Pending", 0)),
                    headers=headers,
                )
            except (KeyError, ValueError) as exc:
                request.done.set_exception(
                    StreamReadError(f"direct get on {self.stream}: an answer without {exc}", stream=self.stream)
                )
                return
            request.messages.append(message)
        elif status == "204":  # end of batch
            request.done.set_result(int(headers.get("Nats-Num-Pending", 0)))
        elif status == "404":  # nothing at or after the sequence: the end of the stream
            request.done.set_result(0)
        elif status == "503":
            request.done.set_exception(
                StreamUnavailable(
                    f"stream {self.stream} does not exist or does not allow direct gets (allow_direct); "
                    "the operator declares it (`xregion ops apply-topology`)",
                    stream=self.stream,
                )
            )
        else:
            description = headers.get("Description", "")
            request.done.set_exception(
                StreamReadError(f"direct get on {self.stream}: {status} {description}".strip(), stream=self.stream)
            )

    async def fetch(self, start_seq: int = 1, *, start_time: datetime | None = None, limit: int | None = None) -> Batch:
        """Up to ``limit`` (default: the batch size) messages at or after ``start_seq`` (or
        stored at or after ``start_time``), in order; an empty batch at the end of the stream."""
        await self.open()
        body: dict[str, Any] = {"batch": max(1, min(limit or self.batch, self.batch)), "max_bytes": self.max_bytes}
        if start_time is not None:
            body["start_time"] = start_time.astimezone(UTC).isoformat().replace("+00:00", "Z")
        else:
            body["seq"] = max(1, start_seq)
        if self.filter_subject:
            body["next_by_subj"] = self.filter_subject
        self._next += 1
        token = str(self._next)
        request = _Request()
        self._requests[token] = request
        try:
            await self.nc.publish(
                DIRECT_GET.format(stream=self.stream), json.dumps(body).encode(), reply=f"{self._inbox}.{token}"
            )
            try:
                async with asyncio.timeout(self.timeout):
                    pending = await request.done
            except TimeoutError:
                raise StreamReadTimeout(
                    f"no answer to a direct get on stream {self.stream} within {self.timeout}s: is the server "
                    f"reachable, and may this identity publish $JS.API.DIRECT.GET.{self.stream}?",
                    stream=self.stream,
                ) from None
        finally:
            self._requests.pop(token, None)
        return Batch(request.messages, pending)

    async def read(
        self,
        start_seq: int = 1,
        *,
        start_time: datetime | None = None,
        until_seq: int | None = None,
    ) -> AsyncIterator[StoredMessage]:
        """Every message from ``start_seq`` (or ``start_time``) up to ``until_seq`` (default:
        what the stream holds when the read reaches its end), in sequence order."""

        def limit(after: int) -> int | None:
            if until_seq is None or self.filter_subject:
                return None
            return until_seq - after

        if until_seq is not None and start_time is None and start_seq > until_seq:
            return
        ahead: asyncio.Future[Batch] | None = asyncio.ensure_future(
            self.fetch(start_seq, start_time=start_time, limit=limit(start_seq - 1))
        )
        try:
            while ahead is not None:
                batch = await ahead
                ahead = None
                last = batch.last_seq
                if last is None:
                    return
                if batch.pending > 0 and (until_seq is None or last < until_seq):
                    ahead = asyncio.ensure_future(self.fetch(last + 1, limit=limit(last)))
                for message in batch.messages:
                    if until_seq is not None and message.seq > until_seq:
                        return
                    yield message
        finally:
            if ahead is not None and not ahead.done():
                ahead.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await ahead

    async def last_seq(self) -> int:
        """The stream's last sequence now (``$JS.API.STREAM.INFO.<stream>``)."""
        return (await self.bounds())[1]

    async def bounds(self) -> tuple[int, int, int]:
        """(first seq, last seq, messages) of the stream now."""
        state = (await self._info()).state
        return int(state.first_seq or 0), int(state.last_seq or 0), int(state.messages or 0)

    async def restore_mark(self) -> RestoreMark | None:
        """The mark of the stream's last restore from a backup, if it was restored
        (:mod:`xregion.runtime.restores`)."""
        return RestoreMark.of((await self._info()).config.metadata)

    @property
    def reconnects(self) -> int:
        """How often the connection was re-established (a new server may hold another stream)."""
        return int(self.nc.stats.get("reconnects", 0))

    async def _info(self) -> Any:
        try:
            info = await self.nc.jetstream().stream_info(self.stream)
        except NotFoundError:
            raise StreamUnavailable(f"stream {self.stream} does not exist", stream=self.stream) from None
        except (NatsTimeoutError, TimeoutError):
            raise StreamReadTimeout(
                f"no answer to the stream info request for {self.stream}: is the server reachable, and may "
                f"this identity publish $JS.API.STREAM.INFO.{self.stream}?",
                stream=self.stream,
            ) from None
        return info


__all__ = [
    "Batch",
    "StoredMessage",
    "StreamReadError",
    "StreamReadTimeout",
    "StreamReader",
    "StreamUnavailable",
    "parse_time",
]
