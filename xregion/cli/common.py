"""Options shared by commands, and how a command reports an xregion error."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from xregion.errors import XRegionError

NatsUrl = Annotated[
    str | None,
    typer.Option(
        "--nats-url",
        envvar="XREGION_NATS_URL",
        help="External NATS server or cluster (comma-separated). Unset: the embedded server.",
    ),
]
"""``xregion demo``'s: without it the demo starts its own server."""
RequiredNatsUrl = Annotated[
    str | None,
    typer.Option(
        "--nats-url",
        envvar="XREGION_NATS_URL",
        help="The NATS server or cluster (comma-separated URLs). Required.",
    ),
]
ArchiveOrNatsUrl = Annotated[
    str | None,
    typer.Option(
        "--nats-url",
        envvar="XREGION_NATS_URL",
        help="The NATS server or cluster (comma-separated URLs) to read the stream from; "
        "required unless --archive is given.",
    ),
]
CatchUpNatsUrl = Annotated[
    str | None,
    typer.Option(
        "--nats-url",
        envvar="XREGION_NATS_URL",
        help="First catch STORE up with the stream of this NATS server or cluster (comma-separated URLs; "
        "needs --keys-dir). Unset: show STORE as it is.",
    ),
]
DEFAULT_CONNECT_TIMEOUT_S = 10.0
ConnectTimeout = Annotated[
    float,
    typer.Option(
        "--connect-timeout",
        envvar="XREGION_CONNECT_TIMEOUT",
        min=0.1,
        help="Seconds to wait for the NATS server before giving up (error broker_unreachable).",
    ),
]
"""One-shot commands only: long-running processes wait for the broker for ever."""
LogFormat = Annotated[str, typer.Option("--log-format", envvar="XREGION_LOG_FORMAT", help="auto | json | console")]
TlsCa = Annotated[
    Path | None,
    typer.Option("--tls-ca", envvar="XREGION_TLS_CA", help="CA certificate the NATS server's must chain to."),
]
TlsCert = Annotated[
    Path | None,
    typer.Option("--tls-cert", envvar="XREGION_TLS_CERT", help="This party's TLS client certificate (mutual TLS)."),
]
TlsKey = Annotated[
    Path | None, typer.Option("--tls-key", envvar="XREGION_TLS_KEY", help="The private key of --tls-cert.")
]
NkeySeed = Annotated[
    Path | None,
    typer.Option(
        "--nkey-seed",
        envvar="XREGION_NKEY_SEED",
        help="File holding an NKey seed (SU...), for a NATS server of your own with NKey users; "
        "xregion's secured broker identifies each party by its client certificate (--tls-cert).",
    ),
]
Insecure = Annotated[
    bool,
    typer.Option(
        "--insecure",
        help="DEVELOPMENT ONLY: no authentication, no TLS — any client may publish and read anything.",
    ),
]
SecurityDirOption = Annotated[
    Path | None,
    typer.Option(
        "--security-dir",
        help="Accounts and certificates (auth.conf, pinned.conf, tls/); development ones are generated if absent.",
    ),
]


def client_settings(
    tls_ca: Path | None, tls_cert: Path | None, tls_key: Path | None, nkey_seed: Path | None
) -> dict[str, Any]:
    """The connection settings given on the command line (``None``s left out)."""
    given = {"tls_ca": tls_ca, "tls_cert": tls_cert, "tls_key": tls_key, "nkey_seed": nkey_seed}
    return {k: v for k, v in given.items() if v is not None}


def fail(exc: XRegionError, exit_code: int = 1) -> typer.Exit:
    """Print ``error <code>: <message>`` on stderr (stdout stays the result) and return the
    :class:`typer.Exit` to raise: no traceback for an error xregion can name."""
    Console(stderr=True, soft_wrap=True).print(
        f"[red]error[/red] [bold]{exc.code}[/bold]: {escape(exc.message)}", highlight=False
    )
    return typer.Exit(exit_code)
