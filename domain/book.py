"""The loan book: one loan's whole state and every pure transition of it.

The collection workflow holds a `LoanBook` and does only what the book says: it advances the book to
the current loan time, asks it which actions are due, passes each contact through the compliance
door, runs the activity and records the result back. Signals and updates call the book's methods.
The book is a pydantic model, so it is also what continue-as-new carries and what a simulator or a
property test drives without Temporal.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from pydantic import AwareDatetime, Field

from .clock import LoanClock, start_clock
from .commands import BotCallResult, BureauStatus
from .compliance import ContactHistory, PastContact
from .contract import plan_workflow_id
from .ladder import days_past_due, escalate
from .ledger import Components, accrue, add_fee, allocate
from .models import (
    AccrualBasis,
    AgencyView,
    FrozenDays,
    CollectionInput,
    ContactAnswer,
    ContactRequest,
    Dispute,
    DisputeResolved,
    ContactOutcome,
    ContactOutcomeKind,
    Event,
    AgencyPayment,
    Installment,
    LegalOutcome,
    LegalOutcomeKind,
    Loan,
    LoanState,
    Model,
    OpenTask,
    Outcome,
    PaymentPlanProposal,
    PaymentReceived,
    PaymentReversed,
    PlanStatus,
    Stage,
    Status,
)
from .money import ZERO, Money, Rate, fmt, q
from .plans import PlanEvaluation, build_schedule, evaluate_proposal, progress, reason_text, settles_early
from .policy import Channel, Policy, StageRule
from .rules import (
    Actor,
    BorrowerFlags,
    ContactAttempt,
    ContactDecision,
    ContactRecord,
    Limits,
    LoanContext,
    PackCode,
    Verdict,
    bureau_gate,
    contact_channel,
    decide,
    escalation_gate,
    hardship_hold_until,
)
from .rules import PastContact as RulePastContact
from .rules import Purpose as ContactPurpose
from .rules import counts_as_conversation, validation_period_end
from .borrower import ContactQuestion, Conversation, FlagsNotice, LoanNote

_TASK_KIND = {Channel.CALL_TASK: "call", Channel.VISIT_TASK: "visit"}
_CONTACT_CHANNELS = (Channel.SMS, Channel.EMAIL, Channel.VOICE, Channel.CALL_TASK, Channel.VISIT_TASK, Channel.AGENCY)
"""Channels of a stage that reach the borrower (an agency placed with the loan contacts them): such a
stage starts at the loan's contact opening, not at midnight (lazy-v1)."""
MAX_ACTION_FAILURES = 3
MAX_PROMISE_DAYS = 90
"""A promise to pay further out than this is refused (it would hold escalation for too long)."""

AGENTS_V1 = "agents-v1"
"""Feature: SLA escalation of tasks, closing tasks at the desk, bot-first calls, agency rotation.
Loans that started before it keep the old behaviour (the workflow sets it through workflow.patched)."""
LOOP_V2 = "loop-v2"
"""Feature: input arriving while the workflow runs an activity wakes the loop at once (before, it
waited for the next timer); pause and resume reach the plan's child."""
PLAN_NOTICES = "plan-notices-v1"
"""Feature: an accepted plan is confirmed to the borrower by email and SMS (schedule, first due date)."""
LAZY_V1 = "lazy-v1"
"""Feature: a loan costs work only when something happens to it. Accrual is computed in closed form
over the days since the last change (one `accrued` event per segment, not one a day); the workflow
wakes only when an action, a stage or a check falls due (never at a plain midnight); the plan's
child reports its end by signal, so the loan can continue as new while a plan runs."""
BORROWER_V1 = "borrower-v1"
"""Feature: the borrower entity and the contact rule packs. Every contact is decided against the person's
one record (BorrowerWorkflow), the person's flags reach the loan, a dispute holds it, the notices the
rules require go first (credit report, agency and legal warnings; the US validation notice), and an
agency placement, a legal referral or a first negative report waits for its gate."""
MONEY_V1 = "money-v1"
"""Feature: a closed loan's workflow ends only when its closing bookkeeping is done (retried with
backoff), and stays open `policy.payments.reversal_window_days` to take a reversal."""
FEATURES = [AGENTS_V1, LOOP_V2, PLAN_NOTICES, LAZY_V1, BORROWER_V1, MONEY_V1]
"""What a loan opened now gets."""
WARNING_WINDOW_DAYS = 30
"""A warning may go from this many days before what it announces, and must go at least the pack's
lead (7 days) before: it is sent at the first moment the loan acts inside that window, so it rides on
a contact the loan makes anyway, and only wakes the loan by itself on the last day."""
_WARNING_OF = {Stage.AGENCY: "agency_warning", Stage.LEGAL: "legal_warning"}
_PURPOSE = {"collection": "collection", "installment_reminder": "plan_reminder", "plan_accepted": "confirmation",
            "plan_broken": "collection", "paid_in_full": "confirmation", "credit_report_warning": "warning",
            "agency_warning": "warning", "legal_warning": "warning", "validation": "validation",
            "plan_offer": "collection"}
"""What each notice is for, in the rule packs' terms (a dispute lets plan reminders and confirmations through)."""
REQUIRED_NOTICES = ("credit_report_warning", "agency_warning", "legal_warning", "validation")
"""Notices the rules require before something else may happen: a block holds them (they go once the
borrower can be reached again), it does not use them up."""
STATUS_EVENTS = 200
"""The status shows at most this many of the newest events (lazy-v1 loans); the full trail stays
exportable through the workflow's `events` query."""


def _by(operator_id: str | None) -> dict[str, str]:
    """Who pulled an operator lever, for the audit trail (nothing when the body did not say)."""
    return {"operator_id": operator_id} if operator_id else {}


class ActionKind(StrEnum):
    NOTICE = "notice"
    CREATE_TASK = "create_task"
    PLACE_AGENCY = "place_agency"
    REFER_LEGAL = "refer_legal"
    CANCEL_TASK = "cancel_task"
    RECALL_AGENCY = "recall_agency"
    BUREAU = "bureau"
    SKIP = "skip"
    BOT_CALL = "bot_call"
    REASSIGN_TASK = "reassign_task"
    CLOSE_TASK = "close_task"


class Action(Model):
    """Something the book wants done in the outside world, with its idempotency key."""

    key: str
    kind: ActionKind
    summary: str
    channel: Channel | None = None
    stage: Stage | None = None
    attempt: int = 0
    task_id: str | None = None
    placement_id: str | None = None
    bureau_status: BureauStatus | None = None
    reason: str | None = None
    agency_id: str | None = None
    agent_id: str | None = None
    outcome: str | None = None
    notice_kind: str = "collection"
    duty: str | None = None
    """The requirement a notice fulfils once sent (a warning's key, `validation`)."""
    event_date: date | None = None
    """A warning: the day what it announces may happen at the earliest."""

    @property
    def gated(self) -> bool:
        """Whether the action contacts the borrower, so passes the compliance door."""
        return self.kind in (ActionKind.NOTICE, ActionKind.CREATE_TASK, ActionKind.BOT_CALL)

    @property
    def purpose(self) -> str:
        """What a contact is for, in the rule packs' terms (domain.rules.Purpose)."""
        return _PURPOSE.get(self.notice_kind, "collection")


class Placement(Model):
    placement_id: str
    agency_id: str
    commission_rate: Rate = ZERO
    placed_on: date
    until: date


class TaskToClose(Model):
    task_id: str
    agent_id: str
    outcome: str


class PlanState(Model):
    number: int
    accepted_at: AwareDatetime
    accepted_on: date
    total: Money
    down_payment: Money
    schedule: list[Installment]
    paid_amount: Money = ZERO
    status: str = "active"  # active | completed | broken | paid_off | written_off
    child_started: bool = False
    """lazy-v1: the plan's child workflow was started (it outlives a continue-as-new of the loan)."""


class DisputeState(Model):
    reason: str
    opened_at: AwareDatetime
    operator_id: str | None = None


class Promise(Model):
    task_id: str
    agent_id: str
    amount: Money
    promised_date: date
    hold_until: date
    paid_total_at_promise: Money


class LoanBook(Model):
    loan: Loan
    policy: Policy
    clock: LoanClock
    state: LoanState = LoanState.COLLECTING
    state_before_pause: LoanState | None = None
    stage: Stage | None = None
    stage_entered_on: date | None = None
    owed: Components
    paid_total: Money = ZERO
    overpaid: Money = ZERO
    accrued_until: date
    dpd: int = 0
    payment_ids: list[str] = Field(default_factory=list)
    events: list[Event] = Field(default_factory=list)
    done: list[str] = Field(default_factory=list)
    open_tasks: list[OpenTask] = Field(default_factory=list)
    placement: Placement | None = None
    past_placements: list[Placement] = Field(default_factory=list)
    placements_made: int = 0
    """Agency placements in this collection episode (the next goes to the next agency)."""
    agency_commission: Money = ZERO
    legal_status: str | None = None
    tasks_to_close: list[TaskToClose] = Field(default_factory=list)
    bot_outcomes: dict[str, str] = Field(default_factory=dict)
    plan_hold_until: date | None = None
    features: list[str] = Field(default_factory=list)
    failures: dict[str, int] = Field(default_factory=dict)
    """Action key -> failed attempts so far (cleared on success)."""
    settled_amount: Money | None = None
    """A legal settlement without a plan: the amount that settles the loan; nothing accrues after it."""
    legal_case_id: str | None = None
    bureau_reported: list[BureauStatus] = Field(default_factory=list)
    plan: PlanState | None = None
    past_plans: list[PlanState] = Field(default_factory=list)
    plans_count: int = 0
    episode: int = 0
    """Collection episodes: 0 from intake, +1 each time a broken plan sends the loan back."""
    promise: Promise | None = None
    broken_promises: int = 0
    bad_channels: list[Channel] = Field(default_factory=list)
    deferred: dict[str, AwareDatetime] = Field(default_factory=dict)
    """Action key -> loan time until which the compliance door deferred it."""
    outcome: Outcome | None = None
    closed_at: AwareDatetime | None = None
    # borrower-v1
    flags: BorrowerFlags = Field(default_factory=BorrowerFlags)
    """The borrower's flags as their entity last told this loan (signal `borrower_flags`)."""
    flags_seq: int = 0
    dispute: DisputeState | None = None
    hardship_until: date | None = None
    hardship_reports: int = 0
    warned: dict[str, AwareDatetime] = Field(default_factory=dict)
    """Warning (credit_report_warning, agency_warning:<episode>, legal_warning:<episode>) -> when it went."""
    validation_sent_at: AwareDatetime | None = None
    first_message_at: AwareDatetime | None = None
    held: dict[str, str] = Field(default_factory=dict)
    """Action key -> the rule that holds it (said once in the events; asked again at every wake)."""
    told: dict[str, str | None] = Field(default_factory=dict)
    """What the borrower's entity last heard from this loan (state, stage, outcome)."""
    contact_requests: int = 0
    reversed_ids: list[str] = Field(default_factory=list)

    # ------------------------------------------------------------------ opening and time

    @classmethod
    def open(cls, inp: CollectionInput, real_now: datetime, features: list[str] | None = None) -> LoanBook:
        policy = inp.policy or Policy()
        loan = inp.loan
        clock = start_clock(real_now, loan.borrower.timezone, policy.day_length_seconds)
        now = clock.loan_time(real_now)
        today = now.date()
        book = cls(
            loan=loan,
            policy=policy,
            clock=clock,
            owed=Components(principal=loan.principal, interest=loan.interest, penalty=loan.penalty, fees=loan.fees),
            accrued_until=today,
            dpd=days_past_due(loan.due_date, today),
            features=list(FEATURES if features is None else features),
        )
        book._event(now, "intake", dpd=book.dpd, balance=book.owed.balance().model_dump(mode="json"),
                    due_date=loan.due_date.isoformat())
        book._escalate(now)
        return book

    def now(self, real_now: datetime) -> datetime:
        return self.clock.loan_time(real_now)

    def today(self, loan_now: datetime) -> date:
        return loan_now.date()

    @property
    def closed(self) -> bool:
        return self.state == LoanState.CLOSED

    @property
    def total(self) -> Decimal:
        return self.owed.total

    @property
    def lazy(self) -> bool:
        return LAZY_V1 in self.features

    @property
    def borrower_v1(self) -> bool:
        return BORROWER_V1 in self.features

    @property
    def pack(self) -> PackCode:
        return PackCode(self.policy.contact.rule_pack)

    @property
    def limits(self) -> Limits:
        """The rule pack's limits as the policy narrows them."""
        return self.policy.contact.limits

    def loan_context(self) -> LoanContext:
        """What the loan tells the contact rules about itself."""
        return LoanContext(loan_id=self.loan.loan_id, disputed=self.dispute is not None, in_plan=self.in_plan,
                           hardship_until=self.hardship_until, validation_sent_at=self.validation_sent_at,
                           first_message_at=self.first_message_at)

    def breathing_on(self, day: date) -> bool:
        space = self.flags.breathing_space
        return space is not None and space.active_on(day)

    def contact_barred(self, day: date) -> str | None:
        """Why collection contact by us or an agency is barred for now (borrower-v1), or None: the
        person asked us to cease, a breathing space runs, or the debt is disputed."""
        if not self.borrower_v1:
            return None
        if self.flags.cease_contact:
            return "cease_contact"
        if self.breathing_on(day):
            return "breathing_space"
        if self.dispute is not None:
            return "dispute"
        return None

    def escalation_hold(self, day: date) -> str | None:
        """Why the loan does not move up the ladder for now (borrower-v1), or None."""
        if not self.borrower_v1:
            return None
        if self.breathing_on(day):
            return "breathing_space"
        if self.dispute is not None:
            return "dispute"
        if self.hardship_until is not None and day < self.hardship_until:
            return "hardship"
        return None

    @property
    def in_plan(self) -> bool:
        """A plan is running (also while the loan is paused during it)."""
        return self.plan is not None and self.plan.status == "active"

    @property
    def accruing(self) -> bool:
        """Interest and penalty accrue while collecting, also on hold; never while a plan performs."""
        if self.settled_amount is not None:
            return False
        if self.state == LoanState.COLLECTING:
            return True
        return self.state == LoanState.PAUSED and not self.in_plan

    def _event(self, at: datetime, kind: str, **details: object) -> None:
        self.events.append(Event(at=at, kind=kind, details=details))

    def advance(self, loan_now: datetime) -> None:
        """Pass every day boundary up to `loan_now`: accrual, days past due, promise expiry, escalation."""
        if self.closed:
            return
        today = loan_now.date()
        if today > self.accrued_until:
            days = (today - self.accrued_until).days
            if self.accruing and self.owed.principal > 0:
                rate = self.loan.annual_interest_rate
                if self.lazy:
                    # Closed form: the principal (and so each day's rounded amounts) cannot have changed
                    # since accrued_until, because every change of it first brings the book up to date.
                    frozen = self._frozen_days(self.accrued_until, today)
                    self.owed, added = accrue(self.owed, days - frozen, rate, self.policy.penalty_rate_factor,
                                              self.policy.day_count)
                    self._event(self.clock.local_midnight(today), "accrued", start=self.accrued_until.isoformat(),
                                end=today.isoformat(), days=days - frozen, interest=fmt(added.interest),
                                penalty=fmt(added.penalty), total=fmt(self.total),
                                **({"frozen_days": frozen, "why": "breathing_space"} if frozen else {}))
                else:
                    for i in range(days):
                        day = self.accrued_until + timedelta(days=i)
                        self.owed, added = accrue(self.owed, 1, rate, self.policy.penalty_rate_factor,
                                                  self.policy.day_count)
                        self._event(self.clock.local_midnight(day + timedelta(days=1)), "accrued",
                                    day=day.isoformat(), interest=fmt(added.interest), penalty=fmt(added.penalty),
                                    total=fmt(self.total))
            self.accrued_until = today
        self.dpd = days_past_due(self.loan.due_date, today)
        self._check_promise(loan_now)
        if self.plan_hold_until is not None and (today > self.plan_hold_until or self.state != LoanState.COLLECTING):
            if self.state == LoanState.COLLECTING:
                self._event(loan_now, "plan_hold_expired", held_until=self.plan_hold_until.isoformat())
            self.plan_hold_until = None
        self._escalate(loan_now)
        if (AGENTS_V1 in self.features and self.state == LoanState.COLLECTING and self.stage == Stage.AGENCY
                and self.placement is None and self.placements_made >= len(self.policy.agents.agencies)):
            self._force_escalate(loan_now, "every agency of the policy has had the loan")

    def _frozen_days(self, start: date, end: date) -> int:
        """Days in [start, end) on which nothing accrues: a breathing space (borrower-v1)."""
        space = self.flags.breathing_space if self.borrower_v1 else None
        if space is None:
            return 0
        lo, hi = max(start, space.start), min(end, space.end)
        return max(0, (hi - lo).days)

    def _check_promise(self, loan_now: datetime) -> None:
        p = self.promise
        if p is None:
            return
        today = loan_now.date()
        paid_since = self.paid_total - p.paid_total_at_promise
        if paid_since >= p.amount:
            self._event(loan_now, "promise_kept", task_id=p.task_id, amount=fmt(p.amount))
            self.promise = None
        elif today > p.hold_until:
            self.broken_promises += 1
            self._event(loan_now, "promise_broken", task_id=p.task_id, amount=fmt(p.amount),
                        promised_date=p.promised_date.isoformat(), paid_since=fmt(paid_since),
                        broken_promises=self.broken_promises)
            self.promise = None
            self._force_escalate(loan_now, "promise to pay broken")

    def _escalate(self, loan_now: datetime) -> None:
        if self.state != LoanState.COLLECTING:
            return
        if self.stage is not None and self.escalation_hold(loan_now.date()):
            return  # a breathing space, a dispute or reported hardship holds the ladder
        if self.promise is not None and self.stage is not None:
            return  # a promise to pay holds escalation until its date plus grace
        if self.plan_hold_until is not None and self.stage is not None:
            return  # the agent agreed a plan with the borrower: wait for it
        target = escalate(self.policy, self.stage, self.dpd)
        target_rule = self.policy.rule_for(target)
        reached = target_rule is None or self.dpd >= target_rule.enter_at_dpd
        if not reached:
            self.stage = target  # not yet overdue enough: shown as the coming stage, nothing happens
            return
        if target == self.stage and self.stage_entered_on is not None:
            return
        if (self.lazy and self.stage is not None and target_rule is not None
                and all(ch in _CONTACT_CHANNELS for ch in target_rule.channels)
                and loan_now < self.opening(loan_now.date())):
            return  # a stage whose work is contact starts when contact may start (lazy-v1: its wake)
        previous = self.stage
        skipped = [r.stage.value for r in self.policy.ladder
                   if previous is not None and previous.rank < r.stage.rank < target.rank]
        self.stage = target
        self.stage_entered_on = loan_now.date()
        rule = self.policy.rule_for(target)
        fee = rule.entry_fee if rule else ZERO
        if fee > 0:
            self.owed = add_fee(self.owed, fee)
        self._event(loan_now, "stage_entered", stage=target.value, previous=previous.value if previous else None,
                    dpd=self.dpd, skipped=skipped, fee=fmt(fee))

    def _force_escalate(self, loan_now: datetime, reason: str) -> None:
        """Escalate to the next stage at once (refused, promise broken, wrong number, agencies exhausted)."""
        if self.state != LoanState.COLLECTING or self.stage is None or AGENTS_V1 not in self.features:
            return
        if self.escalation_hold(loan_now.date()):
            return
        later = [r for r in self.policy.ladder if r.stage.rank > self.stage.rank]
        if not later:
            return
        target = later[0]
        previous = self.stage
        self.stage = target.stage
        self.stage_entered_on = loan_now.date()
        if target.entry_fee > 0:
            self.owed = add_fee(self.owed, target.entry_fee)
        self._event(loan_now, "stage_entered", stage=target.stage.value, previous=previous.value, dpd=self.dpd,
                    skipped=[], fee=fmt(target.entry_fee), reason=reason)

    # ------------------------------------------------------------------ actions

    def _usable(self, channel: Channel) -> str | None:
        """Why a channel cannot be used for this borrower, or None."""
        b = self.loan.borrower
        if channel in self.bad_channels:
            return f"{channel.value} marked bad (wrong number)"
        if channel in (Channel.SMS, Channel.VOICE, Channel.CALL_TASK) and not b.phone:
            return "no phone number"
        if channel == Channel.EMAIL and not b.email:
            return "no email address"
        if channel == Channel.VISIT_TASK and not b.address:
            return "no address"
        return None

    def due_actions(self, loan_now: datetime) -> list[Action]:
        """What should happen now, given the state: contacts of the stage and the reconciliation of
        the outside world (tasks, placement, bureau) with the state. Keys make repeats harmless."""
        lid = self.loan.loan_id
        acts: list[Action] = []
        if self.state in (LoanState.CLOSED, LoanState.RESTRUCTURING) or (
            self.state == LoanState.COLLECTING and self.stage is not None
        ):
            current_rank = self.stage.rank if self.stage else 99
            barred = self.contact_barred(loan_now.date()) if self.state == LoanState.COLLECTING else None
            for t in self.open_tasks:
                if self.state != LoanState.COLLECTING or t.stage.rank < current_rank or barred:
                    why = {LoanState.CLOSED: f"loan closed ({self.outcome.value if self.outcome else ''})",
                           LoanState.RESTRUCTURING: "payment plan accepted"}.get(
                               self.state, f"contact barred: {barred}" if barred else "stage escalated")
                    acts.append(Action(key=f"{lid}:cancel:{t.task_id}", kind=ActionKind.CANCEL_TASK,
                                       task_id=t.task_id, reason=why, summary=f"cancel {t.kind} task {t.task_id}"))
            if self.placement is not None and (self.state != LoanState.COLLECTING or self.stage != Stage.AGENCY
                                               or loan_now.date() >= self.placement.until or barred):
                why = ("loan closed" if self.closed else "payment plan accepted"
                       if self.state == LoanState.RESTRUCTURING else f"contact barred: {barred}"
                       if barred else "placement period ended"
                       if self.stage == Stage.AGENCY else "escalated to legal")
                acts.append(Action(key=f"{lid}:recall:{self.placement.placement_id}", kind=ActionKind.RECALL_AGENCY,
                                   placement_id=self.placement.placement_id, reason=why,
                                   summary=f"recall agency placement {self.placement.placement_id}"))
        agents_v1 = AGENTS_V1 in self.features
        for c in self.tasks_to_close if agents_v1 else []:
            acts.append(Action(key=f"{lid}:close:{c.task_id}", kind=ActionKind.CLOSE_TASK, task_id=c.task_id,
                               agent_id=c.agent_id, outcome=c.outcome, summary=f"close task {c.task_id} ({c.outcome})"))
        if self.state == LoanState.COLLECTING and agents_v1:
            for t in self.open_tasks:
                if t.due_by is not None and t.due_by <= loan_now and t.escalations < self.policy.agents.max_sla_escalations:
                    acts.append(Action(key=f"{lid}:sla:{t.task_id}:{t.escalations + 1}", kind=ActionKind.REASSIGN_TASK,
                                       task_id=t.task_id, agent_id=t.assigned_to,
                                       reason=f"untouched past its SLA of {self.policy.agents.task_sla_days} days",
                                       summary=f"escalate {t.kind} task {t.task_id}: reassign, notify supervisor"))
        if self.state != LoanState.PAUSED:
            acts.extend(self._bureau_actions())
        if PLAN_NOTICES in self.features and self.state == LoanState.RESTRUCTURING and self.plan is not None:
            for channel in (Channel.EMAIL, Channel.SMS):
                key = f"{lid}:plan{self.plan.number}:accepted:{channel.value}"
                if key not in self.done and self._usable(channel) is None:
                    acts.append(Action(key=key, kind=ActionKind.NOTICE, channel=channel, notice_kind="plan_accepted",
                                       summary=f"confirm plan {self.plan.number} by {channel.value}"))
        if self.state != LoanState.COLLECTING or self.stage is None:
            return acts
        required = self._required_notices(loan_now)
        if self._validation_pending():
            return acts + required  # US: the validation notice is the first message; nothing else goes before it
        acts += self._stage_actions(loan_now)
        return acts + required  # a warning rides along, after the stage's own contact

    def _stage_actions(self, loan_now: datetime) -> list[Action]:
        """The stage's own actions now: its contacts (repeated every `repeat_every_days`), its task,
        placement or referral."""
        lid = self.loan.loan_id
        acts: list[Action] = []
        agents_v1 = AGENTS_V1 in self.features
        assert self.stage is not None
        rule = self.policy.rule_for(self.stage)
        if rule is None or self.stage_entered_on is None:
            return acts
        today = loan_now.date()
        attempt = (today - self.stage_entered_on).days // rule.repeat_every_days if rule.repeat_every_days else 0
        suffix = f":r{self.episode}" if self.episode else ""
        barred = self.contact_barred(today)
        for channel in rule.channels:
            if barred and channel in (Channel.CALL_TASK, Channel.VISIT_TASK, Channel.AGENCY):
                continue  # no agent work and no placement while contact is barred; they come back after it
            key = f"{lid}:{self.stage.value}:{channel.value}:{attempt}{suffix}"
            if channel == Channel.AGENCY and self.placements_made:
                if f"{key}:p{self.placements_made}" in self.done:
                    continue
            elif key in self.done:
                continue
            common = dict(key=key, channel=channel, stage=self.stage, attempt=attempt)
            unusable = self._usable(channel)
            if unusable:
                acts.append(Action(kind=ActionKind.SKIP, reason=unusable, summary=f"skip {channel.value}: {unusable}",
                                   **common))
            elif channel.is_direct_contact:
                acts.append(Action(kind=ActionKind.NOTICE, summary=f"{self.stage.value} notice #{attempt + 1} by {channel.value}",
                                   **common))
            elif (channel == Channel.CALL_TASK and agents_v1 and self.policy.agents.bot_first
                  and f"{key}:bot" not in self.done):
                acts.append(Action(kind=ActionKind.BOT_CALL, key=f"{key}:bot", channel=Channel.VOICE, stage=self.stage,
                                   attempt=attempt, summary="automated agent (voice bot) calls first"))
            elif channel == Channel.CALL_TASK and self.bot_outcomes.get(f"{key}:bot", "no_answer") != "no_answer":
                continue  # the bot's outcome steers the loan; no human call is needed now
            elif channel in _TASK_KIND:
                kind = _TASK_KIND[channel]
                acts.append(Action(kind=ActionKind.CREATE_TASK, task_id=f"{lid}-{kind}-{attempt + 1}{suffix}",
                                   summary=f"create {kind} task", **common))
            elif channel == Channel.AGENCY:
                n = self.placements_made
                agencies = self.policy.agents.agencies
                if self.placement is None and n < len(agencies) and (agents_v1 or n == 0):
                    if n:
                        common["key"] = f"{key}:p{n}"
                    acts.append(Action(kind=ActionKind.PLACE_AGENCY, placement_id=f"{lid}-agency-{n + 1}{suffix}",
                                       agency_id=agencies[n].agency_id,
                                       summary=f"place with collection agency {agencies[n].agency_id}", **common))
            elif channel == Channel.LEGAL:
                acts.append(Action(kind=ActionKind.REFER_LEGAL, summary="refer for legal action", **common))
        return acts

    # ------------------------------------------------------------------ what the rules require (borrower-v1)

    def _validation_pending(self) -> bool:
        return (self.borrower_v1 and self.limits.validation_period_days is not None
                and self.validation_sent_at is None)

    def _warnings_needed(self, today: date) -> list[tuple[str, str, date]]:
        """(warning key, notice kind, the day what it announces may happen at the earliest) for every
        warning the rules still require of this loan in this episode."""
        if not self.borrower_v1 or self.state != LoanState.COLLECTING:
            return []
        out: list[tuple[str, str, date]] = []
        lim = self.limits
        if (lim.credit_report_warning_days is not None and "credit_report_warning" not in self.warned
                and BureauStatus.DELINQUENT not in self.bureau_reported):
            day = self.loan.due_date + timedelta(days=self.policy.bureau.report_delinquency_at_dpd)
            out.append(("credit_report_warning", "credit_report_warning", day))
        for stage, kind in _WARNING_OF.items():
            rule = self.policy.rule_for(stage)
            if rule is None or (self.stage is not None and self.stage.rank > stage.rank):
                continue
            if stage == Stage.AGENCY and (self.placements_made or self.placement is not None
                                          or self.flags.cease_contact):
                continue  # placed already in this episode, or never while the borrower asked us to cease
            if stage == Stage.LEGAL and self.legal_referred_this_episode:
                continue
            key = f"{kind}:{self.episode}"
            if key not in self.warned:
                out.append((key, kind, self.loan.due_date + timedelta(days=rule.enter_at_dpd)))
        return out

    @property
    def legal_referred_this_episode(self) -> bool:
        suffix = f":r{self.episode}" if self.episode else ""
        return any(k.startswith(f"{self.loan.loan_id}:legal:legal:") and k.endswith(f":0{suffix}") for k in self.done)

    def _warning_lead(self, kind: str) -> int:
        lim = self.limits
        return (lim.credit_report_warning_days or 7) if kind == "credit_report_warning" else lim.escalation_warning_days

    def _required_notices(self, loan_now: datetime) -> list[Action]:
        """The notices the rule pack requires now: the US validation notice first, then every warning
        whose window has opened (from WARNING_WINDOW_DAYS before what it announces), and a plan offer
        after reported hardship."""
        if not self.borrower_v1 or self.state != LoanState.COLLECTING:
            return []
        if self.policy.ladder and self.dpd < self.policy.ladder[0].enter_at_dpd:
            return []  # no contact of any kind before the loan is overdue enough for its first stage
        lid = self.loan.loan_id
        today = loan_now.date()
        acts: list[Action] = []
        if self._validation_pending():
            return self._notices("validation", f"{lid}:validation", "validation notice", duty="validation")
        for key, kind, day in self._warnings_needed(today):
            if today >= day - timedelta(days=WARNING_WINDOW_DAYS):
                announce = max(day, today + timedelta(days=self._warning_lead(kind)))
                acts += self._notices(kind, f"{lid}:warn:{key}", kind.replace("_", " "), duty=key,
                                      event_date=announce)
        if self.hardship_reports and self.limits.hardship_hold_days is not None:
            acts += self._notices("plan_offer", f"{lid}:plan_offer:{self.hardship_reports}", "payment plan offer")
        return acts

    def _notices(self, kind: str, key: str, what: str, duty: str | None = None,
                 event_date: date | None = None) -> list[Action]:
        acts = []
        for channel in (Channel.EMAIL, Channel.SMS):
            k = f"{key}:{channel.value}"
            if k in self.done or self._usable(channel) is not None:
                continue
            acts.append(Action(key=k, kind=ActionKind.NOTICE, channel=channel, stage=self.stage, notice_kind=kind,
                               duty=duty, event_date=event_date, summary=f"{what} by {channel.value}"))
        return acts

    def own_record(self, loan_now: datetime) -> ContactRecord:
        """This loan's own contacts of the last days (what the loan knows without asking its borrower):
        the loan never asks for more than the pack allows a day, so which contact waits is decided here,
        by the order of the due actions, not by which request reaches the borrower first."""
        since = loan_now - timedelta(days=8)
        contacts = []
        for e in reversed(self.events):
            if e.at < since:
                break
            if e.kind in ("notice_sent", "bot_call", "contact_allowed") and e.details.get("key"):
                channel = e.details.get("channel") or "call"
                actor = (Actor.BOT if e.kind == "bot_call"
                         else Actor(e.details.get("actor") or "agent") if e.kind == "contact_allowed" else Actor.SYSTEM)
                attempt = ContactAttempt(key=e.details["key"], loan_id=self.loan.loan_id,
                                         channel=contact_channel({"call": "call_task", "visit": "visit_task",
                                                                  "voice": "voice"}.get(channel, channel)),  # type: ignore[arg-type]
                                         actor=actor)
                contacts.append(RulePastContact.of(attempt, e.at))
        return ContactRecord(contacts=contacts[::-1])

    def screen(self, a: Action, loan_now: datetime, record: ContactRecord | None = None) -> ContactDecision | None:
        """The rules this loan can apply by itself before an action runs (borrower-v1): a contact
        against the person's flags and the pack's hours (the borrower's entity then decides against the
        person's whole record); the first negative bureau report and an agency placement or legal
        referral against their gates. None: no rule applies."""
        if not self.borrower_v1:
            return None
        ctx = self.loan_context()
        if a.kind in (ActionKind.NOTICE, ActionKind.BOT_CALL) and a.channel is not None:
            return decide(self.attempt(a), ctx, record or ContactRecord(), self.flags, self.limits, self.pack, loan_now)
        if a.kind == ActionKind.CREATE_TASK and a.channel is not None:  # the agent asks again before the call
            return decide(self.attempt(a), ctx, ContactRecord(), self.flags, self.limits, self.pack, loan_now)
        if a.kind == ActionKind.BUREAU and a.bureau_status == BureauStatus.DELINQUENT:
            return bureau_gate(self.pack, ctx, ContactRecord(), self.flags, self.limits, loan_now,
                               self.warned.get("credit_report_warning"))
        if a.kind in (ActionKind.PLACE_AGENCY, ActionKind.REFER_LEGAL):
            stage = Stage.AGENCY if a.kind == ActionKind.PLACE_AGENCY else Stage.LEGAL
            return escalation_gate(self.pack, stage, ctx, self.flags, self.limits, loan_now,
                                   self.warned.get(f"{_WARNING_OF[stage]}:{self.episode}"))
        return None

    def attempt(self, a: Action) -> ContactAttempt:
        """The contact attempt an action makes, in the rule packs' terms."""
        if a.kind == ActionKind.BOT_CALL:
            channel, actor = contact_channel("call_task"), Actor.BOT
        elif a.kind == ActionKind.CREATE_TASK:
            channel, actor = contact_channel(a.channel.value), Actor.AGENT  # type: ignore[union-attr]
        else:
            channel, actor = contact_channel(a.channel.value), Actor.SYSTEM  # type: ignore[union-attr]
        return ContactAttempt(key=a.key, loan_id=self.loan.loan_id, channel=channel, actor=actor,  # type: ignore[arg-type]
                              purpose=ContactPurpose(a.purpose),
                              notice=a.notice_kind if a.notice_kind != "collection" else None)

    def refuse(self, a: Action, decision: ContactDecision, loan_now: datetime) -> None:
        """A rule said no: a deferral waits until its instant; a block uses up an ordinary contact (the
        next one has its own key), but holds what is required (a warning, the validation notice, a
        gate, a task), which is asked again at every wake until it may go."""
        if decision.verdict == Verdict.DEFER:
            self.defer(a, decision.until or loan_now, decision.rule, decision.explanation, loan_now)
        elif (a.kind in (ActionKind.NOTICE, ActionKind.BOT_CALL) and a.notice_kind not in REQUIRED_NOTICES
              and not decision.rule.endswith(".validation_first")):
            self.block(a, decision.rule, decision.explanation, loan_now)
        else:
            self.hold(a, decision, loan_now)

    def hold(self, a: Action, decision: ContactDecision, loan_now: datetime) -> None:
        self.deferred.pop(a.key, None)
        if self.held.get(a.key) != decision.rule:
            kind = "contact_blocked" if a.gated else "action_held"
            self._event(loan_now, kind, key=a.key, action=a.kind.value,
                        channel=a.channel.value if a.channel else None, rule=decision.rule,
                        explanation=decision.explanation, held=True)
        self.held[a.key] = decision.rule

    def _bureau_actions(self) -> list[Action]:
        lid = self.loan.loan_id
        wanted: BureauStatus | None = None
        if self.closed:
            wanted = BureauStatus.WRITTEN_OFF if self.outcome == Outcome.WRITTEN_OFF else BureauStatus.CURED
        elif self.state == LoanState.RESTRUCTURING:
            wanted = BureauStatus.RESTRUCTURED
        elif self.dpd >= self.policy.bureau.report_delinquency_at_dpd:
            wanted = BureauStatus.DELINQUENT
        if wanted is None:
            return []
        # Report each change of status once per episode: key by status and how many reports came before.
        if self.bureau_reported and self.bureau_reported[-1] == wanted:
            return []
        key = f"{lid}:bureau:{wanted.value}:{len(self.bureau_reported)}"
        return [Action(key=key, kind=ActionKind.BUREAU, bureau_status=wanted,
                       summary=f"report {wanted.value} to the credit bureau")]

    def prune_deferred(self, due_keys: set[str]) -> None:
        """Forget deferrals and holds of actions that are no longer due (the stage moved on, the loan paused)."""
        for key in [k for k in self.deferred if k not in due_keys]:
            del self.deferred[key]
        for key in [k for k in self.held if k not in due_keys]:
            del self.held[key]

    def defer(self, action: Action, until: datetime, rule: str, explanation: str, loan_now: datetime) -> None:
        if self.lazy:
            local = until.astimezone(self.clock.zone)
            if local.timetz().replace(tzinfo=None) == self.policy.contact.window_start:
                until = self.opening(local.date())  # the loan's own place in the morning's queue
        if action.key not in self.deferred:
            self._event(loan_now, "contact_deferred", key=action.key, channel=action.channel.value if action.channel else None,
                        rule=rule, until=until.isoformat(), explanation=explanation)
        self.deferred[action.key] = until

    def block(self, action: Action, rule: str, explanation: str, loan_now: datetime) -> None:
        self.done.append(action.key)
        self.deferred.pop(action.key, None)
        self._event(loan_now, "contact_blocked", key=action.key, channel=action.channel.value if action.channel else None,
                    rule=rule, explanation=explanation)

    def record(self, action: Action, loan_now: datetime, *, reference: str | None = None,
               duplicate: bool = False, failed: str | None = None, agency_id: str | None = None,
               assigned_to: str | None = None, team: str | None = None,
               bot: BotCallResult | None = None) -> None:
        """Record what an action did, or that it failed, in the state and the audit trail.

        A failed action is tried again at the next day boundary (the activity's own retries have
        already run), at most MAX_ACTION_FAILURES times; then a contact or filing is given up (and
        said so), while bookkeeping that the state still calls for (bureau, cancel, recall) keeps
        being retried once a day.
        """
        self.deferred.pop(action.key, None)
        base = dict(key=action.key)
        if failed:
            n = self.failures.get(action.key, 0) + 1
            self.failures[action.key] = n
            retry_at = self.clock.local_midnight(loan_now.date() + timedelta(days=1))
            if self.lazy and action.gated:
                retry_at = self.opening(loan_now.date() + timedelta(days=1))
            reconcile = action.kind in (ActionKind.BUREAU, ActionKind.CANCEL_TASK, ActionKind.RECALL_AGENCY,
                                        ActionKind.CLOSE_TASK, ActionKind.REASSIGN_TASK)
            give_up = n >= MAX_ACTION_FAILURES and not reconcile
            self._event(loan_now, "action_failed", action=action.kind.value, error=failed, failures=n,
                        retry_at=None if give_up else retry_at.isoformat(), gave_up=give_up, **base,
                        channel=action.channel.value if action.channel else None)
            if give_up:
                self.done.append(action.key)
            else:
                self.deferred[action.key] = retry_at
            return
        self.failures.pop(action.key, None)
        self.held.pop(action.key, None)
        if action.key not in self.done:
            self.done.append(action.key)
        if duplicate:
            base["duplicate"] = True
        if action.kind == ActionKind.SKIP:
            self._event(loan_now, "contact_skipped", channel=action.channel.value if action.channel else None,
                        reason=action.reason, **base)
        elif action.kind == ActionKind.NOTICE:
            if self.borrower_v1:
                self.first_message_at = self.first_message_at or loan_now
                if action.notice_kind == "validation" and self.validation_sent_at is None:
                    self.validation_sent_at = loan_now
                if action.duty and action.duty not in self.warned and action.notice_kind != "validation":
                    self.warned[action.duty] = loan_now
            self._event(loan_now, "notice_sent", channel=action.channel.value if action.channel else None,
                        **({"notice": action.notice_kind} if action.notice_kind != "collection" else {}),
                        stage=action.stage.value if action.stage else None, attempt=action.attempt,
                        reference=reference, amount_owed=fmt(self.total), dpd=self.dpd, **base)
        elif action.kind == ActionKind.CREATE_TASK:
            kind = _TASK_KIND[action.channel]  # type: ignore[index]
            due_by = self.clock.local_midnight(loan_now.date() + timedelta(days=self.policy.agents.task_sla_days))
            self.open_tasks.append(OpenTask(task_id=action.task_id or action.key, kind=kind, stage=action.stage or Stage.CALL,  # type: ignore[arg-type]
                                            created_at=loan_now, assigned_to=assigned_to, team=team, due_by=due_by))
            self._event(loan_now, "task_created", task_id=action.task_id, task_kind=kind, assigned_to=assigned_to,
                        team=team, **base)
        elif action.kind == ActionKind.REASSIGN_TASK:
            due_by = self.clock.local_midnight(loan_now.date() + timedelta(days=self.policy.agents.task_sla_days))
            for t in self.open_tasks:
                if t.task_id == action.task_id:
                    t.escalations += 1
                    t.assigned_to = assigned_to or t.assigned_to
                    t.due_by = due_by
            self._event(loan_now, "task_escalated", task_id=action.task_id, from_agent=action.agent_id,
                        to_agent=assigned_to, reason=action.reason, **base)
        elif action.kind == ActionKind.CLOSE_TASK:
            self.tasks_to_close = [c for c in self.tasks_to_close if c.task_id != action.task_id]
            self._event(loan_now, "task_closed", task_id=action.task_id, agent_id=action.agent_id,
                        outcome=action.outcome, **base)
        elif action.kind == ActionKind.BOT_CALL:
            outcome = bot.outcome if bot else "no_answer"
            self.bot_outcomes[action.key] = outcome
            self._event(loan_now, "bot_call", outcome=outcome, note=bot.note if bot else None,
                        promised_amount=fmt(bot.promised_amount) if bot and bot.promised_amount else None,
                        promised_date=bot.promised_date.isoformat() if bot and bot.promised_date else None, **base)
            if bot is not None:
                self._steer(ContactOutcomeKind(outcome), action.key, "voice-bot", bot.promised_amount,
                            bot.promised_date, loan_now)
        elif action.kind == ActionKind.CANCEL_TASK:
            self.open_tasks = [t for t in self.open_tasks if t.task_id != action.task_id]
            self._event(loan_now, "task_cancelled", task_id=action.task_id, reason=action.reason, **base)
        elif action.kind == ActionKind.PLACE_AGENCY:
            until = loan_now.date() + timedelta(days=self.policy.agents.agency_placement_days)
            agency_id = agency_id or action.agency_id or "agency"
            rate = next((a.commission_rate for a in self.policy.agents.agencies if a.agency_id == agency_id), ZERO)
            self.placement = Placement(placement_id=action.placement_id or action.key, agency_id=agency_id,
                                       commission_rate=rate, placed_on=loan_now.date(), until=until)
            self.placements_made += 1
            self._event(loan_now, "agency_placed", placement_id=action.placement_id, agency_id=agency_id,
                        until=until.isoformat(), amount_owed=fmt(self.total), **base)
        elif action.kind == ActionKind.RECALL_AGENCY:
            self._event(loan_now, "agency_recalled", placement_id=action.placement_id, reason=action.reason, **base)
            if self.placement is not None:
                self.past_placements.append(self.placement)
            self.placement = None
        elif action.kind == ActionKind.REFER_LEGAL:
            self.legal_case_id = reference or action.key
            self._event(loan_now, "legal_referred", case_id=self.legal_case_id, amount_owed=fmt(self.total), **base)
        elif action.kind == ActionKind.BUREAU:
            self.bureau_reported.append(action.bureau_status)  # type: ignore[arg-type]
            self._event(loan_now, "bureau_reported", status=action.bureau_status.value if action.bureau_status else None,
                        dpd=self.dpd, amount_owed=fmt(self.total), **base)

    def contact_history(self) -> ContactHistory:
        """This loan's direct contacts (the borrower entity will merge the borrower's other loans)."""
        contacts = [
            PastContact(at=e.at, channel=Channel(e.details["channel"]), loan_id=self.loan.loan_id)
            for e in self.events
            if e.kind == "notice_sent" and e.details.get("channel")
        ] + [
            PastContact(at=e.at, channel=Channel.VOICE, loan_id=self.loan.loan_id)
            for e in self.events
            if e.kind == "bot_call"  # the voice bot reached out too
        ]
        return ContactHistory(contacts=contacts)

    # ------------------------------------------------------------------ the borrower's entity (borrower-v1)

    def apply_borrower_flags(self, notice: FlagsNotice, loan_now: datetime) -> bool:
        """The borrower's entity passed on the person's flags: they apply to this loan from now on.
        Bankruptcy and death put the loan on hold (paused with that reason) until an operator resumes
        or writes it off. Idempotent: an older or repeated notice changes nothing."""
        if notice.seq < self.flags_seq or (notice.seq == self.flags_seq and notice.flags == self.flags):
            return False
        before = self.flags
        self.flags, self.flags_seq = notice.flags, notice.seq
        self._event(loan_now, "borrower_flag", change=notice.change, **notice.details,
                    flags=notice.flags.model_dump(mode="json"), **_by(notice.operator_id))
        if self.closed:
            return True
        for flag in ("bankruptcy", "deceased"):
            ref = getattr(notice.flags, flag)
            if ref and not getattr(before, flag):
                reason = f"{flag}: {ref}"
                if self.state == LoanState.PAUSED:
                    self._event(loan_now, "hold_reason", reason=reason)
                else:
                    self.pause(reason, loan_now, by=notice.operator_id)
        return True

    def open_dispute(self, body: Dispute, loan_now: datetime) -> str | None:
        """The borrower disputes this debt: collection contact, escalation and negative reporting stop
        (installment reminders of a running plan go on) until `dispute_resolved`."""
        if self.closed:
            return "loan is closed"
        if self.dispute is not None:
            self._event(loan_now, "dispute_repeated", reason=body.reason, **_by(body.operator_id))
            return None
        self.dispute = DisputeState(reason=body.reason, opened_at=loan_now, operator_id=body.operator_id)
        within = None
        if self.validation_sent_at is not None and self.limits.validation_period_days is not None:
            within = loan_now.date() <= validation_period_end(self.validation_sent_at, self.limits)
        self._event(loan_now, "dispute_opened", reason=body.reason, **_by(body.operator_id),
                    **({"within_validation_period": within} if within is not None else {}))
        return None

    def resolve_dispute(self, body: DisputeResolved, loan_now: datetime) -> str | None:
        if self.closed:
            return "loan is closed"
        if self.dispute is None:
            return "no dispute is open on this loan"
        self.dispute = None
        self._event(loan_now, "dispute_resolved", upheld=body.upheld, note=body.note, **_by(body.operator_id))
        if body.upheld:
            if self.in_plan and self.plan is not None:
                self.plan.status = "written_off"
            self._close(loan_now, Outcome.WRITTEN_OFF, reason="dispute upheld", written_off=fmt(self.total),
                        **_by(body.operator_id))
        else:
            self.advance(loan_now)
        return None

    def contact_request(self, req: ContactRequest, key: str, loan_now: datetime) -> ContactAttempt | ContactAnswer:
        """An agent or agency asks before a call or visit. The attempt to put to the borrower's entity,
        or the answer at once where this loan's own state says no."""
        pack = self.pack.value
        refusal: tuple[str, str] | None = None
        if self.closed:
            refusal = (f"{pack}.loan_closed", "the loan is closed: no collection contact")
        elif self.state == LoanState.PAUSED:
            refusal = (f"{pack}.operator_hold", "the loan is on hold: no contact until it resumes")
        elif self.state == LoanState.RESTRUCTURING:
            refusal = (f"{pack}.plan_running", "a payment plan performs: only its installment reminders go")
        if refusal is not None:
            self._event(loan_now, "contact_blocked", channel=req.channel, actor=req.actor, agent_id=req.agent_id,
                        rule=refusal[0], explanation=refusal[1], key=key)
            return ContactAnswer(allowed=False, rule=refusal[0], explanation=refusal[1])
        self.contact_requests += 1
        channel = contact_channel("call_task" if req.channel == "call" else "visit_task")
        return ContactAttempt(key=key, loan_id=self.loan.loan_id, channel=channel,  # type: ignore[arg-type]
                              actor=Actor(req.actor), actor_id=req.agent_id, purpose=ContactPurpose.COLLECTION)

    def record_contact_answer(self, req: ContactRequest, key: str, decision: ContactDecision,
                              loan_now: datetime) -> ContactAnswer:
        kind = {Verdict.ALLOW: "contact_allowed", Verdict.DEFER: "contact_deferred",
                Verdict.BLOCK: "contact_blocked"}[decision.verdict]
        self._event(loan_now, kind, channel=req.channel, actor=req.actor, agent_id=req.agent_id, rule=decision.rule,
                    explanation=decision.explanation, key=key,
                    **({"until": decision.until.isoformat()} if decision.until else {}))
        return ContactAnswer(allowed=decision.verdict == Verdict.ALLOW, rule=decision.rule, until=decision.until,
                             explanation=decision.explanation)

    def borrower_note(self, loan_now: datetime) -> LoanNote | None:
        """What the borrower's entity should hear now (state, stage or outcome changed), or None."""
        if not self.borrower_v1:
            return None
        told = {"state": self.state.value, "stage": self.stage.value if self.stage and not self.closed else None,
                "outcome": self.outcome.value if self.outcome else None}
        if told == self.told:
            return None
        return self.note(loan_now)

    def note(self, loan_now: datetime) -> LoanNote:
        return LoanNote(loan_id=self.loan.loan_id, state=self.state,
                        stage=self.stage if not self.closed else None, outcome=self.outcome, rule_pack=self.pack,
                        timezone=self.loan.borrower.timezone, at=loan_now)

    def mark_told(self, note: LoanNote) -> None:
        self.told = {"state": note.state.value, "stage": note.stage.value if note.stage else None,
                     "outcome": note.outcome.value if note.outcome else None}

    def question(self, attempt: ContactAttempt) -> ContactQuestion:
        return ContactQuestion(attempt=attempt, loan=self.loan_context(), pack=self.pack, limits=self.limits,
                               state=self.state, stage=self.stage if not self.closed else None)

    def conversation(self, outcome: str, task_id: str, agent_id: str, loan_now: datetime) -> Conversation | None:
        """US: a call outcome that means the borrower was reached starts the 7-day call cool-off, which
        the borrower's entity must know (it holds the person's record)."""
        if not self.borrower_v1 or not counts_as_conversation(self.pack, outcome):
            return None
        return Conversation(key=f"{self.loan.loan_id}:conversation:{task_id}", loan_id=self.loan.loan_id,
                            at=loan_now, actor=Actor.BOT if agent_id == "voice-bot" else Actor.AGENT)

    # ------------------------------------------------------------------ borrower and operator input

    def reject(self, loan_now: datetime, what: str, reason: str) -> None:
        """Record a refused signal: nothing else changes."""
        self._event(loan_now, "rejected", signal=what, reason=reason)

    def apply_payment(self, p: PaymentReceived, loan_now: datetime,
                      collected_by: dict[str, str] | None = None) -> str:
        """Apply a payment; answers "applied", "duplicate" or "closed"."""
        if p.payment_id in self.payment_ids:
            self._event(loan_now, "payment_duplicate", payment_id=p.payment_id, amount=fmt(p.amount))
            return "duplicate"
        if self.closed:
            self._event(loan_now, "payment_after_close", payment_id=p.payment_id, amount=fmt(p.amount))
            self.payment_ids.append(p.payment_id)
            self.overpaid += p.amount
            self.paid_total += p.amount
            return "closed"
        self.payment_ids.append(p.payment_id)
        in_plan = self.in_plan
        plan_paid_before = self.plan.paid_amount if self.plan else ZERO
        self.owed, alloc = allocate(self.owed, p.amount)
        self.paid_total += p.amount
        self.overpaid += alloc.overpayment
        if in_plan and self.plan is not None:
            self.plan.paid_amount += alloc.applied
        self._event(loan_now, "payment_applied", payment_id=p.payment_id, amount=fmt(p.amount),
                    paid_at=p.paid_at.isoformat() if p.paid_at else None,
                    allocation=alloc.model_dump(mode="json"), balance=self.owed.balance().model_dump(mode="json"),
                    **({"collected_by": collected_by} if collected_by else {}))
        if self.total <= 0:
            if in_plan and self.plan is not None:
                early = settles_early(self.plan.down_payment, self.plan.schedule, plan_paid_before)
                self.plan.status = "paid_off" if early else "completed"
                self._close(loan_now, Outcome.PAID_IN_FULL if early else Outcome.PLAN_COMPLETED)
            else:
                self._close(loan_now, Outcome.PAID_IN_FULL)
        return "applied"

    def check_reversal(self, r: PaymentReversed, loan_now: datetime) -> str | None:
        """Why this reversal cannot be taken (nothing changes), or None."""
        if r.payment_id in self.reversed_ids:
            return None  # already reversed: taken again as a no-op
        found = self._applied(r.payment_id)
        if found is None:
            return f"payment_id {r.payment_id!r} is not a payment this loan received"
        if self.closed and found.kind == "payment_applied":
            if self.outcome == Outcome.WRITTEN_OFF:
                return "the loan was written off; a returned payment is booked against the write-off, not the loan"
            window = self.policy.payments.reversal_window_days
            if self.outcome != Outcome.PAID_IN_FULL or window == 0 or self.closed_at is None or \
                    loan_now >= self.closed_at + timedelta(days=window):
                return (f"the loan closed {self.outcome.value if self.outcome else ''} on "
                        f"{self.closed_at.date().isoformat() if self.closed_at else '?'} and its reversal window "
                        f"({window} days) is over")
        return None

    def _applied(self, payment_id: str) -> Event | None:
        return next((e for e in self.events if e.kind in ("payment_applied", "payment_after_close")
                     and e.details.get("payment_id") == payment_id), None)

    def reverse_payment(self, r: PaymentReversed, loan_now: datetime) -> tuple[str | None, Decimal]:
        """Undo an applied payment: each amount goes back where the waterfall took it from and the loan is
        collected again at the stage its DPD calls for (a paid_in_full loan inside its reversal window
        reopens). Answers (refusal, what went back to a running plan)."""
        refusal = self.check_reversal(r, loan_now)
        if refusal:
            self._event(loan_now, "reversal_refused", payment_id=r.payment_id, reason=refusal,
                        requested_reason=r.reason, **_by(r.operator_id))
            return refusal, ZERO
        if r.payment_id in self.reversed_ids:
            self._event(loan_now, "reversal_duplicate", payment_id=r.payment_id, **_by(r.operator_id))
            return None, ZERO
        applied = self._applied(r.payment_id)
        assert applied is not None
        amount = Decimal(applied.details["amount"])
        self.reversed_ids.append(r.payment_id)
        self.paid_total -= amount
        if applied.kind == "payment_after_close":
            self.overpaid -= amount
            self._event(loan_now, "payment_reversed", payment_id=r.payment_id, amount=fmt(amount), reason=r.reason,
                        restored={"overpayment": fmt(amount)}, **_by(r.operator_id))
            return None, ZERO
        alloc = applied.details["allocation"]
        back = {part: Decimal(alloc[part]) for part in ("fees", "penalty", "interest", "principal")}
        self.overpaid -= Decimal(alloc.get("overpayment", "0"))
        self.owed = Components(principal=self.owed.principal + back["principal"],
                               interest=self.owed.interest + back["interest"],
                               penalty=self.owed.penalty + back["penalty"], fees=self.owed.fees + back["fees"])
        to_plan = ZERO
        if self.in_plan and self.plan is not None and applied.at >= self.plan.accepted_at:
            to_plan = min(self.plan.paid_amount, sum(back.values(), ZERO))
            self.plan.paid_amount -= to_plan
        reopened = self.closed
        if reopened:
            self.state, self.outcome, self.closed_at = LoanState.COLLECTING, None, None
            self.accrued_until = loan_now.date()  # accrual resumes from today on what is owed again
            self.episode += 1
            self.placements_made = 0
            self.stage_entered_on = loan_now.date()
        self._event(loan_now, "payment_reversed", payment_id=r.payment_id, amount=fmt(amount), reason=r.reason,
                    restored={k: fmt(v) for k, v in back.items()}, balance=self.owed.balance().model_dump(mode="json"),
                    reopened=reopened, **({"from_plan": fmt(to_plan)} if to_plan else {}), **_by(r.operator_id))
        if reopened:
            self.advance(loan_now)
        return None, to_plan

    @property
    def reversal_window_ends(self) -> datetime | None:
        """A paid_in_full loan stays open to reversals until then (money-v1; None: it ends now)."""
        window = self.policy.payments.reversal_window_days
        if MONEY_V1 not in self.features or self.outcome != Outcome.PAID_IN_FULL or not window or self.closed_at is None:
            return None
        return self.closed_at + timedelta(days=window)

    def _close(self, loan_now: datetime, outcome: Outcome, **details: object) -> None:
        self.state = LoanState.CLOSED
        self.outcome = outcome
        self.closed_at = loan_now
        self.promise = None
        self.deferred.clear()
        self._event(loan_now, "closed", outcome=outcome.value, paid_total=fmt(self.paid_total),
                    overpaid=fmt(self.overpaid), **details)

    def pause(self, reason: str, loan_now: datetime, by: str | None = None) -> str | None:
        if self.closed:
            return "loan is closed"
        if self.state == LoanState.PAUSED:
            return "loan is already paused"
        self.state_before_pause = self.state
        self.state = LoanState.PAUSED
        self._event(loan_now, "paused", reason=reason, **_by(by))
        return None

    def resume(self, loan_now: datetime, by: str | None = None) -> str | None:
        if self.state != LoanState.PAUSED:
            return "loan is not paused"
        self.state = self.state_before_pause or LoanState.COLLECTING
        self.state_before_pause = None
        self._event(loan_now, "resumed", state=self.state.value, **_by(by))
        self.advance(loan_now)
        return None

    def write_off(self, reason: str, loan_now: datetime, by: str | None = None) -> str | None:
        if self.closed:
            return "loan is closed"
        if self.in_plan and self.plan is not None:
            self.plan.status = "written_off"
        self._close(loan_now, Outcome.WRITTEN_OFF, reason=reason, written_off=fmt(self.total), **_by(by))
        return None

    # ------------------------------------------------------------------ plans

    def plan_refusal(self, loan_now: datetime) -> str | None:
        """A reason (in the borrower's words) why no plan can be taken now, or None."""
        locale = self.loan.borrower.locale
        if self.closed:
            return reason_text("closed", locale)
        if self.state == LoanState.PAUSED:
            return reason_text("paused", locale)
        if self.state == LoanState.RESTRUCTURING:
            return reason_text("plan_running", locale)
        return None

    def evaluate_plan(self, proposal: PaymentPlanProposal, loan_now: datetime) -> PlanEvaluation:
        refusal = self.plan_refusal(loan_now)
        if refusal:
            return PlanEvaluation(accepted=False, code="state", reason=refusal)
        return evaluate_proposal(proposal, rules=self.policy.plan, total_owed=self.total, currency=self.loan.currency,
                                 stage=self.stage or Stage.NOTICE, today=loan_now.date(),
                                 locale=self.loan.borrower.locale, plans_so_far=self.plans_count)

    def propose_plan(self, proposal: PaymentPlanProposal, loan_now: datetime, via: str) -> PlanEvaluation:
        """Evaluate a proposal and, if accepted, put the loan into restructuring."""
        result = self.evaluate_plan(proposal, loan_now)
        body = proposal.model_dump(mode="json")
        if not result.accepted:
            self._event(loan_now, "plan_refused", via=via, proposal=body, reason=result.reason, code=result.code)
            return result
        self.plans_count += 1
        self.plan = PlanState(number=self.plans_count, accepted_at=loan_now, accepted_on=loan_now.date(),
                              total=result.total, down_payment=proposal.down_payment, schedule=result.schedule)
        self.state = LoanState.RESTRUCTURING
        self.promise = None
        self.plan_hold_until = None
        self.deferred.clear()
        self._event(loan_now, "plan_accepted", via=via, plan_number=self.plans_count, proposal=body,
                    total_owed=fmt(self.total), plan_total=fmt(result.total),
                    schedule=[i.model_dump(mode="json") for i in result.schedule],
                    workflow_id=plan_workflow_id(self.loan.loan_id, self.plans_count))
        return result

    def plan_broken(self, loan_now: datetime, installment: int, due_date: date) -> None:
        """The plan's child reported a missed installment: back to collections at the DPD's stage."""
        if not self.in_plan or self.plan is None or self.closed:
            return
        self.plan.status = "broken"
        self.past_plans.append(self.plan)
        self._event(loan_now, "plan_broken", plan_number=self.plan.number,
                    installment=("plan_child_failed" if installment < -1 else "down_payment" if installment < 0
                                 else installment + 1),
                    due_date=due_date.isoformat(), paid_on_plan=fmt(self.plan.paid_amount), owed=fmt(self.total))
        self.plan = None
        self.accrued_until = loan_now.date()  # accrual resumes from today on what is still owed
        # Collections resume: the stage is entered afresh, so its one-off actions go out again.
        self.episode += 1
        self.placements_made = 0
        self.stage_entered_on = loan_now.date()
        if self.state == LoanState.PAUSED:
            self.state_before_pause = LoanState.COLLECTING  # still on hold; collections on resume
            return
        self.state = LoanState.COLLECTING
        self.advance(loan_now)

    # ------------------------------------------------------------------ agents

    def check_contact_outcome(self, o: ContactOutcome, loan_now: datetime) -> str | None:
        """Why this outcome cannot be recorded (nothing changes), or None."""
        if self.closed:
            return "loan is closed"
        if not any(t.task_id == o.task_id for t in self.open_tasks):
            return f"task_id {o.task_id!r} is not an open task of this loan"
        if o.outcome == ContactOutcomeKind.PROMISE_TO_PAY:
            if o.promised_amount is None or o.promised_date is None:
                return "promise_to_pay needs promised_amount and promised_date"
            if o.promised_amount <= 0:
                return "promised_amount must be greater than 0.00"
            if o.promised_date < loan_now.date():
                return "promised_date must not be in the past"
            if o.promised_date > loan_now.date() + timedelta(days=MAX_PROMISE_DAYS):
                return f"promised_date must be within {MAX_PROMISE_DAYS} days"
        return None

    def record_contact_outcome(self, o: ContactOutcome, loan_now: datetime) -> str | None:
        """Record an agent's outcome on an open task; answers an error (nothing changed) or None."""
        error = self.check_contact_outcome(o, loan_now)
        if error:
            return error
        task = next(t for t in self.open_tasks if t.task_id == o.task_id)
        self.open_tasks = [t for t in self.open_tasks if t.task_id != o.task_id]
        self.tasks_to_close.append(TaskToClose(task_id=o.task_id, agent_id=o.agent_id, outcome=o.outcome.value))
        details = o.model_dump(mode="json")
        self._event(loan_now, "contact_outcome", task_kind=task.kind, **details)
        self._steer(o.outcome, o.task_id, o.agent_id, o.promised_amount, o.promised_date, loan_now)
        return None

    def _steer(self, outcome: ContactOutcomeKind, task_id: str, agent_id: str, promised_amount: Decimal | None,
               promised_date: date | None, loan_now: datetime) -> None:
        """What an outcome (from a human or a bot) does to the loan. Facts (a bad number, a promise) are
        kept in any open state; escalation happens only while collecting (see _force_escalate)."""
        if self.closed:
            return
        if (outcome == ContactOutcomeKind.PROMISE_TO_PAY and promised_amount and promised_amount > 0 and promised_date
                and loan_now.date() <= promised_date <= loan_now.date() + timedelta(days=MAX_PROMISE_DAYS)
                and not self.in_plan):
            self.promise = Promise(task_id=task_id, agent_id=agent_id, amount=promised_amount,
                                   promised_date=promised_date,
                                   hold_until=promised_date + timedelta(days=self.policy.agents.promise_grace_days),
                                   paid_total_at_promise=self.paid_total)
        elif outcome == ContactOutcomeKind.WRONG_NUMBER:
            for ch in (Channel.SMS, Channel.VOICE, Channel.CALL_TASK):
                if ch not in self.bad_channels:
                    self.bad_channels.append(ch)
            self._force_escalate(loan_now, "wrong number: the phone is marked bad, the next channel takes over")
        elif outcome == ContactOutcomeKind.REFUSED:
            self._force_escalate(loan_now, "the borrower refused to pay")
        elif outcome == ContactOutcomeKind.PLAN_AGREED:
            self.plan_hold_until = loan_now.date() + timedelta(days=self.policy.agents.plan_agreed_hold_days)
            self._event(loan_now, "plan_hold", until=self.plan_hold_until.isoformat(), task_id=task_id)
        elif outcome == ContactOutcomeKind.HARDSHIP and self.borrower_v1:
            self.hardship_reports += 1
            hold = hardship_hold_until(loan_now.date(), self.limits)
            if hold is not None:
                self.hardship_until = max(hold, self.hardship_until or hold)
            self._event(loan_now, "hardship_reported", task_id=task_id,
                        hold_until=self.hardship_until.isoformat() if hold is not None and self.hardship_until else None,
                        plan_offered=hold is not None)

    def check_agency_payment(self, p: AgencyPayment) -> str | None:
        known = ([self.placement] if self.placement else []) + self.past_placements
        if not any(pl.placement_id == p.placement_id for pl in known):
            return f"placement_id {p.placement_id!r} is not a placement of this loan"
        return None

    def apply_agency_payment(self, p: AgencyPayment, loan_now: datetime) -> str:
        """A payment an agency collected: applied like any payment, with the agency's commission."""
        known = ([self.placement] if self.placement else []) + self.past_placements
        placement = next(pl for pl in known if pl.placement_id == p.placement_id)
        commission = q(min(p.amount, self.total) * placement.commission_rate)
        result = self.apply_payment(PaymentReceived(payment_id=p.payment_id, amount=p.amount, paid_at=p.paid_at),
                                    loan_now, collected_by={"agency_id": placement.agency_id,
                                                            "placement_id": placement.placement_id,
                                                            "commission": fmt(commission)})
        if result == "applied":
            self.agency_commission += commission
        return result

    def check_legal_outcome(self, lo: LegalOutcome, loan_now: datetime) -> str | None:
        if self.closed:
            return "loan is closed"
        if self.legal_case_id is None or lo.case_id != self.legal_case_id:
            return f"case_id {lo.case_id!r} is not this loan's legal case"
        if lo.outcome == LegalOutcomeKind.SETTLEMENT and self.in_plan:
            return "a payment plan is running; a settlement can be recorded once it has ended or broken"
        if lo.outcome == LegalOutcomeKind.SETTLEMENT:
            if lo.amount is None or lo.amount <= 0:
                return "settlement needs amount, greater than 0.00"
            if lo.amount > self.total:
                return f"amount {fmt(lo.amount)} is more than the {fmt(self.total)} owed"
            if lo.plan is not None:
                if lo.plan.down_payment >= lo.amount:
                    return "plan.down_payment must be less than the settlement amount"
                if not 1 <= lo.plan.installments <= 120:
                    return "plan.installments must be between 1 and 120"
                if not 1 <= lo.plan.interval_days <= 366:
                    return "plan.interval_days must be between 1 and 366"
                if not loan_now.date() <= lo.plan.first_due_date <= loan_now.date() + timedelta(days=366):
                    return "plan.first_due_date must be between today and a year from today"
        if lo.outcome == LegalOutcomeKind.JUDGMENT and lo.amount is None:
            return "judgment needs amount (awarded)"
        return None

    def record_legal_outcome(self, lo: LegalOutcome, loan_now: datetime) -> str | None:
        """Filed, judgment, settlement (waives the rest; a plan or a payment settles it) or withdrawn."""
        error = self.check_legal_outcome(lo, loan_now)
        if error:
            return error
        self.legal_status = lo.outcome.value
        details = lo.model_dump(mode="json", exclude={"plan"})
        if lo.outcome != LegalOutcomeKind.SETTLEMENT:
            self._event(loan_now, "legal_outcome", **details)
            return None
        assert lo.amount is not None
        waived_amount = self.total - lo.amount
        self.owed, waived = allocate(self.owed, waived_amount)
        self._event(loan_now, "legal_outcome", **details, waived=waived.model_dump(mode="json"),
                    balance=self.owed.balance().model_dump(mode="json"))
        if lo.plan is None:
            self.settled_amount = lo.amount  # nothing accrues any more: paying it closes the loan
        else:
            schedule = build_schedule(lo.amount - lo.plan.down_payment, lo.plan.installments,
                                      lo.plan.first_due_date, lo.plan.interval_days)
            self.plans_count += 1
            self.plan = PlanState(number=self.plans_count, accepted_at=loan_now, accepted_on=loan_now.date(),
                                  total=lo.amount - lo.plan.down_payment, down_payment=lo.plan.down_payment,
                                  schedule=schedule)
            if self.state == LoanState.PAUSED:
                self.state_before_pause = LoanState.RESTRUCTURING
            else:
                self.state = LoanState.RESTRUCTURING
            self.promise = None
            self.deferred.clear()
            self._event(loan_now, "plan_accepted", via="legal_settlement", plan_number=self.plans_count,
                        proposal=lo.plan.model_dump(mode="json"), total_owed=fmt(self.total),
                        plan_total=fmt(self.plan.total), schedule=[i.model_dump(mode="json") for i in schedule],
                        workflow_id=plan_workflow_id(self.loan.loan_id, self.plans_count))
        return None

    # ------------------------------------------------------------------ reading

    def next_wake(self, loan_now: datetime) -> tuple[datetime | None, str]:
        """When the workflow must look again (loan time) and why, for timers and current details.
        None: nothing will fall due by itself; only input (a payment, a signal) wakes the loan."""
        if self.closed:
            return loan_now, "closed"
        if self.lazy:
            due = [(at, why) for at, why in self.wakes(loan_now) if at > loan_now]
            return min(due, key=lambda w: w[0]) if due else (None, "nothing falls due by itself")
        midnight = self.clock.local_midnight(loan_now.date() + timedelta(days=1))
        wake, why = midnight, "next day boundary"
        for key, until in self.deferred.items():
            if loan_now < until < wake:
                wake, why = until, f"deferred action {key}"
        return wake, why

    def opening(self, day: date) -> datetime:
        """When contact may start on `day` for this loan: the contact window's start plus the loan's
        own fixed spread, so that a portfolio does not reach the providers in one second."""
        start = self.clock.at_local(day, self.policy.contact.window_start)
        return start + timedelta(seconds=self.spread_seconds)

    @property
    def spread_seconds(self) -> int:
        """The loan's deterministic offset into the contact window (a hash of the loan id)."""
        spread = self.policy.contact.spread_minutes * 60
        if spread <= 0:
            return 0
        digest = hashlib.sha256(self.loan.loan_id.encode("utf-8")).digest()
        return int.from_bytes(digest[:4], "big") % spread

    def _stage_wake(self, rule: StageRule, day: date) -> datetime:
        """The stage's first action: at the contact opening when it contacts the borrower, at the day
        boundary otherwise (an agency placement, a legal referral)."""
        if all(ch in _CONTACT_CHANNELS for ch in rule.channels):
            return self.opening(day)
        return self.clock.local_midnight(day)

    def wakes(self, loan_now: datetime) -> list[tuple[datetime, str]]:
        """Every instant at which the book's state or its due actions change by themselves (lazy-v1):
        the next stage, a repeat of the stage's contact, a deferred or retried action, a task's SLA,
        the end of a placement, the bureau's reporting day, a promise's or an agreed plan's hold.
        A property test checks this list against a loan woken at every midnight."""
        today = loan_now.date()
        mid = self.clock.local_midnight
        out: list[tuple[datetime, str]] = [(until, f"deferred action {key}") for key, until in self.deferred.items()]
        if self.state == LoanState.COLLECTING:
            if self.promise is not None:
                out.append((mid(self.promise.hold_until + timedelta(days=1)), "the promise to pay falls due"))
            if self.plan_hold_until is not None:
                out.append((mid(self.plan_hold_until + timedelta(days=1)), "the agreed plan's hold ends"))
            held = self.stage is not None and (self.promise is not None or self.plan_hold_until is not None)
            if not held:
                for rule in self.policy.ladder:
                    if self.stage is None or rule.stage.rank > self.stage.rank:
                        day = max(self.loan.due_date + timedelta(days=rule.enter_at_dpd), today)
                        out.append((self._stage_wake(rule, day), f"{rule.stage.value} stage from DPD {rule.enter_at_dpd}"))
                        break
            rule = self.policy.rule_for(self.stage) if self.stage is not None else None
            if rule is not None and rule.repeat_every_days and self.stage_entered_on is not None:
                k = (today - self.stage_entered_on).days // rule.repeat_every_days + 1
                day = self.stage_entered_on + timedelta(days=k * rule.repeat_every_days)
                out.append((self.opening(day), f"{self.stage.value} contact #{k + 1}"))  # type: ignore[union-attr]
            if AGENTS_V1 in self.features:
                for t in self.open_tasks:
                    if t.due_by is not None and t.escalations < self.policy.agents.max_sla_escalations:
                        out.append((t.due_by, f"SLA of {t.kind} task {t.task_id}"))
            if self.placement is not None:
                out.append((mid(self.placement.until), f"placement {self.placement.placement_id} ends"))
            if BureauStatus.DELINQUENT not in self.bureau_reported[-1:]:
                day = self.loan.due_date + timedelta(days=self.policy.bureau.report_delinquency_at_dpd)
                out.append((mid(max(day, today)), "delinquency report to the credit bureau"))
            for _key, kind, day in self._warnings_needed(today):
                last = day - timedelta(days=self._warning_lead(kind))
                if last >= today:  # rides on an earlier wake if there is one; overdue ones go at once
                    out.append((self.opening(last), f"{kind.replace('_', ' ')} due by {last.isoformat()}"))
        if self.borrower_v1 and not self.closed:
            space = self.flags.breathing_space
            if space is not None and space.start > today:
                out.append((mid(space.start), "breathing space starts"))
            if space is not None and space.end > today:
                out.append((mid(space.end), "breathing space ends"))
            if self.hardship_until is not None and self.hardship_until > today:
                out.append((mid(self.hardship_until), "hardship hold ends"))
        return out

    def next_action_at(self, loan_now: datetime) -> datetime | None:
        """The next planned action (loan time), shown in the status."""
        if self.state in (LoanState.CLOSED, LoanState.PAUSED):
            return None
        window = self.policy.contact.window_start
        candidates: list[datetime] = list(self.deferred.values())
        today = loan_now.date()
        if self.state == LoanState.RESTRUCTURING and self.plan is not None:
            prog = progress(self.plan.down_payment, self.plan.schedule, self.plan.paid_amount)
            if not prog.down_payment_paid:
                candidates.append(self.clock.local_midnight(
                    self.plan.accepted_on + timedelta(days=self.policy.plan.break_after_days + 1)))
            elif prog.next_unpaid is not None:
                inst = self.plan.schedule[prog.next_unpaid]
                reminder = inst.due_date - timedelta(days=self.policy.plan.reminder_days_before)
                for day in (reminder, inst.due_date):
                    candidates.append(self.clock.at_local(day, window))
                # the break check: the midnight after the grace days
                candidates.append(self.clock.local_midnight(inst.due_date + timedelta(days=self.policy.plan.break_after_days + 1)))
        elif self.stage is not None and self.stage_entered_on is not None:
            rule = self.policy.rule_for(self.stage)
            if rule and rule.repeat_every_days:
                k = (today - self.stage_entered_on).days // rule.repeat_every_days + 1
                candidates.append(self.clock.at_local(self.stage_entered_on + timedelta(days=k * rule.repeat_every_days), window))
            later = [r for r in self.policy.ladder if r.stage.rank > self.stage.rank]
            if later:
                entry = self.loan.due_date + timedelta(days=later[0].enter_at_dpd)
                if self.promise is not None:
                    entry = max(entry, self.promise.hold_until + timedelta(days=1))
                candidates.append(self.clock.at_local(max(entry, today + timedelta(days=1)), window))
        future = [c for c in candidates if c >= loan_now]
        return min(future) if future else None

    def plan_status(self) -> PlanStatus | None:
        if self.plan is None:
            return None
        prog = progress(self.plan.down_payment, self.plan.schedule, self.plan.paid_amount)
        return PlanStatus(plan_number=self.plan.number, accepted_at=self.plan.accepted_at, total=self.plan.total,
                          down_payment=self.plan.down_payment, down_payment_paid=prog.down_payment_paid,
                          schedule=self.plan.schedule, paid_installments=prog.paid_installments,
                          paid_amount=self.plan.paid_amount,
                          workflow_id=plan_workflow_id(self.loan.loan_id, self.plan.number))

    def status(self, loan_now: datetime) -> Status:
        return Status(
            loan_id=self.loan.loan_id,
            state=self.state,
            stage=None if self.closed else self.stage,
            days_past_due=self.dpd,
            balance=self.owed.balance(),
            paid_total=self.paid_total,
            next_action_at=self.next_action_at(loan_now),
            plan=self.plan_status(),
            open_tasks=list(self.open_tasks),
            events=list(self.events[-STATUS_EVENTS:] if self.lazy else self.events),
            outcome=self.outcome,
            as_of=self.clock.local_midnight(self.accrued_until),
            agency=AgencyView(agency_id=self.placement.agency_id, placement_id=self.placement.placement_id,
                              placed_on=self.placement.placed_on, until=self.placement.until)
            if self.placement is not None and not self.closed else None,
            accrual=self.accrual_basis() if self.lazy and not self.closed else None,
            flags=self.flags.model_dump(mode="json") if self.borrower_v1 else None,
            dispute=self.dispute.model_dump(mode="json") if self.dispute is not None else None,
        )

    def queue(self) -> list[OpenTask]:
        """What the desks hold of this loan: its open tasks, and its placement as the agency's task."""
        if self.closed:
            return []
        held = list(self.open_tasks)
        p = self.placement
        if p is not None:
            held.append(OpenTask(task_id=p.placement_id, kind="agency", stage=Stage.AGENCY,
                                 created_at=self.clock.local_midnight(p.placed_on), assigned_to=p.agency_id,
                                 due_by=self.clock.local_midnight(p.until)))
        return held

    def accrual_basis(self) -> AccrualBasis:
        space = self.flags.breathing_space if self.borrower_v1 else None
        return AccrualBasis(principal=self.owed.principal, annual_interest_rate=self.loan.annual_interest_rate,
                            penalty_rate_factor=self.policy.penalty_rate_factor, day_count=self.policy.day_count,
                            accruing=self.accruing and self.owed.principal > 0, accrued_until=self.accrued_until,
                            due_date=self.loan.due_date, timezone=self.loan.borrower.timezone,
                            frozen=[FrozenDays(start=space.start, end=space.end)] if space else [])
