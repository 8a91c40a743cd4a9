"""The consumer checks signatures and opens sealed fields in its inspecting thread, off the
event loop, and still refuses what does not verify (the loop checks every negative again)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.bus import Bus, eventually
from xregion.examples import PAYLOADS
from xregion.sealing import FieldSealing, is_sealed, sensitive_values
from xregion.signing import KeyRoster

pytestmark = pytest.mark.anyio


async def test_signatures_and_sealed_fields_are_handled_off_the_event_loop(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    where: dict[str, set[str]] = {"verify": set(), "open": set()}
    verify, open_ = KeyRoster.verify, FieldSealing.open

    def recording_verify(self: KeyRoster, *args: Any, **kwargs: Any) -> Any:
        where["verify"].add(threading.current_thread().name)
        return verify(self, *args, **kwargs)

    def recording_open(self: FieldSealing, *args: Any, **kwargs: Any) -> Any:
        where["open"].add(threading.current_thread().name)
        return open_(self, *args, **kwargs)

    monkeypatch.setattr(KeyRoster, "verify", recording_verify)
    monkeypatch.setattr(FieldSealing, "open", recording_open)
    bj, _tj = await bus.start("BJ", "TJ")
    sent = await bj.client.open("lead.submitted", to="TJ", data=PAYLOADS["lead.submitted"])
    await eventually(lambda: _received(bus, sent.envelope.id), what="TJ handled the lead")

    assert any(name.startswith("inspect-TJ") for name in where["verify"])
    assert any(name.startswith("inspect-TJ") for name in where["open"])
    assert threading.main_thread().name not in where["verify"]  # the loop never had to redo it
    delivered = bus.received["TJ"][0].event
    sensitive = sensitive_values(delivered.event_type.model, delivered.envelope.data)
    assert sensitive and not any(is_sealed(value) for _, value in sensitive)  # the handler sees them opened


async def _received(bus: Bus, event_id: str) -> bool:
    return any(d.event.envelope.id == event_id for d in bus.received.get("TJ", []))
