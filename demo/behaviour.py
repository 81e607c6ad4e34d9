"""Scripted borrowers for the demo: a small, generic engine over `demo/behaviours.toml` (this package).

A behaviour is a list of steps; each step runs once the loan's calendar has reached its `day`
(loan days since intake, in the borrower's zone, on the loan's compressed clock) and the step
before it is done. Steps:

- `pay`: one payment through the `payment_received` signal. `amount = "all"` pays the total owed
  at that moment, `amount = "123.45"` a fixed amount, `share = "0.40"` a share of the total owed.
- `propose_plan`: proposes a payment plan through the `propose_payment_plan` update, exactly as a
  borrower portal does: `installments`, `interval_days`, `first_due_in_days` (from the loan's
  today), and `down_payment` (an amount) or `down_payment_share` (of the total owed).
- `pay_installments`: keeps the running plan: pays its down payment at once, then each installment
  on its due date; with `stop_after = N` the borrower stops paying after the N-th installment,
  which breaks the plan 7 days after the next one falls due.
  The step is done when the plan is gone (completed or broken) or the loan has closed.

The engine decides, the demo acts: `next_actions()` is pure (status and loan date in, actions out),
so it is tested without a server.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from domain.models import LoanState, Model, PaymentPlanProposal, Status
from domain.money import Money, Rate, q

ActionKind = Literal["pay", "propose_plan", "pay_installments"]


class Step(Model):
    day: int = Field(ge=0)
    action: ActionKind
    # pay
    amount: str | None = None
    share: Rate | None = None
    # propose_plan
    installments: int | None = Field(default=None, ge=1)
    interval_days: int | None = Field(default=None, ge=1)
    first_due_in_days: int | None = Field(default=None, ge=0)
    down_payment: Money | None = None
    down_payment_share: Rate | None = None
    # pay_installments
    stop_after: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _shape(self) -> Step:
        if self.action == "pay":
            if (self.amount is None) == (self.share is None):
                raise ValueError("a pay step needs exactly one of amount (\"all\" or \"123.45\") or share")
            if self.amount is not None and self.amount != "all":
                try:
                    Decimal(self.amount)
                except Exception:
                    raise ValueError(f"amount must be \"all\" or a decimal such as \"123.45\", not {self.amount!r}") from None
            if self.share is not None and not Decimal(0) < self.share <= Decimal(1):
                raise ValueError("share must be in (0, 1]")
        elif self.action == "propose_plan":
            missing = [n for n in ("installments", "interval_days", "first_due_in_days") if getattr(self, n) is None]
            if missing:
                raise ValueError(f"a propose_plan step needs {', '.join(missing)}")
            if self.down_payment is not None and self.down_payment_share is not None:
                raise ValueError("give down_payment or down_payment_share, not both")
        return self


class Behaviour(Model):
    description: str = ""
    steps: list[Step] = Field(default_factory=list)


class BehaviourBook(Model):
    """The file: named behaviours, and which loan follows which (`default` for the rest)."""

    default: str = "ignore"
    behaviours: dict[str, Behaviour]
    loans: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _names(self) -> BehaviourBook:
        self.behaviours.setdefault("ignore", Behaviour(description="ignores every notice, call and visit"))
        unknown = sorted({b for b in self.loans.values() if b not in self.behaviours})
        if self.default not in self.behaviours:
            unknown.append(self.default)
        if unknown:
            raise ValueError(f"unknown behaviour(s): {', '.join(unknown)}")
        return self

    def for_loan(self, loan_id: str) -> tuple[str, Behaviour]:
        name = self.loans.get(loan_id, self.default)
        return name, self.behaviours[name]


def load_behaviours(path: str | Path) -> BehaviourBook:
    with open(path, "rb") as f:
        return BehaviourBook.model_validate(tomllib.load(f))


# --------------------------------------------------------------------------------------------
# Deciding
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pay:
    payment_id: str
    amount: Decimal
    why: str


@dataclass(frozen=True)
class ProposePlan:
    proposal: PaymentPlanProposal
    why: str


Action = Pay | ProposePlan


PAYMENT_SETTLE_SECONDS = 10.0
"""How long the borrower waits to see a payment in `paid_total` before deciding anything else."""
MAX_SETTLE_PAYMENTS = 5


@dataclass
class Borrower:
    """One scripted borrower: which step is next, and what was paid towards the running plan."""

    loan_id: str
    behaviour_name: str
    behaviour: Behaviour
    intake_date: date
    """The loan's date (borrower's zone) at intake: loan day 0."""
    step: int = 0
    attempts: int = 0
    """Payments made by the current "pay everything" step (a day's accrual may land in between)."""
    plan_paid: set[str] = field(default_factory=set)
    """Keys of the plan items (down payment, installments) this borrower has paid."""
    expected_paid: Decimal | None = None
    """paid_total the loan should show once our last payments are applied."""
    last_payment_at: float | None = None
    log: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.step >= len(self.behaviour.steps)

    def loan_day(self, today: date) -> int:
        return (today - self.intake_date).days

    def _settling(self, status: Status, clock: float) -> bool:
        """True while payments we sent are not yet in the status (don't decide on stale numbers)."""
        if self.expected_paid is None or status.paid_total >= self.expected_paid:
            self.expected_paid = None
            return False
        if self.last_payment_at is not None and clock - self.last_payment_at > PAYMENT_SETTLE_SECONDS:
            self.log.append(f"payments not reflected after {PAYMENT_SETTLE_SECONDS:.0f}s; going on")
            self.expected_paid = None
            return False
        return True

    def next_actions(self, status: Status, today: date, clock: float = 0.0) -> list[Action]:
        """What the borrower does now, given the loan's status, its date and a monotonic clock (s)."""
        actions: list[Action] = []
        if status.state == LoanState.CLOSED:
            self.step = len(self.behaviour.steps)
            return actions
        if self._settling(status, clock):
            return actions
        while not self.finished:
            step = self.behaviour.steps[self.step]
            if self.loan_day(today) < step.day:
                break
            if step.action == "pay":
                total = status.balance.total
                if step.amount == "all":
                    # Pay what is owed; if a day's accrual lands before the payment, pay the rest too.
                    if total > 0 and self.attempts < MAX_SETTLE_PAYMENTS:
                        self.attempts += 1
                        actions.append(
                            Pay(self._payment_id(f"s{self.step}-{self.attempts}"), total, "pays everything owed")
                        )
                        break
                    self.step += 1
                    self.attempts = 0
                    continue
                if step.amount is not None:
                    amount = min(q(Decimal(step.amount)), total)
                else:
                    amount = q(total * (step.share or Decimal(1)))
                if amount > 0:
                    actions.append(Pay(self._payment_id(f"s{self.step}"), amount, f"pays {step.share or step.amount}"))
                self.step += 1
                break
            if step.action == "propose_plan":
                total = status.balance.total
                if step.down_payment is not None:
                    down = step.down_payment
                elif step.down_payment_share is not None:
                    down = q(total * step.down_payment_share)
                else:
                    down = Decimal("0.00")
                proposal = PaymentPlanProposal(
                    installments=step.installments or 1,
                    first_due_date=today + timedelta(days=step.first_due_in_days or 0),
                    interval_days=step.interval_days or 1,
                    down_payment=down,
                )
                actions.append(ProposePlan(proposal, "proposes a payment plan"))
                self.step += 1
                # The answer comes back before the next step is looked at (the demo waits for it).
                break
            if step.action == "pay_installments":
                plan = status.plan
                if status.state != LoanState.RESTRUCTURING or plan is None:
                    # No plan running (refused, completed or broken): the step is over.
                    self.step += 1
                    continue
                prefix = f"plan{plan.plan_number}"
                if plan.down_payment > 0 and not plan.down_payment_paid and f"{prefix}-down" not in self.plan_paid:
                    self.plan_paid.add(f"{prefix}-down")
                    actions.append(Pay(self._payment_id(f"{prefix}-down"), plan.down_payment, "plan down payment"))
                for number, inst in enumerate(plan.schedule, start=1):
                    key = f"{prefix}-i{number}"
                    if step.stop_after is not None and number > step.stop_after:
                        break
                    if number <= plan.paid_installments or key in self.plan_paid:
                        continue
                    if inst.due_date > today:
                        break
                    self.plan_paid.add(key)
                    actions.append(Pay(self._payment_id(key), inst.amount, f"plan installment {number}"))
                break
        paid = sum((a.amount for a in actions if isinstance(a, Pay)), Decimal(0))
        if paid > 0:
            self.expected_paid = status.paid_total + paid
            self.last_payment_at = clock
        return actions

    def _payment_id(self, suffix: str) -> str:
        return f"{self.loan_id}-{suffix}"
