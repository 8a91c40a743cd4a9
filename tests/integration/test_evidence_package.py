"""Evidence packages of the demo's lead: written by ``xregion audit evidence``, verified
offline by ``xregion audit verify-evidence`` and by the independent script
``adapters/examples/verify_evidence.py`` (no xregion import); flipping any byte of the
package makes both fail naming the file; a forged token, a non-witness cosignature and a
removed event file are named even when the manifest is re-signed around them."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from rich.console import Console
from typer.testing import CliRunner

from tests.tsa import LocalTsa
from xregion.adapter import Adapter
from xregion.auditor.checkpointer import Checkpointer
from xregion.auditor.package import MANIFEST, MANIFEST_SIG, verify_package
from xregion.auditor.tlog import TransparencyLog
from xregion.auditor.tsa import TsaClient, TsaConfig
from xregion.cli import app
from xregion.config import load_config
from xregion.demo import run_demo
from xregion.keys import ROSTER_FILE, init_keys, load_signer
from xregion.note import SignedNote, cosign, default_origin
from xregion.ops.server import EmbeddedServer
from xregion.runtime.settings import RuntimeSettings
from xregion.signing import KeyRoster, Signer
from xregion.timestamps import Rfc3161ClientVerifier

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "adapters" / "examples" / "verify_evidence.py"
REGISTRY = load_config().regions


def standalone() -> Callable[[list[str]], int]:
    """The independent verifier's main(), loaded from its file (it imports nothing of xregion)."""
    spec = importlib.util.spec_from_file_location("verify_evidence", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main  # type: ignore[no-any-return]


@dataclass
class Demo:
    work: Path
    keys: Path
    roster: KeyRoster
    lead: str
    assist: str
    tsa: LocalTsa
    store: Path
    url: str


@pytest.fixture
async def demo(nats_server: EmbeddedServer, tmp_path: Path) -> AsyncIterator[Demo]:
    """The demo played on the test server; then the log (AUDIT) logs the stream, the three
    regions' adapters (restarted on the demo's stores) cosign, and a local TSA stamps."""
    work = tmp_path / "demo"
    sc = await run_demo(nats_url=nats_server.url, workdir=work, console=Console(file=io.StringIO()), insecure=True)
    title, origin, lead = sc.referrals[0]
    assert (title, origin) == ("线索移送 BJ→TJ", "BJ")
    assist = next(rid for title, _, rid in sc.referrals if title.startswith("协查"))
    keys = work / "keys"
    roster = init_keys(keys, ["AUDIT"])  # the auditor's key joins the demo's roster
    tsa = LocalTsa(tmp_path / "tsa").up()
    settings = RuntimeSettings(data_dir=work)
    adapters = []
    nc = None
    try:
        for region in REGISTRY.codes:
            adapter = Adapter.from_keys_dir(
                region, keys, nats_url=nats_server.url, store_path=work / f"{region}.db", settings=settings
            )
            adapters.append(await adapter.start())
        import nats

        nc = await nats.connect(nats_server.url)
        tlog = TransparencyLog(work / "tlog.db", origin=default_origin(settings.stream), stream=settings.stream)
        service = Checkpointer(
            tlog,
            nc,
            load_signer(keys, "AUDIT"),
            lambda: roster,
            list(REGISTRY.codes),
            stream=settings.stream,
            dead_letter_stream=settings.dead_letter_stream,
            tsa=TsaClient(TsaConfig(tsa.url, tsa.ca_file)),
        )
        await service.sync()
        await service.checkpoint()
        for adapter in adapters:
            assert adapter.witness is not None and await adapter.witness.step() is not None
        assert await service.collect() == 3
        assert await service.stamp() is not None
        tlog.close()
        yield Demo(work, keys, roster, lead, assist, tsa, work / "tlog.db", nats_server.url)
    finally:
        if nc is not None:
            await nc.close()
        for adapter in adapters:
            await adapter.stop()
        tsa.down()


async def xregion(*args: str) -> Any:
    return await anyio.to_thread.run_sync(lambda: CliRunner().invoke(app, list(args)))


def both(package: Path, demo: Demo, main: Callable[[list[str]], int]) -> tuple[list[str], list[str]]:
    """The problems each verifier names: xregion's (items), the script's (its FAIL lines)."""
    report = verify_package(
        package, REGISTRY, roster=demo.roster, tsa=Rfc3161ClientVerifier.from_bundle(demo.tsa.ca_file)
    )
    out = io.StringIO()
    with redirect_stdout(out):
        code = main([str(package), "--roster", str(demo.keys / ROSTER_FILE), "--tsa-ca", str(demo.tsa.ca_file)])
    lines = [line for line in out.getvalue().splitlines() if line.startswith("FAIL ")]
    assert (code == 0) == (not lines)
    return [p.line() for p in report.problems], lines


async def test_the_demos_lead_verifies_offline_with_both_verifiers_and_any_flipped_byte_is_named(
    demo: Demo, tmp_path: Path
) -> None:
    package = tmp_path / "package"
    made = await xregion(
        "audit", "evidence", demo.lead, "--out", str(package), "--store", str(demo.store), "--keys-dir",
        str(demo.keys), "--nats-url", demo.url, "--tsa-ca", str(demo.tsa.ca_file),
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    manifest = json.loads((package / MANIFEST).read_text())
    assert [e["type"] for e in manifest["events"]] == [
        "lead.submitted", "lead.received", "lead.accepted", "lead.progress", "lead.concluded",
    ]  # fmt: skip
    summary = (package / "summary-zh.txt").read_text(encoding="utf-8")
    assert "北京市（BJ） → 天津市（TJ）：移送线索（lead.submitted）" in summary and "可信时间戳" in summary

    # offline: no NATS, nothing but the package and the trusted roots
    verified = await xregion(
        "audit", "verify-evidence", str(package), "--roster", str(demo.keys / ROSTER_FILE), "--tsa-ca",
        str(demo.tsa.ca_file),
    )  # fmt: skip
    assert verified.exit_code == 0, verified.output
    assert "evidence verified" in verified.output and "cosigned by BJ, HE, TJ" in verified.output
    script = subprocess.run(
        [sys.executable, str(SCRIPT), str(package), "--roster", str(demo.keys / ROSTER_FILE), "--tsa-ca",
         str(demo.tsa.ca_file)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert script.returncode == 0, script.stdout + script.stderr
    assert script.stdout.startswith(f"OK: referral {demo.lead}, 5 events")
    assert "import xregion" not in SCRIPT.read_text() and "from xregion" not in SCRIPT.read_text()
    with_openssl = await xregion(
        "audit", "verify-evidence", str(package), "--roster", str(demo.keys / ROSTER_FILE), "--tsa-ca",
        str(demo.tsa.ca_file), "--tsa-verifier", "openssl",
    )  # fmt: skip
    assert with_openssl.exit_code == 0, with_openssl.output

    # flip one byte of every file, at its start, middle and end: both verifiers fail, naming it
    main = standalone()
    assert both(package, demo, main) == ([], [])
    files = sorted(p.relative_to(package).as_posix() for p in package.rglob("*") if p.is_file())
    assert len(files) == 17
    for name in files:
        path = package / name
        original = path.read_bytes()
        for at in sorted({0, len(original) // 2, len(original) - 2}):
            flipped = bytearray(original)
            flipped[at] ^= 0x01
            path.write_bytes(bytes(flipped))
            try:
                ours, theirs = both(package, demo, main)
            finally:
                path.write_bytes(original)
            assert ours and any(name in line for line in ours), (name, at, ours)
            assert theirs and any(name in line for line in theirs), (name, at, theirs)
    assert both(package, demo, main) == ([], [])


async def test_forged_token_non_witness_cosignature_and_removed_event_are_named_past_a_resigned_manifest(
    demo: Demo, tmp_path: Path
) -> None:
    package = tmp_path / "package"
    made = await xregion(
        "audit", "evidence", demo.lead, "--out", str(package), "--store", str(demo.store), "--keys-dir",
        str(demo.keys), "--nats-url", demo.url, "--tsa-ca", str(demo.tsa.ca_file),
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    main = standalone()
    audit = load_signer(demo.keys, "AUDIT")

    def tampered(change: Callable[[Path, dict[str, Any]], None]) -> Path:
        """A copy of the package changed by ``change``, its manifest re-signed by the exporter:
        only the deeper checks can tell."""
        copy = tmp_path / f"copy-{len(list(tmp_path.iterdir()))}"
        shutil.copytree(package, copy)
        manifest = json.loads((copy / MANIFEST).read_text())
        change(copy, manifest)
        manifest["files"] = {
            p.relative_to(copy).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(copy.rglob("*"))
            if p.is_file() and p.name not in (MANIFEST, MANIFEST_SIG)
        }
        body = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode()
        (copy / MANIFEST).write_bytes(body)
        signature = {"keyid": audit.key_id, "signature": base64.b64encode(audit.sign_bytes(body)).decode()}
        (copy / MANIFEST_SIG).write_text(json.dumps(signature))
        return copy

    def forge_token(copy: Path, manifest: dict[str, Any]) -> None:
        other = LocalTsa(tmp_path / "rogue", "rogue TSA")
        from xregion.timestamps import build_request

        text = SignedNote.parse((copy / "checkpoint/checkpoint.txt").read_bytes()).text.encode()
        (copy / "checkpoint/timestamp.tsr").write_bytes(other.stamp(build_request(text)[0]))

    ours, theirs = both(tampered(forge_token), demo, main)
    assert any(line.startswith("checkpoint/timestamp.tsr: timestamp_invalid") for line in ours), ours
    assert any(line.startswith("FAIL checkpoint/timestamp.tsr:") for line in theirs), theirs

    def non_witness(copy: Path, manifest: dict[str, Any]) -> None:
        path = copy / "checkpoint/checkpoint.txt"
        note = SignedNote.parse(path.read_bytes())
        path.write_bytes(note.adding(cosign(note.text, Signer.generate("TJ"))).encode())

    ours, theirs = both(tampered(non_witness), demo, main)
    assert any("cosignature_not_witness" in line for line in ours), ours
    assert any("not a witness" in line for line in theirs), theirs

    def drop_cosignatures(copy: Path, manifest: dict[str, Any]) -> None:
        path = copy / "checkpoint/checkpoint.txt"
        note = SignedNote.parse(path.read_bytes())
        path.write_bytes(SignedNote(note.text, note.signatures[:2]).encode())  # the log's and one witness's

    ours, theirs = both(tampered(drop_cosignatures), demo, main)
    assert any("cosignatures_missing" in line for line in ours), ours
    assert any("2 required" in line for line in theirs), theirs

    def bend_proof(copy: Path, manifest: dict[str, Any]) -> None:
        path = copy / manifest["events"][1]["proof"]
        proof = json.loads(path.read_text())
        proof["inclusion_proof"][0] = base64.b64encode(bytes(32)).decode()  # another sibling hash
        path.write_text(json.dumps(proof))

    ours, theirs = both(tampered(bend_proof), demo, main)
    assert any(line.startswith("proofs/002-") and "inclusion_invalid" in line for line in ours), ours
    assert any(line.startswith("FAIL proofs/002-") for line in theirs), theirs

    def remove_event(copy: Path, manifest: dict[str, Any]) -> None:
        entry = manifest["events"][2]
        (copy / entry["file"]).unlink()  # the file goes, the manifest still lists it

    ours, theirs = both(tampered(remove_event), demo, main)
    assert ours and all("events/003-" in line for line in ours), ours
    assert theirs and all("events/003-" in line for line in theirs), theirs


async def test_attachments_travel_in_the_package_and_are_checked_against_their_signed_digest(
    demo: Demo, tmp_path: Path
) -> None:
    package = tmp_path / "package"
    made = await xregion(
        "audit", "evidence", demo.assist, "--out", str(package), "--store", str(demo.store), "--keys-dir",
        str(demo.keys), "--nats-url", demo.url, "--tsa-ca", str(demo.tsa.ca_file), "--attachments",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    manifest = json.loads((package / MANIFEST).read_text())
    included = [a for a in manifest["attachments"] if a["file"]]
    assert included and included[0]["filename"] == "测试购买录像.mp4"
    path = package / included[0]["file"]
    assert path.stat().st_size == 1_000_000
    assert "测试购买录像.mp4" in (package / "summary-zh.txt").read_text(encoding="utf-8")
    main = standalone()
    assert both(package, demo, main) == ([], [])
    original = path.read_bytes()
    path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    ours, theirs = both(package, demo, main)
    assert ours and all(included[0]["file"] in line for line in ours), ours
    assert theirs and all(included[0]["file"] in line for line in theirs), theirs
