"""Request and response bodies of the portal's own endpoints (beyond the contract's models)."""

from __future__ import annotations

from datetime import date

from pydantic import AwareDatetime, BaseModel, Field

from domain.models import (
    Balance,
    ContactOutcomeKind,
    LoanState,
    Model,
    OpenTask,
    Outcome,
    PlanStatus,
    Stage,
    Status,
)
from domain.money import Money


class PaymentAccepted(BaseModel):
    """202: the payment was handed to the loan's workflow, which applies it (once per payment_id)."""

    loan_id: str
    payment_id: str
    duplicate: bool = False
    """True when the portal knows this payment_id was already taken (a retry)."""


class SignalAccepted(BaseModel):
    """202: the operator's signal was delivered to the loan's workflow."""

    loan_id: str
    signal: str


class AgentLoanView(BaseModel):
    """What a collection agent sees of a loan: enough to work a task, not the audit trail."""

    loan_id: str
    state: LoanState
    stage: Stage | None
    days_past_due: int
    balance: Balance
    paid_total: Money
    next_action_at: AwareDatetime | None
    plan: PlanStatus | None = None
    open_tasks: list[OpenTask] = Field(default_factory=list)
    outcome: Outcome | None = None

    @classmethod
    def of(cls, status: Status) -> AgentLoanView:
        return cls(
            loan_id=status.loan_id,
            state=status.state,
            stage=status.stage,
            days_past_due=status.days_past_due,
            balance=status.balance,
            paid_total=status.paid_total,
            next_action_at=status.next_action_at,
            plan=status.plan,
            open_tasks=status.open_tasks,
            outcome=status.outcome,
        )


class AgentOutcomeRequest(Model):
    """POST /v1/tasks/{task_id}/outcome: the agent comes from the token, the task from the path."""

    loan_id: str = Field(min_length=1, max_length=64)
    outcome: ContactOutcomeKind
    promised_amount: Money | None = None
    promised_date: date | None = None
    note: str | None = Field(default=None, max_length=2000)


class AgentTask(BaseModel):
    loan_id: str
    task_id: str
    kind: str
    stage: Stage
    created_at: AwareDatetime
    assigned_to: str | None = None
    due_by: AwareDatetime | None = None


class AgentTaskList(BaseModel):
    tasks: list[AgentTask]
    truncated: bool = False
    """True when more running loans exist than PORTAL_TASK_SCAN_LIMIT: the list may be incomplete."""


class Health(BaseModel):
    status: str
    temporal: str
    namespace: str | None = None
    server_version: str | None = None
    detail: str | None = None
