"""The dashboard's ASGI application (Starlette): one static page, JSON, live updates, health, metrics.

Routes
------
==========================  =====================================================================
``/``                       the page (``static/index.html``; vanilla JS, no build step)
``/api/regions``            the configured regions (code, Chinese and English names)
``/api/summary``            the projection's summary plus the flow matrix: referrals per
                            origin → addressee, family and state
``/api/referrals``          referrals, filtered by ``region``, ``family``, ``state``, ``overdue``
``/api/referrals/{id}``     one referral with its timeline (404 if unknown)
``/api/overdue``            the overdue referrals
``/api/blacklist``          blacklist propagation: which region acknowledged which update
``/api/anomalies``          every anomaly with its code's Chinese explanation and the event it concerns
``/api/incidents``          dead letters and security alerts per region (the dead-letter stream,
                            read by direct get as ``COORD``), with explanations
``/api/explanations``       every code's Chinese explanation (:mod:`xregion.explanations`)
``/api/today``              the day overdue is judged on
``/api/assessment``         the performance assessment (``from``, ``to``, ``region``, ``by``;
                            default the last 12 weeks) — :mod:`xregion.coordinator.assessment`
``/api/assessment/charts/{name}.svg``  its charts (volume, on_time, response, overdue) as SVG
``/api/assessment/report.html|.csv``   the printable report and the spreadsheet of the same figures
``/events``                 server-sent events: ``event: referral`` with ``{"id": ...}`` per changed
                            referral (from :meth:`Projection.subscribe`), a comment every 15 s
``/health/live``            200 while the process serves requests
``/health/ready``           200 once connected to NATS and the projection has caught up, else 503
``/metrics``                Prometheus text format (default registry)
==========================  =====================================================================

The application reads the coordinator's :class:`~xregion.coordinator.projection.Projection`
(synchronous SQLite reads) and never writes to it; the dead letters and security alerts come
from the dead-letter stream (:class:`~xregion.coordinator.incidents.Incidents`, direct gets).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from xregion.coordinator.assessment import Assessment, Period, assess
from xregion.coordinator.incidents import Incidents
from xregion.coordinator.projection import Projection, ReferralView
from xregion.explanations import EXPLANATIONS, explain
from xregion.regions import RegionRegistry
from xregion.reports.assessment import CHARTS, assessment_csv, assessment_html, chart

STATIC = Path(__file__).parent / "static"
HEARTBEAT_S = 15.0


@dataclass(frozen=True)
class Readiness:
    """Whether the coordinator may be sent traffic, and why not."""

    ready: bool
    checks: dict[str, Any] = field(default_factory=dict)


ReadyCheck = Callable[[], Awaitable[Readiness]]
Refresh = Callable[[], Awaitable[None]]


async def _always_ready() -> Readiness:
    return Readiness(True)


async def _nothing() -> None:
    return None


def flows(referrals: list[ReferralView]) -> list[dict[str, Any]]:
    """Referral counts per origin, addressee, family and state (the page's flow matrix)."""
    counts: dict[tuple[str, str, str, str], int] = {}
    for view in referrals:
        key = (view.origin, view.addressee, view.family, view.state)
        counts[key] = counts.get(key, 0) + 1
    return [
        {"origin": o, "addressee": a, "family": f, "state": s, "count": n} for (o, a, f, s), n in sorted(counts.items())
    ]


def _flag(value: str | None) -> bool | None:
    if value is None or value == "":
        return None
    return value.lower() in ("1", "true", "yes", "on")


class Dashboard:
    """The dashboard over a projection; :attr:`app` is the ASGI application.

    ``ready`` answers ``/health/ready``; ``refresh_metrics`` runs before each ``/metrics``
    scrape (bounded by ``metrics_timeout_s``), e.g. to read consumer lag and dead letters.
    """

    def __init__(
        self,
        projection: Projection,
        regions: RegionRegistry,
        *,
        ready: ReadyCheck = _always_ready,
        refresh_metrics: Refresh = _nothing,
        metrics_timeout_s: float = 3.0,
        today: Callable[[], date] | None = None,
        incidents: Incidents | None = None,
    ) -> None:
        self.projection = projection
        self.incidents = incidents
        self._assessments: dict[tuple[Any, ...], Assessment] = {}
        self.regions = regions
        self.ready = ready
        self.refresh_metrics = refresh_metrics
        self.metrics_timeout_s = metrics_timeout_s
        self.today = today
        self.stopping = asyncio.Event()
        self.app = Starlette(
            routes=[
                Route("/", self.index),
                Route("/api/regions", self.api_regions),
                Route("/api/summary", self.api_summary),
                Route("/api/referrals", self.api_referrals),
                Route("/api/referrals/{referral_id}", self.api_referral),
                Route("/api/overdue", self.api_overdue),
                Route("/api/blacklist", self.api_blacklist),
                Route("/api/anomalies", self.api_anomalies),
                Route("/api/incidents", self.api_incidents),
                Route("/api/explanations", self.api_explanations),
                Route("/api/today", self.api_today),
                Route("/api/assessment", self.api_assessment),
                Route("/api/assessment/charts/{name}.svg", self.api_assessment_chart),
                Route("/api/assessment/report.html", self.api_assessment_html),
                Route("/api/assessment/report.csv", self.api_assessment_csv),
                Route("/events", self.events),
                Route("/health/live", self.live),
                Route("/health/ready", self.readiness),
                Route("/metrics", self.metrics),
                Mount("/static", StaticFiles(directory=STATIC), name="static"),
            ],
        )

    def close(self) -> None:
        """End the live streams (before the server shuts down, which waits for them)."""
        self.stopping.set()

    def _at(self) -> date | None:
        return self.today() if self.today is not None else None

    # --- page and JSON ----------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    async def api_regions(self, request: Request) -> Response:
        return JSONResponse(
            [{"code": r.code, "name_zh": r.name_zh, "name_en": r.name_en, "iso": r.iso} for r in self.regions]
        )

    async def api_summary(self, request: Request) -> Response:
        at = self._at()
        body = self.projection.summary(at=at).to_json()
        body["flows"] = flows(self.projection.referrals(at=at))
        return JSONResponse(body)

    async def api_referrals(self, request: Request) -> Response:
        q = request.query_params
        views = self.projection.referrals(
            region=q.get("region") or None,
            family=q.get("family") or None,
            state=q.get("state") or None,
            overdue=_flag(q.get("overdue")),
            at=self._at(),
        )
        return JSONResponse([v.to_json() for v in views])

    async def api_referral(self, request: Request) -> Response:
        view = self.projection.referral(request.path_params["referral_id"], at=self._at())
        if view is None:
            return JSONResponse({"error": "not_found", "referral_id": request.path_params["referral_id"]}, 404)
        return JSONResponse(view.to_json())

    async def api_overdue(self, request: Request) -> Response:
        return JSONResponse([v.to_json() for v in self.projection.referrals(overdue=True, at=self._at())])

    async def api_blacklist(self, request: Request) -> Response:
        return JSONResponse([p.to_json() for p in self.projection.blacklist_propagation()])

    async def api_anomalies(self, request: Request) -> Response:
        """Every anomaly, explained, with the event it concerns (when the timeline has it)."""
        out = []
        for anomaly in self.projection.anomalies():
            item = anomaly.to_json()
            item["explanation"] = explain(anomaly.code).to_json()
            row = self.projection.db.execute(
                "SELECT referral_id, event_type, sender, addressee, time, stored_at FROM timeline WHERE stream_seq = ?",
                (anomaly.stream_seq,),
            ).fetchone()
            item["event"] = (
                None
                if row is None
                else dict(
                    zip(("referral_id", "event_type", "sender", "addressee", "time", "stored_at"), row, strict=True)
                )
            )
            rid = anomaly.referral_id or (row[0] if row else None)
            item["referral_known"] = (
                rid is not None
                and self.projection.db.execute("SELECT 1 FROM referrals WHERE referral_id = ?", (rid,)).fetchone()
                is not None
            )
            if item["referral_id"] is None and rid is not None:
                item["referral_id"] = rid
            out.append(item)
        return JSONResponse(out)

    async def api_incidents(self, request: Request) -> Response:
        regions = tuple(r.code for r in self.regions)
        if self.incidents is None:
            return JSONResponse({"available": False, "error": "not_configured", "per_region": {}, "recent": []})
        await self.incidents.refresh()
        return JSONResponse(self.incidents.to_json(regions))

    async def api_today(self, request: Request) -> Response:
        """The day overdue is judged on (Beijing time; the assessment's default last day)."""
        return JSONResponse({"today": (self._at() or self.projection.today()).isoformat()})

    async def api_explanations(self, request: Request) -> Response:
        return JSONResponse({code: e.to_json() for code, e in sorted(EXPLANATIONS.items())})

    # --- assessment -------------------------------------------------------------------

    def _assessment(self, request: Request) -> Assessment:
        """The assessment the query asks for (``from``, ``to``, ``region``, ``by``), cached
        until the projection moves on."""
        q = request.query_params
        today = self._at() or self.projection.today()
        end = date.fromisoformat(q["to"]) if q.get("to") else today
        start = date.fromisoformat(q["from"]) if q.get("from") else end - timedelta(weeks=12) + timedelta(days=1)
        by = q.get("by") or "week"
        region = q.get("region") or None
        if region is not None and region not in self.regions.codes:
            raise ValueError(f"unknown region {region}")
        period = Period(start, end, "month" if by == "month" else "week")
        if by not in ("week", "month"):
            raise ValueError("by: week or month")
        key = (period, region, today, self.projection.last_seq())
        found = self._assessments.get(key)
        if found is None:
            if len(self._assessments) > 32:
                self._assessments.clear()
            found = self._assessments[key] = assess(self.projection, period, region=region, today=today)
        return found

    async def _with_assessment(self, request: Request, render: Callable[[Assessment], Response]) -> Response:
        try:
            result = self._assessment(request)
        except ValueError as exc:
            return JSONResponse({"error": "bad_request", "detail": str(exc)}, 400)
        return render(result)

    async def api_assessment(self, request: Request) -> Response:
        return await self._with_assessment(request, lambda a: JSONResponse(a.to_json()))

    async def api_assessment_chart(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in CHARTS:
            return JSONResponse({"error": "not_found", "chart": name, "charts": list(CHARTS)}, 404)
        return await self._with_assessment(
            request,
            lambda a: Response(chart(name, a, self.regions), media_type="image/svg+xml; charset=utf-8"),
        )

    async def api_assessment_html(self, request: Request) -> Response:
        return await self._with_assessment(
            request, lambda a: Response(assessment_html(a, self.regions), media_type="text/html; charset=utf-8")
        )

    async def api_assessment_csv(self, request: Request) -> Response:
        def render(a: Assessment) -> Response:
            name = f"assessment-{a.period.start.isoformat()}-{a.period.end.isoformat()}.csv"
            return Response(
                "\ufeff" + assessment_csv(a, self.regions),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="{name}"'},
            )

        return await self._with_assessment(request, render)

    # --- live updates -----------------------------------------------------------------

    async def events(self, request: Request) -> Response:
        queue = self.projection.subscribe()
        return StreamingResponse(
            self._stream(queue),
            media_type="text/event-stream; charset=utf-8",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _stream(self, queue: asyncio.Queue[str]) -> AsyncIterator[str]:
        """``retry`` hint, a hello, then one event per changed referral (bursts coalesced)."""
        try:
            yield "retry: 2000\nevent: hello\ndata: {}\n\n"
            stop = asyncio.ensure_future(self.stopping.wait())
            try:
                while not self.stopping.is_set():
                    get = asyncio.ensure_future(queue.get())
                    done, _ = await asyncio.wait({get, stop}, timeout=HEARTBEAT_S, return_when=asyncio.FIRST_COMPLETED)
                    if get not in done:
                        get.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await get
                        if not self.stopping.is_set():
                            yield ": keep-alive\n\n"
                        continue
                    changed = [get.result()]
                    while not queue.empty():
                        changed.append(queue.get_nowait())
                    for referral_id in dict.fromkeys(changed):
                        yield f"event: referral\ndata: {json.dumps({'id': referral_id}, ensure_ascii=False)}\n\n"
            finally:
                stop.cancel()
        finally:
            self.projection.unsubscribe(queue)

    # --- operations -------------------------------------------------------------------

    async def live(self, request: Request) -> Response:
        return JSONResponse({"status": "live"})

    async def readiness(self, request: Request) -> Response:
        result = await self.ready()
        return JSONResponse(
            {"status": "ready" if result.ready else "not_ready", **result.checks}, 200 if result.ready else 503
        )

    async def metrics(self, request: Request) -> Response:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.metrics_timeout_s):
                await self.refresh_metrics()
        return PlainTextResponse(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


__all__ = ["Dashboard", "Readiness", "flows"]
