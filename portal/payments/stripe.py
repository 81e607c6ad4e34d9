"""Stripe, written to its published API: PaymentIntents, and its signed webhook events.

Starting a payment is `POST /v1/payment_intents` (form-encoded, `Authorization: Bearer
<secret key>`, a pinned `Stripe-Version`) with an `Idempotency-Key` made of the loan and the
payment id, so a borrower's retry gets the same PaymentIntent back and a reuse of the payment id
for another amount is refused by Stripe (answered 409). The amount is in the currency's minor unit;
the loan and payment ids ride in the PaymentIntent's `metadata`. The borrower completes the payment
on their device with Stripe.js and the `client_secret` the portal returns.

Stripe's webhook (an endpoint in the Stripe dashboard pointing at
POST /v1/payment-notifications/stripe, its signing secret in PAYMENTS_STRIPE_WEBHOOK_SECRET) is
verified as Stripe specifies: header `Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]`, each `v1` a
hex HMAC-SHA256 of `<t>.<raw body>` keyed with the endpoint's secret, compared in constant time,
`t` within 300 s. Its events are translated to our notification (portal.payments.notifications):

| Stripe event | our notification |
| --- | --- |
| `payment_intent.succeeded` (with our metadata) | `payment.succeeded`, amount = `amount_received` |
| `charge.refunded` with `refunded: true` | `payment.reversed`, reason "refunded" |
| `charge.dispute.funds_withdrawn` | `payment.reversed`, reason "chargeback (<dispute reason>)" |
| anything else, or not ours (no metadata) | acknowledged, nothing changes |

A partial refund (`refunded: false`) is acknowledged and logged as an error: a loan reverses whole
payments only, so the bank reconciles a partial refund by hand. Reversals read the PaymentIntent
(`GET /v1/payment_intents/{id}`) for our metadata.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import httpx
from pydantic import TypeAdapter, ValidationError

from domain.money import fmt

from .notifications import PaymentNotification, SignatureError
from .providers import PaymentOrder, PaymentProviderError, PendingPayment

log = logging.getLogger("portal.payments.stripe")

STRIPE_PATH = "/v1/payment-notifications/stripe"
SIGNATURE_HEADER = "Stripe-Signature"
STRIPE_VERSION = "2024-06-20"
TOLERANCE_SECONDS = 300

ZERO_DECIMAL = frozenset({"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND",
                          "VUV", "XAF", "XOF", "XPF"})
"""Currencies whose Stripe amounts are whole units (Stripe: "Zero-decimal currencies")."""
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})

_notification = TypeAdapter(PaymentNotification)
_HEX = re.compile(r"^[0-9a-f]{64}$")


def minor_units(amount: Decimal, currency: str) -> int:
    """Stripe's integer amount for a two-place decimal amount."""
    code = currency.upper()
    if code in THREE_DECIMAL:
        raise PaymentProviderError(f"{code} has three decimal places; money here has two")
    if code in ZERO_DECIMAL:
        if amount != amount.to_integral_value():
            raise PaymentProviderError(f"{code} has no minor unit: the amount must be whole, not {fmt(amount)}")
        return int(amount)
    return int(amount * 100)


def from_minor_units(value: int, currency: str) -> Decimal:
    code = currency.upper()
    return Decimal(value) if code in ZERO_DECIMAL else Decimal(value) / 100


def verify_signature(secret: str, header: str | None, body: bytes, now: float | None = None,
                     tolerance: int = TOLERANCE_SECONDS) -> int:
    """Check a Stripe-Signature header; its timestamp, or SignatureError."""
    if not header:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    timestamp: str | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not timestamp.isdigit():
        raise SignatureError(f"{SIGNATURE_HEADER} has no timestamp t=<unix seconds>")
    if not signatures:
        raise SignatureError(f"{SIGNATURE_HEADER} has no v1 signature")
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > tolerance:
        raise SignatureError(f"{SIGNATURE_HEADER} timestamp is more than {tolerance} seconds from the portal's clock")
    expected = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    if not any(_HEX.match(s) and hmac.compare_digest(expected, s) for s in signatures):
        raise SignatureError(f"no {SIGNATURE_HEADER} v1 signature matches the body")
    return int(timestamp)


def stripe_signature_header(secret: str, body: bytes, now: float | None = None) -> str:
    """What Stripe sends with `body` (tests and integrators' replays)."""
    timestamp = str(int(time.time() if now is None else now))
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


@dataclass(frozen=True)
class Translation:
    notification: Any | None
    """Our notification (PaymentSucceededNotification or PaymentReversedNotification), or None."""
    ignored: str | None = None
    """Why the event changes nothing, when it does not."""


def _instant(unix: Any) -> str:
    return datetime.fromtimestamp(int(unix), tz=timezone.utc).isoformat()


class StripeProvider:
    name = "stripe"

    def __init__(self, secret_key: str, webhook_secret: str, *, api_base: str = "https://api.stripe.com",
                 timeout: float = 20.0) -> None:
        self.webhook_secret = webhook_secret
        self._http = httpx.AsyncClient(
            base_url=api_base.rstrip("/"), timeout=timeout,
            headers={"Authorization": f"Bearer {secret_key}", "Stripe-Version": STRIPE_VERSION},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise PaymentProviderError(f"Stripe did not answer: {exc!r}") from None
        try:
            data = response.json()
        except ValueError:
            data = {}
        if response.status_code >= 300:
            error = data.get("error", {}) if isinstance(data, dict) else {}
            message = error.get("message") or response.text[:200]
            raise PaymentProviderError(f"Stripe refused ({response.status_code}): {message}",
                                       conflict=error.get("type") == "idempotency_error")
        if not isinstance(data, dict):
            raise PaymentProviderError("Stripe answered something that is not a JSON object")
        return data

    async def start(self, order: PaymentOrder) -> PendingPayment:
        form = {
            "amount": str(minor_units(order.amount, order.currency)),
            "currency": order.currency.lower(),
            "automatic_payment_methods[enabled]": "true",
            "description": f"Loan {order.loan_id}",
            "metadata[loan_id]": order.loan_id,
            "metadata[payment_id]": order.payment_id,
            "metadata[borrower_id]": order.borrower_id,
        }
        intent = await self._call("POST", "/v1/payment_intents", data=form,
                                  headers={"Idempotency-Key": f"collections:{order.loan_id}:{order.payment_id}"})
        redirect = ((intent.get("next_action") or {}).get("redirect_to_url") or {}).get("url")
        return PendingPayment(payment_id=order.payment_id, redirect_url=redirect,
                              client_secret=intent.get("client_secret"), provider_reference=intent.get("id"))

    async def _intent(self, intent_id: Any) -> dict[str, Any]:
        if not isinstance(intent_id, str) or not intent_id:
            raise PaymentProviderError("the event names no payment_intent")
        return await self._call("GET", f"/v1/payment_intents/{intent_id}")

    def _notification(self, **fields: Any) -> Any:
        try:
            return _notification.validate_python(fields)
        except ValidationError as exc:
            raise PaymentProviderError(f"Stripe's event does not make a valid notification: {exc}") from None

    async def translate(self, event: dict[str, Any]) -> Translation:
        """Our notification for a verified Stripe event (see the module's table)."""
        kind = event.get("type")
        obj = (event.get("data") or {}).get("object") or {}
        event_id = str(event.get("id") or "stripe-event")
        if kind == "payment_intent.succeeded":
            meta = obj.get("metadata") or {}
            if not meta.get("loan_id") or not meta.get("payment_id"):
                return Translation(None, ignored="a PaymentIntent without our loan_id/payment_id metadata")
            currency = str(obj.get("currency", "")).upper()
            return Translation(self._notification(
                type="payment.succeeded", notification_id=event_id, provider=self.name,
                payment_id=meta["payment_id"], loan_id=meta["loan_id"], currency=currency,
                amount=fmt(from_minor_units(int(obj.get("amount_received") or 0), currency)),
                paid_at=_instant(event.get("created") or obj.get("created")), provider_reference=obj.get("id"),
            ))
        if kind == "charge.refunded":
            if obj.get("refunded") is not True:
                log.error("Stripe: partial refund of charge %s (%s of %s %s): a loan reverses whole payments "
                          "only; reconcile it by hand", obj.get("id"), obj.get("amount_refunded"),
                          obj.get("amount"), obj.get("currency"))
                return Translation(None, ignored="a partial refund: reconcile by hand")
            return await self._reversal(event_id, obj.get("payment_intent"), obj.get("amount_captured") or obj.get("amount"),
                                        obj.get("currency"), "refunded", obj.get("id"), event.get("created"))
        if kind == "charge.dispute.funds_withdrawn":
            return await self._reversal(event_id, obj.get("payment_intent"), obj.get("amount"), obj.get("currency"),
                                        f"chargeback ({obj.get('reason') or 'disputed'})", obj.get("id"),
                                        event.get("created"))
        return Translation(None, ignored=f"event type {kind!r} is not used")

    async def _reversal(self, event_id: str, intent_id: Any, amount: Any, currency: Any, reason: str,
                        reference: Any, created: Any) -> Translation:
        intent = await self._intent(intent_id)
        meta = intent.get("metadata") or {}
        if not meta.get("loan_id") or not meta.get("payment_id"):
            return Translation(None, ignored="a payment without our loan_id/payment_id metadata")
        code = str(currency or intent.get("currency") or "").upper()
        return Translation(self._notification(
            type="payment.reversed", notification_id=event_id, provider=self.name,
            payment_id=meta["payment_id"], loan_id=meta["loan_id"], currency=code,
            amount=fmt(from_minor_units(int(amount or 0), code)), reason=reason,
            reversed_at=_instant(created or time.time()), provider_reference=reference,
        ))
