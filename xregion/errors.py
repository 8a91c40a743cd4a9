"""Every error the contracts can raise, each with a stable machine-readable ``code``.

The codes are part of the product: they are the ``reason`` of dead-lettered messages, the
``type`` of HTTP problem details and the anomaly kinds of audit reports. Never rename one.
"""

from __future__ import annotations

from typing import Any


class XRegionError(Exception):
    """Base of all xregion errors. ``code`` is stable; ``details`` is JSON-safe."""

    code = "error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_reason(self) -> dict[str, Any]:
        """The machine-readable reason recorded with a dead letter or an audit anomaly."""
        return {"code": self.code, "message": self.message, **self.details}


# --- configuration -------------------------------------------------------------------------


class ConfigError(XRegionError):
    """The bus configuration (regions, deadlines, key roster) is invalid."""

    code = "config_invalid"


# --- shape of the input ----------------------------------------------------------------------


class ContractError(XRegionError):
    """Input does not satisfy the v1 wire contract."""

    code = "contract_violation"


class OversizedMessage(ContractError):
    code = "oversized"


class MalformedJson(ContractError):
    """Not I-JSON (RFC 7493) in UTF-8 within the limits: bad syntax, another encoding, a BOM,
    NaN/Infinity, numbers beyond a double, a lone surrogate escape, nested too deep."""

    code = "malformed_json"


class DuplicateMember(MalformedJson):
    """An object names a member twice: two parsers read two different objects (first or
    last wins) under one signature."""

    code = "duplicate_member"


class NotCanonical(ContractError):
    """The bytes are a valid event but not its RFC 8785 canonical form: what is stored must
    be exactly what is signed."""

    code = "not_canonical"


class SchemaInvalid(ContractError):
    """The envelope or its ``data`` fails validation; ``details['errors']`` lists the fields."""

    code = "schema_invalid"


class UnknownEventType(ContractError):
    code = "unknown_event_type"


class UnsupportedVersion(ContractError):
    code = "unknown_event_version"


class SubjectError(ContractError):
    code = "bad_subject"


class SubjectInvalid(SubjectError):
    """The subject a message arrived on is not valid UTF-8 (the server stores any bytes)."""

    code = "subject_invalid"


class SubjectMismatch(ContractError):
    """The NATS subject says something other than the envelope it carries."""

    code = "subject_mismatch"


class UnknownParty(ContractError):
    """A region, role or agency code is not in the registry."""

    code = "unknown_party"


class DeadlineError(ContractError):
    code = "bad_deadline"


class PersonalDataUnsealed(ContractError):
    """A personal-data field of an event (one whose schema admits a sealed value) travels in
    the clear instead of sealed to its recipients: the broker, the coordinator and the auditor
    have read it. An evidence-grade receiver refuses it (``details['fields']`` names the
    fields, never their values) unless configured to accept legacy producers
    (``XREGION_UNSEALED_PERSONAL_DATA=accept``)."""

    code = "personal_data_unsealed"


# --- lifecycle -------------------------------------------------------------------------------


class LifecycleError(XRegionError):
    """An event is not allowed in the referral's current state, or not from this sender."""

    code = "illegal_transition"


class UnknownReferral(LifecycleError):
    code = "unknown_referral"


class DuplicateReferral(LifecycleError):
    code = "duplicate_referral"


class Misaddressed(LifecycleError):
    code = "misaddressed"


class RoleViolation(LifecycleError):
    """The sender's role may not send this event (to this addressee): only the coordinator
    escalates, and the coordinator only escalates."""

    code = "role_violation"


class HandlingRestricted(LifecycleError):
    """A handling code of the referral forbids the event, e.g. forwarding an H2 lead to a
    region the origin has not granted ``onward_sharing`` to."""

    code = "handling_restricted"


# --- authenticity ----------------------------------------------------------------------------


class VerificationError(XRegionError):
    """An event's authenticity or integrity could not be established."""

    code = "verification_failed"


class UnknownKey(VerificationError):
    code = "unknown_key"


class KeyNotValid(VerificationError):
    """The key exists but does not belong to the sender or was not valid at the event's time."""

    code = "key_not_valid"


class KeyRevoked(VerificationError):
    code = "key_revoked"


class BadSignature(VerificationError):
    code = "bad_signature"


class ChainError(VerificationError):
    code = "chain_break"


class ChainGap(ChainError):
    """A sequence number was skipped: an event of that origin is missing (or reordered)."""

    code = "chain_gap"


class ChainFork(ChainError):
    """The previous-event hash does not match the origin's head: history was altered."""

    code = "chain_fork"


class ChainReplay(ChainError):
    """The event's sequence number is already behind the origin's head: a replay."""

    code = "chain_replay"


class OwnEventUnknown(VerificationError):
    """An event names the receiving region as its sender, its signature verifies with that
    region's key, but the region did not publish it (not in its outbox with these bytes, or
    not a broadcast on its own subject): a stolen key, or a forged echo."""

    code = "own_event_unknown"


class UnsealFailed(VerificationError):
    """A sealed (encrypted) field of an event cannot be opened by its recipient: no box for
    the recipient's key, or a box that does not decrypt."""

    code = "unseal_failed"


# --- the consumer's own safety nets ----------------------------------------------------------


class InspectionFailed(XRegionError):
    """Judging one message raised something no check anticipated (``exception`` names its
    type; its text is not kept: it may quote personal data). The message alone is refused."""

    code = "inspection_failed"


class DeliveryExhausted(XRegionError):
    """A message was still not settled on its last delivery (``max_deliver``) because
    handling it failed for a reason outside the message (``exception``: e.g. the store):
    it is dead-lettered rather than dropped by JetStream without a trace."""

    code = "delivery_exhausted"


# --- operations ------------------------------------------------------------------------------


class BackupError(XRegionError):
    """A stream backup cannot be taken or restored: damaged or missing files, or the server
    refused (the stream exists already, permissions, limits)."""

    code = "backup_failed"
