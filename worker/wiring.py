"""The one place adapters are chosen and wired from configuration.

Everything the worker registers comes from here: the workflow classes (`workflows.WORKFLOWS`) and
the bound `@activity.defn` methods of the adapter instances built from `Settings` and the
provider variables below.

Provider choice for the channels without a protocol of their own (environment):

| variable | values | default |
| --- | --- | --- |
| `COLLECTIONS_SMS_PROVIDER` | `outbox` (write to the outbox file) or `webhook` (HTTP POST) | `outbox` |
| `COLLECTIONS_SMS_WEBHOOK_URL`, `COLLECTIONS_SMS_WEBHOOK_TOKEN` | where `webhook` posts, and its bearer token | none |
| `COLLECTIONS_VOICE_PROVIDER` | `outbox` or `webhook` | `outbox` |
| `COLLECTIONS_VOICE_WEBHOOK_URL`, `COLLECTIONS_VOICE_WEBHOOK_TOKEN` | as for SMS | none |
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from temporalio import activity

from runtime.config import Settings

ProviderKind = Literal["outbox", "webhook"]


class WiringError(ValueError):
    """The configuration names something that cannot be wired (a clear message for the operator)."""


@dataclass(frozen=True)
class ProviderChoice:
    kind: ProviderKind = "outbox"
    webhook_url: str | None = None
    webhook_token: str | None = None


@dataclass(frozen=True)
class Providers:
    sms: ProviderChoice = ProviderChoice()
    voice: ProviderChoice = ProviderChoice()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Providers:
        e = os.environ if env is None else env
        return cls(sms=_choice(e, "SMS"), voice=_choice(e, "VOICE"))


def _choice(env: Mapping[str, str], channel: str) -> ProviderChoice:
    prefix = f"COLLECTIONS_{channel}_"
    kind = (env.get(prefix + "PROVIDER") or "outbox").strip().lower()
    if kind not in ("outbox", "webhook"):
        raise WiringError(f"{prefix}PROVIDER must be 'outbox' or 'webhook', not {kind!r}")
    url = env.get(prefix + "WEBHOOK_URL") or None
    token = env.get(prefix + "WEBHOOK_TOKEN") or None
    if kind == "webhook" and not url:
        raise WiringError(f"{prefix}PROVIDER=webhook needs {prefix}WEBHOOK_URL")
    if url and not url.startswith(("http://", "https://")):
        raise WiringError(f"{prefix}WEBHOOK_URL must be an http:// or https:// URL, not {url!r}")
    return ProviderChoice(kind=kind, webhook_url=url, webhook_token=token)  # type: ignore[arg-type]


def workflows() -> list[type]:
    """The workflow classes the worker runs."""
    from workflows import WORKFLOWS

    return list(WORKFLOWS)


def activity_methods(obj: Any) -> list[Callable[..., Any]]:
    """The bound `@activity.defn` methods of an adapter instance, in a stable order."""
    found: list[Callable[..., Any]] = []
    for name in sorted(dir(type(obj))):
        if name.startswith("__"):
            continue
        attr = getattr(type(obj), name, None)
        if attr is None or not callable(attr):
            continue
        if activity._Definition.from_callable(attr) is None:  # noqa: SLF001 - the SDK's own registry
            continue
        found.append(getattr(obj, name))
    return found


def opt_out_links(settings: Settings) -> Any:
    """The signer of the opt-out link every message carries; COLLECTIONS_LINK_SECRET is required."""
    from runtime.links import OptOutLinks

    if not settings.link_secret:
        raise WiringError("COLLECTIONS_LINK_SECRET is not set: it signs the opt-out link every message must carry "
                          "(the portal verifies it with the same secret); use at least 16 random bytes")
    try:
        return OptOutLinks(settings.link_secret, settings.portal_url)
    except ValueError as err:
        raise WiringError(str(err)) from None


def build_adapters(settings: Settings, providers: Providers | None = None, client: Any = None) -> list[Any]:
    """The adapter instances of the embedded default, or of the configured providers. `client` is the
    worker's own Temporal client (the borrower's entity is reached through it); without one, the
    gate connects by the settings when first used."""
    from activities import (
        AgencyActivities,
        AgentTaskActivities,
        BorrowerActivities,
        BureauActivities,
        ContactGate,
        EmailActivities,
        LegalActivities,
        MessagingActivities,
        Outbox,
        OutboxSmsProvider,
        OutboxVoiceProvider,
        WorkflowTrail,
        WebhookSmsProvider,
        WebhookVoiceProvider,
    )

    providers = providers or Providers.from_env()
    outbox = Outbox(settings.outbox_dir)

    if providers.sms.kind == "webhook":
        sms: Any = WebhookSmsProvider(providers.sms.webhook_url, providers.sms.webhook_token)
    else:
        sms = OutboxSmsProvider(outbox)
    if providers.voice.kind == "webhook":
        voice: Any = WebhookVoiceProvider(providers.voice.webhook_url, providers.voice.webhook_token)
    else:
        voice = OutboxVoiceProvider(outbox)

    if client is None:
        async def connect_lazily() -> Any:
            from runtime.client import connect

            return await connect(settings)

        client = connect_lazily
    gate = ContactGate(client, task_queue=settings.task_queue)
    links = opt_out_links(settings)
    return [
        EmailActivities(settings.smtp, outbox, settings.portal_url, gate=gate, links=links),
        MessagingActivities(sms, voice, outbox, settings.portal_url, gate=gate, links=links),
        AgentTaskActivities(outbox, gate=gate),
        AgencyActivities(outbox),
        LegalActivities(outbox, trail=WorkflowTrail(client)),
        BureauActivities(outbox),
        BorrowerActivities(gate),
    ]


def activities(settings: Settings, providers: Providers | None = None, client: Any = None) -> list[Callable[..., Any]]:
    """Every activity the worker registers: the bound methods of the wired adapters."""
    result: list[Callable[..., Any]] = []
    seen: dict[str, str] = {}
    for adapter in build_adapters(settings, providers, client):
        for method in activity_methods(adapter):
            defn = activity._Definition.must_from_callable(method)  # noqa: SLF001
            name = defn.name or method.__name__
            if name in seen:
                raise WiringError(
                    f"activity {name!r} is defined by both {seen[name]} and {type(adapter).__name__}"
                )
            seen[name] = type(adapter).__name__
            result.append(method)
    return result
