"""The loan book: random operation sequences (a hypothesis state machine) checking its invariants, and
example tests of payments, plans and their breaking. Pure domain: no Temporal.

The machine drives the book the way CollectionWorkflow does: advance to the loan time, take the due
actions, pass contacts through the compliance door, record the results; plus every signal and update.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from domain.book import Action, ActionKind, LoanBook
from domain.compliance import ContactRequest, Verdict, decide
from domain.ladder import days_past_due, stage_for_dpd
from domain.ledger import daily_accrual
from domain.models import (
    CollectionInput,
    ContactOutcome,
    LoanState,
    Outcome,
    PaymentPlanProposal,
    PaymentReceived,
    Stage,
    Status,
)
from domain.money import ZERO
from domain.policy import Policy
from tests.harness import with_roster

SH = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 11, 15, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
_KINDS = ActionKind._value2member_map_
CONTACT_KINDS = {ActionKind.NOTICE, ActionKind.CREATE_TASK, ActionKind.PLACE_AGENCY, ActionKind.REFER_LEGAL,
                 ActionKind.SKIP} | {_KINDS[k] for k in ("bot_call",) if k in _KINDS}
"""What the stage does to (or about) the borrower: only while collecting."""
CLEANUP_KINDS = {ActionKind.CANCEL_TASK, ActionKind.RECALL_AGENCY, ActionKind.BUREAU} | {
    _KINDS[k] for k in ("close_task",) if k in _KINDS}
"""Bookkeeping with the outside world (tasks, placement, bureau): also after close."""


def loan_input(dpd: int, *, principal: str = "10000.00", interest: str = "0.00", penalty: str = "0.00",
               fees: str = "0.00", phone: bool = True, email: bool = True, address: bool = True,
               policy: Policy | None = None, real_now: datetime = START, tz: str = "Asia/Shanghai") -> CollectionInput:
    today = real_now.astimezone(ZoneInfo(tz)).date()
    borrower: dict[str, object] = {"borrower_id": "B-1", "name": "张三", "timezone": tz, "locale": "zh-CN"}
    if phone:
        borrower["phone"] = "+8613800000000"
    if email:
        borrower["email"] = "zhangsan@example.com"
    if address:
        borrower["address"] = "上海市浦东新区"
    return CollectionInput.model_validate({
        "loan": {"loan_id": "L-1", "currency": "CNY", "principal": principal, "interest": interest,
                 "penalty": penalty, "fees": fees, "annual_interest_rate": "0.1825",
                 "due_date": (today - timedelta(days=dpd)).isoformat(), "borrower": borrower},
        "policy": with_roster(policy.model_dump(mode="json") if policy else None),
    })


def run_actions(book: LoanBook, now: datetime) -> list[Action]:
    """What the workflow does with the due actions: the door for contacts, then record."""
    acts = book.due_actions(now)
    history = book.contact_history()
    for a in acts:
        if a.gated and a.channel is not None:
            d = decide(ContactRequest(loan_id=book.loan.loan_id, borrower_id=book.loan.borrower.borrower_id,
                                      channel=a.channel), history, book.policy.contact, now)
            if d.verdict == Verdict.DEFER:
                assert d.until is not None
                book.defer(a, d.until, d.rule, d.explanation, now)
                continue
            if d.verdict == Verdict.BLOCK:
                book.block(a, d.rule, d.explanation, now)
                continue
        book.record(a, now)  # the placement names the policy's agency (Action.agency_id)
    return acts


def at_the_dpds_stage(book: LoanBook, now: datetime) -> bool:
    """The stage is the one the DPD calls for (or later); a lazy-v1 loan enters a stage of contact only
    from its contact opening, so before that hour it may still be at the stage before."""
    if book.stage is not None and book.stage.rank >= stage_for_dpd(book.policy, book.dpd).rank:
        return True
    return book.lazy and now < book.opening(now.date())


def components_nonnegative(book: LoanBook) -> bool:
    o = book.owed
    return min(o.principal, o.interest, o.penalty, o.fees) >= 0


def _without_events(book: LoanBook) -> dict:
    return book.model_dump(mode="json", exclude={"events"})


# ============================================================================= the state machine


class BookMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.book: LoanBook
        self.real_now = START
        self.payments: dict[str, Decimal] = {}
        self.max_rank = -1

    @property
    def now(self) -> datetime:
        return self.book.now(self.real_now)

    @initialize(dpd=st.one_of(st.integers(min_value=1, max_value=12), st.integers(min_value=1, max_value=130)), hour=st.integers(min_value=0, max_value=23),
                principal=st.sampled_from(["10000.00", "10000.00", "5000.00", "5000.00", "333.33", "0.50"]),
                arrears=st.sampled_from(["0.00", "12.34", "250.00"]),
                contacts=st.sampled_from([(True, True, True), (False, True, True), (True, False, False)]),
                call_fee=st.sampled_from(["0.00", "50.00"]))
    def open(self, dpd: int, hour: int, principal: str, arrears: str, contacts: tuple[bool, bool, bool],
             call_fee: str) -> None:
        policy = Policy.model_validate({"ladder": [
            {"stage": "notice", "enter_at_dpd": 1, "channels": ["sms", "email"], "repeat_every_days": 7},
            {"stage": "call", "enter_at_dpd": 8, "channels": ["call_task"], "entry_fee": call_fee},
            {"stage": "visit", "enter_at_dpd": 31, "channels": ["visit_task"]},
            {"stage": "agency", "enter_at_dpd": 61, "channels": ["agency"]},
            {"stage": "legal", "enter_at_dpd": 91, "channels": ["legal"]},
        ]})
        self.real_now = START + timedelta(hours=hour)  # hour 0 is 10:00 in Shanghai, inside the window
        phone, email, address = contacts
        inp = loan_input(dpd, principal=principal, interest=arrears, fees=arrears, phone=phone, email=email,
                         address=address, policy=policy, real_now=self.real_now)
        self.book = LoanBook.open(inp, self.real_now)
        assert self.book.stage == stage_for_dpd(policy, dpd)
        assert self.book.dpd == dpd and self.book.state == LoanState.COLLECTING
        self.max_rank = self.book.stage.rank

    # ------------------------------------------------------------------ time

    @rule(hours=st.integers(min_value=1, max_value=24 * 12), act=st.integers(min_value=0, max_value=3))
    def advance(self, hours: int, act: int) -> None:
        book = self.book
        before = book.owed
        state, accrued_until, promise = book.state, book.accrued_until, book.promise
        accruing = book.accruing
        self.real_now += timedelta(hours=hours)
        now = self.now
        book.advance(now)
        if state == LoanState.CLOSED:
            return
        days = (now.date() - accrued_until).days
        assert book.accrued_until == now.date()
        assert book.dpd == days_past_due(book.loan.due_date, now.date())
        if accruing:  # collecting, or on hold outside a plan
            one = daily_accrual(before.principal, book.loan.annual_interest_rate, book.policy.penalty_rate_factor,
                                book.policy.day_count)
            assert book.owed.interest - before.interest == one.interest * days
            assert book.owed.penalty - before.penalty == one.penalty * days
        else:  # a plan performs (also on hold during it): the plan's total is fixed, nothing accrues
            assert book.owed == before
        if (state == LoanState.COLLECTING and promise is None and book.promise is None
                and getattr(book, "plan_hold_until", None) is None):  # a promise or an agreed plan holds escalation
            assert book.stage is not None and at_the_dpds_stage(book, now)
        if act:  # the workflow's loop: advance, then run what is due
            self.actions()

    @rule()
    def actions(self) -> None:
        book = self.book
        now = self.now
        state = book.state
        acts = run_actions(book, now)
        keys = [a.key for a in acts]
        assert len(keys) == len(set(keys)), keys
        if state == LoanState.CLOSED:
            # The outside world is reconciled with the closure in one pass: nothing more is due.
            assert book.due_actions(now) == []

    # ------------------------------------------------------------------ money

    @rule(pid=st.sampled_from([f"P-{i}" for i in range(6)]),
          amount=st.one_of(st.sampled_from(["0.01", "1.00", "100.00", "2500.00"]),
                           st.integers(min_value=1, max_value=300_000).map(lambda c: str(Decimal(c).scaleb(-2))),
                           st.sampled_from(["20000.00"] + ["500.00"] * 4)))
    def pay(self, pid: str, amount: str) -> None:
        book = self.book
        p = PaymentReceived(payment_id=pid, amount=amount)
        if pid in self.payments:
            before, n = _without_events(book), len(book.events)
            assert book.apply_payment(p, self.now) == "duplicate"
            assert _without_events(book) == before
            assert len(book.events) == n + 1 and book.events[-1].kind == "payment_duplicate"
            return
        was_closed, total, plan_running = book.closed, book.total, book.in_plan
        answer = book.apply_payment(p, self.now)
        self.payments[pid] = p.amount
        assert answer == ("closed" if was_closed else "applied")
        if not was_closed:
            assert book.total == max(ZERO, total - p.amount)
            if p.amount >= total:
                assert book.closed
                assert book.outcome in ((Outcome.PAID_IN_FULL, Outcome.PLAN_COMPLETED) if plan_running
                                        else (Outcome.PAID_IN_FULL,))
            else:
                assert not book.closed

    @rule()
    def pay_next_installment(self) -> None:
        """Pay exactly what the plan asks next (so plans also complete, not only break)."""
        book = self.book
        if not book.in_plan or book.plan is None:
            return
        from domain.plans import progress

        prog = progress(book.plan.down_payment, book.plan.schedule, book.plan.paid_amount)
        pid = f"I-{len(self.payments)}"
        book.apply_payment(PaymentReceived(payment_id=pid, amount=prog.owed_on_next), self.now)
        self.payments[pid] = prog.owed_on_next
        if prog.next_unpaid == len(book.plan.schedule) - 1 and prog.down_payment_paid:
            assert book.closed and book.outcome == Outcome.PLAN_COMPLETED

    # ------------------------------------------------------------------ operator

    # A pause may also fall during a plan (the bugs found there are fixed; see the tests below).
    @rule()
    def pause(self) -> None:
        book = self.book
        before = book.state
        error = book.pause("operator hold", self.now)
        if before in (LoanState.CLOSED, LoanState.PAUSED):
            assert error is not None and book.state == before
        else:
            assert error is None and book.state == LoanState.PAUSED and book.state_before_pause == before

    @rule()
    def resume(self) -> None:
        book = self.book
        before, previous = book.state, book.state_before_pause
        error = book.resume(self.now)
        if before != LoanState.PAUSED:
            assert error is not None and book.state == before
        else:
            assert error is None and book.state == previous

    @rule(reason=st.sampled_from(["uncollectable", "deceased"]), dice=st.integers(min_value=0, max_value=3))
    def write_off(self, reason: str, dice: int) -> None:
        if dice:  # rarer than the other rules, so that runs live long enough to see plans and escalation
            return
        book = self.book
        was_closed, total = book.closed, book.total
        error = book.write_off(reason, self.now)
        if was_closed:
            assert error is not None
        else:
            assert error is None and book.outcome == Outcome.WRITTEN_OFF and book.total == total

    # ------------------------------------------------------------------ plans

    @rule(n=st.one_of(st.integers(min_value=2, max_value=12), st.sampled_from([1, 13])),
          first=st.one_of(st.integers(min_value=0, max_value=30), st.sampled_from([-1, 31])),
          interval=st.one_of(st.integers(min_value=7, max_value=31), st.sampled_from([6, 32])),
          down=st.sampled_from(["0.00", "0.00", "10.00", "1000.00", "99999.00"]))
    def propose(self, n: int, first: int, interval: int, down: str) -> None:
        book = self.book
        now = self.now
        proposal = PaymentPlanProposal(installments=n, first_due_date=now.date() + timedelta(days=first),
                                       interval_days=interval, down_payment=down)
        state, total, count = book.state, book.total, book.plans_count
        before = _without_events(book)
        ev = book.propose_plan(proposal, now, "test")
        if ev.accepted:
            assert state == LoanState.COLLECTING
            assert book.state == LoanState.RESTRUCTURING and book.plans_count == count + 1
            assert book.plan is not None and book.plan.total + book.plan.down_payment == total
            assert sum((i.amount for i in book.plan.schedule), ZERO) == book.plan.total
            assert book.promise is None and book.deferred == {}
        else:
            assert ev.reason and ev.schedule == []
            assert _without_events(book) == before  # a refusal changes nothing but the audit trail
            assert book.events[-1].kind == "plan_refused"
            if state != LoanState.COLLECTING:
                assert ev.code == "state"

    @precondition(lambda self: self.book.state == LoanState.COLLECTING)
    @rule(n=st.integers(min_value=2, max_value=6), first=st.integers(min_value=0, max_value=10),
          interval=st.integers(min_value=7, max_value=31))
    def propose_good(self, n: int, first: int, interval: int) -> None:
        """A proposal within the default rules (the random one above is mostly refused)."""
        self.propose(n, first, interval, "0.00")

    @precondition(lambda self: self.book.in_plan)
    @rule()
    def plan_broken(self) -> None:
        book = self.book
        assert book.plan is not None
        inst = book.plan.schedule[0]
        self.real_now = max(self.real_now, book.clock.real_time(
            book.clock.local_midnight(inst.due_date + timedelta(days=book.policy.plan.break_after_days + 1))))
        now = self.now
        owed, paused = book.owed, book.state == LoanState.PAUSED
        book.plan_broken(now, 0, inst.due_date)
        assert book.plan is None and book.past_plans[-1].status == "broken"
        if paused:  # still on hold: collections resume with the resume
            assert book.state == LoanState.PAUSED and book.state_before_pause == LoanState.COLLECTING
            return
        assert book.state == LoanState.COLLECTING
        # Accrual resumes from the day of the break (nothing back-dated); only a stage's entry fee may be added.
        assert (book.owed.principal, book.owed.interest, book.owed.penalty) == (
            owed.principal, owed.interest, owed.penalty)
        assert book.owed.fees >= owed.fees
        assert book.stage is not None and at_the_dpds_stage(book, now)

    # ------------------------------------------------------------------ agents

    @rule(data=st.data())
    def contact_outcome(self, data: st.DataObject) -> None:
        book = self.book
        if not book.open_tasks:
            return
        task = data.draw(st.sampled_from(book.open_tasks))
        kind = data.draw(st.sampled_from(["promise_to_pay", "no_answer", "refused", "wrong_number", "plan_agreed"]))
        body: dict[str, object] = {"task_id": task.task_id, "agent_id": "A-1", "outcome": kind}
        if kind == "promise_to_pay":
            body["promised_amount"] = data.draw(st.sampled_from(["100.00", "5000.00"]))
            body["promised_date"] = (self.now.date() + timedelta(days=data.draw(st.integers(0, 10)))).isoformat()
        closed, before = book.closed, _without_events(book)
        error = book.record_contact_outcome(ContactOutcome.model_validate(body), self.now)
        if closed:  # the task is still open until its cancellation runs, but the loan takes no outcome
            assert error == "loan is closed" and _without_events(book) == before
            return
        assert error is None
        assert all(t.task_id != task.task_id for t in book.open_tasks)
        if kind == "promise_to_pay" and book.state == LoanState.COLLECTING:
            assert book.promise is not None and book.promise.task_id == task.task_id

    # ------------------------------------------------------------------ invariants

    @invariant()
    def money_adds_up(self) -> None:
        book = self.book
        b = book.owed.balance()
        assert b.total == b.principal + b.interest + b.penalty + b.fees == book.total
        assert components_nonnegative(book)
        assert book.paid_total == sum(self.payments.values(), ZERO)
        assert sorted(book.payment_ids) == sorted(self.payments)
        assert book.overpaid >= 0 and book.overpaid <= book.paid_total
        if book.outcome in (Outcome.PAID_IN_FULL, Outcome.PLAN_COMPLETED):
            assert book.total == 0
        # The audit trail accounts for every cent: what was owed at intake, plus accrual and fees, less
        # what payments applied, is what is owed now; and every overpaid cent is in the trail too.
        loan = book.loan
        owed = loan.principal + loan.interest + loan.penalty + loan.fees
        over = ZERO
        for e in book.events:
            d = e.details
            if e.kind == "accrued":
                owed += Decimal(d["interest"]) + Decimal(d["penalty"])
            elif e.kind == "stage_entered":
                owed += Decimal(d["fee"])
            elif e.kind == "payment_applied":
                a = d["allocation"]
                owed -= sum(Decimal(a[k]) for k in ("fees", "penalty", "interest", "principal"))
                over += Decimal(a["overpayment"])
            elif e.kind == "payment_after_close":
                over += Decimal(d["amount"])
        assert owed == book.total
        assert over == book.overpaid

    @invariant()
    def audit_trail_in_time_order(self) -> None:
        ats = [e.at for e in self.book.events]
        assert ats == sorted(ats)
        assert ats[-1] <= self.now

    @invariant()
    def states_are_consistent(self) -> None:
        book = self.book
        assert book.closed == (book.outcome is not None) == (book.closed_at is not None)
        assert (book.state == LoanState.PAUSED) == (book.state_before_pause is not None) or book.closed
        assert book.stage is not None
        # Stages never go backwards (nor after close: the last stage is kept, the status shows null).
        assert book.stage.rank >= self.max_rank
        self.max_rank = book.stage.rank
        if book.in_plan:  # restructuring, or on hold during a plan
            plan = book.plan
            assert plan is not None and plan.status == "active"
            # No accrual while the plan performs: what is owed is the plan less what was paid on it.
            assert book.total == plan.down_payment + plan.total - plan.paid_amount
        elif book.state == LoanState.COLLECTING:
            assert book.plan is None
        if book.plan is not None and book.closed:
            assert book.plan.status in ("completed", "paid_off", "written_off")

    @invariant()
    def due_actions_fit_the_state(self) -> None:
        book = self.book
        now = self.now
        acts = book.due_actions(now)
        keys = [a.key for a in acts]
        assert len(keys) == len(set(keys)), keys
        assert not set(keys) & set(book.done)  # nothing done is due again
        # the one message a plan sends from the loan itself: its confirmation, while it runs
        confirmations = [a for a in acts if a.kind == ActionKind.NOTICE and a.notice_kind == "plan_accepted"]
        assert all(book.state == LoanState.RESTRUCTURING for _ in confirmations)
        kinds = {a.kind for a in acts if a not in confirmations}
        if book.state != LoanState.COLLECTING:
            assert not kinds & CONTACT_KINDS, (book.state, kinds)
        if book.closed:
            assert kinds <= CLEANUP_KINDS
        if book.state == LoanState.PAUSED:  # on hold: bookkeeping only, no contact, no escalation
            assert kinds <= CLEANUP_KINDS - {ActionKind.BUREAU}
        for a in acts:
            if a.kind in CONTACT_KINDS and a not in confirmations:
                assert a.stage == book.stage

    @invariant()
    def status_is_a_valid_contract_payload(self) -> None:
        book = self.book
        st_ = book.status(self.now)
        again = Status.model_validate_json(st_.model_dump_json())
        assert again.balance.total == book.total and again.state == book.state
        assert (again.stage is None) == book.closed
        if book.state in (LoanState.CLOSED, LoanState.PAUSED):
            assert again.next_action_at is None

    @invariant()
    def survives_continue_as_new(self) -> None:
        book = self.book
        carried = LoanBook.model_validate_json(book.model_dump_json())
        assert carried.model_dump(mode="json") == book.model_dump(mode="json")
        assert [a.key for a in carried.due_actions(self.now)] == [a.key for a in book.due_actions(self.now)]


TestLoanBookMachine = BookMachine.TestCase
TestLoanBookMachine.settings = settings(max_examples=120, stateful_step_count=40, deadline=None,
                                        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


# ============================================================================= examples


def _open(dpd: int = 10, **kw) -> tuple[LoanBook, datetime]:
    book = LoanBook.open(loan_input(dpd, **kw), START)
    return book, book.now(START)


def test_open_at_40_dpd_starts_at_visit() -> None:
    book, now = _open(40)
    assert (book.state, book.stage, book.dpd) == (LoanState.COLLECTING, Stage.VISIT, 40)
    entered = [e for e in book.events if e.kind == "stage_entered"]
    assert len(entered) == 1 and entered[0].details["stage"] == "visit"
    due = [a for a in book.due_actions(now) if a.kind in CONTACT_KINDS]
    assert [a.kind for a in due if a.notice_kind == "collection"] == [ActionKind.CREATE_TASK]
    # Taken in past the bureau's day and inside the agency warning's window: the warnings go first (CN),
    # by email and SMS; the report and the placement wait for them (their gates).
    assert sorted((a.notice_kind, a.channel.value) for a in due if a.kind == ActionKind.NOTICE) == [
        ("agency_warning", "email"), ("agency_warning", "sms"),
        ("credit_report_warning", "email"), ("credit_report_warning", "sms")]
    bureau = next(a for a in book.due_actions(now) if a.kind == ActionKind.BUREAU)
    gate = book.screen(bureau, now)
    assert gate is not None and gate.verdict.value == "block" and gate.rule == "CN.credit_report_warning"


def test_partial_then_full_payment_closes_paid_in_full() -> None:
    book, now = _open(10, interest="30.00", penalty="15.00", fees="50.00", principal="5000.00")
    assert book.apply_payment(PaymentReceived(payment_id="P-1", amount="80.00"), now) == "applied"
    assert (book.owed.fees, book.owed.penalty, book.owed.interest) == (ZERO, ZERO, Decimal("15.00"))
    assert not book.closed and book.paid_total == Decimal("80.00")
    assert book.apply_payment(PaymentReceived(payment_id="P-1", amount="80.00"), now) == "duplicate"
    assert book.paid_total == Decimal("80.00")
    assert book.apply_payment(PaymentReceived(payment_id="P-2", amount="6000.00"), now) == "applied"
    assert book.closed and book.outcome == Outcome.PAID_IN_FULL and book.total == 0
    assert book.overpaid == Decimal("985.00") and book.paid_total == Decimal("6080.00")
    st_ = book.status(now)
    assert st_.state == LoanState.CLOSED and st_.stage is None and st_.outcome == Outcome.PAID_IN_FULL
    # After close only cleanup: the credit bureau hears of the cure.
    acts = book.due_actions(now)
    assert [a.kind for a in acts] == [ActionKind.BUREAU] and acts[0].bureau_status.value == "cured"  # type: ignore[union-attr]
    # A payment after the close is kept as overpaid, not lost.
    assert book.apply_payment(PaymentReceived(payment_id="P-3", amount="1.00"), now) == "closed"
    assert book.overpaid == Decimal("986.00")


def test_accrual_per_day_boundary_in_the_borrowers_zone() -> None:
    book, now = _open(10)
    # 10:00 -> 23:59 the same day: no boundary passed.
    book.advance(now.replace(hour=23, minute=59))
    assert book.owed.interest == 0
    book.advance(now.replace(hour=23, minute=59) + timedelta(minutes=1))
    assert (book.owed.interest, book.owed.penalty, book.dpd) == (Decimal("5.00"), Decimal("2.50"), 11)
    book.advance(now + timedelta(days=30))
    assert (book.owed.interest, book.owed.penalty, book.dpd) == (Decimal("150.00"), Decimal("75.00"), 40)
    assert book.stage == Stage.VISIT


def test_plan_accepted_then_broken_returns_to_the_dpds_stage() -> None:
    book, now = _open(20)
    assert book.stage == Stage.CALL
    for a in book.due_actions(now):
        book.record(a, now)
    assert [t.kind for t in book.open_tasks] == ["call"]
    ev = book.propose_plan(PaymentPlanProposal(installments=3, first_due_date=now.date() + timedelta(days=5),
                                               interval_days=30), now, "update")
    assert ev.accepted and book.state == LoanState.RESTRUCTURING
    assert [str(i.amount) for i in ev.schedule] == ["3333.33", "3333.33", "3333.34"]
    # Collection contact stops: the call task is cancelled, the bureau hears "restructured"; the only
    # message is the plan's confirmation.
    acts = book.due_actions(now)
    kinds = [a.kind for a in acts if a.notice_kind != "plan_accepted"]
    assert ActionKind.CANCEL_TASK in kinds and not set(kinds) & CONTACT_KINDS
    assert sorted(a.channel.value for a in acts if a.notice_kind == "plan_accepted") == ["email", "sms"]
    for a in book.due_actions(now):
        book.record(a, now)
    assert book.open_tasks == []
    # No accrual while the plan performs.
    later = now + timedelta(days=12)
    book.advance(later)
    assert book.total == Decimal("10000.00") and book.dpd == 32 and book.stage == Stage.CALL
    assert book.status(later).plan is not None
    # The first installment is missed: at the start of due + 8 the plan breaks.
    broken_at = book.clock.local_midnight(ev.schedule[0].due_date + timedelta(days=8))
    book.advance(broken_at)
    book.plan_broken(broken_at, 0, ev.schedule[0].due_date)
    assert book.state == LoanState.COLLECTING and book.plan is None and book.dpd == 33
    # the stage DPD 33 calls for, entered at the loan's contact opening that morning (a stage of contact)
    assert book.stage == Stage.CALL
    book.advance(book.opening(broken_at.date()))
    assert book.stage == Stage.VISIT
    assert book.total == Decimal("10000.00")  # accrual resumes from the break, not back-dated
    book.advance(broken_at + timedelta(days=1))
    assert (book.owed.interest, book.owed.penalty) == (Decimal("5.00"), Decimal("2.50"))
    assert ActionKind.CREATE_TASK in [a.kind for a in book.due_actions(broken_at.replace(hour=10))]


def test_plan_paid_installment_by_installment_completes_the_plan() -> None:
    book, now = _open(10)
    ev = book.propose_plan(PaymentPlanProposal(installments=2, first_due_date=now.date() + timedelta(days=7),
                                               interval_days=14, down_payment="1000.00"), now, "update")
    assert ev.accepted and ev.total == Decimal("9000.00")
    book.apply_payment(PaymentReceived(payment_id="D", amount="1000.00"), now)
    book.apply_payment(PaymentReceived(payment_id="I1", amount="4500.00"), now + timedelta(days=7))
    assert book.status(now).plan.paid_installments == 1  # type: ignore[union-attr]
    book.apply_payment(PaymentReceived(payment_id="I2", amount="4500.00"), now + timedelta(days=21))
    assert book.closed and book.outcome == Outcome.PLAN_COMPLETED and book.plan.status == "completed"  # type: ignore[union-attr]


def test_plan_paid_off_early_is_paid_in_full() -> None:
    book, now = _open(10)
    book.propose_plan(PaymentPlanProposal(installments=4, first_due_date=now.date() + timedelta(days=7),
                                          interval_days=14), now, "update")
    book.apply_payment(PaymentReceived(payment_id="ALL", amount="10000.00"), now)
    assert book.outcome == Outcome.PAID_IN_FULL and book.plan.status == "paid_off"  # type: ignore[union-attr]


def test_refused_plans_and_state_refusals() -> None:
    book, now = _open(10)
    before = _without_events(book)
    ev = book.propose_plan(PaymentPlanProposal(installments=20, first_due_date=now.date(), interval_days=7), now, "x")
    assert not ev.accepted and ev.code == "installments_out_of_range" and "2 到 12" in (ev.reason or "")
    assert _without_events(book) == before
    book.pause("hold", now)
    ev = book.propose_plan(PaymentPlanProposal(installments=2, first_due_date=now.date(), interval_days=7), now, "x")
    assert not ev.accepted and ev.code == "state"


def test_pause_stops_contact_and_escalation_until_resume() -> None:
    book, now = _open(5)
    assert book.pause("complaint", now) is None
    assert book.pause("again", now) == "loan is already paused"
    later = now + timedelta(days=30)  # DPD 35: visit, but paused
    book.advance(later)
    assert book.stage == Stage.NOTICE and book.due_actions(later) == []
    assert book.status(later).next_action_at is None
    assert book.resume(later) is None and book.state == LoanState.COLLECTING
    assert book.stage == Stage.VISIT
    entered = [e.details for e in book.events if e.kind == "stage_entered"]
    assert entered[-1]["skipped"] == ["call"]


def test_write_off_closes_and_reports() -> None:
    book, now = _open(100)
    for a in book.due_actions(now):
        book.record(a, now)
    assert book.write_off("uncollectable", now) is None
    assert book.outcome == Outcome.WRITTEN_OFF and book.total > 0
    acts = book.due_actions(now)
    assert {a.kind for a in acts} <= CLEANUP_KINDS
    assert [a.bureau_status.value for a in acts if a.kind == ActionKind.BUREAU] == ["written_off"]  # type: ignore[union-attr]
    assert book.write_off("again", now) == "loan is closed"


# ----------------------------------------------------------------------------- bugs found by the machine
# (fixed; these pin them).


def _in_plan_then_paused() -> tuple[LoanBook, datetime]:
    book, now = _open(10)
    assert book.propose_plan(PaymentPlanProposal(installments=3, first_due_date=now.date() + timedelta(days=5),
                                                 interval_days=14), now, "x").accepted
    assert book.pause("operator hold", now) is None
    return book, now


def test_pause_during_a_plan_accrues_nothing() -> None:
    book, now = _in_plan_then_paused()
    book.advance(now + timedelta(days=3))
    assert book.total == Decimal("10000.00")


def test_payment_during_a_paused_plan_counts_for_the_plan() -> None:
    book, now = _in_plan_then_paused()
    book.apply_payment(PaymentReceived(payment_id="P-1", amount="100.00"), now)
    assert book.plan is not None and book.plan.paid_amount == Decimal("100.00")


def test_plan_broken_while_paused_is_not_lost() -> None:
    book, now = _in_plan_then_paused()
    assert book.plan is not None
    due = book.plan.schedule[0].due_date
    at = book.clock.local_midnight(due + timedelta(days=8))
    book.advance(at)
    book.plan_broken(at, 0, due)
    book.resume(at)
    assert book.state == LoanState.COLLECTING and book.plan is None


def test_collection_contact_resumes_after_a_broken_plan_at_the_same_stage() -> None:
    book, now = _open(10)
    for a in book.due_actions(now):
        book.record(a, now)
    book.propose_plan(PaymentPlanProposal(installments=3, first_due_date=now.date() + timedelta(days=3),
                                          interval_days=14), now, "x")
    for a in book.due_actions(now):
        book.record(a, now)
    at = book.clock.local_midnight(now.date() + timedelta(days=11)).replace(hour=10)
    book.advance(at)
    book.plan_broken(at, 0, now.date() + timedelta(days=3))
    assert book.stage == Stage.CALL  # DPD 21
    assert ActionKind.CREATE_TASK in [a.kind for a in book.due_actions(at)]


def test_no_notice_before_dpd_1() -> None:
    book, now = _open(0)
    assert not [a for a in book.due_actions(now) if a.kind in CONTACT_KINDS]


def test_wrong_number_reported_during_a_hold_is_remembered() -> None:
    """An outcome recorded while the loan is on hold is accepted, so it must not be dropped: a wrong number
    stays marked bad, or SMS and calls go to it again after the resume."""
    book, now = _open(10)
    run_actions(book, now)
    assert [t.kind for t in book.open_tasks] == ["call"]
    book.pause("complaint", now)
    assert book.record_contact_outcome(ContactOutcome(task_id=book.open_tasks[0].task_id, agent_id="A-1",
                                                      outcome="wrong_number"), now) is None
    from domain.policy import Channel

    assert Channel.SMS in book.bad_channels and Channel.CALL_TASK in book.bad_channels
