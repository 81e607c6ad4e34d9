"""RestructuringWorkflow: one accepted payment plan, the loan's child.

It reminds the borrower before each installment, takes the installments the parent passes on
(payments always go to `loan-<loan_id>`), and ends `completed` when every installment is paid or
`broken` when one is still unpaid `break_after_days` after its due date. Money stays with the parent;
both count installments with the same pure function (domain.plans.progress).
"""

from __future__ import annotations

from datetime import date, datetime

from temporalio import workflow
from temporalio.exceptions import ActivityError, CancelledError, FailureError

with workflow.unsafe.imports_passed_through():
    from domain.borrower import ContactQuestion, GateRequest, LoanNote
    from domain.commands import NoticeKind, NoticeRequest
    from domain.models import LoanState
    from domain.rules import Actor, ContactAttempt, LoanContext, Purpose, contact_channel
    from domain.compliance import ContactHistory, ContactRequest, PastContact, Verdict, decide
    from domain.contract import RESTRUCTURING_WORKFLOW, SIGNAL_PLAN_ENDED, workflow_id
    from domain.money import fmt
    from domain.plan_run import PlanInput, PlanPayment, PlanResult, breaks_at, next_obligation, reminder_at
    from domain.plans import progress
    from domain.policy import Channel

    from .activities import send_notice
    from .timing import wait_until


@workflow.defn(name=RESTRUCTURING_WORKFLOW)
class RestructuringWorkflow:
    @workflow.init
    def __init__(self, inp: PlanInput) -> None:
        self._inp = inp
        self._payments: list[str] = []
        self._changed = False
        self._contacts: list[PastContact] = []
        self._held = False
        self._resumed_on: date | None = None

    def _now(self) -> datetime:
        return self._inp.clock.loan_time(workflow.now())

    @workflow.signal(name="plan_payment")
    def plan_payment(self, payment: PlanPayment) -> None:
        if payment.payment_id in self._payments:
            return
        self._payments.append(payment.payment_id)
        self._inp.paid_amount += payment.amount
        self._changed = True

    @workflow.signal(name="hold")
    def hold(self, held: bool) -> None:
        """The loan was paused (True) or resumed (False): no reminders and no break while on hold."""
        if held == self._held:
            return
        self._held = held
        if not held:
            self._resumed_on = self._now().date()
        self._changed = True

    @workflow.query(name="plan_status")
    def plan_status(self) -> PlanResult:
        prog = progress(self._inp.down_payment, self._inp.schedule, self._inp.paid_amount)
        return PlanResult(plan_number=self._inp.plan_number, outcome="running", paid_amount=self._inp.paid_amount,
                          paid_installments=prog.paid_installments)

    def _result(self, outcome: str, **extra: object) -> PlanResult:
        prog = progress(self._inp.down_payment, self._inp.schedule, self._inp.paid_amount)
        return PlanResult(plan_number=self._inp.plan_number, outcome=outcome, paid_amount=self._inp.paid_amount,
                          paid_installments=prog.paid_installments, **extra)  # type: ignore[arg-type]

    @workflow.run
    async def run(self, inp: PlanInput) -> PlanResult:
        result = await self._run()
        if self._inp.report_to_parent:
            # lazy-v1 loans hold no handle on their plan: tell the loan how the plan ended.
            try:
                await workflow.get_external_workflow_handle(workflow_id(self._inp.loan_id)).signal(
                    SIGNAL_PLAN_ENDED, result)
            except FailureError as err:  # the loan has ended already (closed): nothing to tell
                workflow.logger.info("plan end not passed on: %s", err)
        return result

    async def _run(self) -> PlanResult:
        while True:
            self._changed = False
            ob = next_obligation(self._inp, self._inp.paid_amount)
            if ob is None:
                workflow.set_current_details(f"Plan {self._inp.plan_number} completed: every installment paid.")
                return self._result("completed")
            now = self._now()
            if self._held:
                workflow.set_current_details(f"Plan {self._inp.plan_number}: the loan is on operator hold; no "
                                             "reminders and no break until it resumes.")
                await workflow.wait_condition(lambda: self._changed)
                continue
            breaking = breaks_at(self._inp, ob, self._resumed_on)
            if now >= breaking:
                workflow.set_current_details(
                    f"Plan {self._inp.plan_number} broken: installment {ob.index + 1} due {ob.due_date} unpaid.")
                return self._result("broken", broken_installment=ob.index, broken_due_date=ob.due_date)
            wake, why = breaking, f"break check for installment {ob.index + 1} (due {ob.due_date})"
            remind = reminder_at(self._inp, ob)
            if remind is not None:
                if now >= remind:
                    deferred = await self._remind(ob.index, now)
                    if deferred is not None and deferred < wake:
                        wake, why = deferred, f"reminder of installment {ob.index + 1} (deferred)"
                elif remind < wake:
                    wake, why = remind, f"reminder of installment {ob.index + 1}"
            label = "down payment" if ob.index < 0 else f"installment {ob.index + 1} of {len(self._inp.schedule)}"
            workflow.set_current_details(
                f"**Plan {self._inp.plan_number}** for loan {self._inp.loan_id}: waiting for {label}, "
                f"{fmt(ob.owed)} {self._inp.currency} still owed on it, due {ob.due_date}. "
                f"Next: {why} at {wake.isoformat()}.")
            await wait_until(self._inp.clock, wake, lambda: self._changed, why)

    def _gate(self, key: str, channel: Channel, now: datetime) -> GateRequest:
        """The question for the borrower's entity (borrower-v1 loans): an installment reminder of a
        running plan, decided against the person's one record like every other contact."""
        g = self._inp.borrower_gate
        assert g is not None
        attempt = ContactAttempt(key=key, loan_id=self._inp.loan_id, channel=contact_channel(channel.value),  # type: ignore[arg-type]
                                 actor=Actor.SYSTEM, purpose=Purpose.PLAN_REMINDER)
        question = ContactQuestion(attempt=attempt, loan=LoanContext(loan_id=self._inp.loan_id, in_plan=True),
                                   pack=g.pack, limits=g.limits, state=LoanState.RESTRUCTURING)
        note = LoanNote(loan_id=self._inp.loan_id, state=LoanState.RESTRUCTURING, rule_pack=g.pack,
                        timezone=self._inp.borrower.timezone, at=now)
        return GateRequest(borrower_id=self._inp.borrower.borrower_id, question=question, note=note)

    async def _remind(self, index: int, now: datetime) -> datetime | None:
        """Send the reminder of installment `index` through the compliance door; answers a deferral."""
        inst = self._inp.schedule[index]
        b = self._inp.borrower
        history = ContactHistory(contacts=self._contacts)
        deferred_until: datetime | None = None
        sent_any = False
        for channel, to in ((Channel.SMS, b.phone), (Channel.EMAIL, b.email)):
            if not to or channel in self._inp.bad_channels:
                continue
            key = f"{self._inp.loan_id}:plan{self._inp.plan_number}:reminder:{index}:{channel.value}"
            gate = self._gate(key, channel, now) if self._inp.borrower_gate else None
            if gate is None:  # loans before borrower-v1: the plan decides against its own contacts
                decision = decide(ContactRequest(loan_id=self._inp.loan_id, borrower_id=b.borrower_id, channel=channel,
                                                 purpose="plan_reminder"), history, self._inp.contact, now)
                if decision.verdict == Verdict.DEFER:
                    deferred_until = decision.until
                    continue
                if decision.verdict == Verdict.BLOCK:
                    continue
            req = NoticeRequest(
                key=key, loan_id=self._inp.loan_id, channel=channel.value, kind=NoticeKind.INSTALLMENT_REMINDER,
                to=to, borrower_name=b.name, locale=b.locale, currency=self._inp.currency,
                amount_owed=inst.amount, days_past_due=0, installment_due_date=inst.due_date,
                installment_amount=inst.amount,
                **({"borrower_id": b.borrower_id, "rule_pack": gate.question.pack.value, "gate": gate} if gate else {}))
            try:
                result = await send_notice(req, f"installment {index + 1} reminder by {channel.value}")
                if result.decision is not None:  # the borrower's entity said not now, or not at all
                    if result.decision.until is not None:
                        deferred_until = result.decision.until
                    continue
                sent_any = True
                self._contacts.append(PastContact(at=now, channel=channel, loan_id=self._inp.loan_id))
            except ActivityError as err:  # a failed reminder must not break the plan
                if self._inp.report_to_parent and isinstance(err.cause, CancelledError):
                    raise  # the plan itself was cancelled (the loan written off): end now (lazy-v1 children)
                workflow.logger.warning("reminder %s failed: %s", req.key, err)
                sent_any = True
        if deferred_until is None or sent_any:
            self._inp.reminded.append(index)
            return None
        return deferred_until
