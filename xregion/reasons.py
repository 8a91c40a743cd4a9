"""Every stable error code of xregion (:class:`xregion.errors.XRegionError` and its subclasses,
wherever they are defined), as data.

A dead letter's subject is ``xregion.dlq.<REGION>.<code>`` and a security alert's
``xregion.alert.<REGION>.<code>``: the NATS permissions (:mod:`xregion.permissions`)
enumerate those subjects from this list instead of admitting any last token, so that no
party can publish a subject the grammar does not know (one that is not UTF-8 would kill a
reader's client). A unit test keeps the list equal to the codes the package defines.
"""

from __future__ import annotations

REASON_CODES: frozenset[str] = frozenset(
    {
        "attachment_invalid",
        "auth_failed",
        "backup_failed",
        "bad_deadline",
        "bad_signature",
        "bad_subject",
        "broker_error",
        "chain_break",
        "chain_fork",
        "chain_gap",
        "chain_replay",
        "config_invalid",
        "connection_security",
        "contract_violation",
        "delivery_exhausted",
        "duplicate_member",
        "duplicate_referral",
        "error",
        "gateway_unauthenticated",
        "handler_failed",
        "handling_restricted",
        "idempotency_conflict",
        "identity_mismatch",
        "illegal_transition",
        "inspection_failed",
        "key_not_valid",
        "key_revoked",
        "malformed_json",
        "misaddressed",
        "not_canonical",
        "not_found",
        "oversized",
        "own_event_unknown",
        "personal_data_unsealed",
        "role_violation",
        "schema_invalid",
        "stream_read_failed",
        "stream_read_timeout",
        "stream_unavailable",
        "subject_invalid",
        "subject_mismatch",
        "tls_client_rejected",
        "tls_required",
        "tls_server_untrusted",
        "topology_missing",
        "unauthorized",
        "unknown_event_type",
        "unknown_event_version",
        "unknown_key",
        "unknown_party",
        "unknown_referral",
        "unseal_failed",
        "verification_failed",
    }
)
