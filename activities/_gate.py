"""Asking the borrower's entity before a contact, shared by the send activities (email, sms, voice, bot)."""

from __future__ import annotations

from typing import Any

from temporalio.exceptions import ApplicationError

from domain.rules import ContactDecision, Verdict

from ._common import PERMANENT_DELIVERY_FAILURE, misconfigured


async def ask_first(gate: Any, req: Any) -> ContactDecision | None:
    """None when the contact may go (or the request carries no question); the refusal otherwise."""
    if getattr(req, "gate", None) is None:
        return None
    if gate is None:
        raise misconfigured(f"request {req.key} asks the borrower's entity first, but this worker has no contact "
                            "gate wired (worker/wiring.build_adapters passes one)")
    decision: ContactDecision = await gate.ask(req.gate)
    return None if decision.verdict == Verdict.ALLOW else decision


async def release_if_permanent(gate: Any, req: Any, exc: BaseException) -> None:
    """A contact that will never reach the person stops counting against the person's caps."""
    if gate is None or getattr(req, "gate", None) is None:
        return
    if isinstance(exc, ApplicationError) and exc.type == PERMANENT_DELIVERY_FAILURE:
        await gate.failed(req.gate.borrower_id, req.gate.question.attempt.key)
