"""The layers import only downward: contracts (top-level modules, ``contracts``, ``lifecycle``,
``config``) import nothing of the runtime, the operator's package or the roles; the runtime
(what an adapter runs) imports neither the operator's package nor a role."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import xregion

PACKAGE = Path(xregion.__file__).parent
ROLES = ("adapter", "coordinator", "auditor", "cli", "gateway", "dashboard", "bridge", "bench", "demo")
CONTRACT_PACKAGES = ("contracts", "lifecycle", "config")


def imported(path: Path) -> set[str]:
    """Every ``xregion...`` module a file imports, at any depth (lazy imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return {n for n in names if n.startswith("xregion.")}


def layer_files(*parts: str) -> list[Path]:
    return sorted(p for part in parts for p in (PACKAGE / part).rglob("*.py"))


def contract_files() -> list[Path]:
    top = [p for p in PACKAGE.glob("*.py") if p.stem not in ROLES]
    return sorted(top) + layer_files(*CONTRACT_PACKAGES)


def reaches(names: set[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(n == f or n.startswith(f + ".") for f in forbidden))


@pytest.mark.parametrize("path", contract_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_contracts_import_nothing_of_the_runtime(path: Path) -> None:
    forbidden = ("xregion.runtime", "xregion.ops", *(f"xregion.{r}" for r in ROLES))
    assert reaches(imported(path), forbidden) == []


@pytest.mark.parametrize("path", layer_files("runtime"), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_runtime_imports_no_operator_code_and_no_role(path: Path) -> None:
    forbidden = ("xregion.ops", *(f"xregion.{r}" for r in ROLES))
    assert reaches(imported(path), forbidden) == []


def test_the_layers_are_found() -> None:
    """The parametrised tests above see real files (an empty list would pass vacuously)."""
    assert len(contract_files()) > 15 and len(layer_files("runtime")) > 10
