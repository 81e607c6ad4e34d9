"""Collector tasks: a call or a field visit for a human (or automated) collection agent.

`AgentDesk` is the interface to the bank's case-management or dialer system; `OutboxAgentDesk`,
the embedded default, writes each task to ``<outbox>/agent_tasks.jsonl`` (``"action": "create"``)
and each cancellation to the same file (``"action": "cancel"``). Agents report back through the
workflow's ``record_contact_outcome`` update (the portal's agent door), not through this adapter.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from temporalio import activity

from domain.commands import AgentTaskRequest, Receipt, TaskCancellation

from ._filing import Filed, file_once
from .outbox import Outbox

CHANNEL = "agent_tasks"
LEDGER_CHANNEL = "agent_tasks_filed"


@runtime_checkable
class AgentDesk(Protocol):
    async def create_task(self, req: AgentTaskRequest) -> Filed:
        """Open the task (idempotent by ``req.key``); `Filed.reference` is the desk's task id."""
        ...

    async def cancel_task(self, req: TaskCancellation) -> Filed:
        """Withdraw the task ``req.task_id`` (idempotent by ``req.key``)."""
        ...


class OutboxAgentDesk:
    """The embedded default: tasks land in ``agent_tasks.jsonl`` for a desk to pick up."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    async def create_task(self, req: AgentTaskRequest) -> Filed:
        record = {"action": "create", **req.model_dump(mode="json", exclude={"key"})}
        added = await self.outbox.append(CHANNEL, req.key, record)
        return Filed(reference=req.task_id, details={"kind": req.kind}, duplicate=not added)

    async def cancel_task(self, req: TaskCancellation) -> Filed:
        record = {"action": "cancel", **req.model_dump(mode="json", exclude={"key"})}
        added = await self.outbox.append(CHANNEL, req.key, record)
        return Filed(reference=req.task_id, duplicate=not added)


class AgentTaskActivities:
    """The ``create_agent_task`` and ``cancel_agent_task`` activities."""

    def __init__(self, outbox: Outbox, desk: AgentDesk | None = None) -> None:
        self.outbox = outbox
        self.desk: AgentDesk = desk if desk is not None else OutboxAgentDesk(outbox)

    @activity.defn(name="create_agent_task")
    async def create_agent_task(self, req: AgentTaskRequest) -> Receipt:
        return await file_once(
            activity_name="create_agent_task",
            ledger=self.outbox,
            ledger_channel=LEDGER_CHANNEL,
            key=req.key,
            loan_id=req.loan_id,
            action=f"create {req.kind} task {req.task_id}",
            call=lambda: self.desk.create_task(req),
        )

    @activity.defn(name="cancel_agent_task")
    async def cancel_agent_task(self, req: TaskCancellation) -> Receipt:
        return await file_once(
            activity_name="cancel_agent_task",
            ledger=self.outbox,
            ledger_channel=LEDGER_CHANNEL,
            key=req.key,
            loan_id=req.loan_id,
            action=f"cancel task {req.task_id}",
            call=lambda: self.desk.cancel_task(req),
        )
