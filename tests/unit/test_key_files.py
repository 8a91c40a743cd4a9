"""Key rotation and revocation without a broker: roster files, reloads, the revocation grace."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support import EXAMPLE_TIME, dev_roster, dev_signers, sealed_example, write_keys_dir
from xregion.cli import app
from xregion.errors import ConfigError, KeyRevoked
from xregion.keys import ROSTER_FILE, load_roster, load_signer, private_key_path, revoke_key, rotate_key
from xregion.runtime.keyfiles import KeyFile, LiveRoster
from xregion.signing import KeyRoster

SIGNERS = dev_signers()
NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    return write_keys_dir(tmp_path / "keys", SIGNERS, dev_roster(SIGNERS))


def test_rotate_adds_a_key_from_now_and_closes_the_old_one_after_the_overlap(keys_dir: Path) -> None:
    signer, closed = rotate_key(keys_dir, "BJ", timedelta(days=7), now=NOW)
    roster = load_roster(keys_dir)
    old, new = roster.get(SIGNERS["BJ"].key_id), roster.get(signer.key_id)
    assert [k.key_id for k in closed] == [old.key_id]
    assert (new.party, new.valid_from, new.valid_until) == ("BJ", NOW, None)
    assert old.valid_until == NOW + timedelta(days=7)
    assert load_signer(keys_dir, "BJ").key_id == signer.key_id
    assert private_key_path(keys_dir, "BJ").stat().st_mode & 0o777 == 0o600
    assert not list(keys_dir.rglob("*.tmp"))
    # During the overlap both verify; an event the old key signed before its end stays valid.
    event = sealed_example("lead.submitted", SIGNERS["BJ"], time=NOW + timedelta(days=1))
    roster.verify(event.wire, "BJ", event.envelope.time)
    with pytest.raises(ConfigError):
        rotate_key(keys_dir, "XX", timedelta(days=1))


def test_revoke_records_time_and_reason(keys_dir: Path) -> None:
    key = revoke_key(keys_dir, SIGNERS["TJ"].key_id, NOW, "stolen laptop")
    raw = {k["key_id"]: k for k in json.loads((keys_dir / ROSTER_FILE).read_text())["keys"]}
    assert raw[key.key_id]["revoked_at"] == NOW.isoformat()
    assert raw[key.key_id]["revocation_reason"] == "stolen laptop"
    assert load_roster(keys_dir).get(key.key_id).revocation_reason == "stolen laptop"


def test_revocation_grace_judges_the_arrival_not_the_claimed_time() -> None:
    event = sealed_example("lead.submitted", SIGNERS["BJ"])  # time: EXAMPLE_TIME
    revoked_at = EXAMPLE_TIME + timedelta(hours=2)
    roster = dev_roster(SIGNERS)
    roster.revoke(SIGNERS["BJ"].key_id, revoked_at, "compromised")
    grace = timedelta(hours=1)
    at = event.envelope.time
    # Signed before the revocation and arriving within the grace (it waited in an outbox).
    roster.verify(event.wire, "BJ", at, received_at=revoked_at + grace, grace=grace)
    roster.verify(event.wire, "BJ", at)  # no arrival time known: judged by its time alone
    # Arriving later: backdated, or too late to trust.
    with pytest.raises(KeyRevoked) as info:
        roster.verify(event.wire, "BJ", at, received_at=revoked_at + grace + timedelta(seconds=1), grace=grace)
    assert info.value.details["keyid"] == SIGNERS["BJ"].key_id
    assert info.value.details["revocation_reason"] == "compromised"
    assert SIGNERS["BJ"].key_id in info.value.message and "reached the stream" in info.value.message


def test_live_roster_reloads_changes_and_keeps_the_last_good_one(keys_dir: Path) -> None:
    live = LiveRoster.load(keys_dir / ROSTER_FILE, min_interval_s=3600)
    assert not live.refresh()
    signer, _ = rotate_key(keys_dir, "BJ", timedelta(days=7))
    assert signer.key_id not in live.roster  # the periodic check is an hour away
    assert live.refresh() and signer.key_id in live.roster and live.reloads == 1
    (keys_dir / ROSTER_FILE).write_text("{not json", encoding="utf-8")
    assert not live.refresh(force=True)
    assert signer.key_id in live.roster
    KeyRoster(live.roster).save(keys_dir / ROSTER_FILE)
    assert not live.refresh(force=True)  # same content: nothing changed


def test_key_file_poll_returns_a_rotated_key_once(keys_dir: Path) -> None:
    watch = KeyFile(private_key_path(keys_dir, "BJ"), "BJ", SIGNERS["BJ"])
    assert watch.poll() is None
    signer, _ = rotate_key(keys_dir, "BJ", timedelta(days=7))
    polled = watch.poll()
    assert polled is not None and polled.key_id == signer.key_id
    assert watch.poll() is None


def test_cli_rotate_and_revoke(keys_dir: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["keys", "rotate", "--party", "HE", "--keys-dir", str(keys_dir), "--overlap", "12h"])
    assert result.exit_code == 0, result.output
    roster = load_roster(keys_dir)
    old = roster.get(SIGNERS["HE"].key_id)
    new = next(k for k in roster if k.party == "HE" and k.key_id != old.key_id)
    assert old.valid_until is not None and old.valid_until - new.valid_from == timedelta(hours=12)
    result = runner.invoke(
        app,
        [
            "keys",
            "revoke",
            old.key_id,
            "--at",
            "2026-11-25T06:30:00+08:00",
            "--reason",
            "compromised",
            "--keys-dir",
            str(keys_dir),
        ],
    )
    assert result.exit_code == 0, result.output
    assert load_roster(keys_dir).get(old.key_id).revoked_at == datetime(2026, 11, 24, 22, 30, tzinfo=UTC)
    for seed in (SIGNERS["HE"].seed(), load_signer(keys_dir, "HE").seed()):
        assert seed.hex() not in result.output
    bad = runner.invoke(
        app, ["keys", "revoke", old.key_id, "--at", "2026-11-25T06:30:00", "--reason", "x", "--keys-dir", str(keys_dir)]
    )
    assert bad.exit_code != 0
