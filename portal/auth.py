"""Bearer tokens: borrowers' HS256 JWTs, and staff's RS256/ES256 JWTs (portal.staff).

Borrower tokens are HS256, signed with PORTAL_JWT_SECRET (by the borrower app's backend): `sub` is
the borrower_id, `exp` is required, `iat`/`nbf` are checked when present, and `role`, if present at
all, must be `borrower`. Whoever holds PORTAL_JWT_SECRET can mint a borrower token, and nothing
more: an HS256 token that claims a staff role is refused.

Staff tokens (agent, agency, operator) come from the bank's identity provider and are verified
against its key set (PORTAL_STAFF_JWKS; see portal.staff). Without a key set configured the portal
accepts borrower tokens only.

The token's `alg` header picks the path; HS256 is checked only against the borrower secret, RS256
and ES256 only against the staff key set, and every other algorithm (`none` included) is refused.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
import time
from dataclasses import dataclass
from enum import StrEnum

import jwt

from .staff import STAFF_ALGORITHMS, KeySetUnavailable, StaffTokenError, StaffVerifier
from .tokens import TokenRejected, decode, subject_of

ALGORITHM = "HS256"


class Role(StrEnum):
    BORROWER = "borrower"
    AGENT = "agent"
    AGENCY = "agency"
    OPERATOR = "operator"


STAFF_ROLES = frozenset({Role.AGENT, Role.AGENCY, Role.OPERATOR})


@dataclass(frozen=True)
class Principal:
    subject: str
    role: Role
    token_id: str
    """sha256 of the raw token (never the token): the rate limiter's key."""
    expires_at: int
    agency_id: str | None = None
    """For role agency: the agency whose placed loans this staff member may see and work."""


class AuthError(TokenRejected):
    """The request carries no token, or one that is not valid: answered 401."""


class AuthUnavailable(Exception):
    """A staff token's key could not be fetched (the key set's URL did not answer): answered 503."""


def token_fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", errors="replace")).hexdigest()


def verify_borrower_token(token: str, secret: bytes, *, staff_roles_allowed: bool = False) -> Principal:
    """The principal of a valid HS256 token; AuthError naming the reason otherwise.

    `staff_roles_allowed` exists for one caller only: the codec server of `collections demo`, which
    has no identity provider (see portal.codec_server). The portal never sets it."""
    try:
        claims = decode(token, secret, ALGORITHM, require=["exp", "sub"])
        subject = subject_of(claims)
    except TokenRejected as exc:
        raise AuthError(exc.reason) from None
    raw_role = claims.get("role", Role.BORROWER.value)
    try:
        role = Role(raw_role)
    except ValueError:
        raise AuthError(
            f"token 'role' must be one of {', '.join(r.value for r in Role)}, not {raw_role!r}"
        ) from None
    if role is not Role.BORROWER and not staff_roles_allowed:
        raise AuthError(
            f"a token signed with PORTAL_JWT_SECRET is a borrower's and cannot carry the role {role.value!r}; "
            "staff tokens come from the staff identity provider (RS256/ES256, PORTAL_STAFF_JWKS)"
        )
    return Principal(
        subject=subject, role=role, token_id=token_fingerprint(token), expires_at=int(claims["exp"])
    )


class Authenticator:
    """Picks the path by the token's algorithm: HS256 -> borrower secret, RS256/ES256 -> staff keys."""

    def __init__(self, borrower_secret: bytes, staff: StaffVerifier | None = None, *,
                 hs256_staff_roles: bool = False) -> None:
        self.borrower_secret = borrower_secret
        self.staff = staff
        self.hs256_staff_roles = hs256_staff_roles

    def _algorithm(self, token: str) -> str:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"token is not a JWT: {exc}") from None
        alg = header.get("alg")
        if alg == ALGORITHM or alg in STAFF_ALGORITHMS:
            return str(alg)
        raise AuthError(f"token algorithm {alg!r} is not accepted: borrower tokens are HS256, "
                        "staff tokens RS256 or ES256")

    def _staff(self, token: str) -> Principal:
        if self.staff is None:
            raise AuthError("staff tokens are not accepted here: PORTAL_STAFF_JWKS is not configured")
        try:
            claims = self.staff.verify(token)
        except StaffTokenError as exc:
            raise AuthError(exc.reason) from None
        except KeySetUnavailable as exc:
            raise AuthUnavailable(str(exc)) from None
        return Principal(subject=claims.subject, role=Role(claims.role), token_id=token_fingerprint(token),
                         expires_at=claims.expires_at, agency_id=claims.agency_id)

    def verify(self, token: str) -> Principal:
        """Synchronous: may read the staff key set (a file, or a URL) on a key rotation."""
        if self._algorithm(token) == ALGORITHM:
            return verify_borrower_token(token, self.borrower_secret, staff_roles_allowed=self.hs256_staff_roles)
        return self._staff(token)

    async def averify(self, token: str) -> Principal:
        """As verify, reading a key set over the network in a thread, never on the event loop."""
        if self._algorithm(token) != ALGORITHM and self.staff is not None and self.staff.needs_io(token):
            return await asyncio.to_thread(self._staff, token)
        return self.verify(token)


def mint_token(
    secret: str | bytes,
    subject: str,
    role: Role | str = Role.BORROWER,
    ttl_seconds: int = 3600,
    **extra: object,
) -> str:
    """Sign an HS256 token: a borrower's (tests, demos and integrators' examples; production tokens
    come from the borrower app's backend). The portal refuses one with any other role; staff tokens
    for tests and the demo come from portal.devstaff."""
    now = int(time.time())
    claims: dict[str, object] = {"sub": subject, "iat": now, "exp": now + ttl_seconds, **extra}
    role_value = Role(role).value
    if role_value != Role.BORROWER.value or "role" in extra:
        claims["role"] = role_value
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def main(argv: list[str] | None = None) -> int:
    """`python -m portal.auth --sub B-0001 [--ttl 3600]`: print a borrower token (PORTAL_JWT_SECRET)."""
    parser = argparse.ArgumentParser(prog="python -m portal.auth", description=main.__doc__,
                                     epilog="Staff tokens (agent, agency, operator) for tests and the demo: "
                                            "python -m portal.devstaff --help")
    parser.add_argument("--sub", required=True, help="the borrower_id")
    parser.add_argument("--ttl", type=int, default=3600, help="seconds until the token expires")
    args = parser.parse_args(argv)
    secret = os.environ.get("PORTAL_JWT_SECRET")
    if not secret:
        print("PORTAL_JWT_SECRET is not set", file=sys.stderr)
        return 2
    print(mint_token(secret, args.sub, Role.BORROWER, args.ttl))
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
