"""Names fixed by the public contract (docs/contract.md), in one place for workflows, clients, portal and CLI."""

from __future__ import annotations

COLLECTION_WORKFLOW = "CollectionWorkflow"
RESTRUCTURING_WORKFLOW = "RestructuringWorkflow"
DEFAULT_TASK_QUEUE = "collections"

# Signals (fire and forget)
SIGNAL_PAYMENT_RECEIVED = "payment_received"
SIGNAL_PAYMENT_PLAN_PROPOSED = "payment_plan_proposed"
SIGNAL_PAUSE = "pause"
SIGNAL_RESUME = "resume"
# Project's own (not in the contract): operator write-off.
SIGNAL_WRITE_OFF = "write_off"
SIGNAL_AGENCY_PAYMENT = "agency_payment"

# v2: the debt is disputed (loan), the borrower's flags reach each loan (project's own), a borrower's
# signals (contract) and the borrower entity workflow.
SIGNAL_PAYMENT_REVERSED = "payment_reversed"  # v2: a payment returned or charged back
UPDATE_REVERSE_PAYMENT = "reverse_payment"  # project's own: the same, answered (HTTP 409 when refused)
SIGNAL_DISPUTE = "dispute"
SIGNAL_DISPUTE_RESOLVED = "dispute_resolved"
SIGNAL_BORROWER_FLAGS = "borrower_flags"
BORROWER_WORKFLOW = "BorrowerWorkflow"
BORROWER_FLAG_SIGNALS = ("opt_out", "opt_in", "cease_contact", "breathing_space", "bankruptcy", "deceased")
SIGNAL_CLEAR_FLAG = "clear_flag"  # project's own: an operator lifts cease_contact, breathing_space, ...
SIGNAL_LOAN_CHANGED = "loan_changed"  # project's own: a loan tells its borrower where it stands
SIGNAL_CONTACT_FAILED = "contact_failed"
SIGNAL_CONVERSATION = "conversation"
UPDATE_DECIDE_CONTACT = "decide_contact"  # project's own: the borrower decides one contact attempt
UPDATE_REQUEST_CONTACT = "request_contact"  # v2: agents and agencies ask before they dial or visit

# Updates (answered)
UPDATE_PROPOSE_PAYMENT_PLAN = "propose_payment_plan"
UPDATE_RECORD_CONTACT_OUTCOME = "record_contact_outcome"
# Project's own: the legal desk reports filed / judgment / settlement / withdrawn.
UPDATE_RECORD_LEGAL_OUTCOME = "record_legal_outcome"

# Query
QUERY_STATUS = "status"
# Project's own: the full audit trail in pages (the status shows the newest events only).
QUERY_EVENTS = "events"
# Project's own: the plan's child tells its loan how the plan ended (lazy-v1 loans).
SIGNAL_PLAN_ENDED = "plan_ended"

# Search attributes: name -> kind
SA_LOAN_ID = "LoanId"
SA_STAGE = "CollectionStage"
SA_STATE = "CollectionState"
SA_DPD = "DaysPastDue"
SA_OUTSTANDING = "OutstandingAmount"
SA_BORROWER_ID = "BorrowerId"  # v2: a person's loans in one filter
SA_DUE_DATE = "DueDate"  # v2: the first missed due date at the borrower's midnight (exact age, no refresh)
# Project's own: the agents' and agencies' queues come from one visibility query (docs/agents.md).
SA_TASK_AGENTS = "TaskAgents"  # the holders of the loan's open tasks ("unassigned" for the pool)
SA_OPEN_TASKS = "OpenTasks"  # one entry per open task: kind|task_id|holder|team|stage|created_at|due_by|escalations
SA_AGENCY_ID = "AgencyId"  # the agency the loan is placed with, while it is
SEARCH_ATTRIBUTES: dict[str, str] = {
    SA_LOAN_ID: "Keyword",
    SA_STAGE: "Keyword",
    SA_STATE: "Keyword",
    SA_DPD: "Int",
    SA_OUTSTANDING: "Double",
    SA_BORROWER_ID: "Keyword",
    SA_DUE_DATE: "Datetime",
    SA_TASK_AGENTS: "KeywordList",
    SA_OPEN_TASKS: "KeywordList",
    SA_AGENCY_ID: "Keyword",
}
UNASSIGNED = "unassigned"


def workflow_id(loan_id: str) -> str:
    """The contract's workflow id for a loan."""
    return f"loan-{loan_id}"


def borrower_workflow_id(borrower_id: str) -> str:
    """The borrower entity's workflow id (contract v2)."""
    return f"borrower-{borrower_id}"


def plan_workflow_id(loan_id: str, plan_number: int) -> str:
    """The restructuring child's id: one per accepted plan of the loan."""
    return f"loan-{loan_id}-plan-{plan_number}"
