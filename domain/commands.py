"""What the workflows ask of the outside world: the activities' inputs and results.

Each request carries `key`, the idempotency key (loan, stage or plan, action, attempt): an adapter
that sees a key it already handled does nothing and answers `duplicate=True`. Requests carry only
the personal data the receiving party needs.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, Field

from .borrower import GateRequest
from .models import Balance, Event, Model, Stage
from .money import Money
from .rules import ContactDecision


class NoticeKind(StrEnum):
    COLLECTION = "collection"  # a stage reminder: amount owed, days past due, how to pay or ask for a plan
    INSTALLMENT_REMINDER = "installment_reminder"  # a plan installment falls due soon
    PLAN_ACCEPTED = "plan_accepted"
    PLAN_BROKEN = "plan_broken"
    PAID_IN_FULL = "paid_in_full"
    CREDIT_REPORT_WARNING = "credit_report_warning"  # v2: before the first negative report to the bureau
    AGENCY_WARNING = "agency_warning"  # v2: before placement with an outside agency
    LEGAL_WARNING = "legal_warning"  # v2: before referral for legal action
    VALIDATION = "validation"  # v2, US: amount, itemisation and the 30-day dispute period (12 CFR 1006.34)
    PLAN_OFFER = "plan_offer"  # v2: hardship reported: how to ask for a payment plan


class NoticeRequest(Model):
    key: str
    loan_id: str
    channel: Literal["sms", "email", "voice"]
    kind: NoticeKind = NoticeKind.COLLECTION
    stage: Stage | None = None
    attempt: int = 0
    to: str
    """Phone number (sms, voice) or email address (email)."""
    borrower_name: str
    locale: str
    currency: str
    amount_owed: Money
    days_past_due: int
    installment_due_date: date | None = None
    installment_amount: Money | None = None
    # v2 (borrower-v1 loans)
    borrower_id: str | None = None
    """For the signed opt-out link every message carries."""
    rule_pack: str | None = None
    event_date: date | None = None
    """Warnings: the day the report, placement or referral happens at the earliest."""
    balance: Balance | None = None
    """Itemisation (principal, interest, penalty interest, fees) for warnings and the validation notice."""
    daily_charge: Money | None = None
    """Interest and penalty interest one more day unpaid costs (what delay costs, said plainly)."""
    dispute_by: date | None = None
    """US validation notice: the last day of the dispute period."""
    gate: GateRequest | None = None
    """Ask the borrower's entity first (one contact record for the person); None: send as decided."""


class DeliveryResult(Model):
    key: str
    channel: str
    provider_message_id: str | None = None
    duplicate: bool = False
    decision: ContactDecision | None = None
    """Set when the borrower's entity did not allow the contact: nothing was sent."""


class AgentTaskRequest(Model):
    key: str
    task_id: str
    loan_id: str
    kind: Literal["call", "visit"]
    stage: Stage
    borrower_name: str
    phone: str | None = None
    """Given to call tasks only."""
    address: str | None = None
    """Given to visit tasks only."""
    timezone: str
    locale: str
    currency: str
    amount_owed: Money
    days_past_due: int
    due_by: AwareDatetime
    assigned_to: str | None = None
    """Set when the workflow already knows the agent; otherwise the desk assigns from `candidates`."""
    team: str | None = None
    candidates: list[str] = Field(default_factory=list)
    """The team's agents, for the desk's assignment by `strategy`."""
    strategy: Literal["least_loaded", "round_robin"] = "least_loaded"
    gate: GateRequest | None = None
    """A bot call contacts the borrower: ask the borrower's entity first (borrower-v1)."""


class TaskCancellation(Model):
    key: str
    task_id: str
    loan_id: str
    reason: str


class TaskReassignment(Model):
    """A task past its SLA: give it to another agent of the team and tell the supervisor."""

    key: str
    task_id: str
    loan_id: str
    kind: Literal["call", "visit"]
    from_agent: str | None = None
    team: str | None = None
    candidates: list[str] = Field(default_factory=list)
    strategy: Literal["least_loaded", "round_robin"] = "least_loaded"
    supervisor: str | None = None
    reason: str
    due_by: AwareDatetime


class TaskClosure(Model):
    """An agent reported the task's outcome: the desk closes it (frees the agent's load)."""

    key: str
    task_id: str
    loan_id: str
    agent_id: str
    outcome: str


class BotCallResult(Model):
    """What an automated agent (voice bot, IVR) reports: the same shape as a human's outcome."""

    key: str
    outcome: Literal["promise_to_pay", "no_answer", "refused", "wrong_number", "plan_agreed", "conversation",
                     "hardship"]
    promised_amount: Money | None = None
    promised_date: date | None = None
    note: str | None = None
    duplicate: bool = False
    decision: ContactDecision | None = None
    """Set when the borrower's entity did not allow the call: the bot did not dial."""


class AgencyPlacementRequest(Model):
    key: str
    placement_id: str
    loan_id: str
    agency_id: str
    borrower_name: str
    phone: str | None = None
    address: str | None = None
    currency: str
    amount_owed: Money
    days_past_due: int
    placed_until: date


class AgencyRecall(Model):
    key: str
    placement_id: str
    loan_id: str
    agency_id: str
    reason: str


class LegalReferral(Model):
    key: str
    case_id: str
    loan_id: str
    borrower_id: str
    borrower_name: str
    address: str | None = None
    currency: str
    balance: Balance
    paid_total: Money
    due_date: date
    days_past_due: int
    events: list[Event] = Field(default_factory=list)
    """The loan's audit trail: every contact attempt, outcome, notice and payment (loans before lazy-v1);
    newer loans send it by reference (`trail_workflow_id`), and the adapter reads it."""
    trail_workflow_id: str | None = None
    trail_events: int = 0
    """How many events the trail had when the referral was made."""


class BureauStatus(StrEnum):
    DELINQUENT = "delinquent"
    RESTRUCTURED = "restructured"
    CURED = "cured"
    WRITTEN_OFF = "written_off"


class BureauReport(Model):
    key: str
    loan_id: str
    borrower_id: str
    status: BureauStatus
    days_past_due: int
    currency: str
    amount_owed: Money
    as_of: date


class Receipt(Model):
    """The answer of an adapter that files something (task, placement, referral, report)."""

    key: str
    reference: str | None = None
    duplicate: bool = False
    details: dict[str, Any] = Field(default_factory=dict)


