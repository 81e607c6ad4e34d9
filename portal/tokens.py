"""What borrower and staff tokens share: decoding with PyJWT, and its refusals said plainly."""

from __future__ import annotations

from typing import Any

import jwt

LEEWAY_SECONDS = 30


class TokenRejected(Exception):
    """The token is not valid; `reason` says why, for the 401."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode(token: str, key: Any, algorithm: str, *, require: list[str], audience: str | None = None,
           issuer: str | None = None) -> dict[str, Any]:
    """The claims of a token signed with `algorithm` by `key`; TokenRejected naming the reason otherwise."""
    options: dict[str, Any] = {"require": require}
    if audience is None:
        options["verify_aud"] = False
    try:
        return jwt.decode(token, key, algorithms=[algorithm], audience=audience, issuer=issuer, options=options,
                          leeway=LEEWAY_SECONDS)
    except jwt.ExpiredSignatureError:
        raise TokenRejected("token has expired") from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenRejected(f"token lacks the required claim {exc.claim!r}") from None
    except jwt.InvalidIssuerError:
        raise TokenRejected("token 'iss' is not the staff issuer this portal trusts") from None
    except jwt.InvalidAudienceError:
        raise TokenRejected("token 'aud' does not name this portal") from None
    except jwt.InvalidSignatureError:
        raise TokenRejected("token signature is not valid") from None
    except jwt.InvalidAlgorithmError:
        raise TokenRejected(f"token must be signed with {algorithm}") from None
    except jwt.ImmatureSignatureError:
        raise TokenRejected("token is not valid yet (nbf/iat in the future)") from None
    except jwt.InvalidTokenError as exc:
        raise TokenRejected(f"token is not valid: {exc}") from None


def subject_of(claims: dict[str, Any]) -> str:
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject.strip() or len(subject) > 128:
        raise TokenRejected("token 'sub' must be a non-empty string of at most 128 characters")
    return subject
