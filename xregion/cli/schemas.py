"""``xregion schemas export|check``: the committed JSON Schemas of the v1 contract.

``export`` regenerates ``<root>/v1/`` from the models and refuses to overwrite committed
schemas with a change that breaks v1 consumers unless ``--force``. ``check`` (run in CI from the
repository root) exits 1 when the committed files and the models differ, naming each drifted
file and, for a breaking change, each field concerned.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xregion import schema_export
from xregion.adapter import asyncapi
from xregion.contracts.catalog import CATALOG
from xregion.gateway import app as gateway_app
from xregion.schema_compat import Incompatibility, compare_documents

VERSION = 1

app = typer.Typer(help="Generate and check the committed JSON Schemas (schemas/v1/).", no_args_is_help=True)

RootOption = Annotated[Path, typer.Option("--root", help="Directory holding v1/ (relative to the current directory).")]


def _breaking(root: Path, *, force: bool = False) -> list[Incompatibility]:
    """Breaking changes from the committed schemas under ``root`` to the current models.

    An unreadable committed file ends the command (exit 1), unless ``force`` (then it is
    simply overwritten).
    """
    try:
        committed = schema_export.load(root, VERSION)
    except ValueError as exc:
        if force:
            typer.echo(f"warning: {exc}; overwriting it")
            return []
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    return compare_documents(committed, schema_export.generate(CATALOG, VERSION))


def _by_file(found: list[Incompatibility]) -> dict[str, list[Incompatibility]]:
    grouped: dict[str, list[Incompatibility]] = {}
    for item in found:
        grouped.setdefault(item.file, []).append(item)
    return grouped


def _echo_breaking(found: list[Incompatibility], indent: str = "  ") -> None:
    for item in found:
        typer.echo(f"{indent}BREAKING [{item.kind}] {item}")


@app.command()
def export(
    root: RootOption = Path("schemas"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite even when the change breaks v1 consumers.")] = False,
) -> None:
    """Write the envelope schema, one schema per event's data, and index.json under ROOT/v1/."""
    breaking = _breaking(root, force=force)
    if breaking and not force:
        typer.echo(
            f"refusing to overwrite {schema_export.version_dir(root, VERSION)}: "
            f"{len(breaking)} change(s) would break v1 consumers:",
            err=True,
        )
        _echo_breaking(breaking)
        typer.echo(
            "Make the change backward compatible (optional field, added value, relaxed limit), "
            "or publish it as a v2 event type; --force only if v1 has not been released.",
            err=True,
        )
        raise typer.Exit(1)
    if breaking:
        typer.echo(f"warning: --force: writing {len(breaking)} breaking change(s):")
        _echo_breaking(breaking)
    results = schema_export.write(root, CATALOG, VERSION)
    counts: dict[str, int] = {}
    for result in results:
        counts[result.action] = counts.get(result.action, 0) + 1
        if result.action != "unchanged":
            typer.echo(f"{result.action:9} {result.path}")
    summary = ", ".join(f"{n} {action}" for action, n in sorted(counts.items()))
    written = sum(1 for r in results if r.action != "removed")
    typer.echo(f"{schema_export.version_dir(root, VERSION)}: {written} files ({summary})")
    spec = root / asyncapi.ASYNCAPI_FILE
    text = asyncapi.render(asyncapi.document(CATALOG))
    if not spec.exists() or spec.read_text(encoding="utf-8") != text:
        spec.write_text(text, encoding="utf-8")
        typer.echo(f"updated   {spec}")
    openapi_file = root / gateway_app.OPENAPI_FILE
    openapi_text = gateway_app.render_openapi()
    if not openapi_file.exists() or openapi_file.read_text(encoding="utf-8") != openapi_text:
        openapi_file.write_text(openapi_text, encoding="utf-8")
        typer.echo(f"updated   {openapi_file}")


def _openapi_drift(root: Path) -> bool:
    spec = root / gateway_app.OPENAPI_FILE
    return not spec.exists() or spec.read_text(encoding="utf-8") != gateway_app.render_openapi()


def _asyncapi_drift(root: Path) -> bool:
    spec = root / asyncapi.ASYNCAPI_FILE
    return not spec.exists() or spec.read_text(encoding="utf-8") != asyncapi.render(asyncapi.document(CATALOG))


@app.command()
def check(root: RootOption = Path("schemas")) -> None:
    """Exit 1 if ROOT/v1/ differs from the models; name the fields of breaking changes."""
    base = schema_export.version_dir(root, VERSION)
    drift = schema_export.diff(root, CATALOG, VERSION)
    if _openapi_drift(root):
        typer.echo(
            f"{root / gateway_app.OPENAPI_FILE} differs from the HTTP gateway: "
            "run `xregion schemas export` and commit it.",
            err=True,
        )
        if not drift and not _asyncapi_drift(root):
            raise typer.Exit(1)
    if _asyncapi_drift(root):
        typer.echo(
            f"{root / asyncapi.ASYNCAPI_FILE} differs from the FastStream application: "
            "run `xregion schemas export` and commit it.",
            err=True,
        )
        if not drift:
            raise typer.Exit(1)
    elif not drift:
        count = len(schema_export.committed_files(root, VERSION))
        typer.echo(
            f"{base} is up to date ({count} files); {root / asyncapi.ASYNCAPI_FILE} and "
            f"{root / gateway_app.OPENAPI_FILE} are up to date"
        )
        return
    found = _breaking(root)
    breaking = _by_file(found)
    typer.echo(f"{base} differs from the models ({len(drift)} file(s)):")
    for line in drift:
        typer.echo(f"  {line}")
        _echo_breaking(breaking.pop(line.split(" ", 1)[1], []), indent="    ")
    for rest in breaking.values():  # not expected: a file with breaking changes also drifts
        _echo_breaking(rest, indent="    ")
    if found:
        typer.echo(
            f"{len(found)} change(s) break v1 consumers: make them backward compatible "
            "(optional field, added value, relaxed limit) or publish a v2 event type; "
            "`xregion schemas export` refuses them without --force.",
            err=True,
        )
    else:
        typer.echo(
            f"The changes are backward compatible: run `xregion schemas export` and commit {base}.",
            err=True,
        )
    raise typer.Exit(1)
