"""Runtime settings, from arguments or ``XREGION_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

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
    duplicate_window_s: float = Field(default=2 * 60 * 60, gt=0)
    ack_wait_s: float = Field(default=30.0, gt=0)
    max_deliver: int = Field(default=20, ge=2)
    connect_timeout_s: float = 5.0
    log_format: str = Field(default="auto", description="auto | json | console")
