#!/usr/bin/env python3
"""Check an xregion evidence package without xregion: an independent second verifier.

    python3 verify_evidence.py PACKAGE_DIR --roster roster.json --tsa-ca tsa-ca.pem
                               [--witnesses BJ,TJ,HE] [--quorum 2] [--allow-unstamped]

Needs Python 3.11+, the ``cryptography`` package (Ed25519) and the ``openssl`` command (the
RFC 3161 token is checked by ``openssl ts -verify``). It shares no code with xregion; it
follows the public formats: RFC 9162 Merkle proofs, C2SP signed notes, checkpoints and
cosignatures, RFC 3161, and xregion's signing recipe (docs/signing-recipe.md). Without
``--roster``/``--tsa-ca`` it uses the package's own copies, which proves only that the
package agrees with itself: a court should use copies obtained from the agencies.

Prints one line per problem, ``<file>: <what is wrong>``, and exits 1 if there is any.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import re
import struct
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

problems: list[str] = []


def fail(item: str, why: str) -> None:
    problems.append(f"{item}: {why}")


@contextlib.contextmanager
def item(name: str):
    """Name ``name`` as the culprit of anything unreadable inside."""
    try:
        yield
    except (OSError, ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError) as exc:
        fail(name, f"unreadable: {type(exc).__name__}: {exc}")


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# --- RFC 9162 ------------------------------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    return sha256(b"\x00" + data)


def inclusion_ok(leaf: bytes, index: int, size: int, path: list[bytes], root: bytes) -> bool:
    """RFC 9162 section 2.1.3.2."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = sha256(b"\x01" + p + r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = sha256(b"\x01" + r + p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


# --- keys ----------------------------------------------------------------------------------


def when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def valid_at(key: dict, at: datetime | None) -> bool:
    start, end, revoked = when(key["valid_from"]), when(key.get("valid_until")), when(key.get("revoked_at"))
    if at is None:
        return revoked is None
    return start <= at and (end is None or at < end) and (revoked is None or at < revoked)


def ed25519_ok(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def note_key_id(name: str, kind: int, public_key: bytes) -> bytes:
    return sha256(name.encode() + b"\n" + bytes([kind]) + public_key)[:4]


# --- the checkpoint (C2SP signed note) -------------------------------------------------------


def check_checkpoint(raw: bytes, roster: list[dict], witnesses: list[str], quorum: int, at: datetime | None):
    """(size, root) of the checkpoint if the log's signature and a quorum of cosignatures verify."""
    item = "checkpoint/checkpoint.txt"
    text_all = raw.decode("utf-8")
    cut = text_all.rfind("\n\n")
    text, lines = text_all[: cut + 1], text_all[cut + 2 :].rstrip("\n").split("\n")
    origin, size, root64 = text.split("\n")[:3]
    root = base64.b64decode(root64)
    log_ok, cosigned = False, set()
    for line in lines:
        dash, name, blob64 = line.split(" ")
        if dash != "\u2014":
            raise ValueError(f"not a signature line: {line[:40]!r}")
        blob = base64.b64decode(blob64)
        kid, sig = blob[:4], blob[4:]
        if name == origin:  # the log's signature: an AUDIT key, type 0x01
            for key in (k for k in roster if k["party"] == "AUDIT"):
                pub = base64.b64decode(key["public_key"])
                if note_key_id(origin, 0x01, pub) == kid:
                    log_ok = ed25519_ok(pub, text.encode(), sig) and valid_at(key, at)
            continue
        region = name[len("xregion/witness/") :] if name.startswith("xregion/witness/") else None
        keys = [k for k in roster if region in witnesses and k["party"] == region]
        keys = [k for k in keys if note_key_id(name, 0x04, base64.b64decode(k["public_key"])) == kid]
        if not keys:
            fail(item, f"cosignature by {name}: not a witness's key (not counted)")
            continue
        (stamp,) = struct.unpack(">Q", sig[:8])
        message = f"cosignature/v1\ntime {stamp}\n".encode() + text.encode()
        moment = datetime.fromtimestamp(stamp, UTC)
        if ed25519_ok(base64.b64decode(keys[0]["public_key"]), message, sig[8:]) and valid_at(keys[0], moment):
            cosigned.add(region)
        else:
            fail(item, f"cosignature by {name} does not verify")
    if not log_ok:
        fail(item, "the log's (AUDIT) signature does not verify")
    if len(cosigned) < quorum:
        fail(item, f"cosigned by {len(cosigned)} witnesses {sorted(cosigned)}, {quorum} required")
    return int(size), root, text, sorted(cosigned)


def check_token(root: Path, name: str, text: str, ca: Path) -> datetime | None:
    """``openssl ts -verify`` of the token over the checkpoint's text; its time."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "checkpoint.txt"
        data.write_text(text, encoding="utf-8")
        command = ["openssl", "ts", "-verify", "-in", str(root / name), "-data", str(data), "-CAfile", str(ca)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    if "Verification: OK" not in done.stdout:
        fail(name, "the time-stamp token does not verify: " + (done.stderr.strip().splitlines() or ["?"])[-1])
        return None
    shown = subprocess.run(
        ["openssl", "ts", "-reply", "-in", str(root / name), "-text"], capture_output=True, text=True
    )
    found = re.search(r"^Time stamp: (.*) GMT$", shown.stdout, re.M)
    if found is None:
        return None
    moment = " ".join(re.sub(r"\.\d+", "", found.group(1)).split())  # "Dec 5 01:56:04 2026"
    return datetime.strptime(moment, "%b %d %H:%M:%S %Y").replace(tzinfo=UTC)


# --- events (docs/signing-recipe.md) ---------------------------------------------------------


def check_event(root: Path, entry: dict, roster: list[dict], referral: str, size: int, tree_root: bytes) -> None:
    name, proof_name = entry["file"], entry["proof"]
    raw = (root / name).read_bytes()
    event = json.loads(raw)
    if event.get("id") != entry["event_id"] or event.get("subject") != referral:
        fail(name, "not the event the manifest files here")
    sender = str(event.get("source", "")).split(":")[2] if event.get("source", "").count(":") == 3 else None
    key = next((k for k in roster if k["key_id"] == event.get("keyid")), None)
    if key is None or key["party"] != sender or not valid_at(key, when(event.get("time"))):
        fail(name, f"signed with key {event.get('keyid')}, not a key of {sender} valid at {event.get('time')}")
    else:
        # The stored bytes are the canonical form (RFC 8785) with the signature member; what was
        # signed is the same bytes without it: cut the member out, check that is all that changed.
        signature = event["signature"]
        member = ',"signature":"' + signature + '"'
        signed = raw.replace(member.encode(), b"", 1)
        unsigned = {k: v for k, v in event.items() if k != "signature"}
        ok = raw.count(member.encode()) == 1 and json.loads(signed) == unsigned
        if not (ok and ed25519_ok(base64.b64decode(key["public_key"]), signed, base64.b64decode(signature))):
            fail(name, f"the signature of {sender} does not verify")
    proof = json.loads((root / proof_name).read_bytes())
    path = [base64.b64decode(h) for h in proof["inclusion_proof"]]
    if proof["tree_size"] != size or not inclusion_ok(leaf_hash(raw), proof["leaf_index"], size, path, tree_root):
        fail(proof_name, "the inclusion proof does not lead from the event to the checkpoint's root")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check an xregion evidence package offline.")
    parser.add_argument("package", type=Path)
    parser.add_argument("--roster", type=Path, help="trusted key roster (default: the package's copy)")
    parser.add_argument("--tsa-ca", type=Path, help="the TSA's trusted CA certificates (default: the package's copy)")
    parser.add_argument("--witnesses", default=None, help="witness regions, comma-separated (default: from the roster)")
    parser.add_argument("--quorum", type=int, default=None, help="cosignatures required (default: a majority)")
    parser.add_argument("--allow-unstamped", action="store_true")
    args = parser.parse_args(argv)
    problems.clear()
    root: Path = args.package
    try:
        manifest_raw = (root / "manifest.json").read_bytes()
        manifest = json.loads(manifest_raw)
        roster = json.loads((args.roster or root / "keys/roster.json").read_bytes())["keys"]
        ca = args.tsa_ca or root / "keys/tsa-ca.pem"
        witnesses = (
            args.witnesses.split(",") if args.witnesses else sorted({k["party"] for k in roster} - {"AUDIT", "COORD"})
        )
        quorum = args.quorum if args.quorum is not None else len(witnesses) // 2 + 1

        # 1. the manifest: the exporter's (AUDIT) signature, then every file's SHA-256
        with item("manifest.sig"):
            sig = json.loads((root / "manifest.sig").read_bytes())
            key = next((k for k in roster if k["key_id"] == sig["keyid"] and k["party"] == "AUDIT"), None)
            if key is None or not ed25519_ok(
                base64.b64decode(key["public_key"]), manifest_raw, base64.b64decode(sig["signature"])
            ):
                fail("manifest.json / manifest.sig", "the exporter's (AUDIT) signature does not verify")
        files = manifest["files"]
        present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
        for name in sorted(present - set(files) - {"manifest.json", "manifest.sig"}):
            fail(name, "not listed in the manifest")
        for name, digest in sorted(files.items()):
            if not (root / name).is_file():
                fail(name, "missing")
            elif hashlib.sha256((root / name).read_bytes()).hexdigest() != digest:
                fail(name, "altered (SHA-256 differs from the manifest's)")

        # 2. the checkpoint and its time-stamp
        log = manifest["log"]
        stamp_time, size, tree_root, cosigned = None, -1, b"", []
        with item(log["checkpoint"]):
            text = (root / log["checkpoint"]).read_text(encoding="utf-8")
            body = text[: text.rfind("\n\n") + 1]
            if log.get("timestamp"):
                with item(log["timestamp"]):
                    stamp_time = check_token(root, log["timestamp"], body, ca)
            elif not args.allow_unstamped:
                fail(log["checkpoint"], "no time-stamp token")
            size, tree_root, _, cosigned = check_checkpoint(
                (root / log["checkpoint"]).read_bytes(), roster, witnesses, quorum, stamp_time
            )
            if (size, base64.b64encode(tree_root).decode()) != (log["tree_size"], log["root_hash"]):
                fail("manifest.json", "names another checkpoint than checkpoint.txt holds")

        # 3. every event, 4. attachments
        for entry in manifest["events"]:
            with item(f"{entry['file']} / {entry['proof']}"):
                check_event(root, entry, roster, manifest["referral_id"], size, tree_root)
        for attachment in manifest.get("attachments", []):
            name = attachment.get("file")
            if name and hashlib.sha256((root / name).read_bytes()).hexdigest() != attachment["sha256"]:
                fail(name, "not the file its event's digest names")
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        fail("manifest.json / keys/roster.json", f"unreadable: {type(exc).__name__}: {exc}")
    for line in problems:
        print(f"FAIL {line}")
    if problems:
        return 1
    print(
        f"OK: referral {manifest['referral_id']}, {len(manifest['events'])} events, checkpoint {size} "
        f"cosigned by {', '.join(cosigned)}, time-stamped {stamp_time.isoformat() if stamp_time else 'no'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
