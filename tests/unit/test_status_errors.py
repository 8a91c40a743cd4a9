"""``xregion status`` fails clearly (issue 14 item 7): an unknown referral or a missing store is
a non-zero exit with a stable error code on stderr, nothing on stdout, and no store created."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from xregion.coordinator.projection import Projection

XREGION_BIN = Path(sys.executable).parent / "xregion"


def status(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(XREGION_BIN), "status", *args], capture_output=True, text=True, timeout=60)


def test_a_missing_store_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    for json_flag in ((), ("--json",)):
        result = status("--store", str(missing), *json_flag)
        assert result.returncode == 2, result
        assert "store_missing" in result.stderr and result.stdout == ""
        assert not missing.exists()


@pytest.mark.parametrize("json_flag", [(), ("--json",)])
def test_an_unknown_referral_is_an_error(tmp_path: Path, json_flag: tuple[str, ...]) -> None:
    store = tmp_path / "coord.db"
    Projection(store).open().close()
    result = status("BJ-0190c7a0-0000-7000-8000-000000000000", "--store", str(store), *json_flag)
    assert result.returncode == 1, result
    assert "referral_not_found" in result.stderr and result.stdout == ""
