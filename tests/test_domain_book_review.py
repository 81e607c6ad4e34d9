"""Book cases from the code review: settlements, promise bounds, agency commission, failures."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from domain.book import ActionKind
from domain.commands import BureauStatus
from domain.models import (
    AgencyPayment,
    ContactOutcome,
    LegalOutcome,
    LoanState,
    Outcome,
    PaymentPlanProposal,
    PaymentReceived,
)
from tests.test_domain_book import _open, run_actions


def _at_legal():
    book, now = _open(91)
    run_actions(book, now)
    assert book.legal_case_id is not None
    return book, now


def test_a_plain_settlement_stops_accrual_and_its_amount_closes_the_loan() -> None:
    book, now = _at_legal()
    assert book.record_legal_outcome(LegalOutcome(case_id=book.legal_case_id, outcome="settlement",
                                                  amount="8000.00"), now) is None
    later = now + timedelta(days=3)
    book.advance(later)
    assert book.total == Decimal("8000.00")
    book.apply_payment(PaymentReceived(payment_id="S", amount="8000.00"), later)
    assert book.closed and book.outcome == Outcome.PAID_IN_FULL


def test_no_settlement_while_a_plan_runs() -> None:
    book, now = _at_legal()
    assert book.propose_plan(PaymentPlanProposal(installments=3, first_due_date=now.date() + timedelta(days=5),
                                                 interval_days=30, down_payment="2000.00"), now, "x").accepted
    error = book.check_legal_outcome(LegalOutcome(
        case_id=book.legal_case_id, outcome="settlement", amount="5000.00",
        plan={"installments": 2, "first_due_date": (now.date() + timedelta(days=3)).isoformat(),
              "interval_days": 30, "down_payment": "0.00"}), now)
    assert error and "plan is running" in error


def test_settlement_plans_and_promises_are_bounded() -> None:
    book, now = _at_legal()
    huge = LegalOutcome(case_id=book.legal_case_id, outcome="settlement", amount="5000.00",
                        plan={"installments": 3, "first_due_date": (now.date() + timedelta(days=3)).isoformat(),
                              "interval_days": 10**7, "down_payment": "0.00"})
    assert "interval_days" in book.check_legal_outcome(huge, now)
    before = book.model_dump()
    assert book.record_legal_outcome(huge, now) is not None and book.model_dump() == before

    book, now = _open(10)
    run_actions(book, now)
    [task] = book.open_tasks
    far = ContactOutcome(task_id=task.task_id, agent_id="a", outcome="promise_to_pay", promised_amount="1.00",
                         promised_date=now.date() + timedelta(days=3650))
    assert "within 90 days" in book.check_contact_outcome(far, now)


def test_agency_commission_is_on_what_was_owed_not_on_an_overpayment() -> None:
    book, now = _open(61)
    run_actions(book, now)
    placement = book.placement
    assert placement is not None
    book.apply_agency_payment(AgencyPayment(placement_id=placement.placement_id, payment_id="A",
                                            amount="20000.00"), now)
    assert book.closed and book.agency_commission == Decimal("2000.00")  # 20% of 10000.00, not of 20000.00


def test_a_failed_bureau_report_is_deferred_to_the_next_day_not_repeated_at_once() -> None:
    book, now = _open(40)
    [bureau] = [a for a in book.due_actions(now) if a.kind == ActionKind.BUREAU]
    book.record(bureau, now, failed="gateway down")
    assert book.deferred[bureau.key] > now
    book.prune_deferred({a.key for a in book.due_actions(now)})
    assert bureau.key in book.deferred  # still due, so still deferred
    tomorrow = book.clock.local_midnight(now.date() + timedelta(days=1))
    book.advance(tomorrow)
    assert bureau.key in [a.key for a in book.due_actions(tomorrow)]
    book.record(bureau, tomorrow)
    assert book.bureau_reported == [BureauStatus.DELINQUENT] and book.failures == {}


def test_a_failed_task_is_tried_again_then_given_up() -> None:
    book, now = _open(8)
    for day in range(3):
        at = book.clock.local_midnight(now.date() + timedelta(days=day)).replace(hour=10)
        book.advance(at)
        [task] = [a for a in book.due_actions(at) if a.kind == ActionKind.CREATE_TASK]
        book.record(task, at, failed="desk down")
    failed = [e for e in book.events if e.kind == "action_failed"]
    assert [e.details["gave_up"] for e in failed] == [False, False, True]
    assert book.state == LoanState.COLLECTING and not [a for a in book.due_actions(at)
                                                        if a.kind == ActionKind.CREATE_TASK]
