"""The ``xregion`` command line: one sub-module per command group."""

from __future__ import annotations

import typer

from xregion.cli import audit, dashboard, ops, run, schemas

app = typer.Typer(
    name="xregion",
    help="京津冀 cross-region IP-enforcement case-referral bus.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.command()(run.demo)
app.command()(run.broker)
app.add_typer(run.keys_app, name="keys")
app.add_typer(run.adapter_app, name="adapter")
app.add_typer(schemas.app, name="schemas")
app.add_typer(ops.app, name="ops")
app.add_typer(audit.app, name="audit")
app.command("dashboard")(dashboard.dashboard)

from xregion.cli import coordinator as coordinator_cli  # noqa: E402
from xregion.cli import status as status_cli  # noqa: E402

app.add_typer(coordinator_cli.app, name="coordinator")
app.command("status")(status_cli.status)

from xregion.cli import bench as bench_cli  # noqa: E402

app.command("bench")(bench_cli.bench)

from xregion.cli import evidence as evidence_cli  # noqa: E402

evidence_cli.register(audit.app)

from xregion.cli import report as report_cli  # noqa: E402

app.add_typer(report_cli.app, name="report")

from xregion.cli import conformance as conformance_cli  # noqa: E402

app.add_typer(conformance_cli.app, name="conformance")


def main() -> None:
    app()
