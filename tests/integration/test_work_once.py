"""Each event's work is done once per path (issue 17): the payload validated once on the way
out and once on the way in, the event canonicalised once by its sender and not again by its
addressee (who must check that the bytes are canonical: bytes that are their own canonical
form are proven so as they are read, :func:`xregion.codec.parse_stored`), the inbox keeping
the bytes that arrived. Counted, not timed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from tests.bus import Bus
from tests.integration.helpers import quiesce
from xregion import codec, jcs, signing
from xregion.contracts.catalog import CATALOG
from xregion.examples import PAYLOADS

pytestmark = pytest.mark.anyio

LEAD = CATALOG.get("lead", "submitted").model


def counting(monkeypatch: pytest.MonkeyPatch, calls: Counter[str]) -> None:
    """Count validations of the lead's payload model and canonical forms of whole events."""
    validate = LEAD.model_validate.__func__  # type: ignore[attr-defined]

    def model_validate(cls: Any, obj: Any, *args: Any, **kwargs: Any) -> Any:
        if cls is LEAD:
            calls["validate lead payload"] += 1
        return validate(cls, obj, *args, **kwargs)

    monkeypatch.setattr(LEAD, "model_validate", classmethod(model_validate))
    dumps: Callable[[Any], bytes] = jcs.dumps

    def counted(obj: Any) -> bytes:
        if isinstance(obj, dict) and "data" in obj and str(obj.get("type", "")).endswith("lead.submitted.v1"):
            calls["canonical lead event"] += 1
        return dumps(obj)

    monkeypatch.setattr(jcs, "dumps", counted)


async def test_outbound_validates_and_canonicalises_once(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    await bus.start("BJ")
    calls: Counter[str] = Counter()
    counting(monkeypatch, calls)
    sent = await bus.adapters["BJ"].client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    assert calls == {"validate lead payload": 1, "canonical lead event": 1}
    row = await bus.adapters["BJ"].store.read(
        lambda db: db.execute("SELECT payload, hash FROM outbox WHERE event_id = ?", (sent.envelope.id,)).fetchone()
    )
    assert bytes(row[0]) == signing.canonical(sent.wire)
    assert row[1] == signing.event_hash(sent.wire)
    assert sent.payload.suspects[1].name == "张某"  # type: ignore[attr-defined]


async def test_inbound_validates_and_canonicalises_once(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    await bus.start("BJ", "TJ")
    tj = bus.adapters["TJ"]
    assert tj.consumer is not None
    judged: list[Counter[str]] = []
    process = tj.consumer.process

    async def counted(msgs: list[Any]) -> None:
        calls: Counter[str] = Counter()
        with monkeypatch.context() as patch:
            counting(patch, calls)
            await process(msgs)
        judged.append(calls)

    tj.consumer.process = counted  # type: ignore[method-assign]
    sent = await bus.adapters["BJ"].client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    await bus.state("TJ", sent.envelope.subject, "received")
    await quiesce(bus)
    assert sum(judged, Counter()) == {"validate lead payload": 1}  # no canonical form written again
    row = await tj.store.read(
        lambda db: db.execute("SELECT payload FROM inbox WHERE event_id = ?", (sent.envelope.id,)).fetchone()
    )
    assert bytes(row[0]) == codec.encode(sent.wire)  # the bytes that arrived: the canonical form
