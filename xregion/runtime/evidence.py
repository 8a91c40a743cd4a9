"""Evidence attachments: one JetStream object store bucket per region, written only by it.

A region stores a file in *its own* bucket (``<object_store>_<REGION>``, see
:meth:`~xregion.permissions.BusNames.evidence_bucket`) under the file's SHA-256; an event's
:class:`~xregion.contracts.common.AttachmentRef` points into its sender's bucket, so the
receiver looks there and nowhere else. The server lets only the owner publish into a bucket
(``$O.<bucket>.>``) and nobody but the operator purge or delete: another region can neither
overwrite an object's metadata nor mark it deleted.

Reading uses direct gets only (the object's metadata by subject, then its chunks in order,
``next_by_subj``): nats-py's ``ObjectStore.get`` reads through an ordered push consumer,
whose create request names a ``deliver_subject`` the server would publish into — a right no
party has (:mod:`xregion.permissions`).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from dataclasses import dataclass
from typing import IO, Any

from nats.errors import NoRespondersError
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError, ObjectNotFoundError, ServiceUnavailableError

from xregion.permissions import BusNames

META_PREFIX = "$O.{bucket}.M.{name}"
CHUNK_PREFIX = "$O.{bucket}.C.{nuid}"


@dataclass(frozen=True)
class StoredObject:
    """What the owner's bucket says of one object: size, SHA-256 (hex) and chunk subject."""

    name: str
    size: int
    sha256: str | None
    nuid: str
    deleted: bool


def digest_of_info(info: Any) -> str | None:
    """The hex SHA-256 of an object from its NATS object-store info (``SHA-256=<base64url>``)."""
    raw = getattr(info, "digest", None) or ""
    if not raw.upper().startswith("SHA-256="):
        return None
    b64 = raw.split("=", 1)[1]
    return base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).hex()


class Evidence:
    """The evidence buckets of a bus, as one party sees them through ``js``."""

    def __init__(self, js: JetStreamContext, names: BusNames) -> None:
        self.js = js
        self.names = names

    def _stream(self, owner: str) -> str:
        return self.names.object_stream(owner)

    async def info(self, owner: str, name: str) -> StoredObject:
        """The object ``name`` in ``owner``'s bucket; :class:`ObjectNotFoundError` if absent."""
        bucket = self.names.evidence_bucket(owner)
        meta = META_PREFIX.format(bucket=bucket, name=base64.urlsafe_b64encode(name.encode()).decode())
        try:
            msg = await self.js.get_msg(self._stream(owner), subject=meta, direct=True)
        except (NotFoundError, NoRespondersError, ServiceUnavailableError):
            # no such object, or no such bucket (a party without evidence, a forged owner)
            raise ObjectNotFoundError from None
        info = api.ObjectInfo.from_response(_json(msg.data or b""))
        return StoredObject(name, int(info.size or 0), digest_of_info(info), str(info.nuid or ""), bool(info.deleted))

    async def put(self, owner: str, name: str, source: io.BufferedIOBase) -> None:
        """Store ``source`` as ``name`` in ``owner``'s bucket (the caller's own; the server
        refuses any other)."""
        obs = await self.js.object_store(self.names.evidence_bucket(owner))
        await obs.put(name, source)

    async def read_into(self, owner: str, name: str, sink: IO[bytes]) -> tuple[int, str]:
        """Copy the object's chunks to ``sink`` in order; (bytes written, their hex SHA-256)."""
        stored = await self.info(owner, name)
        if stored.deleted:
            raise ObjectNotFoundError
        subject = CHUNK_PREFIX.format(bucket=self.names.evidence_bucket(owner), nuid=stored.nuid)
        digest, size, seq = hashlib.sha256(), 0, 1
        while size < stored.size:
            msg = await self.js.get_msg(self._stream(owner), seq=seq, subject=subject, direct=True, next=True)
            data = msg.data or b""
            sink.write(data)
            digest.update(data)
            size += len(data)
            seq = int(msg.seq or 0) + 1
        return size, digest.hexdigest()


def _json(data: bytes) -> dict[str, Any]:
    value = json.loads(data)
    if not isinstance(value, dict):
        raise ValueError("object metadata is not a JSON object")
    return value
