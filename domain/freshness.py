"""Freshness: a loan's status brought to the reader's day with the same pure accrual.

A lazy-v1 loan wakes only when something falls due, so its `status` is as of its last wake (`as_of`).
The portal and the CLI answer as of the current day: `as_of_now(status, now)` adds the days since
then exactly as the loan's own book would (`domain.ledger.accrue` on the principal, each day's amounts
rounded half up, no accrual on frozen days), and moves the days past due and `as_of` forward. The
stage is the loan's own: it changes at the loan's wakes, which fall on the stage's day.
"""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from .ladder import days_past_due
from .ledger import Components, accrue
from .models import AccrualBasis, LoanState, Status


def _frozen(basis: AccrualBasis, start: date, end: date) -> int:
    return sum(max(0, (min(end, f.end) - max(start, f.start)).days) for f in basis.frozen)


def as_of_now(status: Status, now: datetime) -> Status:
    """The status as of `now`'s day in the borrower's zone (unchanged if it is not behind)."""
    basis = status.accrual
    if basis is None or status.state == LoanState.CLOSED:
        return status
    zone = ZoneInfo(basis.timezone)
    today = now.astimezone(zone).date()
    if today <= basis.accrued_until:
        return status
    days = (today - basis.accrued_until).days - _frozen(basis, basis.accrued_until, today)
    b = status.balance
    owed = Components(principal=b.principal, interest=b.interest, penalty=b.penalty, fees=b.fees)
    if basis.accruing and days > 0:
        owed, _ = accrue(owed, days, basis.annual_interest_rate, basis.penalty_rate_factor, basis.day_count)
    return status.model_copy(update={
        "balance": owed.balance(),
        "days_past_due": days_past_due(basis.due_date, today),
        "as_of": datetime.combine(today, time(0), tzinfo=zone),
        "accrual": basis.model_copy(update={"accrued_until": today}),
    })

