"""Typed keys of the contract's search attributes, for upserts from workflow code."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

LOAN_ID = SearchAttributeKey.for_keyword("LoanId")
STAGE = SearchAttributeKey.for_keyword("CollectionStage")
STATE = SearchAttributeKey.for_keyword("CollectionState")
DPD = SearchAttributeKey.for_int("DaysPastDue")
OUTSTANDING = SearchAttributeKey.for_float("OutstandingAmount")
BORROWER_ID = SearchAttributeKey.for_keyword("BorrowerId")
DUE_DATE = SearchAttributeKey.for_datetime("DueDate")
TASK_AGENTS = SearchAttributeKey.for_keyword_list("TaskAgents")
OPEN_TASKS = SearchAttributeKey.for_keyword_list("OpenTasks")
AGENCY_ID = SearchAttributeKey.for_keyword("AgencyId")

BY_NAME = {"LoanId": LOAN_ID, "CollectionStage": STAGE, "CollectionState": STATE, "DaysPastDue": DPD,
           "OutstandingAmount": OUTSTANDING, "BorrowerId": BORROWER_ID, "DueDate": DUE_DATE,
           "TaskAgents": TASK_AGENTS, "OpenTasks": OPEN_TASKS, "AgencyId": AGENCY_ID}
