"""NATS subjects of the bus: ``xregion.<version>.<family>.<event>.<from>.<to>``.

The subject repeats, in tokens the server can match, what the envelope says: which
family and event, who sends and to whom. That lets the NATS server itself enforce who may
say what (publish only with one's own code as ``<from>``) and who may read what (only what
is addressed to oneself or to ``ALL``). The per-party patterns below are derived from the
same grammar and are what the security configuration grants.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from xregion.errors import SubjectError
from xregion.regions import BROADCAST, PARTY_CODE

ROOT = "xregion"
CURRENT_VERSION = "v1"
NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
VERSION = re.compile(r"^v[1-9][0-9]{0,2}$")
DLQ_ROOT = f"{ROOT}.dlq"
"""Dead letters: ``xregion.dlq.<region>.<reason code>`` (four tokens, never an event subject)."""
ALERT_ROOT = f"{ROOT}.alert"
"""Security alerts: ``xregion.alert.<party>.>``."""
CHECKPOINT_ROOT = f"{ROOT}.checkpoint"
"""Cross-witnessed checkpoints: ``xregion.checkpoint.<region>`` (:mod:`xregion.checkpoint`)."""


@dataclass(frozen=True)
class Subject:
    """A parsed subject. ``str(subject)`` gives the wire form back."""

    family: str
    event: str
    sender: str
    to: str
    version: str = CURRENT_VERSION

    def __post_init__(self) -> None:
        _check(VERSION, self.version, "version")
        _check(NAME, self.family, "family")
        _check(NAME, self.event, "event")
        _check(PARTY_CODE, self.sender, "sender")
        _check(PARTY_CODE, self.to, "addressee")
        if self.sender == BROADCAST:
            raise SubjectError(f"{BROADCAST} is an addressee, never a sender", token="sender")
        if self.sender == self.to:
            raise SubjectError(f"{self.sender} cannot address itself", token="addressee")

    def __str__(self) -> str:
        return ".".join((ROOT, self.version, self.family, self.event, self.sender, self.to))

    @property
    def event_type(self) -> str:
        """``<family>.<event>``, the key of the event catalog."""
        return f"{self.family}.{self.event}"

    @property
    def is_broadcast(self) -> bool:
        return self.to == BROADCAST


def _check(pattern: re.Pattern[str], value: str, token: str) -> None:
    if not isinstance(value, str) or not pattern.match(value):
        raise SubjectError(f"subject token {token}={value!r} does not match {pattern.pattern}", token=token)


def build(family: str, event: str, sender: str, to: str, version: str = CURRENT_VERSION) -> str:
    """The subject of an event, validated."""
    return str(Subject(family, event, sender, to, version))


def parse(subject: str) -> Subject:
    """Parse and validate a concrete subject; raise :class:`SubjectError` naming the fault."""
    tokens = subject.split(".")
    if len(tokens) != 6 or tokens[0] != ROOT:
        raise SubjectError(
            f"subject {subject!r} is not {ROOT}.<version>.<family>.<event>.<from>.<to>",
            subject=subject,
        )
    _, version, family, event, sender, to = tokens
    return Subject(family, event, sender, to, version)


def stream_subjects(version: str = CURRENT_VERSION) -> str:
    """Everything of one contract version: what the event stream holds."""
    return f"{ROOT}.{version}.>"


def dead_letter_subject(region: str, reason_code: str) -> str:
    """Where ``region``'s adapter puts a message it cannot accept, by reason."""
    return f"{DLQ_ROOT}.{region}.{reason_code}"


def publish_patterns(party: str, version: str = CURRENT_VERSION) -> list[str]:
    """What ``party`` may publish: any event with its own code as ``<from>``."""
    _check(PARTY_CODE, party, "party")
    return [f"{ROOT}.{version}.*.*.{party}.*"]


def subscribe_patterns(region: str, version: str = CURRENT_VERSION) -> list[str]:
    """What ``region`` may read: events addressed to it and broadcasts."""
    _check(PARTY_CODE, region, "region")
    return [f"{ROOT}.{version}.*.*.*.{region}", f"{ROOT}.{version}.*.*.*.{BROADCAST}"]
