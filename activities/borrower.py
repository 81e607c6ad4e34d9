"""The borrower's entity, as the loans' activities reach it: Temporal itself is the outside system.

A loan cannot send an update to another workflow, so its activities do it: before a message, a bot
call or an agent's call goes out, `ContactGate.ask` puts the attempt to `borrower-<id>` (update
`decide_contact`) and gets allow / defer-until / block, decided against the person's one contact
record. The send activities (email, sms, voice, bot) call the gate themselves, so a contact costs
the loan no extra activity; `BorrowerActivities` carries the loan's news (signal-with-start, so a
loan's intake starts or joins its borrower) and answers agents' `request_contact` through the gate.

Idempotent: the update id is the asking activity's run and id (a retry gets the first answer), and
the entity counts an attempt key once.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.client import WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from domain import contract
from domain.borrower import BorrowerInput, ContactFailed, Conversation, GateRequest, LoanNote
from domain.models import Model
from domain.rules import ContactDecision

from ._common import invalid, transient
from ._temporal import ClientSource, LazyClient


class NoteRequest(Model):
    borrower_id: str
    note: LoanNote


class ConversationNote(Model):
    borrower_id: str
    conversation: Conversation


class ContactGate(LazyClient):
    """Puts a contact attempt to the borrower's entity. The worker wires it with its own client."""

    def __init__(self, client: ClientSource, task_queue: str | None = None) -> None:
        super().__init__(client)
        self._task_queue = task_queue

    def _queue(self) -> str:
        if self._task_queue:
            return self._task_queue
        return activity.info().task_queue if activity.in_activity() else contract.DEFAULT_TASK_QUEUE

    async def note(self, borrower_id: str, note: LoanNote) -> None:
        """The loan's news, starting the entity if it is not running (signal-with-start)."""
        client = await self.client()
        await client.start_workflow(
            contract.BORROWER_WORKFLOW,
            BorrowerInput(borrower_id=borrower_id, timezone=note.timezone, rule_pack=note.rule_pack),
            id=contract.borrower_workflow_id(borrower_id),
            task_queue=self._queue(),
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            start_signal=contract.SIGNAL_LOAN_CHANGED,
            start_signal_args=[note],
            static_summary=f"Borrower {borrower_id}: one contact record and the person's flags for all their loans",
        )

    async def ask(self, req: GateRequest) -> ContactDecision:
        """The entity's decision on one attempt (starting the entity first if it has ended)."""
        client = await self.client()
        handle = client.get_workflow_handle(contract.borrower_workflow_id(req.borrower_id))
        update_id = None
        if activity.in_activity():
            info = activity.info()
            update_id = f"{info.workflow_run_id}:{info.activity_id}:{req.question.attempt.key}"
        for first in (True, False):
            try:
                return await handle.execute_update(contract.UPDATE_DECIDE_CONTACT, req.question, id=update_id,
                                                   result_type=ContactDecision)
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND or not first:
                    raise transient(f"borrower {req.borrower_id} did not answer: {err.message}") from err
            except WorkflowUpdateFailedError as err:
                raise invalid(f"borrower {req.borrower_id} refused the question: {err.cause}") from err
            await self.note(req.borrower_id, req.note)  # the entity had ended (or never started): start it
        raise AssertionError("unreachable")

    async def failed(self, borrower_id: str, key: str) -> None:
        """An allowed contact never reached the person: it stops counting against the caps."""
        client = await self.client()
        try:
            await client.get_workflow_handle(contract.borrower_workflow_id(borrower_id)).signal(
                contract.SIGNAL_CONTACT_FAILED, ContactFailed(key=key))
        except RPCError as err:
            activity.logger.warning("borrower %s not told that %s failed: %s", borrower_id, key, err.message)


class BorrowerActivities:
    """`note_borrower`, `decide_contact`, `tell_conversation`: the loan's side of the entity."""

    def __init__(self, gate: ContactGate) -> None:
        self.gate = gate

    @activity.defn(name="note_borrower")
    async def note_borrower(self, req: NoteRequest) -> None:
        await self.gate.note(req.borrower_id, req.note)

    @activity.defn(name="decide_contact")
    async def decide_contact(self, req: GateRequest) -> ContactDecision:
        return await self.gate.ask(req)

    @activity.defn(name="tell_conversation")
    async def tell_conversation(self, req: ConversationNote) -> None:
        client = await self.gate.client()
        await client.get_workflow_handle(contract.borrower_workflow_id(req.borrower_id)).signal(
            contract.SIGNAL_CONVERSATION, req.conversation)
