"""Trusted money: borrowers start payments with a payment provider; only the provider's signed
confirmation (POST /v1/payment-notifications) credits a loan.

- notifications: the notification body (ours, provider-neutral) and its HMAC-SHA256 signature;
- providers: the PaymentProvider interface and the embedded default, the local provider (dev only);
- stripe: Stripe PaymentIntents, and Stripe's signed events translated to our notification.
"""

from .notifications import (
    NOTIFICATION_PATH,
    PaymentNotification,
    PaymentReversedNotification,
    PaymentSucceededNotification,
    SignatureError,
    check_signature,
    sign,
    signed_headers,
)
from .providers import (
    LocalPaymentProvider,
    PaymentOrder,
    PaymentProvider,
    PaymentProviderError,
    PendingPayment,
)

__all__ = [
    "NOTIFICATION_PATH",
    "LocalPaymentProvider",
    "PaymentNotification",
    "PaymentOrder",
    "PaymentProvider",
    "PaymentProviderError",
    "PaymentReversedNotification",
    "PaymentSucceededNotification",
    "PendingPayment",
    "SignatureError",
    "check_signature",
    "sign",
    "signed_headers",
]
