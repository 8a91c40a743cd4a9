"""The typed Python API a regional system uses to speak on the bus.

Every call returns once the event is durably in the adapter's outbox (validated, chained,
signed); the relay publishes it. Errors are specific: a
:class:`~xregion.errors.ContractError` names the field, a
:class:`~xregion.errors.LifecycleError` names state, event and sender.
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import tempfile
from collections.abc import Callable
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path
from typing import Any

import structlog
from nats.js import JetStreamContext
from nats.js.errors import ObjectNotFoundError

from xregion.codec import DecodedEvent
from xregion.compose import compose_validated
from xregion.contracts.catalog import Catalog
from xregion.contracts.common import AttachmentRef, Contract
from xregion.deadlines import RESUMES, DeadlinePolicy, beijing_date
from xregion.errors import ContractError, HandlingRestricted, UnknownReferral
from xregion.ids import new_referral_id
from xregion.lifecycle import LIFECYCLES, ReferralState, Role
from xregion.permissions import BusNames
from xregion.runtime.evidence import Evidence
from xregion.runtime.outbox import Outbox
from xregion.runtime.store import HistoryEntry, Store

CHUNK = 1024 * 1024

log = structlog.get_logger("xregion.client")


def system_clock() -> datetime:
    return datetime.now(UTC)


class AttachmentMismatch(ContractError):
    code = "attachment_invalid"


class RegionClient:
    """Send events as one region; read this region's view of its referrals."""

    def __init__(
        self,
        *,
        region: str,
        agency: str,
        outbox: Outbox,
        store: Store,
        catalog: Catalog,
        deadlines: DeadlinePolicy,
        jetstream: JetStreamContext | None = None,
        object_store: str = "XREGION_EVIDENCE",
        clock: Callable[[], datetime] = system_clock,
    ) -> None:
        self.region = region
        self.agency = agency
        self._outbox = outbox
        self._store = store
        self._catalog = catalog
        self._deadlines = deadlines
        self._js = jetstream
        self._object_store = object_store
        self.clock = clock
        """What stamps an event's ``time`` (and so the day its ``answerby`` counts from)."""

    # --- sending ------------------------------------------------------------------------

    async def open(
        self,
        event_type: str,
        *,
        to: str,
        data: Contract | dict[str, Any],
        referral_id: str | None = None,
        agency: str | None = None,
        handling: str = "H0",
        handling_note: str | None = None,
        answer_by: date | None = None,
        correlation_id: str | None = None,
        version: int = 1,
    ) -> DecodedEvent:
        """Open a referral: ``lead.submitted``, ``assist.requested``, ``recognition.published``
        or a ``share.*`` broadcast (``to="ALL"``)."""
        family, event = event_type.split(".", 1)
        if LIFECYCLES[family].role_of(event) is not Role.ORIGIN or event not in LIFECYCLES[family].openings:
            raise ContractError(f"{event_type} does not open a referral; use send()", type=event_type)
        return await self._submit(
            event_type,
            data,
            to=to,
            referral_id=referral_id or new_referral_id(self.region),
            agency=agency,
            handling=handling,
            handling_note=handling_note,
            answer_by=answer_by,
            correlation_id=correlation_id,
            causation_id=None,
            version=version,
        )

    async def send(
        self,
        referral_id: str,
        event_type: str,
        data: Contract | dict[str, Any],
        *,
        agency: str | None = None,
        causation_id: str | None = None,
        handling: str = "H0",
        handling_note: str | None = None,
        answer_by: date | None = None,
        version: int = 1,
    ) -> DecodedEvent:
        """Send the next event of a referral this region takes part in; the addressee is
        derived from the referral (origin ↔ addressee), the ``correlationid`` is the one its
        opening event carries, the ``causationid`` the id of the latest event of the referral
        this region recorded, unless ``causation_id`` names another (docs/signing-recipe.md §9)."""
        state = await self.referral(referral_id)
        if state is None:
            raise UnknownReferral(f"referral {referral_id} is unknown to {self.region}", referral_id=referral_id)
        to = state.addressee if state.origin == self.region else state.origin
        correlation_id = await self._store.lookup(partial(_correlation_of, referral_id=referral_id))
        return await self._submit(
            event_type,
            data,
            to=to,
            referral_id=referral_id,
            agency=agency,
            handling=handling,
            handling_note=handling_note,
            answer_by=answer_by,
            correlation_id=correlation_id,
            causation_id=causation_id or state.last_event_id,
            version=version,
        )

    async def _submit(
        self,
        event_type: str,
        data: Contract | dict[str, Any],
        *,
        to: str,
        referral_id: str,
        agency: str | None,
        handling: str,
        handling_note: str | None,
        answer_by: date | None,
        correlation_id: str | None,
        causation_id: str | None,
        version: int,
    ) -> DecodedEvent:
        family, event = event_type.split(".", 1)
        kind = self._catalog.get(family, event, version)
        now = self.clock()
        due = answer_by or await self._answer_by(event_type, referral_id, to, beijing_date(now))
        unsigned, payload = compose_validated(
            kind,
            data,
            sender=self.region,
            agency=agency or self.agency,
            to=to,
            referral_id=referral_id,
            correlation_id=correlation_id,
            causation_id=causation_id,
            handling=handling,
            handling_note=handling_note,
            answer_by=due,
            time=now,
            registry=self._outbox.registry,
        )
        sent = await self._outbox.submit(unsigned, payload)
        env = sent.envelope
        log.info(
            "event submitted",
            region=self.region,
            event_id=env.id,
            referral_id=env.subject,
            type=env.event_type,
            to=env.addressee,
            handling=env.handling,
        )
        return sent

    async def _answer_by(self, event_type: str, referral_id: str, to: str, sent_on: date) -> date | None:
        """The ``answerby`` this region signs when the caller chose none (the one deadline every
        party uses, :mod:`xregion.deadlines`): a resumed clock's tolled date, else the configured
        period counted on the configured calendar from ``sent_on`` (the Beijing date)."""
        paused_by = RESUMES.get(event_type)
        if paused_by is None:
            return self._deadlines.default_answer_by(event_type, sent_on)
        found = await self._store.read(partial(_clock_to_resume, referral_id=referral_id, to=to, paused_by=paused_by))
        if found is None:
            log.warning("no signed deadline to toll", region=self.region, referral_id=referral_id, type=event_type)
            return None
        due, paused_on = found
        return self._deadlines.tolled(due, paused_on, sent_on)

    async def forward_lead(self, referral_id: str, to_region: str, reason: str) -> tuple[DecodedEvent, DecodedEvent]:
        """Forward a lead addressed to this region to a third region: ``lead.forwarded`` on the
        original and a new, linked ``lead.submitted``, committed together.

        The new lead carries the original's handling codes (and note), and its personal data
        sealed anew to ``to_region``. A lead marked H2 needs the origin's ``permission_granted``
        for ``onward_sharing`` to ``to_region`` first (ask with ``lead.permission_requested``);
        without it :class:`~xregion.errors.HandlingRestricted` is raised and nothing is sent.
        """
        submitted = await self._store.read(
            lambda db: db.execute(
                "SELECT payload FROM inbox WHERE referral_id = ? AND event_type = 'lead.submitted'",
                (referral_id,),
            ).fetchone()
        )
        if submitted is None:
            raise UnknownReferral(f"no lead.submitted of {referral_id} in {self.region}'s inbox")
        original = json.loads(submitted[0])  # as signed: its personal data sealed to this region
        model = self._catalog.by_ce_type(original["type"]).model
        data = self._outbox.sealing.open(model, original["data"], original.get("id"))
        data["forwarded_from"] = {"referral_id": referral_id, "region": self.region}
        new_id = new_referral_id(self.region)
        try:
            async with self._store.transaction():
                forwarded = await self.send(
                    referral_id,
                    "lead.forwarded",
                    {"to_region": to_region, "new_referral_id": new_id, "reason": reason},
                )
                opened = await self.open(
                    "lead.submitted",
                    to=to_region,
                    data=data,
                    referral_id=new_id,
                    handling=original.get("handling", "H0"),
                    handling_note=original.get("handlingnote"),
                    correlation_id=original.get("correlationid", referral_id),
                )
        except HandlingRestricted as exc:
            log.warning(
                "forward refused by handling code",
                region=self.region,
                referral_id=referral_id,
                reason_code=exc.code,
                handling=exc.details.get("handling"),
                target_region=to_region,
            )
            raise
        return forwarded, opened

    # --- reading ------------------------------------------------------------------------

    async def referral(self, referral_id: str) -> ReferralState | None:
        return await self._store.referral(referral_id)

    async def referrals(self) -> list[ReferralState]:
        return await self._store.referrals()

    async def history(self, referral_id: str) -> list[HistoryEntry]:
        return await self._store.history(referral_id)

    # --- attachments --------------------------------------------------------------------

    def _evidence(self) -> Evidence:
        if self._js is None:
            raise RuntimeError("attachments need a connected adapter")
        return Evidence(self._js, BusNames(object_store=self._object_store))

    async def attach(self, source: Path | bytes, *, filename: str, media_type: str) -> AttachmentRef:
        """Store a file (any size; streamed) in this region's evidence bucket under its
        SHA-256; the receivers of an event carrying the reference read it there."""
        evidence = self._evidence()
        digest, size = hashlib.sha256(), 0
        if isinstance(source, bytes):
            digest.update(source)
            size = len(source)
        else:
            with source.open("rb") as fh:
                while chunk := fh.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
        name = digest.hexdigest()
        try:
            stored = await evidence.info(self.region, name)
            exists = stored.sha256 == name and stored.size == size and not stored.deleted
        except ObjectNotFoundError:
            exists = False
        if not exists:
            if isinstance(source, bytes):
                await evidence.put(self.region, name, io.BytesIO(source))
            else:
                with source.open("rb") as fh:
                    await evidence.put(self.region, name, fh)
        return AttachmentRef(object_name=name, filename=filename, media_type=media_type, size=size, sha256=name)

    async def download(self, ref: AttachmentRef, dest: Path, *, owner: str) -> Path:
        """Fetch an attachment from ``owner``'s bucket (the region that sent the event carrying
        ``ref``) to ``dest``, keeping it only if its SHA-256 and size are the reference's."""
        evidence = self._evidence()
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False) as tmp:
            tmp_path = Path(tmp.name)
            try:
                size, digest = await evidence.read_into(owner, ref.object_name, tmp.file)
            except BaseException:
                tmp.close()
                tmp_path.unlink(missing_ok=True)
                raise
        if digest != ref.sha256 or size != ref.size:
            tmp_path.unlink(missing_ok=True)
            raise AttachmentMismatch(
                f"attachment {ref.object_name}: got {size} bytes sha256 {digest}, "
                f"expected {ref.size} bytes sha256 {ref.sha256}",
                object_name=ref.object_name,
            )
        tmp_path.replace(dest)
        return dest


def _clock_to_resume(db: sqlite3.Connection, *, referral_id: str, to: str, paused_by: str) -> tuple[date, date] | None:
    """(the last ``answerby`` this region signed to ``to`` on the referral, the Beijing date of
    the latest ``paused_by`` event that stopped that clock), or None if either is unknown."""
    pause = db.execute(
        "SELECT time FROM history WHERE referral_id = ? AND event_type = ? ORDER BY position DESC LIMIT 1",
        (referral_id, paused_by),
    ).fetchone()
    if pause is None:
        return None
    rows = db.execute(
        "SELECT payload FROM outbox WHERE referral_id = ? AND addressee = ? ORDER BY seq DESC", (referral_id, to)
    )
    for (payload,) in rows:
        signed = json.loads(payload).get("answerby")
        if isinstance(signed, str):
            return date.fromisoformat(signed), beijing_date(datetime.fromisoformat(pause[0]))
    return None


def _correlation_of(db: sqlite3.Connection, *, referral_id: str) -> str | None:
    """The ``correlationid`` of the referral's opening event (its first history entry, in this
    region's outbox or inbox), which every later event of the referral carries as well; None
    if the store does not hold it (the referral id is used then)."""
    first = db.execute(
        "SELECT event_id FROM history WHERE referral_id = ? ORDER BY position LIMIT 1", (referral_id,)
    ).fetchone()
    if first is None:
        return None
    found = db.execute(
        "SELECT json_extract(CAST(payload AS TEXT), '$.correlationid') FROM outbox WHERE event_id = ? "
        "UNION ALL SELECT json_extract(CAST(payload AS TEXT), '$.correlationid') FROM inbox WHERE event_id = ?",
        (first[0], first[0]),
    ).fetchone()
    return found[0] if found is not None and isinstance(found[0], str) else None
