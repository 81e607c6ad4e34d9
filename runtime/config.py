"""Configuration from the environment, as the contract names it (docs/contract.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from domain.contract import DEFAULT_TASK_QUEUE

DEFAULT_TEMPORAL_ADDRESS = "localhost:7233"
DEFAULT_TEMPORAL_NAMESPACE = "default"
"""The contract's defaults, for when neither the settings nor Temporal's profile name one."""


class SmtpSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    host: str = "localhost"
    port: int = 1025
    sender: str = "collections@localhost"
    username: str | None = None
    password: str | None = None
    tls: Literal["none", "starttls", "tls"] = "none"


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    temporal_address: str | None = None
    """TEMPORAL_ADDRESS, or set by the caller. None: temporalio's profile (TEMPORAL_PROFILE,
    TEMPORAL_CONFIG_FILE) decides, else localhost:7233 (runtime.client.connect_config)."""
    temporal_namespace: str | None = None
    """TEMPORAL_NAMESPACE, or set by the caller. None: the profile's, else `default`."""
    task_queue: str = DEFAULT_TASK_QUEUE
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    outbox_dir: Path = Path("var/outbox")
    encryption_key: str | None = None
    """COLLECTIONS_ENCRYPTION_KEY: base64 of a 32-byte AES-256-GCM key; payload encryption off when unset."""
    encryption_old_keys: str | None = None
    """COLLECTIONS_ENCRYPTION_OLD_KEYS: comma-separated older keys that still decrypt (rotation)."""
    portal_url: str = "http://localhost:8000"
    """Where borrowers pay or ask for a plan; named in notices (COLLECTIONS_PORTAL_URL)."""
    portal_jwt_secret: str | None = None
    portal_port: int = 8000
    link_secret: str | None = None
    """COLLECTIONS_LINK_SECRET: signs the opt-out link every message carries (worker) and verifies it
    (portal); at least 16 bytes. The worker refuses to start without it."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = e.get(name)
            return value if value not in (None, "") else None

        smtp = SmtpSettings(
            host=get("SMTP_HOST") or "localhost",
            port=int(get("SMTP_PORT") or 1025),
            sender=get("SMTP_FROM") or "collections@localhost",
            username=get("SMTP_USERNAME"),
            password=get("SMTP_PASSWORD"),
            tls=(get("SMTP_TLS") or "none"),  # type: ignore[arg-type]
        )
        return cls(
            temporal_address=get("TEMPORAL_ADDRESS"),
            temporal_namespace=get("TEMPORAL_NAMESPACE"),
            task_queue=get("COLLECTIONS_TASK_QUEUE") or DEFAULT_TASK_QUEUE,
            smtp=smtp,
            outbox_dir=Path(get("COLLECTIONS_OUTBOX_DIR") or "var/outbox"),
            encryption_key=get("COLLECTIONS_ENCRYPTION_KEY"),
            encryption_old_keys=get("COLLECTIONS_ENCRYPTION_OLD_KEYS"),
            portal_url=get("COLLECTIONS_PORTAL_URL") or "http://localhost:8000",
            portal_jwt_secret=get("PORTAL_JWT_SECRET"),
            portal_port=int(get("PORTAL_PORT") or 8000),
            link_secret=get("COLLECTIONS_LINK_SECRET"),
        )
