"""Submitting events: validate, seal personal data, take the next place in the origin's
chain, sign, store.

Sensitive (``x-sensitive``) fields are sealed to the addressee region's keys (every other
region's, for a broadcast) before signing, so the outbox, the stream and everyone but the
addressee hold only ciphertext (:mod:`xregion.sealing`); the caller gets the event back
opened, with its plain payload.

:meth:`Outbox.submit` does all of it in one store transaction, so an event is either
durably in the outbox with its sequence number and signature, or nowhere; the caller gets
the event back only after the commit. The relay publishes it afterwards.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import Any

from xregion.codec import DecodedEvent, encode, step_of
from xregion.compose import seal
from xregion.contracts.catalog import Catalog
from xregion.lifecycle import LIFECYCLES
from xregion.regions import BROADCAST, RegionRegistry
from xregion.runtime.store import HistoryEntry, Store
from xregion.sealing import FieldSealing
from xregion.signing import Signer, event_hash


class Outbox:
    def __init__(
        self,
        store: Store,
        signer: Signer,
        *,
        catalog: Catalog,
        registry: RegionRegistry,
        sealing: FieldSealing,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.signer = signer
        self.catalog = catalog
        self.registry = registry
        self.sealing = sealing
        self.on_commit = on_commit

    async def submit(self, unsigned: dict[str, Any]) -> DecodedEvent:
        """Store ``unsigned`` (from :func:`xregion.compose.compose`) as this origin's next event.

        Raises a :class:`~xregion.errors.ContractError` or
        :class:`~xregion.errors.LifecycleError` (nothing stored) when it is not valid.
        """
        async with self.store.transaction() as tx:
            decoded = await tx.run(lambda db: self._append(db, unsigned))
        self.on_commit()
        return decoded

    def _append(self, db: sqlite3.Connection, unsigned: dict[str, Any]) -> DecodedEvent:
        head = Store.outbox_head(db)
        version = int(unsigned["type"].rsplit(".v", 1)[1])
        link = Store.link_head(db, unsigned["addressee"], version)
        decoded = seal(
            self._sealed(unsigned),
            seq=head.seq + 1,
            prevhash=head.hash,
            linkseq=link.seq + 1,
            linkprev=link.hash,
            signer=self.signer,
            catalog=self.catalog,
            registry=self.registry,
        ).opened(unsigned["data"], self.registry)
        env = decoded.envelope
        previous = Store.load_referral(db, env.subject)
        state = LIFECYCLES.apply(previous, step_of(decoded))
        db.execute(
            "INSERT INTO outbox (seq, event_id, subject, referral_id, event_type, addressee, link_seq, "
            "payload, hash, created_at) VALUES (?,?,?,?,?,?,?,?,?,datetime('now'))",
            (
                env.originseq,
                env.id,
                decoded.subject,
                env.subject,
                env.event_type,
                env.addressee,
                env.linkseq,
                encode(decoded.wire),
                event_hash(decoded.wire),
            ),
        )
        after = state.tracks.get(env.sender, state.state) if state.tracks else state.state
        Store.save_referral(
            db,
            state,
            HistoryEntry(env.id, env.event_type, env.sender, env.addressee, decoded.wire["time"], after),
            env.answerby.isoformat() if env.answerby else None,
        )
        return decoded

    def _sealed(self, unsigned: dict[str, Any]) -> dict[str, Any]:
        """``unsigned`` with its personal data sealed to the region(s) it is addressed to."""
        model = self.catalog.by_ce_type(unsigned["type"]).model
        to = unsigned["addressee"]
        regions = self.registry.others(self.signer.party) if to == BROADCAST else (to,)
        at = datetime.fromisoformat(unsigned["time"])
        return {**unsigned, "data": self.sealing.seal(model, unsigned["data"], regions, at)}
