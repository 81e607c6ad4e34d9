"""Bearer tokens: HS256 JWTs signed with PORTAL_JWT_SECRET.

Claims: `sub` (required; the borrower_id for a borrower, the agent's or operator's own id
otherwise), `exp` (required), `role` (optional: `borrower` when absent, `agent` or `operator`).
`iat`/`nbf` are checked when present. Any other claim is ignored.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from dataclasses import dataclass
from enum import StrEnum

import jwt

ALGORITHM = "HS256"
LEEWAY_SECONDS = 30


class Role(StrEnum):
    BORROWER = "borrower"
    AGENT = "agent"
    OPERATOR = "operator"


@dataclass(frozen=True)
class Principal:
    subject: str
    role: Role
    token_id: str
    """sha256 of the raw token (never the token): the rate limiter's key."""
    expires_at: int


class AuthError(Exception):
    """The request carries no token, or one that is not valid: answered 401."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def token_fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", errors="replace")).hexdigest()


def verify_token(token: str, secret: bytes) -> Principal:
    """The principal of a valid token; AuthError naming the reason otherwise."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["exp", "sub"], "verify_aud": False},
            leeway=LEEWAY_SECONDS,
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("token has expired") from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthError(f"token lacks the required claim {exc.claim!r}") from None
    except jwt.InvalidSignatureError:
        raise AuthError("token signature is not valid") from None
    except jwt.InvalidAlgorithmError:
        raise AuthError(f"token must be signed with {ALGORITHM}") from None
    except jwt.ImmatureSignatureError:
        raise AuthError("token is not valid yet (nbf/iat in the future)") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"token is not valid: {exc}") from None
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject.strip() or len(subject) > 128:
        raise AuthError("token 'sub' must be a non-empty string of at most 128 characters")
    raw_role = claims.get("role", Role.BORROWER.value)
    try:
        role = Role(raw_role)
    except ValueError:
        raise AuthError(
            f"token 'role' must be one of {', '.join(r.value for r in Role)}, not {raw_role!r}"
        ) from None
    return Principal(
        subject=subject, role=role, token_id=token_fingerprint(token), expires_at=int(claims["exp"])
    )


def mint_token(
    secret: str | bytes,
    subject: str,
    role: Role | str = Role.BORROWER,
    ttl_seconds: int = 3600,
    **extra: object,
) -> str:
    """Sign a token (tests, demos and integrators' examples; production tokens come from the bank's IdP)."""
    now = int(time.time())
    claims: dict[str, object] = {"sub": subject, "iat": now, "exp": now + ttl_seconds, **extra}
    role_value = Role(role).value
    if role_value != Role.BORROWER.value or "role" in extra:
        claims["role"] = role_value
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def main(argv: list[str] | None = None) -> int:
    """`python -m portal.auth --sub B-0001 [--role agent] [--ttl 3600]`: print a token."""
    parser = argparse.ArgumentParser(prog="python -m portal.auth", description=main.__doc__)
    parser.add_argument("--sub", required=True, help="borrower_id, agent id or operator id")
    parser.add_argument("--role", default="borrower", choices=[r.value for r in Role])
    parser.add_argument("--ttl", type=int, default=3600, help="seconds until the token expires")
    args = parser.parse_args(argv)
    secret = os.environ.get("PORTAL_JWT_SECRET")
    if not secret:
        print("PORTAL_JWT_SECRET is not set", file=sys.stderr)
        return 2
    print(mint_token(secret, args.sub, args.role, args.ttl))
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
