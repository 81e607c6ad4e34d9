"""Staff tokens: RS256/ES256 JWTs from the bank's identity provider, checked against its key set.

Agents, agency staff and operators sign in at the bank's OpenID Connect provider (or any issuer of
JWTs with a JSON Web Key Set); the portal verifies their tokens as any OIDC relying party does:

- the key is looked up by the token's `kid` in the key set at PORTAL_STAFF_JWKS (a file path, or an
  http(s) URL read with PyJWT's PyJWKClient); an unknown `kid` re-reads the set (a key rotation),
  at most once every REFRESH_FLOOR_SECONDS, and a URL's set is re-read when older than
  KEYSET_MAX_AGE_SECONDS, so a withdrawn key stops working;
- only RS256 and ES256, and only the algorithm of the key found (an RSA key never verifies an ES256
  token, a key set's symmetric `oct` key is never used): `alg: none`, HS256 with the public key
  as the secret and every other algorithm are refused;
- `iss` must be PORTAL_STAFF_ISSUER and `aud` must contain PORTAL_STAFF_AUDIENCE; `exp`, `sub`,
  `iss`, `aud` and `role` are required; `nbf`/`iat` are checked when present (30 s of skew).

Claims the portal reads: `sub` (the staff member's id, recorded in the loan's events), `role`
(`agent`, `agency` or `operator`) and, for `agency`, `agency_id` (the agency the loan must be
placed with).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from .tokens import TokenRejected, decode, subject_of

log = logging.getLogger("portal.staff")

STAFF_ALGORITHMS = frozenset({"RS256", "ES256"})
STAFF_ROLES = frozenset({"agent", "agency", "operator"})
REFRESH_FLOOR_SECONDS = 30.0
KEYSET_MAX_AGE_SECONDS = 300.0
AGENCY_ID_CLAIM = "agency_id"


class StaffConfigError(ValueError):
    """PORTAL_STAFF_JWKS cannot be used (unreadable file, not a key set, no usable key)."""


StaffTokenError = TokenRejected
"""The staff token is not valid: answered 401."""


class KeySetUnavailable(Exception):
    """The key set could not be fetched and the token's key is not known: answered 503."""


@dataclass(frozen=True)
class StaffClaims:
    subject: str
    role: str
    agency_id: str | None
    expires_at: int


def _usable_keys(data: Any, where: str) -> dict[str, jwt.PyJWK]:
    """kid -> key for the signing keys of a JWKS document that we accept (RS256/ES256 with a kid)."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise StaffConfigError(f"{where} is not a JSON Web Key Set (an object with a 'keys' list)")
    keys: dict[str, jwt.PyJWK] = {}
    for raw in data["keys"]:
        if not isinstance(raw, dict) or raw.get("use", "sig") != "sig" or not raw.get("kid"):
            continue
        try:
            key = jwt.PyJWK(raw)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            continue
        if key.algorithm_name in STAFF_ALGORITHMS:
            keys[str(raw["kid"])] = key
    return keys


class StaffVerifier:
    """Verifies staff tokens against a JWKS file or URL (see the module's docstring)."""

    def __init__(self, source: str, issuer: str, audience: str, *, timeout: float = 5.0,
                 refresh_floor_seconds: float = REFRESH_FLOOR_SECONDS) -> None:
        self.source = source
        self.refresh_floor_seconds = refresh_floor_seconds
        self.issuer = issuer
        self.audience = audience
        self.is_url = source.startswith(("http://", "https://"))
        self._client = jwt.PyJWKClient(source, cache_keys=False, cache_jwk_set=False, timeout=timeout) \
            if self.is_url else None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._loaded_at: float | None = None
        self._tried_at = float("-inf")
        self._file_mtime: float | None = None
        self._lock = threading.Lock()
        if not self.is_url:
            self._load()  # a bad file stops the start, naming it

    # -- the key set --------------------------------------------------------------------------

    def _load(self) -> None:
        self._tried_at = time.monotonic()
        if self._client is not None:
            try:
                data = self._client.fetch_data()
            except jwt.PyJWKClientError as exc:
                raise KeySetUnavailable(f"cannot fetch the staff key set from {self.source}: {exc}") from None
            keys = _usable_keys(data, self.source)
        else:
            path = Path(self.source)
            try:
                text = path.read_text(encoding="utf-8")
                self._file_mtime = path.stat().st_mtime
            except OSError as exc:
                raise StaffConfigError(f"PORTAL_STAFF_JWKS={self.source}: cannot read it ({exc.strerror})") from None
            try:
                data = json.loads(text)
            except ValueError as exc:
                raise StaffConfigError(f"PORTAL_STAFF_JWKS={self.source}: not JSON ({exc})") from None
            keys = _usable_keys(data, f"PORTAL_STAFF_JWKS={self.source}")
            if not keys:
                raise StaffConfigError(f"PORTAL_STAFF_JWKS={self.source} holds no RS256 or ES256 signing key "
                                       "with a 'kid'")
        self._keys = keys
        self._loaded_at = time.monotonic()
        log.info("staff key set from %s: %d key(s) (%s)", self.source, len(keys), ", ".join(sorted(keys)))

    def _stale(self) -> bool:
        if self._loaded_at is None:
            return True
        if self.is_url:
            return time.monotonic() - self._loaded_at > KEYSET_MAX_AGE_SECONDS
        return False

    def needs_io(self, token: str) -> bool:
        """Whether verifying this token may read the key set (so the caller runs it off the event loop)."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError:
            return False
        return self._stale() or (kid not in self._keys and self._may_retry())

    def _may_retry(self) -> bool:
        return time.monotonic() - self._tried_at >= self.refresh_floor_seconds

    def _key(self, kid: str) -> jwt.PyJWK:
        with self._lock:
            if self._stale() or (kid not in self._keys and self._may_retry()):
                try:
                    if self.is_url or self._file_changed():
                        self._load()
                    else:
                        self._tried_at = time.monotonic()
                except (KeySetUnavailable, StaffConfigError) as exc:
                    if not self._keys:
                        raise KeySetUnavailable(str(exc)) from None
                    log.warning("%s; going on with the %d key(s) read before", exc, len(self._keys))
                    self._loaded_at = time.monotonic()  # retry after the usual interval, not per request
            key = self._keys.get(kid)
        if key is None:
            raise StaffTokenError(f"no key {kid!r} in the staff key set")
        return key

    def _file_changed(self) -> bool:
        try:
            return Path(self.source).stat().st_mtime != self._file_mtime
        except OSError:
            return True

    # -- tokens ---------------------------------------------------------------------------------

    def verify(self, token: str) -> StaffClaims:
        """The claims of a valid staff token; StaffTokenError naming the reason otherwise (may block
        on reading the key set: see needs_io)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise StaffTokenError(f"token is not a JWT: {exc}") from None
        alg = header.get("alg")
        if alg not in STAFF_ALGORITHMS:
            raise StaffTokenError(f"staff tokens must be signed with RS256 or ES256, not {alg!r}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise StaffTokenError("staff token has no 'kid' header naming its key")
        key = self._key(kid)
        if alg != key.algorithm_name:
            raise StaffTokenError(f"key {kid!r} signs {key.algorithm_name}, the token says {alg}")
        claims = decode(token, key.key, key.algorithm_name, require=["exp", "sub", "iss", "aud"],
                        audience=self.audience, issuer=self.issuer)
        subject = subject_of(claims)
        role = claims.get("role")
        if role not in STAFF_ROLES:
            raise StaffTokenError(f"staff token 'role' must be one of {', '.join(sorted(STAFF_ROLES))}, not {role!r}")
        agency_id = claims.get(AGENCY_ID_CLAIM)
        if role == "agency":
            if not isinstance(agency_id, str) or not agency_id.strip() or len(agency_id) > 64:
                raise StaffTokenError(f"an agency token needs '{AGENCY_ID_CLAIM}': the agency's id (1 to 64 characters)")
        else:
            agency_id = None
        return StaffClaims(subject=subject, role=role, agency_id=agency_id, expires_at=int(claims["exp"]))
