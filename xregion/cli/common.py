"""Options shared by commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

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
