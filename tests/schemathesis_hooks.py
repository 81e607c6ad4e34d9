"""Schemathesis hooks for tests/test_portal_schemathesis.py (loaded by the `schemathesis` process).

A payment notification is authenticated by its signature over the raw body, which Schemathesis
cannot compute: this hook signs each generated notification as a provider would (the body exactly
as the requests transport serialises it), so the generated bodies reach the body's validation and
the document's schema of the notification is checked too. A case probing a missing signature
header is left unsigned (the portal must answer it 401).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import schemathesis
from schemathesis.core import NOT_SET

from portal.payments.notifications import NOTIFICATION_PATH, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

SECRET = os.environ["COLLECTIONS_TEST_WEBHOOK_SECRET"].encode("utf-8")


def _raw(body: Any) -> bytes:
    """What requests sends for `json=body` (requests.models: json.dumps(..., allow_nan=False))."""
    if body is NOT_SET:
        return b""
    if isinstance(body, bytes):
        return body
    if body is None:
        return b"null"
    return json.dumps(body, allow_nan=False).encode("utf-8")


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if case.operation.path != NOTIFICATION_PATH or not case.headers:
        return
    if TIMESTAMP_HEADER not in case.headers or SIGNATURE_HEADER not in case.headers:
        return
    timestamp = str(int(time.time()))
    case.headers[TIMESTAMP_HEADER] = timestamp
    case.headers[SIGNATURE_HEADER] = sign(SECRET, timestamp, _raw(case.body))
