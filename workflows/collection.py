"""CollectionWorkflow: one durable workflow per overdue loan (`loan-<loan_id>`).

It only orchestrates. Every decision is the loan book's (domain.book): the workflow advances the book
to the loan's current time, asks it which actions are due, passes each contact through the one
compliance door (domain.compliance.decide), runs the activity, records the result, keeps the search
attributes and current details true, and sleeps on a durable timer until the next day boundary or
deferred contact — woken early by signals and updates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError, FailureError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel, ValidationError

    from domain import contract as c
    from domain.assignment import team_for
    from domain.book import BORROWER_V1, FEATURES, LAZY_V1, LOOP_V2, MONEY_V1, Action, ActionKind, LoanBook
    from domain.borrower import Conversation, FlagsNotice, GateRequest
    from domain.commands import (
        AgencyPlacementRequest,
        BotCallResult,
        TaskClosure,
        TaskReassignment,
        AgencyRecall,
        AgentTaskRequest,
        BureauReport,
        LegalReferral,
        NoticeKind,
        NoticeRequest,
        TaskCancellation,
    )
    from domain.compliance import ContactRequest, PastContact, Verdict, decide
    from domain.rules import ContactDecision
    from domain.rules import PastContact as PastContact_
    from domain.rules import Verdict as RuleVerdict
    from domain.models import (
        AgencyPayment,
        CollectionInput,
        ContactAnswer,
        ContactRequest as AgentContactRequest,
        Dispute,
        DisputeResolved,
        Event,
        LegalOutcome,
        ContactOutcome,
        LoanState,
        Pause,
        PaymentPlanProposal,
        PaymentReceived,
        PaymentReversed,
        PlanDecision,
        Resume,
        Status,
        WriteOff,
    )
    from domain.ledger import daily_accrual
    from domain.queue import task_agents, task_entries
    from domain.money import fmt
    from domain.policy import IN_FLIGHT, Policy
    from domain.rules import validation_period_end
    from domain.plan_run import PlanGate, PlanInput, PlanPayment, PlanResult

    from runtime.telemetry import count_payment, count_plan_outcome, count_stage_entry

    from . import search
    from .activities import (
        OPTIONS,
        BorrowerActivities,
        ConversationNote,
        NoteRequest,
        local,
        AgencyActivities,
        AgentTaskActivities,
        BureauActivities,
        LegalActivities,
        call,
        send_notice,
    )
    from .restructuring import RestructuringWorkflow
    from .timing import wait_until

def _explain(err: ValidationError) -> str:
    """A pydantic error as 'field: reason; field: reason'."""
    parts = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "body"
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)


def _parse(model: type[BaseModel], args: tuple[Any, ...], what: str, context: dict[str, Any] | None = None) -> Any:
    """Validate a raw signal/update body; raises ApplicationError naming the field and the reason."""
    if len(args) != 1:
        raise ApplicationError(f"{what}: expected one JSON object as the body, got {len(args)} arguments",
                               type="InvalidRequest", non_retryable=True)
    body = args[0]
    if isinstance(body, BaseModel):
        body = body.model_dump(mode="json")
    if not isinstance(body, dict):
        raise ApplicationError(f"{what}: the body must be a JSON object", type="InvalidRequest", non_retryable=True)
    try:
        return model.model_validate(body, context=context)
    except ValidationError as err:
        raise ApplicationError(f"{what}: {_explain(err)}", type="InvalidRequest", non_retryable=True) from None


GENERATIONS = [LAZY_V1, BORROWER_V1, MONEY_V1]
"""Features recorded as one marker each: a loan opened since lazy-v1 asks for the newest first and takes
every feature up to the first it finds (features are always a prefix of FEATURES)."""


def _features() -> list[str]:
    """The features of a loan opened now, as patches: a loan whose history predates one keeps the old
    behaviour. A loan opened since lazy-v1 records that one patch marker and has every feature (one
    marker and one version upsert instead of one per feature); an older history finds its own markers,
    asked for in the order in which they were recorded (the SDK checks that order)."""
    for i, generation in enumerate(GENERATIONS[::-1]):
        if workflow.patched(generation):
            return FEATURES[: FEATURES.index(generation) + 1]
    return [f for f in FEATURES if f not in GENERATIONS and workflow.patched(f)]


def _refused_as_new(raw: Any) -> str | None:
    """Why a new loan cannot take this input (None: it can): every door's own validation, without the
    allowances kept for loans already running (a policy widening its rule pack, an empty roster)."""
    try:
        inp = _parse(CollectionInput, (raw,), "input")
    except ApplicationError as err:
        return err.message
    gaps = (inp.policy or Policy()).roster_gaps()
    return "input: policy." + "; policy.".join(gaps) if gaps else None


@workflow.defn(name=c.COLLECTION_WORKFLOW)
class CollectionWorkflow:
    @workflow.init
    def __init__(self, input: Any, carried: Any = None) -> None:
        # Both arrive as plain JSON (no type hints to decode them by): validated here, with the
        # in-flight context, so that a policy accepted when the loan started stays accepted on replay
        # and across continue-as-new (domain.policy.IN_FLIGHT).
        self._invalid: str | None = None
        raw = input
        try:
            input = _parse(CollectionInput, (input,), "input", context={IN_FLIGHT: True})
        except ApplicationError as err:
            self._invalid = err.message
        if carried is not None and not isinstance(carried, LoanBook):
            carried = LoanBook.model_validate(carried, context={IN_FLIGHT: True})
        self._input = input
        if carried is not None:
            self._book = carried
        elif self._invalid:
            self._book = None  # type: ignore[assignment]
        else:
            features = _features()
            refused = _refused_as_new(raw) if LAZY_V1 in features else None
            if refused:  # a new loan takes only what intake would take
                self._invalid = refused
                self._book = None  # type: ignore[assignment]
            else:
                self._book = LoanBook.open(input, workflow.now(), features=features)
        self._wake = False
        self._plan_handle: workflow.ChildWorkflowHandle[Any, PlanResult] | None = None
        self._plan_outbox: list[PlanPayment] = []
        self._plan_held: bool | None = None  # a pause/resume not yet passed on to the plan's child
        # Read by runtime.telemetry's RequestTraceInterceptor: this pass of the loop answers a signal or
        # update, so its activities belong to that request's trace.
        self.acting_on_input = False
        self._visible: dict[str, Any] = {}
        self._plan_result: PlanResult | None = None  # lazy-v1: how the plan's child said it ended
        self._conversations: list[Conversation] = []  # borrower-v1: to tell the borrower's entity
        if self._book is not None and self._book.lazy:
            # What intake (or the previous run) already set needs no upsert.
            known = workflow.info().typed_search_attributes
            for name, key in search.BY_NAME.items():
                value = known.get(key)
                if value is not None:
                    self._visible[name] = value
        # Events already turned into metrics (a continued run starts after what the previous one counted).
        self._counted = len(self._book.events) if carried is not None and self._book is not None else 0

    # ------------------------------------------------------------------ time

    def _now(self) -> datetime:
        return self._book.now(workflow.now())

    def _touch(self) -> datetime:
        """Bring the book up to now (accrual, DPD, escalation) before acting on input."""
        now = self._now()
        self._book.advance(now)
        return now

    # ------------------------------------------------------------------ signals

    @workflow.signal(name=c.SIGNAL_PAYMENT_RECEIVED)
    def payment_received(self, *args: Any) -> None:
        now = self._touch()
        try:
            payment = _parse(PaymentReceived, args, c.SIGNAL_PAYMENT_RECEIVED)
        except ApplicationError as err:
            self._book.reject(now, c.SIGNAL_PAYMENT_RECEIVED, err.message)
            return
        self._apply(lambda: self._book.apply_payment(payment, now), payment.payment_id)

    def _apply(self, pay: Any, payment_id: str) -> None:
        """Apply a payment through the book; pass what went to a running plan on to the plan's child."""
        in_plan = self._book.in_plan
        plan_paid_before = self._book.plan.paid_amount if in_plan and self._book.plan else None
        outcome = pay()
        if outcome == "applied" and in_plan and self._book.plan is not None and plan_paid_before is not None:
            applied = self._book.plan.paid_amount - plan_paid_before
            if applied > 0:
                self._plan_outbox.append(PlanPayment(payment_id=payment_id, amount=applied))
        self._wake = True

    @workflow.signal(name=c.SIGNAL_PAYMENT_PLAN_PROPOSED)
    def payment_plan_proposed(self, *args: Any) -> None:
        now = self._touch()
        try:
            proposal = _parse(PaymentPlanProposal, args, c.SIGNAL_PAYMENT_PLAN_PROPOSED)
        except ApplicationError as err:
            self._book.reject(now, c.SIGNAL_PAYMENT_PLAN_PROPOSED, err.message)
            return
        self._book.propose_plan(proposal, now, via="signal")
        self._wake = True

    @workflow.signal(name=c.SIGNAL_PAUSE)
    def pause(self, *args: Any) -> None:
        if self._lever(Pause, c.SIGNAL_PAUSE, args, lambda body, now: self._book.pause(body.reason, now,
                                                                                       by=body.operator_id)):
            if self._book.in_plan and LOOP_V2 in self._book.features:
                self._plan_held = True

    @workflow.signal(name=c.SIGNAL_RESUME)
    def resume(self, *args: Any) -> None:
        if self._lever(Resume, c.SIGNAL_RESUME, args or ({},),
                       lambda body, now: self._book.resume(now, by=body.operator_id)):
            if (self._plan_held is not None or self._book.in_plan) and LOOP_V2 in self._book.features:
                self._plan_held = False

    def _lever(self, model: type[BaseModel], name: str, args: tuple[Any, ...],
               apply: Callable[[Any, datetime], str | None]) -> bool:
        """A signal that pulls a lever: bring the book to now, take the body, apply it; a bad body or a
        refusal changes nothing but the audit trail (with the reason). Answers whether it was taken."""
        now = self._touch()
        try:
            body = _parse(model, args, name)
        except ApplicationError as err:
            self._book.reject(now, name, err.message)
            return False
        refusal = apply(body, now)
        if refusal:
            self._book.reject(now, name, refusal)
        self._wake = True
        return not refusal

    @workflow.signal(name=c.SIGNAL_WRITE_OFF)
    def write_off(self, *args: Any) -> None:
        self._lever(WriteOff, c.SIGNAL_WRITE_OFF, args,
                    lambda body, now: self._book.write_off(body.reason, now, by=body.operator_id))

    @workflow.signal(name=c.SIGNAL_AGENCY_PAYMENT)
    def agency_payment(self, *args: Any) -> None:
        now = self._touch()
        try:
            payment = _parse(AgencyPayment, args, c.SIGNAL_AGENCY_PAYMENT)
        except ApplicationError as err:
            self._book.reject(now, c.SIGNAL_AGENCY_PAYMENT, err.message)
            return
        error = self._book.check_agency_payment(payment)
        if error:
            self._book.reject(now, c.SIGNAL_AGENCY_PAYMENT, error)
            return
        self._apply(lambda: self._book.apply_agency_payment(payment, now), payment.payment_id)

    # ------------------------------------------------------------------ updates

    @workflow.update(name=c.UPDATE_RECORD_LEGAL_OUTCOME)
    def record_legal_outcome(self, *args: Any) -> Status:
        now = self._touch()
        outcome = _parse(LegalOutcome, args, c.UPDATE_RECORD_LEGAL_OUTCOME)
        error = self._book.record_legal_outcome(outcome, now)
        if error:
            raise ApplicationError(f"{c.UPDATE_RECORD_LEGAL_OUTCOME}: {error}", type="InvalidRequest",
                                   non_retryable=True)
        self._wake = True
        return self._book.status(now)

    @record_legal_outcome.validator
    def _validate_legal(self, *args: Any) -> None:
        outcome = _parse(LegalOutcome, args, c.UPDATE_RECORD_LEGAL_OUTCOME)
        error = self._book.check_legal_outcome(outcome, self._now())
        if error:
            raise ApplicationError(f"{c.UPDATE_RECORD_LEGAL_OUTCOME}: {error}", type="InvalidRequest",
                                   non_retryable=True)

    @workflow.update(name=c.UPDATE_PROPOSE_PAYMENT_PLAN)
    def propose_payment_plan(self, *args: Any) -> PlanDecision:
        now = self._touch()
        proposal = _parse(PaymentPlanProposal, args, c.UPDATE_PROPOSE_PAYMENT_PLAN)
        result = self._book.propose_plan(proposal, now, via="update")
        self._wake = True
        return PlanDecision(accepted=result.accepted, reason=result.reason, schedule=result.schedule)

    @propose_payment_plan.validator
    def _validate_plan(self, *args: Any) -> None:
        _parse(PaymentPlanProposal, args, c.UPDATE_PROPOSE_PAYMENT_PLAN)

    @workflow.update(name=c.UPDATE_RECORD_CONTACT_OUTCOME)
    def record_contact_outcome(self, *args: Any) -> Status:
        now = self._touch()
        outcome = _parse(ContactOutcome, args, c.UPDATE_RECORD_CONTACT_OUTCOME)
        error = self._book.record_contact_outcome(outcome, now)
        if error:
            raise ApplicationError(f"{c.UPDATE_RECORD_CONTACT_OUTCOME}: {error}", type="InvalidRequest",
                                   non_retryable=True)
        talk = self._book.conversation(outcome.outcome.value, outcome.task_id, outcome.agent_id, now)
        if talk is not None:
            self._conversations.append(talk)
        self._wake = True
        return self._book.status(now)

    @record_contact_outcome.validator
    def _validate_outcome(self, *args: Any) -> None:
        outcome = _parse(ContactOutcome, args, c.UPDATE_RECORD_CONTACT_OUTCOME)
        error = self._book.check_contact_outcome(outcome, self._now())
        if error:
            raise ApplicationError(f"{c.UPDATE_RECORD_CONTACT_OUTCOME}: {error}", type="InvalidRequest",
                                   non_retryable=True)

    @workflow.signal(name=c.SIGNAL_PAYMENT_REVERSED)
    def payment_reversed(self, *args: Any) -> None:
        """A payment came back (returned, charged back): undone, or refused with the reason in the events."""
        now = self._touch()
        try:
            body = _parse(PaymentReversed, args, c.SIGNAL_PAYMENT_REVERSED)
        except ApplicationError as err:
            self._book.reject(now, c.SIGNAL_PAYMENT_REVERSED, err.message)
            return
        self._reverse(body, now)

    def _reverse(self, body: PaymentReversed, now: datetime) -> str | None:
        refusal, to_plan = self._book.reverse_payment(body, now)
        if to_plan > 0:
            self._plan_outbox.append(PlanPayment(payment_id=f"{body.payment_id}:reversed", amount=-to_plan))
        self._wake = True
        return refusal

    @workflow.update(name=c.UPDATE_REVERSE_PAYMENT)
    def reverse_payment(self, *args: Any) -> Status:
        now = self._touch()
        body = _parse(PaymentReversed, args, c.UPDATE_REVERSE_PAYMENT)
        refusal = self._reverse(body, now)
        if refusal:  # (the validator refuses first; a race since then is answered the same way)
            raise ApplicationError(f"{c.UPDATE_REVERSE_PAYMENT}: {refusal}", type="ReversalRefused", non_retryable=True)
        return self._book.status(now)

    @reverse_payment.validator
    def _validate_reversal(self, *args: Any) -> None:
        body = _parse(PaymentReversed, args, c.UPDATE_REVERSE_PAYMENT)
        refusal = self._book.check_reversal(body, self._now())
        if refusal:
            raise ApplicationError(f"{c.UPDATE_REVERSE_PAYMENT}: {refusal}", type="ReversalRefused",
                                   non_retryable=True)

    @workflow.signal(name=c.SIGNAL_BORROWER_FLAGS)
    def borrower_flags(self, *args: Any) -> None:
        """The borrower's entity passes on the person's flags (borrower-v1 loans)."""
        now = self._touch()
        try:
            notice = _parse(FlagsNotice, args, c.SIGNAL_BORROWER_FLAGS)
        except ApplicationError as err:
            self._book.reject(now, c.SIGNAL_BORROWER_FLAGS, err.message)
            return
        if self._book.apply_borrower_flags(notice, now):
            if self._book.in_plan and self._book.state == LoanState.PAUSED and LOOP_V2 in self._book.features:
                self._plan_held = True
            self._wake = True

    @workflow.signal(name=c.SIGNAL_DISPUTE)
    def dispute(self, *args: Any) -> None:
        self._lever(Dispute, c.SIGNAL_DISPUTE, args, self._book.open_dispute)

    @workflow.signal(name=c.SIGNAL_DISPUTE_RESOLVED)
    def dispute_resolved(self, *args: Any) -> None:
        self._lever(DisputeResolved, c.SIGNAL_DISPUTE_RESOLVED, args, self._book.resolve_dispute)

    @workflow.update(name=c.UPDATE_REQUEST_CONTACT)
    async def request_contact(self, *args: Any) -> ContactAnswer:
        """An agent or agency asks before a call or visit; an allowed one counts against the person's
        caps at once (decided by the borrower's entity against their one record)."""
        now = self._touch()
        req = _parse(AgentContactRequest, args, c.UPDATE_REQUEST_CONTACT)
        book = self._book
        info = workflow.current_update_info()
        key = f"{book.loan.loan_id}:ask:{info.id if info else book.contact_requests}"
        asked = book.contact_request(req, key, now)
        if isinstance(asked, ContactAnswer):
            return asked
        decision: ContactDecision = await local(
            BorrowerActivities.decide_contact,
            GateRequest(borrower_id=book.loan.borrower.borrower_id, question=book.question(asked),
                        note=book.note(now)),
            f"ask borrower {book.loan.borrower.borrower_id}: {req.channel} by {req.actor} {req.agent_id}")
        self._wake = True
        return book.record_contact_answer(req, key, decision, self._now())

    @request_contact.validator
    def _validate_request_contact(self, *args: Any) -> None:
        _parse(AgentContactRequest, args, c.UPDATE_REQUEST_CONTACT)
        if not self._book.borrower_v1:
            raise ApplicationError(f"{c.UPDATE_REQUEST_CONTACT}: this loan predates the borrower entity; "
                                   "its contacts are decided by the loan alone", type="InvalidRequest",
                                   non_retryable=True)

    @workflow.signal(name=c.SIGNAL_PLAN_ENDED)
    def plan_ended(self, result: PlanResult) -> None:
        """The plan's child ended (lazy-v1 loans): completed, broken or cancelled."""
        book = self._book
        if book.plan is None or result.plan_number != book.plan.number:
            return  # a past plan's late word: its end was already taken into account
        self._plan_result = result
        self._wake = True

    # ------------------------------------------------------------------ queries

    @workflow.query(name=c.QUERY_STATUS)
    def status(self) -> Status:
        return self._book.status(self._now())

    @workflow.query(name=c.QUERY_EVENTS)
    def events(self, offset: int = 0, limit: int = 1000) -> list[Event]:
        """The loan's whole audit trail, a page at a time (oldest first)."""
        offset, limit = max(0, int(offset)), min(max(1, int(limit)), 5000)
        return list(self._book.events[offset:offset + limit])

    @workflow.query(name="borrower_id")
    def borrower_id(self) -> str:
        return self._book.loan.borrower.borrower_id

    # ------------------------------------------------------------------ the loop

    @workflow.run
    async def run(self, input: Any, carried: Any = None) -> Status:
        if self._invalid:
            raise ApplicationError(self._invalid, type="InvalidRequest", non_retryable=True)
        book = self._book
        while True:
            await self._collect()
            self.acting_on_input = True  # closing follows the payment, plan or write-off that closed the loan
            await self._finish()
            if MONEY_V1 in book.features and await self._reversal_window():
                continue  # a reversal reopened the loan: collected again
            return book.status(self._now())

    async def _reversal_window(self) -> bool:
        """money-v1: a paid_in_full loan stays open its reversal window (closed, outcome set); answers
        whether a reversal reopened it."""
        book = self._book
        ends = book.reversal_window_ends
        if ends is None or self._now() >= ends:
            return False
        self._wake = False
        self._details()
        await wait_until(book.clock, ends, lambda: self._wake and not book.closed,
                         f"reversal window until {ends.isoformat()}")
        return not book.closed

    async def _collect(self) -> None:
        """The loop: while the loan is open, bring it up to now, run what is due, sleep until the next."""
        book = self._book
        loop_v2 = LOOP_V2 in book.features
        while not book.closed:
            self.acting_on_input = self._wake
            if loop_v2:
                self._wake = False  # anything arriving from here on wakes the next wait at once
            self._touch()
            await self._drive_plan()
            await self._tell_borrower()  # a new loan joins its borrower before its first contact
            await self._run_due_actions()
            if book.closed:
                break
            self._publish()
            await self._tell_borrower()
            if self._should_continue_as_new() and (book.lazy or (not book.in_plan and self._plan_handle is None)):
                await workflow.wait_condition(workflow.all_handlers_finished)
                if not self._wake:
                    workflow.continue_as_new(args=[self._input, book])
            wake, why = book.next_wake(self._now())
            if not loop_v2:
                self._wake = False  # loans from before loop-v2 keep their recorded behaviour
            if wake is None:
                await workflow.wait_condition(lambda: self._wake)
                continue
            await wait_until(book.clock, wake,
                             lambda: self._wake or (self._plan_handle is not None and self._plan_handle.done()),
                             f"{why} at {wake.isoformat()}")

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        limit = self._book.policy.continue_as_new_after_events
        return info.is_continue_as_new_suggested() or info.get_current_history_length() > limit

    async def _finish(self) -> None:
        """Closed: cancel tasks, recall placements, report to the bureau, let the plan's child end."""
        await self._drive_plan()
        await self._run_due_actions()
        book = self._book
        if MONEY_V1 in book.features:
            await self._until_closing_done()
        if book.lazy and book.plan is not None and book.plan.child_started:
            child = workflow.get_external_workflow_handle(c.plan_workflow_id(book.loan.loan_id, book.plan.number))
            if book.plan.status not in ("completed", "paid_off"):
                await self._cancel_child(child)  # written off: the plan ends with the loan
            else:
                try:
                    await workflow.wait_condition(lambda: self._plan_result is not None, timeout=timedelta(minutes=5),
                                                  timeout_summary="plan child to finish")
                except TimeoutError:
                    await self._cancel_child(child)
        if self._plan_handle is not None:
            if self._book.plan is not None and self._book.plan.status not in ("completed", "paid_off"):
                self._plan_handle.cancel()  # written off: the plan ends with the loan
            elif not self._plan_handle.done():
                try:
                    await workflow.wait_condition(self._plan_handle.done, timeout=timedelta(minutes=5),
                                                  timeout_summary="plan child to finish")
                except TimeoutError:
                    self._plan_handle.cancel()
            try:
                await self._plan_handle
            except (ChildWorkflowError, asyncio.CancelledError) as err:  # cancelled (written off) or failed
                workflow.logger.info("plan child ended without a result: %s", err)
        self._publish()
        await self._tell_borrower()

    async def _until_closing_done(self) -> None:
        """money-v1: the workflow does not end before its closing bookkeeping (the cure report, the agency
        recall, the tasks withdrawn) is done: what failed is retried with backoff, visible in the UI."""
        book = self._book
        delay = timedelta(seconds=30)
        attempt = 1
        while book.closed:
            due = book.due_actions(self._now())
            if not due:
                return
            attempt += 1
            lines = ", ".join(a.summary for a in due)
            self._details(f"closing: retrying ({attempt}) in {int(delay.total_seconds())} s: {lines}")
            self._wake = False
            await wait_until(book.clock, book.clock.loan_time(workflow.now() + delay), lambda: self._wake,
                             f"closing retry {attempt}: {lines}")
            book.deferred.clear()  # retried now, with backoff, not at the next day boundary
            await self._run_due_actions()
            delay = min(delay * 2, timedelta(hours=1))

    # ------------------------------------------------------------------ the borrower's entity

    async def _tell_borrower(self) -> None:
        """borrower-v1: the borrower's entity hears where the loan stands when that changes (a local
        activity: signal-with-start, so the loan's first word starts or joins its borrower), and of
        telephone conversations (US call cool-off)."""
        book = self._book
        if not book.borrower_v1:
            return
        bid = book.loan.borrower.borrower_id
        note = book.borrower_note(self._now())
        try:
            if note is not None:
                await local(BorrowerActivities.note_borrower, NoteRequest(borrower_id=bid, note=note),
                            f"tell borrower {bid}: {note.state.value}{' · ' + note.stage.value if note.stage else ''}")
                book.mark_told(note)
            while self._conversations:
                talk = self._conversations[0]
                await local(BorrowerActivities.tell_conversation, ConversationNote(borrower_id=bid, conversation=talk),
                            f"tell borrower {bid}: telephone conversation about this loan")
                self._conversations.pop(0)
        except FailureError as err:  # a local activity's failure: the next pass tries again
            workflow.logger.warning("borrower %s not told: %s", bid, err)

    # ------------------------------------------------------------------ the plan's child

    @staticmethod
    async def _cancel_child(child: Any) -> None:
        try:
            await child.cancel()
        except FailureError as err:  # already ended
            workflow.logger.info("plan child not cancelled: %s", err)

    def _plan_input(self) -> PlanInput:
        book = self._book
        plan = book.plan
        assert plan is not None
        return PlanInput(loan_id=book.loan.loan_id, plan_number=plan.number, currency=book.loan.currency,
                         borrower=book.loan.borrower, down_payment=plan.down_payment, schedule=plan.schedule,
                         accepted_on=plan.accepted_on, clock=book.clock, rules=book.policy.plan,
                         contact=book.policy.contact, paid_amount=plan.paid_amount,
                         bad_channels=list(book.bad_channels), report_to_parent=book.lazy,
                         borrower_gate=PlanGate(pack=book.pack, limits=book.limits) if book.borrower_v1 else None)

    def _plan_summary(self) -> str:
        book = self._book
        plan = book.plan
        assert plan is not None
        return (f"Payment plan {plan.number} of loan {book.loan.loan_id}: "
                f"{len(plan.schedule)} installments, {fmt(plan.total)} {book.loan.currency}")

    async def _drive_plan_lazy(self) -> None:
        """lazy-v1: the child is started once (it outlives a continue-as-new of the loan), reached by
        its workflow id, and reports its end by signal."""
        book = self._book
        plan = book.plan
        if plan is not None and plan.status == "active" and not plan.child_started \
                and book.state == LoanState.RESTRUCTURING:
            self._plan_outbox.clear()  # the input carries everything paid so far
            self._plan_result = None
            await workflow.start_child_workflow(
                RestructuringWorkflow.run, self._plan_input(),
                id=c.plan_workflow_id(book.loan.loan_id, plan.number),
                parent_close_policy=ParentClosePolicy.ABANDON,
                static_summary=self._plan_summary())
            plan.child_started = True
        if plan is None or not plan.child_started:
            self._plan_outbox.clear()
            self._plan_held = None
            return
        child = workflow.get_external_workflow_handle(c.plan_workflow_id(book.loan.loan_id, plan.number))
        if self._plan_result is None and plan.status in ("active", "completed", "paid_off"):
            # (a completing payment still goes to the child, which then ends `completed`)
            if self._plan_held is not None:
                held, self._plan_held = self._plan_held, None
                try:
                    await child.signal(RestructuringWorkflow.hold, held)
                except FailureError as err:
                    workflow.logger.info("plan hold not passed on: %s", err)
            while self._plan_outbox:
                payment = self._plan_outbox.pop(0)
                try:
                    await child.signal(RestructuringWorkflow.plan_payment, payment)
                except FailureError as err:  # the child ended first; its plan_ended signal decides
                    workflow.logger.info("plan payment %s not passed on: %s", payment.payment_id, err)
                    break
        result = self._plan_result
        if result is not None and plan.status == "active" and not book.closed:
            if result.outcome in ("broken", "cancelled"):
                book.plan_broken(self._now(), result.broken_installment if result.outcome == "broken" else -2,
                                 result.broken_due_date or self._now().date())
            self._plan_result = None

    async def _drive_plan(self) -> None:
        book = self._book
        if book.lazy:
            await self._drive_plan_lazy()
            return
        if book.plan is not None and book.plan.status == "active" and self._plan_handle is None \
                and book.state == LoanState.RESTRUCTURING:
            plan = book.plan
            b = book.loan.borrower
            inp = PlanInput(loan_id=book.loan.loan_id, plan_number=plan.number, currency=book.loan.currency,
                            borrower=b, down_payment=plan.down_payment, schedule=plan.schedule,
                            accepted_on=plan.accepted_on, clock=book.clock, rules=book.policy.plan,
                            contact=book.policy.contact, paid_amount=plan.paid_amount,
                            bad_channels=list(book.bad_channels))
            # The input carries everything paid so far; payments arriving while the child starts queue up.
            self._plan_outbox.clear()
            self._plan_handle = await workflow.start_child_workflow(
                RestructuringWorkflow.run,
                inp,
                id=c.plan_workflow_id(book.loan.loan_id, plan.number),
                static_summary=(f"Payment plan {plan.number} of loan {book.loan.loan_id}: "
                                f"{len(plan.schedule)} installments, {fmt(plan.total)} {book.loan.currency}"),
            )
        handle = self._plan_handle
        if handle is None:
            return
        if self._plan_held is not None and not handle.done():
            held, self._plan_held = self._plan_held, None
            try:
                await handle.signal(RestructuringWorkflow.hold, held)
            except FailureError as err:
                workflow.logger.info("plan hold not passed on: %s", err)
        while self._plan_outbox and not handle.done():
            payment = self._plan_outbox.pop(0)
            try:
                await handle.signal(RestructuringWorkflow.plan_payment, payment)
            except FailureError as err:
                # The child ended (broken or completed) before the payment reached it: its result,
                # read below or at the next wake, decides; the payment is already on the loan's balance.
                workflow.logger.info("plan payment %s not passed on: %s", payment.payment_id, err)
                break
        if handle.done():
            self._plan_handle = None
            try:
                result = handle.result()
            except (ChildWorkflowError, asyncio.CancelledError) as err:  # failed or cancelled: treat as broken
                workflow.logger.error("plan child failed: %s", err)
                if not book.closed:
                    book.plan_broken(self._now(), -2, self._now().date())
                return
            if result.outcome == "broken" and not book.closed:
                book.plan_broken(self._now(), result.broken_installment or 0,
                                 result.broken_due_date or self._now().date())

    # ------------------------------------------------------------------ actions

    async def _run_due_actions(self) -> None:
        if self._book.lazy:
            await self._run_due_actions_together()
            return
        book = self._book
        while True:
            now = self._touch()
            due = book.due_actions(now)
            book.prune_deferred({a.key for a in due})
            pending = [a for a in due if not (a.key in book.deferred and book.deferred[a.key] > now)]
            if not pending:
                return
            action = pending[0]
            if action.kind == ActionKind.SKIP:
                book.record(action, now)
                continue
            if action.gated:
                decision = decide(
                    ContactRequest(loan_id=book.loan.loan_id, borrower_id=book.loan.borrower.borrower_id,
                                   channel=action.channel,  # type: ignore[arg-type]
                                   purpose="agent_task" if action.kind == ActionKind.CREATE_TASK else "collection"),
                    book.contact_history(), book.policy.contact, now)
                if decision.verdict == Verdict.DEFER:
                    book.defer(action, decision.until or now, decision.rule, decision.explanation, now)  # type: ignore[arg-type]
                    continue
                if decision.verdict == Verdict.BLOCK:
                    book.block(action, decision.rule, decision.explanation, now)
                    continue
            self._details(f"running: {action.summary}")
            try:
                extra = await self._execute(action)
            except ActivityError as err:
                cause = err.cause
                message = getattr(cause, "message", None) or str(cause or err)
                book.record(action, self._now(), failed=message)
                continue
            extra.pop("decision", None)  # only borrower-v1 loans ask their borrower
            book.record(action, self._now(), **extra)

    async def _run_due_actions_together(self) -> None:
        """lazy-v1: what falls due at one instant runs at once (one workflow task schedules every
        activity of the batch), contacts decided one by one against a history that counts the batch."""
        book = self._book
        held: set[str] = set()  # held in this pass: asked again at the next wake, not now
        while True:
            now = self._touch()
            due = book.due_actions(now)
            book.prune_deferred({a.key for a in due})
            pending = [a for a in due if not (a.key in book.deferred and book.deferred[a.key] > now)
                       and a.key not in held]
            if not pending:
                return
            history = book.contact_history()
            own = book.own_record(now) if book.borrower_v1 else None
            batch: list[Action] = []
            for action in pending:
                if action.kind == ActionKind.SKIP:
                    book.record(action, now)
                    continue
                if book.borrower_v1:
                    # the rules this loan applies itself (flags, hours, its own contacts, gates); the
                    # person's whole record is the borrower entity's, asked by the send activity itself
                    screened = book.screen(action, now, own)
                    if screened is not None and screened.verdict != RuleVerdict.ALLOW:
                        book.refuse(action, screened, now)
                        if action.key in book.held:
                            held.add(action.key)
                        continue
                    if own is not None and action.kind in (ActionKind.NOTICE, ActionKind.BOT_CALL):
                        own, _ = own.add(PastContact_.of(book.attempt(action), now))
                elif action.gated:
                    decision = decide(
                        ContactRequest(loan_id=book.loan.loan_id, borrower_id=book.loan.borrower.borrower_id,
                                       channel=action.channel,  # type: ignore[arg-type]
                                       purpose="agent_task" if action.kind == ActionKind.CREATE_TASK else "collection"),
                        history, book.policy.contact, now)
                    if decision.verdict == Verdict.DEFER:
                        book.defer(action, decision.until or now, decision.rule, decision.explanation, now)  # type: ignore[arg-type]
                        continue
                    if decision.verdict == Verdict.BLOCK:
                        book.block(action, decision.rule, decision.explanation, now)
                        continue
                    if action.channel is not None and action.channel.is_direct_contact:
                        history.contacts.append(PastContact(at=now, channel=action.channel, loan_id=book.loan.loan_id))
                batch.append(action)
            if not batch:
                continue
            self._details("running: " + "; ".join(a.summary for a in batch))
            held.clear()  # what this batch does (a warning sent) can open a gate that held something
            outcomes = await asyncio.gather(*(self._attempt(a) for a in batch))
            for action, (extra, failed) in zip(batch, outcomes):
                refused = extra.pop("decision", None)
                if failed is not None:
                    book.record(action, self._now(), failed=failed)
                elif refused is not None:  # the borrower's entity said no: nothing was sent
                    book.refuse(action, refused, self._now())
                    if action.key in book.held:
                        held.add(action.key)
                else:
                    book.record(action, self._now(), **extra)

    async def _attempt(self, action: Action) -> tuple[dict[str, Any], str | None]:
        """Run one action's activity; its result, or why it failed (after the activity's own retries)."""
        try:
            return await self._execute(action), None
        except ActivityError as err:
            cause = err.cause
            return {}, getattr(cause, "message", None) or str(cause or err)
        except ApplicationError as err:  # a local activity's failure arrives unwrapped
            return {}, err.message or str(err)

    async def _file(self, method: Any, request: Any, summary: str) -> Any:
        """Bookkeeping with our own systems: a local activity on borrower-v1 loans (one marker in the
        history), an activity on older loans (their recorded histories schedule one)."""
        if self._book.borrower_v1:
            return await local(method, request, summary)
        return await call(method, request, summary)

    def _gate(self, a: Action, now: datetime) -> GateRequest:
        book = self._book
        return GateRequest(borrower_id=book.loan.borrower.borrower_id, question=book.question(book.attempt(a)),
                           note=book.note(now))

    def _v2_notice(self, a: Action, now: datetime) -> dict[str, Any]:
        """What a borrower-v1 loan's notice adds: the itemised balance, the daily cost of delay, the
        date a warning announces, the US dispute period, and the question for the borrower's entity."""
        book = self._book
        if not book.borrower_v1:
            return {}
        one = daily_accrual(book.owed.principal, book.loan.annual_interest_rate, book.policy.penalty_rate_factor,
                            book.policy.day_count)
        dispute_by = (validation_period_end(now, book.limits) if a.notice_kind == "validation" else None)
        return dict(borrower_id=book.loan.borrower.borrower_id, rule_pack=book.pack.value, event_date=a.event_date,
                    balance=book.owed.balance(), daily_charge=one.interest + one.penalty if book.accruing else None,
                    dispute_by=dispute_by, gate=self._gate(a, now))

    async def _execute(self, a: Action) -> dict[str, Any]:
        book = self._book
        loan = book.loan
        b = loan.borrower
        now = self._now()
        owed = book.total
        if a.kind == ActionKind.NOTICE:
            to = b.email if a.channel and a.channel.value == "email" else b.phone
            first = book.plan.schedule[0] if a.notice_kind == "plan_accepted" and book.plan else None
            req = NoticeRequest(key=a.key, loan_id=loan.loan_id, channel=a.channel.value,  # type: ignore[union-attr,arg-type]
                                kind=NoticeKind(a.notice_kind), stage=a.stage, attempt=a.attempt, to=to or "",
                                borrower_name=b.name, locale=b.locale, currency=loan.currency,
                                amount_owed=book.plan.total if first and book.plan else owed, days_past_due=book.dpd,
                                installment_due_date=first.due_date if first else None,
                                installment_amount=first.amount if first else None,
                                **self._v2_notice(a, now))
            result = await send_notice(req, a.summary)
            return {"reference": result.provider_message_id, "duplicate": result.duplicate,
                    "decision": result.decision}
        agents = book.policy.agents
        team = team_for(b, agents.teams)
        if a.kind in (ActionKind.CREATE_TASK, ActionKind.BOT_CALL):
            kind = "visit" if a.channel and a.channel.value == "visit_task" else "call"
            due_by = book.clock.local_midnight(now.date() + timedelta(days=agents.task_sla_days))
            request = AgentTaskRequest(
                key=a.key, task_id=a.task_id or a.key, loan_id=loan.loan_id, kind=kind, stage=a.stage,  # type: ignore[arg-type]
                borrower_name=b.name, phone=b.phone if kind == "call" else None,
                address=b.address if kind == "visit" else None, timezone=b.timezone, locale=b.locale,
                currency=loan.currency, amount_owed=owed, days_past_due=book.dpd, due_by=due_by,
                team=team.team_id, candidates=list(team.agents), strategy=agents.assignment)
            if a.kind == ActionKind.BOT_CALL:
                if book.borrower_v1:
                    request.gate = self._gate(a, now)
                bot: BotCallResult = await workflow.execute_activity_method(
                    AgentTaskActivities.place_bot_call, request, summary=a.summary, **OPTIONS)
                if bot.decision is not None:
                    return {"decision": bot.decision}
                return {"bot": bot, "duplicate": bot.duplicate}
            receipt = await self._file(AgentTaskActivities.create_agent_task, request, a.summary)
            return {"reference": receipt.reference, "duplicate": receipt.duplicate,
                    "assigned_to": receipt.details.get("assigned_to"), "team": team.team_id}
        if a.kind == ActionKind.REASSIGN_TASK:
            task = next((t for t in book.open_tasks if t.task_id == a.task_id), None)
            receipt = await self._file(AgentTaskActivities.reassign_agent_task, TaskReassignment(
                key=a.key, task_id=a.task_id or "", loan_id=loan.loan_id,
                kind="visit" if task is not None and task.kind == "visit" else "call",
                from_agent=a.agent_id, team=team.team_id, candidates=list(team.agents), strategy=agents.assignment,
                supervisor=team.supervisor, reason=a.reason or "",
                due_by=book.clock.local_midnight(now.date() + timedelta(days=agents.task_sla_days))), a.summary)
            return {"duplicate": receipt.duplicate, "assigned_to": receipt.details.get("assigned_to")}
        if a.kind == ActionKind.CLOSE_TASK:
            receipt = await self._file(AgentTaskActivities.close_agent_task, TaskClosure(
                key=a.key, task_id=a.task_id or "", loan_id=loan.loan_id, agent_id=a.agent_id or "",
                outcome=a.outcome or ""), a.summary)
            return {"duplicate": receipt.duplicate}
        if a.kind == ActionKind.CANCEL_TASK:
            receipt = await self._file(AgentTaskActivities.cancel_agent_task, TaskCancellation(
                key=a.key, task_id=a.task_id or "", loan_id=loan.loan_id, reason=a.reason or ""), a.summary)
            return {"duplicate": receipt.duplicate}
        if a.kind == ActionKind.PLACE_AGENCY:
            agency_id = a.agency_id or agents.agencies[0].agency_id
            until = now.date() + timedelta(days=book.policy.agents.agency_placement_days)
            receipt = await self._file(AgencyActivities.place_with_agency, AgencyPlacementRequest(
                key=a.key, placement_id=a.placement_id or a.key, loan_id=loan.loan_id, agency_id=agency_id,
                borrower_name=b.name, phone=b.phone, address=b.address, currency=loan.currency, amount_owed=owed,
                days_past_due=book.dpd, placed_until=until), a.summary)
            return {"reference": receipt.reference, "duplicate": receipt.duplicate, "agency_id": agency_id}
        if a.kind == ActionKind.RECALL_AGENCY:
            placement = book.placement
            receipt = await self._file(AgencyActivities.recall_agency_placement, AgencyRecall(
                key=a.key, placement_id=a.placement_id or "", loan_id=loan.loan_id,
                agency_id=placement.agency_id if placement else "", reason=a.reason or ""), a.summary)
            return {"duplicate": receipt.duplicate}
        if a.kind == ActionKind.REFER_LEGAL:
            receipt = await call(LegalActivities.refer_to_legal, LegalReferral(
                key=a.key, case_id=f"{loan.loan_id}-legal-{a.attempt + 1}", loan_id=loan.loan_id,
                borrower_id=b.borrower_id, borrower_name=b.name, address=b.address, currency=loan.currency,
                balance=book.owed.balance(), paid_total=book.paid_total, due_date=loan.due_date,
                days_past_due=book.dpd, events=[] if book.lazy else list(book.events),
                trail_workflow_id=c.workflow_id(loan.loan_id) if book.lazy else None,
                trail_events=len(book.events)), a.summary)
            return {"reference": receipt.reference, "duplicate": receipt.duplicate}
        if a.kind == ActionKind.BUREAU:
            receipt = await self._file(BureauActivities.report_to_credit_bureau, BureauReport(
                key=a.key, loan_id=loan.loan_id, borrower_id=b.borrower_id, status=a.bureau_status,  # type: ignore[arg-type]
                days_past_due=book.dpd, currency=loan.currency, amount_owed=owed, as_of=now.date()), a.summary)
            return {"reference": receipt.reference, "duplicate": receipt.duplicate}
        raise ApplicationError(f"unknown action kind {a.kind}", non_retryable=True)  # pragma: no cover

    # ------------------------------------------------------------------ what operators see

    def _count(self) -> None:
        """Project metrics from the audit trail's new events (the workflow meter is silent on replay)."""
        book = self._book
        meter = workflow.metric_meter()
        for e in book.events[self._counted:]:
            if e.kind == "stage_entered":
                count_stage_entry(meter, stage=e.details["stage"])
            elif e.kind in ("payment_applied", "payment_duplicate"):
                count_payment(meter, currency=book.loan.currency, result=e.kind.removeprefix("payment_"))
            elif e.kind == "rejected" and e.details.get("signal") == c.SIGNAL_PAYMENT_RECEIVED:
                count_payment(meter, currency=book.loan.currency, result="rejected")
            elif e.kind in ("plan_accepted", "plan_refused", "plan_broken"):
                count_plan_outcome(meter, outcome={"plan_accepted": "accepted", "plan_refused": "rejected",
                                                   "plan_broken": "broken"}[e.kind])
            elif e.kind == "closed" and e.details.get("outcome") == "plan_completed":
                count_plan_outcome(meter, outcome="completed")
        self._counted = len(book.events)

    def _publish(self) -> None:
        """Keep the search attributes, current details and metrics true."""
        book = self._book
        self._count()
        values: dict[str, Any] = {
            "LoanId": book.loan.loan_id,
            "CollectionStage": "" if book.closed or book.stage is None else book.stage.value,
            "CollectionState": book.state.value,
            "DaysPastDue": book.dpd,
            "OutstandingAmount": float(book.total),
        }
        if book.lazy:
            values["BorrowerId"] = book.loan.borrower.borrower_id
            values["DueDate"] = book.clock.local_midnight(book.loan.due_date)
            # the desks' queues, read by one visibility query (domain/queue.py)
            queue = book.queue()
            values["OpenTasks"] = task_entries(queue)
            values["TaskAgents"] = task_agents(queue)
            values["AgencyId"] = book.placement.agency_id if book.placement is not None and not book.closed else ""
        changed = {k: v for k, v in values.items()
                   if self._visible.get(k) != v and not (self._visible.get(k) is None and v in ("", []))}
        if changed:
            updates = []
            for name, value in changed.items():
                key = search.BY_NAME[name]
                updates.append(key.value_unset() if value in ("", []) else key.value_set(value))
            workflow.upsert_search_attributes(updates)
            self._visible.update(changed)
        self._details()

    def _details(self, doing: str | None = None) -> None:
        book = self._book
        now = self._now()
        head = (f"**{book.loan.loan_id}** · {book.state.value}"
                f"{' · ' + book.stage.value if book.stage and not book.closed else ''} · DPD {book.dpd} · "
                f"owed {fmt(book.total)} {book.loan.currency} · paid {fmt(book.paid_total)}")
        if book.closed:
            workflow.set_current_details(f"{head}\n\nClosed: {book.outcome.value if book.outcome else ''}.")
            return
        lines = [head, ""]
        if doing:
            lines.append(f"Now {doing}.")
        if book.state == LoanState.PAUSED:
            lines.append("On operator hold: no contact and no escalation until `resume`.")
        elif book.state == LoanState.RESTRUCTURING and book.plan is not None:
            ps = book.plan_status()
            lines.append(f"Restructuring: plan {book.plan.number}, {ps.paid_installments if ps else 0} of "
                         f"{len(book.plan.schedule)} installments paid; child `{ps.workflow_id if ps else ''}`.")
        if book.promise is not None:
            lines.append(f"Promise to pay {fmt(book.promise.amount)} by {book.promise.promised_date}; "
                         f"escalation held until {book.promise.hold_until}.")
        wake, why = book.next_wake(now)
        if wake is None:
            lines.append("Waiting for: a payment, plan proposal, agent outcome or operator signal; nothing else "
                         "falls due by itself.")
        else:
            lines.append(f"Waiting for: {why} at {wake.isoformat()}, or a payment, plan proposal or operator signal.")
        nxt = book.next_action_at(now)
        if nxt is not None:
            lines.append(f"Next planned action: {nxt.isoformat()}.")
        if book.open_tasks:
            lines.append("Open tasks: " + ", ".join(f"{t.kind} {t.task_id}" for t in book.open_tasks) + ".")
        workflow.set_current_details("\n".join(lines))
