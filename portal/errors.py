"""One error shape for every refusal, and the handlers that guarantee no stack trace leaks.

    {"error": "validation_error", "message": "...", "fields": [{"field": "amount", "reason": "..."}]}

`fields` is present on 422 only.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = logging.getLogger("portal")


class FieldError(BaseModel):
    field: str
    """Dotted path in the body (`amount`, `schedule.0.due_date`), or `body` for the body as a whole."""
    reason: str


class ErrorBody(BaseModel):
    error: str
    """Machine-readable code: unauthorized, forbidden, not_found, validation_error, loan_closed,
    reversal_refused, payment_conflict, payload_too_large, rate_limited, provider_error, unavailable,
    internal_error, ..."""
    message: str
    fields: list[FieldError] | None = None


class PortalError(Exception):
    """A refusal the portal answers as ErrorBody with `status`."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, fields: list[FieldError] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields
        self.headers = headers


class Unauthorized(PortalError):
    status, code = 401, "unauthorized"


class Forbidden(PortalError):
    status, code = 403, "forbidden"


class NotFound(PortalError):
    status, code = 404, "not_found"


class Conflict(PortalError):
    status, code = 409, "loan_closed"


class PaymentConflict(Conflict):
    """A payment_id reused for another payment (the provider's idempotency says so)."""

    code = "payment_conflict"


class CurrencyMismatch(Conflict):
    """A provider's notification in another currency than the loan's."""

    code = "currency_mismatch"


class PayloadTooLarge(PortalError):
    status, code = 413, "payload_too_large"


class Unprocessable(PortalError):
    status, code = 422, "validation_error"


class RateLimited(PortalError):
    status, code = 429, "rate_limited"


class Unavailable(PortalError):
    status, code = 503, "unavailable"


class BadGateway(PortalError):
    """The payment provider refused or did not answer."""

    status, code = 502, "provider_error"


class NotImplementedYet(PortalError):
    """The loan's worker runs an engine that does not know this request yet (a rolling upgrade)."""

    status, code = 501, "not_implemented"


def error_response(status: int, code: str, message: str, fields: list[FieldError] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorBody(error=code, message=message, fields=fields).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status, headers=headers)


def fields_from_errors(
    errors: list[Any], *, drop_prefix: tuple[str, ...] = ("body", "path", "query")
) -> list[FieldError]:
    """pydantic/FastAPI error list -> [{field, reason}], the field as a dotted path inside the body."""
    out: list[FieldError] = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        if loc and loc[0] in drop_prefix:
            loc = loc[1:]
        # A discriminated union's tag ("payment.succeeded") sits in the path; it is no field name.
        loc = [p for p in loc if "." not in p]
        kind = err.get("type", "")
        if kind in ("union_tag_invalid", "union_tag_not_found"):
            loc.append(str(err.get("ctx", {}).get("discriminator", "type")).strip("'\""))
        msg = str(err.get("msg", "invalid"))
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if kind == "extra_forbidden":
            msg = "unknown field; the contract's bodies accept only the fields they name"
        elif kind == "json_invalid":
            msg = f"body is not valid JSON: {err.get('ctx', {}).get('error', msg)}"
            loc = []
        elif kind == "missing" and not loc:
            msg = "a JSON body is required"
        elif not loc and kind in ("model_attributes_type", "dict_type", "model_type"):
            msg = "the body must be a JSON object, sent with Content-Type: application/json"
        out.append(FieldError(field=".".join(loc) or "body", reason=msg))
    return out


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app takes on the request's path."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        route_methods = getattr(route, "methods", None)
        if route_methods and route.matches(request.scope)[0] != Match.NONE:
            methods |= set(route_methods)
    return sorted(methods)


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(PortalError)
    async def _portal_error(_: Request, exc: PortalError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.fields, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _request_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = fields_from_errors(list(exc.errors()))
        summary = "; ".join(f"{f.field}: {f.reason}" for f in fields[:5])
        return error_response(422, "validation_error", f"request is not valid: {summary}", fields)

    @app.exception_handler(ValidationError)
    async def _model_validation(_: Request, exc: ValidationError) -> JSONResponse:
        fields = fields_from_errors(list(exc.errors()), drop_prefix=())
        summary = "; ".join(f"{f.field}: {f.reason}" for f in fields[:5])
        return error_response(422, "validation_error", f"request is not valid: {summary}", fields)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 403: "forbidden"}
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 400 and message == "There was an error parsing the body":
            # FastAPI's answer to a body that is not even text (not UTF-8): malformed, like bad JSON.
            reason = "body is not valid JSON: it is not UTF-8 text"
            return error_response(422, "validation_error", f"request is not valid: {reason}",
                                  [FieldError(field="body", reason=reason)])
        if exc.status_code == 404 and message == "Not Found":
            message = "no such endpoint"
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            # Starlette names the methods of the first route on the path only; a path with a route per
            # method (GET and POST /v1/unsubscribe/{token}) allows them all.
            headers = (headers or {}) | {"Allow": ", ".join(allowed_methods(request))}
        return error_response(exc.status_code, codes.get(exc.status_code, "http_error"), message, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal error; the request may be retried")
