"""``xregion audit log run|status|verify``, ``xregion audit prove|consistency``: the
verifiable log and its proofs (``docs/evidence.md``).

Registered on the ``xregion audit`` command group by :func:`register`. The log runs as the
``AUDIT`` identity with the ``AUDIT`` key; proofs are read from its store (``--store``)
and verified before they are printed. Exit codes: 0 fine; 1 a problem found (each named by
its code), or a proof that cannot be given; 2 bad usage.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from xregion.cli.common import (
    DEFAULT_CONNECT_TIMEOUT_S,
    ArchiveOrNatsUrl,
    ConnectTimeout,
    LogFormat,
    NkeySeed,
    RequiredNatsUrl,
    TlsCa,
    TlsCert,
    TlsKey,
    client_settings,
)
from xregion.errors import XRegionError

console = Console(width=None if Console().is_terminal else 140)
log_app = typer.Typer(
    help="The verifiable log: a Merkle tree over the stream, checkpoints cosigned by the regions as "
    "witnesses, RFC 3161 time-stamps (docs/evidence.md).",
    no_args_is_help=True,
)

DEFAULT_STORE = Path(".xregion/tlog.db")
StoreOption = Annotated[Path, typer.Option("--store", envvar="XREGION_TLOG_STORE", help="The log's store.")]
RosterOption = Annotated[Path, typer.Option("--roster", help="The trusted key roster (roster.json).")]
DEFAULT_ROSTER = Path(".xregion/keys/roster.json")
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
QuorumOption = Annotated[
    int | None,
    typer.Option("--witnesses", min=0, help="Cosignatures required (default: a majority of the configured regions)."),
]
MaxAgeOption = Annotated[
    float,
    typer.Option(
        "--max-token-age",
        envvar="XREGION_TLOG_MAX_TOKEN_AGE_S",
        min=0.1,
        help="Seconds events may wait for a time-stamp token before the alert (timestamp_stale).",
    ),
]
TsaCaOption = Annotated[
    Path | None,
    typer.Option("--tsa-ca", envvar="XREGION_TSA_CA", help="PEM bundle the TSA's certificate must chain to."),
]
TsaVerifierOption = Annotated[
    str,
    typer.Option(
        "--tsa-verifier",
        envvar="XREGION_TSA_VERIFIER",
        help="rfc3161-client (SHA-2, RSA/ECDSA) or openssl (also SM2/SM3 where the local OpenSSL has them).",
    ),
]


def _problem(exc: XRegionError, code: int = 1) -> typer.Exit:
    Console(stderr=True, soft_wrap=True).print(
        f"[red]error[/red] [bold]{exc.code}[/bold]: {escape(exc.message)}", highlight=False
    )
    return typer.Exit(code)


def _usage(message: str) -> typer.Exit:
    Console(stderr=True, soft_wrap=True).print(f"[red]error[/red]: {escape(message)}", highlight=False)
    return typer.Exit(2)


def _roster(path: Path) -> Any:
    from xregion.signing import KeyRoster

    try:
        return KeyRoster.load(path)
    except XRegionError as exc:
        raise _problem(exc, 2) from None


def _regions() -> list[str]:
    from xregion.config import load_config

    return list(load_config().regions.codes)


def _quorum(given: int | None) -> int:
    return given if given is not None else len(_regions()) // 2 + 1


def _open_log(store: Path, *, must_exist: bool = True) -> Any:
    from xregion.auditor.tlog import TransparencyLog
    from xregion.note import default_origin
    from xregion.runtime.settings import RuntimeSettings

    if must_exist and not store.exists():
        raise _usage(f"no log store at {store} (xregion audit log run --store creates it)")
    stream = RuntimeSettings().stream
    try:
        return TransparencyLog(store, origin=default_origin(stream), stream=stream)
    except XRegionError as exc:
        raise _problem(exc, 2) from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- xregion audit log run ---------------------------------------------------------------


@log_app.command("run")
def log_run(
    store: StoreOption = DEFAULT_STORE,
    keys_dir: Annotated[
        Path, typer.Option("--keys-dir", help="Holds private/AUDIT.key (the log's key) and roster.json.")
    ] = Path(".xregion/keys"),
    nats_url: RequiredNatsUrl = None,
    interval: Annotated[
        float, typer.Option("--interval", envvar="XREGION_TLOG_INTERVAL_S", min=0.1, help="Seconds between rounds.")
    ] = 60.0,
    tsa_url: Annotated[
        str | None,
        typer.Option("--tsa-url", envvar="XREGION_TSA_URL", help="RFC 3161 time-stamping authority (HTTP POST)."),
    ] = None,
    tsa_ca: TsaCaOption = None,
    tsa_hash: Annotated[
        str, typer.Option("--tsa-hash", envvar="XREGION_TSA_HASH", help="Imprint hash: sha256, sha384, sha512 or sm3.")
    ] = "sha256",
    tsa_verifier: TsaVerifierOption = "rfc3161-client",
    tsa_timeout: Annotated[float, typer.Option("--tsa-timeout", min=0.1, help="Seconds per TSA request.")] = 10.0,
    tsa_tls_ca: Annotated[
        Path | None, typer.Option("--tsa-tls-ca", help="CA bundle of an https:// TSA's web server.")
    ] = None,
    max_token_age: MaxAgeOption = 3600.0,
    once: Annotated[bool, typer.Option("--once", help="One round (and one time-stamp attempt), then exit.")] = False,
    log_format: LogFormat = "auto",
    tls_ca: TlsCa = None,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    nkey_seed: NkeySeed = None,
) -> None:
    """Follow the stream into the Merkle tree, sign a checkpoint each round the tree grew,
    gather the regions' cosignatures and have checkpoints time-stamped (a TSA outage is
    retried and reported; it never stops the log, and never touches the bus)."""
    from xregion.auditor.checkpointer import Checkpointer
    from xregion.auditor.tsa import TsaClient, TsaConfig
    from xregion.keys import ROSTER_FILE, load_signer
    from xregion.logs import configure_logging
    from xregion.regions import AUDITOR
    from xregion.runtime.connection import ClientIdentity, connect
    from xregion.runtime.keyfiles import LiveRoster
    from xregion.runtime.settings import RuntimeSettings

    if nats_url is None:
        raise _usage("give --nats-url (XREGION_NATS_URL)")
    if (tsa_url is None) != (tsa_ca is None):
        raise _usage("--tsa-url and --tsa-ca go together")
    configure_logging(log_format)
    settings = RuntimeSettings(**client_settings(tls_ca, tls_cert, tls_key, nkey_seed))
    try:
        signer = load_signer(keys_dir, AUDITOR)
        roster = LiveRoster.load(keys_dir / ROSTER_FILE)
        tsa = None
        if tsa_url is not None and tsa_ca is not None:
            tsa = TsaClient(TsaConfig(tsa_url, tsa_ca, tsa_hash, tsa_verifier, tsa_timeout, tsa_tls_ca))
    except XRegionError as exc:
        raise _problem(exc, 2) from None
    tlog = _open_log(store, must_exist=False)

    async def main() -> None:
        nc = await connect(nats_url, "xregion-tlog", ClientIdentity.from_settings(settings, AUDITOR))
        try:
            service = Checkpointer(
                tlog,
                nc,
                signer,
                lambda: roster.roster,
                _regions(),
                stream=settings.stream,
                dead_letter_stream=settings.dead_letter_stream,
                tsa=tsa,
                interval_s=interval,
                max_token_age_s=max_token_age,
            )
            if once:
                await service.round()
                await service.stamp()
                service.check_alert()
                return
            await service.run()
        finally:
            await nc.close()

    try:
        asyncio.run(main())
    except XRegionError as exc:
        raise _problem(exc) from None
    except KeyboardInterrupt:
        pass
    finally:
        tlog.close()


# --- xregion audit log status ------------------------------------------------------------


@log_app.command("status")
def log_status(
    store: StoreOption = DEFAULT_STORE,
    max_token_age: MaxAgeOption = 3600.0,
    json_out: JsonOption = False,
) -> None:
    """The log's size, last checkpoint and its cosigners, the last time-stamp, and every TSA
    outage (when, how long, which checkpoint's token covered it). Exit 1 while events have
    waited longer than --max-token-age for a token (the alert)."""
    from xregion.auditor.checkpointer import health

    tlog = _open_log(store)
    try:
        state = health(tlog, timedelta(seconds=max_token_age))
        outages = [
            {
                "started_at": o.started_at.isoformat(),
                "ended_at": o.ended_at.isoformat() if o.ended_at else None,
                "duration_s": round(((o.ended_at or datetime.now(UTC)) - o.started_at).total_seconds(), 1),
                "attempts": o.attempts,
                "last_error": o.last_error,
                "first_unstamped_checkpoint": o.first_size,
                "covered_by_checkpoint": o.covered_by,
            }
            for o in tlog.outages()
        ]
        cosigners = tlog.cosigners(state.checkpoint) if state.checkpoint is not None else []
        out = {**state.to_json(), "cosigners": cosigners, "origin": tlog.origin, "outages": outages}
    finally:
        tlog.close()
    if json_out:
        print(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        console.print(
            f"log {out['origin']}: {out['size']} leaves; checkpoint {out['checkpoint']} cosigned by "
            f"{', '.join(cosigners) or 'no witness yet'}; last token on checkpoint {out['stamped']} "
            f"({out['token_time'] or 'none'})",
            highlight=False,
        )
        for o in outages:
            end = f"until {o['ended_at']}, covered by the token of checkpoint {o['covered_by_checkpoint']}"
            console.print(
                f"  TSA outage from {o['started_at']} {end if o['ended_at'] else '(ongoing)'}: "
                f"{o['duration_s']} s, {o['attempts']} attempts, last error: {o['last_error']}",
                highlight=False,
                soft_wrap=True,
            )
        if state.stale():
            console.print(
                f"[red]timestamp_stale[/red]: events have waited {out['unstamped_for_s']} s for a time-stamp "
                f"(more than {max_token_age:g} s)",
                highlight=False,
            )
    raise typer.Exit(1 if state.stale() else 0)


# --- xregion audit log verify ------------------------------------------------------------


@log_app.command("verify")
def log_verify(
    store: Annotated[
        Path | None, typer.Option("--store", help="The log's store: names removed events, checks its tokens.")
    ] = None,
    nats_url: ArchiveOrNatsUrl = None,
    archive: Annotated[Path | None, typer.Option("--archive", help="Read an exported archive instead.")] = None,
    roster: RosterOption = DEFAULT_ROSTER,
    tsa_ca: TsaCaOption = None,
    tsa_verifier: TsaVerifierOption = "rfc3161-client",
    json_out: JsonOption = False,
    tls_ca: TlsCa = None,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    nkey_seed: NkeySeed = None,
    connect_timeout: ConnectTimeout = DEFAULT_CONNECT_TIMEOUT_S,
) -> None:
    """Hold the stream against every checkpoint the log published, the witnesses cosigned
    and the store keeps: signatures, cosignatures (a non-witness's is named), time-stamp
    tokens, and the root the stream yields at each size (a removed or altered event is named)."""
    from xregion.auditor.logcheck import LogChecker
    from xregion.cli.audit import _Source
    from xregion.note import default_origin
    from xregion.timestamps import make_verifier

    keys = _roster(roster)
    source = _Source(nats_url, archive, client_settings(tls_ca, tls_cert, tls_key, nkey_seed), connect_timeout)
    tlog = _open_log(store) if store is not None else None
    try:
        verifier = make_verifier(tsa_verifier, tsa_ca) if tsa_ca is not None else None
    except XRegionError as exc:
        raise _problem(exc, 2) from None
    checker = LogChecker(keys, _regions(), default_origin(source.settings.stream), tlog=tlog, tsa=verifier)

    def published(records: Iterable[Any]) -> None:
        checker.published(records)
        checker.stored()

    async def consume(records: AsyncIterator[Any], total: int | None) -> None:
        await checker.stream_async(records)

    try:
        asyncio.run(source.run(consume, published))
    except XRegionError as exc:
        raise _problem(exc) from None
    finally:
        if tlog is not None:
            tlog.close()
    report = checker.report
    if json_out:
        print(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    else:
        for anomaly in report.anomalies:
            console.print(f"[red]✗[/red] {escape(anomaly.line())}", highlight=False, soft_wrap=True)
        verdict = "[green]log consistent[/green]" if report.ok else f"[red]{len(report.anomalies)} problems[/red]"
        unverified = "" if verifier is not None or not report.tokens else " (not verified: give --tsa-ca)"
        console.print(
            f"{verdict}: {report.events} messages, {len(report.checkpoints)} checkpoints, "
            f"{report.tokens} time-stamp tokens{unverified}, {source.name}",
            highlight=False,
        )
    raise typer.Exit(0 if report.ok else 1)


# --- xregion audit prove / consistency ----------------------------------------------------


@dataclass
class _Chosen:
    checkpoint: Any
    note: Any
    stamped: Any


def _choose(tlog: Any, index: int, quorum: int, allow_unstamped: bool) -> _Chosen:
    """The oldest checkpoint covering leaf ``index`` with ``quorum`` cosignatures and a token."""
    found = tlog.checkpoint_covering(index, cosigners=quorum, stamped=True)
    if found is None and allow_unstamped:
        found = tlog.checkpoint_covering(index, cosigners=quorum)
    if found is None:
        need = f"{quorum} cosignatures" + ("" if allow_unstamped else " and a time-stamp token")
        raise _problem(
            XRegionError(
                f"no checkpoint covers leaf {index} yet with {need}: wait for the next round of the log "
                "(xregion audit log status)"
            )
        )
    return _Chosen(found, tlog.cosigned_note(found.size), tlog.timestamp(found.size))


def proof_json(tlog: Any, leaf: Any, chosen: _Chosen) -> dict[str, Any]:
    """An inclusion proof as printed by ``prove`` (verified before it is returned)."""
    from xregion.merkle import verify_inclusion
    from xregion.timestamps import token_info

    size = chosen.checkpoint.size
    path = tlog.inclusion_proof(leaf.index, size)
    verify_inclusion(leaf.hash, leaf.index, size, path, chosen.checkpoint.root)
    stamped = chosen.stamped
    out: dict[str, Any] = {
        "event_id": leaf.event_id,
        "referral_id": leaf.referral_id,
        "stream_seq": leaf.stream_seq,
        "stored_at": leaf.stored_at.isoformat(),
        "leaf_index": leaf.index,
        "leaf_hash": _b64(leaf.hash),
        "tree_size": size,
        "root_hash": _b64(chosen.checkpoint.root),
        "inclusion_proof": [_b64(h) for h in path],
        "checkpoint": chosen.note.render(),
        "timestamp": None,
    }
    if stamped is not None:
        info = token_info(stamped.response)
        out["timestamp"] = {
            "tsa_url": stamped.tsa_url,
            "gen_time": info.gen_time.isoformat(),
            "hash": info.hash_alg,
            "tsa": info.tsa,
            "response": _b64(stamped.response),
        }
    return out


def prove(
    event_id: Annotated[str, typer.Argument(help="The event's id (its CloudEvents id).")],
    store: StoreOption = DEFAULT_STORE,
    roster: RosterOption = DEFAULT_ROSTER,
    witnesses: QuorumOption = None,
    allow_unstamped: Annotated[
        bool, typer.Option("--allow-unstamped", help="Accept a checkpoint without a time-stamp token.")
    ] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Also write the proof (JSON) here.")] = None,
    json_out: JsonOption = False,
) -> None:
    """An inclusion proof of the event in the oldest checkpoint that covers it, is cosigned
    by enough witnesses and is time-stamped: leaf hash, audit path, the signed note with its
    cosignatures, the RFC 3161 token. Verified before it is printed."""
    from xregion.note import check_cosignatures, verify_log_signature

    keys = _roster(roster)
    tlog = _open_log(store)
    try:
        leaves = tlog.leaves_of_event(event_id)
        if not leaves:
            raise _problem(XRegionError(f"event {event_id} is not in the log (yet)"))
        quorum = _quorum(witnesses)
        proofs = []
        for leaf in leaves:  # an id twice in the stream: a replay or a forgery; prove each copy
            chosen = _choose(tlog, leaf.index, quorum, allow_unstamped)
            try:
                verify_log_signature(chosen.note, keys, tlog.origin)
            except XRegionError as exc:
                raise _problem(exc) from None
            found = check_cosignatures(chosen.note, keys, _regions(), tlog.origin)
            proof = proof_json(tlog, leaf, chosen)
            proof["cosigned_by"] = found.regions
            proofs.append(proof)
    finally:
        tlog.close()
    result: Any = proofs[0] if len(proofs) == 1 else proofs
    if out is not None:
        out.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    if json_out:
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return
    for proof in proofs:
        stamp = proof["timestamp"]
        console.print(
            f"event {proof['event_id']} (stream seq {proof['stream_seq']}) is leaf {proof['leaf_index']} of the "
            f"tree of {proof['tree_size']} whose root {proof['root_hash']} the log signed and "
            f"{', '.join(proof['cosigned_by'])} cosigned"
            + (f"; time-stamped {stamp['gen_time']} by {stamp['tsa']}" if stamp else "; not time-stamped"),
            highlight=False,
            soft_wrap=True,
        )
        console.print("audit path (leaf to root):", highlight=False)
        for h in proof["inclusion_proof"]:
            console.print(f"  {h}", highlight=False)
        console.print(proof["checkpoint"], highlight=False, markup=False)


def consistency(
    old: Annotated[int, typer.Argument(help="Size of the older checkpoint.")],
    new: Annotated[int, typer.Argument(help="Size of the newer checkpoint.")],
    store: StoreOption = DEFAULT_STORE,
    roster: RosterOption = DEFAULT_ROSTER,
    json_out: JsonOption = False,
) -> None:
    """A consistency proof between two checkpoints of the log: the tree of OLD leaves is a
    prefix of the tree of NEW leaves (nothing before OLD was changed, removed or reordered).
    Both checkpoints are printed with their cosignatures; the proof is verified first."""
    from xregion.merkle import verify_consistency
    from xregion.note import verify_log_signature

    keys = _roster(roster)
    tlog = _open_log(store)
    try:
        older, newer = tlog.checkpoint(old), tlog.checkpoint(new)
        for size, found in ((old, older), (new, newer)):
            if found is None:
                sizes = [c.size for c in tlog.checkpoints()][-10:]
                raise _usage(f"no checkpoint of size {size}; the latest are {sizes}")
        assert older is not None and newer is not None
        if old > new:
            raise _usage("OLD must not be larger than NEW")
        proof = tlog.consistency_proof(old, new)
        try:
            for stored in (older, newer):
                verify_log_signature(stored.note, keys, tlog.origin)
            verify_consistency(old, new, older.root, newer.root, proof)
        except XRegionError as exc:
            raise _problem(exc) from None
        result = {
            "old_size": old,
            "new_size": new,
            "old_root": _b64(older.root),
            "new_root": _b64(newer.root),
            "consistency_proof": [_b64(h) for h in proof],
            "old_checkpoint": tlog.cosigned_note(old).render(),
            "new_checkpoint": tlog.cosigned_note(new).render(),
        }
    finally:
        tlog.close()
    if json_out:
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return
    console.print(f"checkpoint {old} is consistent with checkpoint {new}; proof:", highlight=False)
    for h in result["consistency_proof"]:
        console.print(f"  {h}", highlight=False)


# --- xregion audit evidence / verify-evidence -----------------------------------------------


async def _stored_bytes(
    seqs: list[int],
    nats_url: str | None,
    archive: Path | None,
    settings: Any,
    attachments: list[tuple[str, str, str]],
    connect_timeout_s: float,
) -> tuple[dict[int, bytes], dict[str, bytes]]:
    """The stored bytes of stream sequences ``seqs``, and of the attachments
    ``(owner, object name, sha256)`` (from NATS only)."""
    wanted = set(seqs)
    if archive is not None:
        from xregion.auditor.archive import read_archive

        return {r.seq: r.raw for r in read_archive(archive) if r.seq in wanted}, {}
    from xregion.permissions import BusNames
    from xregion.regions import AUDITOR
    from xregion.runtime.connection import ClientIdentity, connect
    from xregion.runtime.evidence import Evidence

    assert nats_url is not None
    identity = ClientIdentity.from_settings(settings, AUDITOR)
    nc = await connect(nats_url, "xregion-evidence", identity, timeout_s=connect_timeout_s)
    try:
        js = nc.jetstream()
        found = {}
        for seq in sorted(wanted):
            message = await js.get_msg(settings.stream, seq, direct=True)
            found[seq] = message.data or b""
        files: dict[str, bytes] = {}
        store = Evidence(js, BusNames(settings.stream, settings.dead_letter_stream, settings.object_store))
        for owner, name, digest in attachments:
            sink = io.BytesIO()
            _, got = await store.read_into(owner, name, sink)
            if got == digest:
                files[digest] = sink.getvalue()
        return found, files
    finally:
        await nc.close()


def evidence(
    referral_id: Annotated[str, typer.Argument(help="The referral (its id, e.g. BJ-01a2...).")],
    out: Annotated[Path, typer.Option("--out", help="A new directory for the package.")],
    store: StoreOption = DEFAULT_STORE,
    keys_dir: Annotated[
        Path, typer.Option("--keys-dir", help="Holds private/AUDIT.key (signs the manifest) and roster.json.")
    ] = Path(".xregion/keys"),
    nats_url: ArchiveOrNatsUrl = None,
    archive: Annotated[Path | None, typer.Option("--archive", help="Take the events from an archive.")] = None,
    tsa_ca: TsaCaOption = None,
    witnesses: QuorumOption = None,
    allow_unstamped: Annotated[
        bool, typer.Option("--allow-unstamped", help="Accept a checkpoint without a time-stamp token.")
    ] = False,
    with_attachments: Annotated[
        bool, typer.Option("--attachments", help="Include the attachments' files (from the evidence buckets).")
    ] = False,
    tls_ca: TlsCa = None,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    nkey_seed: NkeySeed = None,
    connect_timeout: ConnectTimeout = DEFAULT_CONNECT_TIMEOUT_S,
) -> None:
    """Write a self-contained evidence package of one referral: every event's original
    bytes, their inclusion proofs in one checkpoint cosigned by the witnesses and
    time-stamped, that checkpoint and its RFC 3161 token, the roster, the attachments' digests
    (or files), a summary in Chinese, and a manifest signed by the AUDIT key. The package is
    verified before the command returns."""
    from xregion.auditor.package import PackageEvent, attachments_of, verify_package, write_package
    from xregion.codec import decode
    from xregion.config import load_config
    from xregion.keys import ROSTER_FILE, load_signer
    from xregion.merkle import leaf_hash
    from xregion.regions import AUDITOR
    from xregion.runtime.settings import RuntimeSettings
    from xregion.timestamps import Rfc3161ClientVerifier

    if (nats_url is None) == (archive is None):
        raise _usage("give exactly one of --nats-url (XREGION_NATS_URL) or --archive")
    if with_attachments and archive is not None:
        raise _usage("--attachments reads the evidence buckets: give --nats-url")
    if tsa_ca is None and not allow_unstamped:
        raise _usage("give --tsa-ca (the TSA's CA certificates, copied into the package), or --allow-unstamped")
    registry = load_config().regions
    settings = RuntimeSettings(**client_settings(tls_ca, tls_cert, tls_key, nkey_seed))
    keys = _roster(keys_dir / ROSTER_FILE)
    try:
        signer = load_signer(keys_dir, AUDITOR)
    except XRegionError as exc:
        raise _problem(exc, 2) from None
    tlog = _open_log(store)
    try:
        leaves = tlog.leaves_of_referral(referral_id)
        if not leaves:
            raise _problem(XRegionError(f"referral {referral_id} has no event in the log (yet)"))
        try:
            raws, _ = asyncio.run(
                _stored_bytes([x.stream_seq for x in leaves], nats_url, archive, settings, [], connect_timeout)
            )
        except XRegionError as exc:
            raise _problem(exc) from None
        chosen_events, excluded = [], 0
        for leaf in leaves:
            raw = raws.get(leaf.stream_seq)
            if raw is None or leaf_hash(raw) != leaf.hash:
                raise _problem(
                    XRegionError(
                        f"stream seq {leaf.stream_seq} (event {leaf.event_id}) is no longer what the log included: "
                        "run xregion audit log verify"
                    )
                )
            try:
                event = decode(raw)
                keys.verify(event.wire, event.envelope.sender, event.envelope.time)
            except XRegionError:
                excluded += 1  # a forged or replayed copy claiming the referral: not evidence of it
                continue
            chosen_events.append(PackageEvent(leaf, raw, event))
        if not chosen_events:
            raise _problem(XRegionError(f"referral {referral_id} has no authentic event in the log"))
        quorum = _quorum(witnesses)
        chosen = _choose(tlog, max(e.leaf.index for e in chosen_events), quorum, allow_unstamped)
        proofs = [tlog.inclusion_proof(e.leaf.index, chosen.checkpoint.size) for e in chosen_events]
        files: dict[str, bytes] = {}
        if with_attachments:
            wanted = [
                (e.event.envelope.sender, str(a["object_name"]), str(a["sha256"]))
                for e in chosen_events
                for a in attachments_of(e.event.wire)
                if "object_name" in a
            ]
            _, files = asyncio.run(_stored_bytes([], nats_url, None, settings, wanted, connect_timeout))
        try:
            write_package(
                out,
                referral_id,
                chosen_events,
                proofs,
                chosen.checkpoint,
                chosen.note,
                chosen.stamped,
                keys,
                signer,
                registry,
                tsa_ca=tsa_ca,
                attachments=files,
                witnesses_required=quorum,
                excluded=excluded,
            )
        except XRegionError as exc:
            raise _problem(exc, 2) from None
    finally:
        tlog.close()
    verifier = Rfc3161ClientVerifier.from_bundle(tsa_ca) if tsa_ca is not None else None
    report = verify_package(out, registry, roster=keys, tsa=verifier, quorum=quorum, allow_unstamped=allow_unstamped)
    for problem in report.problems:
        console.print(f"[red]✗[/red] {escape(problem.line())}", highlight=False, soft_wrap=True)
    console.print(
        f"evidence package of {referral_id}: {report.events} events, checkpoint {chosen.checkpoint.size} cosigned by "
        f"{', '.join(report.cosigners)}"
        + (f", time-stamped {report.timestamp}" if report.timestamp else "")
        + (f"; {excluded} forged or replayed copies left out" if excluded else "")
        + f" → {out}",
        highlight=False,
        soft_wrap=True,
    )
    raise typer.Exit(0 if report.ok else 1)


def verify_evidence(
    package: Annotated[Path, typer.Argument(help="The evidence package's directory.")],
    roster: Annotated[
        Path | None, typer.Option("--roster", help="The trusted key roster (default: the package's own copy).")
    ] = None,
    tsa_ca: Annotated[
        Path | None,
        typer.Option("--tsa-ca", help="The TSA's trusted CA certificates (default: the package's own copy)."),
    ] = None,
    tsa_verifier: TsaVerifierOption = "rfc3161-client",
    witnesses: QuorumOption = None,
    allow_unstamped: Annotated[
        bool, typer.Option("--allow-unstamped", help="Accept a checkpoint without a time-stamp token.")
    ] = False,
    json_out: JsonOption = False,
) -> None:
    """Check an evidence package offline, with nothing but the package and the trusted roots:
    every file against the signed manifest, every event's signature and inclusion proof, the
    checkpoint's signature and cosignatures, the time-stamp. Names every problem by file."""
    from xregion.auditor.package import verify_package
    from xregion.config import load_config
    from xregion.timestamps import make_verifier

    keys = _roster(roster) if roster is not None else None
    try:
        verifier = make_verifier(tsa_verifier, tsa_ca) if tsa_ca is not None else None
    except XRegionError as exc:
        raise _problem(exc, 2) from None
    if not package.is_dir():
        raise _usage(f"{package} is not a directory")
    report = verify_package(
        package,
        load_config().regions,
        roster=keys,
        tsa=verifier,
        quorum=_quorum(witnesses),
        allow_unstamped=allow_unstamped,
    )
    if json_out:
        print(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    else:
        for problem in report.problems:
            console.print(f"[red]✗[/red] {escape(problem.line())}", highlight=False, soft_wrap=True)
        verdict = "[green]evidence verified[/green]" if report.ok else f"[red]{len(report.problems)} problems[/red]"
        console.print(
            f"{verdict}: referral {report.referral_id}, {report.events} events, cosigned by "
            f"{', '.join(report.cosigners) or 'no witness'}, time-stamped {report.timestamp or 'no'}; "
            f"roster: {report.roster_source}; TSA CA: {report.tsa_source or 'none'}",
            highlight=False,
            soft_wrap=True,
        )
    raise typer.Exit(0 if report.ok else 1)


def register(audit: typer.Typer) -> None:
    """Add the log's and the evidence packages' commands to ``xregion audit``."""
    audit.add_typer(log_app, name="log")
    audit.command("prove")(prove)
    audit.command("consistency")(consistency)
    audit.command("evidence")(evidence)
    audit.command("verify-evidence")(verify_evidence)
