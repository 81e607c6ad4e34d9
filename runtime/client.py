"""The one client factory: address, namespace, TLS or API key, converter, interceptors.

Where to connect is temporalio's own environment configuration (`temporalio.envconfig`): the
profile `TEMPORAL_PROFILE` names (default `default`) in the TOML file `TEMPORAL_CONFIG_FILE` names
(default `~/.config/temporalio/temporal.toml`), with `TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`,
`TEMPORAL_API_KEY`, `TEMPORAL_TLS*` and `TEMPORAL_GRPC_META_*` over it. What the caller says
explicitly (`Settings(temporal_address=...)`, the CLI's `--address` / `--namespace`) comes first,
and the contract's defaults (`localhost:7233`, namespace `default`) apply only when nothing says
otherwise. So `TEMPORAL_PROFILE=prod` alone connects where the profile says.
"""

from __future__ import annotations

from typing import Any

from temporalio.client import Client
from temporalio.envconfig import ClientConfigProfile

from .config import DEFAULT_TEMPORAL_ADDRESS, DEFAULT_TEMPORAL_NAMESPACE, Settings
from .converter import data_converter
from .telemetry import client_interceptors


class ClientConfigError(ValueError):
    """Temporal's client configuration (profile file, TEMPORAL_PROFILE) cannot be used."""


def connect_config(settings: Settings | None = None) -> dict[str, Any]:
    """The keyword arguments of `Client.connect` (`target_host` included) the configuration gives:
    explicit settings, then temporalio's profile and TEMPORAL_* variables, then the contract's
    defaults. No converter or interceptors (see `connect`)."""
    settings = settings or Settings.from_env()
    try:
        profile = ClientConfigProfile.load()
    except Exception as exc:  # the SDK core's ConfigError: a missing profile, a broken TOML file
        raise ClientConfigError(
            f"Temporal client configuration (TEMPORAL_CONFIG_FILE / TEMPORAL_PROFILE): {str(exc).strip()}"
        ) from None
    config: dict[str, Any] = dict(profile.to_client_connect_config())
    if settings.temporal_address:
        config["target_host"] = settings.temporal_address
    if settings.temporal_namespace:
        config["namespace"] = settings.temporal_namespace
    config.setdefault("target_host", DEFAULT_TEMPORAL_ADDRESS)
    config.setdefault("namespace", DEFAULT_TEMPORAL_NAMESPACE)
    return config


def target(settings: Settings | None = None) -> str:
    """Where `connect(settings)` goes, `host:port (namespace ns)`, for messages; never raises."""
    try:
        config = connect_config(settings)
    except ClientConfigError:
        return "(unusable Temporal client configuration)"
    return f"{config['target_host']} (namespace {config['namespace']})"


async def connect(settings: Settings | None = None, **overrides: Any) -> Client:
    """Connect to Temporal as configured (see the module docstring), with the project's data
    converter (pydantic JSON, payload encryption when a key is set) and interceptors (tracing)."""
    settings = settings or Settings.from_env()
    config = connect_config(settings)
    config["data_converter"] = data_converter(settings)
    interceptors = list(config.pop("interceptors", []) or [])
    interceptors.extend(client_interceptors())
    config["interceptors"] = interceptors
    config.update(overrides)
    host = config.pop("target_host")
    return await Client.connect(host, **config)
