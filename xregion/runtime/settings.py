"""Runtime settings, from arguments or ``XREGION_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RuntimeSettings(BaseSettings):
    """Where the bus is and how it is laid out. Every command accepts ``--nats-url``."""

    model_config = SettingsConfigDict(env_prefix="XREGION_", extra="ignore")

    nats_url: str | None = Field(
        default=None,
        description="External NATS server or cluster (comma-separated URLs); "
        "unset: the embedded server is started where a command needs one.",
    )
    data_dir: Path = Field(default=Path(".xregion"), description="Local state: stores, keys, broker data.")
    stream: str = "XREGION"
    dead_letter_stream: str = "XREGION_DLQ"
    object_store: str = "XREGION_EVIDENCE"
    replicas: int = Field(default=1, ge=1, le=5)
    js_domain: str | None = Field(
        default=None,
        description="JetStream domain of the hub, for an adapter connected to its region's leaf node (ops/README.md).",
    )
    duplicate_window_s: float = Field(default=2 * 60 * 60, gt=0)
    ack_wait_s: float = Field(default=30.0, gt=0)
    max_deliver: int = Field(
        default=50,
        ge=2,
        description="Deliveries of one message before it is dead-lettered. Every redelivery counts: "
        "handler failures (retried with growing delays up to 5 min, so 50 spans about 3.5 h of a "
        "regional system being down) and waits for a predecessor held by a crashed adapter.",
    )
    connect_timeout_s: float = 5.0
    tls_ca: Path | None = Field(default=None, description="CA certificate the NATS server's must chain to.")
    tls_cert: Path | None = Field(default=None, description="This party's TLS client certificate (mutual TLS).")
    tls_key: Path | None = Field(default=None, description="The private key of tls_cert.")
    nkey_seed: Path | None = Field(default=None, description="File holding this party's NKey seed (SU...).")
    revocation_grace_s: float = Field(
        default=3600.0,
        ge=0,
        description="An event signed with a revoked key is refused if it reached the stream more than this long "
        "after the revocation, whatever time it claims (a thief can backdate it). The grace lets events signed "
        "before the revocation that waited in an outbox during an outage still be delivered.",
    )
    key_reload_s: float = Field(
        default=5.0,
        gt=0,
        description="How often an adapter checks its roster file and private key file for changes "
        "(a key unknown to the roster also triggers an immediate reload).",
    )
    alert_retry_s: float = Field(
        default=600.0, gt=0, description="How long a security alert is retried before it is given up (and logged)."
    )
    checkpoint_interval_s: float = Field(
        default=60.0,
        gt=0,
        description="How often an adapter publishes its signed checkpoint of the origin chain heads it has seen "
        "(only when they changed), for the auditor's cross-witness check.",
    )
    unsealed_personal_data: Literal["refuse", "accept"] = Field(
        default="refuse",
        description="What the consumer does with an event whose personal-data fields arrive in the "
        "clear instead of sealed: refuse it (dead letter personal_data_unsealed, the default: such data has "
        "already been exposed to the broker, the coordinator and the auditor) or accept it with a warning naming "
        "the fields (a migration setting for producers that do not seal yet).",
    )
    seal_version: int = Field(
        default=1,
        ge=1,
        le=2,
        description="How this party seals personal data (it opens both): 1, a libsodium sealed box per field and "
        "recipient; 2, one X25519 agreement per event and recipient and a ChaCha20-Poly1305 box per field "
        "(xregion.sealing). Switch to 2 once every addressee runs a release that opens v2.",
    )
    restore_hold_s: float = Field(
        default=300.0,
        ge=0,
        description="After a restore of the stream, how long an answer waits for the event it answers to be "
        "re-published by its origin before it is published anyway, with an error (xregion.runtime.restores).",
    )
    log_format: str = Field(default="auto", description="auto | json | console")
