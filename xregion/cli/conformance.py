"""``xregion conformance generate|check|run``: the conformance kit of the v1 contract.

``generate`` writes the kit (``schemas/conformance/``: signed example events, their expected
outcomes, throw-away keys, the answer table) from the code; ``check`` (CI) exits 1 when the
committed kit differs from what ``generate`` writes; ``run`` plays the kit against a receiver
(any implementation, playing TJ with the kit's keys) on a development NATS server and exits 0
only if every case has its expected outcome.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from xregion.conformance import kit as kit_files
from xregion.conformance.runner import Kit, Outcome, run_kit

app = typer.Typer(help="The conformance kit (schemas/conformance/): generate, check, run.", no_args_is_help=True)

KitOption = Annotated[Path, typer.Option("--kit", help="The kit's directory (relative to the current directory).")]
DEFAULT_KIT = Path("schemas/conformance")


@app.command()
def generate(kit: KitOption = DEFAULT_KIT) -> None:
    """Write the kit's generated files under KIT (its README.md is written by hand)."""
    written = kit_files.write(kit)
    typer.echo(f"wrote {len(written)} files under {kit}")


@app.command()
def check(kit: KitOption = DEFAULT_KIT) -> None:
    """Exit 1 if the committed kit differs from what `generate` writes."""
    drift = kit_files.diff(kit)
    if not drift:
        typer.echo(f"{kit} is up to date")
        return
    typer.echo(f"{kit} differs from the generator ({len(drift)} file(s)):", err=True)
    for line in drift:
        typer.echo(f"  {line}", err=True)
    typer.echo("run `xregion conformance generate` and commit it.", err=True)
    raise typer.Exit(1)


@app.command()
def run(
    nats_url: Annotated[
        str, typer.Option("--nats-url", envvar="XREGION_NATS_URL", help="The development server the receiver uses.")
    ],
    kit: KitOption = DEFAULT_KIT,
    timeout_s: Annotated[float, typer.Option("--timeout", help="Seconds to wait for each outcome.")] = 15.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcomes as JSON.")] = False,
) -> None:
    """Play the kit against the receiver (TJ, with the kit's keys) on NATS_URL: publish every
    case in order into the fresh stream, judge each outcome; exit 1 if any differs."""
    outcomes = asyncio.run(_run(nats_url, Kit.load(kit), timeout_s))
    if as_json:
        rows = [
            {"case": o.name, "expected": o.expected, "got": o.got, "ok": o.ok, "problems": o.problems} for o in outcomes
        ]
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        for o in outcomes:
            typer.echo(f"{'ok  ' if o.ok else 'FAIL'} {o.name}: expected {o.expected}, got {o.got}")
            for problem in o.problems:
                typer.echo(f"       {problem}")
    failed = [o for o in outcomes if not o.ok]
    typer.echo(f"{len(outcomes) - len(failed)} of {len(outcomes)} passed", err=True)
    if failed:
        raise typer.Exit(1)


async def _run(url: str, kit: Kit, timeout_s: float) -> list[Outcome]:
    import nats

    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        return await run_kit(nc.jetstream(), kit, timeout_s=timeout_s)
    finally:
        await nc.close()
