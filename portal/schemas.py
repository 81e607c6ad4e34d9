"""Request and response bodies of the portal's own endpoints (beyond the contract's models)."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field

from domain.models import (
    AgencyView,
    Amount,
    Balance,
    ContactOutcomeKind,
    IsoDate,
    LoanState,
    Model,
    OpenTask,
    Outcome,
    PlanStatus,
    Stage,
    Status,
)
from domain.money import Money

from .payments.notifications import LOAN_ID_PATTERN

PORTAL_PAYMENT_PREFIX = "portal-"
"""A payment a borrower starts through the portal is known to the loan as `portal-<their payment_id>`,
so that it can never collide with an id of the lender's own systems (core banking's payment_received)."""


class PaymentRequest(Model):
    """POST /v1/loans/{loan_id}/payments: the borrower asks to pay; the provider takes the money."""

    payment_id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$",
                            description="the borrower app's id for this payment: a retry with the same id "
                                        "answers the same pending payment")
    amount: Amount


class PaymentPending(BaseModel):
    """202: the payment is started with the provider; nothing is credited until the provider confirms."""

    loan_id: str
    payment_id: str
    """The id the loan will know the payment by: `portal-<the request's payment_id>`."""
    status: Literal["pending"] = "pending"
    provider: str
    redirect_url: str | None = None
    """Where the borrower completes the payment (the provider's checkout page), when there is one."""
    client_secret: str | None = None
    """For the provider's SDK on the borrower's device (Stripe.js), when the provider needs one."""


class NotificationAnswer(BaseModel):
    """200: the provider's notification is taken (or, for an event that changes nothing, acknowledged)."""

    notification_id: str | None = None
    loan_id: str | None = None
    payment_id: str | None = None
    signal: str | None = None
    """payment_received or payment_reversed: the signal the loan's workflow got (none when ignored)."""
    duplicate: bool = False
    """The loan's workflow has ended and had already taken this payment (or reversal)."""
    ignored: str | None = None
    """Why nothing changes (a provider event the portal does not use)."""


class PauseRequest(Model):
    """The operator's hold; who pulled the lever comes from the token, never the body."""

    reason: str = Field(min_length=1, max_length=500)


class ResumeRequest(Model):
    pass


class WriteOffRequest(Model):
    reason: str = Field(min_length=1, max_length=500)


class PaymentReversalRequest(Model):
    """POST /v1/loans/{loan_id}/payment-reversals: an operator reverses an applied payment."""

    payment_id: str = Field(min_length=1, max_length=128)
    reason: str = Field(min_length=1, max_length=500)


class SignalAccepted(BaseModel):
    """202: the operator's signal was delivered to the loan's workflow."""

    loan_id: str
    signal: str


class AgentLoanView(BaseModel):
    """What a collection agent (or a placed agency) sees of a loan: enough to work it, not the audit trail."""

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
    agency: AgencyView | None = None

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
            agency=status.agency,
        )


class AgentOutcomeRequest(Model):
    """POST /v1/tasks/{task_id}/outcome: the agent comes from the token, the task from the path."""

    loan_id: str = Field(min_length=1, max_length=64, pattern=LOAN_ID_PATTERN)
    outcome: ContactOutcomeKind
    promised_amount: Amount | None = None
    promised_date: IsoDate | None = None
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
