"""Signed opt-out links: every message of a borrower-v1 loan says how to stop it.

`OptOutLinks(secret, portal_url).link(borrower_id, channel)` is
`<portal_url>/v1/unsubscribe/<token>`: the token names the borrower and the channel and carries an
HMAC-SHA256 tag (truncated to 128 bits) keyed with `COLLECTIONS_LINK_SECRET`, shared by the worker (which
signs) and the portal (which verifies and signals `opt_out` to `borrower-<id>`). A link never expires:
an opt-out must stay possible from any message ever sent (RFC 8058 one-click; 12 CFR 1006.6(e)).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

CHANNELS = ("sms", "email", "voice", "call")


class LinkError(ValueError):
    """A token that is malformed or whose signature does not verify."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class OptOutLinks:
    def __init__(self, secret: str | bytes, portal_url: str) -> None:
        key = secret.encode("utf-8") if isinstance(secret, str) else secret
        if len(key) < 16:
            raise ValueError("COLLECTIONS_LINK_SECRET must be at least 16 bytes")
        self._key = key
        self.portal_url = portal_url.rstrip("/")

    def _tag(self, body: bytes) -> bytes:
        return hmac.new(self._key, b"opt-out\x00" + body, hashlib.sha256).digest()[:16]

    def token(self, borrower_id: str, channel: str) -> str:
        if channel not in CHANNELS:
            raise ValueError(f"channel must be one of {', '.join(CHANNELS)}, not {channel!r}")
        body = f"{channel}:{borrower_id}".encode("utf-8")
        return f"{_b64(body)}.{_b64(self._tag(body))}"

    def link(self, borrower_id: str, channel: str) -> str:
        return f"{self.portal_url}/v1/unsubscribe/{self.token(borrower_id, channel)}"

    def verify(self, token: str) -> tuple[str, str]:
        """(borrower_id, channel) of a valid token; LinkError otherwise (constant-time compare)."""
        try:
            body_part, tag_part = token.split(".", 1)
            body, tag = _unb64(body_part), _unb64(tag_part)
        except (ValueError, TypeError) as err:
            raise LinkError("the opt-out link is malformed") from err
        if not hmac.compare_digest(tag, self._tag(body)):
            raise LinkError("the opt-out link's signature does not verify")
        channel, _, borrower_id = body.decode("utf-8", errors="replace").partition(":")
        if channel not in CHANNELS or not borrower_id:
            raise LinkError("the opt-out link names no channel or borrower")
        return borrower_id, channel
