"""Shared by the adapters: error types, stable ids, and masking personal data in logs."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

from temporalio.exceptions import ApplicationError

PERMANENT_DELIVERY_FAILURE = "PermanentDeliveryFailure"
"""The outside system refused for good (bad address, 5xx, 4xx): retrying cannot help."""
TRANSIENT_DELIVERY_FAILURE = "TransientDeliveryFailure"
"""The outside system is unreachable, busy or failing (network, timeouts, 4xx SMTP, 5xx HTTP)."""
INVALID_REQUEST = "InvalidRequest"
"""The request itself cannot be carried out (wrong channel, a field a template needs is missing)."""
CONFIGURATION_ERROR = "AdapterConfigurationError"
"""Our own setup is wrong (SMTP login refused, sender refused): retried, so that no notice is lost
while an operator fixes it; the message says what to fix."""

_PHONE_RE = re.compile(r"^\+?[0-9][0-9 \-]{5,19}$")


def permanent(message: str) -> ApplicationError:
    return ApplicationError(message, type=PERMANENT_DELIVERY_FAILURE, non_retryable=True)


def transient(message: str, *, retry_after: timedelta | None = None) -> ApplicationError:
    return ApplicationError(
        message, type=TRANSIENT_DELIVERY_FAILURE, non_retryable=False, next_retry_delay=retry_after
    )


def invalid(message: str) -> ApplicationError:
    return ApplicationError(message, type=INVALID_REQUEST, non_retryable=True)


def misconfigured(message: str) -> ApplicationError:
    return ApplicationError(message, type=CONFIGURATION_ERROR, non_retryable=False)


def stable_id(prefix: str, key: str) -> str:
    """A short identifier derived from an idempotency key: the same key, the same id."""
    return f"{prefix}-{hashlib.sha256(key.encode('utf-8')).hexdigest()[:20]}"


def valid_phone(number: str) -> bool:
    return bool(_PHONE_RE.match(number or ""))


def mask_phone(number: str) -> str:
    """``+8613800000000`` -> ``+861380****0000``: enough to tell numbers apart in a log."""
    if len(number) <= 6:
        return "*" * len(number)
    return number[: len(number) - 8] + "****" + number[-4:] if len(number) > 8 else number[:2] + "****"


def mask_email(address: str) -> str:
    """``zhangsan@example.com`` -> ``z***@example.com``."""
    local, sep, domain = address.partition("@")
    if not sep:
        return "***"
    return f"{local[:1]}***@{domain}"
