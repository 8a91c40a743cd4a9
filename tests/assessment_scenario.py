"""A fixed three-region scenario with known dates, for the assessment's tests.

Signed, chained events of BJ, TJ, HE and COORD (TEST-ONLY keys of :mod:`tests.support`),
around the 2026 Mid-Autumn and National Day holidays: 25-27 September and 1-7 October are
holidays; Sunday 20 September and Saturday 10 October are adjusted working days (调休).
Every ``answerby`` is the date a sender's adapter signs: the configured period (lead 10,
assist 15, recognition 20, blacklist 3 days) counted in working days from the event's
Beijing date; the tolled lead's ``lead.info_supplied`` signs the addressee's new date.

==  ==========================  ===========  =================================================
R1  lead BJ→TJ                  14 Sep (Mon)  due 28 Sep; received 14 Sep, accepted 16 Sep,
                                              concluded 9 Oct; TJ's repeated ``accepted`` on
                                              12 Oct is refused (the scenario's one anomaly)
R2  lead TJ→HE                  22 Sep (Tue)  due 13 Oct; received 22 Sep; **accepted late**
                                              15 Oct; COORD's overdue notice to HE 14 Oct
R3  lead BJ→TJ                  21 Sep (Mon)  due 12 Oct; received 21 Sep; TJ asks for
                                              information 23 Sep, BJ supplies it 13 Oct: **tolled**
                                              to 23 Oct; accepted 22 Oct (on time)
R4  assist HE→BJ                28 Sep (Mon)  due 23 Oct; received 28 Sep, accepted 29 Sep,
                                              still open at 31 Oct (overdue); COORD's overdue
                                              notice to BJ 26 Oct; completed 3 Nov (after the period)
R5  recognition TJ→ALL          8 Oct (Thu)   due 4 Nov; BJ received 8 Oct, recognised 9 Oct;
                                              HE received 8 Oct, contested 12 Oct
R6  blacklist BJ→ALL            9 Oct (Fri)   due 13 Oct; TJ acknowledged after 2 h, HE on
                                              Saturday 10 Oct (a working day) after 24 h
R7  blacklist HE→ALL            27 Oct (Tue)  due 30 Oct; BJ acknowledged after 1 h; TJ never
R8  lead HE→TJ                  19 Oct (Mon)  received 19 Oct; withdrawn by HE 20 Oct
R9  lead BJ→HE                  2 Nov (Mon)   after the period
==  ==========================  ===========  =================================================

Times are 10:00 Beijing time unless said otherwise; each message reaches the stream two
seconds after its ``time``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from tests.support import OriginChain, dev_signers, example_event, example_payload
from xregion.codec import DecodedEvent, encode
from xregion.coordinator.escalation import COORDINATOR_AGENCY, escalation_id
from xregion.ids import new_referral_id
from xregion.subjects import build as build_subject

PERIOD = (date(2026, 9, 14), date(2026, 10, 31))
PARTIES = ("BJ", "TJ", "HE", "COORD")


def beijing(day: date, hour: int = 10, minute: int = 0) -> datetime:
    """``hour:minute`` Beijing time (UTC+8) on ``day``, as a UTC datetime."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC) - timedelta(hours=8)


def d(month: int, day: int) -> date:
    return date(2026, month, day)


@dataclass
class Scenario:
    """Sealed events in stream order: ``messages`` are (wire, stream seq, stored at)."""

    chains: dict[str, OriginChain] = field(
        default_factory=lambda: {p: OriginChain(s) for p, s in dev_signers(PARTIES).items()}
    )
    ids: dict[str, str] = field(default_factory=dict)
    events: list[DecodedEvent] = field(default_factory=list)
    times: list[datetime] = field(default_factory=list)
    anomaly_event: str = ""

    @property
    def messages(self) -> list[tuple[dict[str, Any], int, datetime]]:
        return [
            (e.wire, i + 1, t + timedelta(seconds=2))
            for i, (e, t) in enumerate(zip(self.events, self.times, strict=True))
        ]

    def send(
        self,
        name: str,
        sender: str,
        to: str,
        ref: str,
        at: datetime,
        answer_by: date | None = None,
        **kw: Any,
    ) -> DecodedEvent:
        if ref not in self.ids:
            self.ids[ref] = new_referral_id(sender)
        event = example_event(name, sender=sender, to=to, referral_id=self.ids[ref], time=at, answer_by=answer_by, **kw)
        sealed = self.chains[sender].seal(event)
        self.events.append(sealed)
        self.times.append(at)
        return sealed

    def escalate(self, ref: str, family: str, late: str, awaiting: str, due: date, at: datetime, past: int) -> None:
        """The coordinator's overdue notice, as :class:`~xregion.coordinator.escalation.Escalator` composes it."""
        target = self.ids[ref]
        event_id = escalation_id(target, late, "scenario", "overdue", due)
        payload = {
            "referral_id": target,
            "family": family,
            "threshold": "overdue",
            "late_party": late,
            "awaiting": awaiting,
            "answer_by": due.isoformat(),
            "days_past_due": past,
            "calendar": "working",
        }
        self.ids[f"esc-{ref}"] = f"COORD-{event_id}"
        self.send(
            "escalation.overdue",
            "COORD",
            late,
            f"esc-{ref}",
            at,
            payload=payload,
            agency=COORDINATOR_AGENCY,
            correlation_id=target,
            event_id=event_id,
        )


def build(*, escalations: bool = True) -> Scenario:
    """The scenario of the module docstring (fresh referral ids on every call); without
    ``escalations`` COORD's two notices are left out (a running coordinator sends its own)."""
    s = Scenario()
    ack = {"payload": example_payload("share.acknowledged")}
    events: list[tuple[datetime, Any]] = []

    def at(when: datetime, *args: Any, **kw: Any) -> None:
        events.append((when, (args, kw)))

    # R1 lead BJ→TJ, answered on time, concluded; a refused repeat of its acceptance.
    at(beijing(d(9, 14)), "lead.submitted", "BJ", "TJ", "R1", answer_by=d(9, 28))
    at(beijing(d(9, 14), 11), "lead.received", "TJ", "BJ", "R1")
    at(beijing(d(9, 16)), "lead.accepted", "TJ", "BJ", "R1")
    at(beijing(d(10, 9)), "lead.concluded", "TJ", "BJ", "R1")
    at(beijing(d(10, 12), 9), "lead.accepted", "TJ", "BJ", "R1")  # refused: R1 is concluded
    # R2 lead TJ→HE, answered late, escalated.
    at(beijing(d(9, 22)), "lead.submitted", "TJ", "HE", "R2", answer_by=d(10, 13))
    at(beijing(d(9, 22), 11), "lead.received", "HE", "TJ", "R2")
    at(beijing(d(10, 14), 8), "escalate", "R2", "lead", "HE", "answer to lead.submitted", d(10, 13), 1)
    at(beijing(d(10, 15)), "lead.accepted", "HE", "TJ", "R2")
    # R3 lead BJ→TJ, tolled while TJ waits for information, answered within the tolled date.
    at(beijing(d(9, 21)), "lead.submitted", "BJ", "TJ", "R3", answer_by=d(10, 12))
    at(beijing(d(9, 21), 11), "lead.received", "TJ", "BJ", "R3")
    at(beijing(d(9, 23)), "lead.info_requested", "TJ", "BJ", "R3", answer_by=d(10, 14))
    at(beijing(d(10, 13)), "lead.info_supplied", "BJ", "TJ", "R3", answer_by=d(10, 23))
    at(beijing(d(10, 22)), "lead.accepted", "TJ", "BJ", "R3")
    # R4 assist HE→BJ, accepted, open and overdue at the end of the period.
    at(beijing(d(9, 28)), "assist.requested", "HE", "BJ", "R4", answer_by=d(10, 23))
    at(beijing(d(9, 28), 11), "assist.received", "BJ", "HE", "R4")
    at(beijing(d(9, 29)), "assist.accepted", "BJ", "HE", "R4")
    at(beijing(d(10, 26), 8), "escalate", "R4", "assist", "BJ", "answer to assist.requested", d(10, 23), 1)
    at(beijing(d(11, 3)), "assist.completed", "BJ", "HE", "R4")
    # R5 recognition TJ→ALL: recognised by BJ, contested by HE.
    at(beijing(d(10, 8)), "recognition.published", "TJ", "ALL", "R5", answer_by=d(11, 4))
    at(beijing(d(10, 8), 11), "recognition.received", "BJ", "TJ", "R5")
    at(beijing(d(10, 8), 11, 30), "recognition.received", "HE", "TJ", "R5")
    at(beijing(d(10, 9)), "recognition.recognized", "BJ", "TJ", "R5")
    at(beijing(d(10, 12)), "recognition.contested", "HE", "TJ", "R5")
    # R6 blacklist BJ→ALL, acknowledged after 2 h (TJ) and 24 h (HE, on an adjusted working day).
    at(beijing(d(10, 9)), "share.blacklist_upserted", "BJ", "ALL", "R6", answer_by=d(10, 13))
    at(beijing(d(10, 9), 12), "share.acknowledged", "TJ", "BJ", "R6", **ack)
    at(beijing(d(10, 10)), "share.acknowledged", "HE", "BJ", "R6", **ack)
    # R7 blacklist HE→ALL: BJ acknowledges after 1 h, TJ never.
    at(beijing(d(10, 27)), "share.blacklist_upserted", "HE", "ALL", "R7", answer_by=d(10, 30))
    at(beijing(d(10, 27), 11), "share.acknowledged", "BJ", "HE", "R7", **ack)
    # R8 lead HE→TJ, withdrawn by HE.
    at(beijing(d(10, 19)), "lead.submitted", "HE", "TJ", "R8", answer_by=d(11, 2))
    at(beijing(d(10, 19), 11), "lead.received", "TJ", "HE", "R8")
    at(beijing(d(10, 20)), "lead.withdrawn", "HE", "TJ", "R8")
    # R9 lead BJ→HE after the period.
    at(beijing(d(11, 2)), "lead.submitted", "BJ", "HE", "R9", answer_by=d(11, 16))
    at(beijing(d(11, 2), 11), "lead.received", "HE", "BJ", "R9")

    for when, (args, kw) in sorted(events, key=lambda e: e[0]):
        if args[0] == "escalate":
            if escalations:
                s.escalate(*args[1:6], when, args[6])
            continue
        sealed = s.send(args[0], args[1], args[2], args[3], when, **kw)
        if args[3] == "R1" and args[0] == "lead.accepted" and when == beijing(d(10, 12), 9):
            s.anomaly_event = sealed.envelope.id
    return s


async def publish(js: Any, stream: str, scenario: Scenario) -> int:
    """Publish the scenario's events on the bus as their senders' relays would (subject,
    canonical bytes, ``Nats-Msg-Id`` = event id); the last stream sequence."""
    last = 0
    for event in scenario.events:
        env = event.envelope
        subject = build_subject(env.family, env.event, env.sender, env.addressee)
        ack = await js.publish(subject, encode(event.wire), stream=stream, headers={"Nats-Msg-Id": env.id}, timeout=5.0)
        last = int(ack.seq)
    return last


__all__ = ["PERIOD", "Scenario", "beijing", "build", "publish"]
