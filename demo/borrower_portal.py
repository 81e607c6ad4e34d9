"""The demo's borrowers at the borrower portal: the contract's HTTP API, as a borrower's app calls it.

Every request carries the borrower's own bearer token (HS256 JWT, `sub` = borrower_id, minted with
the portal's secret as the bank's app backend would, and renewed before it expires):

- `GET  /v1/loans/{loan_id}`                 the loan's status
- `POST /v1/loans/{loan_id}/payments`        a payment, idempotent by `payment_id`
- `POST /v1/loans/{loan_id}/payment-plans`   a payment plan; the loan's workflow answers

Retries, as a careful app makes them: a timeout, a dropped connection, 429 (rate limited) and 503
(Temporal or the worker busy) are retried with a short back-off. A payment retry is safe (the
workflow applies a payment_id once; the portal says `duplicate: true` when it knows). A plan is
not idempotent by itself, so after a retry the loan's status decides: a plan the first attempt
got accepted shows up as a new running plan, and is taken as the answer.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

from domain.models import LoanState, PaymentPlanProposal, PlanDecision, Status
from portal.auth import mint_token

RETRY_STATUSES = frozenset({429, 502, 503, 504})
TOKEN_TTL_SECONDS = 3600
TOKEN_RENEW_BEFORE_SECONDS = 120
MAX_BACKOFF_SECONDS = 2.0
"""Retry-After is honoured up to this (the demo's days are compressed; a borrower tries again soon)."""


class PortalRefused(Exception):
    """The portal answered with a refusal (4xx, or 5xx after the retries): status and error body."""

    def __init__(self, status_code: int, error: str, message: str, fields: list[dict[str, Any]] | None = None) -> None:
        super().__init__(f"{status_code} {error}: {message}")
        self.status_code = status_code
        self.error = error
        self.message = message
        self.fields = fields or []


class PortalUnreachable(Exception):
    """No answer from the portal after the retries (connection refused, timeouts)."""


@dataclass(frozen=True)
class PaymentReceipt:
    loan_id: str
    payment_id: str
    duplicate: bool


def plans_so_far(status: Status) -> int:
    """The number of the loan's last accepted plan (0: none yet), from its audit trail."""
    numbers = [int(e.details.get("plan_number") or 0) for e in status.events if e.kind == "plan_accepted"]
    if status.plan is not None:
        numbers.append(status.plan.plan_number)
    return max(numbers, default=0)


class BorrowerPortal:
    """An HTTP client of the portal acting for any of the demo's borrowers (each with its own token)."""

    def __init__(self, base_url: str, jwt_secret: str, *, timeout: float = 15.0, attempts: int = 5) -> None:
        self.base_url = base_url.rstrip("/")
        self._secret = jwt_secret
        self._attempts = attempts
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout,
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
        )
        self._tokens: dict[str, tuple[str, float]] = {}
        self.answers: Counter[str] = Counter()
        """Answers by "METHOD route status" (e.g. "POST payments 202"), retries included."""
        self.retries = 0

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> BorrowerPortal:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def token(self, borrower_id: str) -> str:
        """The borrower's bearer token, renewed shortly before it expires."""
        cached = self._tokens.get(borrower_id)
        now = time.time()
        if cached is None or cached[1] - now < TOKEN_RENEW_BEFORE_SECONDS:
            cached = (mint_token(self._secret, borrower_id, "borrower", TOKEN_TTL_SECONDS), now + TOKEN_TTL_SECONDS)
            self._tokens[borrower_id] = cached
        return cached[0]

    async def _request(self, method: str, route: str, path: str, borrower_id: str,
                       body: dict[str, Any] | None = None, attempts: int | None = None) -> httpx.Response:
        """One request with retries on transport errors, 429 and 5xx; the last answer otherwise."""
        attempts = attempts or self._attempts
        last_error: Exception | None = None
        response: httpx.Response | None = None
        for attempt in range(1, attempts + 1):
            headers = {"Authorization": f"Bearer {self.token(borrower_id)}"}
            try:
                response = await self._http.request(method, path, json=body, headers=headers)
            except httpx.TransportError as exc:  # connect error, read timeout, dropped connection
                last_error = exc
                self.answers[f"{method} {route} {type(exc).__name__}"] += 1
            else:
                self.answers[f"{method} {route} {response.status_code}"] += 1
                if response.status_code not in RETRY_STATUSES or attempt == attempts:
                    return response
                last_error = None
            if attempt == attempts:
                break
            self.retries += 1
            await asyncio.sleep(self._backoff(attempt, None if last_error else response))
        raise PortalUnreachable(f"{method} {path}: no answer after {attempts} attempt(s): {last_error!r}")

    @staticmethod
    def _backoff(attempt: int, response: httpx.Response | None) -> float:
        wait = 0.25 * 2 ** (attempt - 1)
        if response is not None:
            try:
                wait = max(wait, float(response.headers.get("retry-after", "0")))
            except ValueError:
                pass
        return min(wait, MAX_BACKOFF_SECONDS)

    @staticmethod
    def _refusal(response: httpx.Response) -> PortalRefused:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        return PortalRefused(response.status_code, str(body.get("error") or "error"),
                             str(body.get("message") or response.text[:200]), body.get("fields"))

    # -- the contract's three requests ----------------------------------------------------------

    async def status(self, loan_id: str, borrower_id: str) -> Status:
        response = await self._request("GET", "status", f"/v1/loans/{loan_id}", borrower_id)
        if response.status_code != 200:
            raise self._refusal(response)
        return Status.model_validate(response.json())

    async def pay(self, loan_id: str, borrower_id: str, payment_id: str, amount: Decimal) -> PaymentReceipt:
        """202: the loan's workflow has the payment (applied once per payment_id)."""
        body = {"payment_id": payment_id, "amount": f"{amount:.2f}"}
        response = await self._request("POST", "payments", f"/v1/loans/{loan_id}/payments", borrower_id, body)
        if response.status_code != 202:
            raise self._refusal(response)
        data = response.json()
        return PaymentReceipt(loan_id=loan_id, payment_id=payment_id, duplicate=bool(data.get("duplicate")))

    async def propose_plan(self, loan_id: str, borrower_id: str, proposal: PaymentPlanProposal,
                           *, plans_before: int) -> PlanDecision:
        """The workflow's decision. `plans_before`: the loan's last plan number before this proposal,
        so that a retry whose first attempt was accepted is recognised (see the module's docstring)."""
        body = proposal.model_dump(mode="json")
        path = f"/v1/loans/{loan_id}/payment-plans"
        for attempt in range(1, self._attempts + 1):
            retried = attempt > 1
            try:
                # One attempt at a time: whether to send it again depends on the loan's status.
                response = await self._request("POST", "payment-plans", path, borrower_id, body, attempts=1)
            except PortalUnreachable:
                if attempt == self._attempts:
                    raise
                response = None
            if response is not None and response.status_code == 200:
                decision = PlanDecision.model_validate(response.json())
                if decision.accepted or not retried:
                    return decision
                # Refused on a retry: perhaps because the first attempt's plan is now running.
                accepted = await self._accepted_meanwhile(loan_id, borrower_id, plans_before)
                return accepted or decision
            if response is not None and response.status_code not in RETRY_STATUSES:
                if retried and (accepted := await self._accepted_meanwhile(loan_id, borrower_id, plans_before)):
                    return accepted
                raise self._refusal(response)
            # No answer or still unavailable: did the proposal get through before the next try?
            if accepted := await self._accepted_meanwhile(loan_id, borrower_id, plans_before):
                return accepted
            self.retries += 1
            await asyncio.sleep(self._backoff(attempt, response))
        raise PortalUnreachable(f"POST {path}: no decision after {self._attempts} attempts")

    async def _accepted_meanwhile(self, loan_id: str, borrower_id: str, plans_before: int) -> PlanDecision | None:
        try:
            status = await self.status(loan_id, borrower_id)
        except (PortalRefused, PortalUnreachable):
            return None
        plan = status.plan
        if status.state == LoanState.RESTRUCTURING and plan is not None and plan.plan_number > plans_before:
            return PlanDecision(accepted=True, reason=None, schedule=plan.schedule)
        return None
