"""The shape shared by the adapters that file something with another system (agent desk, agency,
legal, credit bureau): check the ledger, call the provider with the key, record, answer a Receipt."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from temporalio import activity

from domain.commands import Receipt

from .outbox import Outbox


@dataclass(frozen=True)
class Filed:
    """What a provider answers: its reference for the filing, and anything worth keeping."""

    reference: str | None
    details: dict[str, Any] = field(default_factory=dict)
    duplicate: bool = False
    """True when the provider itself recognised the key as already handled."""


async def file_once(
    *,
    activity_name: str,
    ledger: Outbox,
    ledger_channel: str,
    key: str,
    loan_id: str,
    action: str,
    call: Callable[[], Awaitable[Filed]],
) -> Receipt:
    log = activity.logger
    previous = await ledger.get(ledger_channel, key)
    if previous is not None:
        log.info("%s key=%s loan=%s: already handled, nothing done again", activity_name, key, loan_id)
        return Receipt(
            key=key,
            reference=previous.get("reference"),
            duplicate=True,
            details=previous.get("details") or {},
        )
    filed = await call()
    await ledger.append(
        ledger_channel,
        key,
        {"loan_id": loan_id, "action": action, "reference": filed.reference, "details": filed.details},
    )
    log.info(
        "%s key=%s loan=%s: %s, reference %s%s",
        activity_name,
        key,
        loan_id,
        action,
        filed.reference,
        " (the provider already had it)" if filed.duplicate else "",
    )
    return Receipt(key=key, reference=filed.reference, duplicate=filed.duplicate, details=filed.details)
