"""The payment notification: what a payment provider tells the portal, and how it is signed.

    POST /v1/payment-notifications
    X-Timestamp: 1767225600                      (Unix seconds, within 5 minutes of the portal's clock)
    X-Signature: <hex HMAC-SHA256 of "<X-Timestamp>.<raw body>", keyed with PAYMENTS_WEBHOOK_SECRET>
    Content-Type: application/json

    {"type": "payment.succeeded", "notification_id": "evt-81", "provider": "local",
     "payment_id": "portal-P-1", "loan_id": "WL-2024-000123", "amount": "100.00", "currency": "CNY",
     "paid_at": "2026-11-02T10:15:00+08:00", "provider_reference": "pi_123", "reason": null}

    {"type": "payment.reversed", "notification_id": "evt-93", "provider": "stripe",
     "payment_id": "portal-P-1", "loan_id": "WL-2024-000123", "amount": "100.00", "currency": "CNY",
     "paid_at": "2026-11-02T10:15:00+08:00", "reversed_at": "2026-11-20T09:00:00+08:00",
     "reason": "chargeback (fraudulent)", "provider_reference": "dp_77"}

The signature covers the exact bytes of the body: verify before parsing, never re-serialise.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from typing import Annotated, Literal

from pydantic import Field

from domain.base import Model
from domain.models import Amount, Instant

NOTIFICATION_PATH = "/v1/payment-notifications"
TIMESTAMP_HEADER = "X-Timestamp"
SIGNATURE_HEADER = "X-Signature"
TOLERANCE_SECONDS = 300
"""A notification's X-Timestamp may be this far from the portal's clock, either way."""

LOAN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
"""The contract's loan_id (domain.models.Loan), repeated in the HTTP schemas."""

_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_HEX_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


class SignatureError(Exception):
    """A missing, malformed, stale or wrong signature: answered 401, and nothing changes."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of `<timestamp>.<body>`."""
    return hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def signed_headers(secret: bytes, body: bytes, now: float | None = None) -> dict[str, str]:
    """The headers a provider sends with `body` (the local provider and integrators' tests use it)."""
    timestamp = str(int(time.time() if now is None else now))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(secret, timestamp, body),
            "Content-Type": "application/json"}


def check_signature(secret: bytes, timestamp: str | None, signature: str | None, body: bytes,
                    now: float | None = None, tolerance: int = TOLERANCE_SECONDS) -> None:
    """Raise SignatureError unless `signature` signs `<timestamp>.<body>` and `timestamp` is fresh."""
    if not timestamp or not signature:
        missing = [name for name, value in ((TIMESTAMP_HEADER, timestamp), (SIGNATURE_HEADER, signature))
                   if not value]
        raise SignatureError(f"missing {' and '.join(missing)} header")
    if not _TIMESTAMP.match(timestamp):
        raise SignatureError(f"{TIMESTAMP_HEADER} must be Unix seconds (digits only)")
    if not _HEX_SHA256.match(signature):
        raise SignatureError(f"{SIGNATURE_HEADER} must be 64 hex digits (HMAC-SHA256)")
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > tolerance:
        raise SignatureError(f"{TIMESTAMP_HEADER} is more than {tolerance} seconds from the portal's clock "
                             "(a replayed or delayed notification: sign it afresh)")
    if not hmac.compare_digest(sign(secret, timestamp, body), signature.lower()):
        raise SignatureError(f"{SIGNATURE_HEADER} does not match the body")


class _Notification(Model):
    notification_id: str = Field(min_length=1, max_length=128,
                                 description="the provider's id of this event (logs, support)")
    provider: str = Field(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_\-]*$",
                          description="who took the money: local, stripe, ...")
    payment_id: str = Field(min_length=1, max_length=128,
                            description="the payment's id as the loan knows it (idempotency key)")
    loan_id: str = Field(min_length=1, max_length=64, pattern=LOAN_ID_PATTERN)
    amount: Amount
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217; must be the loan's currency")
    provider_reference: str | None = Field(default=None, min_length=1, max_length=255,
                                           description="the provider's own id (pi_..., a charge, a dispute)")


class PaymentSucceededNotification(_Notification):
    """The provider has the money: the loan is credited (signal payment_received), once per payment_id."""

    type: Literal["payment.succeeded"]
    paid_at: Instant
    reason: str | None = Field(default=None, max_length=500, description="free text, kept in the logs")


class PaymentReversedNotification(_Notification):
    """The money went back (refund, chargeback, returned debit): signal payment_reversed."""

    type: Literal["payment.reversed"]
    reason: str = Field(min_length=1, max_length=500, description="why, as the loan's events will show it")
    reversed_at: Instant
    paid_at: Instant | None = None


PaymentNotification = Annotated[
    PaymentSucceededNotification | PaymentReversedNotification, Field(discriminator="type")
]
