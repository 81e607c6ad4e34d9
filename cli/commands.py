"""Operator commands: look at loans, and act on them through the contract's signals and updates.

Every body is validated with the domain models before anything is sent: a bad argument is reported
with the field and the reason, and nothing changes (exit status 2).
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ValidationError
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text
from temporalio.client import (
    Client,
    RPCTimeoutOrCancelledError,
    WorkflowExecution,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from domain import contract
from domain.freshness import as_of_now
from domain.queue import parse_task_entry
from domain.borrower import BorrowerStatus, ClearFlag
from domain.models import (
    ContactOutcome,
    DisputeResolved,
    LoanState,
    PaymentPlanProposal,
    PlanDecision,
    Stage,
    Status,
)
from domain.rules import BorrowerFlags
from domain.money import q

from .render import STAGE_STYLE, STATE_STYLE, decision_renderable, money, status_renderable, styled
from .render import _details as event_details

RPC_TIMEOUT = timedelta(seconds=15)


class CommandError(Exception):
    """A command failed for a reason the operator can act on; `code` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def validate(model: type[BaseModel], data: dict[str, Any]) -> Any:
    """The body as the model, or a CommandError naming the field and the reason (exit 2)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        reasons = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ())) or "body"
            reasons.append(f"{loc}: {str(err.get('msg', 'invalid')).removeprefix('Value error, ')}")
        raise CommandError("; ".join(reasons), code=2) from None


def _not_found(loan_id: str, exc: RPCError) -> CommandError:
    if "completed" in exc.message.lower() or "closed" in exc.message.lower():
        return CommandError(f"loan {loan_id}: its workflow {contract.workflow_id(loan_id)} has already ended")
    return CommandError(f"loan {loan_id}: no workflow {contract.workflow_id(loan_id)} (unknown loan?)")


def _rpc_error(loan_id: str, exc: RPCError) -> CommandError:
    if exc.status == RPCStatusCode.NOT_FOUND:
        return _not_found(loan_id, exc)
    return CommandError(f"loan {loan_id}: Temporal refused the request: {exc.message}")


def _cause_message(exc: BaseException) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ApplicationError):
            return cause.message
        cause = cause.__cause__
    return str(exc.__cause__ or exc)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


async def fetch_status(client: Client, loan_id: str) -> Status:
    handle = client.get_workflow_handle(contract.workflow_id(loan_id))
    try:
        status = await handle.query(contract.QUERY_STATUS, result_type=Status, rpc_timeout=RPC_TIMEOUT)
        # as of now: the loan's figures are as of its last wake; the same pure accrual brings them forward
        return as_of_now(status, datetime.now(UTC))
    except RPCError as exc:
        if exc.status == RPCStatusCode.DEADLINE_EXCEEDED:
            raise CommandError(
                f"loan {loan_id}: no answer to the status query within {RPC_TIMEOUT.seconds}s; is a worker running?"
            ) from None
        raise _rpc_error(loan_id, exc) from None
    except (WorkflowQueryFailedError, WorkflowQueryRejectedError) as exc:
        raise CommandError(f"loan {loan_id}: status query failed: {exc}") from None


def show(console: Console, model: BaseModel, renderable: Callable[[], Any], *, as_json: bool) -> int:
    """A status on the terminal: its JSON, or its tables."""
    if as_json:
        console.print_json(model.model_dump_json())
    else:
        console.print(renderable())
    return 0


async def cmd_status(client: Client, console: Console, loan_id: str, *, events: int, as_json: bool) -> int:
    status = await fetch_status(client, loan_id)
    return show(console, status, lambda: status_renderable(status, events=events), as_json=as_json)


@dataclass(frozen=True)
class LoanRow:
    """A loan as visibility sees it: its search attributes and execution status."""

    loan_id: str
    workflow_id: str
    stage: str | None
    state: str | None
    dpd: int | None
    outstanding: Decimal | None
    execution_status: str
    start_time: str

    @classmethod
    def of(cls, wf: WorkflowExecution) -> LoanRow:
        sa = wf.typed_search_attributes
        from .intake import KEY_DPD, KEY_LOAN_ID, KEY_OUTSTANDING, KEY_STAGE, KEY_STATE

        outstanding = sa.get(KEY_OUTSTANDING)
        loan_id = sa.get(KEY_LOAN_ID) or wf.id.removeprefix("loan-")
        return cls(
            loan_id=loan_id,
            workflow_id=wf.id,
            stage=sa.get(KEY_STAGE),
            state=sa.get(KEY_STATE),
            dpd=sa.get(KEY_DPD),
            outstanding=q(Decimal(str(outstanding))) if outstanding is not None else None,
            execution_status=wf.status.name.lower() if wf.status else "unknown",
            start_time=wf.start_time.isoformat(timespec="seconds"),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "loan_id": self.loan_id,
            "workflow_id": self.workflow_id,
            "stage": self.stage,
            "state": self.state,
            "days_past_due": self.dpd,
            "outstanding": f"{self.outstanding:.2f}" if self.outstanding is not None else None,
            "execution_status": self.execution_status,
            "start_time": self.start_time,
        }


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def visibility_query(
    *,
    stage: str | None = None,
    state: str | None = None,
    min_dpd: int | None = None,
    max_dpd: int | None = None,
    running_only: bool = False,
    extra: str | None = None,
) -> str:
    """The visibility filter for CollectionWorkflow executions on the contract's search attributes."""
    clauses = [f"WorkflowType = {_quote(contract.COLLECTION_WORKFLOW)}"]
    if stage:
        clauses.append(f"{contract.SA_STAGE} = {_quote(stage)}")
    if state:
        clauses.append(f"{contract.SA_STATE} = {_quote(state)}")
    if min_dpd is not None:
        clauses.append(f"{contract.SA_DPD} >= {int(min_dpd)}")
    if max_dpd is not None:
        clauses.append(f"{contract.SA_DPD} <= {int(max_dpd)}")
    if running_only:
        clauses.append("ExecutionStatus = 'Running'")
    if extra:
        clauses.append(f"({extra})")
    return " AND ".join(clauses)


async def list_loans(client: Client, query: str, limit: int | None = None) -> list[LoanRow]:
    rows: list[LoanRow] = []
    try:
        async for wf in client.list_workflows(query, limit=limit):
            rows.append(LoanRow.of(wf))
    except RPCError as exc:
        raise CommandError(f"visibility query refused: {exc.message} (query: {query})") from None
    return rows


async def cmd_list(
    client: Client,
    console: Console,
    *,
    stage: str | None,
    state: str | None,
    min_dpd: int | None,
    max_dpd: int | None,
    running: bool,
    query: str | None,
    limit: int,
    as_json: bool,
) -> int:
    for name, value, allowed in (("--stage", stage, Stage), ("--state", state, LoanState)):
        if value is not None and value not in {m.value for m in allowed}:
            raise CommandError(
                f"{name}: {value!r} is not one of {', '.join(m.value for m in allowed)}", code=2
            )
    q_ = visibility_query(stage=stage, state=state, min_dpd=min_dpd, max_dpd=max_dpd, running_only=running, extra=query)
    rows = await list_loans(client, q_, limit=limit)
    if as_json:
        console.print_json(json.dumps([r.as_dict() for r in rows]))
        return 0
    table = Table(title=f"{len(rows)} loan(s)  [dim]{q_}[/dim]", title_justify="left")
    for col, just in (("loan", "left"), ("state", "left"), ("stage", "left"), ("DPD", "right"),
                      ("outstanding", "right"), ("workflow", "left"), ("started", "left")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in rows:
        table.add_row(
            r.loan_id,
            styled(r.state, STATE_STYLE),
            styled(r.stage, STAGE_STYLE),
            str(r.dpd) if r.dpd is not None else "—",
            money(r.outstanding),
            r.execution_status,
            r.start_time,
        )
    console.print(table)
    return 0


async def cmd_summary(client: Client, console: Console, *, query: str | None, as_json: bool) -> int:
    rows = await list_loans(client, visibility_query(extra=query))
    groups: dict[tuple[str, str], list[LoanRow]] = defaultdict(list)
    for r in rows:
        groups[(r.state or "unknown", r.stage or "—")].append(r)
    stage_rank = {s.value: i for i, s in enumerate(Stage)}
    state_rank = {s.value: i for i, s in enumerate(LoanState)}
    ordered = sorted(groups.items(), key=lambda kv: (state_rank.get(kv[0][0], 99), stage_rank.get(kv[0][1], 99)))
    total_count = len(rows)
    total_outstanding = sum((r.outstanding or Decimal(0) for r in rows), Decimal(0))
    if as_json:
        console.print_json(
            json.dumps(
                {
                    "groups": [
                        {
                            "state": state,
                            "stage": None if stage == "—" else stage,
                            "loans": len(items),
                            "outstanding": f"{sum((i.outstanding or Decimal(0) for i in items), Decimal(0)):.2f}",
                        }
                        for (state, stage), items in ordered
                    ],
                    "loans": total_count,
                    "outstanding": f"{total_outstanding:.2f}",
                }
            )
        )
        return 0
    table = Table(title="Portfolio by state and stage", title_justify="left", show_footer=True)
    table.add_column("state", footer="all")
    table.add_column("stage")
    table.add_column("loans", justify="right", footer=str(total_count))
    table.add_column("outstanding", justify="right", footer=money(total_outstanding))
    table.add_column("avg DPD", justify="right")
    for (state, stage), items in ordered:
        dpds = [i.dpd for i in items if i.dpd is not None]
        table.add_row(
            styled(state, STATE_STYLE),
            styled(None if stage == "—" else stage, STAGE_STYLE),
            str(len(items)),
            money(sum((i.outstanding or Decimal(0) for i in items), Decimal(0))),
            f"{sum(dpds) / len(dpds):.0f}" if dpds else "—",
        )
    console.print(table)
    return 0


# --------------------------------------------------------------------------------------------
# Acting
# --------------------------------------------------------------------------------------------


async def send_signal(client: Client, loan_id: str, name: str, body: BaseModel) -> None:
    handle = client.get_workflow_handle(contract.workflow_id(loan_id))
    try:
        await handle.signal(name, body, rpc_timeout=RPC_TIMEOUT)
    except RPCError as exc:
        raise _rpc_error(loan_id, exc) from None


async def cmd_signal(client: Client, console: Console, loan_id: str, name: str, body: BaseModel, what: str) -> int:
    await send_signal(client, loan_id, name, body)
    console.print(f"{what}: signal [bold]{name}[/bold] sent to {contract.workflow_id(loan_id)}")
    console.print(Text("The workflow applies it on its next task; `collections status` shows the result "
                       "(a refused signal shows up there as a rejected event).", style="dim"))
    return 0


async def run_update(client: Client, loan_id: str, name: str, body: BaseModel, result_type: type) -> Any:
    handle = client.get_workflow_handle(contract.workflow_id(loan_id))
    try:
        return await handle.execute_update(name, body, result_type=result_type, rpc_timeout=RPC_TIMEOUT)
    except WorkflowUpdateFailedError as exc:
        raise CommandError(f"loan {loan_id}: {name} refused: {_cause_message(exc)}", code=2) from None
    except RPCTimeoutOrCancelledError:
        raise CommandError(f"loan {loan_id}: no answer within {RPC_TIMEOUT.seconds}s; is a worker running?") from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.DEADLINE_EXCEEDED:
            raise CommandError(f"loan {loan_id}: no answer within {RPC_TIMEOUT.seconds}s; is a worker running?") from None
        raise _rpc_error(loan_id, exc) from None


async def cmd_propose_plan(client: Client, console: Console, loan_id: str, body: PaymentPlanProposal, *, as_json: bool) -> int:
    decision: PlanDecision = await run_update(
        client, loan_id, contract.UPDATE_PROPOSE_PAYMENT_PLAN, body, PlanDecision
    )
    if as_json:
        console.print_json(decision.model_dump_json())
    else:
        console.print(decision_renderable(decision))
    return 0 if decision.accepted else 1


async def cmd_record_outcome(client: Client, console: Console, loan_id: str, body: ContactOutcome, *, as_json: bool) -> int:
    status: Status = await run_update(client, loan_id, contract.UPDATE_RECORD_CONTACT_OUTCOME, body, Status)
    if as_json:
        console.print_json(status.model_dump_json())
    else:
        console.print(f"outcome [bold]{body.outcome.value}[/bold] recorded for task {body.task_id}")
        console.print(status_renderable(status, events=5))
    return 0


# --------------------------------------------------------------------------------------------
# Agents' work: open tasks across running loans
# --------------------------------------------------------------------------------------------

TASK_QUERY_TIMEOUT = timedelta(seconds=8)


@dataclass(frozen=True)
class TaskRow:
    """An open agent task of a running loan, with what the desk needs to rank it."""

    loan_id: str
    task_id: str
    kind: str
    stage: str
    assigned_to: str | None
    team: str | None
    created_at: datetime
    due_by: datetime | None
    escalations: int
    dpd: int
    owed: Decimal

    def as_dict(self) -> dict[str, Any]:
        return {
            "loan_id": self.loan_id,
            "task_id": self.task_id,
            "kind": self.kind,
            "stage": self.stage,
            "assigned_to": self.assigned_to,
            "team": self.team,
            "created_at": self.created_at.isoformat(),
            "due_by": self.due_by.isoformat() if self.due_by else None,
            "escalations": self.escalations,
            "days_past_due": self.dpd,
            "owed": f"{self.owed:.2f}",
        }


@dataclass
class TaskScan:
    tasks: list[TaskRow]
    loans_scanned: int
    truncated: bool
    """More running loans than the scan limit: the list may be incomplete."""
    unanswered: list[str]
    """Loans whose status query got no answer (no worker? busy?): their tasks are missing."""

    @property
    def complete(self) -> bool:
        return not self.truncated and not self.unanswered


async def scan_open_tasks(
    client: Client,
    task_queue: str,
    *,
    agent: str | None = None,
    team: str | None = None,
    limit: int = 500,
    concurrency: int = 16,
    query_timeout: timedelta = TASK_QUERY_TIMEOUT,
) -> TaskScan:
    """Open tasks of the running loans on `task_queue`, from one visibility query read to its last page:
    a loan writes its open tasks into search attributes (`OpenTasks`, `TaskAgents`; domain/queue.py), so no
    loan is read and no worker needs to answer. Loans opened before that (no `BorrowerId`) are read one by
    one, at most `limit` of them (said, never silent)."""
    from .intake import KEY_BORROWER_ID, KEY_DPD, KEY_LOAN_ID, KEY_OPEN_TASKS, KEY_OUTSTANDING

    query = (f"WorkflowType = '{contract.COLLECTION_WORKFLOW}' AND ExecutionStatus = 'Running' "
             f"AND TaskQueue = '{_quote_value(task_queue)}'")
    if agent is not None:
        query += f" AND ({contract.SA_TASK_AGENTS} = '{_quote_value(agent)}' OR {contract.SA_BORROWER_ID} IS NULL)"
    tasks: list[TaskRow] = []
    legacy: list[str] = []
    scanned = 0
    try:
        async for wf in client.list_workflows(query, page_size=1000):
            loan_id = wf.typed_search_attributes.get(KEY_LOAN_ID)
            if not loan_id or wf.id != contract.workflow_id(loan_id):
                continue
            scanned += 1
            attrs = wf.typed_search_attributes
            if attrs.get(KEY_BORROWER_ID) is None:
                legacy.append(loan_id)
                continue
            dpd = attrs.get(KEY_DPD) or 0
            owed = Decimal(str(attrs.get(KEY_OUTSTANDING) or 0)).quantize(Decimal("0.01"))
            for entry in attrs.get(KEY_OPEN_TASKS) or []:
                t = parse_task_entry(entry)
                if t.kind == "agency" or (agent is not None and t.assigned_to != agent) or \
                        (team is not None and t.team != team):
                    continue
                tasks.append(TaskRow(loan_id=loan_id, task_id=t.task_id, kind=t.kind, stage=t.stage.value,
                                     assigned_to=t.assigned_to, team=t.team, created_at=t.created_at,
                                     due_by=t.due_by, escalations=t.escalations, dpd=dpd, owed=owed))
    except RPCError as exc:
        raise CommandError(f"visibility query refused: {exc.message} (query: {query})") from None
    truncated = len(legacy) > limit
    gate = asyncio.Semaphore(concurrency)
    unanswered: list[str] = []

    async def one(loan_id: str) -> list[TaskRow]:
        async with gate:
            handle = client.get_workflow_handle(contract.workflow_id(loan_id))
            try:
                status: Status = await handle.query(contract.QUERY_STATUS, result_type=Status,
                                                    rpc_timeout=query_timeout)
            except RPCError as exc:
                if exc.status == RPCStatusCode.NOT_FOUND:
                    return []  # ended between the list and the query: no open tasks any more
                unanswered.append(loan_id)
                return []
            except (RPCTimeoutOrCancelledError, WorkflowQueryFailedError, WorkflowQueryRejectedError):
                unanswered.append(loan_id)
                return []
        if status.state == LoanState.CLOSED:
            return []
        return [
            TaskRow(
                loan_id=status.loan_id, task_id=t.task_id, kind=t.kind, stage=t.stage.value,
                assigned_to=t.assigned_to, team=t.team, created_at=t.created_at, due_by=t.due_by,
                escalations=t.escalations, dpd=status.days_past_due, owed=status.balance.total,
            )
            for t in status.open_tasks
            if (agent is None or t.assigned_to == agent) and (team is None or t.team == team)
        ]

    found = await asyncio.gather(*(one(i) for i in legacy[:limit]))
    far = datetime.max.replace(tzinfo=UTC)
    tasks = sorted(tasks + [t for group in found for t in group], key=lambda t: (t.due_by or far, t.loan_id, t.task_id))
    return TaskScan(tasks=tasks, loans_scanned=scanned, truncated=truncated, unanswered=sorted(unanswered))


def _quote_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


async def cmd_tasks(
    client: Client,
    console: Console,
    err_console: Console,
    task_queue: str,
    *,
    agent: str | None,
    team: str | None,
    limit: int,
    as_json: bool,
    timeout: float = TASK_QUERY_TIMEOUT.total_seconds(),
) -> int:
    """Exit 0 with the list; 1 when it may be incomplete (loans that did not answer, or over --limit)."""
    for name, value in (("--agent", agent), ("--team", team)):
        if value is not None and not value.strip():
            raise CommandError(f"{name}: must not be empty", code=2)
    if limit < 1:
        raise CommandError("--limit: must be at least 1", code=2)
    if not timeout > 0:
        raise CommandError("--timeout: must be greater than 0 seconds", code=2)
    scan = await scan_open_tasks(client, task_queue, agent=agent, team=team, limit=limit,
                                 query_timeout=timedelta(seconds=timeout))
    if as_json:
        console.print_json(json.dumps({
            "tasks": [t.as_dict() for t in scan.tasks],
            "loans_scanned": scan.loans_scanned,
            "truncated": scan.truncated,
            "unanswered": scan.unanswered,
        }))
    else:
        who = " and ".join(x for x in (f"agent {agent}" if agent else "", f"team {team}" if team else "") if x)
        now = datetime.now(tz=UTC)
        table = Table(
            title=f"{len(scan.tasks)} open task(s){' of ' + who if who else ''} across {scan.loans_scanned} running loan(s)",
            title_justify="left",
        )
        for col, just in (("loan", "left"), ("task", "left"), ("kind", "left"), ("agent", "left"), ("team", "left"),
                          ("due_by", "left"), ("DPD", "right"), ("owed", "right")):
            table.add_column(col, justify=just)  # type: ignore[arg-type]
        for t in scan.tasks:
            due = Text("—", style="dim")
            if t.due_by is not None:
                due = Text(t.due_by.isoformat(timespec="minutes"), style="bold red" if t.due_by < now else "")
            table.add_row(
                t.loan_id, t.task_id, t.kind,
                Text(t.assigned_to or "(unassigned)", style="" if t.assigned_to else "dim"),
                t.team or "—", due, str(t.dpd), money(t.owed),
            )
        console.print(table)
    if scan.truncated:
        err_console.print(f"[yellow]more than {limit} running loans opened before this release (which do not "
                          f"publish their tasks): only the first {limit} were read (--limit to read more); "
                          "the list may be incomplete[/yellow]")
    if scan.unanswered:
        shown = ", ".join(scan.unanswered[:10]) + (" …" if len(scan.unanswered) > 10 else "")
        err_console.print(f"[yellow]{len(scan.unanswered)} loan(s) did not answer the status query "
                          f"(is a worker running on {task_queue!r}?): {shown}; their tasks are missing[/yellow]")
    return 0 if scan.complete else 1


# --------------------------------------------------------------------------------------------
# The borrower entity (contract v2): `borrower-<borrower_id>`, and a loan's dispute
# --------------------------------------------------------------------------------------------


def _borrower_rpc_error(borrower_id: str, exc: RPCError, what: str) -> CommandError:
    wid = contract.borrower_workflow_id(borrower_id)
    if exc.status == RPCStatusCode.NOT_FOUND:
        return CommandError(f"borrower {borrower_id}: no running workflow {wid} (the borrower has no open loan "
                            f"with us); {what}")
    if exc.status == RPCStatusCode.DEADLINE_EXCEEDED:
        return CommandError(f"borrower {borrower_id}: no answer within {RPC_TIMEOUT.seconds}s; is a worker running?")
    return CommandError(f"borrower {borrower_id}: Temporal refused the request: {exc.message}")


async def fetch_borrower(client: Client, borrower_id: str) -> BorrowerStatus:
    handle = client.get_workflow_handle(contract.borrower_workflow_id(borrower_id))
    try:
        return await handle.query(contract.QUERY_STATUS, result_type=BorrowerStatus, rpc_timeout=RPC_TIMEOUT)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise CommandError(f"borrower {borrower_id}: no workflow {contract.borrower_workflow_id(borrower_id)} "
                               "(unknown borrower? the entity exists while the borrower has a loan with us)") from None
        raise _borrower_rpc_error(borrower_id, exc, "no status") from None
    except (RPCTimeoutOrCancelledError, WorkflowQueryFailedError, WorkflowQueryRejectedError) as exc:
        raise CommandError(f"borrower {borrower_id}: status query failed: {exc}") from None


def _flags_text(flags: BorrowerFlags) -> list[tuple[str, str]]:
    space = flags.breathing_space
    return [
        ("opted out of", ", ".join(ch.value for ch in flags.opted_out) or "—"),
        ("cease contact", flags.cease_contact or "—"),
        ("breathing space", f"{space.start.isoformat()} up to {space.end.isoformat()} (exclusive)" if space else "—"),
        ("bankruptcy", flags.bankruptcy or "—"),
        ("deceased", flags.deceased or "—"),
    ]


def borrower_renderable(status: BorrowerStatus, *, events: int = 10) -> Group:
    """The borrower's entity: flags, loans, today's contacts and the last `events` events."""
    head = Table(title=f"Borrower {status.borrower_id}", show_header=False, title_justify="left", box=None,
                 pad_edge=False)
    head.add_column(style="bold")
    head.add_column()
    head.add_row("rule pack", status.rule_pack.value)
    head.add_row("open loans", f"{status.open_loans} of {len(status.loans)}")
    head.add_row("contacts today", str(status.contacts_today))
    for name, value in _flags_text(status.flags):
        head.add_row(name, Text(value, style="bold red" if value != "—" else "dim"))
    parts: list[Any] = [head]
    if status.loans:
        lt = Table(title="Loans", title_justify="left")
        for col in ("loan", "state", "stage", "outcome"):
            lt.add_column(col)
        for loan in status.loans:
            lt.add_row(str(loan.get("loan_id")), styled(loan.get("state"), STATE_STYLE),
                       styled(loan.get("stage"), STAGE_STYLE), loan.get("outcome") or "—")
        parts.append(lt)
    if events and status.events:
        shown = status.events[-events:]
        et = Table(title=f"Events (last {len(shown)} of {len(status.events)})", title_justify="left")
        for col in ("at", "kind", "details"):
            et.add_column(col)
        for e in shown:
            et.add_row(e.at.isoformat(timespec="seconds"), e.kind, event_details(e.details))
        parts.append(et)
    return Group(*parts)


async def cmd_borrower(client: Client, console: Console, borrower_id: str, *, events: int, as_json: bool) -> int:
    status = await fetch_borrower(client, borrower_id)
    return show(console, status, lambda: borrower_renderable(status, events=events), as_json=as_json)


FLAG_OPTIONS = {"cease_contact": ("reason",), "breathing_space": ("start", "days"), "bankruptcy": ("reference",),
                "deceased": ("reference",)}
"""Each flag's own fields (the contract's signal bodies), as `collections flag` takes them."""


def borrower_signal_body(signal: str, fields: dict[str, Any], operator: str) -> dict[str, Any]:
    """The body of a borrower signal, checked as the borrower's entity will check it (ClearFlag, or
    domain.rules' BorrowerFlags.apply); a bad one is a CommandError naming the field (exit 2), and
    nothing is sent."""
    body = {**fields, "operator_id": operator}
    if signal == contract.SIGNAL_CLEAR_FLAG:
        validate(ClearFlag, body)
        return body
    try:
        BorrowerFlags().apply(signal, fields)
    except ValidationError as exc:
        raise CommandError("; ".join(f"{signal}.{'.'.join(str(p) for p in e['loc']) or 'body'}: "
                                     f"{str(e['msg']).removeprefix('Value error, ')}" for e in exc.errors()),
                           code=2) from None
    except OverflowError:
        raise CommandError(f"{signal}: start + days is past the last date there is", code=2) from None
    except ValueError as exc:
        raise CommandError(str(exc), code=2) from None
    return body


async def cmd_borrower_signal(client: Client, console: Console, borrower_id: str, name: str,
                              body: dict[str, Any]) -> int:
    handle = client.get_workflow_handle(contract.borrower_workflow_id(borrower_id))
    try:
        await handle.signal(name, body, rpc_timeout=RPC_TIMEOUT)
    except RPCError as exc:
        raise _borrower_rpc_error(borrower_id, exc, f"{name} was not recorded") from None
    console.print(f"signal [bold]{name}[/bold] sent to {contract.borrower_workflow_id(borrower_id)}; the entity "
                  "passes the change on to every open loan of the borrower")
    console.print(Text(f"`collections borrower {borrower_id}` shows the flags (a refused signal shows up there as a "
                       "rejected event); each loan records a borrower_flag event.", style="dim"))
    return 0


async def cmd_resolve_dispute(client: Client, console: Console, loan_id: str, body: DisputeResolved) -> int:
    """dispute_resolved, after checking that a dispute is open (else exit 1, nothing sent)."""
    status = await fetch_status(client, loan_id)
    if status.state == LoanState.CLOSED:
        raise CommandError(f"loan {loan_id}: the loan is closed"
                           f"{f' ({status.outcome.value})' if status.outcome else ''}; nothing to resolve")
    if status.dispute is None:
        raise CommandError(f"loan {loan_id}: no dispute is open; nothing to resolve")
    return await cmd_signal(client, console, loan_id, contract.SIGNAL_DISPUTE_RESOLVED, body,
                            "dispute upheld (the loan closes written off)" if body.upheld else "dispute not upheld")
