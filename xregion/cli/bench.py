"""``xregion bench``: the bus's paths against raw nats-py on the same server, in one run.

Prints a table (measurement, baseline, ratio, goal, met) or, with ``--json``, the whole report
(:meth:`xregion.bench.runner.BenchReport.to_json`). The 1M-event replay:
``xregion bench --replay-events 100000 --replay-events 1000000`` (about 8 minutes on 2 cores).
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

console = Console(width=None if Console().is_terminal else 160)
err = Console(stderr=True)


def bench(
    events: Annotated[
        int, typer.Option("--events", min=1, help="Events (and raw 1 KB messages) per throughput measurement.")
    ] = 2000,
    replay_events: Annotated[
        list[int] | None,
        typer.Option("--replay-events", min=1, help="Events in the replayed stream; repeat for several sizes."),
    ] = None,
    latency_events: Annotated[
        int | None, typer.Option("--latency-events", min=1, help="Events of the fixed-rate latency run.")
    ] = None,
    rate: Annotated[float, typer.Option("--rate", min=1.0, help="Offered rate of the latency run, events/s.")] = 500.0,
    nats_url: Annotated[
        str | None,
        typer.Option(
            "--nats-url",
            help="A scratch NATS server (no TLS/auth) instead of the embedded one; the streams XREGION, "
            "XREGION_DLQ, XREGION_BENCH and BENCH_RAW are created and deleted there.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    seal: Annotated[
        int,
        typer.Option(
            "--seal",
            min=1,
            max=2,
            help="Sealing version of the adapters' personal data (XREGION_SEAL_VERSION): 2 (one key agreement per "
            "event and recipient) or 1 (a sealed box per field and recipient).",
        ),
    ] = 2,
    profile: Annotated[
        bool,
        typer.Option(
            "--profile",
            help="Also print each path's CPU per event by stage (sampled; costs a little CPU itself).",
        ),
    ] = False,
) -> None:
    """Measure raw nats-py, outbound, end to end, latency and audit replay; print the ratios."""
    from xregion.bench.runner import run_all

    sizes = tuple(replay_events) if replay_events else (100_000,)
    report = asyncio.run(
        run_all(
            events=events,
            replay_events=sizes,
            latency_events=latency_events,
            rate=rate,
            nats_url=nats_url,
            progress=(lambda _: None) if as_json else (lambda text: err.print(f"[dim]… {text}[/dim]")),
            profile=profile,
            seal_version=seal,
        )
    )
    doc = report.to_json()
    if as_json:
        print(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    m = doc["machine"]
    console.print(
        f"[bold]xregion bench[/bold] — {report.server}\n"
        f"{m['cpus']} CPUs ({m['cpu_model']}), Python {m['python']}, {m['nats_server']}, {m['date']}\n"
        f"disk: one SQLite commit (WAL, synchronous=FULL) takes {m.get('disk_sync_ms', '?')} ms; "
        f"personal data sealed v{m.get('seal_version', '?')}"
    )
    table = Table(show_lines=False)
    for column, justify in (
        ("measurement", "left"),
        ("value", "right"),
        ("baseline", "left"),
        ("baseline value", "right"),
        ("ratio", "right"),
        ("goal", "left"),
        ("met", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in doc["comparisons"]:
        met = "" if row["met"] is None else ("[green]met[/green]" if row["met"] else "[red]not met[/red]")
        unit = row["unit"]
        value = f"{row['value']:,.2f} {unit}" if unit == "ms" else f"{row['value']:,.0f} {unit}"
        base = row["baseline_value"]
        base_text = f"{base:,.2f} ms" if unit == "ms" else f"{base:,.0f} ev/s"
        ratio = f"{row['ratio']:.2f}" + ("" if unit == "ms" else "×")
        table.add_row(row["measurement"], value, row["baseline"], base_text, ratio, row["goal"], met)
    console.print(table)
    lat = doc["latency"]
    console.print(
        f"latency at {lat['offered_per_s']:g} ev/s offered ({lat['achieved_per_s']:,.0f} achieved, "
        f"{lat['events']:,} events): p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms, max {lat['max_ms']} ms"
    )
    for replay in doc["replay"]:
        r = replay["audit_replay"]
        console.print(
            f"replay {replay['events']:,}: RSS {r['rss_start_mb']} → peak {r['rss_peak_mb']} MB "
            f"({'flat' if replay['memory_flat'] else 'growing'}), anomalies {replay['anomalies']}"
        )
    for path, prof in doc.get("profile", {}).items():
        print_profile(path, prof)


def print_profile(path: str, prof: dict[str, Any]) -> None:
    """One path's CPU per event by stage, a table per process."""
    processes = prof.get("processes") or {k: v for k, v in prof.items() if isinstance(v, dict)}
    extra = []
    if "nats_server_cpu_us_per_event" in prof:
        extra.append(f"nats-server {prof['nats_server_cpu_us_per_event']:,.0f} µs/event")
    if "workers_cpu_us_per_event" in prof:
        extra.append(f"checking workers {prof['workers_cpu_us_per_event']:,.0f} µs/event")
    for name, p in processes.items():
        table = Table(title=f"{path} — {name}: {p['cpu_us_per_event']:,.0f} µs CPU per event", title_justify="left")
        table.add_column("stage")
        table.add_column("µs/event", justify="right")
        table.add_column("share", justify="right")
        for stage in p["stages"]:
            table.add_row(stage["stage"], f"{stage['us_per_event']:,.1f}", f"{stage['share'] * 100:.1f} %")
        console.print(table)
    if extra:
        console.print(f"{path}: " + ", ".join(extra))
