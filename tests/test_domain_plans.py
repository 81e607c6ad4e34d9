"""Payment plans: the schedule, the acceptance rules, progress, early settlement and the break day."""

from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from domain.models import Installment, PaymentPlanProposal, Stage
from domain.plans import break_day, build_schedule, evaluate_proposal, progress, reason_text, settles_early
from domain.policy import PlanRules
from domain.money import ZERO

FAST = settings(max_examples=200, deadline=None)
TODAY = date(2026, 11, 15)
RULES = PlanRules()
CJK = re.compile(r"[\u4e00-\u9fff]")

money = st.integers(min_value=1, max_value=10**10).map(lambda c: Decimal(c).scaleb(-2))


def evaluate(installments: int = 6, first_due: date | None = None, interval: int = 30, down: str = "0.00", *,
             total: str = "5000.00", rules: PlanRules = RULES, stage: Stage = Stage.CALL, locale: str = "en",
             plans_so_far: int = 0):
    proposal = PaymentPlanProposal(installments=installments, first_due_date=first_due or TODAY + timedelta(days=10),
                                   interval_days=interval, down_payment=down)
    return evaluate_proposal(proposal, rules=rules, total_owed=Decimal(total), currency="CNY", stage=stage,
                             today=TODAY, locale=locale, plans_so_far=plans_so_far)


# ----------------------------------------------------------------------------- the schedule


@FAST
@given(total=money, n=st.integers(min_value=1, max_value=60), first=st.dates(min_value=date(2020, 1, 1),
       max_value=date(2040, 1, 1)), interval=st.integers(min_value=1, max_value=62))
def test_build_schedule_sums_exactly_equal_parts_remainder_last(total: Decimal, n: int, first: date,
                                                                interval: int) -> None:
    schedule = build_schedule(total, n, first, interval)
    assert len(schedule) == n
    assert sum((i.amount for i in schedule), ZERO) == total
    amounts = [i.amount for i in schedule]
    assert len(set(amounts[:-1])) <= 1  # equal installments...
    each = amounts[0]
    assert each == (total / n).quantize(Decimal("0.01"), rounding="ROUND_DOWN")
    assert 0 <= amounts[-1] - each < Decimal("0.01") * n  # ...the remainder (under a cent each) in the last
    for a in amounts:
        assert a == a.quantize(Decimal("0.01"))
    assert [i.due_date for i in schedule] == [first + timedelta(days=interval * k) for k in range(n)]


def test_build_schedule_examples() -> None:
    s = build_schedule(Decimal("100.00"), 3, date(2026, 12, 1), 30)
    assert [(i.due_date.isoformat(), str(i.amount)) for i in s] == [
        ("2026-12-01", "33.33"), ("2026-12-31", "33.33"), ("2027-01-30", "33.34")]
    assert [str(i.amount) for i in build_schedule(Decimal("5000.00"), 6, date(2026, 12, 15), 30)] == [
        "833.33"] * 5 + ["833.35"]
    with pytest.raises(ValueError):
        build_schedule(Decimal("1.00"), 0, TODAY, 7)


# ----------------------------------------------------------------------------- acceptance


def test_a_good_proposal_is_accepted() -> None:
    ev = evaluate(6, TODAY + timedelta(days=30), 30, "500.00", total="5000.00")
    assert ev.accepted and ev.code is None and ev.reason is None
    assert ev.total == Decimal("4500.00")
    assert [str(i.amount) for i in ev.schedule] == ["750.00"] * 6
    assert ev.schedule[0].due_date == TODAY + timedelta(days=30)
    # Bounds are inclusive.
    for n, interval, first in [(2, 7, TODAY), (12, 31, TODAY + timedelta(days=30))]:
        assert evaluate(n, first, interval).accepted


def _both_locales(code: str, **kw) -> tuple[str, str]:
    en = evaluate(locale="en", **kw)
    zh = evaluate(locale="zh-CN", **kw)
    for ev in (en, zh):
        assert not ev.accepted and ev.code == code and ev.schedule == [] and ev.total == 0
    assert en.reason and zh.reason and not CJK.search(en.reason) and CJK.search(zh.reason)
    return en.reason, zh.reason


@pytest.mark.parametrize("n", [0, 1, 13, 100, -1])
def test_installments_out_of_range(n: int) -> None:
    en, zh = _both_locales("installments_out_of_range", installments=n)
    assert "between 2 and 12" in en and f"{n}" in en
    assert "2 到 12" in zh


@pytest.mark.parametrize("interval", [0, 6, 32, 365])
def test_interval_out_of_range(interval: int) -> None:
    en, zh = _both_locales("interval_out_of_range", interval=interval)
    assert "between 7 and 31 days" in en and f"{interval} days" in en
    assert "7 到 31" in zh


def test_first_due_later_than_30_days() -> None:
    en, zh = _both_locales("first_due_too_late", first_due=TODAY + timedelta(days=31))
    latest = (TODAY + timedelta(days=30)).isoformat()
    assert latest in en and (TODAY + timedelta(days=31)).isoformat() in en and latest in zh


def test_first_due_in_the_past() -> None:
    en, zh = _both_locales("first_due_in_past", first_due=TODAY - timedelta(days=1))
    assert TODAY.isoformat() in en and TODAY.isoformat() in zh


@pytest.mark.parametrize("down", ["5000.00", "5000.01", "9999.00"])
def test_down_payment_at_least_the_total(down: str) -> None:
    en, zh = _both_locales("down_payment_too_large", down=down)
    assert "5000.00" in en and down in en and "5000.00" in zh


def test_min_down_payment_share_by_stage() -> None:
    rules = PlanRules(min_down_payment_share={Stage.LEGAL: Decimal("0.2"), Stage.AGENCY: Decimal("0.1")})
    en, zh = _both_locales("down_payment_too_small", rules=rules, stage=Stage.LEGAL, down="999.99")
    assert "1000.00 CNY" in en and "999.99" in en and "1000.00" in zh
    assert evaluate(rules=rules, stage=Stage.LEGAL, down="1000.00").accepted
    assert evaluate(rules=rules, stage=Stage.AGENCY, down="500.00").accepted
    assert evaluate(rules=rules, stage=Stage.AGENCY, down="499.99").code == "down_payment_too_small"
    assert evaluate(rules=rules, stage=Stage.CALL, down="0.00").accepted  # no share for this stage


def test_min_installment() -> None:
    rules = PlanRules(min_installment=Decimal("1000.00"))
    en, zh = _both_locales("installment_too_small", rules=rules, installments=6)  # 833.33 each
    assert "1000.00 CNY" in en and "833.33" in en and "833.33" in zh
    assert evaluate(rules=rules, installments=5).accepted  # exactly 1000.00 each


def test_no_installment_of_zero_even_without_a_minimum() -> None:
    """Fixed bug: 0.05 in 12 installments was accepted as eleven installments of 0.00."""
    ev = evaluate(12, total="0.05")
    assert not ev.accepted and ev.code == "installment_too_small" and "0.01" in (ev.reason or "")
    ev = evaluate(2, total="100.00", down="99.99")
    assert not ev.accepted and ev.code == "installment_too_small"
    ev = evaluate(5, total="0.05")
    assert ev.accepted and [str(i.amount) for i in ev.schedule] == ["0.01"] * 5


def test_max_plans_per_loan() -> None:
    en, zh = _both_locales("too_many_plans", plans_so_far=3)
    assert "3" in en and "3" in zh
    assert evaluate(plans_so_far=2).accepted
    assert evaluate(plans_so_far=50, rules=PlanRules(max_plans_per_loan=None)).accepted


def test_nothing_owed() -> None:
    _both_locales("nothing_owed", total="0.00")


def test_reason_locale_fallbacks() -> None:
    assert CJK.search(reason_text("closed", "zh-TW")) and CJK.search(reason_text("closed", "zh"))
    assert reason_text("closed", "fr") == reason_text("closed", "en")


proposals = st.builds(
    PaymentPlanProposal,
    installments=st.integers(min_value=0, max_value=15),
    first_due_date=st.integers(min_value=-5, max_value=40).map(lambda d: TODAY + timedelta(days=d)),
    interval_days=st.integers(min_value=4, max_value=35),
    down_payment=st.integers(min_value=0, max_value=600_000).map(lambda c: Decimal(c).scaleb(-2)),
)


@FAST
@given(p=proposals, total=st.integers(min_value=1, max_value=500_000).map(lambda c: Decimal(c).scaleb(-2)),
       stage=st.sampled_from(list(Stage)), plans=st.integers(min_value=0, max_value=4),
       min_inst=st.sampled_from([ZERO, Decimal("50.00")]))
def test_accepted_exactly_when_every_rule_holds(p: PaymentPlanProposal, total: Decimal, stage: Stage, plans: int,
                                                min_inst: Decimal) -> None:
    rules = PlanRules(min_installment=min_inst, min_down_payment_share={Stage.LEGAL: Decimal("0.25")})
    ev = evaluate_proposal(p, rules=rules, total_owed=total, currency="CNY", stage=stage, today=TODAY,
                           locale="en", plans_so_far=plans)
    rest = total - p.down_payment
    each = (rest / p.installments).quantize(Decimal("0.01"), rounding="ROUND_DOWN") if p.installments > 0 else ZERO
    ok = (plans < 3 and 2 <= p.installments <= 12 and 7 <= p.interval_days <= 31
          and TODAY <= p.first_due_date <= TODAY + timedelta(days=30) and p.down_payment < total
          and (stage != Stage.LEGAL or p.down_payment >= (total * Decimal("0.25")).quantize(Decimal("0.01")))
          and each >= max(min_inst, Decimal("0.01")))
    assert ev.accepted == ok, ev
    if ok:
        assert ev.total == rest and sum((i.amount for i in ev.schedule), ZERO) == rest
        assert len(ev.schedule) == p.installments and ev.schedule[0].due_date == p.first_due_date
        assert all(i.amount >= max(min_inst, Decimal("0.01")) for i in ev.schedule)
    else:
        assert ev.code and ev.reason and ev.schedule == []


# ----------------------------------------------------------------------------- progress


def _schedule(n: int, each: str = "100.00") -> list[Installment]:
    return build_schedule(Decimal(each) * n, n, TODAY, 30)


schedules = st.builds(lambda total, n: build_schedule(total, n, TODAY, 14),
                      st.integers(min_value=2 * 100, max_value=10**7).map(lambda c: Decimal(c).scaleb(-2)),
                      st.integers(min_value=2, max_value=12))
downs = st.integers(min_value=0, max_value=10**6).map(lambda c: Decimal(c).scaleb(-2))
paids = st.integers(min_value=0, max_value=2 * 10**7).map(lambda c: Decimal(c).scaleb(-2))


@FAST
@given(schedule=schedules, down=downs, a=paids, b=paids)
def test_progress_is_monotonic_in_paid(schedule: list[Installment], down: Decimal, a: Decimal, b: Decimal) -> None:
    lo, hi = sorted((a, b))
    p, r = progress(down, schedule, lo), progress(down, schedule, hi)
    assert r.paid_installments >= p.paid_installments
    assert r.down_payment_paid >= p.down_payment_paid
    assert r.complete >= p.complete
    if p.next_unpaid is not None and r.next_unpaid is not None:
        assert r.next_unpaid >= p.next_unpaid


@FAST
@given(schedule=schedules, down=downs, paid=paids)
def test_progress_complete_exactly_when_everything_is_paid(schedule: list[Installment], down: Decimal,
                                                           paid: Decimal) -> None:
    p = progress(down, schedule, paid)
    whole = down + sum((i.amount for i in schedule), ZERO)
    assert p.complete == (paid >= whole)
    assert p.down_payment_paid == (paid >= down)
    covered = paid - down
    expected_count = 0
    if covered >= 0:
        for i in schedule:
            if covered < i.amount:
                break
            covered -= i.amount
            expected_count += 1
    assert p.paid_installments == expected_count
    if p.complete:
        assert p.next_unpaid is None and p.owed_on_next == 0 and p.paid_installments == len(schedule)
    else:
        assert p.next_unpaid == p.paid_installments and p.owed_on_next > 0
        if not p.down_payment_paid:
            assert p.owed_on_next == down - paid and p.paid_installments == 0
        else:
            nxt = schedule[p.next_unpaid]
            assert 0 < p.owed_on_next <= nxt.amount
            # What is owed on the next installment plus what covered the earlier ones is what was paid.
            assert down + sum((i.amount for i in schedule[:p.next_unpaid]), ZERO) + nxt.amount - p.owed_on_next == paid


def test_progress_examples() -> None:
    s = _schedule(3)
    assert progress(Decimal("50.00"), s, ZERO).model_dump() == {
        "down_payment_paid": False, "paid_installments": 0, "next_unpaid": 0, "owed_on_next": Decimal("50.00"),
        "complete": False}
    p = progress(Decimal("50.00"), s, Decimal("180.00"))
    assert (p.down_payment_paid, p.paid_installments, p.next_unpaid, p.owed_on_next) == (True, 1, 1, Decimal("70.00"))
    p = progress(Decimal("50.00"), s, Decimal("350.00"))
    assert p.complete and p.paid_installments == 3 and p.next_unpaid is None
    assert progress(ZERO, s, ZERO).down_payment_paid


def test_settles_early() -> None:
    s = _schedule(3)  # 100.00 x 3, down payment 50.00
    down = Decimal("50.00")
    assert settles_early(down, s, ZERO)  # down payment not yet paid: paying everything is early
    assert settles_early(down, s, Decimal("50.00"))  # three installments still unpaid
    assert settles_early(down, s, Decimal("150.00"))  # two unpaid
    assert not settles_early(down, s, Decimal("250.00"))  # only the last one left: plan_completed
    assert not settles_early(down, s, Decimal("299.99"))  # last one partly paid


@FAST
@given(schedule=schedules, down=downs, paid=paids)
def test_settles_early_iff_more_than_the_last_installment_was_open(schedule: list[Installment], down: Decimal,
                                                                   paid: Decimal) -> None:
    before = progress(down, schedule, paid)
    assume(not before.complete)
    assert settles_early(down, schedule, paid) == (
        not before.down_payment_paid or before.paid_installments < len(schedule) - 1)


def test_break_day() -> None:
    due = date(2026, 12, 15)
    assert break_day(due, RULES) == date(2026, 12, 23)  # unpaid 7 days after due: broken at the start of day 8
    assert break_day(due, PlanRules(break_after_days=1)) == date(2026, 12, 17)
    assert break_day(date(2026, 12, 28), RULES) == date(2027, 1, 5)


# ----------------------------------------------------------------------------- the plan's child view


def _plan_input(down: str = "50.00", reminded: list[int] | None = None):
    from datetime import UTC, datetime

    from domain.clock import start_clock
    from domain.models import Borrower
    from domain.plan_run import PlanInput
    from domain.policy import ContactRules

    return PlanInput(loan_id="L-1", plan_number=1, currency="CNY",
                     borrower=Borrower(borrower_id="B-1", name="N", timezone="Asia/Shanghai"),
                     down_payment=Decimal(down), schedule=_schedule(3), accepted_on=TODAY,
                     clock=start_clock(datetime(2026, 11, 15, 2, 0, tzinfo=UTC), "Asia/Shanghai", 86400),
                     rules=RULES, contact=ContactRules(), reminded=reminded or [])


def test_next_obligation_breaks_at_and_reminder_at() -> None:
    from datetime import time

    from domain.plan_run import breaks_at, next_obligation, reminder_at

    inp = _plan_input()
    ob = next_obligation(inp, ZERO)
    assert ob is not None and (ob.index, ob.due_date, ob.owed) == (-1, TODAY, Decimal("50.00"))
    assert reminder_at(inp, ob) is None  # no reminder for the down payment
    assert breaks_at(inp, ob).isoformat() == (TODAY + timedelta(days=8)).isoformat() + "T00:00:00+08:00"
    ob = next_obligation(inp, Decimal("170.00"))
    assert ob is not None and (ob.index, ob.owed, ob.amount) == (1, Decimal("80.00"), Decimal("100.00"))
    assert ob.due_date == TODAY + timedelta(days=30)
    at = reminder_at(inp, ob)
    assert at is not None and at.date() == ob.due_date - timedelta(days=3) and at.time() == time(9)
    assert reminder_at(_plan_input(reminded=[1]), ob) is None
    assert next_obligation(inp, Decimal("350.00")) is None
