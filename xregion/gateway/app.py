"""The HTTP gateway's FastAPI application: submit events, read referrals, see dead webhooks.

Errors are RFC 9457 problem details (``application/problem+json``) whose ``type`` is
``urn:xregion:error:<code>`` with the stable codes of :mod:`xregion.errors`, and whose
``errors`` name the failing fields. The OpenAPI document (``schemas/openapi.json``) is
generated from this application.

``/docs`` (Swagger UI) and ``/redoc`` load their scripts and styles from the gateway itself
(:data:`DOCS_ASSETS`, shipped by ``fastapi-offline``), never from a CDN: agencies' networks
are offline.
"""

import hmac
import json
from dataclasses import asdict, dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from xregion.adapter.client import RegionClient
from xregion.adapter.idempotency import IdempotencyConflict, Submission, submit_once
from xregion.errors import ContractError, LifecycleError, UnknownReferral, XRegionError
from xregion.gateway import webhooks
from xregion.gateway.models import (
    DeadLetter,
    HistoryItem,
    OpenRequest,
    Problem,
    Referral,
    SendRequest,
    Submitted,
    WebhookEvent,
)
from xregion.ids import EVENT_ID
from xregion.lifecycle import ReferralState
from xregion.runtime.store import Store

WEBHOOK = "inboundEvent"
"""Name of the webhook in the OpenAPI document's ``webhooks`` section."""
WEBHOOK_DESCRIPTION = """\
The adapter POSTs every inbound event it has verified and stored (receipts and escalations
included) to the regional system's URL (`--webhook-url`), one at a time, oldest first, as
JSON (`Content-Type: application/json`, UTF-8).

**Signature.** `X-Xregion-Signature` is `sha256=` followed by the lower-case hex
HMAC-SHA256 keyed with the UTF-8 bytes of the shared secret (`XREGION_WEBHOOK_SECRET`), over
the `X-Xregion-Timestamp` value, a full stop (`.`) and the raw body bytes. Check it on the
bytes received, before parsing, with a constant-time comparison, and refuse a timestamp more
than 300 seconds from your clock (a replayed request); `xregion.gateway.webhooks.verify` is
the reference check.

**Answer.** 2xx once the event is stored on your side. Anything else, or no answer within
10 s, is retried with exponential backoff (1 s doubling up to 5 min; a failing event holds
back the ones after it); after `--webhook-attempts` (default 8) the event is dead-lettered
(`GET /v1/webhooks/dead-letters`) and the next one goes. A retried event has the same
`event_id` (and `X-Xregion-Event-Id`): use it as the idempotency key. Each attempt has its
own timestamp and signature."""

PROBLEM = "application/problem+json"
DOCS_ASSETS = "/docs-assets"
"""Where the documentation pages' scripts, styles and icon are served."""
TYPE_PREFIX = "urn:xregion:error:"
TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    422: "Unprocessable submission",
    500: "Internal error",
}


class Unauthorized(XRegionError):
    code = "unauthorized"


class NotFound(XRegionError):
    code = "not_found"


@dataclass
class GatewayState:
    region: str
    client: RegionClient
    store: Store
    token: str | None
    dispatcher: webhooks.Dispatcher | None = None
    parties: tuple[str, ...] = ()


def status_of(exc: XRegionError) -> int:
    if isinstance(exc, Unauthorized):
        return 401
    if isinstance(exc, UnknownReferral | NotFound):
        return 404
    if isinstance(exc, ContractError | IdempotencyConflict):
        return 422
    if isinstance(exc, LifecycleError):
        return 409
    return 400


def problem(status: int, code: str, detail: str, instance: str | None = None, **extra: Any) -> JSONResponse:
    body = {
        "type": TYPE_PREFIX + code,
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
        **({"instance": instance} if instance else {}),
        **extra,
    }
    body.setdefault("errors", [])
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _errors_of(exc: XRegionError) -> list[dict[str, str]]:
    errors = exc.details.get("errors")
    if isinstance(errors, list):
        return [{"field": str(e.get("field", "")), "error": str(e.get("error", ""))} for e in errors]
    if "field" in exc.details:
        return [{"field": str(exc.details["field"]), "error": exc.message}]
    return []


def _field_path(loc: tuple[Any, ...], event_types: set[str]) -> str:
    parts = list(loc)
    if parts and parts[0] == "body":
        parts = parts[1:]
        if parts and isinstance(parts[0], str) and parts[0] in event_types:
            parts = parts[1:]  # the discriminator's tag: the member of the union
    return ".".join(str(p) for p in parts)


async def _xregion_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, XRegionError)
    extra = {k: v for k, v in exc.details.items() if k not in {"errors", "field"} and _json_safe(v)}
    return problem(status_of(exc), exc.code, exc.message, request.url.path, errors=_errors_of(exc), **extra)


def _json_safe(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _validation_error(event_types: set[str]) -> Any:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors, code = [], "schema_invalid"
        for err in exc.errors():
            kind = err.get("type", "")
            path = _field_path(tuple(err.get("loc", ())), event_types)
            if kind == "json_invalid":
                code = "malformed_json"
            elif kind == "union_tag_invalid":
                code, path = "unknown_event_type", "event_type"
            elif kind == "union_tag_not_found":
                path = "event_type"
            errors.append({"field": path, "error": str(err.get("msg", ""))})
        fields = ", ".join(e["field"] or "(body)" for e in errors[:5])
        return problem(422, code, f"the submission is invalid at {fields}", request.url.path, errors=errors)

    return handle


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return problem(
        exc.status_code, "not_found" if exc.status_code == 404 else "http_error", str(exc.detail), request.url.path
    )


def _referral(state: ReferralState) -> Referral:
    return Referral(
        referral_id=state.referral_id,
        family=state.family,
        origin=state.origin,
        addressee=state.addressee,
        state=state.state,
        tracks=dict(state.tracks),
        events=state.events,
        last_event_id=state.last_event_id,
        handling=list(state.handling),
    )


PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "content": {PROBLEM: {}}, "description": TITLES[status]}
    for status in (401, 404, 409, 422)
}

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Client-chosen key: the same key with the same body returns the first answer and sends "
        "nothing again; with a different body it is refused (idempotency_conflict).",
    ),
]


def create_app(state: GatewayState | None = None) -> FastAPI:
    """The gateway application (``state`` None: for the OpenAPI document only)."""
    from xregion.contracts.catalog import CATALOG

    app = FastAPIOffline(
        static_url=DOCS_ASSETS,
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from validator.swagger.io
        title="xregion regional HTTP gateway",
        version="1.0.0",
        description="Submit events of every v1 family to the bus through your region's adapter, read your "
        "referrals and their histories. Inbound events arrive by signed webhooks "
        "(`X-Xregion-Signature: sha256=<HMAC-SHA256(secret, timestamp + '.' + body)>`).",
        responses=PROBLEMS,
    )
    app.state.gateway = state
    bearer = HTTPBearer(auto_error=False, description="XREGION_HTTP_TOKEN of the regional system.")
    app.add_exception_handler(XRegionError, _xregion_error)
    app.add_exception_handler(RequestValidationError, _validation_error({t.name for t in CATALOG}))
    app.add_exception_handler(StarletteHTTPException, _http_error)

    def gateway(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
    ) -> GatewayState:
        current: GatewayState | None = request.app.state.gateway
        if current is None:
            raise RuntimeError("gateway not attached to an adapter")
        if current.token is not None and (
            credentials is None or not hmac.compare_digest(credentials.credentials.encode(), current.token.encode())
        ):
            raise Unauthorized("a valid bearer token is required (Authorization: Bearer <XREGION_HTTP_TOKEN>)")
        return current

    Gw = Annotated[GatewayState, Depends(gateway)]

    async def submit(gw: GatewayState, key: str | None, sub: Submission) -> JSONResponse:
        response, replayed = await submit_once(gw.client, gw.store, key, sub, parties=gw.parties)
        headers = {"Location": f"/v1/referrals/{response['referral_id']}"}
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        return JSONResponse(Submitted(**response).model_dump(), status_code=201, headers=headers)

    @app.post("/v1/referrals", status_code=201, response_model=Submitted, tags=["submit"])
    async def open_referral(body: OpenRequest, gw: Gw, idempotency_key: IdempotencyKey = None) -> JSONResponse:
        """Open a referral: `lead.submitted`, `assist.requested`, `recognition.published` or a `share.*`
        broadcast (`to: "ALL"`)."""
        return await submit(
            gw,
            idempotency_key,
            Submission(
                event_type=body.event_type,
                data=body.data.model_dump(mode="json", exclude_unset=True),
                referral_id=body.referral_id,
                to=body.to,
                handling=body.handling,
                handling_note=body.handling_note,
                answer_by=body.answer_by,
            ),
        )

    @app.post("/v1/referrals/{referral_id}/events", status_code=201, response_model=Submitted, tags=["submit"])
    async def send_event(
        referral_id: str, body: SendRequest, gw: Gw, idempotency_key: IdempotencyKey = None
    ) -> JSONResponse:
        """Send the next event of a referral (accept, reject, progress, evidence, recognise, ...)."""
        return await submit(
            gw,
            idempotency_key,
            Submission(
                event_type=body.event_type,
                data=body.data.model_dump(mode="json", exclude_unset=True),
                referral_id=referral_id,
                handling=body.handling,
                handling_note=body.handling_note,
                answer_by=body.answer_by,
            ),
        )

    @app.get("/v1/referrals", response_model=list[Referral], tags=["read"])
    async def list_referrals(gw: Gw) -> list[Referral]:
        """Every referral this region takes part in, with its current state."""
        return [_referral(s) for s in await gw.client.referrals()]

    @app.get("/v1/referrals/{referral_id}", response_model=Referral, tags=["read"])
    async def get_referral(referral_id: str, gw: Gw) -> Referral:
        found = await gw.client.referral(referral_id)
        if found is None:
            raise UnknownReferral(f"referral {referral_id} is unknown to {gw.region}", referral_id=referral_id)
        return _referral(found)

    @app.get("/v1/referrals/{referral_id}/history", response_model=list[HistoryItem], tags=["read"])
    async def get_history(referral_id: str, gw: Gw) -> list[HistoryItem]:
        entries = await gw.client.history(referral_id)
        if not entries:
            raise UnknownReferral(f"referral {referral_id} is unknown to {gw.region}", referral_id=referral_id)
        return [HistoryItem(**asdict(e)) for e in entries]

    @app.get("/v1/webhooks/dead-letters", response_model=list[DeadLetter], tags=["webhooks"])
    async def get_dead_letters(gw: Gw) -> list[DeadLetter]:
        """Inbound events the regional system's webhook never accepted, with the last status and error."""
        return [DeadLetter(**asdict(d)) for d in await webhooks.dead_letters(gw.store)]

    @app.post("/v1/webhooks/dead-letters/{event_id}/retry", status_code=202, tags=["webhooks"])
    async def retry_dead_letter(event_id: str, gw: Gw) -> dict[str, str]:
        """Queue a dead webhook again (once the regional system is fixed)."""
        if gw.dispatcher is None or not await gw.dispatcher.retry_dead(event_id):
            raise NotFound(f"no dead webhook for event {event_id}", event_id=event_id)
        return {"event_id": event_id, "status": "pending"}

    @app.webhooks.post(
        WEBHOOK,
        status_code=204,
        summary="An inbound event, POSTed by the adapter to the regional system",
        description=WEBHOOK_DESCRIPTION,
        tags=["webhooks"],
        operation_id=WEBHOOK,
        responses={
            204: {"description": "Stored by the regional system (any 2xx is accepted)."},
            "default": {"description": "Not accepted: the adapter retries, then dead-letters the event."},
        },
    )
    def inbound_event(
        body: WebhookEvent,
        event_id: Annotated[
            str,
            Header(
                alias=webhooks.EVENT_ID_HEADER,
                pattern=EVENT_ID.pattern,
                description="The event's id, as in the body's event_id: the idempotency key.",
            ),
        ],
        timestamp: Annotated[
            str,
            Header(
                alias=webhooks.TIMESTAMP_HEADER,
                pattern=r"^[0-9]{1,12}$",
                description="When this attempt was sent: Unix time in whole seconds, decimal ASCII "
                "(e.g. 1795674600). Signed together with the body; refuse one more than 300 s from your clock.",
            ),
        ],
        signature: Annotated[
            str,
            Header(
                alias=webhooks.SIGNATURE_HEADER,
                pattern=r"^sha256=[0-9a-f]{64}$",
                description="sha256=<lower-case hex HMAC-SHA256(UTF-8 secret, timestamp + '.' + raw body)>.",
            ),
        ],
    ) -> None:
        """Declared for the OpenAPI document only: the adapter sends it, the gateway never serves it."""

    return app


def openapi_document() -> dict[str, Any]:
    return create_app().openapi()


def render_openapi() -> str:
    return json.dumps(openapi_document(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


OPENAPI_FILE = "openapi.json"
