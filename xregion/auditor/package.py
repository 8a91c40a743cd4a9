"""Evidence packages: everything a court needs to check one referral, offline.

``xregion audit evidence REFERRAL_ID --out DIR`` writes::

    DIR/manifest.json               what the package holds: the referral, every event (id, type,
                                    sender, addressee, time, stream position, leaf index), the
                                    checkpoint, the attachments, and the SHA-256 of every file
    DIR/manifest.sig                Ed25519 signature of the exporter (AUDIT key) over manifest.json
    DIR/events/NNN-<event id>.json  each event's original bytes, exactly as the stream stores them
    DIR/proofs/NNN-<event id>.json  its inclusion proof: leaf index, tree size, audit path
    DIR/checkpoint/checkpoint.txt   the C2SP checkpoint: the log's signature, the witnesses' cosignatures
    DIR/checkpoint/timestamp.tsr    the RFC 3161 time-stamp response over the checkpoint's text
    DIR/keys/roster.json            the public key roster (senders, the log, the witnesses)
    DIR/keys/tsa-ca.pem             the TSA's CA certificates used at export
    DIR/attachments/<sha256>        attachments, when exported with them (else their digests only)
    DIR/summary-zh.txt              a summary in Chinese: who sent what, when, with which handling codes

:func:`verify_package` checks it with nothing but the package and the trusted roots (a key
roster and the TSA's CA certificates; the package's own copies when none are given, which
only proves self-consistency): every file against the signed manifest, every event's
signature, its leaf hash and inclusion proof up to the checkpoint's root, the log's
signature and enough witness cosignatures on the checkpoint, the time-stamp token over it,
and each attachment against the digest a signed event names. Each problem names the item
(the file) and its code. ``adapters/examples/verify_evidence.py`` is an independent second
verifier that imports nothing of xregion.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from nacl.exceptions import BadSignatureError

from xregion.auditor.tlog import Leaf, StoredCheckpoint, StoredTimestamp
from xregion.codec import DecodedEvent, decode
from xregion.errors import VerificationError, XRegionError
from xregion.merkle import leaf_hash, verify_inclusion
from xregion.note import SignedNote, WitnessQuorum, check_cosignatures, verify_log_signature
from xregion.regions import AUDITOR, RegionRegistry
from xregion.signing import KeyRoster, RosterKey, Signer
from xregion.timestamps import TimestampVerifier, TokenInfo, token_info

FORMAT = "xregion-evidence/1"
MANIFEST = "manifest.json"
MANIFEST_SIG = "manifest.sig"
CHECKPOINT = "checkpoint/checkpoint.txt"
TOKEN = "checkpoint/timestamp.tsr"
ROSTER = "keys/roster.json"
TSA_CA = "keys/tsa-ca.pem"
SUMMARY = "summary-zh.txt"
BEIJING = timezone(timedelta(hours=8))


class EvidenceInvalid(VerificationError):
    """An evidence package's file is missing, altered, unlisted or malformed."""

    code = "evidence_invalid"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def attachments_of(wire: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every file digest an event's ``data`` names: attachments (with object name, file name,
    size), evidence items and documents (digest only)."""
    found: list[dict[str, Any]] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            if "object_name" in value and isinstance(value.get("sha256"), str):
                found.append(
                    {
                        "sha256": value["sha256"],
                        "filename": value.get("filename"),
                        "size": value.get("size"),
                        "object_name": value["object_name"],
                        "field": path,
                    }
                )
                return
            for key, item in value.items():
                if key in ("sha256", "document_sha256") and isinstance(item, str) and len(item) == 64:
                    found.append({"sha256": item, "field": f"{path}.{key}"})
                else:
                    walk(item, f"{path}.{key}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, f"{path}[{i}]")

    walk(wire.get("data"), "data")
    unique: dict[str, dict[str, Any]] = {}
    for item in found:  # an evidence item and its attachment name one digest: keep the richer
        if item["sha256"] not in unique or "object_name" in item:
            unique[item["sha256"]] = item
    return list(unique.values())


# --- writing -------------------------------------------------------------------------------


@dataclass
class PackageEvent:
    leaf: Leaf
    raw: bytes
    event: DecodedEvent


def write_package(
    out: Path,
    referral_id: str,
    events: list[PackageEvent],
    proofs: list[list[bytes]],
    checkpoint: StoredCheckpoint,
    note: SignedNote,
    token: StoredTimestamp | None,
    roster: KeyRoster,
    signer: Signer,
    registry: RegionRegistry,
    *,
    tsa_ca: Path | None = None,
    attachments: Mapping[str, bytes] | None = None,
    witnesses_required: int = 0,
    excluded: int = 0,
) -> dict[str, Any]:
    """Write the package into ``out`` (which must not exist or be empty); return the manifest."""
    if out.exists() and any(out.iterdir()):
        raise XRegionError(f"{out} is not empty: an evidence package goes into a directory of its own")
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}

    def put(name: str, data: bytes) -> None:
        _write(out / name, data)
        files[name] = _sha256(data)

    listed = []
    found_attachments: list[dict[str, Any]] = []
    for n, (item, path) in enumerate(zip(events, proofs, strict=True), start=1):
        env = item.event.envelope
        stem = f"{n:03d}-{env.id}"
        put(f"events/{stem}.json", item.raw)
        proof = {
            "event_id": env.id,
            "leaf_index": item.leaf.index,
            "tree_size": checkpoint.size,
            "leaf_hash": _b64(item.leaf.hash),
            "inclusion_proof": [_b64(h) for h in path],
        }
        put(f"proofs/{stem}.json", (json.dumps(proof, indent=2) + "\n").encode())
        listed.append(
            {
                "position": n,
                "event_id": env.id,
                "type": env.event_type,
                "sender": env.sender,
                "addressee": env.addressee,
                "time": env.time.isoformat(),
                "handling": list(env.handling or ()),
                "keyid": item.event.wire.get("keyid"),
                "stream_seq": item.leaf.stream_seq,
                "stored_at": item.leaf.stored_at.isoformat(),
                "leaf_index": item.leaf.index,
                "file": f"events/{stem}.json",
                "proof": f"proofs/{stem}.json",
            }
        )
        for attachment in attachments_of(item.event.wire):
            attachment = {**attachment, "event_id": env.id, "file": None}
            content = (attachments or {}).get(attachment["sha256"])
            if content is not None:
                name = f"attachments/{attachment['sha256']}"
                if name not in files:
                    put(name, content)
                attachment["file"] = name
            found_attachments.append(attachment)
    put(CHECKPOINT, note.encode())
    info: TokenInfo | None = None
    if token is not None:
        put(TOKEN, token.response)
        info = token_info(token.response)
    put(ROSTER, (json.dumps(roster.to_json(), indent=2, ensure_ascii=False) + "\n").encode())
    if tsa_ca is not None:
        put(TSA_CA, tsa_ca.read_bytes())
    created = datetime.now(UTC)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "referral_id": referral_id,
        "created_at": created.isoformat(),
        "exporter": {"party": signer.party, "keyid": signer.key_id},
        "log": {
            "origin": note.checkpoint().origin,
            "tree_size": checkpoint.size,
            "root_hash": _b64(checkpoint.root),
            "checkpoint": CHECKPOINT,
            "timestamp": TOKEN if token is not None else None,
            "timestamp_time": info.gen_time.isoformat() if info else None,
            "witnesses_required": witnesses_required,
        },
        "events": listed,
        "attachments": found_attachments,
        "excluded_not_authentic": excluded,
    }
    summary = summary_zh(manifest, note, info, roster, registry)
    put(SUMMARY, summary.encode())
    manifest["files"] = dict(sorted(files.items()))
    body = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode()
    _write(out / MANIFEST, body)
    signature = {"keyid": signer.key_id, "signature": _b64(signer.sign_bytes(body))}
    _write(out / MANIFEST_SIG, (json.dumps(signature, indent=2) + "\n").encode())
    return manifest


EVENT_ZH = {
    "submitted": "移送线索",
    "received": "签收（自动回执）",
    "accepted": "受理",
    "rejected": "不予受理",
    "info_requested": "要求补充材料",
    "info_supplied": "补充材料",
    "forwarded": "转送",
    "progress": "办理进展",
    "concluded": "办结",
    "withdrawn": "撤回",
    "permission_requested": "请求许可",
    "permission_granted": "同意许可",
    "permission_refused": "拒绝许可",
    "requested": "请求协查",
    "declined": "拒绝协查",
    "evidence_delivered": "移交证据",
    "completed": "协查完成",
    "cancelled": "取消协查",
    "published": "发布执法结果",
    "recognized": "认可",
    "contested": "提出异议",
    "revoked": "撤销",
    "revocation_acknowledged": "确认撤销",
    "blacklist_upserted": "列入/更新黑名单",
    "blacklist_removed": "移出黑名单",
    "alert": "风险预警",
    "bulletin": "典型案例通报",
    "acknowledged": "确认收到",
    "overdue": "逾期督办",
    "reminder": "到期提醒",
}
FAMILY_ZH = {
    "lead": "线索移送",
    "assist": "协查请求",
    "recognition": "执法结果互认",
    "share": "信息共享",
    "escalation": "督办",
}
HANDLING_ZH = {
    "H0": "H0 仅限用于所述目的",
    "H1": "H1 未经移送方许可不得用于司法程序",
    "H2": "H2 未经移送方许可不得再行移送",
    "H3": "H3 其他限制（见说明）",
}


def _party_zh(code: str, registry: RegionRegistry) -> str:
    if code in registry.codes:
        return f"{registry.get(code).name_zh}（{code}）"
    return {"ALL": "全部地区（ALL）", "COORD": "协调机构（COORD）", "AUDIT": "审计方（AUDIT）"}.get(code, code)


def _beijing(moment: str) -> str:
    return datetime.fromisoformat(moment).astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def summary_zh(
    manifest: Mapping[str, Any], note: SignedNote, info: TokenInfo | None, roster: KeyRoster, registry: RegionRegistry
) -> str:
    """The human-readable summary of a package, in Chinese (times in Beijing time, UTC+8)."""
    events = manifest["events"]
    first = events[0] if events else {}
    family = str(first.get("type", "?")).split(".")[0]
    lines = [
        "电子证据包说明",
        "================",
        "",
        f"案件（移送）编号：{manifest['referral_id']}",
        f"类别：{FAMILY_ZH.get(family, family)}",
    ]
    if first:
        lines.append(
            f"发起方：{_party_zh(first['sender'], registry)}　接收方：{_party_zh(first['addressee'], registry)}"
        )
        codes = first.get("handling") or []
        lines.append("处理代码：" + ("；".join(HANDLING_ZH.get(c, c) for c in codes) or "无"))
    lines += [
        f"证据包生成时间：{_beijing(manifest['created_at'])}（北京时间）",
        f"导出方：{manifest['exporter']['party']}（密钥 {manifest['exporter']['keyid']}）",
        "",
        "一、事件记录（按进入消息流的先后顺序）",
    ]
    for e in events:
        kind = str(e["type"]).split(".")
        action = EVENT_ZH.get(kind[-1], e["type"])
        handling = "，处理代码 " + "、".join(e["handling"]) if e.get("handling") else ""
        lines += [
            f"  {e['position']}. {_beijing(e['time'])}  {_party_zh(e['sender'], registry)} → "
            f"{_party_zh(e['addressee'], registry)}：{action}（{e['type']}）{handling}",
            f"     事件编号 {e['event_id']}；签名密钥 {e['keyid']}；"
            f"进入消息流 {_beijing(e['stored_at'])}（流序号 {e['stream_seq']}，日志叶序号 {e['leaf_index']}）",
            f"     原始数据：{e['file']}；包含证明：{e['proof']}",
        ]
    if manifest.get("excluded_not_authentic"):
        lines.append(f"  另有 {manifest['excluded_not_authentic']} 条自称属于本案但签名无效的消息，未收入本证据包。")
    lines += ["", "二、附件"]
    if not manifest["attachments"]:
        lines.append("  无")
    for a in manifest["attachments"]:
        where = f"已收入 {a['file']}" if a.get("file") else "仅含摘要（文件未收入）"
        name = f"{a['filename']}，" if a.get("filename") else ""
        lines.append(f"  {name}SHA-256 {a['sha256']}（见事件 {a['event_id']} 的 {a['field']}）：{where}")
    log = manifest["log"]
    checked = check_cosignatures(note, roster, registry.codes, log["origin"])
    cosigners = "；".join(f"{_party_zh(c.region, registry)} {_beijing(c.time.isoformat())}" for c in checked.cosigned)
    lines += [
        "",
        "三、日志检查点（默克尔树，RFC 9162）",
        f"  日志：{log['origin']}；树大小：{log['tree_size']}；根哈希：{log['root_hash']}",
        f"  日志签名：审计方（AUDIT）；文件：{log['checkpoint']}",
        "  见证方联署：" + (cosigners or "无"),
        "",
        "四、可信时间戳（RFC 3161）",
    ]
    if info is None:
        lines.append("  无（本检查点尚无时间戳）")
    else:
        lines += [
            f"  时间戳机构：{info.tsa or '未注明'}",
            f"  时间：{_beijing(info.gen_time.isoformat())}（北京时间）；摘要算法：{info.hash_alg}",
            f"  文件：{log['timestamp']}",
        ]
    lines += [
        "",
        "五、本证据包能证明什么、不能证明什么",
        "  能证明：上列每一事件的原始数据由其发送方的密钥签名，内容未被改动；每一事件在日志检查点所覆盖的",
        "  默克尔树中（包含证明）；该检查点由审计方签名、经上述地区见证联署，且不晚于时间戳所示时间已经存在。",
        "  不能证明：事件内容本身真实；本案没有其他事件（包含证明不能证明“不存在”）；事件写成的确切时间",
        "  （时间戳只给出上限，事件自带的时间是发送方的声明）。个人信息字段为加密状态（见 docs/evidence.md）。",
        "",
        "六、核验方法（离线，无需连接系统）",
        "  xregion audit verify-evidence <本目录> --roster <可信密钥名册> --tsa-ca <时间戳机构根证书>",
        "  或独立核验脚本：python3 verify_evidence.py <本目录> --roster <可信密钥名册> --tsa-ca <时间戳机构根证书>",
        "  （本包 keys/ 目录中的名册与证书仅供参考；应使用从发布方独立取得的可信副本。）",
        "",
    ]
    return "\n".join(lines)


# --- verifying -----------------------------------------------------------------------------


@dataclass
class Problem:
    item: str
    code: str
    message: str

    def line(self) -> str:
        return f"{self.item}: {self.code}: {self.message}"

    def to_json(self) -> dict[str, str]:
        return {"item": self.item, "code": self.code, "message": self.message}


@dataclass
class PackageReport:
    problems: list[Problem] = field(default_factory=list)
    referral_id: str | None = None
    events: int = 0
    cosigners: list[str] = field(default_factory=list)
    timestamp: str | None = None
    roster_source: str = ""
    tsa_source: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, item: str, exc: XRegionError | str, code: str = EvidenceInvalid.code) -> None:
        if isinstance(exc, XRegionError):
            self.problems.append(Problem(item, exc.code, exc.message))
        else:
            self.problems.append(Problem(item, code, exc))

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "referral_id": self.referral_id,
            "events": self.events,
            "cosigned_by": self.cosigners,
            "timestamp": self.timestamp,
            "roster": self.roster_source,
            "tsa_ca": self.tsa_source,
            "problems": [p.to_json() for p in self.problems],
        }


def _read(root: Path, name: str, report: PackageReport) -> bytes | None:
    try:
        return (root / name).read_bytes()
    except OSError:
        report.add(name, "missing")
        return None


def verify_package(
    root: Path,
    registry: RegionRegistry,
    *,
    roster: KeyRoster | None = None,
    tsa: TimestampVerifier | None = None,
    witnesses: Iterable[str] | None = None,
    quorum: int | None = None,
    allow_unstamped: bool = False,
) -> PackageReport:
    """Check the package in ``root`` (see the module doc); every problem names its item."""
    from xregion.timestamps import Rfc3161ClientVerifier

    report = PackageReport()
    manifest_raw = _read(root, MANIFEST, report)
    if manifest_raw is None:
        return report
    try:
        manifest = json.loads(manifest_raw)
        files: dict[str, str] = dict(manifest["files"])
        log = manifest["log"]
        report.referral_id = str(manifest["referral_id"])
    except (ValueError, KeyError, TypeError) as exc:
        report.add(MANIFEST, f"not a manifest: {exc}")
        return report

    # 1. the trusted roots (else the package's own copies: self-consistency only)
    if roster is None:
        raw = _read(root, ROSTER, report)
        try:
            roster = KeyRoster(RosterKey.from_json(k) for k in json.loads(raw or b"{}").get("keys", []))
        except (ValueError, XRegionError) as exc:
            report.add(ROSTER, f"unreadable roster: {exc}")
            roster = KeyRoster()
        report.roster_source = f"the package's own {ROSTER} (self-asserted)"
    else:
        report.roster_source = "given"
    if tsa is None and (root / TSA_CA).exists():
        try:
            tsa = Rfc3161ClientVerifier.from_bundle(root / TSA_CA)
            report.tsa_source = f"the package's own {TSA_CA} (self-asserted)"
        except XRegionError as exc:
            report.add(TSA_CA, exc)
    elif tsa is not None:
        report.tsa_source = "given"

    # 2. the manifest's signature, then every file against it
    sig_raw = _read(root, MANIFEST_SIG, report)
    if sig_raw is not None:
        _check_manifest_signature(manifest_raw, sig_raw, roster, report)
    present = {
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")
    } - {MANIFEST, MANIFEST_SIG}
    for name in sorted(present - set(files)):
        report.add(name, "a file the manifest does not list")
    for name, digest in sorted(files.items()):
        if ".." in name.split("/") or name.startswith("/"):
            report.add(name, "a file name outside the package")
            continue
        data = _read(root, name, report)
        if data is not None and _sha256(data) != digest:
            report.add(name, f"altered: its SHA-256 is not the one {MANIFEST} names")

    # 3. the checkpoint: the log's signature, the witnesses, the time-stamp
    checkpoint_text = _read(root, CHECKPOINT, report)
    tree_size, root_hash, stamp_time = -1, b"", None
    if checkpoint_text is not None:
        try:
            note = SignedNote.parse(checkpoint_text)
            checkpoint = note.checkpoint()
            tree_size, root_hash = checkpoint.size, checkpoint.root
            if (checkpoint.size, _b64(checkpoint.root), checkpoint.origin) != (
                log.get("tree_size"),
                log.get("root_hash"),
                log.get("origin"),
            ):
                report.add(MANIFEST, "the manifest names another checkpoint than checkpoint.txt holds")
            token_name = log.get("timestamp")
            if token_name:
                token = _read(root, token_name, report)
                if token is not None and tsa is None and not allow_unstamped:
                    report.add(token_name, "no TSA CA certificate to check the time-stamp against (--tsa-ca)")
                elif token is not None and tsa is not None:
                    try:
                        info = tsa.verify(token, note.text.encode())
                        stamp_time = info.gen_time
                        report.timestamp = info.gen_time.isoformat()
                    except XRegionError as exc:
                        report.add(token_name, exc)
            elif not allow_unstamped:
                report.add(CHECKPOINT, "the checkpoint carries no time-stamp token", "timestamp_invalid")
            verify_log_signature(note, roster, checkpoint.origin, stamp_time)
            regions = list(witnesses) if witnesses is not None else list(registry.codes)
            found = check_cosignatures(note, roster, regions, checkpoint.origin)
            for problem in found.problems:
                report.add(CHECKPOINT, problem)
            report.cosigners = found.regions
            required = quorum if quorum is not None else len(regions) // 2 + 1
            if len(found.regions) < required:
                report.add(
                    CHECKPOINT,
                    WitnessQuorum(f"cosigned by {len(found.regions)} witnesses ({', '.join(found.regions)}), "
                                  f"{required} required"),
                )  # fmt: skip
        except XRegionError as exc:
            report.add(CHECKPOINT, exc)

    # 4. every event: its bytes, signature, referral, leaf and inclusion proof
    for entry in manifest.get("events", []):
        _check_event(root, entry, report, roster, tree_size, root_hash)
        report.events += 1

    # 5. attachments: a file's digest is the one a signed event names
    for attachment in manifest.get("attachments", []):
        name = attachment.get("file")
        if not name:
            continue
        data = _read(root, name, report)
        if data is not None and _sha256(data) != attachment.get("sha256"):
            report.add(name, "the attachment's SHA-256 is not the digest its event names")
    return report


def _check_manifest_signature(manifest_raw: bytes, sig_raw: bytes, roster: KeyRoster, report: PackageReport) -> None:
    try:
        sig = json.loads(sig_raw)
        key = roster.get(str(sig["keyid"]))
        if key.party != AUDITOR:
            raise EvidenceInvalid(f"the manifest is signed by {key.party}, not by the auditor")
        key.verify_key.verify(manifest_raw, base64.b64decode(sig["signature"], validate=True))
    except BadSignatureError:
        report.add(
            f"{MANIFEST} / {MANIFEST_SIG}",
            "the exporter's signature does not verify over manifest.json: one of the two was altered",
            "bad_signature",
        )
    except XRegionError as exc:
        report.add(MANIFEST_SIG, exc)
    except (ValueError, KeyError, TypeError) as exc:
        report.add(MANIFEST_SIG, f"malformed signature file: {exc}")


def _check_event(
    root: Path, entry: Mapping[str, Any], report: PackageReport, roster: KeyRoster, size: int, root_hash: bytes
) -> None:
    name, proof_name = str(entry.get("file")), str(entry.get("proof"))
    raw = _read(root, name, report)
    proof_raw = _read(root, proof_name, report)
    if raw is None or proof_raw is None:
        return
    try:
        event = decode(raw)
        env = event.envelope
        if env.id != entry.get("event_id") or env.subject != report.referral_id:
            raise EvidenceInvalid(f"event {env.id} of referral {env.subject} is filed as {entry.get('event_id')}")
        stored_at = datetime.fromisoformat(str(entry.get("stored_at")))
        roster.verify(event.wire, env.sender, env.time, received_at=stored_at, grace=timedelta(hours=1))
    except XRegionError as exc:
        report.add(name, exc)
        return
    except ValueError as exc:
        report.add(name, f"unreadable: {exc}")
        return
    try:
        proof = json.loads(proof_raw)
        index, tree_size = int(proof["leaf_index"]), int(proof["tree_size"])
        path = [base64.b64decode(h, validate=True) for h in proof["inclusion_proof"]]
        if base64.b64decode(proof["leaf_hash"]) != leaf_hash(raw):
            raise EvidenceInvalid("the proof's leaf hash is not the hash of the event's bytes")
        if tree_size != size:
            raise EvidenceInvalid(f"the proof is for a tree of {tree_size}, the checkpoint's has {size}")
        verify_inclusion(leaf_hash(raw), index, size, path, root_hash)
    except XRegionError as exc:
        report.add(proof_name, exc)
    except (ValueError, KeyError, TypeError) as exc:
        report.add(proof_name, f"malformed proof: {exc}")


def package_files(root: Path) -> list[str]:
    """Every file of a package (for tests and tools)."""
    return sorted(os.path.relpath(p, root) for p in root.rglob("*") if p.is_file())
