"""``xregion audit replay|state|export|verify|report``: the auditor's commands.

They read the event stream as the ``AUDIT`` identity (``--nats-url`` with
``--tls-*``), or an exported archive (``--archive DIR``), and verify against a key roster
(``--roster``, default ``.xregion/keys/roster.json``). Exit code 0: nothing wrong; 1: anomalies
or problems found (each printed with where, code, event id and what is wrong); 2: bad usage.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from xregion.cli.common import (
    DEFAULT_CONNECT_TIMEOUT_S,
    ArchiveOrNatsUrl,
    ConnectTimeout,
    NkeySeed,
    RequiredNatsUrl,
    TlsCa,
    TlsCert,
    TlsKey,
    client_settings,
    fail,
)
from xregion.config import load_config
from xregion.errors import XRegionError

console = Console(width=None if Console().is_terminal else 140)
app = typer.Typer(help="Replay, reconstruct, archive and verify the event log (auditors).", no_args_is_help=True)

RosterOption = Annotated[Path, typer.Option("--roster", help="The trusted key roster (roster.json).")]
ArchiveOption = Annotated[
    Path | None, typer.Option("--archive", help="Read this exported archive instead of the NATS stream.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
DEFAULT_ROSTER = Path(".xregion/keys/roster.json")


def parse_bound(text: str | None) -> int | datetime | None:
    """``--since``/``--until``: a stream sequence (digits) or an ISO 8601 time (UTC if no offset)."""
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is neither a stream sequence nor an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _fail(message: str, code: int = 2) -> typer.Exit:
    """Bad usage (no xregion error code)."""
    console.print(f"[red]error[/red]: {message}", highlight=False)
    return typer.Exit(code)


@contextmanager
def _progress(total: int | None, what: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on a terminal; silent otherwise."""
    if not sys.stdout.isatty():
        yield lambda n: None
        return
    columns = [TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda n: bar.advance(task, n)


def _load_roster(path: Path) -> Any:
    from xregion.signing import KeyRoster

    try:
        return KeyRoster.load(path)
    except XRegionError as exc:
        raise fail(exc, 2) from None


class _Source:
    """Where the stored messages come from: NATS (as AUDIT) or an archive."""

    def __init__(
        self,
        nats_url: str | None,
        archive: Path | None,
        settings_kwargs: dict[str, Any],
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    ) -> None:
        from xregion.runtime.settings import RuntimeSettings

        if (nats_url is None) == (archive is None):
            raise _fail("give exactly one of --nats-url (XREGION_NATS_URL) or --archive")
        self.nats_url = nats_url
        self.archive = archive
        self.connect_timeout_s = connect_timeout_s
        self.settings = RuntimeSettings(**settings_kwargs)
        if nats_url is not None:
            import logging

            from xregion.logs import configure_logging

            # Connection notices to stderr, warnings and worse: stdout is the result.
            configure_logging(self.settings.log_format, level=logging.WARNING)

    @property
    def name(self) -> str:
        return f"archive {self.archive}" if self.archive else f"stream {self.settings.stream} at {self.nats_url}"

    async def run(
        self,
        consume: Callable[[AsyncIterator[Any], int | None], Any],
        checkpoints: Callable[[Iterable[Any]], Any] | None = None,
        *,
        start_seq: int | None = None,
        start_time: datetime | None = None,
        until_seq: int | None = None,
        restore_check: Callable[[Any], None] | None = None,
    ) -> Any:
        """Call ``checkpoints(records)`` then ``consume(records, total)`` on this source;
        ``restore_check`` first, with the stream's restore mark (or None)."""
        if self.archive is not None:
            from xregion.auditor.archive import CHECKPOINTS, _SegmentReader, read_archive

            if checkpoints is not None:
                path = self.archive / CHECKPOINTS
                checkpoints(list(_SegmentReader(path, []).records()) if path.exists() else [])

            async def archived() -> AsyncIterator[Any]:
                for record in read_archive(self.archive):  # type: ignore[arg-type]
                    if start_seq is not None and record.seq < start_seq:
                        continue
                    if start_time is not None and record.stored_at < start_time:
                        continue
                    if until_seq is not None and record.seq > until_seq:
                        return
                    yield record

            manifest = json.loads((self.archive / "manifest.json").read_text(encoding="utf-8"))
            return await consume(archived(), int(manifest.get("events", 0)) or None)
        from xregion.auditor.source import read_stream, stream_bounds
        from xregion.regions import AUDITOR
        from xregion.runtime.connection import ClientIdentity, connected
        from xregion.subjects import CHECKPOINT_ROOT

        assert self.nats_url is not None
        identity = ClientIdentity.from_settings(self.settings, AUDITOR)
        async with connected(self.nats_url, "xregion-audit", identity, timeout_s=self.connect_timeout_s) as nc:
            js = nc.jetstream()
            if checkpoints is not None:
                found = [
                    r
                    async for r in read_stream(
                        js, self.settings.dead_letter_stream, filter_subject=f"{CHECKPOINT_ROOT}.>"
                    )
                ]
                checkpoints(found)
            if restore_check is not None:
                from xregion.runtime.stream_reader import StreamReader

                restore_check(await StreamReader(nc, self.settings.stream).restore_mark())
            _, _last, messages = await stream_bounds(js, self.settings.stream)
            total = messages if start_seq is None and start_time is None else None
            records = read_stream(
                js, self.settings.stream, start_seq=start_seq, start_time=start_time, until_seq=until_seq
            )
            return await consume(records, total)


def _replay(
    source: _Source,
    roster_path: Path,
    since: str | None,
    until: str | None,
    region: str | None,
    referral: str | None,
    every_signature: bool = False,
) -> Any:
    from xregion.auditor.checkpoints import CheckpointSet, collect
    from xregion.auditor.replay import Replayer

    roster = _load_roster(roster_path)
    registry = load_config().regions
    lower, upper = parse_bound(since), parse_bound(until)
    found = CheckpointSet()

    def take_checkpoints(records: Iterable[Any]) -> None:
        nonlocal found
        found = collect(records, roster)

    async def consume(records: AsyncIterator[Any], total: int | None) -> Any:
        anchored = lower is None or lower == 1
        replayer = Replayer(
            roster,
            registry,
            anchored=anchored,
            region=region,
            referral=referral,
            attestations=found.attestations if anchored else {},
            every_signature=every_signature,
        )
        replayer.result.checkpoints = found.count
        replayer.result.anomalies.extend(found.anomalies)
        with _progress(total, "replaying") as advance:
            await replayer.apply_async(records, upper if isinstance(upper, datetime) else None, advance)
        at = upper if isinstance(upper, datetime) else datetime.now(UTC) if upper is None else None
        return replayer.finish(at)

    return asyncio.run(
        source.run(
            consume,
            take_checkpoints,
            start_seq=lower if isinstance(lower, int) else None,
            start_time=lower if isinstance(lower, datetime) else None,
            until_seq=upper if isinstance(upper, int) else None,
        )
    )


def _print_anomalies(anomalies: list[Any]) -> None:
    for anomaly in anomalies:
        console.print(f"[red]✗[/red] {anomaly.line()}", highlight=False, soft_wrap=True)


@app.command()
def replay(
    nats_url: ArchiveOrNatsUrl = None,
    archive: ArchiveOption = None,
    roster: RosterOption = DEFAULT_ROSTER,
    since: Annotated[str | None, typer.Option(help="Start at this stream sequence or time.")] = None,
    until: Annotated[str | None, typer.Option(help="Stop after this stream sequence or time.")] = None,
    region: Annotated[str | None, typer.Option(help="Report only events sent by or to this region.")] = None,
    referral: Annotated[str | None, typer.Option(help="Report only this referral.")] = None,
    every_signature: Annotated[
        bool,
        typer.Option(
            "--every-signature",
            help="Check every event's Ed25519 signature (in worker processes), not only those the hash chains "
            "do not carry (chain heads, key rotations, keys with a revocation, chain breaks): the same tamperings "
            "are found either way; this names a forged event itself rather than the break after it.",
        ),
    ] = False,
    json_out: JsonOption = False,
    tls_ca: TlsCa = None,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    nkey_seed: NkeySeed = None,
    connect_timeout: ConnectTimeout = DEFAULT_CONNECT_TIMEOUT_S,
) -> None:
    """Verify every stored event: its hash, key (roster valid at its time) and the signatures
    that carry the others (or, --every-signature, every one), origin and link hash chains
    (gaps, forks, replays), lifecycle, receipts, deadlines, and the regions' checkpoints.
    Memory stays bounded however long the history."""
    source = _Source(nats_url, archive, client_settings(tls_ca, tls_cert, tls_key, nkey_seed), connect_timeout)
    try:
        result = _replay(source, roster, since, until, region, referral, every_signature)
    except XRegionError as exc:
        raise fail(exc) from None
    if json_out:
        print(json.dumps(result.to_json(), ensure_ascii=False, indent=2))
    else:
        _print_anomalies(result.anomalies)
        verdict = "[green]ok[/green]" if result.ok else f"[red]{len(result.anomalies)} anomalies[/red]"
        console.print(
            f"{verdict}: {result.events} events (stream seq {result.first_seq}-{result.last_seq}), "
            f"{len(result.heads)} origin chains, {result.checkpoints} checkpoints, {source.name}",
            highlight=False,
        )
    raise typer.Exit(0 if result.ok else 1)


@app.command()
def state(
    at: Annotated[str, typer.Option("--at", help="The moment (ISO 8601; UTC if no offset) or stream sequence.")],
    referral: Annotated[str | None, typer.Option(help="Only this referral.")] = None,
    nats_url: ArchiveOrNatsUrl = None,
    archive: ArchiveOption = None,
    roster: RosterOption = DEFAULT_ROSTER,
    json_out: JsonOption = False,
    tls_ca: TlsCa = None,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    nkey_seed: NkeySeed = None,
    connect_timeout: ConnectTimeout = DEFAULT_CONNECT_TIMEOUT_S,
) -> None:
    """The state of every referral (or one) at a past moment, by deterministic replay."""
    from xregion.auditor.replay import Replayer
    from xregion.auditor.state import state_json

    source = _Source(nats_url, archive, client_settings(tls_ca, tls_cert, tls_key, nkey_seed), connect_timeout)
    keys = _load_roster(roster)
    bound = parse_bound(at)

    async def consume(records: AsyncIterator[Any], total: int | None) -> Any:
        replayer = Replayer(keys, load_config().regions, keep_closed=True)
        await replayer.apply_async(records, bound if isinstance(bound, datetime) else None)
        return replayer.states

    try:
        states = asyncio.run(source.run(consume, until_seq=bound if isinstance(bound, int) else None))
    except XRegionError as exc:
        raise fail(exc) from None
    chosen = [s for rid, s in states.items() if referral is None or rid == referral]
    if json_out:
        print(json.dumps([state_json(s) for s in chosen], ensure_ascii=False, indent=2))
        return
    for s in chosen:
        tracks = ", ".join(f"{k}: {v}" for k, v in sorted(s.tracks.items()))
        console.print(
            f"{s.referral_id}  {s.family:12} {s.origin}→{s.addressee:4} {s.state:20} {tracks}", highlight=False
        )
    console.print(f"{len(chosen)} referrals at {at}", highlight=False)
    if referral is not None and not chosen:
        raise typer.Exit(1)


@app.command()
def export(
    out: Annotated[Path, typer.Option("--out", help="Archive directory (continued if it exists).")],
    nats_url: RequiredNatsUrl = None,
    keys_dir: Annotated[Path, typer.Option("--keys-dir", help="Holds private/AUDIT.key and roster.json.")] = Path(
        ".xregion/keys"
    ),
    segment_events: Annotated[int, typer.Option(help="Events per segment.")] = 100_000,
    tls_ca: TlsCa = None,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    nkey_seed: NkeySeed = None,
    connect_timeout: ConnectTimeout = DEFAULT_CONNECT_TIMEOUT_S,
) -> None:
    """Write (or continue) an archive: the original signed events byte for byte in
    hash-linked, compressed JSON Lines segments, with a manifest signed by the AUDIT key."""
    from xregion.auditor.archive import ArchiveWriter
    from xregion.keys import ROSTER_FILE, load_signer
    from xregion.regions import AUDITOR

    source = _Source(nats_url, None, client_settings(tls_ca, tls_cert, tls_key, nkey_seed), connect_timeout)
    try:
        signer = load_signer(keys_dir, AUDITOR)
        writer = ArchiveWriter(
            out,
            signer,
            _load_roster(keys_dir / ROSTER_FILE),
            stream=source.settings.stream,
            segment_events=segment_events,
        )
    except XRegionError as exc:
        raise fail(exc) from None
    checkpoints: list[Any] = []

    async def consume(records: AsyncIterator[Any], total: int | None) -> Any:
        with _progress(None, "exporting") as advance:
            async for record in records:
                writer.add(record)
                advance(1)
        return writer.finish(checkpoints)

    try:
        result = asyncio.run(
            source.run(consume, checkpoints.extend, start_seq=writer.next_seq, restore_check=writer.check_stream)
        )
    except XRegionError as exc:
        raise fail(exc) from None
    console.print(
        f"exported {result.new_events} new events into {len(result.new_segments)} new segments "
        f"({', '.join(result.new_segments) or 'none'}); archive {out}: {result.total_events} events up to "
        f"stream seq {result.last_seq}",
        highlight=False,
    )


@app.command()
def verify(
    archive: Annotated[Path, typer.Argument(help="The archive directory.")],
    roster: Annotated[
        Path | None, typer.Option("--roster", help="Trusted roster (default: the archive's own copy).")
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Check an archive offline, without NATS: manifest signature, every file's hash, the
    segment links, line order and counts, and every event (signature, chains, lifecycle,
    receipts, deadlines, checkpoints). Names every problem; exit code 0 when intact."""
    from xregion.auditor.archive import verify_archive

    trusted = _load_roster(roster) if roster is not None else None
    with _progress(None, "verifying") as advance:
        result = verify_archive(archive, load_config().regions, trusted, progress=advance)
    if json_out:
        summary = result.replay.to_json() if result.replay else {}
        print(
            json.dumps(
                {
                    "ok": result.ok,
                    "segments": result.segments,
                    "roster": result.roster_source,
                    "problems": [a.to_json() for a in result.anomalies],
                    "events": summary.get("events", 0),
                },
                ensure_ascii=False,
                indent=2,
            )
        )
    else:
        _print_anomalies(result.anomalies)
        events = result.replay.events if result.replay else 0
        verdict = "[green]archive intact[/green]" if result.ok else f"[red]{len(result.anomalies)} problems[/red]"
        console.print(
            f"{verdict}: {result.segments} segments, {events} events, roster: {result.roster_source}",
            highlight=False,
        )
    raise typer.Exit(0 if result.ok else 1)


@app.command()
def report(
    nats_url: ArchiveOrNatsUrl = None,
    archive: ArchiveOption = None,
    roster: RosterOption = DEFAULT_ROSTER,
    html: Annotated[Path, typer.Option("--html", help="Write the HTML report here.")] = Path("audit-report.html"),
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the JSON report here.")] = None,
    since: Annotated[str | None, typer.Option(help="Start at this stream sequence or time.")] = None,
    until: Annotated[str | None, typer.Option(help="Stop after this stream sequence or time.")] = None,
    tls_ca: TlsCa = None,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    nkey_seed: NkeySeed = None,
    connect_timeout: ConnectTimeout = DEFAULT_CONNECT_TIMEOUT_S,
) -> None:
    """A report: counts per family and region, deadline compliance per region pair, and
    every anomaly with its evidence (HTML; JSON with --json)."""
    from xregion.auditor.report import report_html, report_json

    source = _Source(nats_url, archive, client_settings(tls_ca, tls_cert, tls_key, nkey_seed), connect_timeout)
    try:
        result = _replay(source, roster, since, until, None, None)
    except XRegionError as exc:
        raise fail(exc) from None
    html.write_text(report_html(result, source.name), encoding="utf-8")
    if json_path is not None:
        json_path.write_text(json.dumps(report_json(result, source.name), ensure_ascii=False, indent=2) + "\n")
    console.print(f"report: {html}{f' and {json_path}' if json_path else ''}; {len(result.anomalies)} anomalies")
