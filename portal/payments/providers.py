"""The payment provider interface, and the embedded default: the local provider (DEV ONLY).

A provider starts a payment (`start`) and later confirms it, or reverses it, by a signed
notification to the portal. Starting a payment credits nothing.

The local provider takes no money: it is for `collections demo`, tests and a developer's laptop.
`start` answers a checkout link (`redirect_url`, under the portal's own `/pay/local/`), a token
that carries the order and is signed, so any replica of the portal can serve it and nothing is kept
in memory. The borrower's browser opens the link (a page with a "Pay" button) and submits it (POST
to the same URL, also fine for scripts: `Accept: application/json` gets a JSON answer); the
provider then sends the REAL notification, signed with PAYMENTS_WEBHOOK_SECRET, to the portal's
POST /v1/payment-notifications, exactly as a real provider's webhook would. With
PAYMENTS_LOCAL_AUTO_CONFIRM_SECONDS (or COLLECTIONS_DEMO=1) it also confirms by itself that many
seconds after `start` (in this process: a portal that stops before then leaves it pending).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Literal, Protocol

import httpx

from domain.money import fmt

from .notifications import PaymentSucceededNotification, signed_headers

log = logging.getLogger("portal.payments")

CHECKOUT_PATH = "/pay/local"
LINK_TTL_SECONDS = 24 * 3600


@dataclass(frozen=True)
class PaymentOrder:
    """What the borrower asked to pay."""

    loan_id: str
    payment_id: str
    """The id the loan will know the payment by once confirmed (the portal's, see app.py)."""
    amount: Decimal
    currency: str
    borrower_id: str


@dataclass(frozen=True)
class PendingPayment:
    """Started with the provider, not paid: nothing is credited until the provider confirms."""

    payment_id: str
    redirect_url: str | None = None
    """Where the borrower completes the payment (a hosted checkout page), when the provider has one."""
    client_secret: str | None = None
    """For the provider's own client SDK on the borrower's device (Stripe.js), when it needs one."""
    provider_reference: str | None = None
    status: Literal["pending"] = "pending"


class PaymentProviderError(Exception):
    """The provider refused or did not answer. `conflict`: the payment_id was used for another order."""

    def __init__(self, message: str, *, conflict: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.conflict = conflict


class PaymentProvider(Protocol):
    name: str

    async def start(self, order: PaymentOrder) -> PendingPayment:
        """Start a payment; idempotent by (loan_id, payment_id): a retry answers the same payment."""
        ...

    async def aclose(self) -> None:
        ...


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LocalPaymentProvider:
    """DEV ONLY: confirms through the real signed webhook without taking money (module docstring)."""

    name = "local"

    def __init__(self, webhook_secret: bytes, *, public_url: str, notify_url: str,
                 auto_confirm_seconds: float | None = None, link_ttl_seconds: int = LINK_TTL_SECONDS,
                 timeout: float = 10.0) -> None:
        self._webhook_secret = webhook_secret
        self._link_key = hmac.new(webhook_secret, b"collections local checkout links v1", hashlib.sha256).digest()
        self.public_url = public_url.rstrip("/")
        self.notify_url = notify_url
        self.auto_confirm_seconds = auto_confirm_seconds
        self.link_ttl_seconds = link_ttl_seconds
        self._http = httpx.AsyncClient(timeout=timeout)
        self._pending: set[asyncio.Task[None]] = set()

    # -- checkout links ---------------------------------------------------------------------------

    def link_token(self, order: PaymentOrder, now: float | None = None) -> str:
        claims = {"l": order.loan_id, "p": order.payment_id, "a": fmt(order.amount), "c": order.currency,
                  "b": order.borrower_id, "e": int((time.time() if now is None else now) + self.link_ttl_seconds)}
        body = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode("utf-8"))
        mac = _b64(hmac.new(self._link_key, body.encode("ascii"), hashlib.sha256).digest())
        return f"{body}.{mac}"

    def order_of(self, token: str, now: float | None = None) -> PaymentOrder | None:
        """The order a checkout link carries; None if the link is forged, damaged or expired."""
        body, _, mac = token.partition(".")
        if not body or not mac:
            return None
        expected = _b64(hmac.new(self._link_key, body.encode("ascii"), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, mac):
            return None
        try:
            claims = json.loads(_unb64(body))
            if int(claims["e"]) < (time.time() if now is None else now):
                return None
            return PaymentOrder(loan_id=claims["l"], payment_id=claims["p"], amount=Decimal(claims["a"]),
                                currency=claims["c"], borrower_id=claims["b"])
        except (ValueError, KeyError, TypeError):
            return None

    # -- the provider -----------------------------------------------------------------------------

    async def start(self, order: PaymentOrder) -> PendingPayment:
        url = f"{self.public_url}{CHECKOUT_PATH}/{self.link_token(order)}"
        if self.auto_confirm_seconds is not None:
            task = asyncio.create_task(self._confirm_later(order, self.auto_confirm_seconds))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        return PendingPayment(payment_id=order.payment_id, redirect_url=url, provider_reference=f"local:{order.payment_id}")

    async def _confirm_later(self, order: PaymentOrder, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            response = await self.confirm(order)
            if response.status_code >= 300:
                log.error("local provider: the portal answered %s to the confirmation of %s on %s: %s",
                          response.status_code, order.payment_id, order.loan_id, response.text[:300])
        except PaymentProviderError as exc:
            log.error("local provider: could not confirm %s on %s: %s", order.payment_id, order.loan_id, exc.message)

    async def confirm(self, order: PaymentOrder, attempts: int = 4) -> httpx.Response:
        """'The money arrived': send the signed payment.succeeded notification (retried on transport
        errors and 5xx, each time signed afresh); the portal's answer."""
        notification = PaymentSucceededNotification(
            type="payment.succeeded", notification_id=f"local-{order.payment_id}", provider=self.name,
            payment_id=order.payment_id, loan_id=order.loan_id, amount=order.amount, currency=order.currency,
            paid_at=datetime.now(timezone.utc), provider_reference=f"local:{order.payment_id}",
        )
        body = notification.model_dump_json(exclude_none=True).encode("utf-8")
        last: Exception | None = None
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(0.2 * 2 ** attempt)
            try:
                response = await self._http.post(self.notify_url, content=body,
                                                  headers=signed_headers(self._webhook_secret, body))
            except httpx.TransportError as exc:
                last = exc
                continue
            if response.status_code < 500:
                return response
            last = RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
        raise PaymentProviderError(f"the portal at {self.notify_url} did not take the notification: {last!r}")

    async def aclose(self) -> None:
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)
        await self._http.aclose()
