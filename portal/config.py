"""The portal's own configuration (beyond runtime.config.Settings), from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

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
    task_scan_limit: int = Field(default=500, ge=1)
    """PORTAL_TASK_SCAN_LIMIT: at most this many running loans are read to list an agent's tasks."""
    recent_payment_ids: int = Field(default=10_000, ge=0)
    """How many accepted payment ids the portal remembers (per process) to answer retries."""

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
            "PORTAL_TASK_SCAN_LIMIT": "task_scan_limit",
        }
        for env_name, field in names.items():
            raw = e.get(env_name)
            if raw not in (None, ""):
                values[field] = raw
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            by_field = {field: env_name for env_name, field in names.items()}
            problems = "; ".join(
                f"{by_field.get(str(err['loc'][0]), err['loc'][0])}={values.get(str(err['loc'][0]))!r}: {err['msg']}"
                for err in exc.errors()
            )
            raise PortalConfigError(f"invalid portal configuration: {problems}") from None


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
