"""Sealing v2 from another language: the dependency-free JavaScript of
adapters/examples/js/seal-v2.mjs opens what Python seals and seals what Python opens, with
nothing but the recipe (docs/signing-recipe.md §8) in common."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support import EXAMPLE_TIME, dev_roster, dev_seed, dev_signers, example_payload
from xregion.contracts.catalog import CATALOG
from xregion.errors import UnsealFailed
from xregion.sealing import OpeningKey, open_value, recipients, seal_data, sensitive_values

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node (Node.js >= 18) is not on PATH")

SEAL = Path(__file__).resolve().parents[2] / "adapters" / "examples" / "js" / "seal-v2.mjs"
SIGNERS = dev_signers()
ROSTER = dev_roster(SIGNERS)
SUBMITTED = CATALOG.get("lead", "submitted").model
EVENT = "01a21266-2a95-7ab6-acd3-9944e2600e69"


def node(*args: str, value: Any) -> Any:
    assert NODE is not None
    done = subprocess.run(
        [NODE, str(SEAL), *args], input=json.dumps(value).encode(), capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


def test_javascript_opens_what_python_seals() -> None:
    tj = SIGNERS["TJ"]
    sealed = seal_data(
        SUBMITTED,
        example_payload("lead.submitted"),
        recipients(ROSTER, ("TJ",), EXAMPLE_TIME),
        version=2,
        event_id=EVENT,
    )
    plain = dict(sensitive_values(SUBMITTED, example_payload("lead.submitted")))
    for where, value in sensitive_values(SUBMITTED, sealed):
        opened = node("open", EVENT, where, tj.key_id, dev_seed("TJ").hex(), value=value)
        assert opened == plain[where]


def test_python_opens_what_javascript_seals_and_only_for_that_field() -> None:
    import base64

    tj = SIGNERS["TJ"]
    public = base64.b64encode(bytes(tj.verify_key)).decode()
    sealed = node("seal", EVENT, "data.suspects.1.name", tj.key_id, public, value="张某")
    assert sealed["v"] == 2 and list(sealed["sealed"]) == [tj.key_id]
    key = OpeningKey.of(tj)
    assert open_value(sealed, [key], "data.suspects.1.name", event_id=EVENT) == "张某"
    with pytest.raises(UnsealFailed):
        open_value(sealed, [key], "data.suspects.0.name", event_id=EVENT)
