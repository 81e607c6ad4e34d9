"""The contract's payloads as pydantic models, and the loan's own state.

Every model rejects unknown fields (the contract: "Unknown fields are rejected with a clear error,
not ignored"). Money is `Money` (Decimal, two places), dates are `date`, instants are aware
`datetime`s.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, Field, field_validator

from .base import Model, Stage
from .money import ZERO, Money, NonNegativeMoney, PositiveMoney, Rate
from .policy import Policy




class LoanState(StrEnum):
    COLLECTING = "collecting"
    RESTRUCTURING = "restructuring"
    PAUSED = "paused"
    CLOSED = "closed"


class Outcome(StrEnum):
    PAID_IN_FULL = "paid_in_full"
    PLAN_COMPLETED = "plan_completed"
    WRITTEN_OFF = "written_off"


class ContactOutcomeKind(StrEnum):
    PROMISE_TO_PAY = "promise_to_pay"
    NO_ANSWER = "no_answer"
    REFUSED = "refused"
    WRONG_NUMBER = "wrong_number"
    PLAN_AGREED = "plan_agreed"
    CONVERSATION = "conversation"  # v2: the borrower was reached, nothing agreed
    HARDSHIP = "hardship"  # v2: the borrower reports financial difficulty (UK: a plan is offered, no escalation)


_PHONE_RE = re.compile(r"^\+?[0-9][0-9 \-]{5,19}$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


# --------------------------------------------------------------------------------------------
# Workflow input
# --------------------------------------------------------------------------------------------


class Borrower(Model):
    borrower_id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    phone: str | None = None
    email: str | None = None
    address: str | None = Field(default=None, max_length=500)
    timezone: str = "Asia/Shanghai"
    locale: str = "zh-CN"

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        if not _PHONE_RE.match(v):
            raise ValueError("phone must be digits, optionally starting with +, such as +8613800000000")
        return v

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        if not _EMAIL_RE.match(v):
            raise ValueError("email must look like name@example.com")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {v!r}, such as Asia/Shanghai") from exc
        return v

    @field_validator("locale")
    @classmethod
    def _locale(cls, v: str) -> str:
        if not re.match(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$", v):
            raise ValueError("locale must be a BCP 47 tag such as zh-CN or en")
        return v


class Loan(Model):
    loan_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    principal: PositiveMoney
    interest: NonNegativeMoney = ZERO
    penalty: NonNegativeMoney = ZERO
    fees: NonNegativeMoney = ZERO
    annual_interest_rate: Rate
    due_date: date
    borrower: Borrower


# --------------------------------------------------------------------------------------------
# Signals and updates
# --------------------------------------------------------------------------------------------


class PaymentReceived(Model):
    payment_id: str = Field(min_length=1, max_length=128)
    amount: PositiveMoney
    paid_at: AwareDatetime | None = None


OperatorId = Field(default=None, min_length=1, max_length=128,
                  description="who pulled the lever (the operator's id from their token); kept in the loan's events")


class Pause(Model):
    reason: str = Field(min_length=1, max_length=500)
    operator_id: str | None = OperatorId


class Resume(Model):
    operator_id: str | None = OperatorId


class WriteOff(Model):
    reason: str = Field(min_length=1, max_length=500)
    operator_id: str | None = OperatorId


class PaymentPlanProposal(Model):
    installments: int
    first_due_date: date
    interval_days: int
    down_payment: NonNegativeMoney = ZERO


class Dispute(Model):
    """Signal `dispute` to `loan-<loan_id>`: the borrower disputes this debt."""

    reason: str = Field(min_length=1, max_length=2000)
    operator_id: str | None = OperatorId


class DisputeResolved(Model):
    """Signal `dispute_resolved`: upheld closes the loan written off; not upheld resumes collection."""

    upheld: bool
    note: str | None = Field(default=None, max_length=2000)
    operator_id: str | None = OperatorId


class ContactRequest(Model):
    """Update `request_contact` on `loan-<loan_id>`: an agent or agency asks before a call or visit."""

    channel: Literal["call", "visit"]
    agent_id: str = Field(min_length=1, max_length=128)
    actor: Literal["agent", "agency"] = "agent"
    """Who asks (the project's own field; the portal sets it from the token's role)."""


class ContactAnswer(Model):
    allowed: bool
    rule: str
    until: AwareDatetime | None = None
    explanation: str | None = None


class Installment(Model):
    due_date: date
    amount: Money


class PlanDecision(Model):
    accepted: bool
    reason: str | None = None
    schedule: list[Installment] = Field(default_factory=list)


class ContactOutcome(Model):
    task_id: str = Field(min_length=1, max_length=128)
    agent_id: str = Field(min_length=1, max_length=64)
    outcome: ContactOutcomeKind
    promised_amount: Money | None = None
    promised_date: date | None = None
    note: str | None = Field(default=None, max_length=2000)


# --------------------------------------------------------------------------------------------
# Status (query result and workflow result)
# --------------------------------------------------------------------------------------------


class Balance(Model):
    principal: Money = ZERO
    interest: Money = ZERO
    penalty: Money = ZERO
    fees: Money = ZERO
    total: Money = ZERO

    @classmethod
    def of(cls, principal: Decimal, interest: Decimal, penalty: Decimal, fees: Decimal) -> Balance:
        return cls(
            principal=principal,
            interest=interest,
            penalty=penalty,
            fees=fees,
            total=principal + interest + penalty + fees,
        )


class Event(Model):
    at: AwareDatetime
    kind: str
    details: dict[str, Any] = Field(default_factory=dict)


class OpenTask(Model):
    task_id: str
    kind: Literal["call", "visit", "agency", "legal"]
    stage: Stage
    created_at: AwareDatetime
    assigned_to: str | None = None
    team: str | None = None
    due_by: AwareDatetime | None = None
    escalations: int = 0


class LegalOutcomeKind(StrEnum):
    FILED = "filed"
    JUDGMENT = "judgment"
    SETTLEMENT = "settlement"
    WITHDRAWN = "withdrawn"


class LegalOutcome(Model):
    """Reported by the legal desk (update `record_legal_outcome`, the project's own)."""

    case_id: str = Field(min_length=1, max_length=128)
    outcome: LegalOutcomeKind
    amount: Money | None = None
    """Judgment: the amount awarded; settlement: the amount the borrower will pay in full settlement."""
    plan: PaymentPlanProposal | None = None
    """Settlement in installments: the plan the parties agreed (the down payment comes first)."""
    note: str | None = Field(default=None, max_length=2000)


class AgencyPayment(Model):
    """A payment an agency collected (signal `agency_payment`, the project's own)."""

    placement_id: str = Field(min_length=1, max_length=128)
    payment_id: str = Field(min_length=1, max_length=128)
    amount: PositiveMoney
    paid_at: AwareDatetime | None = None


class PlanStatus(Model):
    plan_number: int
    accepted_at: AwareDatetime
    total: Money
    down_payment: Money
    down_payment_paid: bool
    schedule: list[Installment]
    paid_installments: int
    paid_amount: Money
    workflow_id: str


class AgencyView(Model):
    """The loan's current placement with an outside agency (who may see and work it)."""

    agency_id: str
    placement_id: str
    placed_on: date
    until: date


class FrozenDays(Model):
    start: date
    end: date
    """Exclusive: the first day accrual resumes."""


class AccrualBasis(Model):
    """What the status's figures accrue on from `as_of` until the loan next wakes: enough for a reader
    (the portal, the CLI) to bring them to the current day with the same pure accrual (domain.freshness)."""

    principal: Money
    annual_interest_rate: Rate
    penalty_rate_factor: Rate
    day_count: int
    accruing: bool
    accrued_until: date
    due_date: date
    timezone: str
    frozen: list[FrozenDays] = Field(default_factory=list)


class Status(Model):
    loan_id: str
    state: LoanState
    stage: Stage | None
    days_past_due: int
    balance: Balance
    paid_total: Money
    next_action_at: AwareDatetime | None
    plan: PlanStatus | None = None
    open_tasks: list[OpenTask] = Field(default_factory=list)
    events: list[Event] = Field(default_factory=list)
    outcome: Outcome | None = None
    as_of: AwareDatetime | None = None
    """The instant the figures are for: the last day boundary passed when they were computed."""
    agency: AgencyView | None = None
    accrual: AccrualBasis | None = None
    flags: dict[str, Any] | None = None
    """borrower-v1: the borrower's flags as this loan knows them."""
    dispute: dict[str, Any] | None = None


class CollectionInput(Model):
    """The workflow's input, exactly the contract's: the loan, and an optional policy override."""

    loan: Loan
    policy: Policy | None = None
