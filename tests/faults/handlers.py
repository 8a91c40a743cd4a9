"""Regional handlers for the fault tests, importable by ``xregion adapter run --handler``.

``record_effect`` writes one row per handled event into an ``effects`` table of the
adapter's own database, through ``delivery.tx`` (so the row commits atomically with the
inbox record, or not at all). The table deliberately has NO uniqueness constraint: an
effect applied twice shows up as two rows instead of being hidden by a conflict.

Environment (read on every call, so a subprocess picks it up from its environment):

``XREGION_FAULT_HANDLER_DELAY_S``  seconds to sleep inside the handler (after the effect
                                   is written, before the transaction commits), so that a
                                   SIGKILL lands mid-handling. Default 0.
``XREGION_FAULT_TRACE``            a file to which every handler *invocation* appends the
                                   event id (outside the transaction: it survives a
                                   rollback), to show that events really were re-handled.
"""

from __future__ import annotations

import asyncio
import os

from xregion.runtime.consumer import Delivery

EFFECTS_DDL = (
    "CREATE TABLE IF NOT EXISTS effects ("
    " event_id TEXT NOT NULL, event_type TEXT NOT NULL, origin TEXT NOT NULL,"
    " originseq INTEGER NOT NULL, linkseq INTEGER NOT NULL, causation_id TEXT,"
    " stream_seq INTEGER NOT NULL, delivery_count INTEGER NOT NULL)"
)


async def record_effect(delivery: Delivery) -> None:
    env = delivery.event.envelope
    trace = os.environ.get("XREGION_FAULT_TRACE")
    if trace:
        with open(trace, "a", encoding="ascii") as fh:
            fh.write(env.id + "\n")
    await delivery.tx.execute(EFFECTS_DDL)
    await delivery.tx.execute(
        "INSERT INTO effects (event_id, event_type, origin, originseq, linkseq, causation_id,"
        " stream_seq, delivery_count) VALUES (?,?,?,?,?,?,?,?)",
        (
            env.id,
            env.event_type,
            env.sender,
            env.originseq,
            env.linkseq,
            env.causationid,
            delivery.stream_seq,
            delivery.delivery_count,
        ),
    )
    delay = float(os.environ.get("XREGION_FAULT_HANDLER_DELAY_S", "0") or 0)
    if delay > 0:
        await asyncio.sleep(delay)
