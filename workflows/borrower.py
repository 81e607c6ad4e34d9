"""BorrowerWorkflow: one per borrower (`borrower-<borrower_id>`), while any of their loans is open.

It only orchestrates a `domain.borrower.BorrowerBook`: every contact attempt with the person (a loan's
message, a plan's reminder, a bot's, an agent's or an agency's call) is put to it by update
`decide_contact` and decided against the person's one contact record, so the caps hold per person and
two loans asking at the same moment are answered one after the other (a workflow handles one update
at a time). The person's flags arrive as the contract's signals and go on to every open loan
(`borrower_flags`). The entity ends when its last loan has closed, or, while it holds the person's
standing instructions (an opt-out, cease contact, bankruptcy, deceased), after waiting
`retention_days` for a new loan that would inherit them; it continues as new to bound its history.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel, ValidationError

    from domain import contract as c
    from domain.borrower import (
        BorrowerBook,
        BorrowerInput,
        BorrowerStatus,
        ContactFailed,
        ContactQuestion,
        Conversation,
        FlagsNotice,
        LoanNote,
    )
    from domain.rules import ContactDecision

def _body(model: type[BaseModel], args: tuple[Any, ...], what: str) -> Any:
    if len(args) != 1:
        raise ApplicationError(f"{what}: expected one JSON object as the body", type="InvalidRequest",
                               non_retryable=True)
    body = args[0]
    if isinstance(body, BaseModel):
        return body if isinstance(body, model) else model.model_validate(body.model_dump(mode="json"))
    try:
        return model.model_validate(body)
    except ValidationError as err:
        parts = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg'].removeprefix('Value error, ')}"
                 for e in err.errors()]
        raise ApplicationError(f"{what}: {'; '.join(parts)}", type="InvalidRequest", non_retryable=True) from None


@workflow.defn(name=c.BORROWER_WORKFLOW)
class BorrowerWorkflow:
    @workflow.init
    def __init__(self, input: Any, carried: Any = None) -> None:
        inp = _body(BorrowerInput, (input,), "input")
        self._book = (BorrowerBook.model_validate(carried) if carried is not None and not isinstance(carried, BorrowerBook)
                      else carried or BorrowerBook.open(inp))
        self._input = inp
        self._pending: list[tuple[list[str], FlagsNotice]] = []
        """Flag notices to pass on: (loan ids, notice)."""
        self._wake = False

    def _now(self) -> datetime:
        return self._book.local(workflow.now())

    # ------------------------------------------------------------------ the loans

    @workflow.signal(name=c.SIGNAL_LOAN_CHANGED)
    def loan_changed(self, *args: Any) -> None:
        try:
            note = _body(LoanNote, args, c.SIGNAL_LOAN_CHANGED)
        except ApplicationError as err:
            self._book.reject(c.SIGNAL_LOAN_CHANGED, err.message, self._now())
            return
        joined, _ = self._book.note(note)
        book = self._book
        if joined and note.state.value != "closed" and book.flags_seq > 0:
            # a new loan of a person with flags: it inherits them at once
            self._pending.append(([note.loan_id], book.notice(self._now(), "joined")))
        self._wake = True

    # ------------------------------------------------------------------ the person's flags

    def _flag(self, signal: str, args: tuple[Any, ...]) -> None:
        now = self._now()
        if len(args) != 1 or not isinstance(args[0], dict):
            self._book.reject(signal, "the body must be one JSON object", now)
            return
        body = dict(args[0])
        default_days = 60
        changed, error = self._book.apply_flag(signal, body, now, default_days)
        if changed:
            operator = body.pop("operator_id", None)
            loans = [e.loan_id for e in self._book.open_loans]
            self._pending.append((loans, self._book.notice(now, signal, operator,
                                                           **{k: (v if not hasattr(v, "isoformat") else v.isoformat())
                                                              for k, v in body.items()})))
        self._wake = True

    @workflow.signal(name="opt_out")
    def opt_out(self, *args: Any) -> None:
        self._flag("opt_out", args)

    @workflow.signal(name="opt_in")
    def opt_in(self, *args: Any) -> None:
        self._flag("opt_in", args)

    @workflow.signal(name="cease_contact")
    def cease_contact(self, *args: Any) -> None:
        self._flag("cease_contact", args)

    @workflow.signal(name="breathing_space")
    def breathing_space(self, *args: Any) -> None:
        self._flag("breathing_space", args)

    @workflow.signal(name="bankruptcy")
    def bankruptcy(self, *args: Any) -> None:
        self._flag("bankruptcy", args)

    @workflow.signal(name="deceased")
    def deceased(self, *args: Any) -> None:
        self._flag("deceased", args)

    @workflow.signal(name=c.SIGNAL_CLEAR_FLAG)
    def clear_flag(self, *args: Any) -> None:
        self._flag(c.SIGNAL_CLEAR_FLAG, args)

    # ------------------------------------------------------------------ contacts

    @workflow.update(name=c.UPDATE_DECIDE_CONTACT)
    def decide_contact(self, *args: Any) -> ContactDecision:
        q = _body(ContactQuestion, args, c.UPDATE_DECIDE_CONTACT)
        decision = self._book.decide(q, workflow.now())
        self._wake = True
        return decision

    @decide_contact.validator
    def _validate_question(self, *args: Any) -> None:
        _body(ContactQuestion, args, c.UPDATE_DECIDE_CONTACT)

    @workflow.signal(name=c.SIGNAL_CONTACT_FAILED)
    def contact_failed(self, *args: Any) -> None:
        try:
            self._book.contact_failed(_body(ContactFailed, args, c.SIGNAL_CONTACT_FAILED), self._now())
        except ApplicationError as err:
            self._book.reject(c.SIGNAL_CONTACT_FAILED, err.message, self._now())

    @workflow.signal(name=c.SIGNAL_CONVERSATION)
    def conversation(self, *args: Any) -> None:
        try:
            self._book.conversation(_body(Conversation, args, c.SIGNAL_CONVERSATION))
        except ApplicationError as err:
            self._book.reject(c.SIGNAL_CONVERSATION, err.message, self._now())

    @workflow.query(name=c.QUERY_STATUS)
    def status(self) -> BorrowerStatus:
        return self._book.status(workflow.now())

    # ------------------------------------------------------------------ the loop

    @workflow.run
    async def run(self, input: Any, carried: Any = None) -> BorrowerStatus:
        book = self._book
        while True:
            self._wake = False
            await self._pass_on()
            workflow.set_current_details(self._details())
            if book.finished(workflow.now()) and not self._pending:
                await workflow.wait_condition(workflow.all_handlers_finished)
                if book.finished(workflow.now()) and not self._pending and not self._wake:
                    return book.status(workflow.now())
                continue
            info = workflow.info()
            if (info.is_continue_as_new_suggested()
                    or info.get_current_history_length() > self._input.continue_as_new_after_events):
                await workflow.wait_condition(workflow.all_handlers_finished)
                if not self._pending and not self._wake:
                    workflow.continue_as_new(args=[self._input, book])
            until = book.wait_until()
            if until is None:
                await workflow.wait_condition(lambda: self._wake or bool(self._pending))
            else:
                try:
                    await workflow.wait_condition(lambda: self._wake or bool(self._pending),
                                                  timeout=max(until - workflow.now(), timedelta(seconds=1)),
                                                  timeout_summary="keeping the person's standing flags for a new loan")
                except TimeoutError:
                    pass

    async def _pass_on(self) -> None:
        """Tell each loan the person's flags (a loan that has ended is skipped)."""
        while self._pending:
            loans, notice = self._pending.pop(0)

            async def one(loan_id: str) -> None:
                try:
                    await workflow.get_external_workflow_handle(c.workflow_id(loan_id)).signal(
                        c.SIGNAL_BORROWER_FLAGS, notice)
                except FailureError as err:
                    workflow.logger.info("flags not passed on to loan %s: %s", loan_id, err)

            await asyncio.gather(*(one(loan_id) for loan_id in loans))

    def _details(self) -> str:
        book = self._book
        f = book.flags
        flags = [name for name, on in (("opted out of " + ", ".join(ch.value for ch in f.opted_out), bool(f.opted_out)),
                                       ("cease contact", bool(f.cease_contact)),
                                       ("breathing space", f.breathing_space is not None),
                                       ("bankruptcy", bool(f.bankruptcy)), ("deceased", bool(f.deceased))) if on]
        now = workflow.now()
        lines = [f"**Borrower {book.borrower_id}** · {book.rule_pack.value} rules · {len(book.open_loans)} open "
                 f"loan(s) of {len(book.loans)} · {book.record.contacts_today(book.local(now))} contact(s) today",
                 "", "Flags: " + ("; ".join(flags) if flags else "none") + "."]
        until = book.wait_until()
        if book.open_loans:
            lines.append("Waiting for: contact questions from the loans, the person's signals, loans closing.")
        elif until is not None:
            lines.append(f"All loans closed; keeping the person's standing flags for a new loan until "
                         f"{until.isoformat()}.")
        return "\n".join(lines)
