"""Request and response bodies of the portal's own endpoints (beyond the contract's models)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

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
    flags: dict[str, Any] | None = None
    """The borrower's flags as this loan knows them (opt-outs, cease contact, breathing space, ...)."""
    dispute: dict[str, Any] | None = None
    """An open dispute of this debt: no collection contact until it is resolved."""

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
            flags=status.flags,
            dispute=status.dispute,
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
    """Always false: the queue is one visibility query read to its last page (kept for v1 clients)."""


class Health(BaseModel):
    status: str
    temporal: str
    namespace: str | None = None
    server_version: str | None = None
    detail: str | None = None


# -- the borrower entity, disputes and contact requests (contract v2) -------------------------------


class _Text(Model):
    """A request whose texts must say something: the pattern `\\S` (a character that is not white
    space) is checked with Python's own regex engine, whose white space is str.strip()'s, so that
    what the portal takes the workflows take too (they refuse a reason that is only spaces)."""

    model_config = ConfigDict(regex_engine="python-re")


Reason = Annotated[str, Field(min_length=1, max_length=500, pattern=r"\S",
                              description="why, in words (not only white space)")]
Reference = Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S",
                                 description="the case or notification reference (not only white space)")]
OptOutChannel = Literal["sms", "email", "voice", "call"]
FlagName = Literal["cease_contact", "breathing_space", "bankruptcy", "deceased"]
_Y = "(?:19|20|21)[0-9]{2}"
BREATHING_SPACE_START = (
    f"^(?:{_Y}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|{_Y}-(?:0[13-9]|1[0-2])-(?:29|30)|{_Y}-(?:0[13578]|1[02])-31"
    "|(?:19|20|21)(?:0[48]|[2468][048]|[13579][26])-02-29|2000-02-29)$"
)
"""A real calendar date YYYY-MM-DD from 1900 to 2199, exactly (leap days included), as one pattern every
client's regex engine reads the same: the moratorium's end is counted from it."""


class ChannelRequest(Model):
    """POST /v1/borrowers/{borrower_id}/opt-out and /opt-in: a channel of the contract's opt-out."""

    channel: OptOutChannel


class CeaseContactFlag(_Text):
    flag: Literal["cease_contact"]
    reason: Reason


def _whole(value: Any) -> Any:
    """A JSON number with no fraction is that integer (`60.0` is `60`: JSON Schema's `integer` admits
    both); anything else stays as it came, for the strict integer to refuse (`"60"`, `true`, `60.5`)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class BreathingSpaceFlag(Model):  # Rust's regex: its `$` is the end of the text, as JSON Schema's
    flag: Literal["breathing_space"]
    start: str = Field(pattern=BREATHING_SPACE_START, examples=["2026-12-01"],
                       description="the first day of the breathing space, YYYY-MM-DD (a real date, 1900 to 2199)")
    days: Annotated[int, Field(strict=True, ge=1, le=3650), BeforeValidator(_whole)] = 60
    """From `start` for `days` days (the contract's default 60: the UK standard breathing space)."""


class BankruptcyFlag(_Text):
    flag: Literal["bankruptcy"]
    reference: Reference


class DeceasedFlag(_Text):
    flag: Literal["deceased"]
    reference: Reference


FlagRequest = CeaseContactFlag | BreathingSpaceFlag | BankruptcyFlag | DeceasedFlag
"""POST /v1/borrowers/{borrower_id}/flags: one of the contract's borrower signals, named by `flag`,
with that signal's own fields (the route discriminates on `flag`)."""


class ClearFlagRequest(_Text):
    """POST /v1/borrowers/{borrower_id}/flags/clear: an operator lifts a flag (an opt-out is lifted by
    opt-in)."""

    flag: FlagName
    reason: Reason


class BorrowerSignalAccepted(BaseModel):
    """202: the signal was delivered to the borrower's entity (`borrower-<borrower_id>`), which passes
    the change on to every open loan of the borrower."""

    borrower_id: str
    signal: str


class DisputeRequest(_Text):
    """POST /v1/loans/{loan_id}/disputes: the borrower (or an operator for them) disputes this debt."""

    reason: Annotated[str, Field(min_length=1, max_length=2000, pattern=r"\S")]


class DisputeResolutionRequest(_Text):
    """POST /v1/loans/{loan_id}/dispute-resolution: upheld closes the loan written off; not upheld
    resumes collection."""

    upheld: Annotated[bool, Field(strict=True)]
    note: str | None = Field(default=None, max_length=2000)


class ContactRequestBody(Model):
    """POST /v1/loans/{loan_id}/contact-requests: an agent or agency asks before a call or visit; who
    asks comes from the token (agent_id and actor), never from the body."""

    channel: Literal["call", "visit"]


class UnsubscribeAnswer(BaseModel):
    """What the one-click opt-out did."""

    channel: OptOutChannel
    status: Literal["opted_out", "no_open_loans"]
    """`opted_out`: the borrower's entity has the opt-out (idempotent: again, the same answer);
    `no_open_loans`: the borrower has no open loan with us, so nothing is being sent."""
    message: str
