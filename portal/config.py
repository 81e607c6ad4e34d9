"""The portal's own configuration (beyond runtime.config.Settings), from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

MIN_SECRET_BYTES = 32


class PortalConfigError(ValueError):
    """The portal cannot start: a required variable is missing or invalid."""


class PortalConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    host: str = "127.0.0.1"
    """PORTAL_HOST: interface to bind (0.0.0.0 in a container)."""
    max_body_bytes: int = Field(default=16 * 1024, ge=256)
    """PORTAL_MAX_BODY_BYTES: larger request bodies are refused with 413."""
    rate_per_second: float = Field(default=5.0, gt=0)
    """PORTAL_RATE_PER_SECOND: sustained requests per second per token (token bucket refill)."""
    rate_burst: int = Field(default=20, ge=1)
    """PORTAL_RATE_BURST: bucket size, the burst a token may send at once."""
    temporal_timeout_seconds: float = Field(default=10.0, gt=0)
    """PORTAL_TEMPORAL_TIMEOUT_SECONDS: deadline of one Temporal call (query, signal, update)."""
    public_url: str | None = Field(default=None, pattern=r"^https?://")
    """PORTAL_PUBLIC_URL: the portal as borrowers' browsers reach it (the local payment provider's
    checkout links); default http://localhost:<PORTAL_PORT>."""

    staff_jwks: str | None = None
    """PORTAL_STAFF_JWKS: path or http(s) URL of the JSON Web Key Set that signs staff tokens (agent,
    agency, operator); unset: the portal accepts borrower tokens only."""
    staff_issuer: str | None = None
    """PORTAL_STAFF_ISSUER: the `iss` every staff token must carry (required with PORTAL_STAFF_JWKS)."""
    staff_audience: str | None = None
    """PORTAL_STAFF_AUDIENCE: the `aud` every staff token must carry (required with PORTAL_STAFF_JWKS)."""

    payments_provider: Literal["local", "stripe"] = "local"
    """PAYMENTS_PROVIDER: who takes a borrower's payment. `local` (the embedded default, dev only: it
    takes no money) or `stripe` (PaymentIntents)."""
    payments_webhook_secret: SecretStr | None = None
    """PAYMENTS_WEBHOOK_SECRET: HMAC-SHA256 key of POST /v1/payment-notifications (at least 32 bytes).
    Required unless the provider is `local`, which then signs with a key made for this process."""
    payments_local_auto_confirm_seconds: float | None = Field(default=None, ge=0, le=3600)
    """PAYMENTS_LOCAL_AUTO_CONFIRM_SECONDS: the local provider confirms a payment by itself this many
    seconds after it was started (default: never, the borrower confirms on the checkout page; 0.2 s
    with COLLECTIONS_DEMO=1)."""
    payments_local_notify_url: str | None = Field(default=None, pattern=r"^https?://")
    """PAYMENTS_LOCAL_NOTIFY_URL: where the local provider posts its signed notifications; default
    http://127.0.0.1:<PORTAL_PORT>/v1/payment-notifications (this portal)."""
    stripe_secret_key: SecretStr | None = None
    """PAYMENTS_STRIPE_SECRET_KEY: the Stripe API key (sk_live_... or a restricted rk_...)."""
    stripe_webhook_secret: SecretStr | None = None
    """PAYMENTS_STRIPE_WEBHOOK_SECRET: the signing secret (whsec_...) of the Stripe webhook endpoint
    that points at POST /v1/payment-notifications/stripe."""
    stripe_api_base: str = Field(default="https://api.stripe.com", pattern=r"^https?://")
    """PAYMENTS_STRIPE_API_BASE: the Stripe API's base URL (a proxy or a test server)."""

    demo: bool = False
    """COLLECTIONS_DEMO=1: this portal belongs to `collections demo` (local payments confirm by
    themselves after PAYMENTS_LOCAL_AUTO_CONFIRM_SECONDS, default 0.2 s)."""

    @model_validator(mode="after")
    def _consistent(self) -> PortalConfig:
        if self.staff_jwks and not (self.staff_issuer and self.staff_audience):
            raise ValueError("PORTAL_STAFF_JWKS needs PORTAL_STAFF_ISSUER and PORTAL_STAFF_AUDIENCE: "
                             "staff tokens are checked for both")
        if self.payments_webhook_secret is not None:
            require_webhook_secret(self.payments_webhook_secret.get_secret_value())
        if self.payments_provider != "local" and self.payments_webhook_secret is None:
            raise ValueError(f"PAYMENTS_PROVIDER={self.payments_provider} needs PAYMENTS_WEBHOOK_SECRET "
                             "(the key of POST /v1/payment-notifications)")
        if self.payments_provider == "stripe" and not (self.stripe_secret_key and self.stripe_webhook_secret):
            raise ValueError("PAYMENTS_PROVIDER=stripe needs PAYMENTS_STRIPE_SECRET_KEY and "
                             "PAYMENTS_STRIPE_WEBHOOK_SECRET")
        return self

    @property
    def auto_confirm_seconds(self) -> float | None:
        """When the local provider confirms by itself (None: only from its checkout page)."""
        if self.payments_local_auto_confirm_seconds is not None:
            return self.payments_local_auto_confirm_seconds
        return DEMO_AUTO_CONFIRM_SECONDS if self.demo else None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PortalConfig:
        e = os.environ if env is None else env
        values: dict[str, object] = {}
        names = {
            "PORTAL_HOST": "host",
            "PORTAL_MAX_BODY_BYTES": "max_body_bytes",
            "PORTAL_RATE_PER_SECOND": "rate_per_second",
            "PORTAL_RATE_BURST": "rate_burst",
            "PORTAL_TEMPORAL_TIMEOUT_SECONDS": "temporal_timeout_seconds",
            "PORTAL_PUBLIC_URL": "public_url",
            "PORTAL_STAFF_JWKS": "staff_jwks",
            "PORTAL_STAFF_ISSUER": "staff_issuer",
            "PORTAL_STAFF_AUDIENCE": "staff_audience",
            "PAYMENTS_PROVIDER": "payments_provider",
            "PAYMENTS_WEBHOOK_SECRET": "payments_webhook_secret",
            "PAYMENTS_LOCAL_AUTO_CONFIRM_SECONDS": "payments_local_auto_confirm_seconds",
            "PAYMENTS_LOCAL_NOTIFY_URL": "payments_local_notify_url",
            "PAYMENTS_STRIPE_SECRET_KEY": "stripe_secret_key",
            "PAYMENTS_STRIPE_WEBHOOK_SECRET": "stripe_webhook_secret",
            "PAYMENTS_STRIPE_API_BASE": "stripe_api_base",
            "COLLECTIONS_DEMO": "demo",
        }
        for env_name, field in names.items():
            raw = e.get(env_name)
            if raw not in (None, ""):
                values[field] = raw
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            by_field = {field: env_name for env_name, field in names.items()}
            secret = {"payments_webhook_secret", "stripe_secret_key", "stripe_webhook_secret"}

            def shown(field: str) -> str:
                return "(hidden)" if field in secret else repr(values.get(field))

            problems = "; ".join(
                f"{by_field[str(err['loc'][0])]}={shown(str(err['loc'][0]))}: {err['msg']}" if err["loc"]
                else str(err["msg"]).removeprefix("Value error, ")
                for err in exc.errors()
            )
            raise PortalConfigError(f"invalid portal configuration: {problems}") from None


DEMO_AUTO_CONFIRM_SECONDS = 0.2


def require_webhook_secret(secret: str) -> bytes:
    """PAYMENTS_WEBHOOK_SECRET, checked: at least 32 bytes, as for any HMAC-SHA256 key we accept."""
    raw = secret.encode("utf-8")
    if len(raw) < MIN_SECRET_BYTES:
        raise ValueError(f"PAYMENTS_WEBHOOK_SECRET is {len(raw)} bytes; it must be at least {MIN_SECRET_BYTES}")
    return raw


def require_jwt_secret(secret: str | None) -> bytes:
    """PORTAL_JWT_SECRET, checked: present and at least 32 bytes (RFC 7518 §3.2 for HS256)."""
    if not secret:
        raise PortalConfigError(
            "PORTAL_JWT_SECRET is not set: the portal verifies every request's HS256 token with it. "
            "Set it to at least 32 random bytes, e.g. "
            "PORTAL_JWT_SECRET=$(python -c 'import secrets; print(secrets.token_urlsafe(48))')"
        )
    raw = secret.encode("utf-8")
    if len(raw) < MIN_SECRET_BYTES:
        raise PortalConfigError(
            f"PORTAL_JWT_SECRET is {len(raw)} bytes; HS256 needs at least {MIN_SECRET_BYTES} "
            "(RFC 7518 section 3.2)"
        )
    return raw
