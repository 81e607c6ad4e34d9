"""The running plan, as its child workflow sees it: what is due, when to remind, when it breaks."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from pydantic import Field

from .clock import LoanClock
from .models import Borrower, Installment, Model
from .money import ZERO, Money
from .plans import break_day, progress
from .policy import Channel, ContactRules, PlanRules
from .rules import Limits, PackCode


class PlanGate(Model):
    pack: PackCode
    limits: Limits


class PlanInput(Model):
    loan_id: str
    plan_number: int
    currency: str
    borrower: Borrower
    down_payment: Money
    schedule: list[Installment]
    accepted_on: date
    clock: LoanClock
    rules: PlanRules
    contact: ContactRules
    paid_amount: Money = ZERO
    reminded: list[int] = Field(default_factory=list)
    bad_channels: list[Channel] = Field(default_factory=list)
    """Channels marked bad on the loan (a wrong number): no reminders go there."""
    borrower_gate: PlanGate | None = None
    """borrower-v1: installment reminders are decided by the borrower's entity (the pack and its limits)."""
    report_to_parent: bool = False
    """lazy-v1: the child signals its end to `loan-<loan_id>` (`plan_ended`), so that the loan need not
    hold a handle on it and may continue as new while the plan runs."""


class PlanPayment(Model):
    payment_id: str
    amount: Money


class PlanResult(Model):
    plan_number: int
    outcome: str  # completed | broken | cancelled
    paid_amount: Money
    paid_installments: int
    broken_installment: int | None = None
    """0-based index of the missed installment (-1: the down payment)."""
    broken_due_date: date | None = None


class Obligation(Model):
    index: int  # -1 is the down payment
    due_date: date
    owed: Money
    amount: Money


def next_obligation(inp: PlanInput, paid: Money) -> Obligation | None:
    prog = progress(inp.down_payment, inp.schedule, paid)
    if prog.complete:
        return None
    if not prog.down_payment_paid:
        return Obligation(index=-1, due_date=inp.accepted_on, owed=prog.owed_on_next, amount=inp.down_payment)
    i = prog.next_unpaid
    assert i is not None
    inst = inp.schedule[i]
    return Obligation(index=i, due_date=inst.due_date, owed=prog.owed_on_next, amount=inst.amount)


def breaks_at(inp: PlanInput, ob: Obligation, resumed_on: date | None = None) -> datetime:
    """The loan-time instant at which this obligation, still unpaid, breaks the plan. After an operator
    hold the borrower gets the full grace again from the day the hold ended."""
    day = break_day(ob.due_date, inp.rules)
    if resumed_on is not None:
        day = max(day, resumed_on + timedelta(days=inp.rules.break_after_days + 1))
    return inp.clock.local_midnight(day)


def reminder_at(inp: PlanInput, ob: Obligation) -> datetime | None:
    """When to remind of this installment (None: the down payment, or already reminded)."""
    if ob.index < 0 or ob.index in inp.reminded:
        return None
    day = ob.due_date - timedelta(days=inp.rules.reminder_days_before)
    return inp.clock.at_local(day, inp.contact.window_start)
