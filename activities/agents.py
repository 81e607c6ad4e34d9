"""Collector tasks: a call or a field visit for a human (or automated) collection agent.

`AgentDesk` is the interface to the bank's case-management or dialer system; `OutboxAgentDesk`,
the embedded default, writes each task to ``<outbox>/agent_tasks.jsonl`` (``"action": "create"``)
and each cancellation to the same file (``"action": "cancel"``). Agents report back through the
workflow's ``record_contact_outcome`` update (the portal's agent door), not through this adapter.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from temporalio import activity

from domain.assignment import choose_agent
from domain.commands import AgentTaskRequest, BotCallResult, Receipt, TaskCancellation, TaskClosure, TaskReassignment

from ._filing import Filed, file_once
from ._gate import ask_first
from .borrower import ContactGate
from .outbox import Outbox

CHANNEL = "agent_tasks"
LEDGER_CHANNEL = "agent_tasks_filed"
SUPERVISOR_CHANNEL = "supervisor_notices"
BOT_CHANNEL = "bot_calls"
BOT_LEDGER = "bot_calls_done"


@runtime_checkable
class AgentDesk(Protocol):
    async def create_task(self, req: AgentTaskRequest) -> Filed:
        """Open the task (idempotent by ``req.key``); `Filed.reference` is the desk's task id."""
        ...

    async def cancel_task(self, req: TaskCancellation) -> Filed:
        """Withdraw the task ``req.task_id`` (idempotent by ``req.key``)."""
        ...

    async def reassign_task(self, req: TaskReassignment) -> Filed:
        """Give the task to another agent and notify the supervisor; `details["assigned_to"]`."""
        ...

    async def close_task(self, req: TaskClosure) -> Filed:
        """The agent reported the outcome: the task is done (idempotent by ``req.key``)."""
        ...


@runtime_checkable
class VoiceBot(Protocol):
    """An automated agent (IVR, voice bot, predictive dialer) that works a call task first and
    reports the same outcome shape a human does."""

    async def call(self, req: AgentTaskRequest) -> BotCallResult: ...


class OutboxVoiceBot:
    """The embedded default: records the call it would place in ``bot_calls.jsonl``. With nobody
    on the line it reports ``no_answer``, so a human collector gets the task next."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    async def call(self, req: AgentTaskRequest) -> BotCallResult:
        record = {"loan_id": req.loan_id, "to": req.phone, "locale": req.locale, "amount_owed": f"{req.amount_owed:.2f}",
                  "currency": req.currency, "days_past_due": req.days_past_due, "outcome": "no_answer"}
        added = await self.outbox.append(BOT_CHANNEL, req.key, record)
        return BotCallResult(key=req.key, outcome="no_answer", duplicate=not added)


class OutboxAgentDesk:
    """The embedded default: tasks land in ``agent_tasks.jsonl`` for a desk to pick up."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def loads(self) -> tuple[dict[str, int], dict[str, int]]:
        """Open tasks per agent, and tasks ever assigned per team (for round robin), from the file."""
        owner: dict[str, str] = {}
        team_turns: dict[str, int] = {}
        for r in self.outbox.read(CHANNEL):
            action = r.get("action")
            if action in ("create", "reassign") and r.get("assigned_to"):
                owner[r["task_id"]] = r["assigned_to"]
                if r.get("team"):
                    team_turns[r["team"]] = team_turns.get(r["team"], 0) + 1
            elif action in ("cancel", "close"):
                owner.pop(r.get("task_id", ""), None)
        load: dict[str, int] = {}
        for agent in owner.values():
            load[agent] = load.get(agent, 0) + 1
        return load, team_turns

    def _assign(self, candidates: list[str], strategy: str, team: str | None, exclude: list[str]) -> str | None:
        if not candidates:
            return None
        load, turns = self.loads()
        return choose_agent(candidates, load, strategy, turns.get(team or "", 0), exclude)

    async def create_task(self, req: AgentTaskRequest) -> Filed:
        assigned = req.assigned_to or self._assign(req.candidates, req.strategy, req.team, [])
        record = {"action": "create", **req.model_dump(mode="json", exclude={"key", "candidates"}),
                  "assigned_to": assigned}
        added = await self.outbox.append(CHANNEL, req.key, record)
        return Filed(reference=req.task_id, details={"kind": req.kind, "assigned_to": assigned, "team": req.team},
                     duplicate=not added)

    async def reassign_task(self, req: TaskReassignment) -> Filed:
        assigned = self._assign(req.candidates, req.strategy, req.team, [req.from_agent] if req.from_agent else [])
        record = {"action": "reassign", "task_id": req.task_id, "loan_id": req.loan_id, "kind": req.kind,
                  "team": req.team, "from_agent": req.from_agent, "assigned_to": assigned, "reason": req.reason,
                  "due_by": req.due_by.isoformat()}
        added = await self.outbox.append(CHANNEL, req.key, record)
        if req.supervisor:
            await self.outbox.append(SUPERVISOR_CHANNEL, req.key, {
                "supervisor": req.supervisor, "task_id": req.task_id, "loan_id": req.loan_id, "team": req.team,
                "from_agent": req.from_agent, "to_agent": assigned, "reason": req.reason})
        return Filed(reference=req.task_id, details={"assigned_to": assigned}, duplicate=not added)

    async def close_task(self, req: TaskClosure) -> Filed:
        record = {"action": "close", **req.model_dump(mode="json", exclude={"key"})}
        added = await self.outbox.append(CHANNEL, req.key, record)
        return Filed(reference=req.task_id, duplicate=not added)

    async def cancel_task(self, req: TaskCancellation) -> Filed:
        record = {"action": "cancel", **req.model_dump(mode="json", exclude={"key"})}
        added = await self.outbox.append(CHANNEL, req.key, record)
        return Filed(reference=req.task_id, duplicate=not added)


class AgentTaskActivities:
    """The ``create_agent_task`` and ``cancel_agent_task`` activities."""

    def __init__(self, outbox: Outbox, desk: AgentDesk | None = None, bot: VoiceBot | None = None, *,
                 gate: ContactGate | None = None) -> None:
        self.outbox = outbox
        self.desk: AgentDesk = desk if desk is not None else OutboxAgentDesk(outbox)
        self.bot: VoiceBot = bot if bot is not None else OutboxVoiceBot(outbox)
        self.gate = gate
        """Asks the borrower's entity before the bot dials (requests that carry a `gate`)."""

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

    @activity.defn(name="reassign_agent_task")
    async def reassign_agent_task(self, req: TaskReassignment) -> Receipt:
        return await file_once(
            activity_name="reassign_agent_task",
            ledger=self.outbox,
            ledger_channel=LEDGER_CHANNEL,
            key=req.key,
            loan_id=req.loan_id,
            action=f"reassign task {req.task_id} from {req.from_agent}",
            call=lambda: self.desk.reassign_task(req),
        )

    @activity.defn(name="close_agent_task")
    async def close_agent_task(self, req: TaskClosure) -> Receipt:
        return await file_once(
            activity_name="close_agent_task",
            ledger=self.outbox,
            ledger_channel=LEDGER_CHANNEL,
            key=req.key,
            loan_id=req.loan_id,
            action=f"close task {req.task_id} ({req.outcome})",
            call=lambda: self.desk.close_task(req),
        )

    @activity.defn(name="place_bot_call")
    async def place_bot_call(self, req: AgentTaskRequest) -> BotCallResult:
        """The automated agent works the call first; its outcome is remembered by key, so a retry
        never calls the borrower twice."""
        previous = await self.outbox.get(BOT_LEDGER, req.key)
        if previous is not None:
            return BotCallResult.model_validate({**previous["result"], "duplicate": True})
        decision = await ask_first(self.gate, req)
        if decision is not None:
            return BotCallResult(key=req.key, outcome="no_answer", decision=decision)
        result = await self.bot.call(req)
        await self.outbox.append(BOT_LEDGER, req.key, {"loan_id": req.loan_id,
                                                        "result": result.model_dump(mode="json")})
        activity.logger.info("place_bot_call key=%s loan=%s: %s", req.key, req.loan_id, result.outcome)
        return result
