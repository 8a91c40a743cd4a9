"""``xregion keys init`` creates a signing key for every party that signs, AUDIT included
(issue 14 item 3): ``audit export`` needs ``private/AUDIT.key``, and ``keys rotate --party
AUDIT`` rotates the key ``keys init`` created."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from xregion.cli import app
from xregion.config import load_config
from xregion.keys import load_signer, private_key_path
from xregion.signing import KeyRoster


def test_keys_init_writes_a_key_for_every_signing_party_and_audit_can_rotate(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    runner = CliRunner()
    result = runner.invoke(app, ["keys", "init", "--keys-dir", str(keys)])
    assert result.exit_code == 0, result.output
    parties = [*load_config().regions.codes, "COORD", "AUDIT"]
    roster = KeyRoster.load(keys / "roster.json")
    for party in parties:
        assert private_key_path(keys, party).exists(), party
        assert load_signer(keys, party).key_id in roster, party
    first = load_signer(keys, "AUDIT").key_id

    result = runner.invoke(app, ["keys", "rotate", "--party", "AUDIT", "--keys-dir", str(keys), "--overlap", "1d"])
    assert result.exit_code == 0, result.output
    assert load_signer(keys, "AUDIT").key_id != first
    assert first in KeyRoster.load(keys / "roster.json")
