"""The FastAPI application: `create_app(settings, client=None)`.

Order of checks on every /v1 request (each refusal changes nothing):
rate limit (429) -> body size (413) -> bearer token (401) -> JSON syntax (422) -> role and loan
ownership (403, 404) -> body against the contract's model (422) -> one Temporal call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Path, Query, Request, Security
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError
from temporalio.client import Client

from domain import contract
from domain.models import (
    ContactOutcome,
    Pause,
    PaymentPlanProposal,
    PaymentReceived,
    PlanDecision,
    Resume,
    Status,
    WriteOff,
)
from runtime.config import Settings

from .auth import AuthError, Principal, Role, verify_token
from .config import PortalConfig, require_jwt_secret
from .errors import (
    ErrorBody,
    Forbidden,
    NotFound,
    Unavailable,
    Unprocessable,
    error_response,
    fields_from_errors,
    install_handlers,
)
from .gateway import LoanGateway
from .limits import BodySizeLimitMiddleware, RateLimitMiddleware, Scope, TokenBucket
from .schemas import (
    AgentLoanView,
    AgentOutcomeRequest,
    AgentTask,
    AgentTaskList,
    Health,
    PaymentAccepted,
    SignalAccepted,
)

log = logging.getLogger("portal")

PRINCIPAL_KEY = "portal.principal"
LOAN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
UNAUTHENTICATED_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})

LoanId = Annotated[
    str, Path(min_length=1, max_length=64, pattern=LOAN_ID_PATTERN, description="the loan's loan_id")
]
TaskId = Annotated[str, Path(min_length=1, max_length=128, description="an open task's task_id")]

_bearer = HTTPBearer(auto_error=False, description="HS256 JWT signed with PORTAL_JWT_SECRET")


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    texts = {
        401: "no token, or a bad or expired one",
        403: "the token's role or subject may not do this on this loan",
        404: "no such loan (or task)",
        409: "the loan is closed",
        413: "request body too large",
        422: "malformed request: `fields` names each field and the reason",
        429: "rate limit for this token exceeded (see Retry-After)",
        503: "Temporal or the loan's worker did not answer (see Retry-After)",
    }
    return {c: {"model": ErrorBody, "description": texts[c]} for c in codes}


class AuthMiddleware:
    """Verifies the bearer token of /v1 requests before the body is read; 401 otherwise."""

    def __init__(self, app: Any, secret: bytes) -> None:
        self.app = app
        self.secret = secret

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        header = None
        for key, value in scope.get("headers", ()):
            if key == b"authorization":
                header = value.decode("latin-1")
                break
        try:
            if not header:
                raise AuthError("missing Authorization: Bearer <token> header")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthError("Authorization header must be 'Bearer <token>'")
            scope[PRINCIPAL_KEY] = verify_token(token.strip(), self.secret)
        except AuthError as exc:
            response = error_response(
                401, "unauthorized", exc.reason,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
            await response(scope, receive, send)
            return

        async def no_store(message: Any) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [(b"cache-control", b"no-store")]
            await send(message)

        await self.app(scope, receive, no_store)


def create_app(
    settings: Settings | None = None,
    client: Client | None = None,
    config: PortalConfig | None = None,
) -> FastAPI:
    """The portal app. `client` (tests) replaces the connection runtime.client.connect would make."""
    settings = settings or Settings.from_env()
    config = config or PortalConfig.from_env()
    secret = require_jwt_secret(settings.portal_jwt_secret)

    if client is not None:
        async def factory() -> Client:
            return client
    else:
        async def factory() -> Client:
            from runtime.client import connect

            return await connect(settings)

    gateway = LoanGateway(factory, config, task_queue=settings.task_queue)

    @asynccontextmanager
    async def lifespan(_: FastAPI):  # type: ignore[no-untyped-def]
        async def warm() -> None:
            try:
                await gateway.client()
            except Unavailable as exc:
                log.warning("portal started; Temporal not reachable yet: %s", exc.message)

        task = asyncio.create_task(warm())
        yield
        task.cancel()

    app = FastAPI(
        title="Collections engine: borrower and agent gateway",
        version="1.0.0",
        description=(
            "Borrower portals, agent desks and operators' tools talk to the loans' Temporal "
            "workflows through this API. Every /v1 request carries `Authorization: Bearer <JWT>` "
            "(HS256, PORTAL_JWT_SECRET; `sub`, `exp`, optional `role`). Money is a decimal string."
        ),
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.gateway = gateway
    app.state.portal_config = config
    install_handlers(app)

    # Outermost first: rate limit, then body cap, then authentication.
    app.add_middleware(AuthMiddleware, secret=secret)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=config.max_body_bytes)
    app.add_middleware(
        RateLimitMiddleware,
        bucket=TokenBucket(config.rate_per_second, config.rate_burst),
        exempt_paths=UNAUTHENTICATED_PATHS,
    )

    # -- dependencies ------------------------------------------------------------------------

    def principal(
        request: Request, _creds: HTTPAuthorizationCredentials | None = Security(_bearer)
    ) -> Principal:
        found = request.scope.get(PRINCIPAL_KEY)
        if found is None:  # unreachable behind AuthMiddleware; defensive
            raise Forbidden("no authenticated principal")
        return found

    def loan_access(*roles: Role) -> Callable[..., Awaitable[Principal]]:
        async def check(loan_id: LoanId, who: Principal = Depends(principal)) -> Principal:
            if who.role not in roles:
                raise Forbidden(f"role {who.role.value!r} may not do this")
            if who.role is Role.BORROWER:
                owner = await gateway.borrower_id(loan_id)
                if owner != who.subject:
                    raise Forbidden("this loan belongs to another borrower")
            return who

        return check

    # -- routes --------------------------------------------------------------------------------

    @app.get("/healthz", response_model=Health, tags=["ops"],
             responses={503: {"model": Health, "description": "Temporal not reachable"}})
    async def healthz() -> Any:
        try:
            info = await gateway.health()
        except Unavailable as exc:
            body = Health(status="unavailable", temporal="unreachable", detail=exc.message)
            return JSONResponse(body.model_dump(exclude_none=True), status_code=503,
                                headers={"Retry-After": "5"})
        return Health(status="ok", temporal="reachable", **info)

    @app.get(
        "/v1/loans/{loan_id}",
        response_model=None,
        tags=["loans"],
        summary="The loan's status (agents get the working view: no audit trail)",
        responses={
            200: {"model": Status | AgentLoanView,  # type: ignore[dict-item]
                  "description": "borrower (own loan) and operator: the contract's status; "
                                 "agent: AgentLoanView, the status without `events`"},
            **_errors(401, 403, 404, 422, 429, 503),
        },
    )
    async def get_loan(
        loan_id: LoanId,
        who: Principal = Depends(loan_access(Role.BORROWER, Role.AGENT, Role.OPERATOR)),
    ) -> JSONResponse:
        status = await gateway.status(loan_id)
        view: Status | AgentLoanView = AgentLoanView.of(status) if who.role is Role.AGENT else status
        return JSONResponse(view.model_dump(mode="json"))

    @app.post(
        "/v1/loans/{loan_id}/payments",
        status_code=202,
        response_model=PaymentAccepted,
        tags=["loans"],
        summary="Report a payment (idempotent by payment_id)",
        responses=_errors(401, 403, 404, 409, 413, 422, 429, 503),
    )
    async def post_payment(
        loan_id: LoanId,
        body: PaymentReceived,
        who: Principal = Depends(loan_access(Role.BORROWER)),
    ) -> PaymentAccepted:
        duplicate = await gateway.pay(loan_id, body)
        return PaymentAccepted(loan_id=loan_id, payment_id=body.payment_id, duplicate=duplicate)

    @app.post(
        "/v1/loans/{loan_id}/payment-plans",
        response_model=PlanDecision,
        tags=["loans"],
        summary="Propose a payment plan; the loan's workflow answers accepted or not",
        responses=_errors(401, 403, 404, 413, 422, 429, 503),
    )
    async def post_plan(
        loan_id: LoanId,
        body: PaymentPlanProposal,
        who: Principal = Depends(loan_access(Role.BORROWER)),
        idempotency_key: str | None = Header(
            default=None, alias="Idempotency-Key", min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$",
            description="Optional: a retry with the same key gets the first answer, never a second plan."),
    ) -> PlanDecision:
        update_id = f"portal-plan:{who.subject}:{idempotency_key}" if idempotency_key else None
        return await gateway.propose_plan(loan_id, body, update_id=update_id)

    @app.post("/v1/loans/{loan_id}/pause", status_code=202, response_model=SignalAccepted,
              tags=["operators"], summary="Operator hold: no contact, no escalation until resume",
              responses=_errors(401, 403, 404, 409, 413, 422, 429, 503))
    async def post_pause(
        loan_id: LoanId, body: Pause, who: Principal = Depends(loan_access(Role.OPERATOR))
    ) -> SignalAccepted:
        await gateway.signal(loan_id, contract.SIGNAL_PAUSE, body)
        return SignalAccepted(loan_id=loan_id, signal=contract.SIGNAL_PAUSE)

    @app.post("/v1/loans/{loan_id}/resume", status_code=202, response_model=SignalAccepted,
              tags=["operators"], summary="End an operator hold (body `{}` or none)",
              responses=_errors(401, 403, 404, 409, 413, 422, 429, 503))
    async def post_resume(
        loan_id: LoanId, body: Resume | None = None,
        who: Principal = Depends(loan_access(Role.OPERATOR)),
    ) -> SignalAccepted:
        await gateway.signal(loan_id, contract.SIGNAL_RESUME, body or Resume())
        return SignalAccepted(loan_id=loan_id, signal=contract.SIGNAL_RESUME)

    @app.post("/v1/loans/{loan_id}/write-off", status_code=202, response_model=SignalAccepted,
              tags=["operators"], summary="Write the loan off (closes it with outcome written_off)",
              responses=_errors(401, 403, 404, 409, 413, 422, 429, 503))
    async def post_write_off(
        loan_id: LoanId, body: WriteOff, who: Principal = Depends(loan_access(Role.OPERATOR))
    ) -> SignalAccepted:
        await gateway.signal(loan_id, contract.SIGNAL_WRITE_OFF, body)
        return SignalAccepted(loan_id=loan_id, signal=contract.SIGNAL_WRITE_OFF)

    @app.get("/v1/tasks", response_model=AgentTaskList, tags=["agents"],
             summary="The calling agent's open tasks across running loans",
             responses=_errors(401, 403, 422, 429, 503))
    async def list_tasks(
        include_unassigned: Annotated[
            bool, Query(description="also list the pool: open tasks nobody holds yet")
        ] = True,
        who: Principal = Depends(principal),
    ) -> AgentTaskList:
        if who.role is not Role.AGENT:
            raise Forbidden("only agents have tasks")
        loan_ids, truncated = await gateway.running_loan_ids(config.task_scan_limit)
        gate = asyncio.Semaphore(16)
        incomplete = False

        async def one(loan_id: str) -> list[AgentTask]:
            nonlocal incomplete
            async with gate:
                try:
                    status = await gateway.status(loan_id)
                except NotFound:
                    return []  # closed or gone between listing and query
                except Unavailable:
                    incomplete = True
                    return []
            return [
                AgentTask(loan_id=loan_id, **task.model_dump())
                for task in status.open_tasks
                if task.assigned_to == who.subject or (include_unassigned and task.assigned_to is None)
            ]

        found = await asyncio.gather(*(one(i) for i in loan_ids))
        tasks = sorted((t for group in found for t in group), key=lambda t: (t.due_by is None, t.due_by, t.task_id))
        return AgentTaskList(tasks=tasks, truncated=truncated or incomplete)

    @app.post("/v1/tasks/{task_id}/outcome", response_model=AgentLoanView, tags=["agents"],
              summary="Record the outcome of a contact task (the agent is the token's subject)",
              responses=_errors(401, 403, 404, 409, 413, 422, 429, 503))
    async def post_outcome(
        task_id: TaskId, body: AgentOutcomeRequest, who: Principal = Depends(principal)
    ) -> AgentLoanView:
        if who.role is not Role.AGENT:
            raise Forbidden("only agents record contact outcomes")
        status = await gateway.status(body.loan_id)
        task = next((t for t in status.open_tasks if t.task_id == task_id), None)
        if task is None:
            raise NotFound(f"task {task_id!r} is not an open task of loan {body.loan_id!r}")
        if task.assigned_to is not None and task.assigned_to != who.subject:
            raise Forbidden(f"task {task_id!r} is assigned to another agent")
        outcome = _contact_outcome(task_id, who.subject, body)
        updated = await gateway.record_outcome(body.loan_id, outcome)
        return AgentLoanView.of(updated)

    return app


def _contact_outcome(task_id: str, agent_id: str, body: AgentOutcomeRequest) -> ContactOutcome:
    data = body.model_dump(exclude={"loan_id"})
    try:
        return ContactOutcome(task_id=task_id, agent_id=agent_id, **data)
    except ValidationError as exc:  # e.g. an agent id longer than the contract's 64 characters
        fields = fields_from_errors(list(exc.errors()), drop_prefix=())
        raise Unprocessable("contact outcome is not valid", fields=fields) from None
