"""The one client factory: address, namespace, TLS or API key, converter, interceptors."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client
from temporalio.envconfig import ClientConfigProfile

from .config import Settings
from .converter import data_converter
from .telemetry import client_interceptors


async def connect(settings: Settings | None = None, **overrides: Any) -> Client:
    """Connect to Temporal as configured by the environment.

    The address and namespace come from the contract's variables; TLS, client certificates and
    API keys from temporalio's own environment configuration (TEMPORAL_TLS*, TEMPORAL_API_KEY,
    TEMPORAL_PROFILE / config file), so a cluster or Temporal Cloud needs no code change.
    """
    settings = settings or Settings.from_env()
    profile = ClientConfigProfile.load()
    config: dict[str, Any] = dict(profile.to_client_connect_config())
    config["target_host"] = settings.temporal_address
    config["namespace"] = settings.temporal_namespace
    config["data_converter"] = data_converter(settings)
    interceptors = list(config.pop("interceptors", []) or [])
    interceptors.extend(client_interceptors())
    config["interceptors"] = interceptors
    config.update(overrides)
    target = config.pop("target_host")
    return await Client.connect(target, **config)
