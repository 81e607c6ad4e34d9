"""Money of one loan: daily accrual and the payment waterfall.

All amounts are Decimal with two places. Nothing here creates or loses a cent: `allocate` splits a
payment exactly into the four components plus any overpayment.
"""

from __future__ import annotations

from decimal import Decimal

from .models import Balance, Model
from .money import ZERO, Money, q


class Components(Model):
    principal: Money = ZERO
    interest: Money = ZERO
    penalty: Money = ZERO
    fees: Money = ZERO

    @property
    def total(self) -> Decimal:
        return self.principal + self.interest + self.penalty + self.fees

    def balance(self) -> Balance:
        return Balance.of(self.principal, self.interest, self.penalty, self.fees)


class DailyAccrual(Model):
    interest: Money
    penalty: Money


def daily_accrual(principal: Decimal, annual_rate: Decimal, penalty_factor: Decimal, day_count: int) -> DailyAccrual:
    """One day's interest and penalty interest on the principal still owed, each rounded half up."""
    interest = q(principal * annual_rate / Decimal(day_count))
    penalty = q(principal * annual_rate * penalty_factor / Decimal(day_count))
    return DailyAccrual(interest=interest, penalty=penalty)


def accrue(c: Components, days: int, annual_rate: Decimal, penalty_factor: Decimal, day_count: int,
           with_interest: bool = True, with_penalty: bool = True) -> tuple[Components, DailyAccrual]:
    """`days` day boundaries of accrual on the principal (which accrual does not change)."""
    one = daily_accrual(c.principal, annual_rate, penalty_factor, day_count)
    add_i = one.interest * days if with_interest else ZERO
    add_p = one.penalty * days if with_penalty else ZERO
    new = c.model_copy(update={"interest": c.interest + add_i, "penalty": c.penalty + add_p})
    return new, DailyAccrual(interest=add_i, penalty=add_p)


class Allocation(Model):
    fees: Money = ZERO
    penalty: Money = ZERO
    interest: Money = ZERO
    principal: Money = ZERO
    overpayment: Money = ZERO

    @property
    def applied(self) -> Decimal:
        return self.fees + self.penalty + self.interest + self.principal


WATERFALL = ("fees", "penalty", "interest", "principal")


def allocate(c: Components, amount: Decimal) -> tuple[Components, Allocation]:
    """Apply a payment: fees, then penalty, then interest, then principal; the rest is overpayment."""
    if amount < 0:
        raise ValueError("amount must not be negative")
    left = amount
    taken: dict[str, Decimal] = {}
    owed = c.model_dump()
    for part in WATERFALL:
        take = min(left, owed[part])
        taken[part] = take
        owed[part] = owed[part] - take
        left -= take
    return Components(**owed), Allocation(**taken, overpayment=left)


def add_fee(c: Components, fee: Decimal) -> Components:
    return c.model_copy(update={"fees": c.fees + fee})
