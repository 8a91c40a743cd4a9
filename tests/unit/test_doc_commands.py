"""Every ``xregion`` command the README and the operators' documents show exists, with the
options it is shown with, and so does every command the systemd units start: a command
renamed or an option dropped fails here, not in front of an operator. (What the commands
*do* is run by the tests the documents name; the site story of ops/RUNBOOK.md by
``tests/site/test_site.py``.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer

from xregion.cli import app

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [
    "README.md",
    "ops/README.md",
    "ops/RUNBOOK.md",
    "schemas/conformance/README.md",
    *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")),
]
FENCE = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", re.M | re.S)
"""A fenced block, also one indented inside a list item."""
INLINE = re.compile(r"`(xregion [^`\n]+)`")
COMMAND = re.compile(r"(?:^|[\s;&|(])(xregion\s[^\n#;&|)]*)")


def shown_commands(text: str) -> list[str]:
    """``xregion ...`` command lines in fenced blocks (continuations joined) and inline code."""
    found = []
    for block in FENCE.findall(text):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split(" #", 1)[0]
            found += [m.strip() for m in COMMAND.findall(line)]
    found += INLINE.findall(text)
    return found


UNITS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "ops" / "systemd").glob("*.service"))
EXEC_START = re.compile(r"^ExecStart=\S*/bin/(xregion\s.*)$", re.M)


def unit_commands(text: str) -> list[str]:
    """The ``xregion ...`` command of a systemd unit's ``ExecStart`` (continuations joined)."""
    return [m.strip() for m in EXEC_START.findall(re.sub(r"\\\n\s*", " ", text))]


def resolve(tokens: list[str]) -> tuple[Any, list[str], list[str]]:
    """The command the tokens name, its path and the tokens that remain (options, arguments)."""
    command: Any = typer.main.get_command(app)
    path = ["xregion"]
    rest = tokens[1:]
    while is_group(command) and rest and not rest[0].startswith("-"):
        name = rest[0]
        sub = command.commands.get(name)
        if sub is None:
            break
        command, path, rest = sub, [*path, name], rest[1:]
    return command, path, rest


def is_group(command: Any) -> bool:
    return hasattr(command, "commands")  # typer may bring a click of its own: no isinstance


def options_of(command: Any) -> set[str]:
    names = {"--help"}
    for param in command.params:
        names.update(o for o in [*param.opts, *param.secondary_opts] if o.startswith("-"))
    return names


def cases() -> list[tuple[str, str]]:
    out = []
    for doc in DOCUMENTS:
        for line in shown_commands((ROOT / doc).read_text(encoding="utf-8")):
            out.append((doc, line))
    for unit in UNITS:
        for line in unit_commands((ROOT / unit).read_text(encoding="utf-8")):
            out.append((unit, line))
    return sorted(set(out))


@pytest.mark.parametrize(("doc", "line"), cases(), ids=lambda v: v[:80])
def test_a_documented_command_exists_with_its_options(doc: str, line: str) -> None:
    tokens = [t for t in re.split(r"\s+", line.replace("[", " ").replace("]", " ").replace("|", " ")) if t]
    command, path, rest = resolve(tokens)
    if is_group(command):
        assert (rest and rest[0].startswith("-")) or not rest or rest[0] in {"...", "…"}, (
            f"{doc}: `{line}` names no command of `{' '.join(path)}` ({', '.join(sorted(command.commands))})"
        )
    unknown = [t.split("=", 1)[0] for t in rest if t.startswith("--") and t.split("=", 1)[0] not in options_of(command)]
    assert unknown == [], f"{doc}: `{line}`: {' '.join(path)} has no option {', '.join(unknown)}"


def test_the_documents_show_commands() -> None:
    """The extraction finds the commands (an empty list would pass vacuously)."""
    found = cases()
    assert len(found) > 30
    assert any(line.startswith("xregion broker") for _, line in found)
    assert any(line.startswith("xregion ops backup") for _, line in found)
    assert any(line.startswith("xregion broker") and "--restore" in line for _, line in found)  # an indented block
    started = {doc: line for doc, line in found if doc.endswith(".service")}
    starts_xregion = {u for u in UNITS if "/bin/xregion " in (ROOT / u).read_text(encoding="utf-8")}
    assert set(started) == starts_xregion and len(starts_xregion) >= 4  # each unit's command found
    assert started["ops/systemd/xregion-audit-log.service"].startswith("xregion audit log run --store")
