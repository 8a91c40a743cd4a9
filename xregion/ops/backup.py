"""Backing up and restoring the bus's streams online, through JetStream's snapshot API.

The event stream is evidence, so its backup must come back exactly: same messages, same
stream sequence numbers, same durable consumers (each region resumes where it stood). The
server's own snapshot does that (``$JS.API.STREAM.SNAPSHOT.<stream>``: the stream's blocks
and consumer states, as the S2-compressed tar the server writes; ``$JS.API.STREAM.RESTORE``
rebuilds the stream from it) while the stream keeps taking writes. nats-py has no call for
it, so this module speaks the protocol (as the NATS CLI's ``nats stream backup|restore``):

* backup: ask for a snapshot delivered to an inbox of ours; the server sends chunks, each
  acknowledged by an empty reply (its flow control); an empty message ends it, or carries
  an error status;
* restore: ask to restore with the stream's configuration and state; the server answers
  with a subject to send chunks to, each one a request it acknowledges; an empty request
  ends it and is answered with the restored stream's information, or an error.

A backup is a directory per stream: ``stream.tar.s2`` (the snapshot, as the server sent it)
and ``backup.json`` (what the server said of the stream when the snapshot began, and the
size and SHA-256 of ``stream.tar.s2``). A restore checks size and SHA-256 before it sends
anything, so a damaged backup is refused whole, never half restored. Afterwards, audit the
restored stream (``xregion audit replay``): signatures and hash chains show whether any
event was lost, altered or reordered.

The connection needs the operator's permissions (``ADMIN``): ``$JS.API.>`` and the
snapshot's flow subjects ``$JS.SNAPSHOT.>``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from xregion.errors import BackupError
from xregion.permissions import BusNames
from xregion.runtime.restores import RestoreMark
from xregion.runtime.settings import RuntimeSettings

DATA_FILE = "stream.tar.s2"
META_FILE = "backup.json"
CHUNK_BYTES = 128 * 1024
"""Snapshot chunk size asked of the server, and restore chunk size sent to it."""
REPLY_TIMEOUT_S = 30.0
"""How long a chunk (or the server's answer to a step) may take before the backup fails."""
API = "$JS.API.STREAM"


@dataclass(frozen=True)
class StreamBackup:
    """What ``backup.json`` holds of one stream's backup."""

    stream: str
    taken_at: str
    messages: int
    first_seq: int
    last_seq: int
    consumers: int
    size: int
    sha256: str
    config: dict[str, Any]
    state: dict[str, Any]

    @classmethod
    def read(cls, directory: Path) -> StreamBackup:
        """The backup in ``directory``, its data checked against its size and SHA-256.

        Raises :class:`~xregion.errors.BackupError` naming what is missing or damaged."""
        meta_path, data_path = directory / META_FILE, directory / DATA_FILE
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            backup = cls(**meta)
        except FileNotFoundError:
            raise BackupError(f"{meta_path} is missing: not a stream backup", path=str(meta_path)) from None
        except (ValueError, TypeError) as exc:
            raise BackupError(f"{meta_path} is not a stream backup's description: {exc}", path=str(meta_path)) from None
        if not data_path.is_file():
            raise BackupError(f"{data_path} is missing", path=str(data_path))
        size, digest = _size_and_digest(data_path)
        if (size, digest) != (backup.size, backup.sha256):
            raise BackupError(
                f"{data_path} is damaged: {size} bytes with SHA-256 {digest}, the backup recorded "
                f"{backup.size} bytes with SHA-256 {backup.sha256}; nothing was restored",
                path=str(data_path),
                expected=backup.sha256,
                found=digest,
            )
        return backup


def _size_and_digest(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as data:
        while chunk := data.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


async def _request(nc: Any, subject: str, payload: bytes, what: str, stream: str, timeout: float) -> dict[str, Any]:
    """Ask the server, and read its JSON answer (:func:`_answer`); no answer is an error too."""
    from nats.errors import NoRespondersError
    from nats.errors import TimeoutError as NatsTimeoutError

    try:
        reply = await nc.request(subject, payload, timeout=timeout)
    except (NatsTimeoutError, TimeoutError, NoRespondersError) as exc:
        raise BackupError(
            f"{what} of {stream}: no answer from the server within {timeout:.0f}s on {subject} "
            f"({type(exc).__name__}: JetStream down, or an identity without the operator's "
            "permissions $JS.API.> and $JS.SNAPSHOT.>)",
            stream=stream,
        ) from None
    return _answer(reply.data, what, stream)


def _answer(raw: bytes, what: str, stream: str) -> dict[str, Any]:
    """The JSON answer of the JetStream API, or :class:`BackupError` with the server's words."""
    try:
        answer: dict[str, Any] = json.loads(raw) if raw else {}
    except ValueError:
        raise BackupError(f"{what} of {stream}: the server answered {raw[:200]!r}", stream=stream) from None
    error = answer.get("error")
    if error:
        raise BackupError(
            f"{what} of {stream} refused by the server: {error.get('description', error)} "
            f"(code {error.get('code')}, err_code {error.get('err_code')})",
            stream=stream,
            server_error=error,
        )
    return answer


async def backup_stream(nc: Any, stream: str, directory: Path, *, consumers: bool = True) -> StreamBackup:
    """Snapshot ``stream`` (with its durable consumers unless told not to) into ``directory``.

    ``directory`` must not hold a backup already. The stream keeps taking writes meanwhile;
    the backup holds what it held when the snapshot began (``messages`` .. ``last_seq``)."""
    if (directory / META_FILE).exists() or (directory / DATA_FILE).exists():
        raise BackupError(f"{directory} already holds a backup; choose a new directory", path=str(directory))
    directory.mkdir(parents=True, exist_ok=True)
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)  # before the request: the first chunk may follow at once
    data_path = directory / DATA_FILE
    partial = data_path.with_suffix(".partial")
    try:
        request = {"deliver_subject": inbox, "no_consumers": not consumers, "chunk_size": CHUNK_BYTES}
        payload = json.dumps(request).encode()
        answer = await _request(nc, f"{API}.SNAPSHOT.{stream}", payload, "backup", stream, REPLY_TIMEOUT_S)
        digest = hashlib.sha256()
        size = 0
        with partial.open("wb") as out:
            while True:
                try:
                    msg = await sub.next_msg(timeout=REPLY_TIMEOUT_S)
                except TimeoutError:
                    raise BackupError(
                        f"backup of {stream}: no data from the server for {REPLY_TIMEOUT_S:.0f}s after {size} bytes",
                        stream=stream,
                    ) from None
                if not msg.data:
                    status = (msg.headers or {}).get("Status")
                    if status not in (None, "", "204"):
                        description = (msg.headers or {}).get("Description", "")
                        failed = f"backup of {stream} failed on the server: {status} {description}"
                        raise BackupError(failed, stream=stream)
                    break
                out.write(msg.data)
                digest.update(msg.data)
                size += len(msg.data)
                if msg.reply:
                    await nc.publish(msg.reply, b"")  # flow control: the server waits for these
            out.flush()
            os.fsync(out.fileno())  # on disk before it is named a backup
        partial.replace(data_path)
    finally:
        await sub.unsubscribe()
        partial.unlink(missing_ok=True)
    state = answer.get("state") or {}
    backup = StreamBackup(
        stream=stream,
        taken_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        messages=int(state.get("messages", 0)),
        first_seq=int(state.get("first_seq", 0)),
        last_seq=int(state.get("last_seq", 0)),
        consumers=int(state.get("consumer_count", 0)) if consumers else 0,
        size=size,
        sha256=digest.hexdigest(),
        config=answer.get("config") or {},
        state=state,
    )
    (directory / META_FILE).write_text(json.dumps(asdict(backup), indent=2, ensure_ascii=False) + "\n", "utf-8")
    return backup


async def restore_stream(nc: Any, directory: Path) -> dict[str, Any]:
    """Restore the stream backed up in ``directory`` (under its own name, which must not
    exist on the server); the server's information on the restored stream.

    The backup is checked whole first (:meth:`StreamBackup.read`)."""
    return await _send(nc, directory, StreamBackup.read(directory))


async def _send(nc: Any, directory: Path, backup: StreamBackup) -> dict[str, Any]:
    """Restore ``backup`` (already checked) from ``directory``, its configuration carrying the
    restore mark (:mod:`xregion.runtime.restores`): readers learn from the stream itself, the
    moment it exists again, which of the events they remember it no longer holds."""
    stream = backup.stream
    mark = RestoreMark(datetime.now(UTC).isoformat(), int(backup.state.get("last_seq", backup.last_seq)))
    config = {**backup.config, "metadata": {**(backup.config.get("metadata") or {}), **mark.metadata()}}
    request = {"config": config, "state": backup.state}
    payload = json.dumps(request).encode()
    answer = await _request(nc, f"{API}.RESTORE.{stream}", payload, "restore", stream, REPLY_TIMEOUT_S)
    deliver = answer.get("deliver_subject")
    if not deliver:
        raise BackupError(f"restore of {stream}: the server named no subject to send the backup to", stream=stream)
    with (directory / DATA_FILE).open("rb") as data:
        while chunk := data.read(CHUNK_BYTES):
            await _request(nc, deliver, chunk, "restore", stream, REPLY_TIMEOUT_S)
    info = await _request(nc, deliver, b"", "restore", stream, max(REPLY_TIMEOUT_S, backup.size / 20e6))
    restored_last = int((info.get("state") or {}).get("last_seq", mark.last_seq))
    if restored_last != mark.last_seq:  # the snapshot held another end than its description: the stream's word
        mark = RestoreMark(mark.restored_at, restored_last)
        config = {**info.get("config", config), "metadata": {**(config.get("metadata") or {}), **mark.metadata()}}
        info = await _request(nc, f"{API}.UPDATE.{stream}", json.dumps(config).encode(), "restore", stream, 30.0)
    return info


def bus_streams(settings: RuntimeSettings, regions: Iterable[str]) -> tuple[str, ...]:
    """The streams a backup of the bus holds: events, dead letters, each region's evidence."""
    names = BusNames(settings.stream, settings.dead_letter_stream, settings.object_store)
    return (names.stream, names.dead_letter_stream, *(names.object_stream(r) for r in regions))


def backups_in(directory: Path) -> list[Path]:
    """``directory`` itself if it holds one stream's backup, else its sub-directories that do."""
    if (directory / META_FILE).exists():
        return [directory]
    found = sorted(p for p in directory.iterdir() if (p / META_FILE).exists()) if directory.is_dir() else []
    if not found:
        raise BackupError(f"{directory} holds no stream backup ({META_FILE} not found)", path=str(directory))
    return found


async def backup_streams(nc: Any, streams: tuple[str, ...], out: Path) -> list[StreamBackup]:
    """:func:`backup_stream` of each of ``streams`` into ``out/<stream>``."""
    return [await backup_stream(nc, stream, out / stream) for stream in streams]


async def restore_streams(nc: Any, directory: Path) -> list[dict[str, Any]]:
    """Restore every stream backed up in ``directory`` (:func:`backups_in`). All are checked
    first — every backup whole, no stream of theirs on the server — so that a damaged backup
    or an existing stream means nothing is restored, never a part."""
    checked = [(place, StreamBackup.read(place)) for place in backups_in(directory)]
    existing = [backup.stream for _, backup in checked if await _exists(nc, backup.stream)]
    if existing:
        raise BackupError(
            f"{', '.join(existing)} already {'exists' if len(existing) == 1 else 'exist'} on the server; "
            "nothing was restored (restore into a "
            "server without them, or delete the damaged streams first)",
            streams=existing,
        )
    return [await _send(nc, place, backup) for place, backup in checked]


async def _exists(nc: Any, stream: str) -> bool:
    try:
        await _request(nc, f"{API}.INFO.{stream}", b"", "restore", stream, REPLY_TIMEOUT_S)
    except BackupError as exc:
        if (exc.details.get("server_error") or {}).get("code") == 404:
            return False
        raise
    return True
