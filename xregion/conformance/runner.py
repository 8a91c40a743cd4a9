"""Runs the conformance kit against a receiver on a NATS server, and judges every outcome.

The receiver under test plays ``TJ`` with the kit's keys (any implementation: the xregion
adapter, or one written from the documents). It consumes the durable consumer ``region-TJ``
of the stream ``XREGION`` (declared as the README's topology says) and dead-letters into
``XREGION_DLQ``. The runner plays every other party: it publishes each case's exact bytes on
its subject with its headers, one at a time, into a stream that held nothing before, and waits
until the receiver's consumer has settled it (acknowledged or terminated: nothing pending,
nothing awaiting acknowledgement). Then it judges, from what is on the server alone:

* ``delivered``: no dead letter names the message's stream sequence; each expected answer is
  in ``XREGION`` — an event of TJ whose ``causationid`` is the case's event id, of the expected
  type and ``data``, addressed to the case's sender, with its ``subject`` and
  ``correlationid``, signed with TJ's key of the kit's roster;
* ``dead_letter``: one dead letter on ``xregion.dlq.TJ.<code>`` whose ``Xregion-Stream-Seq``
  is the message's, with ``Xregion-Reason-Code`` the expected code, ``Xregion-Event-Id`` the
  expected id (absent when none is expected) and the original bytes; and, for a security
  code, a security alert on ``xregion.alert.TJ.<code>`` naming that stream sequence, signed
  by TJ.

At the end, when the stream has stopped growing, TJ must have published nothing but the
expected answers, and raised no other alert.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from xregion.runtime.alerts import read_security_alerts
from xregion.runtime.deadletter import read_dead_letters
from xregion.signing import KeyRoster

KIT_ROOT = Path(__file__).resolve().parents[2] / "schemas" / "conformance"


@dataclass(frozen=True)
class Kit:
    """A kit as committed: its cases and the receiver's roster."""

    root: Path
    cases: list[dict[str, Any]]
    receiver: dict[str, Any]
    roster: KeyRoster

    @classmethod
    def load(cls, root: Path = KIT_ROOT) -> Kit:
        document = json.loads((root / "cases.json").read_text(encoding="utf-8"))
        receiver = document["receiver"]
        roster = KeyRoster.load(root / receiver["keys_dir"] / "roster.json")
        return cls(root, document["cases"], receiver, roster)

    def body(self, case: dict[str, Any]) -> bytes:
        return (self.root / str(case["body"])).read_bytes()


@dataclass
class Outcome:
    """What happened to one case, and whether it is what the kit expects."""

    name: str
    expected: str
    got: str = "nothing"
    problems: list[str] = field(default_factory=list)
    stream_seq: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def _sender(wire: dict[str, Any]) -> str:
    return str(wire.get("source", "")).split(":")[2] if str(wire.get("source", "")).count(":") >= 3 else ""


def _time(wire: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(wire["time"]).replace("Z", "+00:00"))


class Runner:
    """One run of a kit against the receiver behind ``js``."""

    def __init__(self, js: JetStreamContext, kit: Kit, *, timeout_s: float = 15.0) -> None:
        self.js = js
        self.kit = kit
        self.timeout_s = timeout_s
        self.party = str(kit.receiver["party"])
        self.stream = str(kit.receiver["stream"])
        self.dlq = str(kit.receiver["dead_letter_stream"])
        self.consumer = str(kit.receiver["consumer"])
        self._read_up_to = 0
        self._answers: dict[str, list[dict[str, Any]]] = {}
        """TJ's events in the stream, by the id their ``causationid`` names."""

    async def run(self) -> list[Outcome]:
        info = await self.js.stream_info(self.stream)
        if info.state.messages:
            raise RuntimeError(
                f"stream {self.stream} holds {info.state.messages} messages: the kit runs against a fresh stream"
            )
        await self.js.consumer_info(self.stream, self.consumer)  # the receiver's durable exists
        outcomes = [await self._one(case) for case in self.kit.cases]
        await self._idle()
        await self._read_stream()
        expected_answers = {
            c["expect"]["event_id"]
            for c in self.kit.cases
            if c["expect"]["outcome"] == "delivered" and c["expect"]["answers"]
        }
        final = Outcome("end-of-run", "nothing but the expected answers and alerts")
        unexpected = sorted(set(self._answers) - expected_answers)
        if unexpected:
            final.problems.append(
                f"{self.party} published events answering {unexpected}: the kit expects no such answer"
            )
        alerted = {str(a.record.get("stream_seq")) for a in await read_security_alerts(self.js, self.dlq, self.party)}
        wanted = {str(o.stream_seq) for o, c in zip(outcomes, self.kit.cases, strict=True) if c["expect"].get("alert")}
        if alerted - wanted:
            final.problems.append(
                f"security alerts for stream messages {sorted(alerted - wanted)} the kit expects none for"
            )
        final.got = "ok" if final.ok else "problems"
        return [*outcomes, final]

    async def _one(self, case: dict[str, Any]) -> Outcome:
        expect = case["expect"]
        outcome = Outcome(case["name"], expect["outcome"] + (f" {expect['code']}" if "code" in expect else ""))
        body = self.kit.body(case)
        ack = await self.js.publish(
            case["subject"], body, stream=self.stream, headers=dict(case["headers"]), timeout=5.0
        )
        if ack.duplicate:
            outcome.problems.append("the server dropped the message as a duplicate: the stream is not fresh")
            return outcome
        outcome.stream_seq = seq = int(ack.seq)
        if not await self._settled(seq):
            outcome.problems.append(
                f"{self.party}'s consumer did not settle stream message {seq} in {self.timeout_s:g} s"
            )
            return outcome
        letters = [x for x in await read_dead_letters(self.js, self.dlq, self.party) if x.stream_seq == seq]
        if expect["outcome"] == "dead_letter":
            self._judge_dead_letter(outcome, letters, expect, body)
            if expect.get("alert") and not outcome.problems:
                await self._judge_alert(outcome, seq, expect["code"])
        else:
            if letters:
                outcome.got = f"dead_letter {letters[0].code}"
                outcome.problems.append(f"dead-lettered {letters[0].code}: {letters[0].reason.get('message', '')}")
                return outcome
            outcome.got = "delivered"
            event = json.loads(body)
            for answer in expect["answers"]:
                await self._judge_answer(outcome, event, answer)
        return outcome

    def _judge_dead_letter(self, outcome: Outcome, letters: list[Any], expect: dict[str, Any], body: bytes) -> None:
        if not letters:
            outcome.got = "delivered"
            outcome.problems.append(f"not dead-lettered (expected {expect['code']})")
            return
        letter = letters[0]
        outcome.got = f"dead_letter {letter.code}"
        if len(letters) > 1:
            outcome.problems.append(f"{len(letters)} dead letters for one message")
        if letter.code != expect["code"]:
            outcome.problems.append(f"reason {letter.code}, expected {expect['code']}")
        if letter.event_id != expect.get("event_id"):
            outcome.problems.append(f"Xregion-Event-Id {letter.event_id!r}, expected {expect.get('event_id')!r}")
        if letter.body != body:
            outcome.problems.append("the dead letter does not hold the original bytes")

    async def _judge_alert(self, outcome: Outcome, seq: int, code: str) -> None:
        deadline = time.monotonic() + self.timeout_s
        while True:
            found = [
                a
                for a in await read_security_alerts(self.js, self.dlq, self.party)
                if a.record.get("stream_seq") == seq
            ]
            if found:
                break
            if time.monotonic() > deadline:
                outcome.problems.append(f"no security alert for stream message {seq}")
                return
            await asyncio.sleep(0.05)
        alert = found[0]
        if alert.code != code or alert.subject != f"xregion.alert.{self.party}.{code}":
            outcome.problems.append(f"alert {alert.subject} with code {alert.code}, expected code {code}")
        try:
            alert.verify(self.kit.roster)
        except Exception as exc:
            outcome.problems.append(f"the alert's signature does not verify: {exc}")

    async def _judge_answer(self, outcome: Outcome, event: dict[str, Any], answer: dict[str, Any]) -> None:
        deadline = time.monotonic() + self.timeout_s
        while not self._answers.get(event["id"]):
            if time.monotonic() > deadline:
                outcome.problems.append(f"no {answer['type']} answering {event['id']} within {self.timeout_s:g} s")
                return
            await asyncio.sleep(0.05)
            await self._read_stream()
        found = self._answers[event["id"]]
        if len(found) != 1:
            outcome.problems.append(f"{len(found)} answers to {event['id']}, expected one {answer['type']}")
        wire = found[0]
        family, name = answer["type"].split(".", 1)
        checks = {
            "type": (wire.get("type"), f"cn.jjj.xregion.{family}.{name}.v1"),
            "sender": (_sender(wire), answer["from"]),
            "addressee": (wire.get("addressee"), answer["to"]),
            "subject": (wire.get("subject"), event["subject"]),
            "correlationid": (wire.get("correlationid"), event["correlationid"]),
            "data": (wire.get("data"), answer["data"]),
        }
        for what, (got, wanted) in checks.items():
            if got != wanted:
                outcome.problems.append(f"answer {wire.get('id')}: {what} {got!r}, expected {wanted!r}")
        try:
            key = self.kit.roster.verify(wire, answer["from"], _time(wire))
            if key.party != answer["from"]:
                outcome.problems.append(f"answer {wire.get('id')} signed by {key.party}")
        except Exception as exc:
            outcome.problems.append(f"answer {wire.get('id')}: signature does not verify: {exc}")
        outcome.got = f"delivered, answered {answer['type']}"

    async def _settled(self, seq: int) -> bool:
        """The receiver's consumer has delivered stream message ``seq`` and holds nothing
        unacknowledged (an acknowledged or terminated message is settled)."""
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            info = await self.js.consumer_info(self.stream, self.consumer)
            if info.delivered.stream_seq >= seq and not info.num_ack_pending and not info.num_pending:
                return True
            await asyncio.sleep(0.02)
        return False

    async def _read_stream(self) -> None:
        """Index the receiver's events that arrived in the stream since the last read."""
        last = (await self.js.stream_info(self.stream)).state.last_seq
        for seq in range(self._read_up_to + 1, last + 1):
            try:
                msg = await self.js.get_msg(self.stream, seq)
            except NotFoundError:
                continue
            try:
                wire = json.loads(msg.data or b"")
            except ValueError:
                continue
            if isinstance(wire, dict) and _sender(wire) == self.party:
                cause = wire.get("causationid")
                self._answers.setdefault(cause if isinstance(cause, str) else "(none)", []).append(wire)
        self._read_up_to = max(self._read_up_to, last)

    async def _idle(self, quiet_s: float = 1.0) -> None:
        """Wait until the stream has not grown for ``quiet_s`` (the receiver's last answers are out)."""
        deadline = time.monotonic() + self.timeout_s
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            now = (await self.js.stream_info(self.stream)).state.last_seq
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return
            await asyncio.sleep(0.05)


async def run_kit(js: JetStreamContext, kit: Kit | None = None, *, timeout_s: float = 15.0) -> list[Outcome]:
    """Run ``kit`` (default: the committed one) against the receiver behind ``js``."""
    return await Runner(js, kit or Kit.load(), timeout_s=timeout_s).run()
