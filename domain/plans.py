"""Restructuring: accepting a proposed payment plan, its schedule, and how payments settle it.

Reasons for a refusal are given in words a borrower understands, in the borrower's locale
(zh-CN and en; other locales fall back to English).
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_DOWN, ROUND_UP, Decimal

from .models import Installment, Model, PaymentPlanProposal, Stage
from .money import CENT, ZERO, Money, fmt
from .policy import PlanRules

_REASONS: dict[str, dict[str, str]] = {
    "installments_out_of_range": {
        "en": "A plan must have between {min} and {max} installments; you asked for {value}.",
        "zh-CN": "分期期数须在 {min} 到 {max} 期之间，您申请的是 {value} 期。",
    },
    "interval_out_of_range": {
        "en": "Installments must be between {min} and {max} days apart; you asked for {value} days.",
        "zh-CN": "每期间隔须在 {min} 到 {max} 天之间，您申请的是 {value} 天。",
    },
    "first_due_too_late": {
        "en": "The first installment must fall due by {latest}; you asked for {value}.",
        "zh-CN": "第一期还款日最晚为 {latest}，您申请的是 {value}。",
    },
    "first_due_in_past": {
        "en": "The first installment cannot fall due before today ({today}); you asked for {value}.",
        "zh-CN": "第一期还款日不能早于今天（{today}），您申请的是 {value}。",
    },
    "down_payment_too_small": {
        "en": "At this stage a plan needs a down payment of at least {minimum} {currency}; you offered {value}.",
        "zh-CN": "当前阶段的分期需要至少 {minimum} {currency} 的首付款，您提供的是 {value}。",
    },
    "down_payment_too_large": {
        "en": "The down payment ({value} {currency}) would pay the whole balance of {total}; just pay it instead.",
        "zh-CN": "首付款（{value} {currency}）已覆盖全部欠款 {total}，请直接全额还款。",
    },
    "installment_too_small": {
        "en": "Each installment must be at least {minimum} {currency}; this plan's would be {value}.",
        "zh-CN": "每期还款额至少为 {minimum} {currency}，该方案每期为 {value}。",
    },
    "too_many_plans": {
        "en": "This loan has already had {count} payment plans, the most we can offer.",
        "zh-CN": "该笔贷款已申请过 {count} 次分期，已达上限。",
    },
    "plan_running": {
        "en": "A payment plan is already running for this loan.",
        "zh-CN": "该笔贷款已有正在执行的分期还款计划。",
    },
    "paused": {
        "en": "This loan is on hold with our team; we cannot take a plan until the hold ends.",
        "zh-CN": "该笔贷款正处于人工暂停处理状态，暂停结束前无法办理分期。",
    },
    "closed": {
        "en": "This loan is closed; there is nothing left to restructure.",
        "zh-CN": "该笔贷款已结清或关闭，无需分期。",
    },
    "nothing_owed": {
        "en": "Nothing is owed on this loan.",
        "zh-CN": "该笔贷款当前无欠款。",
    },
}


def reason_text(code: str, locale: str, **values: object) -> str:
    texts = _REASONS[code]
    lang = locale if locale in texts else ("zh-CN" if locale.startswith("zh") else "en")
    return texts[lang].format(**values)


class PlanEvaluation(Model):
    accepted: bool
    code: str | None = None
    reason: str | None = None
    total: Money = ZERO
    """What the installments sum to: total owed at acceptance less the down payment."""
    schedule: list[Installment] = []


def build_schedule(total: Decimal, installments: int, first_due: date, interval_days: int) -> list[Installment]:
    """Equal installments rounded down to the cent, the remainder in the last; sums exactly to `total`."""
    if installments < 1:
        raise ValueError("installments must be at least 1")
    each = (total / installments).quantize(Decimal("0.01"), rounding=ROUND_DOWN)
    amounts = [each] * (installments - 1) + [total - each * (installments - 1)]
    return [
        Installment(due_date=first_due + timedelta(days=interval_days * i), amount=amount)
        for i, amount in enumerate(amounts)
    ]


def evaluate_proposal(
    proposal: PaymentPlanProposal,
    *,
    rules: PlanRules,
    total_owed: Decimal,
    currency: str,
    stage: Stage,
    today: date,
    locale: str,
    plans_so_far: int,
) -> PlanEvaluation:
    """The acceptance rules, in order; the first that fails is the reason."""

    def refuse(code: str, **values: object) -> PlanEvaluation:
        return PlanEvaluation(accepted=False, code=code, reason=reason_text(code, locale, **values))

    if total_owed <= 0:
        return refuse("nothing_owed")
    if rules.max_plans_per_loan is not None and plans_so_far >= rules.max_plans_per_loan:
        return refuse("too_many_plans", count=plans_so_far)
    if not rules.min_installments <= proposal.installments <= rules.max_installments:
        return refuse("installments_out_of_range", min=rules.min_installments, max=rules.max_installments,
                      value=proposal.installments)
    if not rules.min_interval_days <= proposal.interval_days <= rules.max_interval_days:
        return refuse("interval_out_of_range", min=rules.min_interval_days, max=rules.max_interval_days,
                      value=proposal.interval_days)
    if proposal.first_due_date < today:
        return refuse("first_due_in_past", today=today.isoformat(), value=proposal.first_due_date.isoformat())
    latest = today + timedelta(days=rules.first_due_within_days)
    if proposal.first_due_date > latest:
        return refuse("first_due_too_late", latest=latest.isoformat(), value=proposal.first_due_date.isoformat())
    if proposal.down_payment >= total_owed:
        return refuse("down_payment_too_large", value=fmt(proposal.down_payment), currency=currency,
                      total=fmt(total_owed))
    share = rules.min_down_payment_share.get(stage)
    if share is not None:
        minimum = (total_owed * share).quantize(Decimal("0.01"), rounding=ROUND_UP)  # never under the share
        if proposal.down_payment < minimum:
            return refuse("down_payment_too_small", minimum=fmt(minimum), currency=currency,
                          value=fmt(proposal.down_payment))
    total = total_owed - proposal.down_payment
    schedule = build_schedule(total, proposal.installments, proposal.first_due_date, proposal.interval_days)
    smallest = min(i.amount for i in schedule)
    floor = max(rules.min_installment, CENT)  # never an installment of 0.00, whatever the policy says
    if smallest < floor:
        return refuse("installment_too_small", minimum=fmt(floor), currency=currency, value=fmt(smallest))
    return PlanEvaluation(accepted=True, total=total, schedule=schedule)


class PlanProgress(Model):
    down_payment_paid: bool
    paid_installments: int
    """Installments fully covered, counting in order (early and extra payments go to the next ones)."""
    next_unpaid: int | None
    """Index of the first installment not fully paid, None when all are."""
    owed_on_next: Money = ZERO
    complete: bool


def progress(down_payment: Decimal, schedule: list[Installment], paid: Decimal) -> PlanProgress:
    """How much of the plan `paid` (everything paid since acceptance) covers, in order."""
    left = paid - down_payment
    down_paid = left >= 0
    count = 0
    owed_next = ZERO
    if down_paid:
        for inst in schedule:
            if left >= inst.amount:
                left -= inst.amount
                count += 1
            else:
                owed_next = inst.amount - left
                break
    else:
        owed_next = -left
    complete = down_paid and count == len(schedule)
    next_unpaid = None if complete else count
    return PlanProgress(down_payment_paid=down_paid, paid_installments=count, next_unpaid=next_unpaid,
                        owed_on_next=owed_next, complete=complete)


def break_day(due: date, rules: PlanRules) -> date:
    """The first day on which an installment due on `due` and still unpaid breaks the plan.

    "Unpaid 7 days after its due date": a payment on due + 7 still saves it; at the midnight that
    starts due + 8 the plan is broken.
    """
    return due + timedelta(days=rules.break_after_days + 1)


def settles_early(down_payment: Decimal, schedule: list[Installment], paid_before: Decimal) -> bool:
    """Whether a payment that completes the plan is an early payoff (paid_in_full) rather than the
    last installment (plan_completed): more than one installment was still unpaid before it."""
    before = progress(down_payment, schedule, paid_before)
    unpaid = len(schedule) - before.paid_installments
    return unpaid > 1 or not before.down_payment_paid
