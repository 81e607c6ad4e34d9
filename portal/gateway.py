"""The portal's only contact with Temporal: one query, signal or update per request.

Temporal's errors become the portal's refusals here (portal.errors), so the routes read as the
contract: unknown workflow -> 404, closed workflow -> 409 (or the documented answer), a validator's
refusal -> 422, Temporal unreachable or the loan's worker silent -> 503.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import (
    Client,
    RPCTimeoutOrCancelledError,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import SearchAttributeKey
from temporalio.exceptions import ApplicationError, FailureError
from temporalio.service import RPCError, RPCStatusCode

from domain import contract
from domain.freshness import as_of_now
from domain.models import OpenTask
from domain.queue import parse_task_entry
from runtime.codec import PayloadDecryptionError
from domain.borrower import BorrowerStatus
from domain.models import (
    ContactAnswer,
    ContactOutcome,
    ContactRequest,
    PaymentPlanProposal,
    PaymentReceived,
    PlanDecision,
    Status,
)

from .config import PortalConfig
from .errors import Conflict, FieldError, NotFound, NotImplementedYet, Unavailable, Unprocessable

log = logging.getLogger("portal")

LOAN_ID_KEY = SearchAttributeKey.for_keyword(contract.SA_LOAN_ID)
OPEN_TASKS_KEY = SearchAttributeKey.for_keyword_list(contract.SA_OPEN_TASKS)

QUERY_BORROWER_ID = "borrower_id"
"""The workflow's query answering the loan's borrower_id (not part of Status)."""
SIGNAL_PAYMENT_REVERSED = "payment_reversed"
"""Contract v2: undoes an applied payment, body {"payment_id", "reason"}."""
UPDATE_REVERSE_PAYMENT = "reverse_payment"
"""The project's own: an operator's reversal, body {"payment_id", "reason", "operator_id"}, answers the
status; a reversal the loan cannot take fails with an ApplicationError of type ReversalRefused."""
REVERSAL_REFUSED = "ReversalRefused"
ENCODED_FAILURE = "Encoded failure"
"""What temporalio's DefaultFailureConverterWithEncodedAttributes leaves of a failure's message."""

_UNAVAILABLE_CODES = {
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.CANCELLED,
    RPCStatusCode.RESOURCE_EXHAUSTED,
    RPCStatusCode.ABORTED,
}


class LoanNotFound(NotFound):
    pass


class LoanClosed(Conflict):
    pass


class ReversalRefused(Conflict):
    code = "reversal_refused"


class BorrowerNotFound(NotFound):
    pass


class NoBorrowerEntity(Conflict):
    """The loan predates the borrower entity (contract v2): its contacts are decided by the loan alone."""

    code = "no_borrower_entity"


PREDATES_BORROWER = "predates the borrower entity"
"""What the loan's request_contact validator says of a loan from before the borrower entity."""


def _retry_after() -> dict[str, str]:
    return {"Retry-After": "5"}


class LoanGateway:
    def __init__(self, client_factory: Callable[[], Awaitable[Client]], config: PortalConfig,
                 task_queue: str = contract.DEFAULT_TASK_QUEUE) -> None:
        self._client_factory = client_factory
        self.task_queue = task_queue
        self._client: Client | None = None
        self._lock = asyncio.Lock()
        self.config = config
        self._timeout = timedelta(seconds=config.temporal_timeout_seconds)
        self._borrowers: OrderedDict[str, str] = OrderedDict()
        self._currencies: OrderedDict[str, str] = OrderedDict()

    # -- connection --------------------------------------------------------------------------

    async def client(self) -> Client:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await asyncio.wait_for(
                        self._client_factory(), self.config.temporal_timeout_seconds
                    )
                except (TimeoutError, RuntimeError, RPCError, OSError) as exc:
                    raise Unavailable(
                        f"Temporal is not reachable ({type(exc).__name__}); retry later",
                        headers=_retry_after(),
                    ) from None
        return self._client

    async def health(self) -> dict[str, Any]:
        client = await self.client()
        async with self._errors(None):
            info = await client.workflow_service.get_system_info(
                GetSystemInfoRequest(), timeout=self._timeout
            )
        return {"namespace": client.namespace, "server_version": info.server_version or None}

    async def _handle(self, loan_id: str) -> WorkflowHandle[Any, Any]:
        return (await self.client()).get_workflow_handle(contract.workflow_id(loan_id))

    @asynccontextmanager
    async def _errors(self, loan_id: str | None, missing: NotFound | None = None) -> AsyncIterator[None]:
        """Temporal's errors as the portal's refusals; NOT_FOUND is `missing` (or: no such loan)."""
        try:
            yield
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND and missing is not None:
                raise missing from None
            if err.status == RPCStatusCode.NOT_FOUND and loan_id is not None:
                raise LoanNotFound(f"no loan {loan_id!r}") from None
            if err.status in _UNAVAILABLE_CODES:
                raise Unavailable(
                    "Temporal did not answer in time (is the worker running?); retry later",
                    headers=_retry_after(),
                ) from None
            raise Unavailable(f"Temporal refused the call ({err.status.name})", headers=_retry_after()) from None
        except RPCTimeoutOrCancelledError:
            raise Unavailable(
                "the loan's workflow did not answer in time (is the worker running?); retry later",
                headers=_retry_after(),
            ) from None
        except WorkflowQueryFailedError as err:
            if err.message == ENCODED_FAILURE:
                # With encryption on, a query's failure reaches the portal as this placeholder only. The
                # usual cause: the worker cannot decrypt the query's argument (keys out of step).
                log.error("a query on loan %s failed with an encrypted reason; if the worker's log says it "
                          "cannot decrypt a payload, the portal's and the worker's keys are out of step", loan_id)
                raise Unavailable(
                    "the loan's workflow could not answer and its reason is encrypted: if the worker cannot "
                    "decrypt the portal's query, their encryption keys are out of step; operators: see the "
                    "worker's log", headers=_retry_after(),
                ) from None
            raise Unavailable(f"the loan's workflow could not answer: {err.message}",
                              headers=_retry_after()) from None
        except WorkflowQueryRejectedError:
            raise Unavailable("the loan's workflow rejected the query", headers=_retry_after()) from None
        except PayloadDecryptionError as err:
            log.error("cannot decrypt a payload for loan %s: %s", loan_id, err)
            raise Unavailable(
                "the portal cannot decrypt the loan's data (encryption keys out of step); "
                "operators: see the portal's log", headers=_retry_after(),
            ) from None

    async def _closed_status(self, loan_id: str) -> WorkflowExecutionStatus | None:
        """After a NOT_FOUND on a signal/update: the closed workflow's status, or LoanNotFound."""
        handle = await self._handle(loan_id)
        async with self._errors(loan_id):
            description = await handle.describe(rpc_timeout=self._timeout)
        return description.status

    # -- reads ---------------------------------------------------------------------------------

    async def borrower_id(self, loan_id: str) -> str:
        """The loan's borrower (immutable per loan, so cached)."""
        cached = self._borrowers.get(loan_id)
        if cached is not None:
            self._borrowers.move_to_end(loan_id)
            return cached
        handle = await self._handle(loan_id)
        async with self._errors(loan_id):
            value = await handle.query(QUERY_BORROWER_ID, result_type=str, rpc_timeout=self._timeout)
        if not isinstance(value, str) or not value:
            raise Unavailable("the loan's workflow answered no borrower_id", headers=_retry_after())
        self._borrowers[loan_id] = value
        while len(self._borrowers) > 50_000:
            self._borrowers.popitem(last=False)
        return value

    async def status(self, loan_id: str) -> Status:
        handle = await self._handle(loan_id)
        async with self._errors(loan_id):
            status = await handle.query(contract.QUERY_STATUS, result_type=Status, rpc_timeout=self._timeout)
        # as of now: the loan's figures are as of its last wake; the same pure accrual brings them forward
        return as_of_now(status, datetime.now(UTC))

    async def queue(self, holder: str, include_unassigned: bool) -> list[tuple[str, OpenTask]]:
        """A desk's queue from one visibility query, every page (no cap): (loan_id, task) for each open task
        held by `holder` (an agent's id, or an agency's id for its placements), and the pool if asked."""
        client = await self.client()
        holders = [holder] + ([contract.UNASSIGNED] if include_unassigned else [])
        wanted = " OR ".join(f"{contract.SA_TASK_AGENTS} = '{_quote(h)}'" for h in holders)
        query = (f"WorkflowType = '{contract.COLLECTION_WORKFLOW}' AND ExecutionStatus = 'Running' "
                 f"AND TaskQueue = '{_quote(self.task_queue)}' AND ({wanted})")
        found: list[tuple[str, OpenTask]] = []
        async with self._errors(None):
            async for execution in client.list_workflows(query, page_size=1000, rpc_timeout=self._timeout):
                attrs = execution.typed_search_attributes
                loan_id = attrs.get(LOAN_ID_KEY)
                for entry in attrs.get(OPEN_TASKS_KEY) or []:
                    task = parse_task_entry(entry)
                    if loan_id and (task.assigned_to == holder or (include_unassigned and task.assigned_to is None)):
                        found.append((loan_id, task))
        return found

    async def running_loan_ids(self, limit: int) -> tuple[list[str], bool]:
        """Loan ids of running collection workflows (visibility), at most `limit`; and truncated?"""
        client = await self.client()
        query = (
            f"WorkflowType = '{contract.COLLECTION_WORKFLOW}' AND ExecutionStatus = 'Running' "
            f"AND TaskQueue = '{_quote(self.task_queue)}'"
        )
        ids: list[str] = []
        truncated = False
        async with self._errors(None):
            async for execution in client.list_workflows(
                query, limit=limit + 1, page_size=min(limit + 1, 1000), rpc_timeout=self._timeout
            ):
                if len(ids) >= limit:
                    truncated = True
                    break
                prefix = contract.workflow_id("")
                if execution.id.startswith(prefix) and "-plan-" not in execution.id:
                    ids.append(execution.id[len(prefix):])
        return ids, truncated

    async def is_open(self, loan_id: str) -> bool:
        """Whether the loan's workflow is still running (its current run)."""
        handle = await self._handle(loan_id)
        async with self._errors(loan_id):
            description = await handle.describe(rpc_timeout=self._timeout)
        return description.status == WorkflowExecutionStatus.RUNNING

    async def currency(self, loan_id: str) -> str:
        """The loan's currency, from its workflow's input (immutable per loan, so cached). The status
        does not carry it; the first event of the current run's history does."""
        cached = self._currencies.get(loan_id)
        if cached is not None:
            self._currencies.move_to_end(loan_id)
            return cached
        client = await self.client()
        handle = await self._handle(loan_id)
        value: Any = None
        async with self._errors(loan_id):
            async for event in handle.fetch_history_events(page_size=1, rpc_timeout=self._timeout):
                payloads = event.workflow_execution_started_event_attributes.input.payloads
                if payloads:
                    (value,) = await client.data_converter.decode(payloads[:1], [dict])
                break
        try:
            currency = value["loan"]["currency"]
        except (TypeError, KeyError):
            currency = None
        if not isinstance(currency, str) or len(currency) != 3:
            raise Unavailable("the loan's workflow input names no currency", headers=_retry_after())
        self._currencies[loan_id] = currency
        while len(self._currencies) > 50_000:
            self._currencies.popitem(last=False)
        return currency

    # -- writes --------------------------------------------------------------------------------

    async def _payment_known(self, loan_id: str, payment_id: str, kinds: tuple[str, ...]) -> bool:
        """Did the (now closed) loan already take this payment (or reversal)? From its events, so that
        every replica of the portal answers the same."""
        try:
            status = await self.status(loan_id)
        except (Unavailable, NotFound):
            return False
        return any(event.kind in kinds and _mentions_payment(event.details, payment_id) for event in status.events)

    async def credit(self, loan_id: str, payment: PaymentReceived) -> bool:
        """Signal `payment_received` (a provider's confirmation); True if the closed loan already has it.

        Sent again for a repeat while the loan is open: the workflow dedupes by payment_id (a
        `payment_duplicate` event), which keeps the portal stateless and its replicas consistent."""
        return await self._money_signal(loan_id, contract.SIGNAL_PAYMENT_RECEIVED, payment, payment.payment_id,
                                        ("payment_applied", "payment_duplicate"), "the payment was not credited")

    async def reverse(self, loan_id: str, payment_id: str, reason: str) -> bool:
        """Signal `payment_reversed`; True if the closed loan already recorded this reversal."""
        body = {"payment_id": payment_id, "reason": reason}
        return await self._money_signal(loan_id, SIGNAL_PAYMENT_REVERSED, body, payment_id,
                                        ("payment_reversed",), "the reversal was not recorded")

    async def _money_signal(self, loan_id: str, name: str, body: Any, payment_id: str, kinds: tuple[str, ...],
                            what: str) -> bool:
        handle = await self._handle(loan_id)
        try:
            async with self._errors(loan_id):
                await handle.signal(name, body, rpc_timeout=self._timeout)
        except LoanNotFound:
            state = await self._closed_status(loan_id)
            if await self._payment_known(loan_id, payment_id, kinds):
                return True
            raise LoanClosed(_closed_message(loan_id, state, what)) from None
        return False

    async def reverse_payment(self, loan_id: str, body: dict[str, str], update_id: str | None = None) -> Status:
        """The operator's reversal (update `reverse_payment`): the loan's status, or the workflow's
        refusal (ReversalRefused, 409), or 409 for a loan whose workflow has ended."""
        try:
            return await self._update(loan_id, UPDATE_REVERSE_PAYMENT, body, Status, update_id=update_id)
        except LoanNotFound:
            state = await self._closed_status(loan_id)
            raise LoanClosed(_closed_message(loan_id, state, "the reversal was not recorded")) from None

    async def signal(self, loan_id: str, name: str, body: Any) -> None:
        handle = await self._handle(loan_id)
        try:
            async with self._errors(loan_id):
                await handle.signal(name, body, rpc_timeout=self._timeout)
        except LoanNotFound:
            state = await self._closed_status(loan_id)
            raise LoanClosed(_closed_message(loan_id, state, f"{name} was not sent")) from None

    async def _update(self, loan_id: str, name: str, body: Any, result_type: type, update_id: str | None = None) -> Any:
        handle = await self._handle(loan_id)
        try:
            async with self._errors(loan_id):
                return await handle.execute_update(
                    name, body, id=update_id, result_type=result_type, rpc_timeout=self._timeout
                )
        except WorkflowUpdateFailedError as err:
            raise _refusal(err, name) from None

    async def propose_plan(self, loan_id: str, proposal: PaymentPlanProposal,
                           update_id: str | None = None) -> PlanDecision:
        """The workflow's decision; a closed loan is answered `accepted: false` with the reason.
        With an update id (the client's Idempotency-Key) a retry gets the first answer back."""
        try:
            return await self._update(loan_id, contract.UPDATE_PROPOSE_PAYMENT_PLAN, proposal, PlanDecision,
                                      update_id=update_id)
        except LoanNotFound:
            state = await self._closed_status(loan_id)
            outcome = await self._final_outcome(loan_id)
            return PlanDecision(
                accepted=False,
                reason=f"loan is closed{f' ({outcome})' if outcome else _state_suffix(state)}; "
                "a payment plan needs an open loan",
                schedule=[],
            )

    async def record_outcome(self, loan_id: str, outcome: ContactOutcome) -> Status:
        try:
            return await self._update(loan_id, contract.UPDATE_RECORD_CONTACT_OUTCOME, outcome, Status)
        except LoanNotFound:
            state = await self._closed_status(loan_id)
            raise LoanClosed(_closed_message(loan_id, state, "the outcome was not recorded")) from None

    async def request_contact(self, loan_id: str, request: ContactRequest, update_id: str | None = None) -> ContactAnswer:
        """Update `request_contact`: the borrower's entity decides the call or visit (an allowed one
        counts at once). 409 for a loan whose workflow has ended or that predates the entity."""
        handle = await self._handle(loan_id)
        name = contract.UPDATE_REQUEST_CONTACT
        try:
            async with self._errors(loan_id):
                return await handle.execute_update(name, request, id=update_id, result_type=ContactAnswer,
                                                   rpc_timeout=self._timeout)
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and PREDATES_BORROWER in (cause.message or ""):
                raise NoBorrowerEntity(
                    f"loan {loan_id!r} {cause.message.removeprefix(f'{name}: ')}: it does not take contact "
                    "requests (its worker decides its own contacts; nothing was counted)") from None
            raise _refusal(err, name) from None
        except LoanNotFound:
            state = await self._closed_status(loan_id)
            raise LoanClosed(_closed_message(loan_id, state, "no contact may be made")) from None

    # -- the borrower entity (borrower-<borrower_id>) ------------------------------------------------

    async def _borrower_handle(self, borrower_id: str) -> WorkflowHandle[Any, Any]:
        return (await self.client()).get_workflow_handle(contract.borrower_workflow_id(borrower_id))

    async def borrower_status(self, borrower_id: str) -> BorrowerStatus:
        """The entity's `status` query (also after it ended, while Temporal keeps its history)."""
        handle = await self._borrower_handle(borrower_id)
        missing = BorrowerNotFound(f"no borrower {borrower_id!r}: no workflow "
                                   f"{contract.borrower_workflow_id(borrower_id)!r} (the entity exists while the "
                                   "borrower has a loan with us)")
        async with self._errors(None, missing):
            return await handle.query(contract.QUERY_STATUS, result_type=BorrowerStatus, rpc_timeout=self._timeout)

    async def borrower_signal(self, borrower_id: str, name: str, body: dict[str, Any]) -> None:
        """One of the contract's signals to `borrower-<borrower_id>`; 404 when the entity is not running
        (the borrower has no open loan, and it holds no standing instruction for a new one)."""
        handle = await self._borrower_handle(borrower_id)
        missing = BorrowerNotFound(
            f"borrower {borrower_id!r} has no open loan with us (no running {contract.borrower_workflow_id(borrower_id)!r}): "
            f"{name} was not recorded")
        async with self._errors(None, missing):
            await handle.signal(name, body, rpc_timeout=self._timeout)

    async def _final_outcome(self, loan_id: str) -> str | None:
        try:
            status = await self.status(loan_id)
        except (Unavailable, NotFound):
            return None
        return status.outcome.value if status.outcome else None


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _mentions_payment(details: Any, payment_id: str) -> bool:
    if isinstance(details, dict):
        if details.get("payment_id") == payment_id:
            return True
        return any(_mentions_payment(v, payment_id) for v in details.values() if isinstance(v, (dict, list)))
    if isinstance(details, list):
        return any(_mentions_payment(v, payment_id) for v in details)
    return False


def _state_suffix(state: WorkflowExecutionStatus | None) -> str:
    return f" ({state.name.lower()})" if state else ""


def _closed_message(loan_id: str, state: WorkflowExecutionStatus | None, what: str) -> str:
    return f"loan {loan_id!r} is closed{_state_suffix(state)}; {what}"


def _refusal(err: WorkflowUpdateFailedError, name: str) -> Unprocessable | Conflict | NotImplementedYet:
    """A validator's (or handler's) refusal -> 422 naming the field and reason when it says so; a
    reversal the loan cannot take -> 409; an update the loan's worker does not know yet -> 501."""
    cause: BaseException | None = err.cause
    if isinstance(cause, ApplicationError) and cause.type == REVERSAL_REFUSED:
        return ReversalRefused(f"the loan refused the reversal: {cause.message}")
    if isinstance(cause, FailureError) and _UNKNOWN_UPDATE.search(cause.message or ""):
        return NotImplementedYet(f"the loan's workflow does not handle {name!r} (its worker runs an older "
                                 "version of the engine); retry after the upgrade")
    message = "the loan's workflow refused the request"
    fields: list[FieldError] = []
    if isinstance(cause, FailureError):
        message = cause.message or message
        if isinstance(cause, ApplicationError) and cause.details and isinstance(cause.details[0], dict):
            first = cause.details[0]
            fields.append(FieldError(field=str(first.get("field") or "body"),
                                     reason=str(first.get("reason") or message)))
    # The workflow words refusals "<update name>: <field>: <reason>; ..." or "<update name>: <reason>".
    for name in (contract.UPDATE_PROPOSE_PAYMENT_PLAN, contract.UPDATE_RECORD_CONTACT_OUTCOME):
        message = message.removeprefix(f"{name}: ")
    if not fields:
        for part in message.split("; "):
            match = _FIELD_REASON.match(part)
            if match:
                fields.append(FieldError(field=match["field"], reason=match["reason"]))
            else:
                fields.append(FieldError(field=_field_named_in(part), reason=part))
    return Unprocessable(f"refused by the loan's workflow: {message}", fields=fields)


_UNKNOWN_UPDATE = re.compile(r"[Uu]pdate handler for .* expected but not found")
_FIELD_REASON = re.compile(r"^(?P<field>[a-z_][a-z0-9_]*(?:\.[a-z0-9_]+)*): (?P<reason>.+)$")
_KNOWN_FIELDS = ("task_id", "agent_id", "outcome", "promised_amount", "promised_date", "note",
                 "installments", "first_due_date", "interval_days", "down_payment")


def _field_named_in(reason: str) -> str:
    """The body field a free-text refusal is about ('promised_date must not be in the past')."""
    for name in _KNOWN_FIELDS:
        if reason.startswith(name) or f" {name}" in reason:
            return name
    return "body"
