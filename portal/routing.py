"""What the portal's route modules share: path and header parameters, the documented refusals, and
the access checks `create_app` builds (`Doors`), so that each group of routes lives in its own module."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Header, Path

from domain.models import Status

from .auth import Principal, Role
from .errors import ErrorBody
from .payments.notifications import LOAN_ID_PATTERN

LoanId = Annotated[
    str, Path(min_length=1, max_length=64, pattern=LOAN_ID_PATTERN, description="the loan's loan_id")
]
TaskId = Annotated[str, Path(min_length=1, max_length=128, description="an open task's task_id")]
BorrowerId = Annotated[str, Path(min_length=1, max_length=64, description="the borrower's borrower_id")]
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$",
    description="Optional: a retry with the same key gets the first answer and changes nothing more.")]

ERROR_TEXTS = {
    401: "no token, or a bad or expired one (a notification: no, a bad or a stale signature)",
    403: "the token's role or subject may not do this on this loan (or borrower)",
    404: "no such loan, task or borrower (a borrower without an open loan has no entity)",
    409: "the loan is closed; or the request conflicts with what the loan or the provider has",
    413: "request body too large",
    422: "malformed request: `fields` names each field and the reason",
    429: "rate limit for this token exceeded (see Retry-After)",
    501: "the loan's worker runs an older engine that does not handle this request yet",
    502: "the payment provider refused or did not answer",
    503: "Temporal, the loan's worker or the staff key set did not answer (see Retry-After)",
}


def error_responses(*codes: int, **texts: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` of these refusals (ErrorBody); `texts` (`e409="..."`) words one for a route."""
    return {c: {"model": ErrorBody, "description": texts.get(f"e{c}", ERROR_TEXTS[c])} for c in codes}


@dataclass(frozen=True)
class Access:
    """Who asks, and the loan's status when checking their access needed it (an agency's placement)."""

    who: Principal
    status: Status | None = None


@dataclass(frozen=True)
class Doors:
    """The access checks of `create_app`, for the route modules: `principal` (the verified token),
    `loan_access(*roles)` (role, the borrower's own loan, an agency's placement) and `agency_status`."""

    principal: Callable[..., Principal]
    loan_access: Callable[..., Callable[..., Awaitable[Access]]]
    agency_status: Callable[[str, Principal], Awaitable[Status]]

    @staticmethod
    def operator_id(who: Principal) -> str | None:
        """The operator's id for a lever's body: the token's subject, for an operator only."""
        return who.subject if who.role is Role.OPERATOR else None
