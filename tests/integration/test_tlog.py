"""The verifiable log against a real nats-server: a Merkle tree over the stream, checkpoints
as C2SP signed notes cosigned by the three regions' adapters as witnesses, inclusion and
consistency proofs — and what the auditor and the witnesses name when history is changed
after a checkpoint: a removed event, a rewritten tree, a cosignature by a non-witness."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bus import Bus
from tests.support import dev_seed, roster_key
from tests.tlog_support import WITNESSES, LogHarness, delete_message, storage_attacker, stored_records
from xregion.auditor.logcheck import check_log
from xregion.examples import PAYLOADS
from xregion.merkle import leaf_hash, verify_consistency, verify_inclusion
from xregion.note import NoteSignature, SignedNote, check_cosignatures, cosign, default_origin, verify_log_signature
from xregion.signing import KeyRoster, Signer

pytestmark = pytest.mark.anyio
ORIGIN = default_origin("XREGION")


@pytest.fixture
def audit(roster: KeyRoster) -> Signer:
    """The log's key (``AUDIT``), in the roster every adapter verifies with."""
    signer = Signer.from_seed("AUDIT", dev_seed("AUDIT"))
    roster.add(roster_key(signer))
    return signer


async def lead(bus: Bus, to: str = "TJ") -> str:
    sent = await bus.adapters["BJ"].client.open("lead.submitted", to=to, data=PAYLOADS["lead.submitted"])
    await bus.state("BJ", sent.envelope.subject, "received")
    for adapter in bus.adapters.values():
        await adapter.wait_published()
    return sent.envelope.id


async def test_checkpoints_are_cosigned_by_every_witness_and_proofs_verify(
    bus: Bus, tmp_path: Path, audit: Signer, roster: KeyRoster
) -> None:
    await bus.start("BJ", "TJ", "HE")
    first = await lead(bus)
    log = await LogHarness.open(bus, tmp_path / "log.db", audit)
    try:
        size = await log.round()
        assert size == 2  # lead.submitted and its receipt
        note = log.tlog.cosigned_note(size)
        verify_log_signature(note, roster, ORIGIN)
        assert check_cosignatures(note, roster, WITNESSES, ORIGIN).regions == sorted(WITNESSES)
        assert note.render().startswith(f"{ORIGIN}\n2\n")  # C2SP tlog-checkpoint text

        await lead(bus, to="HE")
        bigger = await log.round()
        assert bigger == 4 and log.tlog.cosigners(bigger) == sorted(WITNESSES)
        # each witness checked consistency from the size it cosigned before
        for adapter in bus.adapters.values():
            assert adapter.witness is not None
            assert (state := await adapter.witness.state()) is not None and state.size == 4
        new_root = log.tlog.root(bigger)
        verify_consistency(size, bigger, log.tlog.root(size), new_root, log.tlog.consistency_proof(size, bigger))

        (leaf,) = log.tlog.leaves_of_event(first)
        events, published = await stored_records(bus)
        assert leaf.hash == leaf_hash(events[leaf.index].raw)
        verify_inclusion(leaf.hash, leaf.index, bigger, log.tlog.inclusion_proof(leaf.index, bigger), new_root)

        report = check_log(events, published, roster, WITNESSES, ORIGIN, tlog=log.tlog)
        assert [a.line() for a in report.anomalies] == []
        assert sorted(report.checkpoints) == [2, 4]
        assert report.checkpoints[4].cosigners == set(WITNESSES)
        # a second round with nothing new signs nothing and asks for nothing
        assert await log.service.checkpoint() is None
        assert await log.witness_round() == []
    finally:
        await log.close()


async def test_a_removed_event_is_named_with_its_id(bus: Bus, tmp_path: Path, audit: Signer, roster: KeyRoster) -> None:
    await storage_attacker(bus)
    await bus.start("BJ", "TJ", "HE")
    first = await lead(bus)
    await lead(bus, to="HE")
    log = await LogHarness.open(bus, tmp_path / "log.db", audit)
    try:
        await log.round()
        (leaf,) = log.tlog.leaves_of_event(first)
        await delete_message(bus, leaf.stream_seq)  # whoever holds the storage
        events, published = await stored_records(bus)
        report = check_log(events, published, roster, WITNESSES, ORIGIN, tlog=log.tlog)
        codes = [a.code for a in report.anomalies]
        assert "tlog_event_removed" in codes and "tlog_root_mismatch" in codes
        removed = next(a for a in report.anomalies if a.code == "tlog_event_removed")
        assert removed.event_id == first and removed.stream_seq == leaf.stream_seq
        # without the log's store, the cosigned checkpoint alone still shows it (by sequence)
        alone = check_log(events, published, roster, WITNESSES, ORIGIN)
        assert {a.code for a in alone.anomalies} == {"tlog_event_removed", "tlog_root_mismatch"}
    finally:
        await log.close()


async def test_a_tree_rewritten_after_a_checkpoint_is_refused_by_the_witnesses(
    bus: Bus, tmp_path: Path, audit: Signer, roster: KeyRoster
) -> None:
    await storage_attacker(bus)
    await bus.start("BJ", "TJ", "HE")
    first = await lead(bus)
    await lead(bus, to="HE")
    honest = await LogHarness.open(bus, tmp_path / "log.db", audit)
    size = await honest.round()
    (leaf,) = honest.tlog.leaves_of_event(first)
    await honest.close()
    assert size == 4

    # History rewritten: the first event removed from the stream, the log rebuilt from it
    # and a new checkpoint signed with the log's own key, after the stream grew.
    await delete_message(bus, leaf.stream_seq)
    await lead(bus, to="TJ")
    forged = await LogHarness.open(bus, tmp_path / "rebuilt.db", audit)
    try:
        await forged.service.collect()  # it learns the witnesses' sizes from their cosignatures
        await forged.service.sync()
        made = await forged.service.checkpoint()
        assert made is not None and made.size == 5
        assert await forged.witness_round() == []  # no witness cosigns it
        for region, adapter in bus.adapters.items():
            assert adapter.witness is not None
            assert [e.code for e in adapter.witness.refusals] == ["tlog_inconsistent"], region
            assert (state := await adapter.witness.state()) is not None and state.size == 4

        async def alerted() -> bool:
            return {a.detected_by for a in await bus.alerts() if a.code == "tlog_inconsistent"} == set(WITNESSES)

        from tests.bus import eventually

        await eventually(alerted, what="a tlog_inconsistent alert from every witness")

        events, published = await stored_records(bus)
        report = check_log(events, published, roster, WITNESSES, ORIGIN, tlog=forged.tlog)
        lines = [a.line() for a in report.anomalies]
        assert any(a.code == "tlog_root_mismatch" and "checkpoint 4" in a.message for a in report.anomalies), lines
        assert any(a.code == "tlog_event_removed" for a in report.anomalies), lines
    finally:
        await forged.close()


async def test_a_cosignature_by_a_non_witness_is_named_and_does_not_count(
    bus: Bus, tmp_path: Path, audit: Signer, roster: KeyRoster, signers: dict[str, Signer]
) -> None:
    await bus.start("BJ", "TJ")
    await lead(bus)
    log = await LogHarness.open(bus, tmp_path / "log.db", audit)
    try:
        size = await log.round()
        note = log.tlog.cosigned_note(size)
        intruder = Signer.generate("TJ")  # a TJ key the roster does not hold
        coordinator = signers["COORD"]  # a roster key, but no witness
        forged = note.adding(cosign(note.text, intruder), cosign(note.text, coordinator))
        found = check_cosignatures(forged, roster, WITNESSES, ORIGIN)
        assert found.regions == ["BJ", "TJ"]
        assert [p.code for p in found.problems] == ["cosignature_not_witness", "cosignature_not_witness"]
        assert "COORD" in found.problems[1].message
        # a witness's line that does not verify is named as such
        bad = note.signatures[1]
        altered = NoteSignature(bad.name, bad.key_id, bad.signature[:-1] + bytes([bad.signature[-1] ^ 1]))
        broken = SignedNote(note.text, (note.signatures[0], altered))
        assert [p.code for p in check_cosignatures(broken, roster, WITNESSES, ORIGIN).problems] == [
            "cosignature_invalid"
        ]
    finally:
        await log.close()


async def test_a_log_stops_at_a_stream_restored_behind_it_and_a_new_log_follows(
    bus: Bus, tmp_path: Path, audit: Signer
) -> None:
    from xregion.merkle import LogInconsistent
    from xregion.runtime.restores import RestoreMark

    await bus.start("BJ", "TJ")
    await lead(bus)
    await lead(bus)
    log = await LogHarness.open(bus, tmp_path / "log.db", audit)
    try:
        assert await log.service.sync() == 4
        # what `xregion broker --restore` leaves in the stream's configuration: a backup of seq 1-2
        nc = await bus.raw()
        js = nc.jetstream()
        config = (await js.stream_info(bus.settings.stream)).config
        config.metadata = {**(config.metadata or {}), **RestoreMark("2026-12-05T00:00:00Z", 2).metadata()}
        await js.update_stream(config)
        await nc.close()
        with pytest.raises(LogInconsistent, match="start a new log"):
            await log.service.sync()
        assert log.tlog.size == 4  # nothing skipped, nothing appended
    finally:
        await log.close()
    fresh = await LogHarness.open(bus, tmp_path / "after-restore.db", audit)
    try:
        assert await fresh.service.sync() == 4 and await fresh.service.sync() == 0
    finally:
        await fresh.close()
