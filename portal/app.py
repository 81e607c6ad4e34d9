"""The FastAPI application: `create_app(settings, client=None, config=None, provider=None)`.

Order of checks on every /v1 request (each refusal changes nothing):
rate limit (429) -> body size (413) -> bearer token, or a payment notification's signature (401), or
an opt-out link's signed token (404, portal.unsubscribe) ->
JSON syntax (422) -> role, loan ownership or placement (403, 404) -> body against the contract's
model (422) -> one Temporal call (or the payment provider, for a borrower's payment).
"""

from __future__ import annotations

import asyncio
import html
import logging
import secrets
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Header, Query, Request, Security
from fastapi.responses import HTMLResponse, JSONResponse
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

from .auth import Authenticator, AuthError, AuthUnavailable, Principal, Role
from .config import PortalConfig, PortalConfigError, require_jwt_secret
from .errors import (
    BadGateway,
    Conflict,
    CurrencyMismatch,
    Forbidden,
    NotFound,
    PaymentConflict,
    Unavailable,
    Unprocessable,
    error_response,
    fields_from_errors,
    install_handlers,
)
from .gateway import SIGNAL_PAYMENT_REVERSED, LoanGateway
from .limits import BodySizeLimitMiddleware, RateLimitMiddleware, Scope, TokenBucket, header, read_body, replaying
from .payments import (
    NOTIFICATION_PATH,
    LocalPaymentProvider,
    PaymentOrder,
    PaymentProvider,
    PaymentProviderError,
    PaymentReversedNotification,
    PaymentSucceededNotification,
    SignatureError,
    check_signature,
)
from .payments.notifications import SIGNATURE_HEADER, TIMESTAMP_HEADER
from .payments.providers import CHECKOUT_PATH
from .payments.stripe import SIGNATURE_HEADER as STRIPE_SIGNATURE_HEADER
from .payments.stripe import STRIPE_PATH, StripeProvider, verify_signature
from .schemas import (
    PORTAL_PAYMENT_PREFIX,
    AgentLoanView,
    AgentOutcomeRequest,
    AgentTask,
    AgentTaskList,
    Health,
    NotificationAnswer,
    PauseRequest,
    PaymentPending,
    PaymentRequest,
    PaymentReversalRequest,
    ResumeRequest,
    SignalAccepted,
    WriteOffRequest,
)
from .borrowers import install_borrower_routes
from .routing import Access, Doors, IdempotencyKey, LoanId, TaskId
from .routing import error_responses as _errors
from .staff import StaffConfigError, StaffVerifier
from .unsubscribe import UNSUBSCRIBE_PREFIX, install_unsubscribe, opt_out_links

log = logging.getLogger("portal")

PRINCIPAL_KEY = "portal.principal"
UNAUTHENTICATED_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
SIGNED_PATHS = frozenset({NOTIFICATION_PATH, STRIPE_PATH})
"""Payment providers' notifications: authenticated by their signature, not by a bearer token."""
LINK_PREFIXES = (UNSUBSCRIBE_PREFIX,)
"""Signed links in messages (the opt-out link): the token in the path is the credential."""

_bearer = HTTPBearer(auto_error=False, description=(
    "Borrowers: HS256 JWT signed with PORTAL_JWT_SECRET. Staff (agent, agency, operator): RS256/ES256 "
    "JWT from the staff identity provider (PORTAL_STAFF_JWKS, _ISSUER, _AUDIENCE)."))


def _header(scope: Scope, name: bytes) -> str | None:
    raw = header(scope, name)
    return raw.decode("latin-1") if raw is not None else None


class AuthMiddleware:
    """Verifies the bearer token of /v1 requests before the body is read; 401 otherwise.

    Payment notifications carry no bearer token: SignatureMiddleware checks them instead; nor does an
    opt-out link, whose path carries its signed token."""

    def __init__(self, app: Any, authenticator: Authenticator) -> None:
        self.app = app
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if (scope["type"] != "http" or not path.startswith("/v1/") or path in SIGNED_PATHS
                or path.startswith(LINK_PREFIXES)):
            await self.app(scope, receive, send)
            return
        header = _header(scope, b"authorization")
        try:
            if not header:
                raise AuthError("missing Authorization: Bearer <token> header")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthError("Authorization header must be 'Bearer <token>'")
            scope[PRINCIPAL_KEY] = await self.authenticator.averify(token.strip())
        except AuthError as exc:
            response = error_response(
                401, "unauthorized", exc.reason,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
            await response(scope, receive, send)
            return
        except AuthUnavailable as exc:
            log.error("staff token not verified: %s", exc)
            await error_response(503, "unavailable", "the staff key set could not be read; retry later",
                                 headers={"Retry-After": "5"})(scope, receive, send)
            return

        async def no_store(message: Any) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [(b"cache-control", b"no-store")]
            await send(message)

        await self.app(scope, receive, no_store)


class SignatureMiddleware:
    """Checks a payment notification's signature over the raw body before anything parses it: a
    missing, malformed, stale or wrong signature is 401 and nothing changes."""

    def __init__(self, app: Any, checks: dict[str, Callable[[Scope, bytes], None]]) -> None:
        self.app = app
        self.checks = checks

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        check = self.checks.get(scope.get("path", "")) if scope["type"] == "http" else None
        if check is None or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)  # the body-size middleware in front has already capped it
        if body is None:
            return
        try:
            check(scope, body)
        except SignatureError as exc:
            log.warning("payment notification refused (%s) from %s", exc.reason, (scope.get("client") or ("?",))[0])
            await error_response(401, "unauthorized", exc.reason)(scope, receive, send)
            return
        await self.app(scope, replaying(body, receive), send)


def _webhook_secret(config: PortalConfig) -> bytes:
    if config.payments_webhook_secret is not None:
        return config.payments_webhook_secret.get_secret_value().encode("utf-8")
    log.warning("PAYMENTS_WEBHOOK_SECRET is not set: the local payment provider signs its notifications with "
                "a key made for this process (dev only; a provider outside this process needs the variable)")
    return secrets.token_bytes(32)


def build_provider(settings: Settings, config: PortalConfig, webhook_secret: bytes) -> PaymentProvider:
    """The configured payment provider (PAYMENTS_PROVIDER)."""
    if config.payments_provider == "stripe":
        assert config.stripe_secret_key is not None and config.stripe_webhook_secret is not None
        return StripeProvider(config.stripe_secret_key.get_secret_value(),
                              config.stripe_webhook_secret.get_secret_value(), api_base=config.stripe_api_base)
    log.warning("payments: the local provider (DEV ONLY) confirms payments without taking any money; set "
                "PAYMENTS_PROVIDER for a real one")
    public = config.public_url or f"http://localhost:{settings.portal_port}"
    notify = config.payments_local_notify_url or f"http://127.0.0.1:{settings.portal_port}{NOTIFICATION_PATH}"
    return LocalPaymentProvider(webhook_secret, public_url=public, notify_url=notify,
                                auto_confirm_seconds=config.auto_confirm_seconds)


def create_app(
    settings: Settings | None = None,
    client: Client | None = None,
    config: PortalConfig | None = None,
    provider: PaymentProvider | None = None,
) -> FastAPI:
    """The portal app. `client` (tests) replaces the connection runtime.client.connect would make;
    `provider` (tests) replaces the one PAYMENTS_PROVIDER names."""
    settings = settings or Settings.from_env()
    config = config or PortalConfig.from_env()
    secret = require_jwt_secret(settings.portal_jwt_secret)
    try:
        staff = StaffVerifier(config.staff_jwks, config.staff_issuer or "", config.staff_audience or "") \
            if config.staff_jwks else None
    except StaffConfigError as exc:
        raise PortalConfigError(str(exc)) from None
    if staff is None:
        log.info("PORTAL_STAFF_JWKS is not set: borrower tokens only, every staff token is refused")
    authenticator = Authenticator(secret, staff)
    webhook_secret = _webhook_secret(config)
    provider = provider or build_provider(settings, config, webhook_secret)

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
        await provider.aclose()

    app = FastAPI(
        title="Collections engine: borrower, agent and operator gateway",
        version="2.0.0",
        description=(
            "Borrower portals, agent desks, placed agencies and operators' tools talk to the loans' "
            "Temporal workflows through this API; payment providers confirm payments to it. Every /v1 "
            "request but a payment notification and an opt-out link carries `Authorization: Bearer <JWT>`: a borrower's "
            "(HS256, PORTAL_JWT_SECRET) or a staff member's (RS256/ES256 from the staff identity "
            "provider). Payment notifications are signed (X-Timestamp, X-Signature); an opt-out link's path "
            "carries its signed token. Money is a "
            "decimal string; every body field is taken exactly as this document types it."
        ),
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.gateway = gateway
    app.state.portal_config = config
    app.state.payment_provider = provider
    install_handlers(app)

    def check_ours(scope: Scope, body: bytes) -> None:
        check_signature(webhook_secret, _header(scope, b"x-timestamp"), _header(scope, b"x-signature"), body)

    checks: dict[str, Callable[[Scope, bytes], None]] = {NOTIFICATION_PATH: check_ours}
    if isinstance(provider, StripeProvider):
        stripe = provider

        def check_stripe(scope: Scope, body: bytes) -> None:
            verify_signature(stripe.webhook_secret, _header(scope, b"stripe-signature"), body)

        checks[STRIPE_PATH] = check_stripe

    # Outermost first: rate limit, then body cap, then a notification's signature, then the token.
    app.add_middleware(AuthMiddleware, authenticator=authenticator)
    app.add_middleware(SignatureMiddleware, checks=checks)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=config.max_body_bytes)
    app.add_middleware(
        RateLimitMiddleware,
        bucket=TokenBucket(config.rate_per_second, config.rate_burst),
        exempt_paths=UNAUTHENTICATED_PATHS | SIGNED_PATHS,
        path_keyed=LINK_PREFIXES,
    )

    # -- dependencies ------------------------------------------------------------------------

    def principal(
        request: Request, _creds: HTTPAuthorizationCredentials | None = Security(_bearer)
    ) -> Principal:
        found = request.scope.get(PRINCIPAL_KEY)
        if found is None:  # unreachable behind AuthMiddleware; defensive
            raise Forbidden("no authenticated principal")
        return found

    async def agency_status(loan_id: str, who: Principal) -> Status:
        """The loan's status, if it is placed with the caller's agency; 403 otherwise."""
        status = await gateway.status(loan_id)
        if status.agency is None or status.agency.agency_id != who.agency_id:
            raise Forbidden("this loan is not placed with your agency")
        return status

    def loan_access(*roles: Role) -> Callable[..., Awaitable[Access]]:
        async def check(loan_id: LoanId, who: Principal = Depends(principal)) -> Access:
            if who.role not in roles:
                raise Forbidden(f"role {who.role.value!r} may not do this")
            if who.role is Role.BORROWER:
                owner = await gateway.borrower_id(loan_id)
                if owner != who.subject:
                    raise Forbidden("this loan belongs to another borrower")
            if who.role is Role.AGENCY:
                return Access(who, await agency_status(loan_id, who))
            return Access(who)

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
        summary="The loan's status (agents and agencies get the working view: no audit trail)",
        responses={
            200: {"model": Status | AgentLoanView,  # type: ignore[dict-item]
                  "description": "borrower (own loan) and operator: the contract's status; agent (any "
                                 "loan) and agency (a loan placed with it): AgentLoanView, without `events`"},
            **_errors(401, 403, 404, 422, 429, 503),
        },
    )
    async def get_loan(
        loan_id: LoanId,
        access: Access = Depends(loan_access(Role.BORROWER, Role.AGENT, Role.AGENCY, Role.OPERATOR)),
    ) -> JSONResponse:
        status = access.status or await gateway.status(loan_id)
        working = access.who.role in (Role.AGENT, Role.AGENCY)
        view: Status | AgentLoanView = AgentLoanView.of(status) if working else status
        return JSONResponse(view.model_dump(mode="json"))

    @app.post(
        "/v1/loans/{loan_id}/payments",
        status_code=202,
        response_model=PaymentPending,
        response_model_exclude_none=True,
        tags=["loans"],
        summary="Start a payment with the payment provider; the loan is credited when the provider confirms",
        responses=_errors(401, 403, 404, 409, 413, 422, 429, 502, 503),
    )
    async def post_payment(
        loan_id: LoanId,
        body: PaymentRequest,
        access: Access = Depends(loan_access(Role.BORROWER)),
    ) -> PaymentPending:
        currency = await gateway.currency(loan_id)
        if not await gateway.is_open(loan_id):
            raise Conflict(f"loan {loan_id!r} is closed; no payment was started")
        order = PaymentOrder(loan_id=loan_id, payment_id=PORTAL_PAYMENT_PREFIX + body.payment_id,
                             amount=body.amount, currency=currency, borrower_id=access.who.subject)
        try:
            pending = await provider.start(order)
        except PaymentProviderError as exc:
            if exc.conflict:
                raise PaymentConflict(f"payment_id {body.payment_id!r} was already used for another payment: "
                                      f"{exc.message}") from None
            log.error("payment provider %s: %s", provider.name, exc.message)
            raise BadGateway(f"the payment provider did not start the payment: {exc.message}") from None
        log.info("payment %s of %s %s started with %s for loan %s", order.payment_id, body.amount, currency,
                 provider.name, loan_id)
        return PaymentPending(loan_id=loan_id, payment_id=pending.payment_id, provider=provider.name,
                              redirect_url=pending.redirect_url, client_secret=pending.client_secret)

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
        idempotency_key: IdempotencyKey = None,
        access: Access = Depends(loan_access(Role.BORROWER)),
    ) -> PlanDecision:
        update_id = f"portal-plan:{access.who.subject}:{idempotency_key}" if idempotency_key else None
        return await gateway.propose_plan(loan_id, body, update_id=update_id)

    async def lever(loan_id: str, name: str, body: Any) -> SignalAccepted:
        await gateway.signal(loan_id, name, body)
        log.info("operator %s: %s on loan %s", body.operator_id, name, loan_id)
        return SignalAccepted(loan_id=loan_id, signal=name)

    @app.post("/v1/loans/{loan_id}/pause", status_code=202, response_model=SignalAccepted,
              tags=["operators"], summary="Operator hold: no contact, no escalation until resume "
                                          "(the operator is the token's subject)",
              responses=_errors(401, 403, 404, 409, 413, 422, 429, 503))
    async def post_pause(
        loan_id: LoanId, body: PauseRequest, access: Access = Depends(loan_access(Role.OPERATOR))
    ) -> SignalAccepted:
        return await lever(loan_id, contract.SIGNAL_PAUSE, Pause(reason=body.reason, operator_id=access.who.subject))

    @app.post("/v1/loans/{loan_id}/resume", status_code=202, response_model=SignalAccepted,
              tags=["operators"], summary="End an operator hold (body `{}` or none)",
              responses=_errors(401, 403, 404, 409, 413, 422, 429, 503))
    async def post_resume(
        loan_id: LoanId, body: ResumeRequest | None = None,
        access: Access = Depends(loan_access(Role.OPERATOR)),
    ) -> SignalAccepted:
        return await lever(loan_id, contract.SIGNAL_RESUME, Resume(operator_id=access.who.subject))

    @app.post("/v1/loans/{loan_id}/write-off", status_code=202, response_model=SignalAccepted,
              tags=["operators"], summary="Write the loan off (closes it with outcome written_off)",
              responses=_errors(401, 403, 404, 409, 413, 422, 429, 503))
    async def post_write_off(
        loan_id: LoanId, body: WriteOffRequest, access: Access = Depends(loan_access(Role.OPERATOR))
    ) -> SignalAccepted:
        return await lever(loan_id, contract.SIGNAL_WRITE_OFF,
                           WriteOff(reason=body.reason, operator_id=access.who.subject))

    @app.post("/v1/loans/{loan_id}/payment-reversals", response_model=Status, tags=["operators"],
              summary="Reverse an applied payment (returned, charged back); answers the loan's status",
              responses=_errors(401, 403, 404, 409, 413, 422, 429, 501, 503))
    async def post_reversal(
        loan_id: LoanId, body: PaymentReversalRequest, idempotency_key: IdempotencyKey = None,
        access: Access = Depends(loan_access(Role.OPERATOR)),
    ) -> JSONResponse:
        update = {"payment_id": body.payment_id, "reason": body.reason, "operator_id": access.who.subject}
        update_id = f"portal-reversal:{access.who.subject}:{idempotency_key}" if idempotency_key else None
        status = await gateway.reverse_payment(loan_id, update, update_id=update_id)
        log.info("operator %s: reversal of %s on loan %s", access.who.subject, body.payment_id, loan_id)
        return JSONResponse(status.model_dump(mode="json"))

    @app.get("/v1/tasks", response_model=AgentTaskList, tags=["agents"],
             summary="The calling agent's open tasks across running loans",
             responses=_errors(401, 403, 422, 429, 503))
    async def list_tasks(
        include_unassigned: Annotated[
            bool, Query(description="also list the pool: open tasks nobody holds yet")
        ] = True,
        who: Principal = Depends(principal),
    ) -> AgentTaskList:
        if who.role is Role.AGENT:
            holder = who.subject
        elif who.role is Role.AGENCY and who.agency_id:
            holder, include_unassigned = who.agency_id, False  # an agency's queue: the loans placed with it
        else:
            raise Forbidden("only agents and agencies have tasks")
        # One visibility query, every page: the loans write their open tasks into search attributes
        # (domain/queue.py), so no loan is read and no cap truncates the queue.
        found = await gateway.queue(holder, include_unassigned)
        tasks = sorted((AgentTask(loan_id=loan_id, **task.model_dump()) for loan_id, task in found),
                       key=lambda t: (t.due_by is None, t.due_by, t.task_id))
        return AgentTaskList(tasks=tasks, truncated=False)

    @app.post("/v1/tasks/{task_id}/outcome", response_model=AgentLoanView, tags=["agents"],
              summary="Record the outcome of a contact task (the agent is the token's subject; agency "
                      "staff only on loans placed with their agency)",
              responses=_errors(401, 403, 404, 409, 413, 422, 429, 503))
    async def post_outcome(
        task_id: TaskId, body: AgentOutcomeRequest, who: Principal = Depends(principal)
    ) -> AgentLoanView:
        if who.role not in (Role.AGENT, Role.AGENCY):
            raise Forbidden("only agents and placed agencies record contact outcomes")
        if who.role is Role.AGENCY:
            status = await agency_status(body.loan_id, who)
            agent_id = f"{who.agency_id}/{who.subject}"
        else:
            status = await gateway.status(body.loan_id)
            agent_id = who.subject
        task = next((t for t in status.open_tasks if t.task_id == task_id), None)
        if task is None:
            raise NotFound(f"task {task_id!r} is not an open task of loan {body.loan_id!r}")
        if task.assigned_to is not None and task.assigned_to != agent_id:
            raise Forbidden(f"task {task_id!r} is assigned to another agent")
        outcome = _contact_outcome(task_id, agent_id, body)
        updated = await gateway.record_outcome(body.loan_id, outcome)
        return AgentLoanView.of(updated)

    # -- the borrower entity, disputes, contact requests, opt-out links (contract v2) -------------

    install_borrower_routes(app, gateway, Doors(principal, loan_access, agency_status))
    install_unsubscribe(app, gateway, *opt_out_links(settings))

    # -- payment providers ---------------------------------------------------------------------

    async def take(notification: PaymentSucceededNotification | PaymentReversedNotification) -> NotificationAnswer:
        loan_id = notification.loan_id
        currency = await gateway.currency(loan_id)
        if notification.currency != currency:
            log.error("payment notification %s for loan %s is in %s, the loan is in %s: not credited",
                      notification.notification_id, loan_id, notification.currency, currency)
            raise CurrencyMismatch(f"loan {loan_id!r} is in {currency}, the notification in {notification.currency}: "
                                   "not credited (the bank reconciles it)")
        if isinstance(notification, PaymentSucceededNotification):
            payment = PaymentReceived(payment_id=notification.payment_id, amount=notification.amount,
                                      paid_at=notification.paid_at)
            duplicate = await gateway.credit(loan_id, payment)
            signal = contract.SIGNAL_PAYMENT_RECEIVED
        else:
            duplicate = await gateway.reverse(loan_id, notification.payment_id, notification.reason)
            signal = SIGNAL_PAYMENT_REVERSED
        log.info("%s %s from %s: %s %s on loan %s (%s)%s", notification.type, notification.payment_id,
                 notification.provider, notification.amount, notification.currency, loan_id,
                 notification.notification_id, " (already taken)" if duplicate else "")
        return NotificationAnswer(notification_id=notification.notification_id, loan_id=loan_id,
                                  payment_id=notification.payment_id, signal=signal, duplicate=duplicate)

    @app.post(
        NOTIFICATION_PATH, response_model=NotificationAnswer, tags=["payment providers"],
        summary="A payment provider confirms (payment.succeeded) or reverses (payment.reversed) a payment",
        description=(
            f"Signed, not bearer-authenticated: `{TIMESTAMP_HEADER}` is Unix seconds within 300 s of the "
            f"portal's clock, `{SIGNATURE_HEADER}` the hex HMAC-SHA256, keyed with PAYMENTS_WEBHOOK_SECRET, "
            "of the timestamp, a `.`, and the raw body. Idempotent by `payment_id`: the loan credits (or "
            "reverses) a payment once, whichever replica of the portal gets the notification, however often."),
        responses=_errors(401, 404, 409, 413, 422, 503),
    )
    async def post_notification(
        body: Annotated[PaymentSucceededNotification | PaymentReversedNotification, Body(discriminator="type")],
        x_timestamp: Annotated[str, Header(alias=TIMESTAMP_HEADER, pattern=r"^[0-9]{1,12}$",
                                           description="Unix seconds when the provider signed")],
        x_signature: Annotated[str, Header(alias=SIGNATURE_HEADER, pattern=r"^[0-9a-fA-F]{64}$",
                                           description="hex HMAC-SHA256 of '<X-Timestamp>.<raw body>'")],
    ) -> NotificationAnswer:
        return await take(body)

    if isinstance(provider, StripeProvider):
        stripe_provider = provider

        @app.post(
            STRIPE_PATH, response_model=NotificationAnswer, tags=["payment providers"],
            summary="Stripe's webhook: its events, verified by Stripe-Signature, taken as our notifications",
            responses=_errors(401, 404, 409, 413, 422, 502, 503),
        )
        async def post_stripe_event(
            event: Annotated[dict[str, Any], Body(description="a Stripe event object")],
            stripe_signature: Annotated[str, Header(alias=STRIPE_SIGNATURE_HEADER,
                                                    description="t=<unix>,v1=<hex HMAC-SHA256>")],
        ) -> NotificationAnswer:
            try:
                translated = await stripe_provider.translate(event)
            except PaymentProviderError as exc:
                raise BadGateway(f"the Stripe event could not be taken: {exc.message}") from None
            if translated.notification is None:
                return NotificationAnswer(notification_id=str(event.get("id") or ""), ignored=translated.ignored)
            return await take(translated.notification)

    if isinstance(provider, LocalPaymentProvider):
        install_local_checkout(app, provider)

    return app


# -- the local provider's checkout page (DEV ONLY; not part of the API document) ---------------------

_CHECKOUT_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Local checkout (dev only)</title></head>
<body><h1>Local checkout</h1><p><b>Development payment provider: no money is taken.</b></p>{content}</body></html>"""


def install_local_checkout(app: FastAPI, provider: LocalPaymentProvider) -> None:
    """GET the link: a page with the order and a Pay button; POST it: the provider confirms the payment
    through the signed notification (JSON answer for `Accept: application/json`)."""

    def page(content: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(_CHECKOUT_PAGE.format(content=content), status_code=status,
                            headers={"Cache-Control": "no-store"})

    @app.get(CHECKOUT_PATH + "/{token}", include_in_schema=False)
    async def checkout(token: str) -> HTMLResponse:
        order = provider.order_of(token)
        if order is None:
            return page("<p>This payment link is not valid or has expired.</p>", 404)
        return page(f"<p>Loan {html.escape(order.loan_id)}: pay <b>{order.amount:.2f} {html.escape(order.currency)}</b> "
                    f"(payment {html.escape(order.payment_id)}).</p><form method=\"post\"><button type=\"submit\">"
                    "Pay</button></form>")

    @app.post(CHECKOUT_PATH + "/{token}", include_in_schema=False)
    async def pay(token: str, request: Request) -> Any:
        wants_json = "application/json" in request.headers.get("accept", "")
        order = provider.order_of(token)
        if order is None:
            if wants_json:
                return error_response(404, "not_found", "this payment link is not valid or has expired")
            return page("<p>This payment link is not valid or has expired.</p>", 404)
        try:
            answer = await provider.confirm(order)
        except PaymentProviderError as exc:
            if wants_json:
                return error_response(502, "provider_error", exc.message)
            return page(f"<p>The payment could not be confirmed: {html.escape(exc.message)}</p>", 502)
        confirmed = answer.status_code < 300
        if wants_json:
            try:
                portal_answer = answer.json()
            except ValueError:
                portal_answer = answer.text[:300]
            body = {"payment_id": order.payment_id, "loan_id": order.loan_id,
                    "status": "confirmed" if confirmed else "refused", "portal_answer": portal_answer}
            return JSONResponse(body, status_code=200 if confirmed else answer.status_code)
        if confirmed:
            return page(f"<p>Paid {order.amount:.2f} {html.escape(order.currency)}. Loan "
                        f"{html.escape(order.loan_id)} shows it in a moment.</p>")
        return page(f"<p>The portal refused the payment ({answer.status_code}): "
                    f"{html.escape(answer.text[:300])}</p>", answer.status_code)


def _contact_outcome(task_id: str, agent_id: str, body: AgentOutcomeRequest) -> ContactOutcome:
    data = body.model_dump(exclude={"loan_id"})
    try:
        return ContactOutcome(task_id=task_id, agent_id=agent_id, **data)
    except ValidationError as exc:  # e.g. an agent id longer than the contract's 64 characters
        fields = fields_from_errors(list(exc.errors()), drop_prefix=())
        raise Unprocessable("contact outcome is not valid", fields=fields) from None
