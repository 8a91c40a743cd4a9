"""What a worker sends back for a valid event (:class:`~xregion.auditor.checking.CheckedEvent`)
says what the envelope says: the replaying process applies it in its place."""

from __future__ import annotations

import pickle
from datetime import timedelta

import pytest

from tests.support import dev_roster, dev_signers, sealed_example
from xregion.auditor.checking import CheckedEvent, RecordChecker
from xregion.codec import decode, encode, step_of
from xregion.config import load_config
from xregion.examples import PAYLOADS
from xregion.signing import event_hash

SIGNERS = dev_signers()
REGISTRY = load_config().regions


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_the_facts_are_the_envelopes(name: str) -> None:
    sender = "COORD" if name.startswith("escalation.") else "BJ"
    sealed = sealed_example(name, SIGNERS[sender])
    raw = encode(sealed.wire)
    checker = RecordChecker(dev_roster(SIGNERS), REGISTRY, timedelta(hours=1), every_signature=False)
    event, checked = checker.inspect(raw, sealed.subject, sealed.envelope.time)
    assert isinstance(checked, CheckedEvent) and event is not None
    assert pickle.loads(pickle.dumps(checked)) == checked
    env = decode(raw, registry=REGISTRY).envelope
    for attribute in ("id", "sender", "addressee", "subject", "type", "keyid", "originseq", "prevhash", "linkseq"):
        assert getattr(checked, attribute) == getattr(env, attribute)
    assert (checked.family, checked.event, checked.event_type, checked.version) == (
        env.family,
        env.event,
        env.event_type,
        env.version,
    )
    assert checked.answer_by == env.answerby
    assert checked.misfiled is None and checked.forged is None
    assert checked.digest == event_hash(sealed.wire)
    step = checked.step(raw)
    assert step == step_of(event)
    assert dict(step.data) == env.data and step.handling == env.handling_codes


def test_a_misfiled_event_is_named_as_before() -> None:
    sealed = sealed_example("lead.submitted", SIGNERS["BJ"])
    checker = RecordChecker(dev_roster(SIGNERS), REGISTRY, timedelta(hours=1))
    for subject in ("xregion.v1.lead.accepted.BJ.TJ", "not.a.subject", "xregion.v1.lead.submitted.BJ.HE"):
        _, checked = checker.inspect(encode(sealed.wire), subject, sealed.envelope.time)
        assert isinstance(checked, CheckedEvent) and checked.misfiled is not None
    _, checked = checker.inspect(encode(sealed.wire), sealed.subject, sealed.envelope.time)
    assert isinstance(checked, CheckedEvent) and checked.misfiled is None
