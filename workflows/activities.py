"""How workflows call the outside world: activity options and the mapping of a book's action to its
activity. Activities are referenced by their definitions (class methods of activities/)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.agency import AgencyActivities
    from activities.agents import AgentTaskActivities
    from activities.borrower import BorrowerActivities, ConversationNote, NoteRequest
    from activities.bureau import BureauActivities
    from activities.email import EmailActivities
    from activities.legal import LegalActivities
    from activities.messaging import MessagingActivities
    from domain.commands import DeliveryResult, NoticeRequest, Receipt

RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=8,
    non_retryable_error_types=["PermanentDeliveryFailure", "InvalidRequest"],
)
OPTIONS: dict[str, Any] = dict(
    start_to_close_timeout=timedelta(seconds=30),
    schedule_to_close_timeout=timedelta(hours=1),
    retry_policy=RETRY,
)


LOCAL_OPTIONS: dict[str, Any] = dict(
    start_to_close_timeout=timedelta(seconds=30),
    schedule_to_close_timeout=timedelta(hours=1),
    retry_policy=RETRY,
)
"""Bookkeeping with our own systems (agent desk, agency, bureau, the borrower's entity) runs as local
activities on borrower-v1 loans: short calls that need no queue of their own, recorded as one marker in
the loan's history instead of three events and a workflow task (docs/performance.md)."""


async def local(method: Any, request: Any, summary: str) -> Any:
    """Run one short bookkeeping call as a local activity with the standard options."""
    return await workflow.execute_local_activity_method(method, request, summary=summary, **LOCAL_OPTIONS)


async def send_notice(req: NoticeRequest, summary: str) -> DeliveryResult:
    """Send one notice on its channel."""
    method: Any = {
        "sms": MessagingActivities.send_sms,
        "voice": MessagingActivities.send_voice,
        "email": EmailActivities.send_email,
    }[req.channel]
    return await workflow.execute_activity_method(method, req, summary=summary, **OPTIONS)


async def call(method: Any, request: Any, summary: str) -> Receipt:
    """Run one filing activity (task, placement, referral, report) with the standard options."""
    return await workflow.execute_activity_method(method, request, summary=summary, **OPTIONS)


__all__ = [
    "LOCAL_OPTIONS",
    "AgencyActivities",
    "BorrowerActivities",
    "ConversationNote",
    "NoteRequest",
    "local",
    "AgentTaskActivities",
    "BureauActivities",
    "EmailActivities",
    "LegalActivities",
    "MessagingActivities",
    "OPTIONS",
    "call",
    "send_notice",
]
