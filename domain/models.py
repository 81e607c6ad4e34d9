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
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BeforeValidator, Field, ValidationInfo, WithJsonSchema, field_validator, model_validator

from .base import Model, Stage
from .money import UNSIGNED_MONEY_PATTERN, ZERO, Money, NonNegativeMoney, PositiveMoney, Rate
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
#
# Their fields are strict, one by one: what a client sends is taken as written or refused, never
# coerced (no `false` or `"6"` for a count, no number for an instant or a date, no padded money),
# and the JSON schema of each field says exactly that, so the portal's OpenAPI document and its
# validation agree both ways. Per field, not model-wide strict mode: inside the workflows these
# models are validated from JSON-decoded dicts, where a date is still the string "2026-12-15".
# --------------------------------------------------------------------------------------------

_DATE_TEXT = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_INSTANT_TEXT = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


def _date_as_written(value: Any) -> Any:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _DATE_TEXT.match(value):
        return value
    raise ValueError('must be a date written YYYY-MM-DD, such as "2026-12-15"')


def _instant_as_written(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and _INSTANT_TEXT.match(value):
        return value
    raise ValueError('must be an RFC 3339 instant with its offset, such as "2026-12-15T10:30:00+08:00"')


def _money_as_written(value: Any) -> Any:
    if isinstance(value, str) and value != value.strip():
        raise ValueError('money must be written without spaces around it, such as "1234.50"')
    return value


def _unsigned_money(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("-"):
        raise ValueError("must not be negative")
    return value


IsoDate = Annotated[date, BeforeValidator(_date_as_written)]
"""A calendar date, only as the text YYYY-MM-DD (JSON schema: string, format date)."""
Instant = Annotated[AwareDatetime, BeforeValidator(_instant_as_written)]
"""An instant, only as RFC 3339 text with an offset (JSON schema: string, format date-time)."""
def _count_as_written(value: Any) -> Any:
    """A JSON number that is whole (JSON Schema's `integer` takes 6.0 as 6); not true/false, not text."""
    if isinstance(value, bool) or isinstance(value, str):
        raise ValueError("must be a whole number written as a JSON number, such as 6")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be a whole number, such as 6")
        return int(value)
    return value


Count = Annotated[int, BeforeValidator(_count_as_written), Field(strict=True)]
"""A whole number, only as a JSON number with no fraction (not true/false, not "6"; 6.0 is 6, as JSON
Schema's `integer` has it)."""
Amount = Annotated[PositiveMoney, BeforeValidator(_money_as_written)]
"""More than zero, as an unpadded decimal string with at most two places."""
AmountOrZero = Annotated[
    NonNegativeMoney,
    BeforeValidator(_unsigned_money),
    BeforeValidator(_money_as_written),
    WithJsonSchema({"type": "string", "pattern": UNSIGNED_MONEY_PATTERN, "examples": ["0.00", "250.00"]}),
]
"""Zero or more, as an unsigned, unpadded decimal string with at most two places."""


class PaymentReceived(Model):
    payment_id: str = Field(min_length=1, max_length=128)
    amount: Amount
    paid_at: Instant | None = None


OperatorId = Field(default=None, min_length=1, max_length=128,
                  description="who pulled the lever (the operator's id from their token); kept in the loan's events")


class PaymentReversed(Model):
    """Signal `payment_reversed` (contract v2), and update `reverse_payment` (project's own, answered):
    an applied payment was returned or charged back."""

    payment_id: str = Field(min_length=1, max_length=128)
    reason: str = Field(min_length=1, max_length=500)
    operator_id: str | None = Field(default=None, min_length=1, max_length=128)


class Pause(Model):
    reason: str = Field(min_length=1, max_length=500)
    operator_id: str | None = OperatorId


class Resume(Model):
    operator_id: str | None = OperatorId


class WriteOff(Model):
    reason: str = Field(min_length=1, max_length=500)
    operator_id: str | None = OperatorId


class PaymentPlanProposal(Model):
    installments: Count
    first_due_date: IsoDate
    interval_days: Count
    down_payment: AmountOrZero = ZERO


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
    promised_amount: Amount | None = None
    promised_date: IsoDate | None = None
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

    @model_validator(mode="before")
    @classmethod
    def _in_flight_default(cls, data: Any, info: ValidationInfo) -> Any:
        """A running loan whose input named no policy took the default of its day (domain.policy.IN_FLIGHT)."""
        if (info.context or {}).get("in_flight") and isinstance(data, dict) and data.get("policy") is None:
            data = {**data, "policy": {}}
        return data
