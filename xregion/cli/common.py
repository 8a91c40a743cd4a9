"""Options shared by commands."""

from __future__ import annotations

from typing import Annotated

import typer

NatsUrl = Annotated[
    str | None,
    typer.Option(
        "--nats-url",
        envvar="XREGION_NATS_URL",
        help="External NATS server or cluster (comma-separated). Unset: the embedded server.",
    ),
]
LogFormat = Annotated[str, typer.Option("--log-format", envvar="XREGION_LOG_FORMAT", help="auto | json | console")]
